"""Settles N tasks through a real orchestrator over HTTP (one worker, keep-alive
connections) and prints how much the orchestrator's resident memory grew per settled
task. Used by scripts/bench-memory.sh; standard library only.

usage: bench_memory.py URL PID TASKS RESULT_BYTES
Prints one line: `tasks=N result_bytes=B rss_before_kb=.. rss_after_kb=.. per_task_bytes=..`.
"""

import http.client
import json
import os
import sys
import time
import urllib.parse

BATCH = 200


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit(f"no VmRSS for pid {pid}")


class Api:
    def __init__(self, url, token):
        u = urllib.parse.urlparse(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        self.headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body)
        self.conn.request(method, path, body=data, headers=self.headers)
        resp = self.conn.getresponse()
        raw = resp.read()
        if resp.status >= 300:
            raise SystemExit(f"{method} {path}: {resp.status} {raw[:300]!r}")
        return json.loads(raw) if raw else None


def settle(client, worker, n, result_bytes, worker_id):
    payload = "x" * result_bytes
    done = 0
    while done < n:
        batch = min(BATCH, n - done)
        for i in range(batch):
            client.call(
                "POST",
                "/api/tasks/submit",
                {"type": "evolution_mutation", "data": {"genome": {"lr": 0.1, "depth": 3, "seq": done + i}}},
            )
        got = 0
        while got < batch:
            task = worker.call("GET", f"/api/workers/{worker_id}/tasks?wait=5")["task"]
            if task is None:
                raise SystemExit("a submitted task was not handed out within 5 s")
            result = {"success": True, "genome": {"lr": 0.12, "depth": 3}, "duration_ms": 4}
            if result_bytes:
                result["output"] = payload
            worker.call(
                "POST",
                f"/api/tasks/{task['task_id']}/result",
                {"worker_id": worker_id, "attempt": task.get("attempt"), "result": result},
            )
            got += 1
        done += batch


def main():
    url, pid, n, result_bytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    client = Api(url, os.environ["PIFLEET_CLIENT_TOKEN"])
    worker = Api(url, os.environ["PIFLEET_WORKER_TOKEN"])
    worker_id = "bench-pi"
    worker.call(
        "POST",
        "/api/workers/register",
        {"worker_id": worker_id, "worker_type": "pi", "capabilities": {"slots": 1}},
    )
    # Warm the allocator, SQLite's page cache and the HTTP paths first, so the growth
    # measured is what the settled tasks themselves hold.
    settle(client, worker, 200, result_bytes, worker_id)
    time.sleep(2)
    before = rss_kb(pid)
    settle(client, worker, n, result_bytes, worker_id)
    # Longer than the housekeeping tick, which lets go of what the store has committed.
    time.sleep(2)
    after = rss_kb(pid)
    per_task = (after - before) * 1024 / n
    print(
        f"tasks={n} result_bytes={result_bytes} rss_before_kb={before} "
        f"rss_after_kb={after} per_task_bytes={per_task:.0f}"
    )


if __name__ == "__main__":
    main()
