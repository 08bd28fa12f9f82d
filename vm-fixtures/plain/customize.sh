#!/bin/sh
# Runs inside the plain disk's rootfs (chroot) at the end of mmdebstrap: a stock Debian system
# with its kernel and initramfs in /boot (not an ostree tree), root without password and a
# serial getty for debugging, periodic maintenance off (it would run mid-test).
set -eu

if [ "$(ls /boot/vmlinuz-* | wc -l)" -ne 1 ]; then
    echo "plain customize: expected exactly one kernel in /boot" >&2
    exit 1
fi
passwd -d root
systemctl enable serial-getty@ttyS0.service
systemctl disable apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
    e2scrub_all.timer fstrim.timer e2scrub_reap.service systemd-pstore.service
systemctl mask systemd-binfmt.service proc-sys-fs-binfmt_misc.automount \
    proc-sys-fs-binfmt_misc.mount getty@tty1.service
# Under TCG on a busy machine udev's coldplug can take longer than systemd's 90 s device
# timeout (seen: ttyS0 and the ESP "timed out", emergency mode). Wait longer for devices.
mkdir -p /etc/systemd/system.conf.d /etc/systemd/system/dev-ttyS0.device.d
printf '[Manager]\nDefaultDeviceTimeoutSec=600s\nDefaultTimeoutStartSec=600s\n' \
    > /etc/systemd/system.conf.d/50-bootc-py-fixture.conf
printf '[Unit]\nJobTimeoutSec=600s\n' > /etc/systemd/system/dev-ttyS0.device.d/50-timeout.conf
echo plain-debian > /etc/hostname
rm -f /etc/resolv.conf
rm -f /etc/apt/sources.list.d/*
echo "# bootc-py plain fixture disk: no package sources" > /etc/apt/sources.list
