"""Disk discovery, partition plans and their application, loop devices and mounts."""
