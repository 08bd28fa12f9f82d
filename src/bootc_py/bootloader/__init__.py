"""GRUB (BIOS and UEFI) and systemd-boot, configured from ostree's BLS entries."""
