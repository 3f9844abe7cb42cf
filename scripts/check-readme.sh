#!/usr/bin/env bash
# Runs the README's command examples against a live fleet, so a README that drifts from the
# code (a renamed command, a removed flag, a missing example file) fails the tests.
#
#   scripts/check-readme.sh [README.md]      (scripts/test.sh runs it)
#
# How a block is marked. Every ```sh block of the README needs a marker as the last
# non-blank line before its opening fence; an unmarked block fails the check, so whoever adds
# a command decides, visibly, whether it is checked:
#
#   <!-- check: run -->
#       The block runs as one bash script (set -euo pipefail) in the repository root and must
#       exit 0. `http://127.0.0.1:5000` in it is replaced by the live fleet's URL and
#       PIFLEET_URL is set to it, so `pifleet ...` and `curl http://127.0.0.1:5000/...` reach
#       the fleet. Blocks share nothing but the fleet (no variables).
#   <!-- check: run; until-stopped: pifleet watch -->
#       As `run`; lines starting with `pifleet watch` (commands that run until Ctrl-C) run
#       for 3 s under `timeout`, and being stopped counts as success. Several prefixes:
#       `until-stopped: pifleet watch, other-command`.
#   <!-- check: skip: REASON -->
#       Not run (needs root, a Pi, a container engine, minutes of CI time, or it is the test
#       command itself). REASON is printed. The block must still parse (`bash -n`).
#
# Every block, run or skipped, must only name repository files that exist (`scripts/...`,
# `examples/...`, `image/...`, `systemd/...`, `agent/...`, `orchestrator/...`, `docs/...`).
#
# The live fleet is scripts/fleet.sh itself (FLEET_WATCH=0, a free port, its own state dir,
# nodes pi-kitchen, pi-desk and pi-attic, the built-in Ollama stand-in with llama3.2:1b), built
# from this checkout. The README's set-up line is a `run` block like any other: the check puts
# its install directory (CARGO_INSTALL_ROOT, a temporary directory) first on PATH, so the
# `pifleet` the later blocks run is the one the set-up line installed.
set -euo pipefail
cd "$(dirname "$0")/.."
readme=${1:-README.md}
repo=$PWD

say() { echo "check-readme: $*" >&2; }

tmp=$(mktemp -d)
fleet_pid=""
cleanup() {
  if [[ -n $fleet_pid ]]; then
    kill -TERM "$fleet_pid" 2>/dev/null || true
    wait "$fleet_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# Split the README into blocks: $tmp/block-N.sh plus one manifest line per block,
# "N<TAB>LINE<TAB>MARKER" (MARKER empty when the block has none).
awk -v dir="$tmp" '
  function flush_marker(line) {
    if (line ~ /^[[:space:]]*<!--[[:space:]]*check:/) {
      m = line
      sub(/^[[:space:]]*<!--[[:space:]]*check:[[:space:]]*/, "", m)
      sub(/[[:space:]]*-->[[:space:]]*$/, "", m)
      return m
    }
    return ""
  }
  inblock && /^```[[:space:]]*$/ { inblock = 0; close(file); next }
  inblock { print > file; next }
  /^```sh[[:space:]]*$/ {
    n++
    file = dir "/block-" n ".sh"
    printf "" > file
    printf "%d\t%d\t%s\n", n, NR, marker > (dir "/manifest")
    inblock = 1
    marker = ""
    next
  }
  /^```/ { fence = !fence; marker = ""; next }
  fence { next }
  /^[[:space:]]*$/ { next }
  { marker = flush_marker($0) }
' "$readme"
[[ -s $tmp/manifest ]] || { say "no \`\`\`sh blocks in $readme"; exit 1; }

failures=0
fail() { say "FAIL: $*"; failures=$((failures + 1)); }

# Markers and file references first: cheap, and they need no fleet.
runs=()
while IFS=$'\t' read -r n line marker; do
  block=$tmp/block-$n.sh
  case "$marker" in
    run | "run;"*) runs+=("$n") ;;
    skip:*)
      reason=${marker#skip:}
      reason=${reason# }
      [[ -n $reason ]] || fail "$readme:$line: 'check: skip:' needs a reason"
      ;;
    "") fail "$readme:$line: a \`\`\`sh block without a marker: put <!-- check: run --> or <!-- check: skip: REASON --> on the line before it (see scripts/check-readme.sh)" ;;
    *) fail "$readme:$line: unknown marker 'check: $marker' (run, run; until-stopped: PREFIX, skip: REASON)" ;;
  esac
  bash -n "$block" 2>"$tmp/syntax" || fail "$readme:$line: the block does not parse: $(cat "$tmp/syntax")"
  while read -r path; do
    [[ -e $path ]] || fail "$readme:$line: names $path, which does not exist"
  done < <(grep -oE '(^|[[:space:]"=(<@])(scripts|examples|image|systemd|agent|orchestrator|docs)/[A-Za-z0-9._/-]*[A-Za-z0-9_]' "$block" |
    sed -E 's/^[[:space:]"=(<@]//' | grep -v '^image/out' | sort -u)
done <"$tmp/manifest"

say "starting a fleet (scripts/fleet.sh, Ollama stand-in)..."
cargo build -q --bins -p pifleet-orchestrator -p pifleet-agent -p pifleet -p pifleet-system-tests
# Nothing listens on port 1 of 127.0.0.2: the fleet takes its Ollama stand-in.
FLEET_BIN=${CARGO_TARGET_DIR:-target}/debug FLEET_PORT=0 FLEET_WATCH=0 FLEET_DIR=$tmp/fleet \
  FLEET_OLLAMA_URL=http://127.0.0.2:1 FLEET_MODEL=llama3.2:1b FLEET_HEARTBEAT_S=1 \
  scripts/fleet.sh >"$tmp/fleet.out" 2>"$tmp/fleet.err" &
fleet_pid=$!
url=""
for _ in $(seq 600); do
  url=$(sed -n 's/.*fleet ready on \(http:[^ ]*\).*/\1/p' "$tmp/fleet.err" 2>/dev/null || true)
  [[ -n $url ]] && break
  kill -0 "$fleet_pid" 2>/dev/null || break
  sleep 0.1
done
if [[ -z $url ]]; then
  say "the fleet did not come up:"
  cat "$tmp/fleet.err" >&2
  exit 1
fi
export PIFLEET_URL=$url
# The README's node names are registered before any block runs.
for _ in $(seq 200); do
  nodes=$("${CARGO_TARGET_DIR:-target}/debug/pifleet" nodes 2>/dev/null || true)
  [[ $nodes == *pi-kitchen* && $nodes == *pi-desk* && $nodes == *pi-attic* ]] && break
  sleep 0.1
done
say "fleet on $url"

export CARGO_INSTALL_ROOT=$tmp/install
export PATH=$CARGO_INSTALL_ROOT/bin:$PATH
ran=0
for n in "${runs[@]}"; do
  IFS=$'\t' read -r _ line marker < <(sed -n "${n}p" "$tmp/manifest")
  stoppable=()
  if [[ $marker == *until-stopped:* ]]; then
    IFS=',' read -ra stoppable <<<"${marker#*until-stopped:}"
  fi
  script=$tmp/run-$n.sh
  {
    echo 'set -euo pipefail'
    while IFS= read -r cmd; do
      cmd=${cmd//http:\/\/127.0.0.1:5000/$url}
      for prefix in "${stoppable[@]}"; do
        prefix=$(sed -E 's/^[[:space:]]+|[[:space:]]+$//g' <<<"$prefix")
        if [[ -n $prefix && $cmd == "$prefix"* ]]; then
          # Own lines: the README line may end in a comment.
          cmd=$(printf 'set +e\ntimeout 3 %s\nrc=$?; set -e; [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ]' "$cmd")
        fi
      done
      printf '%s\n' "$cmd"
    done <"$tmp/block-$n.sh"
  } >"$script"
  say "$readme:$line: running"
  if (cd "$repo" && timeout 900 bash "$script") >"$tmp/out-$n" 2>&1; then
    ran=$((ran + 1))
  else
    rc=$?
    fail "$readme:$line: the block exited $rc; its output:"
    sed 's/^/    /' "$tmp/out-$n" >&2
  fi
done

if ((failures)); then
  say "$failures problem(s); fleet log: $(tail -3 "$tmp/fleet.err" | tr '\n' ' ')"
  exit 1
fi
skipped=$(grep -c $'\tskip:' "$tmp/manifest" || true)
say "ok: $ran blocks ran against the fleet, $skipped skipped with a reason"
