//! Errors in the shape of the API the client speaks: OpenAI's
//! `{"error": {"message", "type", "param", "code"}}` or Ollama's `{"error": "..."}`, with
//! the status codes those servers use.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// Which API a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    OpenAi,
    Ollama,
}

impl Api {
    pub fn label(self) -> &'static str {
        match self {
            Api::OpenAi => "openai",
            Api::Ollama => "ollama",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GatewayError {
    pub api: Api,
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `code` (`model_not_found`, `invalid_api_key`); Ollama has none.
    pub code: Option<&'static str>,
    /// Seconds for `Retry-After` (503 after waiting in the queue).
    pub retry_after_s: Option<u64>,
}

impl GatewayError {
    pub fn new(api: Api, status: StatusCode, message: impl Into<String>) -> Self {
        GatewayError {
            api,
            status,
            message: message.into(),
            code: None,
            retry_after_s: None,
        }
    }

    pub fn bad_request(api: Api, message: impl Into<String>) -> Self {
        GatewayError::new(api, StatusCode::BAD_REQUEST, message)
    }

    pub fn unknown_model(api: Api, model: &str) -> Self {
        GatewayError {
            code: Some("model_not_found"),
            ..GatewayError::new(
                api,
                StatusCode::NOT_FOUND,
                format!("model \"{model}\" not found: no live node of the fleet has it (pull it on a node, or see GET /api/tags)"),
            )
        }
    }

    pub fn unauthorized(api: Api, message: impl Into<String>) -> Self {
        GatewayError {
            code: Some("invalid_api_key"),
            ..GatewayError::new(api, StatusCode::UNAUTHORIZED, message)
        }
    }

    /// The request waited its whole queue time without a node taking it.
    pub fn queue_timeout(api: Api, waited_s: f64, why: Option<String>) -> Self {
        let why = why.map(|w| format!(" ({w})")).unwrap_or_default();
        GatewayError {
            retry_after_s: Some(waited_s.clamp(1.0, 60.0).ceil() as u64),
            ..GatewayError::new(
                api,
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no node took this request within {waited_s} s{why}; try again later"),
            )
        }
    }

    /// The fleet ran the request and it failed there (Ollama's error, a node that died
    /// on every attempt).
    pub fn upstream(api: Api, message: impl Into<String>) -> Self {
        GatewayError::new(api, StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    fn openai_type(&self) -> &'static str {
        match self.status.as_u16() {
            401 => "authentication_error",
            400..=499 => "invalid_request_error",
            _ => "server_error",
        }
    }

    /// The JSON error body in the API's shape.
    pub fn body(&self) -> Value {
        match self.api {
            Api::OpenAi => json!({"error": {
                "message": self.message,
                "type": self.openai_type(),
                "param": Value::Null,
                "code": self.code,
            }}),
            Api::Ollama => json!({"error": self.message}),
        }
    }
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(self.body())).into_response();
        let h = resp.headers_mut();
        if let Some(s) = self.retry_after_s {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_follow_the_api() {
        let e = GatewayError::unknown_model(Api::OpenAi, "x");
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert_eq!(e.body()["error"]["code"], "model_not_found");
        assert_eq!(e.body()["error"]["type"], "invalid_request_error");
        let e = GatewayError::unknown_model(Api::Ollama, "x");
        assert!(e.body()["error"]
            .as_str()
            .unwrap()
            .starts_with("model \"x\" not found"));
        let r = GatewayError::queue_timeout(Api::Ollama, 2.0, None).into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
    }
}
