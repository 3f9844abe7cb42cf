//! Configuration: `/etc/pifleet/agent.toml` (path overridable) < environment `PIFLEET_*` <
//! command-line flags. Two stages: a raw serde struct that rejects unknown keys, then a
//! validated [`Config`] whose errors name the file or variable, the key and the fix.
//!
//! The SD image's first-boot service reads a `[wifi]` table from the same file, so that
//! one table is accepted and ignored here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::Error;

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

pub const USAGE: &str = "usage: pifleet-agent [--config FILE] [--orchestrator URL] [--ollama URL] [--id NAME] [--state-dir DIR] [--daemon]

  --config FILE        config file (default /etc/pifleet/agent.toml, or $PIFLEET_AGENT_CONFIG)
  --orchestrator URL   orchestrator base URL (default http://127.0.0.1:5000)
  --ollama URL         local Ollama base URL (default http://127.0.0.1:11434)
  --id NAME            worker id (default: the hostname)
  --state-dir DIR      where the result spool lives (default $STATE_DIRECTORY or /var/lib/pifleet-agent)
  --daemon             detach from the terminal; log to STATE_DIR/agent.log
  -h, --help           this text
  -V, --version        the version

Every config key can also be set as PIFLEET_<KEY> in the environment (e.g. PIFLEET_WORKER_TOKEN).";

/// The command line.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Args {
    pub config: Option<PathBuf>,
    pub orchestrator: Option<String>,
    pub ollama: Option<String>,
    pub id: Option<String>,
    pub state_dir: Option<String>,
    pub daemon: bool,
    pub help: bool,
    pub version: bool,
}

impl Args {
    /// Parses the arguments after the program name; `--key value` and `--key=value`.
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Args, Error> {
        let mut out = Args::default();
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| it.next())
                    .ok_or_else(|| Error::Usage(format!("{flag} needs a value\n\n{USAGE}")))
            };
            match flag.as_str() {
                "--config" | "-c" => out.config = Some(PathBuf::from(value()?)),
                "--orchestrator" => out.orchestrator = Some(value()?),
                "--ollama" => out.ollama = Some(value()?),
                "--id" => out.id = Some(value()?),
                "--state-dir" => out.state_dir = Some(value()?),
                "--daemon" => out.daemon = true,
                "-h" | "--help" => out.help = true,
                "-V" | "--version" => out.version = true,
                other => {
                    return Err(Error::Usage(format!(
                        "unknown argument `{other}`\n\n{USAGE}"
                    )))
                }
            }
        }
        Ok(out)
    }
}

/// The file as written. Every key optional; unknown keys rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    orchestrator_url: Option<String>,
    worker_token: Option<String>,
    ollama_url: Option<String>,
    id: Option<String>,
    worker_type: Option<String>,
    state_dir: Option<String>,
    heartbeat_interval_s: Option<f64>,
    poll_wait_s: Option<f64>,
    poll_interval_s: Option<f64>,
    task_timeout_s: Option<f64>,
    first_token_timeout_s: Option<f64>,
    slots: Option<u32>,
    led_pin: Option<u8>,
    proc_root: Option<String>,
    sys_root: Option<String>,
    default_model: Option<String>,
    keep_alive: Option<String>,
    log_level: Option<String>,
    retry_base_ms: Option<u64>,
    retry_max_s: Option<f64>,
    stop_grace_s: Option<f64>,
    /// Read by the SD image's first-boot service, not by the agent.
    #[allow(dead_code)]
    wifi: Option<serde::de::IgnoredAny>,
}

/// The keys settable from the environment, as `PIFLEET_<KEY uppercased>`.
pub const KEYS: [&str; 21] = [
    "orchestrator_url",
    "worker_token",
    "ollama_url",
    "id",
    "worker_type",
    "state_dir",
    "heartbeat_interval_s",
    "poll_wait_s",
    "poll_interval_s",
    "task_timeout_s",
    "first_token_timeout_s",
    "slots",
    "led_pin",
    "proc_root",
    "sys_root",
    "default_model",
    "keep_alive",
    "log_level",
    "retry_base_ms",
    "retry_max_s",
    "stop_grace_s",
];

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
                        let e = e.to_string();
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

fn bad(origins: &HashMap<&'static str, String>, key: &str, message: String, fix: &str) -> Error {
    Error::ConfigValue {
        origin: origins
            .get(key)
            .cloned()
            .unwrap_or_else(|| "default".to_string()),
        key: key.to_string(),
        message,
        fix: fix.to_string(),
    }
}

fn secs(
    origins: &HashMap<&'static str, String>,
    key: &str,
    value: Option<f64>,
    default: f64,
) -> Result<Duration, Error> {
    let v = value.unwrap_or(default);
    if !v.is_finite() || v <= 0.0 || v > 30.0 * 86_400.0 {
        return Err(bad(
            origins,
            key,
            format!("is {v}, not a positive number of seconds"),
            "give a number of seconds greater than 0, e.g. 10",
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

fn url(
    origins: &HashMap<&'static str, String>,
    key: &str,
    value: Option<String>,
    default: &str,
) -> Result<String, Error> {
    let v = value.unwrap_or_else(|| default.to_string());
    let trimmed = v.trim().trim_end_matches('/').to_string();
    let rest = if let Some(r) = trimmed.strip_prefix("http://") {
        r
    } else if let Some(r) = trimmed.strip_prefix("https://") {
        if !cfg!(feature = "tls") {
            return Err(bad(
                origins,
                key,
                format!("is `{v}`, but this build has no TLS"),
                "use http:// on the LAN, or build the agent with `--features tls`",
            ));
        }
        r
    } else {
        return Err(bad(
            origins,
            key,
            format!("is `{v}`, not an http:// URL"),
            "write it like http://192.168.1.10:5000",
        ));
    };
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || host.contains(char::is_whitespace) || host.contains('@') {
        return Err(bad(
            origins,
            key,
            format!("is `{v}`, which names no host"),
            "write it like http://192.168.1.10:5000",
        ));
    }
    Ok(trimmed)
}

impl RawConfig {
    fn is_set(&self, key: &str) -> bool {
        match key {
            "orchestrator_url" => self.orchestrator_url.is_some(),
            "worker_token" => self.worker_token.is_some(),
            "ollama_url" => self.ollama_url.is_some(),
            "id" => self.id.is_some(),
            "worker_type" => self.worker_type.is_some(),
            "state_dir" => self.state_dir.is_some(),
            "heartbeat_interval_s" => self.heartbeat_interval_s.is_some(),
            "poll_wait_s" => self.poll_wait_s.is_some(),
            "poll_interval_s" => self.poll_interval_s.is_some(),
            "task_timeout_s" => self.task_timeout_s.is_some(),
            "first_token_timeout_s" => self.first_token_timeout_s.is_some(),
            "slots" => self.slots.is_some(),
            "led_pin" => self.led_pin.is_some(),
            "proc_root" => self.proc_root.is_some(),
            "sys_root" => self.sys_root.is_some(),
            "default_model" => self.default_model.is_some(),
            "keep_alive" => self.keep_alive.is_some(),
            "log_level" => self.log_level.is_some(),
            "retry_base_ms" => self.retry_base_ms.is_some(),
            "retry_max_s" => self.retry_max_s.is_some(),
            "stop_grace_s" => self.stop_grace_s.is_some(),
            _ => false,
        }
    }

    /// Sets one key from a string (environment or flag).
    fn set(&mut self, key: &str, value: &str, origin: &str) -> Result<(), Error> {
        let num_err = |kind: &str| Error::ConfigValue {
            origin: origin.to_string(),
            key: key.to_string(),
            message: format!("is `{value}`, not {kind}"),
            fix: format!("give {kind}"),
        };
        let s = || Some(value.to_string());
        let f = || {
            value
                .trim()
                .parse::<f64>()
                .map(Some)
                .map_err(|_| num_err("a number"))
        };
        match key {
            "orchestrator_url" => self.orchestrator_url = s(),
            "worker_token" => self.worker_token = s(),
            "ollama_url" => self.ollama_url = s(),
            "id" => self.id = s(),
            "worker_type" => self.worker_type = s(),
            "state_dir" => self.state_dir = s(),
            "heartbeat_interval_s" => self.heartbeat_interval_s = f()?,
            "poll_wait_s" => self.poll_wait_s = f()?,
            "poll_interval_s" => self.poll_interval_s = f()?,
            "task_timeout_s" => self.task_timeout_s = f()?,
            "first_token_timeout_s" => self.first_token_timeout_s = f()?,
            "slots" => {
                self.slots = Some(
                    value
                        .trim()
                        .parse()
                        .map_err(|_| num_err("a whole number"))?,
                )
            }
            "led_pin" => {
                self.led_pin = Some(
                    value
                        .trim()
                        .parse()
                        .map_err(|_| num_err("a BCM GPIO number 0-27"))?,
                )
            }
            "proc_root" => self.proc_root = s(),
            "sys_root" => self.sys_root = s(),
            "default_model" => self.default_model = s(),
            "keep_alive" => self.keep_alive = s(),
            "log_level" => self.log_level = s(),
            "retry_base_ms" => {
                self.retry_base_ms = Some(
                    value
                        .trim()
                        .parse()
                        .map_err(|_| num_err("a whole number of milliseconds"))?,
                )
            }
            "retry_max_s" => self.retry_max_s = f()?,
            "stop_grace_s" => self.stop_grace_s = f()?,
            _ => {}
        }
        Ok(())
    }

    fn validate(
        self,
        o: &HashMap<&'static str, String>,
        daemon: bool,
        state_dir_default: String,
        config_path: Option<PathBuf>,
    ) -> Result<Config, Error> {
        let orchestrator_url = url(
            o,
            "orchestrator_url",
            self.orchestrator_url,
            DEFAULT_ORCHESTRATOR_URL,
        )?;
        let ollama_url = url(o, "ollama_url", self.ollama_url, DEFAULT_OLLAMA_URL)?;
        let proc_root = PathBuf::from(self.proc_root.unwrap_or_else(|| "/proc".to_string()));
        let sys_root = PathBuf::from(self.sys_root.unwrap_or_else(|| "/sys".to_string()));
        let id = match self.id {
            Some(id) => id.trim().to_string(),
            None => hostname(&proc_root).ok_or_else(|| {
                bad(
                    o,
                    "id",
                    "is unset and the hostname is unreadable".to_string(),
                    "set id = \"pi-01\" in the file or pass --id",
                )
            })?,
        };
        if id.is_empty() || id.len() > 128 || id.chars().any(char::is_control) {
            return Err(bad(
                o,
                "id",
                format!("is `{id}`: it must be 1-128 printable characters"),
                "use a short name such as pi-01",
            ));
        }
        let worker_token = self.worker_token.filter(|t| !t.trim().is_empty());
        if let Some(t) = &worker_token {
            if t.chars().any(|c| c.is_control() || c == ' ') {
                return Err(bad(
                    o,
                    "worker_token",
                    "contains spaces or control characters".to_string(),
                    "copy the token exactly, without quotes or newlines",
                ));
            }
        }
        let state_dir = PathBuf::from(self.state_dir.unwrap_or(state_dir_default));
        let heartbeat_interval = secs(
            o,
            "heartbeat_interval_s",
            self.heartbeat_interval_s,
            DEFAULT_HEARTBEAT_INTERVAL_S,
        )?;
        let poll_wait = secs(o, "poll_wait_s", self.poll_wait_s, DEFAULT_POLL_WAIT_S)?;
        let poll_interval = secs(
            o,
            "poll_interval_s",
            self.poll_interval_s,
            DEFAULT_POLL_INTERVAL_S,
        )?;
        let task_timeout = secs(
            o,
            "task_timeout_s",
            self.task_timeout_s,
            DEFAULT_TASK_TIMEOUT_S,
        )?;
        let first_token_timeout = secs(
            o,
            "first_token_timeout_s",
            self.first_token_timeout_s,
            DEFAULT_FIRST_TOKEN_TIMEOUT_S,
        )?;
        if first_token_timeout > task_timeout {
            return Err(bad(
                o,
                "first_token_timeout_s",
                format!(
                    "({}) is longer than task_timeout_s ({})",
                    first_token_timeout.as_secs_f64(),
                    task_timeout.as_secs_f64()
                ),
                "make first_token_timeout_s at most task_timeout_s",
            ));
        }
        let slots = self.slots.unwrap_or(DEFAULT_SLOTS);
        if !(1..=64).contains(&slots) {
            return Err(bad(
                o,
                "slots",
                format!("is {slots}"),
                "give 1-64 (1 suits a Pi: Ollama runs one request at a time)",
            ));
        }
        if let Some(pin) = self.led_pin {
            if pin > 27 {
                return Err(bad(
                    o,
                    "led_pin",
                    format!("is {pin}"),
                    "give a BCM GPIO number 0-27, or remove the key for no LED",
                ));
            }
        }
        let log_level = match self.log_level.as_deref().unwrap_or("info") {
            "error" => log::LevelFilter::Error,
            "warn" => log::LevelFilter::Warn,
            "info" => log::LevelFilter::Info,
            "debug" => log::LevelFilter::Debug,
            "trace" => log::LevelFilter::Trace,
            other => {
                return Err(bad(
                    o,
                    "log_level",
                    format!("is `{other}`"),
                    "use one of error, warn, info, debug, trace",
                ))
            }
        };
        let retry_base = Duration::from_millis(self.retry_base_ms.unwrap_or(DEFAULT_RETRY_BASE_MS));
        if retry_base.is_zero() {
            return Err(bad(o, "retry_base_ms", "is 0".into(), "give at least 1"));
        }
        let retry_max = secs(o, "retry_max_s", self.retry_max_s, DEFAULT_RETRY_MAX_S)?;
        let stop_grace = secs(o, "stop_grace_s", self.stop_grace_s, DEFAULT_STOP_GRACE_S)?;
        let nonempty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
        Ok(Config {
            orchestrator_url,
            worker_token,
            ollama_url,
            id,
            worker_type: nonempty(self.worker_type).unwrap_or_else(|| DEFAULT_WORKER_TYPE.into()),
            state_dir,
            heartbeat_interval,
            poll_wait,
            poll_interval,
            task_timeout,
            first_token_timeout,
            slots,
            led_pin: self.led_pin,
            proc_root,
            sys_root,
            default_model: nonempty(self.default_model),
            keep_alive: nonempty(self.keep_alive),
            log_level,
            retry_base,
            retry_max,
            stop_grace,
            daemon,
            watchdog: None,
            config_path,
        })
    }
}

/// The kernel's hostname, read through the configured /proc root.
fn hostname(proc_root: &Path) -> Option<String> {
    let read = |p: PathBuf| std::fs::read_to_string(p).ok();
    read(proc_root.join("sys/kernel/hostname"))
        .or_else(|| read(PathBuf::from("/etc/hostname")))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(file: Option<&str>, env: &[(&str, &str)], args: &[&str]) -> Result<Config, Error> {
        let dir = std::env::temp_dir().join(format!(
            "pifleet-agent-config-{}-{}",
            std::process::id(),
            std::thread::current()
                .name()
                .unwrap_or("t")
                .replace("::", "-")
        ));
        std::fs::create_dir_all(&dir).unwrap();
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

    #[test]
    fn args_parse_both_forms() {
        let a = Args::parse(
            [
                "--orchestrator=http://o:5000",
                "--daemon",
                "--state-dir",
                "/tmp/x",
            ]
            .map(String::from),
        )
        .unwrap();
        assert_eq!(a.orchestrator.as_deref(), Some("http://o:5000"));
        assert!(a.daemon);
        assert_eq!(a.state_dir.as_deref(), Some("/tmp/x"));
        assert!(Args::parse(["--bogus".to_string()]).is_err());
        assert!(Args::parse(["--id".to_string()]).is_err());
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
