//! Who is who, against the real binary over loopback with a real SQLite file: node
//! credentials (the four impersonations of a stolen node are refused), seed-protocol
//! workers on the shared token, client keys with roles, priorities and quotas managed by
//! `pifleet-orchestrator keys ...` beside the running server, and secrets kept out of
//! logs and listings.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

const JOIN: &str = "join-token-0123456789abcdef";
const CLIENT: &str = "client-token-0123456789abcdef";

struct Server {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pifleet-orchestrator"));
    cmd.env_remove("PIFLEET_CONFIG")
        .env_remove("PIFLEET_WORKER_TOKEN")
        .env_remove("PIFLEET_CLIENT_TOKEN");
    cmd
}

/// `serve` on a free loopback port with both tokens, debug logs kept for inspection.
fn start() -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("fleet.db");
    let mut cmd = bin();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(&db)
        .env("PIFLEET_LOG", "debug")
        .env("PIFLEET_WORKER_TOKEN", JOIN)
        .env("PIFLEET_CLIENT_TOKEN", CLIENT)
        .env("PIFLEET_RETRY_BACKOFF_S", "0")
        .env("PIFLEET_RETRY_BACKOFF_MAX_S", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start pifleet-orchestrator");
    let stderr = child.stderr.take().expect("stderr");
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(rest) = line.split("addr=").nth(1) {
                        let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                        let _ = tx.send(addr);
                        sent = true;
                    }
                }
                let mut l = log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
    }
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("orchestrator never logged its address");
    Server {
        child,
        addr: addr.parse().expect("address"),
        log,
        dir,
    }
}

impl Server {
    fn db(&self) -> std::path::PathBuf {
        self.dir.path().join("fleet.db")
    }

    /// Runs `pifleet-orchestrator ARGS --db <this server's db>`: (status, stdout, stderr).
    fn cli(&self, args: &[&str]) -> (i32, String, String) {
        cli_on(&self.db(), args)
    }

    /// `keys add NAME ARGS...`: the secret it printed.
    fn add_key(&self, name: &str, args: &[&str]) -> String {
        let mut all = vec!["keys", "add", name];
        all.extend_from_slice(args);
        let (code, out, err) = self.cli(&all);
        assert_eq!(code, 0, "keys add {name}: {err}");
        let secret = out.trim().to_string();
        assert!(secret.starts_with("pfk_"), "{out}");
        secret
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        call(self.addr, method, path, token, body, true).await
    }

    /// Registers `id` with the join token asking for a credential; returns it.
    async fn join(&self, id: &str) -> String {
        let r = self
            .call(
                "POST",
                "/api/workers/register",
                Some(JOIN),
                Some(json!({"worker_id": id, "worker_type": "pifleet-agent", "capabilities": {}, "want_credential": true})),
            )
            .await;
        assert_eq!(r.status, 200, "join {id}: {}", r.body);
        let cred = r.body["credential"]
            .as_str()
            .expect("a credential")
            .to_string();
        assert!(cred.starts_with("pfn_"), "{cred}");
        cred
    }

    async fn submit(&self, token: &str, body: Value) -> String {
        let r = self
            .call("POST", "/api/tasks/submit", Some(token), Some(body))
            .await;
        assert_eq!(r.status, 201, "submit: {}", r.body);
        r.body["task_id"].as_str().unwrap().to_string()
    }

    async fn poll(&self, id: &str, token: &str) -> Value {
        let r = self
            .call(
                "GET",
                &format!("/api/workers/{id}/tasks"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "poll {id}: {}", r.body);
        r.body["task"].clone()
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

fn cli_on(db: &Path, args: &[&str]) -> (i32, String, String) {
    let out = bin()
        .args(args)
        .arg("--db")
        .arg(db)
        .output()
        .expect("run pifleet-orchestrator");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

struct Reply {
    status: u16,
    headers: hyper::HeaderMap,
    body: Value,
}

/// One request over a fresh connection; the body is read only when `read_body` (an
/// event stream never ends).
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    read_body: bool,
) -> Reply {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = req
        .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))
        .expect("request");
    let resp = sender.send_request(req).await.expect("send");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = if read_body {
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    } else {
        Value::Null
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn error_of(r: &Reply) -> String {
    r.body["error"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn the_four_impersonations_are_refused_and_the_real_nodes_are_unaffected() {
    let s = start();
    let a = s.join("w-a").await;
    let b = s.join("w-b").await;
    let t1 = s
        .submit(CLIENT, json!({"type": "code_generation", "data": {}}))
        .await;
    assert_eq!(s.poll("w-a", &a).await["task_id"], t1);
    let t2 = s
        .submit(CLIENT, json!({"type": "code_generation", "data": {}}))
        .await;
    assert_eq!(s.poll("w-b", &b).await["task_id"], t2);

    // 1. w-b heartbeats as w-a: with its own credential, or with the join token.
    for token in [&b, JOIN] {
        let r = s
            .call("POST", "/api/workers/w-a/heartbeat", Some(token), None)
            .await;
        assert_eq!(r.status, 403, "{}", r.body);
    }
    // 2. w-b re-registers the id w-a with other capabilities.
    for token in [&b, JOIN] {
        let r = s
            .call(
                "POST",
                "/api/workers/register",
                Some(token),
                Some(json!({"worker_id": "w-a", "worker_type": "x", "capabilities": {"models": ["evil"]}})),
            )
            .await;
        assert_eq!(r.status, 403, "{}", r.body);
    }
    // 3. w-b posts a forged result for w-a's task: 403 in w-a's name, 409 in its own.
    let forged = json!({"output": "forged by w-b", "success": true});
    for token in [&b, JOIN] {
        let r = s
            .call(
                "POST",
                &format!("/api/tasks/{t1}/result"),
                Some(token),
                Some(json!({"worker_id": "w-a", "result": forged})),
            )
            .await;
        assert_eq!(r.status, 403, "{}", r.body);
    }
    let r = s
        .call(
            "POST",
            &format!("/api/tasks/{t1}/result"),
            Some(&b),
            Some(json!({"worker_id": "w-b", "result": forged})),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    // 4. w-a unregisters w-b while w-b holds a task.
    for token in [&a, JOIN] {
        let r = s
            .call("POST", "/api/workers/w-b/unregister", Some(token), None)
            .await;
        assert_eq!(r.status, 403, "{}", r.body);
        assert!(error_of(&r).contains("w-b"), "{}", r.body);
    }

    // The real nodes: both still hold their tasks and report them.
    for (id, cred, task) in [("w-a", &a, &t1), ("w-b", &b, &t2)] {
        let r = s
            .call(
                "POST",
                &format!("/api/workers/{id}/heartbeat"),
                Some(cred),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let r = s
            .call(
                "POST",
                &format!("/api/tasks/{task}/result"),
                Some(cred),
                Some(json!({"worker_id": id, "result": {"output": format!("by {id}"), "success": true}})),
            )
            .await;
        assert_eq!(
            (r.status, r.body["status"].as_str()),
            (200, Some("received"))
        );
        let st = s
            .call(
                "GET",
                &format!("/api/tasks/status/{task}"),
                Some(CLIENT),
                None,
            )
            .await;
        assert_eq!(st.body["status"], "completed");
        assert_eq!(st.body["result"]["output"], format!("by {id}"));
    }
    let nodes = s.call("GET", "/api/workers/list", Some(CLIENT), None).await;
    assert!(nodes.body.to_string().contains("w-b"), "{}", nodes.body);
    // A node's own credential re-registers it, and gets no second one.
    let r = s
        .call(
            "POST",
            "/api/workers/register",
            Some(&a),
            Some(json!({"worker_id": "w-a", "worker_type": "pifleet-agent", "capabilities": {}, "want_credential": true})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.get("credential").is_none(), "{}", r.body);
    // A credential survives a restart? It lives in the database: see the forget test.
    let log = s.log();
    for secret in [a.as_str(), b.as_str(), JOIN, CLIENT] {
        assert!(!log.contains(secret), "a secret is in the log");
    }
}

#[tokio::test]
async fn a_seed_protocol_worker_keeps_working_with_the_shared_token() {
    let s = start();
    // The seed's worker: no want_credential, the shared token, any case of "Bearer".
    let r = s
        .call(
            "POST",
            "/api/workers/register",
            Some(JOIN),
            Some(json!({"worker_id": "seed-1", "worker_type": "llm", "capabilities": {"models": ["llama3.2:1b"]}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.get("credential").is_none(), "{}", r.body);
    let task = s
        .submit(CLIENT, json!({"type": "evolution_crossover", "data": {}}))
        .await;
    let stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(
            hyper::Request::post("/api/workers/seed-1/heartbeat")
                .header("host", s.addr.to_string())
                .header("authorization", format!("bearer {JOIN}"))
                .body(http_body_util::Full::new(hyper::body::Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "lower-case bearer scheme");
    assert_eq!(s.poll("seed-1", JOIN).await["task_id"], task);
    let r = s
        .call(
            "POST",
            &format!("/api/tasks/{task}/result"),
            Some(JOIN),
            Some(json!({"worker_id": "seed-1", "result": {"output": "child", "success": true}})),
        )
        .await;
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (200, Some("received"))
    );
    let r = s
        .call("POST", "/api/workers/seed-1/unregister", Some(JOIN), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The join token is still only the worker token.
    let r = s.call("GET", "/api/stats", Some(JOIN), None).await;
    assert_eq!(r.status, 401, "{}", r.body);
    let r = s
        .call("POST", "/api/workers/seed-1/heartbeat", Some("nope"), None)
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
}

#[tokio::test]
async fn a_forgotten_node_is_refused_at_once_and_may_join_again_with_the_join_token() {
    let s = start();
    let a = s.join("w-a").await;
    let task = s
        .submit(CLIENT, json!({"type": "code_generation", "data": {}}))
        .await;
    assert_eq!(s.poll("w-a", &a).await["task_id"], task);

    // Forgotten from the command line, beside the running server.
    let (code, out, err) = s.cli(&["nodes", "forget", "w-a"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("dropped its credential"), "{out}");
    let r = s
        .call("POST", "/api/workers/w-a/heartbeat", Some(&a), None)
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(error_of(&r).contains("forgotten"), "{}", r.body);
    assert!(error_of(&r).contains("join token"), "{}", r.body);
    // Its task went back to the queue.
    let st = s
        .call(
            "GET",
            &format!("/api/tasks/status/{task}"),
            Some(CLIENT),
            None,
        )
        .await;
    assert_eq!(st.body["status"], "pending", "{}", st.body);
    let (code, _, err) = s.cli(&["nodes", "forget", "no-such-node"]);
    assert_eq!(code, 1);
    assert!(err.contains("no node \"no-such-node\""), "{err}");

    // Re-joining needs the join token, and gives a new credential.
    let a2 = s.join("w-a").await;
    assert_ne!(a, a2);
    assert_eq!(s.poll("w-a", &a2).await["task_id"], task);

    // The admin API forgets too; a read key may not.
    let reader = s.add_key("viewer", &["--role", "read"]);
    let r = s
        .call("POST", "/api/nodes/w-a/forget", Some(&reader), None)
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = s
        .call("POST", "/api/nodes/w-a/forget", Some(CLIENT), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["had_credential"], true);
    assert_eq!(r.body["requeued"], json!([task]));
    let r = s
        .call("POST", "/api/nodes/w-a/forget", Some(CLIENT), None)
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = s
        .call("GET", "/api/workers/w-a/tasks", Some(&a2), None)
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
}

#[tokio::test]
async fn credentials_survive_a_restart_of_the_orchestrator() {
    let mut s = start();
    let a = s.join("w-a").await;
    let _ = s.child.kill();
    let _ = s.child.wait();
    // Same database, new process.
    let db = s.db();
    let mut cmd = bin();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(&db)
        .env("PIFLEET_LOG", "info")
        .env("PIFLEET_WORKER_TOKEN", JOIN)
        .env("PIFLEET_CLIENT_TOKEN", CLIENT)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("addr=").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
            }
        }
    });
    let addr: SocketAddr = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap()
        .parse()
        .unwrap();
    s.child = child;
    s.addr = addr;
    let r = s
        .call("POST", "/api/workers/w-a/heartbeat", Some(&a), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s
        .call(
            "POST",
            "/api/workers/register",
            Some(JOIN),
            Some(json!({"worker_id": "w-a", "worker_type": "llm", "capabilities": {}})),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
}

/// `(method, path, role needed)`; `{task}` and `{node}` are filled in.
const ENDPOINTS: &[(&str, &str, &str)] = &[
    ("GET", "/api/stats", "read"),
    ("GET", "/api/tasks/queue", "read"),
    ("GET", "/api/tasks/status/{task}", "read"),
    ("GET", "/api/workers/list", "read"),
    ("GET", "/api/nodes", "read"),
    ("GET", "/api/nodes/{node}", "read"),
    ("GET", "/metrics", "read"),
    ("GET", "/", "read"),
    ("GET", "/api/events", "read"),
    ("POST", "/api/tasks/submit", "submit"),
    ("POST", "/api/nodes/{node}/drain", "admin"),
    ("POST", "/api/nodes/{node}/undrain", "admin"),
    ("POST", "/api/nodes/{node}/forget", "admin"),
];

fn rank(role: &str) -> u8 {
    match role {
        "read" => 0,
        "submit" => 1,
        _ => 2,
    }
}

#[tokio::test]
async fn each_role_reaches_its_endpoints_and_is_refused_the_others() {
    let s = start();
    let keys: Vec<(&str, String)> = ["read", "submit", "admin"]
        .into_iter()
        .map(|role| (role, s.add_key(&format!("k-{role}"), &["--role", role])))
        .collect();
    let task = s
        .submit(CLIENT, json!({"type": "code_generation", "data": {}}))
        .await;
    for (role, key) in &keys {
        // A node per role, so one role's forget does not change another's answers.
        let node = format!("n-{role}");
        s.join(&node).await;
        for (method, path, needed) in ENDPOINTS {
            let path = path.replace("{task}", &task).replace("{node}", &node);
            let body = (*method == "POST").then(|| json!({"type": "code_generation", "data": {}}));
            let r = call(
                s.addr,
                method,
                &path,
                Some(key),
                body,
                path != "/api/events",
            )
            .await;
            if rank(role) >= rank(needed) {
                assert!(
                    (200..300).contains(&r.status),
                    "{role} {method} {path}: {} {}",
                    r.status,
                    r.body
                );
            } else {
                assert_eq!(r.status, 403, "{role} {method} {path}: {}", r.body);
                assert!(
                    error_of(&r).contains(&format!("needs role {needed}")),
                    "{}",
                    r.body
                );
            }
        }
    }
    // The page takes a key by ?token= as well.
    let read = &keys[0].1;
    let r = call(s.addr, "GET", &format!("/?token={read}"), None, None, true).await;
    assert_eq!(r.status, 200);
    // Without a key, or with a wrong one: 401 everywhere.
    for token in [None, Some("pfk_0000"), Some(JOIN)] {
        let r = s.call("GET", "/api/stats", token, None).await;
        assert_eq!(r.status, 401, "{token:?}: {}", r.body);
    }

    // Revoked from the command line beside the server: refused from the next request.
    let submit_key = &keys[1].1;
    assert_eq!(
        s.call("GET", "/api/stats", Some(submit_key), None)
            .await
            .status,
        200
    );
    let (code, out, err) = s.cli(&["keys", "revoke", "k-submit"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("revoked"), "{out}");
    let r = s.call("GET", "/api/stats", Some(submit_key), None).await;
    assert_eq!(r.status, 401, "{}", r.body);

    // Per-key counters on /metrics, by name.
    let r = s.call("GET", "/metrics", Some(CLIENT), None).await;
    let text = r.body.as_str().unwrap_or_default().to_string();
    assert!(
        text.contains("pifleet_key_requests_total{key=\"k-read\"}"),
        "{text}"
    );
    assert!(
        text.contains("pifleet_key_tasks_total{key=\"k-submit\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("pifleet_key_refused_total{key=\"k-read\",reason=\"role\"} 4"),
        "{text}"
    );

    // Secrets: never in `keys list`, never in the log.
    let (code, list, _) = s.cli(&["keys", "list"]);
    assert_eq!(code, 0);
    assert!(
        list.contains("k-read") && list.contains("k-admin"),
        "{list}"
    );
    assert!(!list.contains("k-submit"), "revoked keys are gone: {list}");
    let log = s.log();
    for (_, key) in &keys {
        assert!(!list.contains(key.as_str()), "a secret in keys list");
        assert!(!log.contains(key.as_str()), "a secret in the log");
        assert!(!log.contains(&key[4..20]), "part of a secret in the log");
    }
}

#[tokio::test]
async fn a_keys_default_priority_applies_and_its_maximum_caps() {
    let s = start();
    let key = s.add_key(
        "batch",
        &["--role", "submit", "--priority", "3", "--max-priority", "6"],
    );
    let plain = s
        .submit(&key, json!({"type": "code_generation", "data": {}}))
        .await;
    let asked = s
        .submit(
            &key,
            json!({"type": "code_generation", "data": {}, "priority": 6}),
        )
        .await;
    let r = s
        .call(
            "POST",
            "/api/tasks/submit",
            Some(&key),
            Some(json!({"type": "code_generation", "data": {}, "priority": 7})),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        error_of(&r).contains("maximum of key \"batch\" (6)"),
        "{}",
        r.body
    );
    for (task, want) in [(&plain, 3), (&asked, 6)] {
        let st = s
            .call(
                "GET",
                &format!("/api/tasks/status/{task}"),
                Some(&key),
                None,
            )
            .await;
        assert_eq!(st.body["priority"], want, "{}", st.body);
    }
    // The client token is an admin key without limits: the protocol's default.
    let t = s
        .submit(
            CLIENT,
            json!({"type": "code_generation", "data": {}, "priority": 10}),
        )
        .await;
    let st = s
        .call("GET", &format!("/api/tasks/status/{t}"), Some(CLIENT), None)
        .await;
    assert_eq!(st.body["priority"], 10);
}

#[tokio::test]
async fn both_quotas_answer_429_with_retry_after() {
    let s = start();
    // A rate of 2 per minute: the third request inside a minute is refused.
    let slow = s.add_key("slow", &["--role", "read", "--rate", "2"]);
    for _ in 0..2 {
        assert_eq!(
            s.call("GET", "/api/stats", Some(&slow), None).await.status,
            200
        );
    }
    let r = s.call("GET", "/api/stats", Some(&slow), None).await;
    assert_eq!(r.status, 429, "{}", r.body);
    let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&wait), "{wait}");
    assert!(error_of(&r).contains("2 requests per minute"), "{}", r.body);

    // 100 generated tokens a day: a result of 500 tokens puts the key in debt.
    let thrifty = s.add_key("thrifty", &["--role", "submit", "--tokens-per-day", "100"]);
    let cred = s.join("w-a").await;
    let task = s
        .submit(&thrifty, json!({"type": "code_generation", "data": {}}))
        .await;
    assert_eq!(s.poll("w-a", &cred).await["task_id"], task);
    let r = s
        .call(
            "POST",
            &format!("/api/tasks/{task}/result"),
            Some(&cred),
            Some(json!({"worker_id": "w-a", "result": {"output": "long", "success": true, "completion_tokens": 500}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s
        .call(
            "POST",
            "/api/tasks/submit",
            Some(&thrifty),
            Some(json!({"type": "code_generation", "data": {}})),
        )
        .await;
    assert_eq!(r.status, 429, "{}", r.body);
    let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    // 400 tokens of debt at 100 a day: about four days.
    assert!(wait > 3 * 86_400 && wait <= 4 * 86_400 + 1, "{wait}");
    assert!(
        error_of(&r).contains("100 generated tokens per day"),
        "{}",
        r.body
    );
    // Reading does not generate: still allowed.
    let r = s
        .call(
            "GET",
            &format!("/api/tasks/status/{task}"),
            Some(&thrifty),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let m = s.call("GET", "/metrics", Some(CLIENT), None).await;
    let text = m.body.as_str().unwrap_or_default().to_string();
    assert!(
        text.contains("pifleet_key_generated_tokens_total{key=\"thrifty\"} 500"),
        "{text}"
    );
    assert!(
        text.contains("pifleet_key_refused_total{key=\"slow\",reason=\"rate\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn health_tells_only_healthy_without_a_token() {
    let s = start();
    s.join("w-a").await;
    let r = s.call("GET", "/health", None, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!({"status": "healthy"}));
    let r = s
        .call("GET", "/health", Some("wrong-token-123456789"), None)
        .await;
    assert_eq!(r.body, json!({"status": "healthy"}));
    for token in [CLIENT, JOIN] {
        let r = s.call("GET", "/health", Some(token), None).await;
        assert_eq!(r.body["workers_online"], 1, "{}", r.body);
        assert_eq!(r.body["tasks_pending"], 0);
    }
}

#[test]
fn equal_worker_and_client_tokens_refuse_to_start() {
    let out = bin()
        .args(["serve", "--listen", "127.0.0.1:0", "--db", ":memory:"])
        .env("PIFLEET_WORKER_TOKEN", JOIN)
        .env("PIFLEET_CLIENT_TOKEN", JOIN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("client_token: must differ from worker_token"),
        "{err}"
    );
}

#[tokio::test]
async fn the_gateway_takes_submit_keys_and_refuses_in_the_apis_own_shape() {
    let s = start();
    let reader = s.add_key("viewer", &["--role", "read"]);
    let app = s.add_key("app", &["--role", "submit", "--rate", "1"]);
    // A read key may not run models: 403, OpenAI's error object on /v1.
    let r = s.call("GET", "/v1/models", Some(&reader), None).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("needs role submit"));
    assert_eq!(r.body["error"]["type"], "invalid_request_error");
    // No key: 401 with OpenAI's code.
    let r = s.call("GET", "/v1/models", None, None).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "invalid_api_key");
    // A submit key: allowed, then its rate of one a minute answers 429 in Ollama's shape.
    let r = s.call("GET", "/api/tags", Some(&app), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s.call("GET", "/api/tags", Some(&app), None).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(
        r.body["error"]
            .as_str()
            .unwrap()
            .contains("1 requests per minute"),
        "{}",
        r.body
    );
    let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let r = s.call("GET", "/v1/models", Some(&app), None).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "rate_limit_exceeded");
    // The client token is an admin key: the gateway's old key keeps working.
    let r = s.call("GET", "/v1/models", Some(CLIENT), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
}
