#!/usr/bin/env bash
# RAM per settled task: a release orchestrator on a SQLite file, one worker settling tasks
# over HTTP on 127.0.0.1, the orchestrator's RSS (VmRSS) read before and after. Two runs:
# N small tasks, and 2,000 tasks with 100 KB results; after each, the orchestrator is
# restarted on the same file and its RSS compared with a start on an empty one, and with
# the RSS the running process had (restarted_minus_running_kb).
#
#   scripts/bench-memory.sh [BINARY]     (default: builds target/release/pifleet-orchestrator)
#   BENCH_SMALL_TASKS=20000 BENCH_LARGE_TASKS=2000 BENCH_LARGE_BYTES=102400
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/orchestrator.sh

bin=${1:-}
if [[ -z $bin ]]; then
  cargo build --release -p pifleet-orchestrator --bin pifleet-orchestrator
  bin=target/release/pifleet-orchestrator
fi
small=${BENCH_SMALL_TASKS:-20000}
large=${BENCH_LARGE_TASKS:-2000}
large_bytes=${BENCH_LARGE_BYTES:-102400}

work=$(mktemp -d)
ORCH_PID=
cleanup() {
  [[ -n $ORCH_PID ]] && stop_pid "$ORCH_PID" || true
  rm -rf "$work"
}
trap cleanup EXIT

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# idle_rss DIR: the RSS of an orchestrator started on DIR's database, once it settled.
idle_rss() {
  start_orchestrator "$bin" "$1"
  sleep 2
  rss_kb "$ORCH_PID"
  stop_pid "$ORCH_PID"
  ORCH_PID=
}

mkdir -p "$work/empty"
empty_kb=$(idle_rss "$work/empty")

run() { # NAME TASKS RESULT_BYTES
  local dir="$work/$1" line loaded_kb after_kb
  mkdir -p "$dir"
  start_orchestrator "$bin" "$dir"
  line=$(python3 scripts/lib/bench_memory.py "$ORCH_URL" "$ORCH_PID" "$2" "$3")
  after_kb=$(sed -n 's/.*rss_after_kb=\([0-9]*\).*/\1/p' <<<"$line")
  stop_pid "$ORCH_PID"
  ORCH_PID=
  loaded_kb=$(idle_rss "$dir")
  # 200 warm-up tasks are settled before the measured ones.
  echo "$1: $line restarted_rss_kb=$loaded_kb empty_start_rss_kb=$empty_kb" \
    "restarted_per_task_bytes=$(((loaded_kb - empty_kb) * 1024 / ($2 + 200)))" \
    "restarted_minus_running_kb=$((loaded_kb - after_kb))"
}

run small "$small" 0
run large "$large" "$large_bytes"
