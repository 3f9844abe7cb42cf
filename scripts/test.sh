#!/usr/bin/env bash
# The README's test command: everything CI runs (.ci/run calls this script first), on any
# Debian/Ubuntu machine with Rust. Installs what these steps use (scripts/install-deps.sh).
# While iterating, run one crate's or one file's tests instead: cargo test -p CRATE --test FILE.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
step() { echo; echo "=== $* ($(($(date +%s) - start)) s)"; }

step "dependencies"
scripts/install-deps.sh
scripts/python-venv.sh
step "format"
cargo fmt --all --check
step "clippy"
cargo clippy --workspace --all-targets -- -D warnings
# Whole-system tests start the real binaries, so build them first.
step "build"
cargo build --workspace --bins
step "tests"
cargo test --workspace --no-fail-fast
step "README: every sh block runs as written against a live fleet, or says why not"
scripts/check-readme.sh
# Shipping: the systemd units verify cleanly; the SD-card writer's guards hold; the image's
# first-boot config applies pifleet.toml; the aarch64 agent, cross-built without a container
# engine, works under qemu-user against an x86 orchestrator.
step "shipping: units, flash guards, first boot"
scripts/verify-units.sh
scripts/test-flash.sh
scripts/test-firstboot.sh
step "aarch64 agent under qemu-user"
scripts/test-aarch64-qemu.sh
step "done"
