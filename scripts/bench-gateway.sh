#!/usr/bin/env bash
# Benchmarks the gateway over loopback with release builds: a real orchestrator, AGENTS real
# agents (default 50) in front of one Ollama double that streams TOKENS tokens per answer
# with no delay, and a load client reading every stream line by line. Prints:
#   - time to first chunk through the gateway minus the same double reached directly
#     (p50/p99 over sequential requests: what the fleet adds to a user's wait);
#   - relayed chunks (tokens) per second with 1 and with STREAMS (default 200) concurrent
#     streams across the agents;
#   - orchestrator CPU per 1,000 relayed tokens (from /proc, during the concurrent run).
# Usage: scripts/bench-gateway.sh [AGENTS] [STREAMS] [TOKENS]
set -euo pipefail
cd "$(dirname "$0")/.."
agents=${1:-50}
streams=${2:-200}
tokens=${3:-100}
echo "building release binaries..."
cargo build --release -q -p pifleet-orchestrator -p pifleet-agent -p pifleet-system-tests --bins
bin=target/release
source scripts/lib/bench_scratch.sh gateway

source scripts/lib/free_port.sh
dport=$(free_port)
"$bin/pifleet-fake-ollama" --listen "127.0.0.1:$dport" --tokens "$tokens" >"$work/double.log" 2>&1 &
pids+=($!)
oport=$(free_port)
PIFLEET_LOG=warn "$bin/pifleet-orchestrator" serve --listen "127.0.0.1:$oport" --db ":memory:" \
  >"$work/orch.log" 2>&1 &
orch_pid=$!
pids+=($orch_pid)
orch="http://127.0.0.1:$oport"
double="http://127.0.0.1:$dport"
for _ in $(seq 100); do curl -fs "$orch/health" >/dev/null 2>&1 && curl -fs "$double/api/version" >/dev/null 2>&1 && break; sleep 0.1; done
for i in $(seq "$agents"); do
  PIFLEET_LOG_LEVEL=warn PIFLEET_POLL_WAIT_S=20 "$bin/pifleet-agent" --orchestrator "$orch" \
    --ollama "$double" --id "bench-$i" --state-dir "$work/agent-$i" >"$work/agent-$i.log" 2>&1 &
  pids+=($!)
done
for _ in $(seq 300); do
  n=$(curl -fs "$orch/api/nodes" | jq '[.nodes[] | select(.capabilities.task_types | index("ollama_api"))] | length' 2>/dev/null || echo 0)
  [ "$n" -ge "$agents" ] && break
  sleep 0.2
done
echo "fleet: $n agents offering ollama_api, double streams $tokens tokens per answer"
load() { "$bin/pifleet-gateway-load" "$@"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$orch_pid/stat"; }

# Warm both paths (connections, model "load" in the double) before measuring.
load --url "$double" --requests 20 >/dev/null
load --url "$orch" --requests 20 >/dev/null
direct=$(load --url "$double" --requests 300)
gateway=$(load --url "$orch" --requests 300)
one=$(load --url "$orch" --requests 100 --streams 1)
before=$(cpu_ticks)
many=$(load --url "$orch" --requests $((streams * 5)) --streams "$streams")
after=$(cpu_ticks)
hz=$(getconf CLK_TCK)
python3 - "$direct" "$gateway" "$one" "$many" "$before" "$after" "$hz" "$streams" "$agents" <<'EOF'
import json, sys
d, g, one, many = (json.loads(x) for x in sys.argv[1:5])
before, after, hz, streams, agents = (float(x) for x in sys.argv[5:10])
cpu_ms = (after - before) * 1000.0 / hz
print(f"time to first chunk, direct to the double: p50 {d['ttft_p50_ms']:.2f} ms, p99 {d['ttft_p99_ms']:.2f} ms")
print(f"time to first chunk, through the gateway:  p50 {g['ttft_p50_ms']:.2f} ms, p99 {g['ttft_p99_ms']:.2f} ms")
print(f"added by the gateway: p50 {g['ttft_p50_ms'] - d['ttft_p50_ms']:.2f} ms, p99 {g['ttft_p99_ms'] - d['ttft_p99_ms']:.2f} ms")
print(f"relayed tokens/s, 1 stream: {one['chunks_per_s']:.0f} ({one['chunks']} tokens, {one['failures']} failed requests)")
print(f"relayed tokens/s, {int(streams)} streams across {int(agents)} agents: {many['chunks_per_s']:.0f} ({many['chunks']} tokens in {many['wall_s']:.1f} s, {many['failures']} failed requests)")
print(f"orchestrator CPU per 1,000 relayed tokens: {cpu_ms / max(many['chunks'], 1) * 1000:.1f} ms")
EOF
