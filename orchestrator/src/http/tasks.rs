//! Task endpoints: submit, result, status, queue, and the stats.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use pifleet_protocol::paths::{self, routes};
use pifleet_protocol::{
    task_type, QueueResponse, RecentTasksResponse, ResultResponse, StatsResponse, SubmitResponse,
    TaskStatusResponse, PRIORITY_DEFAULT, PRIORITY_MAX, PRIORITY_MIN,
};
use serde_json::{Map, Value};

use super::auth::{ClientAuth, WorkerAuth};
use super::extract::{describe, Id, JsonBody, QueryMap};
use super::workers::check_worker_id;
use super::AppState;
use crate::error::AppError;
use crate::fleet::{committed, FleetError, NewTask, ResultReport, Settled};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(paths::SUBMIT, post(submit))
        .route(routes::TASK_STATUS, get(status))
        .route(paths::QUEUE, get(queue))
        .route(paths::RECENT, get(recent))
        .route(paths::STATS, get(stats))
}

/// The result route belongs to workers (worker token), so it is merged there.
pub fn worker_router() -> Router<AppState> {
    Router::new().route(routes::TASK_RESULT, post(result))
}

/// A week: longer than any LLM task on a Pi, short enough to catch a typo in units.
const MAX_TIMEOUT_S: f64 = 7.0 * 24.0 * 3600.0;
const MAX_ATTEMPTS: u64 = 100;
/// As long as a task may run: an expiry later than that is a typo in units.
const MAX_EXPIRES_S: f64 = MAX_TIMEOUT_S;
const MAX_TYPE_LEN: usize = 64;

fn obj_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

/// An integer in `lo..=hi`, accepting `7.0` but not `7.5` or `"7"`.
fn int_in(field: &str, v: &Value, lo: u64, hi: u64) -> Result<u64, AppError> {
    let as_int = match v {
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 1e18)
                    .map(|f| f as i128)
            }),
        _ => None,
    };
    match as_int {
        None => Err(AppError::Invalid(format!(
            "{field}: expected an integer from {lo} to {hi}, got {}",
            describe(v)
        ))),
        Some(i) if i < i128::from(lo) || i > i128::from(hi) => Err(AppError::Invalid(format!(
            "{field}: {v} is out of range {lo}-{hi}"
        ))),
        Some(i) => Ok(i as u64),
    }
}

/// Checks a submit by hand so each message names the exact field and what was wrong.
pub fn parse_submit(body: Value) -> Result<NewTask, AppError> {
    let Value::Object(obj) = body else {
        return Err(AppError::BadRequest(format!(
            "body: expected a JSON object, got {}",
            describe(&body)
        )));
    };
    let task_type = match obj.get("type") {
        None | Some(Value::Null) => {
            return Err(AppError::BadRequest(format!(
                "type: missing (a required field: one of {}, or a custom type)",
                task_type::ALL.join(", ")
            )))
        }
        Some(Value::String(s)) if s.trim().is_empty() => {
            return Err(AppError::Invalid("type: must not be empty".into()))
        }
        Some(Value::String(s)) if s.chars().count() > MAX_TYPE_LEN => {
            return Err(AppError::Invalid(format!(
                "type: longer than {MAX_TYPE_LEN} characters"
            )))
        }
        Some(Value::String(s)) if s.chars().any(char::is_control) => {
            return Err(AppError::Invalid(
                "type: must not contain control characters".into(),
            ))
        }
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(AppError::Invalid(format!(
                "type: expected a string, got {}",
                describe(other)
            )))
        }
    };
    let data = match obj_field(&obj, "data") {
        None => {
            return Err(AppError::BadRequest(
                "data: missing (a required field: the task's input object, {} for none)".into(),
            ))
        }
        Some(v @ Value::Object(_)) => v.clone(),
        Some(other) => {
            return Err(AppError::Invalid(format!(
                "data: expected an object, got {}",
                describe(other)
            )))
        }
    };
    if let Some(m) = obj_field(data.as_object().unwrap_or(&Map::new()), "model") {
        match m {
            Value::String(s) if !s.trim().is_empty() => {}
            other => {
                return Err(AppError::Invalid(format!(
                    "data.model: expected a model name, got {}",
                    describe(other)
                )))
            }
        }
    }
    if let Some(v) = data.get("min_memory_bytes").filter(|v| !v.is_null()) {
        int_in("data.min_memory_bytes", v, 0, u64::MAX)?;
    }
    let priority = match obj_field(&obj, "priority") {
        None => PRIORITY_DEFAULT,
        Some(v) => int_in(
            "priority",
            v,
            u64::from(PRIORITY_MIN),
            u64::from(PRIORITY_MAX),
        )? as u8,
    };
    let timeout_s = match obj_field(&obj, "timeout_s") {
        None => None,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(t) if t > 0.0 && t <= MAX_TIMEOUT_S => Some(t),
            _ => {
                return Err(AppError::Invalid(format!(
                    "timeout_s: {n} is out of range (more than 0, at most {MAX_TIMEOUT_S})"
                )))
            }
        },
        Some(other) => {
            return Err(AppError::Invalid(format!(
                "timeout_s: expected a number of seconds, got {}",
                describe(other)
            )))
        }
    };
    let max_attempts = match obj_field(&obj, "max_attempts") {
        None => None,
        Some(v) => Some(int_in("max_attempts", v, 1, MAX_ATTEMPTS)? as u32),
    };
    let expires_s = match obj_field(&obj, "expires_s") {
        None => None,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(t) if t > 0.0 && t <= MAX_EXPIRES_S => Some(t),
            _ => {
                return Err(AppError::Invalid(format!(
                    "expires_s: {n} is out of range (more than 0, at most {MAX_EXPIRES_S}: \
                     seconds after submit a task still pending fails as expired)"
                )))
            }
        },
        Some(other) => {
            return Err(AppError::Invalid(format!(
                "expires_s: expected a number of seconds after submit, got {}",
                describe(other)
            )))
        }
    };
    Ok(NewTask {
        task_type,
        data,
        priority,
        timeout_s,
        max_attempts,
        expires_s,
    })
}

async fn submit(
    State(s): State<AppState>,
    ClientAuth(caller): ClientAuth,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<SubmitResponse>), AppError> {
    let asked = obj_field(body.as_object().unwrap_or(&Map::new()), "priority").is_some();
    let mut new = parse_submit(body)?;
    if let Some(c) = &caller {
        new.priority = c
            .key
            .priority_for(asked.then_some(new.priority))
            .map_err(AppError::Forbidden)?;
    }
    let (task_id, commit) = s.fleet.submit(new);
    committed(commit).await?;
    if let Some(c) = &caller {
        s.auth.task_submitted(c, &task_id);
    }
    Ok((
        StatusCode::CREATED,
        Json(SubmitResponse {
            task_id,
            status: "submitted".into(),
        }),
    ))
}

pub fn parse_result(body: Value) -> Result<ResultReport, AppError> {
    let Value::Object(mut obj) = body else {
        return Err(AppError::BadRequest(format!(
            "body: expected a JSON object, got {}",
            describe(&body)
        )));
    };
    let worker_id = match obj.get("worker_id") {
        None | Some(Value::Null) => {
            return Err(AppError::BadRequest(
                "worker_id: missing (a required field)".into(),
            ));
        }
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(AppError::Invalid(format!(
                "worker_id: expected a string, got {}",
                describe(other)
            )))
        }
    };
    check_worker_id("worker_id", &worker_id)?;
    let attempt = match obj_field(&obj, "attempt") {
        None => None,
        Some(v) => Some(int_in("attempt", v, 1, u64::from(u32::MAX))? as u32),
    };
    let result = match obj.remove("result") {
        None | Some(Value::Null) => {
            return Err(AppError::BadRequest(
                "result: missing (a required field)".into(),
            ))
        }
        Some(v @ Value::Object(_)) => v,
        Some(other) => {
            return Err(AppError::Invalid(format!(
                "result: expected an object, got {}",
                describe(&other)
            )))
        }
    };
    let flag = |key: &str| -> Result<Option<bool>, AppError> {
        match result.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(AppError::Invalid(format!(
                "result.{key}: expected a boolean, got {}",
                describe(other)
            ))),
        }
    };
    // The seed's workers always send `success`; a result without it reports output.
    let success = flag("success")?.unwrap_or(true);
    let retryable = flag("retryable")?.unwrap_or(false);
    Ok(ResultReport {
        worker_id,
        attempt,
        result,
        success,
        retryable,
    })
}

/// Tokens a result says the model generated: pifleet's `completion_tokens`, else the
/// Ollama body's `eval_count`.
fn generated_tokens(result: &Value) -> u64 {
    result
        .get("completion_tokens")
        .and_then(Value::as_u64)
        .or_else(|| {
            result
                .pointer("/response/eval_count")
                .and_then(Value::as_u64)
        })
        .unwrap_or(0)
}

async fn result(
    State(s): State<AppState>,
    who: WorkerAuth,
    Id(id): Id,
    JsonBody(body): JsonBody,
) -> Result<Json<ResultResponse>, AppError> {
    let report = parse_result(body)?;
    who.may_act_as(&s, &report.worker_id)?;
    let generated = generated_tokens(&report.result);
    let settled = s.fleet.settle(&id, report)?;
    let status = settled.as_str();
    if let Settled::Received(commit) = settled {
        committed(commit).await?;
        s.auth.task_generated(&id, generated);
    }
    Ok(Json(ResultResponse {
        status: status.into(),
    }))
}

async fn status(
    State(s): State<AppState>,
    Id(id): Id,
    q: QueryMap,
) -> Result<Json<TaskStatusResponse>, AppError> {
    // `?wait=S` holds the request until the task completes or fails, like a worker's poll.
    let wait = q
        .seconds("wait")?
        .unwrap_or(0.0)
        .min(s.fleet.limits().max_wait_s);
    if wait > 0.0 {
        if let Some(settled) = s.fleet.watch_settled(&id) {
            let _ = tokio::time::timeout(std::time::Duration::from_secs_f64(wait), settled).await;
        }
    }
    match s.fleet.status_async(&id).await? {
        Some(status) => Ok(Json(status)),
        None => Err(FleetError::TaskNotFound(id).into()),
    }
}

/// The most pending tasks one queue answer lists (about 450 KB of JSON): a larger
/// `limit` is capped and the answer's `pending_limit` says so.
pub const MAX_QUEUE_LIMIT: usize = 1000;

async fn queue(State(s): State<AppState>, q: QueryMap) -> Result<Json<QueueResponse>, AppError> {
    let limit = q
        .count("limit")?
        .unwrap_or(MAX_QUEUE_LIMIT)
        .min(MAX_QUEUE_LIMIT);
    Ok(Json(s.fleet.queue(limit)))
}

/// As many as the fleet remembers (it keeps the last 50 settled tasks).
const DEFAULT_RECENT_LIMIT: usize = 50;

async fn recent(
    State(s): State<AppState>,
    q: QueryMap,
) -> Result<Json<RecentTasksResponse>, AppError> {
    let limit = q.count("limit")?.unwrap_or(DEFAULT_RECENT_LIMIT);
    Ok(Json(s.fleet.recent(limit)))
}

async fn stats(State(s): State<AppState>) -> Json<StatsResponse> {
    Json(s.fleet.stats())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: Value) -> String {
        parse_submit(v).unwrap_err().to_string()
    }

    #[test]
    fn submit_errors_name_the_field() {
        assert!(
            err(json!({"type": "agent_action", "data": {}, "priority": "high"}))
                .starts_with("priority:")
        );
        assert!(
            err(json!({"type": "agent_action", "data": {}, "priority": 11}))
                .contains("out of range")
        );
        assert!(
            err(json!({"type": "agent_action", "data": {}, "priority": 0}))
                .contains("out of range")
        );
        assert!(
            err(json!({"type": "agent_action", "data": {}, "priority": -3}))
                .starts_with("priority:")
        );
        assert!(
            err(json!({"type": "agent_action", "data": {}, "priority": 2.5}))
                .starts_with("priority:")
        );
        assert!(err(json!({"data": {}})).starts_with("type: missing"));
        assert!(err(json!({"type": 7})).starts_with("type: expected a string"));
        assert!(err(json!({"type": "x", "data": [1]})).starts_with("data:"));
        assert!(err(json!({"type": "x", "data": {}, "timeout_s": -1})).starts_with("timeout_s:"));
        assert!(
            err(json!({"type": "x", "data": {}, "max_attempts": 0})).starts_with("max_attempts:")
        );
        assert!(
            err(json!({"type": "agent_action", "data": {"model": 3}})).starts_with("data.model:")
        );
    }

    #[test]
    fn an_expiry_is_a_positive_number_of_seconds() {
        let with = |e: Value| json!({"type": "x", "data": {}, "expires_s": e});
        for bad in [json!(-1), json!(0), json!(1e9)] {
            let e = err(with(bad.clone()));
            assert!(
                e.starts_with("expires_s: ") && e.contains("out of range"),
                "{bad}: {e}"
            );
        }
        let e = err(with(json!("soon")));
        assert!(e.starts_with("expires_s: expected a number"), "{e}");
        assert_eq!(parse_submit(with(json!(30))).unwrap().expires_s, Some(30.0));
        assert_eq!(parse_submit(with(Value::Null)).unwrap().expires_s, None);
    }

    #[test]
    fn seed_submit_is_accepted() {
        let t = parse_submit(json!({
            "type": "evolution_crossover",
            "data": {"genome1": {"a": 1}, "genome2": {"a": 2}},
            "priority": 7
        }))
        .unwrap();
        assert_eq!(t.priority, 7);
        let t =
            parse_submit(json!({"type": "code_generation", "data": {}, "priority": 7.0})).unwrap();
        assert_eq!(t.priority, 7);
        assert_eq!(t.data, json!({}));
    }
}
