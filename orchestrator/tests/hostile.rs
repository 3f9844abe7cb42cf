//! The real binary against what a bad day brings: a second orchestrator on the same
//! database, slow and half-open clients, SIGTERM in the middle of a request.

mod util;

use std::process::{Command, Stdio};
use std::time::Duration;

use util::http;
use util::process::{sigterm, start, wait_exit};

#[tokio::test]
async fn a_second_orchestrator_on_the_same_database_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("fleet.db");
    let (mut first, addr) = start(&db, &[]);

    let mut second = Command::new(env!("CARGO_BIN_EXE_pifleet-orchestrator"))
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(&db)
        .env_remove("PIFLEET_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the second orchestrator");
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
    let (mut again, addr) = start(&db, &[]);
    let (s, _) = http(addr, "GET", "/health", None).await;
    assert_eq!(s, 200);
    sigterm(&again);
    assert!(wait_exit(&mut again, Duration::from_secs(20)).success());
}
