//! Request extraction that never answers in anything but `{"error": ...}`: bodies are
//! read as bytes and parsed here so the message can name the field at fault, and axum's
//! own path and query rejections are mapped into the same shape.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::AppState;
use crate::error::AppError;

/// A JSON object body, required.
pub struct JsonBody(pub Value);

fn body_error(e: BytesRejection, limit: usize) -> AppError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::TooLarge(format!("body: larger than the {limit}-byte limit"))
    } else {
        AppError::BadRequest(format!("body: could not be read: {}", e.body_text()))
    }
}

/// Describes a JSON value for an error message: `string "high"`, `null`, `an array`.
pub fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => {
            let shown: String = s.chars().take(40).collect();
            let more = if s.chars().count() > 40 { "..." } else { "" };
            format!("string \"{shown}{more}\"")
        }
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn parse(bytes: &[u8], required: bool) -> Result<Option<Value>, AppError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return if required {
            Err(AppError::BadRequest(
                "body: expected a JSON object, got an empty body".into(),
            ))
        } else {
            Ok(None)
        };
    }
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| AppError::BadRequest(format!("body: invalid JSON: {e}")))?;
    // The seed answers 400 for a body that is not an object, `null` included.
    match v {
        Value::Object(_) => Ok(Some(v)),
        Value::Null if !required => Ok(None),
        other => Err(AppError::BadRequest(format!(
            "body: expected a JSON object, got {}",
            describe(&other)
        ))),
    }
}

impl FromRequest<AppState> for JsonBody {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| body_error(e, state.max_body_bytes))?;
        match parse(&bytes, true)? {
            Some(v) => Ok(JsonBody(v)),
            None => Err(AppError::BadRequest(
                "body: expected a JSON object, got null".into(),
            )),
        }
    }
}

/// A body parsed straight into a wire type (no intermediate `Value`: heartbeats are the
/// hottest path). Absent when the body is empty or `null`.
pub struct OptionalTyped<T>(pub Option<T>);

impl<T: DeserializeOwned> FromRequest<AppState> for OptionalTyped<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| body_error(e, state.max_body_bytes))?;
        let text = bytes.trim_ascii();
        if text.is_empty() || text == b"null" {
            return Ok(OptionalTyped(None));
        }
        if text[0] != b'{' {
            // Parse it anyway to say what it is, or why it is not JSON.
            return match parse(text, true) {
                Err(e) => Err(e),
                Ok(_) => Err(AppError::BadRequest("body: expected a JSON object".into())),
            };
        }
        let mut de = serde_json::Deserializer::from_slice(text);
        let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let syntax = !matches!(inner.classify(), serde_json::error::Category::Data);
            match (syntax, path.as_str()) {
                (true, _) => AppError::BadRequest(format!("body: invalid JSON: {inner}")),
                (false, ".") => AppError::Invalid(format!("body: {inner}")),
                (false, _) => AppError::Invalid(format!("{path}: {inner}")),
            }
        })?;
        de.end()
            .map_err(|e| AppError::BadRequest(format!("body: invalid JSON: {e}")))?;
        Ok(OptionalTyped(Some(value)))
    }
}

/// Deserializes a checked JSON object into a wire type, naming the path of a bad field:
/// `capabilities.slots: invalid type: string "two", expected u32`.
pub fn typed<T: DeserializeOwned>(v: Value) -> Result<T, AppError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            AppError::Invalid(format!("body: {inner}"))
        } else {
            AppError::Invalid(format!("{path}: {inner}"))
        }
    })
}

/// The `{id}` segment of a path, percent-decoded.
pub struct Id(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e: PathRejection| AppError::BadRequest(format!("path: {}", e.body_text())))?;
        Ok(Id(id))
    }
}

/// Query parameters as strings; each handler parses the ones it knows.
pub struct QueryMap(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for QueryMap {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(map) = Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e: QueryRejection| {
                AppError::BadRequest(format!("query: {}", e.body_text()))
            })?;
        Ok(QueryMap(map))
    }
}

impl QueryMap {
    /// A non-negative number of seconds, if given.
    pub fn seconds(&self, key: &str) -> Result<Option<f64>, AppError> {
        let Some(raw) = self.0.get(key) else {
            return Ok(None);
        };
        match raw.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Ok(Some(v)),
            _ => Err(AppError::BadRequest(format!(
                "{key}: expected a non-negative number of seconds, got \"{raw}\""
            ))),
        }
    }

    pub fn count(&self, key: &str) -> Result<Option<usize>, AppError> {
        let Some(raw) = self.0.get(key) else {
            return Ok(None);
        };
        raw.trim().parse::<usize>().map(Some).map_err(|_| {
            AppError::BadRequest(format!(
                "{key}: expected a non-negative whole number, got \"{raw}\""
            ))
        })
    }
}
