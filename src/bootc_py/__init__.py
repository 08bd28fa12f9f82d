"""bootc-py: make bootable container images boot."""

__version__ = "0.1.0"
