#!/usr/bin/env bash
# The main job: a local pifleet you can watch. Builds everything, starts an orchestrator on
# its embedded SQLite store and a few agents on this machine, submits demo tasks, and shows
# node health until Ctrl-C, which stops every process this script started.
#
#   scripts/fleet.sh                  # 3 agents; uses the Ollama at 127.0.0.1:11434 if one answers
#   FLEET_AGENTS=5 scripts/fleet.sh   # more agents
#   FLEET_FAKE_OLLAMA=1 scripts/fleet.sh   # no Ollama here? use the test double for the LLM tasks
#   FLEET_RELEASE=1 scripts/fleet.sh  # release builds (slower to build, what ships)
#   FLEET_DIR=/tmp/fleet FLEET_PORT=5055 scripts/fleet.sh
#
# State (db, agents' spools, logs) lives in $FLEET_DIR (default ./.fleet) and survives a
# restart: run it again and the queue and spools are where they were.
set -euo pipefail
cd "$(dirname "$0")/.."

agents=${FLEET_AGENTS:-3}
dir=${FLEET_DIR:-.fleet}
port=${FLEET_PORT:-}
ollama=${FLEET_OLLAMA_URL:-http://127.0.0.1:11434}
model=${FLEET_MODEL:-}

# Children get their own session so a Ctrl-C on the terminal reaches only this script,
# which then stops them in order: agents first (they unregister), the orchestrator last.
detach=()
command -v setsid >/dev/null && detach=(setsid)

say() { printf '\033[1mfleet:\033[0m %s\n' "$*" >&2; }

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

# Is something answering on host:port? Plain bash, no curl needed.
answers() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
# A GET's body, plain bash.
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
url=http://127.0.0.1:$port
mkdir -p "$dir"

pids=()        # orchestrator and Ollama double
agent_pids=()
stop_all() {
  local p
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "$@"; do wait "$p" 2>/dev/null || true; done
}
cleanup() {
  trap - INT TERM EXIT
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

say "orchestrator on $url (db $dir/pifleet.db, log $dir/orchestrator.log)"
"${detach[@]}" "$bin/pifleet-orchestrator" serve --listen "127.0.0.1:$port" --db "$dir/pifleet.db" \
  >"$dir/orchestrator.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do answers 127.0.0.1 "$port" && break; sleep 0.1; done
answers 127.0.0.1 "$port" || { say "the orchestrator did not start: see $dir/orchestrator.log"; tail -5 "$dir/orchestrator.log" >&2; exit 1; }

ohost=${ollama#http://}; ohost=${ohost%%/*}; oport=${ohost##*:}; ohost=${ohost%:*}
if [[ ${FLEET_FAKE_OLLAMA:-0} == 1 ]]; then
  oport=11434
  while answers 127.0.0.1 "$oport"; do oport=$((oport + 1)); done
  ohost=127.0.0.1
  ollama=http://127.0.0.1:$oport
  model=${model:-llama3.2:1b}
  "${detach[@]}" "$bin/pifleet-fake-ollama" --listen "127.0.0.1:$oport" --model "$model" --token-delay-ms 80 \
    --reply "Local models on small boards: cheap, private, and good enough for many jobs." \
    >"$dir/fake-ollama.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do answers 127.0.0.1 "$oport" && break; sleep 0.1; done
  say "Ollama test double on $ollama (model $model)"
elif answers "$ohost" "$oport"; then
  if [[ -z $model ]]; then
    model=$(http_get "$ohost" "$oport" /api/tags | grep -o '"name":"[^"]*"' | head -1 | cut -d'"' -f4 || true)
  fi
  say "Ollama answers on $ollama${model:+ (demo model $model)}"
else
  say "no Ollama on $ollama: agents run the native task types; LLM tasks wait with a visible reason"
  say "(install Ollama and 'ollama pull llama3.2:1b', or run with FLEET_FAKE_OLLAMA=1)"
fi
model=${model:-llama3.2:1b}

for n in $(seq "$agents"); do
  id=fleet-pi-$n
  PIFLEET_HEARTBEAT_INTERVAL_S=${FLEET_HEARTBEAT_S:-2} \
    "${detach[@]}" "$bin/pifleet-agent" --orchestrator "$url" --ollama "$ollama" --id "$id" \
    --state-dir "$dir/$id" >"$dir/$id.log" 2>&1 &
  agent_pids+=($!)
  say "agent $id (state $dir/$id, log $dir/$id.log)"
done

cli() { "$bin/pifleet" --url "$url" "$@"; }
data() { printf '%s' "$1" >"$dir/task.json"; echo "$dir/task.json"; }
sleep 1
say "submitting demo tasks..."
for i in 1 2 3; do
  cli submit evolution_crossover -p 7 -d "$(data '{"genome1": {"learning_rate": 0.8, "layers": 100}, "genome2": {"learning_rate": 0.6, "layers": 150}}')" >/dev/null
  cli submit evolution_mutation -d "$(data '{"genome": {"learning_rate": 0.7, "layers": 120}, "mutation_rate": 0.3}')" >/dev/null
done
chat=$(cli submit agent_action -p 8 -d "$(data "{\"messages\": [{\"role\": \"user\", \"content\": \"In one sentence: why run LLMs on Raspberry Pis?\"}], \"model\": \"$model\", \"temperature\": 0.7}")")
code=$(cli submit code_generation -d "$(data "{\"prompt\": \"A function that checks whether a number is prime\", \"language\": \"python\", \"model\": \"$model\"}")")
say "submitted 6 evolution tasks, an agent_action ($chat) and a code_generation ($code)"
say "see a task: $bin/pifleet --url $url task $chat"
say "status page: $url/   Prometheus: $url/metrics   nodes: $bin/pifleet --url $url nodes"
say "node health below (refreshes every 2 s; Ctrl-C stops the fleet)"
sleep 2
if cli nodes >/dev/null 2>&1; then
  cli watch -n 2 || true
else
  # An orchestrator without the node views: the seed's worker list and stats.
  pretty() { if command -v python3 >/dev/null; then python3 -m json.tool; else cat; fi; }
  while true; do
    [[ -t 1 ]] && clear
    echo "== $url/api/workers/list  ($(date +%T))"
    http_get 127.0.0.1 "$port" /api/workers/list | pretty
    echo "== $url/api/stats"
    http_get 127.0.0.1 "$port" /api/stats | pretty
    sleep 2
  done
fi
