//! The real binary against what a bad day brings: a second orchestrator on the same
//! database, slow and half-open clients, SIGTERM in the middle of a request.

mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use util::http;
use util::process::{sigterm, start, start_logged, wait_exit, KillOnDrop};

#[tokio::test]
async fn a_second_orchestrator_on_the_same_database_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("fleet.db");
    let (first, addr) = start(&db, &[]);
    let mut first = KillOnDrop(first);

    let second = Command::new(env!("CARGO_BIN_EXE_pifleet-orchestrator"))
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(&db)
        .env_remove("PIFLEET_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the second orchestrator");
    let mut second = KillOnDrop(second);
    // Bounded: a second orchestrator that starts serving fails here instead of hanging.
    let code = wait_exit(&mut second, Duration::from_secs(20));
    assert!(!code.success(), "the second one started");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().expect("stderr"), &mut err)
        .expect("read stderr");
    assert!(err.contains(&db.display().to_string()), "{err}");
    assert!(err.contains(&format!("pid {}", first.id())), "{err}");

    // The first one is untouched and still serves.
    let (s, _) = http(addr, "GET", "/health", None).await;
    assert_eq!(s, 200);

    // Once the owner is gone (even by kill -9) the file is free again.
    first.kill().expect("kill -9");
    first.wait().expect("reap");
    let (again, addr) = start(&db, &[]);
    let mut again = KillOnDrop(again);
    let (s, _) = http(addr, "GET", "/health", None).await;
    assert_eq!(s, 200);
    sigterm(&again);
    assert!(wait_exit(&mut again, Duration::from_secs(20)).success());
}

/// Sends `bytes` on a fresh connection and reads until the server closes it (bounded).
fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(bytes).expect("send");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn status_and_json(answer: &str) -> (u16, Value) {
    let code = answer
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
    let v = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer:?}"));
    (code, v)
}

/// True once the server has closed the connection (EOF or reset) within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[tokio::test]
async fn slowloris_connections_are_closed_and_the_server_keeps_answering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (child, addr) = start(
        &dir.path().join("t.db"),
        &[
            ("PIFLEET_HEADER_TIMEOUT_S", "1"),
            ("PIFLEET_BODY_TIMEOUT_S", "1"),
        ],
    );
    let mut child = KillOnDrop(child);
    // Half a request head each, then silence.
    let mut heads: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").unwrap();
            s
        })
        .collect();
    // A whole head and half the body it announced.
    let mut body = TcpStream::connect(addr).expect("connect");
    body.write_all(
        b"POST /api/tasks/submit HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n\
          content-length: 100\r\n\r\n{\"type\":",
    )
    .unwrap();
    // An idle keep-alive connection.
    let mut idle = TcpStream::connect(addr).expect("connect");

    let (s, _) = http(addr, "GET", "/health", None).await;
    assert_eq!(s, 200, "the server answers while they hang");
    for s in heads.iter_mut() {
        assert!(
            closed_within(s, Duration::from_secs(15)),
            "a half head stayed open"
        );
    }
    assert!(
        closed_within(&mut idle, Duration::from_secs(15)),
        "an idle connection stayed open"
    );
    let mut answer = String::new();
    body.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let _ = body.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    assert!(answer.contains("nothing arrived"), "{answer:?}");
    let (s, _) = http(addr, "GET", "/health", None).await;
    assert_eq!(s, 200);
    child.kill().expect("kill");
    child.wait().expect("reap");
}

#[tokio::test]
async fn past_the_connection_cap_new_connections_wait_and_it_is_logged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (child, addr, log) = start_logged(
        &dir.path().join("t.db"),
        &[
            ("PIFLEET_MAX_CONNECTIONS", "8"),
            ("PIFLEET_HEADER_TIMEOUT_S", "600"),
        ],
    );
    let mut child = KillOnDrop(child);
    let mut held: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    // The ninth is in the kernel's backlog: connected, not answered.
    let mut ninth = TcpStream::connect(addr).expect("connect");
    ninth
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    ninth
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        matches!(ninth.read(&mut buf), Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut),
        "answered past the cap"
    );
    let logged = |what: &str| log.lock().unwrap().iter().any(|l| l.contains(what));
    let mut seen = false;
    for _ in 0..100 {
        if logged("connection limit reached") {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "no log line at the cap");
    // One slot frees: the waiting connection is served.
    drop(held.pop());
    ninth
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut answer = String::new();
    let _ = ninth.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    child.kill().expect("kill");
    child.wait().expect("reap");
}

#[tokio::test]
async fn sigterm_does_not_wait_for_requests_that_never_finished_arriving() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Timeouts and grace far longer than the bound below: only the shutdown rule can
    // make it exit in time.
    let (child, addr) = start(
        &dir.path().join("t.db"),
        &[
            ("PIFLEET_HEADER_TIMEOUT_S", "600"),
            ("PIFLEET_BODY_TIMEOUT_S", "600"),
            ("PIFLEET_SHUTDOWN_GRACE_S", "600"),
            ("PIFLEET_MAX_WAIT_S", "60"),
        ],
    );
    let mut child = KillOnDrop(child);
    let (s, _) = http(
        addr,
        "POST",
        "/api/workers/register",
        Some(json!({"worker_id": "w", "worker_type": "pi", "capabilities": {}})),
    )
    .await;
    assert_eq!(s, 200);
    let mut head = TcpStream::connect(addr).expect("connect");
    head.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut body = TcpStream::connect(addr).expect("connect");
    body.write_all(
        b"POST /api/tasks/submit HTTP/1.1\r\nHost: x\r\ncontent-length: 50\r\n\r\n{\"ty",
    )
    .unwrap();
    let poll =
        tokio::spawn(async move { http(addr, "GET", "/api/workers/w/tasks?wait=60", None).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    sigterm(&child);
    let (s, v) = poll.await.expect("poll");
    assert_eq!(
        (s, v["task"].clone()),
        (200, Value::Null),
        "the long poll is answered"
    );
    let code = wait_exit(&mut child, Duration::from_secs(20));
    assert!(code.success(), "{code}");
    assert!(closed_within(&mut head, Duration::from_secs(1)));
    assert!(closed_within(&mut body, Duration::from_secs(1)));
}

#[tokio::test]
async fn an_oversized_content_length_is_refused_before_the_body_and_http_errors_are_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (child, addr) = start(&dir.path().join("t.db"), &[]);
    let mut child = KillOnDrop(child);

    // Only the head is sent: the answer must not wait for 100 MB.
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(
        b"POST /api/tasks/submit HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n\
          content-length: 100000000\r\n\r\n",
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let (code, v) = status_and_json(&answer);
    assert_eq!(code, 413, "{answer}");
    assert!(v["error"].as_str().unwrap().contains("100000000"), "{v}");

    let cases: [(Vec<u8>, u16); 4] = [
        (
            b"POST /api/tasks/submit HTTP/1.1\r\nHost: x\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n{}".to_vec(),
            400,
        ),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n".to_vec(), 400),
        (
            format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000)).into_bytes(),
            414,
        ),
        (
            format!("GET /health HTTP/1.1\r\nHost: x\r\nx-big: {}\r\n\r\n", "b".repeat(500_000))
                .into_bytes(),
            431,
        ),
    ];
    for (request, want) in cases {
        let answer = raw(addr, &request);
        let (code, v) = status_and_json(&answer);
        assert_eq!(
            code,
            want,
            "{}: {answer}",
            String::from_utf8_lossy(&request[..request.len().min(80)])
        );
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{answer}"
        );
    }
    let (s, _) = http(addr, "GET", "/health", None).await;
    assert_eq!(s, 200);
    child.kill().expect("kill");
    child.wait().expect("reap");
}
