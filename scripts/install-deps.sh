#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian/Ubuntu machine (idempotent, quiet when
# everything is there). Add a package here, never a manual step in the README.
set -euo pipefail
packages=()
need() { dpkg -s "$1" >/dev/null 2>&1 || packages+=("$1"); }
need systemd
# /usr/bin/kill: tests send SIGTERM to the real binaries.
need procps
# The status page's browser test (tests/tests/status_page.rs): headless Chromium + WebDriver.
need chromium
need chromium-driver
# Shipping: the aarch64 cross build and running it under qemu-user (scripts/build-aarch64.sh,
# scripts/test-aarch64-qemu.sh); systemd-analyze for scripts/verify-units.sh.
need gcc-aarch64-linux-gnu
need libc6-dev-arm64-cross
need qemu-user
need xz-utils
need curl
need jq
if ((${#packages[@]})); then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  echo "installing: ${packages[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${packages[@]}" >/dev/null
fi
