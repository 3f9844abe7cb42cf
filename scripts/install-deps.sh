#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian/Ubuntu machine (idempotent, quiet when
# everything is there). Add a package here, never a manual step in the README.
set -euo pipefail
packages=()
need() { dpkg -s "$1" >/dev/null 2>&1 || packages+=("$1"); }
need systemd
# The status page's browser test (tests/tests/status_page.rs): headless Chromium + WebDriver.
need chromium
need chromium-driver
if ((${#packages[@]})); then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  echo "installing: ${packages[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${packages[@]}" >/dev/null
fi
