//! The real binary as a child process on a free loopback port.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Starts `pifleet-orchestrator serve` on a free loopback port and returns once it
/// logged the address it bound.
pub fn start(db: &Path, extra_env: &[(&str, &str)]) -> (Child, SocketAddr) {
    let (child, addr, _) = start_logged(db, extra_env);
    (child, addr)
}

/// What the child wrote to stderr so far, one entry a line.
pub type Log = Arc<Mutex<Vec<String>>>;

/// Like [`start`], and keeps every line the child logs.
pub fn start_logged(db: &Path, extra_env: &[(&str, &str)]) -> (Child, SocketAddr, Log) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pifleet-orchestrator"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(db)
        .env("PIFLEET_LOG", "info")
        .env_remove("PIFLEET_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start pifleet-orchestrator");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let log: Log = Arc::default();
    let keep = log.clone();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            keep.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(line.clone());
            if !sent {
                if let Some(rest) = line.split("addr=").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send(addr);
                    sent = true;
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("orchestrator never logged its address");
    (child, addr.parse().expect("logged address parses"), log)
}

/// Waits (bounded) for the child to exit and returns its status.
pub fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(code) = child.try_wait().expect("wait") {
            return code;
        }
        if started.elapsed() > within {
            let _ = child.kill();
            let _ = child.wait();
            panic!("did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGTERM to the child.
pub fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("send SIGTERM");
    assert!(status.success());
}

/// Kills the child when dropped, so a failing test leaves no orchestrator behind.
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
