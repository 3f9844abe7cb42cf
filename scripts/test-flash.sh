#!/usr/bin/env bash
# Tests scripts/flash.sh without an SD card: a fake /sys/class/block tree and mount table,
# regular files standing for the disks. Every refusal path, then a real write + verify.
set -euo pipefail
cd "$(dirname "$0")/.."

t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
sys="$t/sys" dev="$t/dev"
mkdir -p "$sys/class/block" "$dev"

# disk NAME SIZE_SECTORS REMOVABLE BUS [PARTITIONS...]: a disk as sysfs shows it.
disk() {
  local name=$1 size=$2 rm=$3 bus=$4 d p
  shift 4
  d="$sys/devices/$bus/block/$name"
  mkdir -p "$d/device"
  echo "$size" >"$d/size"
  echo "$rm" >"$d/removable"
  echo "Test" >"$d/device/vendor"
  echo "Disk $name" >"$d/device/model"
  ln -s "../../devices/$bus/block/$name" "$sys/class/block/$name"
  truncate -s $((size * 512)) "$dev/$name"
  for p in "$@"; do
    mkdir -p "$d/$p"
    echo 1 >"$d/$p/partition"
    ln -s "../../devices/$bus/block/$name/$p" "$sys/class/block/$p"
    : >"$dev/$p"
  done
}
disk nvme0n1 2000000 0 pci0000:00/nvme nvme0n1p1 nvme0n1p2   # the system disk
disk sda 2000000 0 pci0000:00/ata1 sda1                      # an internal data disk
disk sdb 65536 1 pci0000:00/usb1/1-1 sdb1 sdb2               # a USB card reader, the card
disk sdc 65536 1 pci0000:00/usb1/1-2 sdc1                    # another card, mounted
disk sdd 64 1 pci0000:00/usb1/1-3                             # a card too small
disk mmcblk0 65536 0 platform/mmc0 mmcblk0p1                  # a built-in SD slot
cat >"$t/mounts" <<'EOF'
/dev/nvme0n1p2 / ext4 rw 0 0
/dev/nvme0n1p1 /boot/efi vfat rw 0 0
/dev/sdc1 /media/user/RASPIFIRM vfat rw 0 0
tmpfs /tmp tmpfs rw 0 0
EOF

# A small image: 16 MiB with recognisable content, and its .xz.
img="$t/pifleet-test-arm64.img"
head -c $((16 * 1024 * 1024)) /dev/urandom >"$img"
xz -T1 -0 --keep "$img"

export PIFLEET_SYSFS="$sys" PIFLEET_MOUNTS="$t/mounts" PIFLEET_DEV_DIR="$dev"
passed=0 failed=0
ok() { echo "ok: $1"; passed=$((passed + 1)); }
bad() { echo "FAILED: $1"; failed=$((failed + 1)); }

# refuses NAME EXPECTED_MESSAGE ARGS...: flash.sh must exit non-zero saying EXPECTED_MESSAGE.
refuses() {
  local what=$1 want=$2 out
  shift 2
  if out=$(scripts/flash.sh "$@" </dev/null 2>&1); then
    bad "$what: flash.sh accepted it: $out"
  elif [[ "$out" != *"$want"* ]]; then
    bad "$what: expected '$want', got: $out"
  else
    ok "$what"
  fi
}

before=$(sha256sum "$dev/sda" | cut -d' ' -f1)
refuses "a partition" "is a partition: give the whole card (e.g. /dev/sdb)" "$img.xz" /dev/sdb1 --yes
refuses "the system disk" "holds this system's root file system" "$img.xz" /dev/nvme0n1 --yes
refuses "a mounted card" "is in use: /dev/sdc1 is mounted on /media/user/RASPIFIRM" "$img.xz" /dev/sdc --yes
refuses "a non-removable disk" "is not a removable disk" "$img.xz" /dev/sda --yes
refuses "a card smaller than the image" "is smaller than the image" "$img.xz" /dev/sdd --yes
refuses "a missing device" "does not exist" "$img.xz" /dev/sdz --yes
refuses "a missing image" "not found" "$t/nope.img.xz" /dev/sdb --yes
if [ -e /dev/tty ] && (exec 3</dev/tty) 2>/dev/null; then
  echo "skip: confirmation refusal (this shell has a terminal)"
else
  refuses "no confirmation without a terminal" "re-run with --yes" "$img.xz" /dev/sdb
fi
[ "$(sha256sum "$dev/sda" | cut -d' ' -f1)" = "$before" ] && ok "refused runs wrote nothing" || bad "a refused run wrote to a disk"

# The real thing: the compressed image onto the USB card, then the raw image onto the SD slot.
if out=$(scripts/flash.sh "$img.xz" /dev/sdb --yes 2>&1) && [[ "$out" == *"verified"* ]] &&
  cmp -s -n $((16 * 1024 * 1024)) "$img" "$dev/sdb"; then
  ok "writes and verifies an .img.xz on a USB card ($(grep -o 'device: .*' <<<"$out"))"
else
  bad "write .img.xz to /dev/sdb: $out"
fi
if out=$(scripts/flash.sh "$img" mmcblk0 -y 2>&1) && cmp -s -n $((16 * 1024 * 1024)) "$img" "$dev/mmcblk0"; then
  ok "writes a raw .img to a built-in SD slot"
else
  bad "write .img to mmcblk0: $out"
fi

echo "flash: $passed passed, $failed failed"
((failed == 0))
