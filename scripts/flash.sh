#!/usr/bin/env bash
# Writes a pifleet SD image to a card, carefully:
#
#   scripts/flash.sh pifleet-0.1.0-arm64.img.xz /dev/sdX [--yes] [--no-verify]
#
# Refuses a partition (give the whole card), a mounted device, the disk holding this system's
# root file system, a non-removable disk (not USB, not an SD/MMC slot, removable flag unset),
# and a card smaller than the image. Shows the card's model and size and asks before writing
# (--yes skips the question, for automation); reads the card back and compares afterwards.
#
# Find the card with `lsblk -d -o NAME,MODEL,SIZE,RM,TRAN` before and after plugging it in.
# Testing hooks (scripts/test-flash.sh): PIFLEET_SYSFS (default /sys), PIFLEET_MOUNTS
# (default /proc/self/mounts), PIFLEET_DEV_DIR (default /dev; there a regular file stands for
# the card).
set -euo pipefail

sysfs=${PIFLEET_SYSFS:-/sys}
mounts=${PIFLEET_MOUNTS:-/proc/self/mounts}
devdir=${PIFLEET_DEV_DIR:-/dev}
fake=0
[ -z "${PIFLEET_DEV_DIR:-}" ] || fake=1

die() { echo "flash: $*" >&2; exit 1; }
usage() { sed -n '2,9p' "$0"; exit "${1:-0}"; }

image="" device="" yes=0 verify=1
while (($#)); do
  case "$1" in
    -y | --yes) yes=1 ;;
    --no-verify) verify=0 ;;
    -h | --help) usage 0 ;;
    -*) echo "flash: unknown option '$1'" >&2; usage 2 ;;
    *)
      if [ -z "$image" ]; then image=$1
      elif [ -z "$device" ]; then device=$1
      else die "too many arguments ('$1')"; fi ;;
  esac
  shift
done
[ -n "$image" ] && [ -n "$device" ] || usage 2
[ -f "$image" ] || die "image '$image' not found"

# The image's size, and a command that streams it uncompressed.
case "$image" in
  *.xz)
    command -v xz >/dev/null || die "xz not found (apt-get install xz-utils)"
    stream() { xz -dc "$image"; }
    image_size=$(xz --robot --list "$image" | awk '$1 == "totals" { print $5 }') ;;
  *)
    stream() { cat "$image"; }
    image_size=$(stat -c %s "$image") ;;
esac
[ -n "$image_size" ] && [ "$image_size" -gt 0 ] || die "cannot read the size of '$image'"

# The device: /dev/NAME (or NAME) of a whole disk.
name=$(basename "$device")
target="$devdir/$name"
[ -e "$target" ] || die "$device does not exist (see lsblk)"
if ((fake)); then
  [ -f "$target" ] || die "$target is not a test stand-in file"
else
  [ -b "$target" ] || die "$device is not a block device"
fi
node="$sysfs/class/block/$name"
[ -e "$node" ] || die "$device is not known to the kernel ($node missing)"
[ ! -e "$node/partition" ] ||
  die "$device is a partition: give the whole card (e.g. /dev/$(basename "$(dirname "$(readlink -f "$node")")"))"

# Every kernel name on this disk: the disk and its partitions.
names=("$name")
for p in "$(readlink -f "$node")"/*; do
  [ -e "$p/partition" ] && names+=("$(basename "$p")")
done
on_disk() { # /dev/whatever -> is it this disk or one of its partitions?
  local n
  n=$(basename "$(readlink -f "$1" 2>/dev/null || echo "$1")")
  [[ " ${names[*]} " == *" $n "* ]]
}

# The disk holding / (this system) - refuse it whatever else it looks like.
root_src=$(awk '$2 == "/" { print $1 }' "$mounts" | tail -1)
if [ -n "$root_src" ] && on_disk "$root_src"; then
  die "$device holds this system's root file system ($root_src): refusing"
fi
while read -r src mnt _; do
  on_disk "$src" && die "$device is in use: $src is mounted on $mnt (unmount it first: sudo umount $src)"
done <"$mounts"
if [ -z "${PIFLEET_MOUNTS:-}" ] && [ -r /proc/swaps ]; then
  while read -r src _; do
    on_disk "$src" && die "$device is in use as swap ($src)"
  done < <(tail -n +2 /proc/swaps)
fi

# Removable: the removable flag, a USB reader, or an SD/MMC slot.
removable=$(cat "$node/removable" 2>/dev/null || echo 0)
path=$(readlink -f "$node")
if [ "$removable" != 1 ] && [[ "$path" != */usb* ]] && [[ "$name" != mmcblk* ]]; then
  die "$device is not a removable disk (not USB, not an SD slot): refusing"
fi

sectors=$(cat "$node/size")
dev_size=$((sectors * 512))
model=$(cat "$node/device/vendor" "$node/device/model" "$node/device/name" 2>/dev/null | xargs || true)
[ -n "$model" ] || model="(unknown model)"
gb() { awk -v b="$1" 'BEGIN { printf "%.1f GB", b / 1e9 }'; }
((dev_size > 0)) || die "$device has no medium (size 0): is the card inserted?"
((image_size <= dev_size)) || die "$device ($(gb "$dev_size")) is smaller than the image ($(gb "$image_size"))"

echo "image:  $image ($(gb "$image_size") uncompressed)"
echo "device: $device: $model, $(gb "$dev_size")"
echo "EVERYTHING ON $device WILL BE ERASED."
if ((yes == 0)); then
  if ! { exec 3</dev/tty; } 2>/dev/null; then
    die "no terminal to confirm on: re-run with --yes to write without asking"
  fi
  printf 'Type "yes" to write %s to %s: ' "$(basename "$image")" "$device"
  read -r answer <&3 || answer=""
  exec 3<&-
  [ "$answer" = yes ] || die "not confirmed; nothing written"
fi

echo "writing..."
if ((fake)); then
  stream | dd of="$target" bs=4M conv=notrunc status=none
else
  stream | dd of="$target" bs=4M conv=fsync iflag=fullblock status=progress
  sync
fi

if ((verify)); then
  echo "verifying..."
  ((fake)) || blockdev --flushbufs "$target" 2>/dev/null || true
  want=$(stream | sha256sum | cut -d' ' -f1)
  got=$(head -c "$image_size" "$target" | sha256sum | cut -d' ' -f1)
  [ "$want" = "$got" ] || die "verification FAILED: $device does not read back as the image (bad card or reader?)"
  echo "verified: $device reads back as the image (sha256 $want)"
fi
echo "done: edit pifleet.toml on the card's RASPIFIRM partition, then boot the Pi"
