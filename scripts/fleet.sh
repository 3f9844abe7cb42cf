#!/usr/bin/env bash
# The main job: a local pifleet you can watch. Builds everything, starts an orchestrator on
# its embedded SQLite store and a few agents on this machine, submits the demo tasks
# (examples/tasks/*.json), and shows nodes, queue and recent tasks until Ctrl-C, which stops
# every process this script started.
#
#   scripts/fleet.sh                       # 3 agents; the Ollama at 127.0.0.1:11434 if one
#                                          # answers, else the built-in Ollama stand-in
#   FLEET_AGENTS=5 scripts/fleet.sh        # more agents
#   FLEET_OLLAMA_URL=http://box:11434 scripts/fleet.sh   # an Ollama elsewhere
#   FLEET_FAKE_OLLAMA=1 scripts/fleet.sh   # the stand-in even when an Ollama answers
#   FLEET_FAKE_OLLAMA=0 scripts/fleet.sh   # never the stand-in: LLM tasks wait for a real Ollama
#   FLEET_MODEL=qwen2.5:0.5b scripts/fleet.sh   # the demo's model (default: Ollama's first)
#   FLEET_DEMO=0 scripts/fleet.sh          # submit no demo tasks
#   FLEET_RELEASE=1 scripts/fleet.sh       # release builds (slower to build, what ships)
#   FLEET_DIR=/tmp/fleet FLEET_PORT=5055 scripts/fleet.sh
#   FLEET_BIN=target/debug scripts/fleet.sh   # use these binaries, build nothing (tests)
#   FLEET_WATCH=0 scripts/fleet.sh         # no terminal view: run until SIGTERM (scripts)
#
# State (db, agents' spools, logs) lives in $FLEET_DIR (default ./.fleet) and survives a
# restart: run it again and the queue and spools are where they were. The demo is submitted
# again only when none of the previous run's demo tasks is still queued.
set -euo pipefail
cd "$(dirname "$0")/.."

agents=${FLEET_AGENTS:-3}
dir=${FLEET_DIR:-.fleet}
port=${FLEET_PORT:-}
ollama=${FLEET_OLLAMA_URL:-http://127.0.0.1:11434}
model=${FLEET_MODEL:-}
fake=${FLEET_FAKE_OLLAMA:-auto}

# Children get their own session so a Ctrl-C on the terminal reaches only this script,
# which then stops them in order: agents first (they unregister), the orchestrator last.
detach=()
command -v setsid >/dev/null && detach=(setsid)

say() { printf '\033[1mfleet:\033[0m %s\n' "$*" >&2; }

if [[ -n ${FLEET_BIN:-} ]]; then
  bin=$FLEET_BIN
else
  if ! command -v cargo >/dev/null; then
    say "cargo is missing: install Rust with rustup first (https://rustup.rs)"
    exit 1
  fi
  profile=debug
  build=(cargo build --bins -p pifleet-orchestrator -p pifleet-agent -p pifleet -p pifleet-system-tests)
  if [[ ${FLEET_RELEASE:-0} == 1 ]]; then
    profile=release
    build+=(--release)
  fi
  say "building (${profile})..."
  "${build[@]}"
  bin=${CARGO_TARGET_DIR:-target}/$profile
fi
for b in pifleet-orchestrator pifleet-agent pifleet pifleet-fake-ollama; do
  [[ -x $bin/$b ]] || { say "$bin/$b is missing (FLEET_BIN=$bin?)"; exit 1; }
done

# Is something answering on host:port? Plain bash, no curl needed.
answers() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
# A GET's body, plain bash (HTTP/1.0: the server closes when done).
http_get() {
  local host=$1 port=$2 path=$3
  exec 3<>"/dev/tcp/$host/$port" || return 1
  printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$host" >&3
  sed '1,/^\r$/d' <&3
  exec 3>&-
}

if [[ -z $port ]]; then
  port=5000
  while answers 127.0.0.1 "$port"; do port=$((port + 1)); done
fi
mkdir -p "$dir"

pids=()        # orchestrator and Ollama stand-in
agent_pids=()
watch_pid=
stop_all() {
  local p
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "$@"; do wait "$p" 2>/dev/null || true; done
}
cleanup() {
  trap - INT TERM EXIT
  if [[ -n $watch_pid ]]; then
    kill -TERM "$watch_pid" 2>/dev/null || true
    wait "$watch_pid" 2>/dev/null || true
  fi
  if ((${#agent_pids[@]})); then
    say "stopping ${#agent_pids[@]} agents (they hand back work, flush spools, unregister)..."
    stop_all "${agent_pids[@]}"
  fi
  if ((${#pids[@]})); then
    stop_all "${pids[@]}"
    say "stopped; state kept in $dir"
  fi
  exit 0
}
trap cleanup INT TERM EXIT

# FLEET_PORT=0: the kernel picks a free port and the orchestrator's log says which (tests).
"${detach[@]}" "$bin/pifleet-orchestrator" serve --listen "127.0.0.1:$port" --db "$dir/pifleet.db" \
  >"$dir/orchestrator.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  if [[ $port == 0 ]]; then
    bound=$(grep -o 'listening addr=127.0.0.1:[0-9]*' "$dir/orchestrator.log" 2>/dev/null | tail -1 || true)
    [[ -n $bound ]] && port=${bound##*:}
  fi
  [[ $port != 0 ]] && answers 127.0.0.1 "$port" && break
  sleep 0.1
done
if [[ $port == 0 ]] || ! answers 127.0.0.1 "$port"; then
  say "the orchestrator did not start: see $dir/orchestrator.log"
  tail -5 "$dir/orchestrator.log" >&2
  exit 1
fi
url=http://127.0.0.1:$port
say "orchestrator on $url (db $dir/pifleet.db, log $dir/orchestrator.log)"

# A real Ollama answers /api/tags with {"models": [...]}; anything else on the port is not one.
ohost=${ollama#http://}; ohost=${ohost%%/*}; oport=${ohost##*:}; ohost=${ohost%:*}
tags=""
if [[ $fake != 1 ]] && answers "$ohost" "$oport"; then
  tags=$(http_get "$ohost" "$oport" /api/tags 2>/dev/null || true)
  [[ $tags == *'"models"'* ]] || tags=""
fi
if [[ -n $tags ]]; then
  first=$(grep -o '"name": *"[^"]*"' <<<"$tags" | head -1 | sed 's/.*"\([^"]*\)"$/\1/' || true)
  model=${model:-$first}
  if [[ -n $first ]]; then
    say "Ollama answers on $ollama: agents use it (demo model ${model})"
  else
    say "Ollama answers on $ollama but has no models: LLM tasks wait until you run 'ollama pull ${model:-llama3.2:1b}'"
  fi
elif [[ $fake == 0 ]]; then
  say "no Ollama on $ollama and FLEET_FAKE_OLLAMA=0: agents run the native task types;"
  say "LLM tasks wait with a visible reason until an Ollama answers there"
else
  model=${model:-llama3.2:1b}
  "${detach[@]}" "$bin/pifleet-fake-ollama" --listen 127.0.0.1:0 --model "$model" --token-delay-ms 60 \
    --reply "Local models on small boards: cheap, private, and good enough for many jobs." \
    >"$dir/ollama-stand-in.log" 2>&1 &
  pids+=($!)
  ollama=""
  for _ in $(seq 100); do
    ollama=$(sed -n 's/^listening on //p' "$dir/ollama-stand-in.log" 2>/dev/null || true)
    [[ -n $ollama ]] && break
    sleep 0.1
  done
  [[ -n $ollama ]] || { say "the Ollama stand-in did not start: see $dir/ollama-stand-in.log"; exit 1; }
  if [[ $fake == 1 ]]; then
    say "FLEET_FAKE_OLLAMA=1: agents use the built-in Ollama stand-in on $ollama (model $model, canned replies)"
  else
    say "no Ollama answers on ${FLEET_OLLAMA_URL:-http://127.0.0.1:11434}: agents use the built-in Ollama stand-in"
    say "  on $ollama (model $model, canned replies, so the LLM demo tasks complete)."
    say "  For real answers: install Ollama (https://ollama.com/download), 'ollama pull llama3.2:1b',"
    say "  and run this again (an Ollama elsewhere: FLEET_OLLAMA_URL=http://HOST:11434)."
  fi
fi
model=${model:-llama3.2:1b}
ollama=${ollama:-${FLEET_OLLAMA_URL:-http://127.0.0.1:11434}}

# The README's node names, so its examples (`pifleet node pi-kitchen`) run against this fleet.
names=(pi-kitchen pi-desk pi-attic)
for n in $(seq "$agents"); do
  id=${names[n - 1]:-pi-$n}
  PIFLEET_HEARTBEAT_INTERVAL_S=${FLEET_HEARTBEAT_S:-2} \
    "${detach[@]}" "$bin/pifleet-agent" --orchestrator "$url" --ollama "$ollama" --id "$id" \
    --state-dir "$dir/$id" >"$dir/$id.log" 2>&1 &
  agent_pids+=($!)
  say "agent $id (state $dir/$id, log $dir/$id.log)"
done

cli() { "$bin/pifleet" --url "$url" "$@"; }
# A demo task file with the demo's model in place of the examples' llama3.2:1b.
task_file() {
  local json
  json=$(<"examples/tasks/$1.json")
  printf '%s\n' "${json//llama3.2:1b/$model}" >"$dir/demo-$1.json"
  echo "$dir/demo-$1.json"
}
still_queued() {
  local id out try
  [[ -f $dir/demo-tasks ]] || return 1
  while read -r id; do
    [[ -n $id ]] || continue
    # Only an answer counts: a call that fails on the way (an orchestrator still busy
    # starting on a loaded machine) is asked again, so the demo is not submitted twice.
    for try in 1 2 3 4 5; do
      if out=$(cli task "$id" --json 2>&1); then
        grep -Eq '"status": *"(pending|assigned)"' <<<"$out" && return 0
        break
      fi
      [[ $out == *"cannot reach"* || $out == *"timed out"* ]] || break
      sleep 0.5
    done
  done <"$dir/demo-tasks"
  return 1
}
if [[ ${FLEET_DEMO:-1} == 0 ]]; then
  say "FLEET_DEMO=0: no demo tasks"
elif still_queued; then
  say "demo tasks from the previous run are still queued ($dir/demo-tasks): not adding more"
else
  say "submitting the demo tasks (examples/tasks/*.json)..."
  {
    cli submit evolution_crossover -p 7 -d "$(task_file evolution_crossover)"
    cli submit evolution_mutation -d "$(task_file evolution_mutation)"
    cli submit agent_action -p 8 -d "$(task_file agent_action)"
    cli submit code_generation -d "$(task_file code_generation)"
  } >"$dir/demo-tasks.new"
  mv "$dir/demo-tasks.new" "$dir/demo-tasks"
  say "submitted 2 native tasks, an agent_action and a code_generation (ids in $dir/demo-tasks)"
fi

if [[ $port == 5000 ]]; then
  cli_hint="pifleet nodes"
else
  cli_hint="PIFLEET_URL=$url pifleet nodes"
fi
say "status page: $url/   Prometheus: $url/metrics"
say "CLI: $cli_hint   (set-up once: cargo install --locked --path cli; or $bin/pifleet)"
if [[ ${FLEET_WATCH:-1} == 0 ]]; then
  say "fleet ready on $url (FLEET_WATCH=0: no terminal view; SIGTERM stops it)"
  while true; do sleep 1; done
fi
say "nodes, queue and recent tasks below (refreshed every 2 s; Ctrl-C stops the fleet)"
sleep 1
# In the background so a SIGTERM to this script (not only a Ctrl-C to the terminal) stops
# the fleet: bash runs its trap as soon as `wait` is interrupted.
cli watch -n 2 &
watch_pid=$!
wait "$watch_pid" || true
