#!/usr/bin/env bash
# The agent's footprint, printed as figures (a benchmark, not a test):
#   - stripped release binary size, x86_64 and aarch64 (the Pi)
#   - idle RSS and CPU over BENCH_SECONDS (default 60) while it heartbeats (every 10 s, with
#     Ollama /api/tags + /api/ps each time, against the Ollama test double) and long-polls a
#     real orchestrator
# Targets (product.md): aarch64 binary <= 3 MB, idle RSS <= 6 MB, idle CPU <= 0.5 % of a core.
#
#   scripts/bench-agent.sh              # everything
#   BENCH_SECONDS=20 scripts/bench-agent.sh
#   BENCH_TLS=1 scripts/bench-agent.sh  # also the sizes with --features tls (rustls)
#   BENCH_SKIP_AARCH64=1 scripts/bench-agent.sh
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${BENCH_SECONDS:-60}
target_dir=${CARGO_TARGET_DIR:-target}

size() { stat -c %s "$1"; }
mb() { awk -v b="$1" 'BEGIN { printf "%.2f MB (%d bytes)", b / 1e6, b }'; }

echo "== building release binaries"
cargo build --release -q -p pifleet-agent
x86=$target_dir/release/pifleet-agent
x86_size=$(size "$x86")
if [[ ${BENCH_SKIP_AARCH64:-0} != 1 ]]; then
  scripts/build-aarch64.sh >/dev/null
  arm=$target_dir/aarch64-unknown-linux-gnu/release/pifleet-agent
  arm_size=$(size "$arm")
fi
# The orchestrator and the Ollama double only serve the measurement: debug builds will do.
cargo build -q -p pifleet-orchestrator -p pifleet-system-tests --bins

if [[ ${BENCH_TLS:-0} == 1 ]]; then
  tls_dir=$target_dir/bench-tls
  CARGO_TARGET_DIR=$tls_dir cargo build --release -q -p pifleet-agent --features tls
  x86_tls=$(size "$tls_dir/release/pifleet-agent")
  if [[ ${BENCH_SKIP_AARCH64:-0} != 1 ]]; then
    CARGO_TARGET_DIR=$tls_dir CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
      CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
      cargo build --release -q -p pifleet-agent --features tls --target aarch64-unknown-linux-gnu
    arm_tls=$(size "$tls_dir/aarch64-unknown-linux-gnu/release/pifleet-agent")
  fi
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
  echo $((20000 + RANDOM % 20000)); }
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

oport=$(free_port)
"$target_dir/debug/pifleet-orchestrator" serve --listen "127.0.0.1:$oport" --db "$work/pifleet.db" >"$work/orch.log" 2>&1 &
pids+=($!)
lport=$(free_port)
"$target_dir/debug/pifleet-fake-ollama" --listen "127.0.0.1:$lport" --model llama3.2:1b >"$work/ollama.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do answers "$oport" && answers "$lport" && break; sleep 0.1; done

env -u PIFLEET_HEARTBEAT_INTERVAL_S -u PIFLEET_POLL_WAIT_S \
  "$x86" --orchestrator "http://127.0.0.1:$oport" --ollama "http://127.0.0.1:$lport" \
  --id bench-pi --state-dir "$work/agent" >"$work/agent.log" 2>&1 &
agent=$!
pids=("$agent" "${pids[@]}")

echo "== idle agent: warming up 5 s, then measuring ${seconds} s"
sleep 5
# CPU time in seconds: schedstat's nanoseconds where the kernel has it (clock ticks are
# 10 ms, too coarse for an agent that is idle), else utime + stime.
cpu_s() {
  if [[ -r /proc/$agent/schedstat ]]; then
    awk '{ printf "%.6f", $1 / 1e9 }' "/proc/$agent/schedstat"
  else
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.6f", ($14 + $15) / hz }' "/proc/$agent/stat"
  fi
}
t0=$(cpu_s)
start=$(date +%s.%N)
sleep "$seconds"
t1=$(cpu_s)
end=$(date +%s.%N)
rss_kb=$(awk '/^VmRSS/ { print $2 }' "/proc/$agent/status")
hwm_kb=$(awk '/^VmHWM/ { print $2 }' "/proc/$agent/status")
# RSS counts the shared libc and libm pages every process on the board maps anyway; PSS
# shares them out, and the anonymous part is what this process alone holds.
pss_kb=$(awk '/^Pss:/ { print $2 }' "/proc/$agent/smaps_rollup" 2>/dev/null || echo 0)
anon_kb=$(awk '/^RssAnon/ { print $2 }' "/proc/$agent/status")
threads=$(awk '/^Threads/ { print $2 }' "/proc/$agent/status")
cpu=$(awk -v a="$t0" -v b="$t1" -v s="$start" -v e="$end" \
  'BEGIN { printf "%.4f", (b - a) / (e - s) * 100 }')
cpu_ms=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) * 1000 }')

echo
echo "pifleet-agent footprint                          measured          target"
printf '  aarch64 release binary (stripped)    %-28s <= 3 MB\n' "$( [[ -n ${arm_size:-} ]] && mb "$arm_size" || echo skipped)"
printf '  x86_64 release binary (stripped)     %-28s\n' "$(mb "$x86_size")"
if [[ -n ${x86_tls:-} ]]; then
  printf '  with --features tls: x86_64 %s, aarch64 %s\n' "$(mb "$x86_tls")" "$( [[ -n ${arm_tls:-} ]] && mb "$arm_tls" || echo skipped)"
fi
printf '  idle RSS (x86_64)                    %-28s <= 6 MB\n' "$(awk -v k="$rss_kb" 'BEGIN { printf "%.2f MB", k / 1024 }') (peak $(awk -v k="$hwm_kb" 'BEGIN { printf "%.2f MB", k / 1024 }'))"
printf '  %-37s%-28s\n' 'idle PSS, of it anonymous' "$(awk -v p="$pss_kb" -v a="$anon_kb" 'BEGIN { printf "%.2f MB, %.2f MB", p / 1024, a / 1024 }')"
printf '  idle CPU over %ss                    %-28s <= 0.5 %%\n' "$seconds" "$cpu % of one core ($cpu_ms ms)"
printf '  threads                              %s\n' "$threads"
echo "  (heartbeat every 10 s with Ollama tags+ps, long poll wait 20 s, real orchestrator on loopback)"
