#!/usr/bin/env bash
# Boot test of the SD image: boots it under qemu-system-aarch64 (-M virt -cpu cortex-a72, TCG)
# the way a user would use it - pifleet.toml written onto the card's FAT partition - against a
# real orchestrator on this machine's loopback. Passes when the node registers, heartbeats with
# real metrics and completes a native task, and then - with the orchestrator's join token
# changed, so only the node's stored credential gets it in - comes back under the same id
# after the power button and a second power-on from the same card, and completes another
# task; fails with the console log otherwise.
#
#   scripts/test-image.sh [IMAGE]   (default: target/image/pifleet-<version>-arm64.img.xz)
#
# Networking: qemu user-mode networking with restrict=on: the guest reaches nothing but the
# orchestrator, forwarded from 10.0.2.100:5000 in the guest to 127.0.0.1:<free port> here.
# The card is enlarged by 1 GiB first, so the first-boot root-growing runs too. A watchdog
# device (i6300esb) lets the image's RuntimeWatchdogSec= arm it; under emulation on a loaded
# machine PID 1 can stall past 14 s, so a firing is logged (qemu.log), not a reset.
# Takes ~3-8 minutes on 2 cores (TCG emulation, two boots). BOOT_TIMEOUT (s, default 480)
# bounds each boot.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/orchestrator.sh
. scripts/lib/orchestrator.sh

version=$(awk -F'"' '/^\[workspace.package\]/ { w = 1 } w && /^version/ { print $2; exit }' Cargo.toml)
image=${1:-target/image/pifleet-$version-arm64.img.xz}
[ -f "$image" ] || { echo "test-image: no image at $image (build it: sudo image/build.sh)" >&2; exit 1; }
boot_timeout=${BOOT_TIMEOUT:-480}

need=()
for pair in qemu-system-aarch64:qemu-system-arm mcopy:mtools sfdisk:fdisk xz:xz-utils curl:curl jq:jq nc:netcat-openbsd; do
  command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
if ((${#need[@]})); then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The same build as scripts/test.sh's (one feature set for the workspace), so after the
# tests it is already there; `-p pifleet-orchestrator` alone would build other features.
cargo build -q --workspace --bins
orchestrator=target/debug/pifleet-orchestrator

t=$(mktemp -d)
qemu_pid=""
ORCH_PID=""
cleanup() {
  if [ -n "$qemu_pid" ]; then
    kill -KILL "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" 2>/dev/null || true
  fi
  if [ -n "$ORCH_PID" ]; then
    kill -TERM "$ORCH_PID" 2>/dev/null || true
    wait "$ORCH_PID" 2>/dev/null || true
  fi
  [ -n "${KEEP:-}" ] || rm -rf "$t"
}
trap cleanup EXIT
fail() {
  echo "test-image: FAILED: $*" >&2
  echo "--- console (last 150 lines; whole log: KEEP=1 keeps $t/console.log)" >&2
  tail -n 150 "$t/console.log" >&2 || true
  echo "--- orchestrator log" >&2
  tail -n 30 "$t/orchestrator.log" >&2 || true
  exit 1
}

# The card: the raw image, 1 GiB larger than the image (a bigger SD card).
disk="$t/card.img"
case "$image" in
  *.xz) xz -dc "$image" >"$disk" ;;
  *) cp --sparse=always "$image" "$disk" ;;
esac
truncate -s +1G "$disk"
boot_offset=$(($(sfdisk -d "$disk" | awk -F'[=,]' '/start=/ { print $2 + 0; exit }') * 512))
fat="$disk@@$boot_offset"
mdir -b -i "$fat" ::/ >/dev/null || fail "no FAT partition at byte $boot_offset of the image"

start_orchestrator "$orchestrator" "$t" || fail "the orchestrator did not start"
port=${ORCH_URL##*:}
id=qemu-image-test

# What a user does on their PC after flashing: edit pifleet.toml on the RASPIFIRM partition.
cat >"$t/pifleet.toml" <<EOF
orchestrator_url = "http://10.0.2.100:5000"
worker_token = "$PIFLEET_WORKER_TOKEN"
id = "$id"
heartbeat_interval_s = 2.0

[wifi]
ssid = "not-used-under-qemu"
psk = "not-a-real-passphrase"
EOF
mcopy -o -i "$fat" "$t/pifleet.toml" ::pifleet.toml

# qemu's virt board loads the card's own kernel and initrd; the card's cmdline.txt (root by
# label) with the serial console of the virt board instead of the Pi's.
kernel=$(mdir -b -i "$fat" ::/ | sed 's|^::/||' | grep '^vmlinuz-' | sort -V | tail -1)
initrd=$(mdir -b -i "$fat" ::/ | sed 's|^::/||' | grep '^initrd.img-' | sort -V | tail -1)
[ -n "$kernel" ] && [ -n "$initrd" ] || fail "no vmlinuz-*/initrd.img-* on the boot partition"
mcopy -i "$fat" "::$kernel" "$t/vmlinuz"
mcopy -i "$fat" "::$initrd" "$t/initrd"
mcopy -i "$fat" ::cmdline.txt "$t/cmdline.txt"
cmdline="$(sed -E 's/console=[^ ]+//g' "$t/cmdline.txt" | tr -s ' ') console=ttyAMA0 systemd.journald.forward_to_console=1"
echo "test-image: $(basename "$image"): kernel $kernel, cmdline: $cmdline"

# One power-on of the emulated Pi: serial console to $t/console-N.log, qemu's monitor on a
# socket (the power button). -no-reboot: the guest halting ends qemu, as unplugging a Pi would.
boots=0
power_on() {
  boots=$((boots + 1))
  console="$t/console-$boots.log"
  ln -sf "$console" "$t/console.log"
  rm -f "$t/monitor.sock"
  qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 2 -m 1024 -nographic -no-reboot \
    -kernel "$t/vmlinuz" -initrd "$t/initrd" -append "$cmdline" \
    -drive "file=$disk,format=raw,if=none,id=card" -device virtio-blk-pci,drive=card \
    -netdev "user,id=net0,restrict=on,guestfwd=tcp:10.0.2.100:5000-cmd:nc 127.0.0.1 $port" \
    -device virtio-net-pci,netdev=net0 -device i6300esb -action watchdog=debug \
    -monitor "unix:$t/monitor.sock,server,nowait" -serial "file:$console" </dev/null >>"$t/qemu.log" 2>&1 &
  qemu_pid=$!
}

alive() { kill -0 "$qemu_pid" 2>/dev/null || fail "qemu exited: $(cat "$t/qemu.log")"; }

# wait_registered WHAT: until the node is registered and has heartbeated since $1 (unix s);
# fails at once when the console shows the agent refused (bad config, or the orchestrator
# turning its token away).
wait_registered() {
  local since=$1 deadline=$(($(date +%s) + boot_timeout))
  until api GET /api/workers/list 2>/dev/null | jq -e --arg id "$id" --argjson since "$since" \
    '.workers[] | select(.worker_id == $id and .status != "dead" and (.last_heartbeat // 0) > $since)' >/dev/null; do
    alive
    if grep -saqE 'pifleet-agent\.service: Main process exited, code=exited, status=2|(Failed to start|Dependency failed for) pifleet-config\.service' "$console"; then
      fail "the agent rejected its configuration or pifleet-config failed (console below)"
    fi
    if grep -saqE 'registration: orchestrator answered 40[13]' "$console"; then
      fail "the orchestrator refused the node's registration (console below)"
    fi
    (($(date +%s) < deadline)) || fail "the node did not register within $boot_timeout s"
    sleep 2
  done
}

run_task() {
  local task
  task=$(submit_crossover) || fail "submit failed"
  wait_until 120 "task $task to complete" task_completed "$task" || fail "task $task did not complete: $(api GET "/api/tasks/status/$task")"
  api GET "/api/tasks/status/$task" | jq -e --arg id "$id" '.assigned_to == $id' >/dev/null ||
    fail "task $task was not run by $id: $(api GET "/api/tasks/status/$task")"
  echo "test-image: task completed: $(api GET "/api/tasks/status/$task" | jq -c '{assigned_to, result: (.result.genome // .result)}')"
}

started=$(date +%s)
power_on
wait_registered 0
registered=$(($(date +%s) - started))
echo "test-image: boot to registered: $registered s"

wait_until 60 "a heartbeat with real metrics" worker_has_metrics "$id" || fail "no heartbeat metrics"
echo "test-image: metrics: $(node_metrics "$id" || true)"
run_task
grep -q 'node credential issued' "$ORCH_LOG" || fail "the node did not ask for a credential of its own"

# The join token changes (what the README says to do against a copied card): from here on
# the node can only get in with the credential it keeps on the card.
stop_pid "$ORCH_PID" || fail "the orchestrator did not stop cleanly"
ORCH_PID=""
PIFLEET_WORKER_TOKEN=rotated-join-token-0123456789abcdef start_orchestrator "$orchestrator" "$t" "$port" ||
  fail "the orchestrator did not start again on port $port"
rotated=$(date +%s)
wait_registered "$rotated"
echo "test-image: join token changed; the running node goes on with its credential"

# A user's reboot: the power button (qemu's virt board wires it to a gpio-keys input that
# systemd-logind acts on), an orderly shutdown, then power on again from the same card.
t0=$(date +%s)
printf 'system_powerdown\n' | nc -U -N "$t/monitor.sock" >/dev/null 2>&1 || fail "cannot press the power button (qemu monitor)"
until ! kill -0 "$qemu_pid" 2>/dev/null; do
  (($(date +%s) < t0 + 180)) || fail "the emulated Pi did not power off within 180 s of the power button"
  sleep 1
done
wait "$qemu_pid" 2>/dev/null || true
qemu_pid=""
grep -saq 'reboot: Power down' "$console" || fail "the emulated Pi stopped without an orderly power-off"
off=$(date +%s)
echo "test-image: powered off in $((off - t0)) s"

power_on
wait_registered "$off"
rebooted=$(($(date +%s) - off))
grep -saq "using this node's own credential" "$console" ||
  fail "after the reboot the agent did not use its stored credential"
[ "$(grep -c 'node credential issued' "$ORCH_LOG")" -eq 1 ] || fail "the node was issued a second credential"
echo "test-image: reboot to registered with the stored credential: $rebooted s"
run_task

# What the console says about the first boot (informational, not asserted).
grep -aE 'pifleet-config: (growing|wrote|hostname)|hardware watchdog|Watchdog' "$t/console-1.log" | sed 's/^/test-image: console: /' | head -8 || true
grep -ai watchdog "$t/qemu.log" | sed 's/^/test-image: qemu: /' | head -3 || true
echo "image-boot: 1 passed, 0 failed (boot to registered ${registered} s, reboot to registered ${rebooted} s, whole test $(($(date +%s) - started)) s)"
