#!/usr/bin/env bash
# Installs what scripts/test.sh uses on a fresh Debian/Ubuntu machine (idempotent, quiet when
# everything is there). Add a package here, never a manual step in the README; each one says
# which step needs it.
set -euo pipefail
packages=()
need() { dpkg -s "$1" >/dev/null 2>&1 || packages+=("$1"); }
# systemd-analyze: scripts/verify-units.sh.
need systemd
# /usr/bin/kill: tests send SIGTERM to the real binaries.
need procps
# The status page's browser test (tests/tests/status_page.rs): headless Chromium + WebDriver.
need chromium
need chromium-driver
# The aarch64 agent: its cross build and its run under qemu-user (scripts/build-aarch64.sh,
# scripts/test-aarch64-qemu.sh).
need gcc-aarch64-linux-gnu
need libc6-dev-arm64-cross
need qemu-user
# scripts/test-flash.sh: compressed images.
need xz-utils
# scripts/lib/orchestrator.sh (the aarch64 test): API calls, JSON, a free port; and the
# README's curl examples (scripts/check-readme.sh).
need curl
need jq
need python3
# scripts/python-venv.sh: the gateway tests' venv with the openai and ollama packages.
need python3-venv
if ((${#packages[@]})); then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  echo "installing: ${packages[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${packages[@]}" >/dev/null
fi
