//! The real `pifleet` binary, run the way an operator runs it: no token or URL from the
//! test's own environment, stdin closed, output captured.

use std::process::{Command, Output, Stdio};

use crate::binary;

/// `pifleet --url URL ARGS...`.
pub fn pifleet(orch_url: &str, args: &[&str]) -> Output {
    pifleet_env(orch_url, args, &[])
}

/// [`pifleet`] with extra environment (`PIFLEET_TOKEN`, `NO_COLOR`, ...).
pub fn pifleet_env(orch_url: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = command(orch_url);
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run pifleet")
}

/// The command line, for tests that drive stdin themselves.
pub fn command(orch_url: &str) -> Command {
    let mut cmd = Command::new(binary("pifleet"));
    cmd.arg("--url")
        .arg(orch_url)
        .env_remove("PIFLEET_TOKEN")
        .env_remove("PIFLEET_URL")
        .env_remove("NO_COLOR");
    cmd
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Stdout of a run that must have succeeded.
#[track_caller]
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "pifleet failed ({}): {}\n{}",
        o.status,
        stderr(o),
        stdout(o)
    );
    stdout(o)
}
