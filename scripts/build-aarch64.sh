#!/usr/bin/env bash
# Cross-builds the release pifleet-agent for the Pi without any container engine:
# a rustup target plus Debian's cross gcc as linker (and C compiler for crates that build C).
#
#   scripts/build-aarch64.sh                       # aarch64-unknown-linux-gnu (64-bit Pi OS / Debian)
#   TARGET=armv7-unknown-linux-gnueabihf scripts/build-aarch64.sh   # 32-bit Pi OS
#   scripts/build-aarch64.sh -p pifleet-orchestrator # another package (default pifleet-agent)
#
# Prints the path and size of the binary. Installs the missing Debian packages itself.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${TARGET:-aarch64-unknown-linux-gnu}
package=pifleet-agent
while (($#)); do
  case "$1" in
    -p | --package) package=${2:?"$1 needs a package name"}; shift 2 ;;
    -h | --help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "build-aarch64: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done

case "$target" in
  aarch64-unknown-linux-gnu) gnu=aarch64-linux-gnu debarch=arm64 ;;
  armv7-unknown-linux-gnueabihf) gnu=arm-linux-gnueabihf debarch=armhf ;;
  *) echo "build-aarch64: unsupported TARGET '$target' (aarch64-unknown-linux-gnu or armv7-unknown-linux-gnueabihf)" >&2; exit 2 ;;
esac

if ! command -v "$gnu-gcc" >/dev/null; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  echo "build-aarch64: installing gcc-$gnu (Debian's cross compiler)"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "gcc-$gnu" "libc6-dev-$debarch-cross" >/dev/null
fi

if ! rustup target list --installed | grep -qx "$target"; then
  echo "build-aarch64: rustup target add $target"
  rustup target add "$target"
fi

# Cargo's per-target variables: the linker, plus CC/AR for build scripts that compile C (ring).
upper=$(echo "$target" | tr 'a-z-' 'A-Z_')
lower=${target//-/_}
export "CARGO_TARGET_${upper}_LINKER=$gnu-gcc"
export "CC_${lower}=$gnu-gcc" "AR_${lower}=$gnu-ar"

cargo build --release --locked --target "$target" -p "$package"

bin="target/$target/release/$package"
[ -x "$bin" ] || { echo "build-aarch64: expected binary $bin is missing" >&2; exit 1; }
size=$(stat -c %s "$bin")
echo "build-aarch64: $bin $size bytes ($(awk -v s="$size" 'BEGIN { printf "%.2f MB", s / 1000000 }'))"
file "$bin" 2>/dev/null || true
