//! The gateway's endpoints: check the request, turn it into a [`Job`], answer in the
//! client's API (whole, or streamed without buffering).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Request};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use pifleet_protocol::{PRIORITY_MAX, PRIORITY_MIN};
use serde_json::{json, Value};

use super::error::{Api, GatewayError};
use super::openai::{self, Meta, SseShaper};
use super::relay::{self, Job};
use super::streaming::{stream_response, Shape};
use super::{api_of, catalog, Gateway};
use crate::http::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/chat/completions", post(openai_chat))
        .route("/v1/completions", post(openai_completions))
        .route("/v1/embeddings", post(openai_embeddings))
        .route("/v1/models", get(openai_models))
        .route("/v1/models/{*model}", get(openai_model))
        .route("/api/chat", post(ollama_chat))
        .route("/api/generate", post(ollama_generate))
        .route("/api/embed", post(ollama_embed))
        .route("/api/show", post(ollama_show))
        .route("/api/tags", get(ollama_tags))
        .route("/api/ps", get(ollama_ps))
        .route("/api/version", get(ollama_version))
}

pub async fn no_route(req: Request) -> GatewayError {
    let api = api_of(req.uri().path());
    GatewayError::new(
        api,
        StatusCode::NOT_FOUND,
        format!("no such endpoint: {} {}", req.method(), req.uri().path()),
    )
}

fn body_json(api: Api, body: Result<Bytes, BytesRejection>) -> Result<Value, GatewayError> {
    let bytes = body.map_err(|e| {
        GatewayError::new(
            api,
            e.status(),
            format!("body: could not be read: {}", e.body_text()),
        )
    })?;
    if bytes.trim_ascii().is_empty() {
        return Err(GatewayError::bad_request(
            api,
            "body: expected a JSON object, got an empty body",
        ));
    }
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| GatewayError::bad_request(api, format!("body: invalid JSON: {e}")))?;
    if !v.is_object() {
        return Err(GatewayError::bad_request(
            api,
            "body: expected a JSON object",
        ));
    }
    Ok(v)
}

/// `X-Pifleet-Priority: 1-10` (at most the key's maximum), else the key's default
/// priority, else the configured gateway priority.
fn priority(gw: &Gateway, api: Api, headers: &HeaderMap) -> Result<u8, GatewayError> {
    let asked = asked_priority(api, headers)?;
    let Some(charge) = &gw.key else {
        return Ok(asked.unwrap_or(gw.cfg.priority));
    };
    let key = &charge.caller.key;
    if asked.is_none() && key.priority.is_none() {
        return Ok(gw
            .cfg
            .priority
            .min(key.max_priority.unwrap_or(PRIORITY_MAX)));
    }
    key.priority_for(asked)
        .map_err(|m| GatewayError::new(api, StatusCode::FORBIDDEN, m))
}

fn asked_priority(api: Api, headers: &HeaderMap) -> Result<Option<u8>, GatewayError> {
    let Some(v) = headers.get("x-pifleet-priority") else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(|s| s.trim().parse::<u8>().ok())
        .filter(|p| (PRIORITY_MIN..=PRIORITY_MAX).contains(p))
        .map(Some)
        .ok_or_else(|| {
            GatewayError::bad_request(
                api,
                format!(
                    "X-Pifleet-Priority: expected a whole number from {PRIORITY_MIN} to {PRIORITY_MAX}, got {:?}",
                    String::from_utf8_lossy(v.as_bytes())
                ),
            )
        })
}

fn known(gw: &Gateway, api: Api, model: &str) -> Result<(), GatewayError> {
    if catalog::has_model(&gw.fleet.nodes(), model) {
        Ok(())
    } else {
        Err(GatewayError::unknown_model(api, model))
    }
}

fn outcome(e: &GatewayError) -> &'static str {
    match e.status.as_u16() {
        503 => "unavailable",
        400..=499 => "client_error",
        _ => "failed",
    }
}

/// Records how the request ended, and turns it into a response.
pub(super) fn finish(
    gw: &Gateway,
    api: Api,
    endpoint: &str,
    r: Result<Response, GatewayError>,
) -> Response {
    match r {
        Ok(resp) => {
            gw.metrics.request(api.label(), endpoint, "ok");
            resp
        }
        Err(e) => {
            gw.metrics.request(api.label(), endpoint, outcome(&e));
            e.into_response()
        }
    }
}

// ---------------------------------------------------------------------------------------
// OpenAI

async fn openai_chat(
    Extension(gw): Extension<Gateway>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    openai_generation(gw, headers, body, true).await
}

async fn openai_completions(
    Extension(gw): Extension<Gateway>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    openai_generation(gw, headers, body, false).await
}

async fn openai_generation(
    gw: Gateway,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    chat: bool,
) -> Response {
    let api = Api::OpenAi;
    let endpoint = if chat { "chat" } else { "generate" };
    let prepared = (|| {
        let body = body_json(api, body)?;
        let model = openai::model_of(&body, api)?;
        let (stream, include_usage) = openai::stream_flags(&body)?;
        let request = if chat {
            openai::chat_request(&body, &model, stream)?
        } else {
            openai::completion_request(&body, &model, stream)?
        };
        let priority = priority(&gw, api, &headers)?;
        known(&gw, api, &model)?;
        Ok((
            Job {
                api,
                endpoint,
                model,
                request,
                stream,
                priority,
            },
            include_usage,
        ))
    })();
    let (job, include_usage) = match prepared {
        Ok(p) => p,
        Err(e) => return finish(&gw, api, endpoint, Err(e)),
    };
    let prefix = if chat { "chatcmpl" } else { "cmpl" };
    if job.stream {
        let model = job.model.clone();
        return stream_response(gw, job, move |id, created| {
            Shape::Sse(SseShaper::new(
                Meta::new(prefix, id, created, &model),
                chat,
                include_usage,
            ))
        })
        .await;
    }
    let r = relay::wait_whole(&gw, &job).await.map(|v| {
        let meta = Meta::new(prefix, "", gw.fleet.now(), &job.model);
        let meta = Meta {
            id: format!("{prefix}-{}", uuid::Uuid::new_v4().simple()),
            ..meta
        };
        let out = if chat {
            openai::chat_response(&meta, &v)
        } else {
            openai::completion_response(&meta, &v)
        };
        Json(out).into_response()
    });
    finish(&gw, api, endpoint, r)
}

async fn openai_embeddings(
    Extension(gw): Extension<Gateway>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let api = Api::OpenAi;
    let r = async {
        let body = body_json(api, body)?;
        let model = openai::model_of(&body, api)?;
        let (request, base64) = openai::embeddings_request(&body, &model)?;
        let priority = priority(&gw, api, &headers)?;
        known(&gw, api, &model)?;
        let job = Job {
            api,
            endpoint: "embed",
            model: model.clone(),
            request,
            stream: false,
            priority,
        };
        let v = relay::wait_whole(&gw, &job).await?;
        Ok(Json(openai::embeddings_response(&model, &v, base64)).into_response())
    }
    .await;
    finish(&gw, api, "embed", r)
}

async fn openai_models(Extension(gw): Extension<Gateway>) -> Json<Value> {
    Json(catalog::openai_models(&gw.fleet.nodes()))
}

async fn openai_model(
    Extension(gw): Extension<Gateway>,
    Path(model): Path<String>,
) -> Result<Json<Value>, GatewayError> {
    catalog::openai_model_named(&gw.fleet.nodes(), &model)
        .map(Json)
        .ok_or_else(|| GatewayError::unknown_model(Api::OpenAi, &model))
}

// ---------------------------------------------------------------------------------------
// Ollama

/// Ollama's own request, checked just enough to fail fast with a 400, and passed on as is.
fn ollama_job(
    gw: &Gateway,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    endpoint: &'static str,
) -> Result<Job, GatewayError> {
    let api = Api::Ollama;
    let mut body = body_json(api, body)?;
    // `show` took `name` before `model`; both are accepted like Ollama does.
    if endpoint == "show" && body.get("model").is_none() {
        if let Some(n) = body.get("name").cloned() {
            body["model"] = n;
        }
    }
    let model = openai::model_of(&body, api)?;
    let stream = match endpoint {
        "chat" | "generate" => match body.get("stream") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(GatewayError::bad_request(
                    api,
                    "stream: expected true or false",
                ))
            }
        },
        _ => false,
    };
    match endpoint {
        "chat" => match body.get("messages") {
            None | Some(Value::Null) | Some(Value::Array(_)) => {}
            Some(_) => {
                return Err(GatewayError::bad_request(
                    api,
                    "messages: expected an array",
                ))
            }
        },
        "generate" => match body.get("prompt") {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(_) => return Err(GatewayError::bad_request(api, "prompt: expected a string")),
        },
        "embed" => match body.get("input") {
            Some(Value::String(_)) | Some(Value::Array(_)) => {}
            _ => {
                return Err(GatewayError::bad_request(
                    api,
                    "input: expected a string or an array of strings",
                ))
            }
        },
        _ => {}
    }
    if matches!(endpoint, "chat" | "generate") {
        body["stream"] = Value::Bool(stream);
    }
    let priority = priority(gw, api, headers)?;
    known(gw, api, &model)?;
    Ok(Job {
        api,
        endpoint,
        model,
        request: body,
        stream,
        priority,
    })
}

async fn ollama_run(
    gw: Gateway,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    endpoint: &'static str,
) -> Response {
    let job = match ollama_job(&gw, &headers, body, endpoint) {
        Ok(j) => j,
        Err(e) => return finish(&gw, Api::Ollama, endpoint, Err(e)),
    };
    if job.stream {
        return stream_response(gw, job, |_, _| Shape::Ndjson).await;
    }
    let r = relay::wait_whole(&gw, &job)
        .await
        .map(|v| Json(v).into_response());
    finish(&gw, Api::Ollama, endpoint, r)
}

async fn ollama_chat(
    Extension(gw): Extension<Gateway>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    ollama_run(gw, headers, body, "chat").await
}

async fn ollama_generate(
    Extension(gw): Extension<Gateway>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    ollama_run(gw, headers, body, "generate").await
}

async fn ollama_embed(
    Extension(gw): Extension<Gateway>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    ollama_run(gw, headers, body, "embed").await
}

async fn ollama_show(
    Extension(gw): Extension<Gateway>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    ollama_run(gw, headers, body, "show").await
}

async fn ollama_tags(Extension(gw): Extension<Gateway>) -> Json<Value> {
    Json(catalog::tags(&gw.fleet.nodes()))
}

async fn ollama_ps(Extension(gw): Extension<Gateway>) -> Json<Value> {
    Json(catalog::ps(&gw.fleet.nodes()))
}

async fn ollama_version() -> Json<Value> {
    Json(json!({"version": env!("CARGO_PKG_VERSION")}))
}
