#!/usr/bin/env bash
# Benchmarks the status page's live stream over loopback with release builds: a real
# orchestrator (in-memory store), NODES simulated nodes (default 300) registering and
# heartbeating over HTTP (a full 120-sample history each, then one beat per node every
# 10 s), and STREAMS open `GET /api/events` streams (default 500) read by a load client.
# Prints, for the orchestrator process over SECONDS (default 20): CPU % of one core, peak
# RSS, `/health` p50/p99 (probed every 20 ms while the streams are open), events per stream
# per second; then the RSS and the open-stream gauge after every stream closed.
# Usage: scripts/bench-events.sh [NODES] [STREAMS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
nodes=${1:-300}
streams=${2:-500}
seconds=${3:-20}
echo "building release binaries..."
cargo build --release -q -p pifleet-orchestrator -p pifleet-system-tests --bins
bin=target/release
source scripts/lib/bench_scratch.sh events

source scripts/lib/free_port.sh
port=$(free_port)
# The cap is raised to the benchmark's stream count in case it exceeds the default.
PIFLEET_LOG=warn PIFLEET_MAX_EVENT_STREAMS=$((streams > 512 ? streams : 512)) \
  "$bin/pifleet-orchestrator" serve --listen "127.0.0.1:$port" --db ":memory:" \
  >"$work/orch.log" 2>&1 &
orch_pid=$!
pids+=($orch_pid)
orch="http://127.0.0.1:$port"
for _ in $(seq 100); do curl -fs "$orch/health" >/dev/null 2>&1 && break; sleep 0.1; done
echo "$nodes nodes heartbeating over HTTP, $streams event streams, measuring ${seconds}s..."
out=$("$bin/pifleet-events-load" --url "$orch" --pid "$orch_pid" --nodes "$nodes" \
  --streams "$streams" --seconds "$seconds")
python3 - "$out" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(f"streams open: {r['streams']} ({r['refused']} refused), all first events in {r['open_s']:.1f} s")
print(f"heartbeats: {r['heartbeats_per_s']:.0f}/s ({r['heartbeats_failed']} failed or timed out); events per stream: {r['events_per_stream_per_s']:.2f}/s, {r['event_kib_per_s']:.0f} KiB/s in all")
print(f"orchestrator CPU: {r['cpu_percent']:.1f} % of one core")
print(f"orchestrator RSS: {r['rss_before_mib']:.0f} MiB before the streams, peak {r['rss_peak_mib']:.0f} MiB, {r['rss_after_close_mib']:.0f} MiB after they closed")
print(f"/health: p50 {r['health_p50_ms']:.2f} ms, p99 {r['health_p99_ms']:.2f} ms, max {r['health_max_ms']:.2f} ms ({r['health_probes']} probes)")
print(f"open-stream gauge: {r['gauge_open']} while open, {r['gauge_after_close']} after close")
PY
