#!/usr/bin/env bash
# Builds the Debian package of the agent with cargo-deb (metadata in agent/Cargo.toml,
# maintainer scripts in packaging/deb/, the unit from systemd/):
#
#   scripts/build-deb.sh [arm64|armhf|amd64|all]    (default: all)
#   -> target/deb/pifleet-agent_<version>_<arch>.deb, one per architecture
#
# arm64: 64-bit Raspberry Pi OS / Debian (Pi 3, 4, 400, 5, CM4, Zero 2 W); armhf: 32-bit
# Raspberry Pi OS on ARMv7 or later (Pi 2 and newer; not the ARMv6 Pi 1 / Zero); amd64: a PC.
# The ARM binaries are cross-built without containers (scripts/build-aarch64.sh). Checks before
# packaging: packaging/deb/changelog names this version, and the binary needs no newer glibc
# than the package's Depends says. Installs cargo-deb (crates.io) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "build-deb: $*" >&2; }
die() { log "$*"; exit 1; }

arches=()
case "${1:-all}" in
  all) arches=(arm64 armhf amd64) ;;
  arm64 | armhf | amd64) arches=("$1") ;;
  -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
  *) die "unknown architecture '$1' (arm64, armhf, amd64 or all)" ;;
esac

if ! cargo deb --version >/dev/null 2>&1; then
  log "installing cargo-deb (cargo install cargo-deb --locked)"
  cargo install cargo-deb --locked
fi
command -v readelf >/dev/null || die "readelf not found (apt-get install binutils)"

version=$(awk -F'"' '/^\[workspace.package\]/ { w = 1 } w && /^version/ { print $2; exit }' Cargo.toml)
[ -n "$version" ] || die "cannot read the workspace version from Cargo.toml"
top=$(sed -n '1s/^pifleet-agent (\([^)]*\)).*/\1/p' packaging/deb/changelog)
[ "$top" = "$version" ] ||
  die "packaging/deb/changelog starts with version '$top' but Cargo.toml says $version: add a changelog entry for $version at its top"
floor=$(sed -n 's/^depends = ".*libc6 (>= \([0-9.]*\)).*/\1/p' agent/Cargo.toml)
[ -n "$floor" ] || die "agent/Cargo.toml [package.metadata.deb] depends names no libc6 (>= X) floor"
mkdir -p target/deb

for arch in "${arches[@]}"; do
  case "$arch" in
    arm64) target=aarch64-unknown-linux-gnu ;;
    armhf) target=armv7-unknown-linux-gnueabihf ;;
    amd64) target=x86_64-unknown-linux-gnu ;;
  esac
  t=$(date +%s)
  if [ "$arch" = amd64 ]; then
    cargo build --release --locked --target "$target" -p pifleet-agent
  else
    TARGET=$target scripts/build-aarch64.sh >/dev/null
  fi
  bin="target/$target/release/pifleet-agent"
  needs=$(readelf -W --dyn-syms "$bin" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
  [ "$(printf '%s\n' "$needs" "$floor" | sort -V | tail -1)" = "$floor" ] ||
    die "$bin needs glibc $needs but the package says libc6 (>= $floor): raise the floor in agent/Cargo.toml's depends (and the README)"
  deb="target/deb/pifleet-agent_${version}_${arch}.deb"
  # --no-build: the binary above (release profile: LTO, stripped). The version is the
  # workspace's, without a Debian revision: the package is built here, from this tree.
  cargo deb -p pifleet-agent --no-build --target "$target" --no-strip \
    --output "$deb" >/dev/null
  [ -f "$deb" ] || die "cargo deb did not write $deb"
  got=$(dpkg-deb --field "$deb" Architecture)
  [ "$got" = "$arch" ] || die "$deb says Architecture: $got, expected $arch"
  log "$deb ($(stat -c %s "$deb") bytes, $(($(date +%s) - t)) s): Depends: $(dpkg-deb --field "$deb" Depends)"
  echo "$deb"
done
