#!/usr/bin/env bash
# The README's test command: everything a developer or CI needs to trust a change.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# Whole-system tests start the real binaries, so build them first.
cargo build --workspace --bins
cargo test --workspace
# Shipping: the systemd units verify cleanly; the SD-card writer's guards hold; the image's
# first-boot config applies pifleet.toml.
scripts/verify-units.sh
scripts/test-flash.sh
scripts/test-firstboot.sh
