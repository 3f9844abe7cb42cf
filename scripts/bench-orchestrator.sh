#!/usr/bin/env bash
# Benchmarks the orchestrator over HTTP on 127.0.0.1 with its durable SQLite store:
# end-to-end tasks/s, submit->assign latency with waiting workers, heartbeats/s.
# Extra arguments go to the benchmark, e.g. --tasks 50000 --workers 128 --durability full.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p pifleet-orchestrator --bench throughput -- "$@"
