//! The pifleet-agent binary: configuration errors, --help/--version, daemon mode.

use std::process::Command;
use std::time::Duration;

use pifleet_system_tests::fake_seed::SeedOrchestrator;
use pifleet_system_tests::fleet::wait_for;

use crate::util::tempdir;

const BIN: &str = env!("CARGO_BIN_EXE_pifleet-agent");

fn agent(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("PIFLEET_AGENT_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run pifleet-agent")
}

#[test]
fn bad_config_exits_2_naming_file_key_and_fix() {
    let dir = tempdir("bin-bad-config");
    let file = dir.path().join("agent.toml");
    std::fs::write(
        &file,
        "orchestrator_url = \"http://o:5000\"\nheartbeat = 10\n",
    )
    .unwrap();
    let out = agent(&["--config", file.to_str().unwrap(), "--id", "x"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(file.to_str().unwrap()), "{err}");
    assert!(err.contains("heartbeat"), "{err}");
    assert!(err.contains("fix:"), "{err}");

    let out = agent(&["--id", "x"], &[("PIFLEET_OLLAMA_URL", "localhost:11434")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("PIFLEET_OLLAMA_URL") && err.contains("ollama_url"),
        "{err}"
    );

    let out = agent(&["--config", "/nonexistent/agent.toml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/agent.toml"));

    let out = agent(&["--frobnicate"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage:"));
}

#[test]
fn help_and_version_exit_0() {
    let out = agent(&["--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--orchestrator URL"));
    let out = agent(&["--version"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let version = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        version.trim(),
        format!("pifleet-agent {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn daemon_detaches_writes_pid_and_log_and_stops_on_sigterm() {
    let seed = SeedOrchestrator::start().unwrap();
    let dir = tempdir("bin-daemon");
    let state = dir.path().join("state");
    let out = agent(
        &[
            "--daemon",
            "--orchestrator",
            &seed.url(),
            "--ollama",
            "http://127.0.0.1:9",
            "--id",
            "daemon-pi",
            "--state-dir",
            state.to_str().unwrap(),
        ],
        &[
            ("PIFLEET_HEARTBEAT_INTERVAL_S", "0.2"),
            ("PIFLEET_POLL_INTERVAL_S", "0.2"),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "the launching process returns at once"
    );
    let pid_file = state.join("pifleet-agent.pid");
    let pid = wait_for("the pid file", Duration::from_secs(10), || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
    });
    wait_for("a registration", Duration::from_secs(10), || {
        (!seed
            .seen_matching("POST", "/api/workers/register", "")
            .is_empty())
        .then_some(())
    });
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    wait_for("the unregister", Duration::from_secs(10), || {
        (!seed
            .seen_matching("POST", "/api/workers/", "/unregister")
            .is_empty())
        .then_some(())
    });
    wait_for("the daemon to exit", Duration::from_secs(10), || {
        (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    });
    let log = std::fs::read_to_string(state.join("agent.log")).unwrap();
    assert!(log.contains("registered as daemon-pi"), "{log}");
    assert!(log.contains("stopped"), "{log}");
}
