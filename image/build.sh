#!/usr/bin/env bash
# Builds the flashable pifleet SD image for Raspberry Pi 3/4/400/CM4/Zero 2 W (64-bit):
#
#   image/build.sh [--agent PATH] [--ssh] [--out DIR] [--rootfs-only]
#
# -> DIR/pifleet-<version>-arm64.img.xz (default DIR: target/image)
#
# Debian bookworm arm64 (main + non-free-firmware): raspi-firmware, linux-image-arm64,
# systemd-networkd (DHCP on Ethernet, Wi-Fi from pifleet.toml), the pifleet agent and its unit,
# the hardware watchdog armed. No loop devices: the ext4 root is made with `mkfs.ext4 -d`, the
# FAT boot partition with mkfs.vfat + mcopy, the partition table with sfdisk on the image file,
# and both are put in place with dd conv=notrunc.
#
# Two stages: (1) mmdebstrap (runs the arm64 maintainer scripts under qemu-user binfmt; ~10-20
# min, cached in DIR/cache by the hash of its inputs), (2) assembly on the host (about a minute):
# the agent binary, units and overlay, then the partitions and the compressed image.
#
# --agent PATH    the aarch64 pifleet-agent (default: build it with scripts/build-aarch64.sh)
# --ssh           include openssh-server (log in with keys from authorized_keys on the card)
# --out DIR       where the image (and the rootfs cache) go
# --rootfs-only   stop after stage 1 (warms the cache)
# --no-compress   leave the raw .img only (quicker, for scripts/test-image.sh while developing)
#
# The Debian mirror is the one this machine's apt uses (read from /etc/apt/sources.list*);
# PIFLEET_MIRROR / PIFLEET_SECURITY_MIRROR override it. Needs root (file ownership in the image).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
cd "$repo"

agent=""
ssh=0
out=target/image
rootfs_only=0
compress=1
while (($#)); do
  case "$1" in
    --agent) agent=${2:?"--agent needs a path"}; shift 2 ;;
    --ssh) ssh=1; shift ;;
    --out) out=${2:?"--out needs a directory"}; shift 2 ;;
    --rootfs-only) rootfs_only=1; shift ;;
    --no-compress) compress=0; shift ;;
    -h | --help) sed -n '2,28p' "$0"; exit 0 ;;
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
mkdir -p "$out/cache"
out=$(cd "$out" && pwd)

# --- host tools ---------------------------------------------------------------------------
need=()
for pair in mmdebstrap:mmdebstrap arch-test:arch-test qemu-aarch64-static:qemu-user-static \
  mkfs.vfat:dosfstools mcopy:mtools mkfs.ext4:e2fsprogs sfdisk:fdisk xz:xz-utils; do
  command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
if ((${#need[@]})); then
  log "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# The arm64 maintainer scripts run under qemu-user through binfmt_misc; register it when the
# host has not (containers and CI machines often start without systemd-binfmt).
if ! arch-test arm64 >/dev/null 2>&1; then
  [ -e /proc/sys/fs/binfmt_misc/register ] ||
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc ||
    die "cannot mount binfmt_misc (needed to run arm64 package scripts)"
  conf=/usr/lib/binfmt.d/qemu-aarch64.conf
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || cat "$conf" >/proc/sys/fs/binfmt_misc/register
  arch-test arm64 >/dev/null || die "arm64 binaries still do not run (check $conf and qemu-user-static)"
fi

# --- the Debian mirror this machine uses ---------------------------------------------------
# deb822 (*.sources) and one-line (sources.list) formats; the first URI serving "$suite" and
# the first serving "$suite-security".
apt_uri_for() { # suite
  local want=$1
  {
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      awk -v s="$want" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i+1) == s) print $i }'
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -e "$f" ] || continue
      awk -v s="$want" '
        /^[[:space:]]*$/ { if (u != "" && ok) print u; u = ""; ok = 0; next }
        /^URIs:/ { u = $2 }
        /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) ok = 1 }
        END { if (u != "" && ok) print u }' "$f"
    done
  } | head -1
}
mirror=${PIFLEET_MIRROR:-$(apt_uri_for "$suite")}
security=${PIFLEET_SECURITY_MIRROR:-$(apt_uri_for "$suite-security")}
[ -n "$mirror" ] || die "no apt source for '$suite' on this machine; set PIFLEET_MIRROR to a Debian mirror URL"
sources=("deb $mirror $suite main non-free-firmware" "deb $mirror $suite-updates main non-free-firmware")
[ -z "$security" ] || sources+=("deb $security $suite-security main non-free-firmware")

# --- stage 1: the Debian root file system (cached) -----------------------------------------
packages=(
  systemd-sysv udev kmod dbus systemd-resolved systemd-timesyncd
  linux-image-arm64 raspi-firmware firmware-brcm80211 wpasupplicant
  ca-certificates iproute2 iputils-ping netbase procps fdisk zstd
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
chroot "$r" groupadd --system gpio
chroot "$r" useradd --system --user-group --groups gpio --home-dir /var/lib/pifleet-agent \
  --no-create-home --shell /usr/sbin/nologin --comment "pifleet agent" pifleet
rm -f "$r/etc/machine-id" "$r/var/lib/dbus/machine-id"
touch "$r/etc/machine-id"
rm -rf "$r/var/cache/apt/archives/"*.deb "$r/var/lib/apt/lists/"*_Packages "$r/var/log/"*.log
EOF
)
key=$(printf '%s\n' "$suite" "${sources[@]}" "${packages[*]}" "$essential_hook" "$customize_hook" | sha256sum | cut -c1-16)
rootfs_tar="$out/cache/rootfs-$suite-arm64-$key.tar"
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
    "$suite" "$rootfs_tar.part" "${sources[@]}"
  mv "$rootfs_tar.part" "$rootfs_tar"
  log "stage 1: done in $(($(date +%s) - t)) s ($(du -h "$rootfs_tar" | cut -f1))"
fi
((rootfs_only == 0)) || exit 0

# --- stage 2: the pifleet layer (on the host, no emulation) ---------------------------------
if [ -z "$agent" ]; then
  scripts/build-aarch64.sh
  agent=target/aarch64-unknown-linux-gnu/release/pifleet-agent
fi
[ -x "$agent" ] || die "agent binary '$agent' not found or not executable"
file -b "$agent" 2>/dev/null | grep -q 'ARM aarch64' || die "'$agent' is not an aarch64 binary"

t=$(date +%s)
work=$(mktemp -d "$out/work.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir "$root"
tar -C "$root" --numeric-owner -xpf "$rootfs_tar"

install -D -m 0755 "$agent" "$root/usr/local/bin/pifleet-agent"
install -D -m 0644 systemd/pifleet-agent.service "$root/etc/systemd/system/pifleet-agent.service"
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
  systemd-networkd-wait-online.service pifleet-config.service pifleet-agent.service; do
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
