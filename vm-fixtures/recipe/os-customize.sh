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

# The initramfs: generic (not host-only), with the ostree module (ostree-prepare-root), but only
# the drivers a virtio test machine needs (the disks, the filesystems bootc-py installs or a live
# medium uses, the ESP's vfat): 45 instead of 388 modules, so udev in the initrd has far less to
# load (initrd phase ~6 s instead of ~12 s under TCG). Uncompressed: under TCG the kernel's
# gunzip costs more than reading the larger file; lz4 was as fast but bootc-py's lint cannot
# read it (vm-fixtures/README.md, "Boot time").
# In dracut.conf.d, so an image derived from this one (another dracut run) keeps the choice.
cat > /etc/dracut.conf.d/50-bootc-py-fixture.conf <<'CONF'
# bootc-py sample image: a small initramfs for virtio test machines (see os-customize.sh).
hostonly="no"
compress="cat"
omit_dracutmodules+=" crypt nvdimm lunmask resume virtiofs kernel-modules-extra terminfo qemu plymouth "
drivers+=" virtio_blk virtio_scsi virtio_pci virtio_net virtio_console virtio_rng sd_mod sr_mod cdrom "
drivers+=" xfs ext4 btrfs vfat nls_cp437 nls_ascii nls_iso8859_1 overlay squashfs loop isofs erofs dm_mod "
CONF
# LVM roots (kickstart volgroup/logvol): dracut's lvm module activates the root LV named by
# rd.lvm.lv (dm_mod is in the driver list above). Its own file, apart from the boot-speed choices.
cat > /etc/dracut.conf.d/51-bootc-py-fixture-lvm.conf <<'CONF'
# bootc-py sample image: LVM root support (see os-customize.sh).
add_dracutmodules+=" lvm "
CONF
# The kernel postinst already ran dracut, but not necessarily after ostree-boot was configured:
# rebuild explicitly.
dracut --force --quiet --reproducible --add ostree --kver "$KVER" \
    "/usr/lib/modules/$KVER/initramfs.img"
mv "/boot/vmlinuz-$KVER" "/usr/lib/modules/$KVER/vmlinuz"
find /boot -mindepth 1 -delete
rm -f /vmlinuz /vmlinuz.old /initrd.img /initrd.img.old

# Debugging access on the serial console: root with an empty password, a getty on ttyS0.
passwd -d root
systemctl enable serial-getty@ttyS0.service

# Units a test boot does not need (each costs boot time under TCG or runs a job mid-test):
# periodic maintenance timers, the e2scrub reaper, binfmt_misc (on the critical chain),
# pstore, a getty on tty1 (the console is serial; ttyS0 keeps its getty).
systemctl disable apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
    e2scrub_all.timer fstrim.timer e2scrub_reap.service systemd-pstore.service
systemctl mask systemd-binfmt.service proc-sys-fs-binfmt_misc.automount \
    proc-sys-fs-binfmt_misc.mount getty@tty1.service

# --- boot speed (issue 13): less work for udev, systemd and the kernel's module loader under
# TCG, where every module load and every process costs CPU the boot waits for. ---
# Modules udev would load by alias on a q35 TCG machine with `-cpu max` that no test uses:
# kvm (the CPU's svm/vmx flags), cpufreq, the crypto accelerators (their generic versions are
# built in or load by name; `blacklist` stops only alias loads, `modprobe NAME` still works),
# the EFI pstore backend, PC speaker/joystick/mouse/watchdog/SMBus drivers.
cat > /etc/modprobe.d/50-bootc-py-fixture.conf <<'CONF'
# bootc-py sample image: drivers a virtio test machine does not need (see os-customize.sh).
blacklist kvm
blacklist kvm_amd
blacklist kvm_intel
blacklist irqbypass
blacklist ccp
blacklist powernow_k8
blacklist acpi_cpufreq
blacklist aesni_intel
blacklist ghash_clmulni_intel
blacklist polyval_clmulni
blacklist sha1_ssse3
blacklist sha256_ssse3
blacklist sha512_ssse3
blacklist crc32_pclmul
blacklist crct10dif_pclmul
blacklist efi_pstore
blacklist pcspkr
blacklist joydev
blacklist serio_raw
blacklist psmouse
blacklist iTCO_wdt
blacklist i2c_i801
blacklist lpc_ich
blacklist intel_rapl_msr
blacklist intel_rapl_common
CONF
# Pseudo filesystems and their module loaders no test uses (debugfs, tracefs, hugetlbfs, the
# fuse control fs, configfs; modprobe@drm for a machine without a display).
systemctl mask sys-kernel-debug.mount sys-kernel-tracing.mount dev-hugepages.mount \
    sys-fs-fuse-connections.mount sys-kernel-config.mount modprobe@drm.service \
    modprobe@configfs.service modprobe@fuse.service
# lvm2-monitor runs `vgchange --monitor` before local-fs-pre (3.4 s of a -smp 1 boot, on the
# way to every mount) and again at shutdown: it only hands mirror/snapshot/thin LVs to
# dmeventd, and no test has one (the LVM kickstart's root and /var/srv are linear; the initrd and
# udev's event activation bring them up). The POSIX message-queue fs (2.2 s) has no user here.
systemctl mask lvm2-monitor.service dev-mqueue.mount
# systemd-logind stays, although it costs 1.2 s on the way to multi-user.target (about 3 s to
# the check line at -smp 1): it is what handles the ACPI power button (qemu's system_powerdown,
# a hypervisor's or cloud's "shut down"). Masked, the guest ignored the button
# (test_network_boot_from_tftp_and_a_forwarded_port timed out waiting for the power-off).
# Generators with nothing to generate here (each is a process per boot and per daemon-reload):
# /etc/fstab names every mount (gpt-auto), the init.d scripts all have native units (sysv,
# rc-local), and there is no swap/hibernation, crypttab, integritytab or veritytab.
mkdir -p /etc/systemd/system-generators
for g in systemd-gpt-auto-generator systemd-sysv-generator systemd-rc-local-generator \
        systemd-hibernate-resume-generator systemd-cryptsetup-generator \
        systemd-integritysetup-generator systemd-veritysetup-generator; do
    ln -sf /dev/null "/etc/systemd/system-generators/$g"
done
# --- end boot speed ---

# The menu of the sample image's test disks boots the default at once (bootc-py's own install
# configuration; bootc's /usr/lib/bootc/install would refuse the key). A disk of an image
# without it keeps the default menu timeout.
mkdir -p /usr/lib/bootc-py/install
cat > /usr/lib/bootc-py/install/50-fixture.toml <<'TOML'
[install]
bootloader-timeout = 0
TOML

echo bootc-py-fixture > /etc/hostname
# Nothing of the build host leaks into the image: no resolver, no package sources.
rm -f /etc/resolv.conf
rm -f /etc/apt/sources.list.d/*
echo "# bootc-py sample image: no package sources (it is updated as an image)" \
    > /etc/apt/sources.list
