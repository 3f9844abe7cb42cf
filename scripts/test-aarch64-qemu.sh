#!/usr/bin/env bash
# The aarch64 agent, cross-built, runs under qemu-user (Debian's qemu-aarch64 with the cross
# sysroot) against a real x86 orchestrator on a free loopback port: it must register, heartbeat
# with real metrics, complete a native evolution_crossover task, and exit 0 on SIGTERM.
#
#   scripts/test-aarch64-qemu.sh [AGENT_BINARY]   (default: build it with scripts/build-aarch64.sh)
#
# On failure it prints both processes' logs.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/orchestrator.sh
. scripts/lib/orchestrator.sh

agent=${1:-}
if [ -z "$agent" ]; then
  scripts/build-aarch64.sh
  agent=target/aarch64-unknown-linux-gnu/release/pifleet-agent
fi
sysroot=/usr/aarch64-linux-gnu
command -v qemu-aarch64 >/dev/null || { echo "test-aarch64-qemu: qemu-aarch64 not found (apt-get install qemu-user)" >&2; exit 1; }
[ -e "$sysroot/lib/ld-linux-aarch64.so.1" ] || { echo "test-aarch64-qemu: no aarch64 sysroot at $sysroot (apt-get install libc6-dev-arm64-cross)" >&2; exit 1; }
cargo build -q -p pifleet-orchestrator
orchestrator=target/debug/pifleet-orchestrator

t=$(mktemp -d)
agent_pid=""
ORCH_PID=""
cleanup() {
  if [ -n "$agent_pid" ]; then
    kill -KILL "$agent_pid" 2>/dev/null || true
    wait "$agent_pid" 2>/dev/null || true
  fi
  if [ -n "$ORCH_PID" ]; then
    kill -TERM "$ORCH_PID" 2>/dev/null || true
    wait "$ORCH_PID" 2>/dev/null || true
  fi
  rm -rf "$t"
}
trap cleanup EXIT
fail() {
  echo "test-aarch64-qemu: FAILED: $*" >&2
  echo "--- orchestrator log" >&2
  tail -n 60 "$t/orchestrator.log" >&2 || true
  echo "--- agent log (qemu-aarch64)" >&2
  tail -n 80 "$t/agent.log" >&2 || true
  exit 1
}

start_orchestrator "$orchestrator" "$t" || fail "the orchestrator did not start"
id=qemu-aarch64-$$
mkdir -p "$t/state"
cat >"$t/agent.toml" <<EOF
orchestrator_url = "$ORCH_URL"
worker_token = "$PIFLEET_WORKER_TOKEN"
ollama_url = "http://127.0.0.1:9"
id = "$id"
heartbeat_interval_s = 1.0
poll_wait_s = 2.0
EOF
echo "test-aarch64-qemu: $(file -b "$agent" | cut -d, -f1-2) under $(qemu-aarch64 --version | head -1)"
started=$(date +%s.%N)
RUST_LOG=debug qemu-aarch64 -L "$sysroot" "$agent" --config "$t/agent.toml" --state-dir "$t/state" \
  >"$t/agent.log" 2>&1 &
agent_pid=$!

wait_until 60 "the agent to register as $id" worker_registered "$id" || fail "no registration"
echo "test-aarch64-qemu: registered in $(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
wait_until 30 "a heartbeat with real metrics" worker_has_metrics "$id" || fail "no metrics"
echo "test-aarch64-qemu: heartbeat metrics: $(node_metrics "$id" || true)"

task=$(submit_crossover) || fail "submit failed"
wait_until 60 "task $task to complete" task_completed "$task" || {
  api GET "/api/tasks/status/$task" >&2 || true
  fail "the task did not complete"
}
result=$(api GET "/api/tasks/status/$task")
jq -e '.assigned_to != null and .result.success == true' <<<"$result" >/dev/null || fail "unexpected result: $result"
echo "test-aarch64-qemu: task completed by $(jq -r .assigned_to <<<"$result"): $(jq -c '.result.genome // .result.output' <<<"$result")"

rc=0
stop_pid "$agent_pid" || rc=$?
agent_pid=""
((rc == 0)) || fail "the agent exited $rc on SIGTERM"
echo "test-aarch64-qemu: agent stopped cleanly on SIGTERM"
echo "aarch64-qemu: 1 passed, 0 failed"
