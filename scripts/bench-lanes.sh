#!/usr/bin/env bash
# Scheduling cost against the number of distinct requirements: the orchestrator benchmark
# (release build, durable SQLite store, HTTP on 127.0.0.1) run twice, with LANES pending
# tasks no node can run queued first: all in one lane, then each in a lane of its own
# (half a unique task type, half a unique min_memory_bytes). Prints submit/s and
# submit -> assign latency of both; the target is the distinct run within 2x of the other.
# Usage: scripts/bench-lanes.sh [LANES] [extra benchmark arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
lanes=${1:-40000}
shift || true
common=(--tasks 20000 --latency-tasks 2000 --nodes 200 --seconds 2 "$@")
cargo bench -p pifleet-orchestrator --bench throughput --no-run >/dev/null 2>&1 ||
    cargo bench -p pifleet-orchestrator --bench throughput --no-run
run() {
    cargo bench -q -p pifleet-orchestrator --bench throughput -- "${common[@]}" "$@" 2>/dev/null |
        grep -E '^(backlog|end to end|submit->assign)'
}
echo "== one lane: $lanes unrunnable tasks with the same requirements"
one=$(run --backlog "$lanes")
echo "$one"
echo "== $lanes distinct lanes: every unrunnable task with requirements of its own"
many=$(run --distinct-lanes "$lanes")
echo "$many"
rate() { sed -n 's/.*(submit \([0-9]*\)\/s.*/\1/p' <<<"$1"; }
p99() { sed -n 's/^submit->assign.* p99 \([0-9.]*\) ms.*/\1/p' <<<"$1"; }
echo "== submit/s: one lane $(rate "$one"), distinct lanes $(rate "$many");" \
    "p99 submit->assign with workers waiting: one lane $(p99 "$one") ms, distinct lanes $(p99 "$many") ms"
awk -v a="$(rate "$one")" -v b="$(rate "$many")" -v x="$(p99 "$one")" -v y="$(p99 "$many")" 'BEGIN {
    ok = (b * 2 >= a) && (y <= 2 * x)
    printf "target (distinct lanes within 2x of one lane): %s\n", ok ? "met" : "NOT met"
    exit ok ? 0 : 1
}'
