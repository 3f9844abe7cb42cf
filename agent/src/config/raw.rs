//! The config file as written: every key optional, unknown keys rejected, and the same
//! keys settable one by one from the environment or a flag (as strings).

use serde::Deserialize;

use crate::error::Error;

/// The file as written. Every key optional; unknown keys rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) orchestrator_url: Option<String>,
    pub(super) worker_token: Option<String>,
    pub(super) ollama_url: Option<String>,
    pub(super) id: Option<String>,
    pub(super) worker_type: Option<String>,
    pub(super) state_dir: Option<String>,
    pub(super) heartbeat_interval_s: Option<f64>,
    pub(super) poll_wait_s: Option<f64>,
    pub(super) poll_interval_s: Option<f64>,
    pub(super) task_timeout_s: Option<f64>,
    pub(super) first_token_timeout_s: Option<f64>,
    pub(super) slots: Option<u32>,
    pub(super) led_pin: Option<u8>,
    pub(super) proc_root: Option<String>,
    pub(super) sys_root: Option<String>,
    pub(super) default_model: Option<String>,
    pub(super) keep_alive: Option<String>,
    pub(super) log_level: Option<String>,
    pub(super) retry_base_ms: Option<u64>,
    pub(super) retry_max_s: Option<f64>,
    pub(super) stop_grace_s: Option<f64>,
    pub(super) allow_model_pull: Option<bool>,
    /// Read by the SD image's first-boot service, not by the agent.
    #[allow(dead_code)]
    pub(super) wifi: Option<serde::de::IgnoredAny>,
}

/// The keys settable from the environment, as `PIFLEET_<KEY uppercased>`.
pub const KEYS: [&str; 22] = [
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
    "allow_model_pull",
];

impl RawConfig {
    pub(super) fn is_set(&self, key: &str) -> bool {
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
            "allow_model_pull" => self.allow_model_pull.is_some(),
            _ => false,
        }
    }

    /// Sets one key from a string (environment or flag).
    pub(super) fn set(&mut self, key: &str, value: &str, origin: &str) -> Result<(), Error> {
        let num_err = |kind: &str| Error::ConfigValue {
            origin: origin.to_string(),
            key: key.to_string(),
            message: format!("is `{value}`, not {kind}"),
            fix: format!("give {kind}"),
        };
        let s = || Some(value.to_string());
        let f = || number::<f64>(value, || num_err("a number"));
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
            "slots" => self.slots = number(value, || num_err("a whole number"))?,
            "led_pin" => self.led_pin = number(value, || num_err("a BCM GPIO number 0-27"))?,
            "proc_root" => self.proc_root = s(),
            "sys_root" => self.sys_root = s(),
            "default_model" => self.default_model = s(),
            "keep_alive" => self.keep_alive = s(),
            "log_level" => self.log_level = s(),
            "retry_base_ms" => {
                self.retry_base_ms = number(value, || num_err("a whole number of milliseconds"))?
            }
            "retry_max_s" => self.retry_max_s = f()?,
            "stop_grace_s" => self.stop_grace_s = f()?,
            "allow_model_pull" => {
                self.allow_model_pull = match value.trim().to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "on" => Some(true),
                    "0" | "false" | "no" | "off" => Some(false),
                    _ => {
                        return Err(Error::ConfigValue {
                            origin: origin.to_string(),
                            key: key.to_string(),
                            message: format!("is `{value}`, not true or false"),
                            fix: "give true or false".into(),
                        })
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// `value` as a number of type `T`, or the error `err` makes.
fn number<T: std::str::FromStr>(value: &str, err: impl Fn() -> Error) -> Result<Option<T>, Error> {
    value.trim().parse().map(Some).map_err(|_| err())
}
