//! Configuration: `/etc/pifleet/agent.toml` (path overridable) < environment `PIFLEET_*` <
//! command-line flags. Two stages: a raw serde struct that rejects unknown keys, then a
//! validated [`Config`] whose errors name the file or variable, the key and the fix.
//!
//! `args.rs` parses the command line, `raw.rs` holds the keys as written (file, then
//! environment and flags laid over it), `validate.rs` turns them into a [`Config`]; this
//! file holds the defaults and the order of the layers.
//!
//! The SD image's first-boot service reads a `[wifi]` table from the same file, so that
//! one table is accepted and ignored here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Error;

mod args;
mod raw;
mod validate;

pub use args::{Args, USAGE};
use raw::RawConfig;
pub use raw::KEYS;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const DEFAULT_CONFIG_PATH: &str = "/etc/pifleet/agent.toml";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/pifleet-agent";
pub const DEFAULT_ORCHESTRATOR_URL: &str = "http://127.0.0.1:5000";
pub const DEFAULT_OLLAMA_URL: &str = "http://127.0.0.1:11434";
pub const DEFAULT_HEARTBEAT_INTERVAL_S: f64 = 10.0;
pub const DEFAULT_POLL_WAIT_S: f64 = 20.0;
pub const DEFAULT_POLL_INTERVAL_S: f64 = 5.0;
pub const DEFAULT_TASK_TIMEOUT_S: f64 = 600.0;
/// A cold model load on a Pi 4 from an SD card takes minutes, not seconds.
pub const DEFAULT_FIRST_TOKEN_TIMEOUT_S: f64 = 180.0;
pub const DEFAULT_SLOTS: u32 = 1;
pub const DEFAULT_RETRY_BASE_MS: u64 = 500;
pub const DEFAULT_RETRY_MAX_S: f64 = 60.0;
pub const DEFAULT_STOP_GRACE_S: f64 = 30.0;
pub const DEFAULT_WORKER_TYPE: &str = "pifleet-agent";
/// Environment variable naming the config file (the `--config` flag wins over it).
pub const CONFIG_ENV: &str = "PIFLEET_AGENT_CONFIG";

/// The validated configuration the agent runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base URL without a trailing slash.
    pub orchestrator_url: String,
    pub worker_token: Option<String>,
    pub ollama_url: String,
    pub id: String,
    pub worker_type: String,
    pub state_dir: PathBuf,
    pub heartbeat_interval: Duration,
    pub poll_wait: Duration,
    pub poll_interval: Duration,
    pub task_timeout: Duration,
    pub first_token_timeout: Duration,
    pub slots: u32,
    pub led_pin: Option<u8>,
    pub proc_root: PathBuf,
    pub sys_root: PathBuf,
    pub default_model: Option<String>,
    pub keep_alive: Option<String>,
    pub log_level: log::LevelFilter,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub stop_grace: Duration,
    /// Pull and pre-load models when the orchestrator asks (a Pi on a small SD card may
    /// not want multi-gigabyte downloads). Declared at registration.
    pub allow_model_pull: bool,
    pub daemon: bool,
    /// systemd's `WATCHDOG_USEC`, set by the binary from its environment, never from the file.
    pub watchdog: Option<Duration>,
    /// Where the file came from, for log lines (None: no file was read).
    pub config_path: Option<PathBuf>,
}

impl Config {
    /// A config for tests and embedding: defaults plus these URLs, id and state dir.
    pub fn for_test(
        orchestrator_url: &str,
        ollama_url: &str,
        id: &str,
        state_dir: &Path,
    ) -> Config {
        let mut env = HashMap::new();
        env.insert(
            "PIFLEET_ORCHESTRATOR_URL".to_string(),
            orchestrator_url.to_string(),
        );
        env.insert("PIFLEET_OLLAMA_URL".to_string(), ollama_url.to_string());
        env.insert("PIFLEET_ID".to_string(), id.to_string());
        env.insert(
            "PIFLEET_STATE_DIR".to_string(),
            state_dir.display().to_string(),
        );
        let mut cfg = Config::load(&Args::default(), |k| env.get(k).cloned(), false)
            .expect("test config is valid");
        cfg.heartbeat_interval = Duration::from_millis(200);
        cfg.poll_wait = Duration::from_secs(2);
        cfg.poll_interval = Duration::from_millis(200);
        cfg.retry_base = Duration::from_millis(50);
        cfg.retry_max = Duration::from_millis(500);
        cfg.stop_grace = Duration::from_secs(5);
        cfg
    }

    /// Loads file < environment < flags. `env` looks a variable up (tests pass a map).
    /// With `default_file` true, a missing default config file is not an error.
    pub fn load(
        args: &Args,
        env: impl Fn(&str) -> Option<String>,
        default_file: bool,
    ) -> Result<Config, Error> {
        let mut origins: HashMap<&'static str, String> = HashMap::new();
        let explicit = args
            .config
            .clone()
            .or_else(|| env(CONFIG_ENV).map(PathBuf::from));
        let path = explicit
            .clone()
            .or_else(|| default_file.then(|| PathBuf::from(DEFAULT_CONFIG_PATH)));
        let mut raw = RawConfig::default();
        let mut config_path = None;
        if let Some(path) = path {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    raw = basic_toml::from_str(&text).map_err(|e| {
                        let e = with_key_line(e.to_string(), &text);
                        let fix = if e.contains("unknown field") {
                            "remove or rename that key (agent.toml.example lists them all)"
                        } else {
                            "write numbers unquoted and text in double quotes"
                        };
                        Error::ConfigParse {
                            path: path.clone(),
                            message: format!("{e}; fix: {fix}"),
                        }
                    })?;
                    let origin = format!("config file {}", path.display());
                    for key in KEYS {
                        if raw.is_set(key) {
                            origins.insert(key, origin.clone());
                        }
                    }
                    config_path = Some(path);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {}
                Err(source) => return Err(Error::ConfigRead { path, source }),
            }
        }
        for key in KEYS {
            let var = format!("PIFLEET_{}", key.to_ascii_uppercase());
            if let Some(value) = env(&var) {
                let origin = format!("environment {var}");
                raw.set(key, &value, &origin)?;
                origins.insert(key, origin);
            }
        }
        let flags = [
            ("orchestrator_url", "--orchestrator", &args.orchestrator),
            ("ollama_url", "--ollama", &args.ollama),
            ("id", "--id", &args.id),
            ("state_dir", "--state-dir", &args.state_dir),
        ];
        for (key, flag, value) in flags {
            if let Some(value) = value {
                let origin = format!("flag {flag}");
                raw.set(key, value, &origin)?;
                origins.insert(key, origin);
            }
        }
        let state_dir_default = env("STATE_DIRECTORY")
            .and_then(|s| s.split(':').next().map(str::to_string))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_STATE_DIR.to_string());
        raw.validate(&origins, args.daemon, state_dir_default, config_path)
    }
}

/// basic-toml places an unknown key at the start of its table ("line 1 column 1"); the
/// line that writes the key is what the user has to find.
fn with_key_line(message: String, text: &str) -> String {
    let Some(key) = message
        .split_once("unknown field `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(key, _)| key)
    else {
        return message;
    };
    let written = text.lines().position(|l| {
        l.trim_start()
            .strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    });
    match (written, message.rfind(" at line ")) {
        (Some(i), Some(at)) => format!("{} at line {}", &message[..at], i + 1),
        _ => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(file: Option<&str>, env: &[(&str, &str)], args: &[&str]) -> Result<Config, Error> {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        if let Some(text) = file {
            let path = dir.join("agent.toml");
            std::fs::write(&path, text).unwrap();
            argv.push("--config".into());
            argv.push(path.display().to_string());
        }
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([("PIFLEET_ID".to_string(), "t".to_string())])
            .collect();
        let args = Args::parse(argv)?;
        Config::load(&args, |k| env.get(k).cloned(), false)
    }

    #[test]
    fn defaults_are_sane() {
        let c = load(None, &[], &[]).unwrap();
        assert_eq!(c.orchestrator_url, DEFAULT_ORCHESTRATOR_URL);
        assert_eq!(c.ollama_url, DEFAULT_OLLAMA_URL);
        assert_eq!(c.heartbeat_interval, Duration::from_secs(10));
        assert_eq!(c.slots, 1);
        assert_eq!(c.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
    }

    #[test]
    fn flags_beat_environment_beat_file() {
        let file = "orchestrator_url = \"http://file:5000\"\nollama_url = \"http://file:11434\"\nid = \"from-file\"\nheartbeat_interval_s = 3\n";
        let c = load(
            Some(file),
            &[
                ("PIFLEET_OLLAMA_URL", "http://env:11434/"),
                ("PIFLEET_ID", "from-env"),
            ],
            &["--id", "from-flag"],
        )
        .unwrap();
        assert_eq!(c.orchestrator_url, "http://file:5000");
        assert_eq!(c.ollama_url, "http://env:11434");
        assert_eq!(c.id, "from-flag");
        assert_eq!(c.heartbeat_interval, Duration::from_secs(3));
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let err = load(Some("orchestrator = \"http://x\"\n"), &[], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("agent.toml"), "{err}");
        assert!(err.contains("orchestrator"), "{err}");
        assert!(err.contains("fix:"), "{err}");
        let err = load(
            Some("slots = 1\n\n  orchestrator = \"http://x\"\n"),
            &[],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("at line 3;"), "{err}");
    }

    #[test]
    fn wifi_table_is_accepted_and_ignored() {
        let c = load(
            Some("slots = 2\n[wifi]\nssid = \"home\"\npsk = \"secret\"\ncountry = \"ES\"\n"),
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(c.slots, 2);
    }

    #[test]
    fn bad_url_names_origin_key_and_fix() {
        let err = load(
            None,
            &[("PIFLEET_ORCHESTRATOR_URL", "192.168.1.5:5000")],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("environment PIFLEET_ORCHESTRATOR_URL"),
            "{err}"
        );
        assert!(err.contains("`orchestrator_url`"), "{err}");
        assert!(err.contains("fix: write it like http://"), "{err}");
    }

    #[test]
    fn unreadable_explicit_file_is_an_error() {
        let args = Args::parse(["--config".to_string(), "/nonexistent/agent.toml".into()]).unwrap();
        let err = Config::load(&args, |_| None, true).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/agent.toml"), "{err}");
    }

    #[test]
    fn bad_numbers_are_rejected() {
        let err = load(None, &[("PIFLEET_SLOTS", "many")], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("PIFLEET_SLOTS"), "{err}");
        let err = load(Some("heartbeat_interval_s = 0\n"), &[], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("heartbeat_interval_s"), "{err}");
        let err = load(Some("led_pin = 40\n"), &[], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("led_pin"), "{err}");
        let err = load(Some("slots = \"two\"\n"), &[], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("slots"), "{err}");
    }

    #[test]
    fn state_directory_from_systemd() {
        let c = load(None, &[("STATE_DIRECTORY", "/var/lib/pifleet-agent")], &[]).unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/pifleet-agent"));
    }
}

#[cfg(test)]
mod example {
    #[test]
    fn shipped_example_is_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/agent.toml.example");
        let args = super::Args::parse(["--config".to_string(), path.to_string()]).unwrap();
        let c =
            super::Config::load(&args, |k| (k == "PIFLEET_ID").then(|| "x".into()), false).unwrap();
        assert_eq!(c.orchestrator_url, "http://192.168.1.10:5000");
    }
}
