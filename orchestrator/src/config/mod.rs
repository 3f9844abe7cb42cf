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

mod raw;

pub use raw::RawConfig;

use crate::fleet::{Limits, Staging, StagingMode, Thermal};
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
    /// Status-page event streams open at once (`GET /api/events`); past it, 503.
    pub max_event_streams: usize,
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

/// `model_staging`, `staging_models`, `staging_pull_bytes_per_s`, `staging_retry_s`.
fn staging_config(raw: &RawConfig) -> Result<Staging, ConfigError> {
    let d = Staging::default();
    let mode = match raw.model_staging.as_deref().map(str::trim) {
        None => d.mode,
        Some(text) => StagingMode::parse(text).ok_or_else(|| {
            invalid(
                "model_staging",
                format!("expected \"off\", \"pull\" or \"pull_and_preload\", got \"{text}\""),
            )
        })?,
    };
    let mut models = Vec::new();
    for (i, m) in raw.staging_models.iter().flatten().enumerate() {
        let m = m.trim();
        if m.is_empty() || m.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(
                "staging_models",
                format!(
                    "entry {} is \"{m}\": give Ollama model names such as \"llama3.2:1b\", or \"*\" for any model",
                    i + 1
                ),
            ));
        }
        models.push(crate::fleet::placement::canonical_model(m).to_owned());
    }
    if mode != StagingMode::Off && models.is_empty() {
        return Err(invalid(
            "staging_models",
            "model_staging is on but no model may be staged: list the models nodes may pull, \
             e.g. staging_models = [\"llama3.2:1b\"] (PIFLEET_STAGING_MODELS=llama3.2:1b), \
             or [\"*\"] for any model",
        ));
    }
    let bps = raw.staging_pull_bytes_per_s.unwrap_or(d.pull_bytes_per_s);
    if !(bps.is_finite() && bps >= 1.0) {
        return Err(invalid(
            "staging_pull_bytes_per_s",
            format!("must be a download speed of at least 1 byte/s, got {bps}"),
        ));
    }
    Ok(Staging {
        mode,
        models,
        pull_bytes_per_s: bps,
        retry_s: positive("staging_retry_s", raw.staging_retry_s, d.retry_s)?,
        ..d
    })
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
        let staging = staging_config(&raw)?;
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
            staging,
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
        let max_event_streams = raw
            .max_event_streams
            .unwrap_or(crate::health::feed::DEFAULT_MAX_STREAMS as u64);
        if !(1..=100_000).contains(&max_event_streams) {
            return Err(invalid(
                "max_event_streams",
                format!("must be between 1 and 100000, got {max_event_streams}"),
            ));
        }
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
            max_event_streams: max_event_streams as usize,
        })
    }
}

#[cfg(test)]
mod tests;
