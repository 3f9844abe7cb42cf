# Sourced by the benchmarks: a scratch directory ($work, named after $1) and a list of
# background processes ($pids: add each with `pids+=($!)`), all gone when the script exits.
work=$(mktemp -d "/tmp/pifleet-bench-$1.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
