# Sourced by the end-to-end shipping tests (test-aarch64-qemu.sh, test-image.sh): a real
# x86 orchestrator on a free loopback port, and the few API calls the tests make.
# Needs: curl, jq, python3 (free port). Sets ORCH_URL, ORCH_PID; logs to $ORCH_LOG.

PIFLEET_WORKER_TOKEN=${PIFLEET_WORKER_TOKEN:-ship-test-worker-token-0123456789}
PIFLEET_CLIENT_TOKEN=${PIFLEET_CLIENT_TOKEN:-ship-test-client-token-0123456789}
export PIFLEET_WORKER_TOKEN PIFLEET_CLIENT_TOKEN

source "$(dirname "${BASH_SOURCE[0]}")/free_port.sh"

# start_orchestrator BINARY DIR [PORT]: serves on 127.0.0.1:PORT (default: a free port), store
# in DIR. Started again on the same DIR it keeps its database and appends to its log.
start_orchestrator() {
  local bin=$1 dir=$2 port=${3:-} i
  [ -n "$port" ] || port=$(free_port)
  ORCH_URL="http://127.0.0.1:$port"
  ORCH_LOG="$dir/orchestrator.log"
  RUST_LOG=${RUST_LOG:-info} "$bin" serve --listen "127.0.0.1:$port" --db "$dir/pifleet.db" >>"$ORCH_LOG" 2>&1 &
  ORCH_PID=$!
  for i in $(seq 1 100); do
    curl -fsS "$ORCH_URL/health" >/dev/null 2>&1 && return 0
    kill -0 "$ORCH_PID" 2>/dev/null || { echo "orchestrator exited at start:" >&2; cat "$ORCH_LOG" >&2; return 1; }
    sleep 0.1
  done
  echo "orchestrator did not answer on $ORCH_URL within 10 s" >&2
  return 1
}

# api METHOD PATH [JSON]: the orchestrator's JSON answer on stdout; fails on HTTP errors.
api() {
  local method=$1 path=$2
  shift 2
  curl -fsS -X "$method" -H "Authorization: Bearer $PIFLEET_CLIENT_TOKEN" \
    -H 'Content-Type: application/json' ${1:+--data "$1"} "$ORCH_URL$path"
}

# wait_until SECONDS DESCRIPTION COMMAND...: polls COMMAND every second.
wait_until() {
  local deadline=$(($(date +%s) + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    if (($(date +%s) >= deadline)); then
      echo "timed out waiting for: $what" >&2
      return 1
    fi
    sleep 1
  done
}

worker_registered() { # ID
  api GET /api/workers/list | jq -e --arg id "$1" '.workers[] | select(.worker_id == $id and .status != "dead")'
}

# A heartbeat carrying real metrics (memory and uptime read from the node's /proc) reached
# the orchestrator. Uses GET /api/nodes/{id}; an orchestrator without it only shows that
# heartbeats arrive (last_heartbeat in the workers list).
worker_has_metrics() { # ID
  local node
  if node=$(api GET "/api/nodes/$1" 2>/dev/null); then
    jq -e '(.node.metrics // .metrics) as $m | ($m.memory_total_bytes // 0) > 0 and ($m.uptime_s // 0) > 0' <<<"$node"
  else
    api GET /api/workers/list | jq -e --arg id "$1" '.workers[] | select(.worker_id == $id) | .last_heartbeat != null'
  fi
}

node_metrics() { # ID: the metrics as one JSON line (or the workers-list entry)
  api GET "/api/nodes/$1" 2>/dev/null | jq -c '(.node.metrics // .metrics)' ||
    api GET /api/workers/list | jq -c --arg id "$1" '.workers[] | select(.worker_id == $id)'
}

# submit_crossover: a native evolution_crossover task (no LLM needed); prints the task id.
submit_crossover() {
  api POST /api/tasks/submit \
    '{"type": "evolution_crossover", "priority": 7, "timeout_s": 120,
      "data": {"genome1": {"lr": 0.1, "depth": 3, "width": 64},
               "genome2": {"lr": 0.3, "depth": 5, "width": 128}}}' | jq -r .task_id
}

task_completed() { # TASK_ID
  api GET "/api/tasks/status/$1" | jq -e '.status == "completed"'
}

stop_pid() { # PID: SIGTERM, then SIGKILL after 10 s; returns the exit code.
  local pid=$1 i rc=0
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null || rc=$?
  return "$rc"
}
