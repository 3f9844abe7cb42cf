//! Configuration: a TOML file, then `PIFLEET_*` environment variables, then command-line
//! flags, each overriding the one before; then one validation pass with precise errors.
//!
//! ```toml
//! listen = "127.0.0.1:5000"
//! db = "/var/lib/pifleet-orchestrator/pifleet.db"
//! worker_token = "long-random-string"
//! client_token = "another-long-random-string"
//! heartbeat_interval_s = 10
//! soft_temp_c = 80
//! hard_temp_c = 85
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::fleet::{Limits, Thermal};
use crate::gateway::GatewayConfig;
use crate::http::Tokens;
use crate::listener::ServerLimits;
use crate::store::sqlite::Durability;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:5000";
pub const DEFAULT_DB_FILE: &str = "pifleet.db";
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
pub const ENV_PREFIX: &str = "PIFLEET_";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// The file's shape, also used for the environment and flags layers. Every key optional;
/// unknown keys are refused so a typo does not silently keep a default.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<String>,
    /// Path of the SQLite file, or `:memory:` for a store that forgets on exit.
    pub db: Option<String>,
    /// `normal` (survives a crash of the process) or `full` (survives power loss).
    pub durability: Option<String>,
    pub insecure: Option<bool>,
    pub worker_token: Option<String>,
    pub client_token: Option<String>,
    pub worker_token_file: Option<PathBuf>,
    pub client_token_file: Option<PathBuf>,
    pub max_body_bytes: Option<u64>,
    /// The listener's limits: see [`crate::listener`].
    pub header_timeout_s: Option<f64>,
    pub body_timeout_s: Option<f64>,
    pub max_connections: Option<u64>,
    pub shutdown_grace_s: Option<f64>,
    pub heartbeat_interval_s: Option<f64>,
    pub dead_after_missed: Option<u32>,
    pub max_wait_s: Option<f64>,
    pub default_timeout_s: Option<f64>,
    pub max_attempts: Option<u32>,
    pub retry_backoff_s: Option<f64>,
    pub retry_backoff_max_s: Option<f64>,
    pub soft_temp_c: Option<f32>,
    pub hard_temp_c: Option<f32>,
    pub exclude_under_voltage: Option<bool>,
    pub aging_s: Option<f64>,
    pub history_len: Option<usize>,
    pub tick_s: Option<f64>,
    pub node_flush_s: Option<f64>,
    /// Completed and failed tasks older than this are forgotten.
    pub task_retention_s: Option<f64>,
    /// Dead nodes silent for longer than this are removed from the lists.
    pub dead_node_retention_s: Option<f64>,
    /// `text` or `json`.
    pub log_format: Option<String>,
    /// A second listener for the gateway only, e.g. `0.0.0.0:11434` (Ollama's port).
    pub gateway_listen: Option<String>,
    /// Priority of gateway requests without `X-Pifleet-Priority` (1-10, default 8).
    pub gateway_priority: Option<u8>,
    /// How long a gateway request waits for a node before 503 (default 300).
    pub gateway_queue_timeout_s: Option<f64>,
}

/// Keys settable from the environment, and how to read their text.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Bool,
    Int,
    Float,
}

const ENV_KEYS: &[(&str, Kind)] = &[
    ("listen", Kind::Str),
    ("db", Kind::Str),
    ("durability", Kind::Str),
    ("insecure", Kind::Bool),
    ("worker_token", Kind::Str),
    ("client_token", Kind::Str),
    ("worker_token_file", Kind::Str),
    ("client_token_file", Kind::Str),
    ("max_body_bytes", Kind::Int),
    ("header_timeout_s", Kind::Float),
    ("body_timeout_s", Kind::Float),
    ("max_connections", Kind::Int),
    ("shutdown_grace_s", Kind::Float),
    ("heartbeat_interval_s", Kind::Float),
    ("dead_after_missed", Kind::Int),
    ("max_wait_s", Kind::Float),
    ("default_timeout_s", Kind::Float),
    ("max_attempts", Kind::Int),
    ("retry_backoff_s", Kind::Float),
    ("retry_backoff_max_s", Kind::Float),
    ("soft_temp_c", Kind::Float),
    ("hard_temp_c", Kind::Float),
    ("exclude_under_voltage", Kind::Bool),
    ("aging_s", Kind::Float),
    ("history_len", Kind::Int),
    ("tick_s", Kind::Float),
    ("node_flush_s", Kind::Float),
    ("task_retention_s", Kind::Float),
    ("dead_node_retention_s", Kind::Float),
    ("log_format", Kind::Str),
    ("gateway_listen", Kind::Str),
    ("gateway_priority", Kind::Int),
    ("gateway_queue_timeout_s", Kind::Float),
];

impl RawConfig {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })
    }

    /// Reads `PIFLEET_<KEY>` for every key. Other `PIFLEET_*` variables belong to other
    /// pifleet programs and are ignored.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut table = toml::Table::new();
        for (key, kind) in ENV_KEYS {
            let var = format!("{ENV_PREFIX}{}", key.to_uppercase());
            let Some(text) = lookup(&var) else { continue };
            let bad = |what: &str| ConfigError::Env {
                var: var.clone(),
                message: format!("expected {what}, got \"{text}\""),
            };
            let value = match kind {
                Kind::Str => toml::Value::String(text.clone()),
                Kind::Bool => match text.trim().to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "on" => toml::Value::Boolean(true),
                    "0" | "false" | "no" | "off" | "" => toml::Value::Boolean(false),
                    _ => return Err(bad("true or false")),
                },
                Kind::Int => toml::Value::Integer(
                    text.trim()
                        .parse::<i64>()
                        .map_err(|_| bad("a whole number"))?,
                ),
                Kind::Float => {
                    toml::Value::Float(text.trim().parse::<f64>().map_err(|_| bad("a number"))?)
                }
            };
            table.insert((*key).to_string(), value);
        }
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Env {
                var: "PIFLEET_*".into(),
                message: e.to_string(),
            })
    }

    /// Keys set in `over` replace ours.
    pub fn overlay(self, over: RawConfig) -> RawConfig {
        macro_rules! pick {
            ($($f:ident),*) => { RawConfig { $($f: over.$f.or(self.$f)),* } };
        }
        pick!(
            listen,
            db,
            durability,
            insecure,
            worker_token,
            client_token,
            worker_token_file,
            client_token_file,
            max_body_bytes,
            header_timeout_s,
            body_timeout_s,
            max_connections,
            shutdown_grace_s,
            heartbeat_interval_s,
            dead_after_missed,
            max_wait_s,
            default_timeout_s,
            max_attempts,
            retry_backoff_s,
            retry_backoff_max_s,
            soft_temp_c,
            hard_temp_c,
            exclude_under_voltage,
            aging_s,
            history_len,
            tick_s,
            node_flush_s,
            task_retention_s,
            dead_node_retention_s,
            log_format,
            gateway_listen,
            gateway_priority,
            gateway_queue_timeout_s
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum DbLocation {
    File(PathBuf),
    Memory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub db: DbLocation,
    pub durability: Durability,
    pub insecure: bool,
    pub tokens: Tokens,
    pub max_body_bytes: usize,
    pub server: ServerLimits,
    pub limits: Limits,
    /// How often the housekeeping tick runs (liveness, timeouts, backoff).
    pub tick_s: f64,
    pub log_format: LogFormat,
    pub gateway: GatewayConfig,
}

impl Default for Config {
    fn default() -> Self {
        // The defaults are valid by construction; validating them keeps one source.
        Config::from_raw(RawConfig::default(), None).unwrap_or_else(|e| {
            unreachable!("default configuration is invalid: {e}");
        })
    }
}

fn positive(key: &str, v: Option<f64>, default: f64) -> Result<f64, ConfigError> {
    let v = v.unwrap_or(default);
    if !(v.is_finite() && v > 0.0) {
        return Err(invalid(
            key,
            format!("must be a positive number of seconds, got {v}"),
        ));
    }
    Ok(v)
}

fn non_negative(key: &str, v: Option<f64>, default: f64) -> Result<f64, ConfigError> {
    let v = v.unwrap_or(default);
    if !(v.is_finite() && v >= 0.0) {
        return Err(invalid(
            key,
            format!("must be zero or more seconds, got {v}"),
        ));
    }
    Ok(v)
}

fn read_token(
    key: &str,
    inline: Option<String>,
    file: Option<PathBuf>,
) -> Result<Option<String>, ConfigError> {
    let token = match (inline, file) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                key,
                format!("set either {key} or {key}_file, not both"),
            ))
        }
        (Some(t), None) => t,
        (None, Some(path)) => std::fs::read_to_string(&path)
            .map_err(|e| {
                invalid(
                    &format!("{key}_file"),
                    format!("read {}: {e}", path.display()),
                )
            })?
            .trim()
            .to_string(),
        (None, None) => return Ok(None),
    };
    if token.trim().is_empty() {
        return Err(invalid(
            key,
            "must not be empty (leave it unset for no token)",
        ));
    }
    if token.len() < 16 {
        return Err(invalid(
            key,
            "must be at least 16 characters: a short token can be guessed",
        ));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            key,
            "must not contain spaces or control characters",
        ));
    }
    Ok(Some(token))
}

/// `gateway_listen`, `gateway_priority`, `gateway_queue_timeout_s`.
fn gateway_config(
    raw: &(Option<String>, Option<u8>, Option<f64>),
    insecure: bool,
    has_client_token: bool,
) -> Result<GatewayConfig, ConfigError> {
    let d = GatewayConfig::default();
    let listen = match raw.0.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => {
            let addr: SocketAddr = text.parse().map_err(|_| {
                invalid(
                    "gateway_listen",
                    format!("expected ADDRESS:PORT such as 0.0.0.0:11434, got \"{text}\""),
                )
            })?;
            if !addr.ip().is_loopback() && !insecure && !has_client_token {
                return Err(invalid(
                    "gateway_listen",
                    format!(
                        "refusing to serve the gateway on {addr} (not loopback) without \
                         client_token: anyone on the network could use the fleet. Set \
                         PIFLEET_CLIENT_TOKEN (clients send it as their API key), or pass --insecure"
                    ),
                ));
            }
            Some(addr)
        }
    };
    let priority = raw.1.unwrap_or(d.priority);
    if !(pifleet_protocol::PRIORITY_MIN..=pifleet_protocol::PRIORITY_MAX).contains(&priority) {
        return Err(invalid(
            "gateway_priority",
            format!("must be between 1 and 10, got {priority}"),
        ));
    }
    let timeout = positive(
        "gateway_queue_timeout_s",
        raw.2,
        d.queue_timeout.as_secs_f64(),
    )?;
    Ok(GatewayConfig {
        listen,
        priority,
        queue_timeout: std::time::Duration::from_secs_f64(timeout),
    })
}

impl Config {
    /// Validates a merged configuration. `state_dir` is `$STATE_DIRECTORY` (systemd's
    /// `StateDirectory=`), where the database goes unless `db` says otherwise.
    pub fn from_raw(raw: RawConfig, state_dir: Option<&str>) -> Result<Config, ConfigError> {
        let raw_gateway = (
            raw.gateway_listen.clone(),
            raw.gateway_priority,
            raw.gateway_queue_timeout_s,
        );
        let listen_text = raw.listen.unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen: SocketAddr = listen_text.trim().parse().map_err(|_| {
            invalid(
                "listen",
                format!("expected ADDRESS:PORT such as 127.0.0.1:5000, got \"{listen_text}\""),
            )
        })?;
        let db = match raw.db.as_deref().map(str::trim) {
            Some("") => return Err(invalid("db", "must not be empty")),
            Some(":memory:") => DbLocation::Memory,
            Some(p) => DbLocation::File(PathBuf::from(p)),
            None => {
                // systemd may pass several directories separated by colons.
                let dir = state_dir
                    .and_then(|d| d.split(':').next())
                    .filter(|d| !d.is_empty());
                DbLocation::File(match dir {
                    Some(d) => Path::new(d).join(DEFAULT_DB_FILE),
                    None => PathBuf::from(DEFAULT_DB_FILE),
                })
            }
        };
        let durability = match raw.durability.as_deref().unwrap_or("normal") {
            "normal" => Durability::Normal,
            "full" => Durability::Full,
            other => {
                return Err(invalid(
                    "durability",
                    format!("expected \"normal\" or \"full\", got \"{other}\""),
                ))
            }
        };
        let insecure = raw.insecure.unwrap_or(false);
        let tokens = Tokens {
            worker: read_token("worker_token", raw.worker_token, raw.worker_token_file)?,
            client: read_token("client_token", raw.client_token, raw.client_token_file)?,
        };
        if let (Some(w), Some(c)) = (&tokens.worker, &tokens.client) {
            if w == c {
                // The join token sits on every SD card: equal to the client token, any lost
                // card would be an admin key.
                return Err(invalid(
                    "client_token",
                    "must differ from worker_token: the worker token is on every node's card, \
                     so an equal client token would make any node an admin",
                ));
            }
        }
        if !listen.ip().is_loopback() && !insecure {
            let missing: Vec<&str> = [
                ("worker_token", tokens.worker.is_none()),
                ("client_token", tokens.client.is_none()),
            ]
            .iter()
            .filter(|(_, m)| *m)
            .map(|(k, _)| *k)
            .collect();
            if !missing.is_empty() {
                return Err(invalid(
                    "listen",
                    format!(
                        "refusing to listen on {listen} (not loopback) without {}: anyone on \
                         the network could submit work or pose as a worker. Set the token(s) \
                         (PIFLEET_WORKER_TOKEN / PIFLEET_CLIENT_TOKEN), listen on 127.0.0.1, \
                         or pass --insecure",
                        missing.join(" and ")
                    ),
                ));
            }
        }
        let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if !(1024..=(256 * 1024 * 1024)).contains(&max_body_bytes) {
            return Err(invalid(
                "max_body_bytes",
                format!("must be between 1024 and 268435456, got {max_body_bytes}"),
            ));
        }
        let server = ServerLimits::from_raw(
            raw.header_timeout_s,
            raw.body_timeout_s,
            raw.max_connections,
            raw.shutdown_grace_s,
            max_body_bytes as usize,
        )?;
        let d = Limits::default();
        let heartbeat_interval_s = positive(
            "heartbeat_interval_s",
            raw.heartbeat_interval_s,
            d.heartbeat_interval_s,
        )?;
        let dead_after_missed = raw.dead_after_missed.unwrap_or(d.dead_after_missed);
        if dead_after_missed == 0 {
            return Err(invalid("dead_after_missed", "must be at least 1"));
        }
        let max_attempts = raw.max_attempts.unwrap_or(d.max_attempts);
        if !(1..=100).contains(&max_attempts) {
            return Err(invalid(
                "max_attempts",
                format!("must be between 1 and 100, got {max_attempts}"),
            ));
        }
        let soft = raw.soft_temp_c.unwrap_or(d.thermal.soft_temp_c);
        let hard = raw.hard_temp_c.unwrap_or(d.thermal.hard_temp_c);
        if !(soft.is_finite() && hard.is_finite()) || soft > hard {
            return Err(invalid(
                "soft_temp_c",
                format!("must be at most hard_temp_c ({hard}), got {soft}"),
            ));
        }
        let retry_backoff_s =
            non_negative("retry_backoff_s", raw.retry_backoff_s, d.retry_backoff_s)?;
        let retry_backoff_max_s = non_negative(
            "retry_backoff_max_s",
            raw.retry_backoff_max_s,
            d.retry_backoff_max_s,
        )?;
        if retry_backoff_max_s < retry_backoff_s {
            return Err(invalid(
                "retry_backoff_max_s",
                format!("must be at least retry_backoff_s ({retry_backoff_s}), got {retry_backoff_max_s}"),
            ));
        }
        let limits = Limits {
            heartbeat_interval_s,
            dead_after_missed,
            max_wait_s: non_negative("max_wait_s", raw.max_wait_s, d.max_wait_s)?,
            default_timeout_s: positive(
                "default_timeout_s",
                raw.default_timeout_s,
                d.default_timeout_s,
            )?,
            max_attempts,
            retry_backoff_s,
            retry_backoff_max_s,
            thermal: Thermal {
                soft_temp_c: soft,
                hard_temp_c: hard,
                exclude_under_voltage: raw.exclude_under_voltage.unwrap_or(true),
            },
            aging_s: non_negative("aging_s", raw.aging_s, d.aging_s)?,
            history_len: raw.history_len.unwrap_or(d.history_len),
            node_flush_s: non_negative("node_flush_s", raw.node_flush_s, d.node_flush_s)?,
            task_retention_s: positive(
                "task_retention_s",
                raw.task_retention_s,
                d.task_retention_s,
            )?,
            dead_node_retention_s: positive(
                "dead_node_retention_s",
                raw.dead_node_retention_s,
                d.dead_node_retention_s,
            )?,
        };
        if limits.history_len > 100_000 {
            return Err(invalid("history_len", "must be at most 100000"));
        }
        // Ten ticks per heartbeat interval, at most one a second: liveness is then judged
        // within a tenth of an interval of the deadline.
        let tick_s = positive("tick_s", raw.tick_s, (heartbeat_interval_s / 10.0).min(1.0))?;
        let log_format = match raw.log_format.as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(invalid(
                    "log_format",
                    format!("expected \"text\" or \"json\", got \"{other}\""),
                ))
            }
        };
        let gateway = gateway_config(&raw_gateway, insecure, tokens.client.is_some())?;
        Ok(Config {
            listen,
            db,
            durability,
            insecure,
            tokens,
            max_body_bytes: max_body_bytes as usize,
            server,
            limits,
            tick_s,
            log_format,
            gateway,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn defaults_are_the_seed_port_on_loopback() {
        let c = Config::default();
        assert_eq!(c.listen.to_string(), "127.0.0.1:5000");
        assert_eq!(c.db, DbLocation::File(PathBuf::from("pifleet.db")));
        assert_eq!(c.limits.heartbeat_interval_s, 10.0);
        assert_eq!(c.limits.max_attempts, 3);
        assert_eq!(c.max_body_bytes, 1024 * 1024);
    }

    #[test]
    fn the_example_file_parses_and_matches_the_defaults() {
        let raw: RawConfig = toml::from_str(include_str!("../orchestrator.toml.example")).unwrap();
        let example = Config::from_raw(raw, None).unwrap();
        let default = Config::default();
        assert_eq!(example.listen, default.listen);
        assert_eq!(example.durability, default.durability);
        assert_eq!(example.max_body_bytes, default.max_body_bytes);
        assert_eq!(example.server, default.server);
        assert_eq!(
            format!("{:?}", example.limits),
            format!("{:?}", default.limits)
        );
    }

    #[test]
    fn state_directory_holds_the_default_db() {
        let c = Config::from_raw(RawConfig::default(), Some("/var/lib/pifleet:/other")).unwrap();
        assert_eq!(
            c.db,
            DbLocation::File(PathBuf::from("/var/lib/pifleet/pifleet.db"))
        );
    }

    #[test]
    fn file_then_env_then_flags() {
        let file: RawConfig = toml::from_str("listen = \"127.0.0.1:1\"\nmax_attempts = 5").unwrap();
        let envr = RawConfig::from_env(env(&[
            ("PIFLEET_LISTEN", "127.0.0.1:2"),
            ("PIFLEET_MAX_ATTEMPTS", "4"),
        ]))
        .unwrap();
        let flags = RawConfig {
            listen: Some("127.0.0.1:3".into()),
            ..Default::default()
        };
        let c = Config::from_raw(file.overlay(envr).overlay(flags), None).unwrap();
        assert_eq!(c.listen.port(), 3);
        assert_eq!(c.limits.max_attempts, 4);
    }

    #[test]
    fn errors_name_the_key() {
        let e = RawConfig::from_env(env(&[("PIFLEET_MAX_ATTEMPTS", "many")])).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("environment variable PIFLEET_MAX_ATTEMPTS"),
            "{e}"
        );
        let e = toml::from_str::<RawConfig>("listn = \"x\"").unwrap_err();
        assert!(e.to_string().contains("listn"), "{e}");
        let raw = RawConfig {
            soft_temp_c: Some(90.0),
            ..Default::default()
        };
        assert!(Config::from_raw(raw, None)
            .unwrap_err()
            .to_string()
            .starts_with("soft_temp_c:"));
    }

    #[test]
    fn non_loopback_needs_tokens_or_insecure() {
        let raw = RawConfig {
            listen: Some("0.0.0.0:5000".into()),
            ..Default::default()
        };
        let e = Config::from_raw(raw.clone(), None).unwrap_err().to_string();
        assert!(e.contains("worker_token and client_token"), "{e}");
        let ok = RawConfig {
            insecure: Some(true),
            ..raw.clone()
        };
        assert!(Config::from_raw(ok, None).is_ok());
        let ok = RawConfig {
            worker_token: Some("w".repeat(20)),
            client_token: Some("c".repeat(20)),
            ..raw
        };
        assert!(Config::from_raw(ok, None).is_ok());
    }

    #[test]
    fn worker_and_client_tokens_must_differ() {
        let raw = RawConfig {
            worker_token: Some("s".repeat(20)),
            client_token: Some("s".repeat(20)),
            ..Default::default()
        };
        let e = Config::from_raw(raw, None).unwrap_err().to_string();
        assert!(
            e.starts_with("client_token: must differ from worker_token"),
            "{e}"
        );
    }
}
