#!/usr/bin/env bash
# The placement comparison the README quotes: the fleet simulator on its built-in fleet
# (1,000 Pis, mixed Pi 4 / Pi 5, three models, 80 % load, one simulated hour), every
# policy, then the targets checked:
#   - pifleet's p99 submit->result at least 30 % below least-loaded's, mean not worse;
#   - each policy's simulated hour in under a minute of wall time.
# Extra arguments go to the simulator, e.g. --config my-fleet.toml or --load 0.6.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p pifleet-orchestrator
bin=${CARGO_TARGET_DIR:-target}/release/pifleet-orchestrator
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$bin" simulate "$@"
"$bin" simulate --json --policy pifleet --policy least-loaded "$@" >"$out"
python3 - "$out" <<'PY'
import json, sys
rows = {r["policy"]: r for r in map(json.loads, open(sys.argv[1]))}
ours, ll = rows["pifleet"], rows["least-loaded"]
gain = 1 - ours["p99_s"] / ll["p99_s"]
print(f"pifleet vs least-loaded: p99 {gain:.0%} lower, mean {ours['mean_s']:.1f} s vs {ll['mean_s']:.1f} s")
ok = gain >= 0.30 and ours["mean_s"] <= ll["mean_s"]
slow = [r["policy"] for r in rows.values() if r["wall_s"] >= 60]
if slow:
    print("over a minute of wall time:", ", ".join(slow))
if not ok or slow:
    sys.exit("placement targets missed")
print("targets met")
PY
