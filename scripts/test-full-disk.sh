#!/usr/bin/env bash
# A failed commit leaves no trace, on a real full disk: the orchestrator's database on a
# small tmpfs, 8 KB tasks submitted until the store refuses one (503 "store unavailable,
# nothing was changed"), then: the refused task is nowhere, /health reports the store
# failing, and once space is freed (a ballast file removed) work resumes without a
# restart and every acknowledged task completes and survives a restart.
#
#   scripts/test-full-disk.sh [ORCHESTRATOR_BINARY]   (default: builds the debug binary)
#
# Needs root (mount); without it, says so and skips. Needs curl, jq, python3.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
  echo "test-full-disk.sh: SKIPPED: mounting a tmpfs needs root (run it as root)"
  exit 0
fi
source scripts/lib/orchestrator.sh

bin=${1:-}
if [[ -z $bin ]]; then
  cargo build -q -p pifleet-orchestrator --bin pifleet-orchestrator
  bin=target/debug/pifleet-orchestrator
fi

work=$(mktemp -d)
mnt="$work/disk"
mkdir "$mnt"
mount -t tmpfs -o size=4m tmpfs "$mnt"
ORCH_PID=
ORCH_LOG="$work/orchestrator.log"
cleanup() {
  if [[ -n $ORCH_PID ]]; then stop_pid "$ORCH_PID" || true; fi
  umount "$mnt" 2>/dev/null || umount -l "$mnt" || true
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "test-full-disk.sh: FAIL: $*" >&2
  echo "--- last lines of the orchestrator's log:" >&2
  tail -n 20 "$ORCH_LOG" >&2 || true
  exit 1
}

# The log stays off the small disk: only the database lives there.
start() {
  local port i
  port=$(free_port)
  ORCH_URL="http://127.0.0.1:$port"
  RUST_LOG=info "$bin" serve --listen "127.0.0.1:$port" --db "$mnt/pifleet.db" >>"$ORCH_LOG" 2>&1 &
  ORCH_PID=$!
  for i in $(seq 1 100); do
    curl -fsS "$ORCH_URL/health" >/dev/null 2>&1 && return 0
    kill -0 "$ORCH_PID" 2>/dev/null || fail "the orchestrator exited at start"
    sleep 0.1
  done
  fail "the orchestrator did not answer on $ORCH_URL within 10 s"
}

# post PATH JSON: prints "STATUS BODY".
post() {
  curl -sS -o "$work/body" -w '%{http_code}' -X POST -H "Authorization: Bearer $2" \
    -H 'Content-Type: application/json' --data "$3" "$ORCH_URL$1"
  echo " $(cat "$work/body")"
}

start
register() {
  local answer
  answer=$(post /api/workers/register "$PIFLEET_WORKER_TOKEN" \
    '{"worker_id": "disk-pi", "worker_type": "pi", "capabilities": {"slots": 1}}')
  [[ ${answer%% *} == 200 ]] || fail "register answered $answer"
}
register
# Another program's file fills the disk but for ~400 KB (about 50 of the 8 KB tasks);
# removing it later gives the space back.
avail_kb=$(df -k --output=avail "$mnt" | tail -n 1)
ballast_kb=$((avail_kb - 400))
((ballast_kb > 0)) || fail "the tmpfs has only $avail_kb KB free after the start"
dd if=/dev/zero of="$mnt/ballast" bs=1k count="$ballast_kb" status=none

pad=$(head -c 8000 /dev/zero | tr '\0' x)
: >"$work/acked"
refused=
for i in $(seq 1 2000); do
  answer=$(post /api/tasks/submit "$PIFLEET_CLIENT_TOKEN" "{\"type\": \"t\", \"data\": {\"n\": $i, \"pad\": \"$pad\"}}")
  code=${answer%% *}
  body=${answer#* }
  case $code in
    201) jq -r .task_id <<<"$body" >>"$work/acked" ;;
    503) refused=$body; break ;;
    *) fail "submit $i answered $code: $body" ;;
  esac
done
acked=$(wc -l <"$work/acked")
[[ -n $refused ]] || fail "2,000 submits of 8 KB on a 4 MiB disk were all accepted"
grep -q "store unavailable, nothing was changed" <<<"$refused" || fail "the refusal does not say nothing was changed: $refused"
grep -qi "full" <<<"$refused" || fail "the refusal does not name the full disk: $refused"
echo "disk full after $acked acknowledged submits: $refused"

stats=$(api GET /api/stats)
[[ $(jq .tasks.total <<<"$stats") -eq $acked ]] ||
  fail "the refused task is visible: $acked acknowledged, stats say $(jq -c .tasks <<<"$stats")"
queue=$(api GET /api/tasks/queue)
[[ $(jq .total_pending <<<"$queue") -eq $acked ]] || fail "queue holds $(jq .total_pending <<<"$queue"), $acked acknowledged"
health=$(api GET /health)
[[ $(jq -r .status <<<"$health") == degraded ]] || fail "/health does not report the store failing: $health"
jq -e '.store_error | test("full")' <<<"$health" >/dev/null || fail "/health names no store error: $health"

rm -f "$mnt/ballast"
answer=$(post /api/tasks/submit "$PIFLEET_CLIENT_TOKEN" '{"type": "t", "data": {"n": "after"}}')
[[ ${answer%% *} == 201 ]] || fail "space is back but a submit answered: $answer"
jq -r .task_id <<<"${answer#* }" >>"$work/acked"
acked=$((acked + 1))
health=$(api GET /health)
[[ $(jq -r .status <<<"$health") == healthy ]] || fail "/health still degraded once space is back: $health"

# The worker runs everything acknowledged (registered again: a slow machine may have
# taken longer than its heartbeat window to fill the disk).
register
for i in $(seq 1 "$acked"); do
  task=$(curl -fsS -H "Authorization: Bearer $PIFLEET_WORKER_TOKEN" \
    "$ORCH_URL/api/workers/disk-pi/tasks?wait=5" | jq -c .task)
  [[ $task != null ]] || fail "only $((i - 1)) of $acked acknowledged tasks were handed out"
  id=$(jq -r .task_id <<<"$task")
  answer=$(post "/api/tasks/$id/result" "$PIFLEET_WORKER_TOKEN" \
    "{\"worker_id\": \"disk-pi\", \"attempt\": $(jq .attempt <<<"$task"), \"result\": {\"success\": true}}")
  [[ ${answer%% *} == 200 ]] || fail "result of $id answered $answer"
done

check_all_completed() {
  local id
  while read -r id; do
    [[ $(api GET "/api/tasks/status/$id" | jq -r .status) == completed ]] || fail "acknowledged task $id is not completed ($1)"
  done <"$work/acked"
  [[ $(api GET /api/stats | jq .tasks.total) -eq $acked ]] || fail "more tasks than acknowledged ($1)"
}
check_all_completed "before a restart"
stop_pid "$ORCH_PID" || fail "the orchestrator did not stop cleanly"
ORCH_PID=
start
check_all_completed "after a restart"
if grep -q "never stored" "$ORCH_LOG"; then fail "the log shows writes computed from a refused state"; fi
echo "test-full-disk.sh: ok: $acked acknowledged tasks completed and kept; the refused one left no trace"
