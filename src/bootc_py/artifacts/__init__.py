"""Disk images (raw, qcow2, vmdk, vhd) and other artifacts."""
