//! Who is who, against the real binary over loopback with a real SQLite file: node
//! credentials (the four impersonations of a stolen node are refused), seed-protocol
//! workers on the shared token, client keys with roles, priorities and quotas managed by
//! `pifleet-orchestrator keys ...` beside the running server, and secrets kept out of
//! logs and listings.

mod clients;
mod nodes;

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
