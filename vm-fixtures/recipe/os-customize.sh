#!/bin/sh
# Runs inside the sample image's OS rootfs (chroot, /proc /sys /dev mounted by mmdebstrap) at the
# end of mmdebstrap. It makes the rootfs a bootable container image's tree: one kernel with its
# initramfs under /usr/lib/modules/$KVER, an empty /boot. /etc stays at /etc and /var stays a
# normal /var: turning the tree into the ostree layout is bootc-py's job at install time.
set -eu

kvers=$(ls /usr/lib/modules)
if [ "$(echo "$kvers" | wc -w)" -ne 1 ]; then
    echo "os-customize: expected exactly one kernel under /usr/lib/modules, found: $kvers" >&2
    exit 1
fi
KVER=$kvers

# The kernel postinst already ran dracut, but not necessarily after ostree-boot was configured:
# rebuild explicitly, generic (not host-only), with the ostree module (ostree-prepare-root).
dracut --force --quiet --no-hostonly --reproducible --add ostree --kver "$KVER" \
    "/usr/lib/modules/$KVER/initramfs.img"
mv "/boot/vmlinuz-$KVER" "/usr/lib/modules/$KVER/vmlinuz"
find /boot -mindepth 1 -delete
rm -f /vmlinuz /vmlinuz.old /initrd.img /initrd.img.old

# Debugging access on the serial console: root with an empty password, a getty on ttyS0.
passwd -d root
systemctl enable serial-getty@ttyS0.service

echo bootc-py-fixture > /etc/hostname
# Nothing of the build host leaks into the image: no resolver, no package sources.
rm -f /etc/resolv.conf
rm -f /etc/apt/sources.list.d/*
echo "# bootc-py sample image: no package sources (it is updated as an image)" \
    > /etc/apt/sources.list
