//! The raw configuration as read, before validation: every key optional, from a TOML
//! file or from `PIFLEET_<KEY>` variables, and the overlay that lets the later source win.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ConfigError, ENV_PREFIX};

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
    /// `off` (default), `pull` or `pull_and_preload`: see [`crate::fleet::StagingMode`].
    pub model_staging: Option<String>,
    /// The models staging may pull or pre-load; `["*"]` for any.
    pub staging_models: Option<Vec<String>>,
    /// Download speed a pull is estimated at (bytes/s).
    pub staging_pull_bytes_per_s: Option<f64>,
    /// Wait before asking a node that failed a model again (doubles per failure).
    pub staging_retry_s: Option<f64>,
    /// Status-page event streams open at once; past it `GET /api/events` gets 503.
    pub max_event_streams: Option<u64>,
}

/// Keys settable from the environment, and how to read their text.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Bool,
    Int,
    Float,
    /// Comma-separated text, for a list of strings.
    List,
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
    ("model_staging", Kind::Str),
    ("staging_models", Kind::List),
    ("staging_pull_bytes_per_s", Kind::Float),
    ("staging_retry_s", Kind::Float),
    ("max_event_streams", Kind::Int),
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
                Kind::List => toml::Value::Array(
                    text.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| toml::Value::String(s.to_string()))
                        .collect(),
                ),
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
            gateway_queue_timeout_s,
            model_staging,
            staging_models,
            staging_pull_bytes_per_s,
            staging_retry_s,
            max_event_streams
        )
    }
}
