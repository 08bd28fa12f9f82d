"""The install: ordered, named steps from a disk to a booting ostree deployment."""
