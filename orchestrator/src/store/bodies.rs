//! The bodies of settled tasks (data, result, error text) live on disk only: a week of
//! results on a Pi would not fit in its RAM. What stays in memory is a [`Summary`], the few
//! figures the recent-work lists show; the rest is read back with a [`BodyReader`] when a
//! client asks for the task.

use std::sync::{Arc, OnceLock};

use serde_json::Value;

use super::StoreError;

/// What a settled task keeps in memory of its result and data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// The agent's `duration_ms`.
    pub duration_ms: Option<u64>,
    /// The result's `model`, else the data's.
    pub model: Option<String>,
    pub completion_tokens: Option<u64>,
    pub tokens_per_s: Option<f64>,
}

impl Summary {
    pub fn of(data: &Value, result: Option<&Value>) -> Summary {
        let field = |k: &str| result.and_then(|r| r.get(k));
        Summary {
            duration_ms: field("duration_ms").and_then(Value::as_u64),
            model: field("model")
                .or_else(|| data.get("model"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            completion_tokens: field("completion_tokens").and_then(Value::as_u64),
            tokens_per_s: field("tokens_per_s").and_then(Value::as_f64),
        }
    }
}

/// What a row on disk holds of a settled task's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Bodies {
    pub result: Option<Value>,
    pub error: Option<String>,
}

/// Reads bodies back while the store thread writes: another connection, safe to call
/// from any thread.
pub trait BodyReader: Send + Sync {
    /// The result and error of the stored task, `None` when there is no such row.
    fn read(&self, id: &str) -> Result<Option<Bodies>, StoreError>;
}

/// The shared stand-in for the data of a task whose bodies are on disk only.
pub fn no_data() -> Arc<Value> {
    static NONE: OnceLock<Arc<Value>> = OnceLock::new();
    NONE.get_or_init(|| Arc::new(Value::Null)).clone()
}
