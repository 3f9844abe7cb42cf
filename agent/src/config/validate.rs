//! From the raw keys to a [`Config`]: defaults filled in, every value checked, and each
//! error naming where the value came from (file, variable, flag or default), the key and
//! the fix.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::RawConfig;
use super::*;
use crate::error::Error;

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
    pub(super) fn validate(
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
            allow_model_pull: self.allow_model_pull.unwrap_or(true),
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
