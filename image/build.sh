#!/usr/bin/env bash
# Builds the flashable pifleet SD image for Raspberry Pi 3/4/400/CM4/Zero 2 W (64-bit):
#
#   image/build.sh [--deb PATH] [--ssh] [--out DIR] [--rootfs-only] [--no-compress]
#
# -> DIR/pifleet-<version>-arm64.img.xz (default DIR: target/image)
#
# Debian bookworm arm64 (main + non-free-firmware): raspi-firmware, linux-image-arm64,
# systemd-networkd (DHCP on Ethernet, Wi-Fi from pifleet.toml), the pifleet agent installed from
# its Debian package (the same package as for Raspberry Pi OS), the hardware watchdog armed. No loop devices: the ext4 root is made with `mkfs.ext4 -d`, the
# FAT boot partition with mkfs.vfat + mcopy, the partition table with sfdisk on the image file,
# and both are put in place with dd conv=notrunc.
#
# Two stages: (1) mmdebstrap (runs the arm64 maintainer scripts under qemu-user binfmt; 5-20
# min, cached in /var/cache/pifleet by the hash of its inputs, see scripts/lib/debian.sh),
# (2) about a minute: the agent's package (dpkg in the chroot), units and overlay, then the
# partitions and the compressed image.
#
# --deb PATH      the agent's arm64 package (default: build it with scripts/build-deb.sh arm64)
# --ssh           include openssh-server (log in with keys from authorized_keys on the card)
# --out DIR       where the image goes
# --rootfs-only   stop after stage 1 (warms the cache)
# --no-compress   leave the raw .img only (quicker, for scripts/test-image.sh while developing)
#
# The Debian mirror is the one this machine's apt uses (read from /etc/apt/sources.list*);
# PIFLEET_MIRROR / PIFLEET_SECURITY_MIRROR override it. Needs root (file ownership in the image).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
cd "$repo"
# shellcheck source=scripts/lib/debian.sh
. scripts/lib/debian.sh

deb=""
ssh=0
out=target/image
rootfs_only=0
compress=1
while (($#)); do
  case "$1" in
    --deb) deb=${2:?"--deb needs a path"}; shift 2 ;;
    --ssh) ssh=1; shift ;;
    --out) out=${2:?"--out needs a directory"}; shift 2 ;;
    --rootfs-only) rootfs_only=1; shift ;;
    --no-compress) compress=0; shift ;;
    -h | --help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "build-image: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done

log() { echo "build-image: $*" >&2; }
die() { log "$*"; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root (file ownership inside the image); run with sudo"

version=$(awk -F'"' '/^\[workspace.package\]/ { w = 1 } w && /^version/ { print $2; exit }' Cargo.toml)
[ -n "$version" ] || die "cannot read the workspace version from Cargo.toml"
suite=bookworm
start=$(date +%s)
mkdir -p "$out"
out=$(cd "$out" && pwd)

# --- host tools, arm64 emulation, the Debian mirror this machine uses ------------------------
apt_need mmdebstrap:mmdebstrap mkfs.vfat:dosfstools mcopy:mtools mkfs.ext4:e2fsprogs sfdisk:fdisk \
  xz:xz-utils file:file
# The arm64 maintainer scripts (stage 1, and the agent's package in stage 2) run in a chroot.
arm64_binfmt
debian_sources "$suite" "main non-free-firmware"

# --- stage 1: the Debian root file system (cached) -----------------------------------------
packages=(
  systemd-sysv udev kmod dbus systemd-resolved systemd-timesyncd
  linux-image-arm64 raspi-firmware firmware-brcm80211 wpasupplicant
  ca-certificates iproute2 iputils-ping netbase procps fdisk zstd adduser
)
((ssh == 0)) || packages+=(openssh-server)

# Initramfs: MODULES=most takes ~26 min under qemu-user; a list takes under a minute. The list
# covers the Pi's SD/eMMC/USB storage and qemu's virtio (the boot test); drivers the kernel
# lacks are skipped by mkinitramfs.
modules=(
  ext4 vfat nls_cp437 nls_ascii crc32c_generic
  mmc_block sdhci_iproc sdhci_pltfm bcm2835 bcm2835_dma gpio_regulator gpio_raspberrypi_exp
  reset_raspberrypi clk_raspberrypi pwrseq_simple
  pcie_brcmstb xhci_pci xhci_plat_hcd dwc2 usb_storage uas sd_mod
  virtio_pci virtio_mmio virtio_blk virtio_scsi virtio_net
)
initramfs_hook=$(
  cat <<EOF
#!/bin/sh
# pifleet: the drivers needed to find the root file system (see /etc/initramfs-tools/conf.d/pifleet)
case "\$1" in prereqs) exit 0 ;; esac
. /usr/share/initramfs-tools/hook-functions
for m in ${modules[*]}; do manual_add_modules "\$m"; done
EOF
)
essential_hook=$(
  cat <<EOF
set -e
mkdir -p "\$1/etc/initramfs-tools/conf.d" "\$1/etc/initramfs-tools/hooks"
echo MODULES=list > "\$1/etc/initramfs-tools/conf.d/pifleet"
cat > "\$1/etc/initramfs-tools/hooks/pifleet" <<'HOOK'
$initramfs_hook
HOOK
chmod 755 "\$1/etc/initramfs-tools/hooks/pifleet"
EOF
)
# raspi-firmware writes root=/dev/mmcblk0p2 unless ROOTPART says otherwise; point it at the
# label (works from SD, eMMC, USB and virtio alike), then regenerate cmdline.txt/config.txt.
customize_hook=$(
  cat <<'EOF'
set -e
r="$1"
sed -i -e 's|^#\?ROOTPART=.*|ROOTPART=LABEL=RASPIROOT|' \
  -e 's|^#\?CONSOLES=.*|CONSOLES="tty0 ttyS1,115200"|' "$r/etc/default/raspi-firmware"
chroot "$r" env DEB_MAINT_PARAMS=configure /etc/kernel/postinst.d/z50-raspi-firmware
grep -q 'root=LABEL=RASPIROOT' "$r/boot/firmware/cmdline.txt"
# Before the agent's package (stage 2), whose postinst puts its user in gpio where that exists.
chroot "$r" groupadd --system gpio
rm -f "$r/etc/machine-id" "$r/var/lib/dbus/machine-id"
touch "$r/etc/machine-id"
rm -rf "$r/var/cache/apt/archives/"*.deb "$r/var/lib/apt/lists/"*_Packages "$r/var/log/"*.log
EOF
)
rootfs_tar=$(rootfs_cache_path "image-rootfs-$suite-arm64" "$suite" "${sources[@]}" "${packages[*]}" \
  "$essential_hook" "$customize_hook")
if [ -f "$rootfs_tar" ] && [ -s "$rootfs_tar" ]; then
  log "stage 1: cached root file system $rootfs_tar"
else
  log "stage 1: mmdebstrap $suite arm64 (${#packages[@]} packages; runs arm64 package scripts under qemu-user)"
  t=$(date +%s)
  mmdebstrap --arch=arm64 --variant=minbase --format=tar --components=main,non-free-firmware \
    --include="$(
      IFS=,
      echo "${packages[*]}"
    )" \
    --aptopt='Acquire::Languages "none"' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --essential-hook="$essential_hook" --customize-hook="$customize_hook" \
    "$suite" "$rootfs_tar.part.$$" "${sources[@]}"
  mv "$rootfs_tar.part.$$" "$rootfs_tar"
  log "stage 1: done in $(($(date +%s) - t)) s ($(du -h "$rootfs_tar" | cut -f1))"
fi
((rootfs_only == 0)) || exit 0

# --- stage 2: the pifleet layer ----------------------------------------------------------------
if [ -z "$deb" ]; then
  deb=$(scripts/build-deb.sh arm64)
fi
[ -f "$deb" ] || die "agent package '$deb' not found"
[ "$(dpkg-deb --field "$deb" Architecture)" = arm64 ] || die "'$deb' is not an arm64 package"

t=$(date +%s)
work=$(mktemp -d "$out/work.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir "$root"
tar -C "$root" --numeric-owner -xpf "$rootfs_tar"

# The agent the way a Pi OS user installs it: its package's maintainer scripts make the pifleet
# user (in gpio), own the config and enable the unit; no systemd runs here, so nothing starts.
cp "$deb" "$root/tmp/pifleet-agent.deb"
chroot "$root" dpkg -i /tmp/pifleet-agent.deb >"$work/dpkg.log" 2>&1 || die "dpkg -i of $deb in the image failed: $(cat "$work/dpkg.log")"
rm "$root/tmp/pifleet-agent.deb"
[ -L "$root/etc/systemd/system/multi-user.target.wants/pifleet-agent.service" ] ||
  die "the agent's package did not enable pifleet-agent.service"
chroot "$root" id -Gn pifleet | grep -qw gpio || die "the agent's package did not put pifleet in group gpio"
install -D -m 0644 systemd/system.conf.d/pifleet-watchdog.conf "$root/etc/systemd/system.conf.d/pifleet-watchdog.conf"
cp -a --no-preserve=ownership image/overlay/. "$root/"
chown -R 0:0 "$root/etc/systemd" "$root/usr/local"
chmod 0755 "$root/usr/local/lib/pifleet/"*
mkdir -p "$root/etc/pifleet"
printf '%s\n' "pifleet $version" >"$root/etc/pifleet/image-version"
echo pifleet >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tpifleet\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
ln -sf ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
for unit in systemd-networkd.service systemd-resolved.service systemd-timesyncd.service \
  systemd-networkd-wait-online.service pifleet-config.service; do
  systemctl --root="$root" enable "$unit" >/dev/null 2>&1 || die "cannot enable $unit in the image"
done
if ((ssh)); then
  rm -f "$root"/etc/ssh/ssh_host_*  # generated per card at first boot (pifleet-config)
fi

# The boot partition: everything raspi-firmware put in /boot/firmware, plus the config template.
boot="$work/boot"
mv "$root/boot/firmware" "$boot"
mkdir "$root/boot/firmware"
install -m 0644 image/pifleet.toml "$boot/pifleet.toml"
grep -q 'root=LABEL=RASPIROOT' "$boot/cmdline.txt" || die "cmdline.txt does not boot LABEL=RASPIROOT: $(cat "$boot/cmdline.txt")"

# --- partitions and image -------------------------------------------------------------------
mib=$((1024 * 1024))
boot_mib=256
root_used_mib=$(($(du -s --block-size=1M "$root" | cut -f1)))
root_mib=$((root_used_mib + root_used_mib / 4 + 160)) # grown to the card's size at first boot
log "stage 2: boot ${boot_mib} MiB (uses $(du -s --block-size=1M "$boot" | cut -f1) MiB), root ${root_mib} MiB (uses ${root_used_mib} MiB)"

mkfs.vfat -F 32 -n RASPIFIRM -C "$work/boot.vfat" $((boot_mib * 1024)) >/dev/null
mcopy -s -p -m -i "$work/boot.vfat" "$boot"/* ::/
mkfs.ext4 -q -F -L RASPIROOT -d "$root" -E root_owner=0:0 "$work/root.ext4" "${root_mib}M"

img="$out/pifleet-$version-arm64.img"
rm -f "$img" "$img.xz"
boot_start_mib=4
root_start_mib=$((boot_start_mib + boot_mib))
truncate -s $(((root_start_mib + root_mib) * mib)) "$img"
sfdisk --quiet "$img" <<EOF
label: dos
start=$((boot_start_mib * 2048)), size=$((boot_mib * 2048)), type=c, bootable
start=$((root_start_mib * 2048)), size=$((root_mib * 2048)), type=83
EOF
dd if="$work/boot.vfat" of="$img" bs=1M seek=$boot_start_mib conv=notrunc,sparse status=none
dd if="$work/root.ext4" of="$img" bs=1M seek=$root_start_mib conv=notrunc,sparse status=none
raw_size=$(stat -c %s "$img")
log "stage 2: assembled in $(($(date +%s) - t)) s"
if ((compress == 0)); then
  log "done in $(($(date +%s) - start)) s: $img (raw $((raw_size / mib)) MiB)"
  echo "$img"
  exit 0
fi
t=$(date +%s)
xz -T0 -6 --keep --force "$img"
log "compressed in $(($(date +%s) - t)) s"
log "done in $(($(date +%s) - start)) s: $img.xz"
log "raw $((raw_size / mib)) MiB, compressed $(($(stat -c %s "$img.xz") / mib)) MiB ($(stat -c %s "$img.xz") bytes)"
echo "$img.xz"
