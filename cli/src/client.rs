//! A blocking HTTP client for the orchestrator's API, with errors that tell the operator
//! what to do next (which URL did not answer, which flag carries the token).

use std::io;
use std::time::Duration;

use pifleet_protocol::{
    encode_segment, node_path, paths, ErrorResponse, NodeDetail, NodeView, NodesResponse,
    QueueResponse, RecentTasksResponse, StatsResponse, SubmitRequest, SubmitResponse,
    TaskStatusResponse,
};
use serde::de::DeserializeOwned;

/// Default orchestrator URL: the orchestrator's default listen address.
pub const DEFAULT_URL: &str = "http://127.0.0.1:5000";

/// How long one ordinary request may take before the CLI gives up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cannot reach the orchestrator at {url} ({reason}): is it running? \
         start one with `pifleet-orchestrator serve`, or point --url / PIFLEET_URL at it"
    )]
    Unreachable { url: String, reason: String },
    #[error(
        "the orchestrator at {url} wants a client token: pass --token TOKEN or set PIFLEET_TOKEN"
    )]
    Unauthorized { url: String },
    #[error("the orchestrator at {url} refused the token (403): check --token / PIFLEET_TOKEN")]
    Forbidden { url: String },
    #[error("{message}")]
    NotFound { message: String },
    #[error("the orchestrator answered {status} to {method} {path}: {message}")]
    Status {
        method: &'static str,
        path: String,
        status: u16,
        message: String,
    },
    #[error("timed out talking to the orchestrator at {url}")]
    Timeout { url: String },
    #[error("unexpected answer to {method} {path}: {reason}")]
    BadBody {
        method: &'static str,
        path: String,
        reason: String,
    },
    #[error("invalid orchestrator url {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
}

/// One orchestrator, one token, one connection pool.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(url: &str, token: Option<String>) -> Result<Self, Error> {
        let base = url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::BadUrl {
                url: url.to_string(),
                reason: "it must start with http:// or https://".into(),
            });
        }
        if base.starts_with("https://") && !cfg!(feature = "tls") {
            return Err(Error::BadUrl {
                url: url.to_string(),
                reason: "this pifleet was built without TLS: use http://, or build it with \
                         `cargo build -p pifleet --features tls`"
                    .into(),
            });
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .build()
            .into();
        Ok(Client {
            base,
            token: token.filter(|t| !t.is_empty()),
            agent,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn nodes(&self) -> Result<NodesResponse, Error> {
        self.get(paths::NODES)
    }

    pub fn node(&self, id: &str) -> Result<NodeDetail, Error> {
        self.get(&node_path(id, None))
    }

    pub fn drain(&self, id: &str, drain: bool) -> Result<NodeView, Error> {
        let action = if drain { "drain" } else { "undrain" };
        self.post(&node_path(id, Some(action)), &serde_json::json!({}))
    }

    pub fn submit(&self, req: &SubmitRequest) -> Result<SubmitResponse, Error> {
        self.post(paths::SUBMIT, req)
    }

    pub fn task(&self, id: &str) -> Result<TaskStatusResponse, Error> {
        self.get(&format!(
            "{}{}",
            paths::TASK_STATUS_PREFIX,
            encode_segment(id)
        ))
    }

    /// The task's status, held by the orchestrator up to `wait` for a change when it
    /// supports long polls (`?wait=`); an orchestrator that does not answers at once.
    pub fn task_wait(&self, id: &str, wait: Duration) -> Result<TaskStatusResponse, Error> {
        let path = format!(
            "{}{}?wait={}",
            paths::TASK_STATUS_PREFIX,
            encode_segment(id),
            wait.as_secs().max(1)
        );
        self.request("GET", &path, None, REQUEST_TIMEOUT + wait)
    }

    pub fn queue(&self) -> Result<QueueResponse, Error> {
        self.get(paths::QUEUE)
    }

    /// The first `limit` pending tasks (and every running one), with the totals.
    pub fn queue_top(&self, limit: usize) -> Result<QueueResponse, Error> {
        self.get(&format!("{}?limit={limit}", paths::QUEUE))
    }

    /// The last settled tasks; `None` from an orchestrator that does not list them.
    pub fn recent(&self, limit: usize) -> Result<Option<RecentTasksResponse>, Error> {
        match self.get(&format!("{}?limit={limit}", paths::RECENT)) {
            Ok(r) => Ok(Some(r)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn stats(&self) -> Result<StatsResponse, Error> {
        self.get(paths::STATS)
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        self.request("GET", path, None, REQUEST_TIMEOUT)
    }

    fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T, Error> {
        let body = serde_json::to_vec(body).map_err(|e| Error::BadBody {
            method: "POST",
            path: path.to_string(),
            reason: e.to_string(),
        })?;
        self.request("POST", path, Some(body), REQUEST_TIMEOUT)
    }

    fn request<T: DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<T, Error> {
        let url = format!("{}{}", self.base, path);
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let result = match body {
            None => {
                let mut req = self
                    .agent
                    .get(&url)
                    .config()
                    .timeout_global(Some(timeout))
                    .build();
                if let Some(auth) = &auth {
                    req = req.header("Authorization", auth);
                }
                req.call()
            }
            Some(body) => {
                let mut req = self
                    .agent
                    .post(&url)
                    .config()
                    .timeout_global(Some(timeout))
                    .build()
                    .header("Content-Type", "application/json");
                if let Some(auth) = &auth {
                    req = req.header("Authorization", auth);
                }
                req.send(&body[..])
            }
        };
        let mut resp = result.map_err(|e| self.transport_error(e))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| self.transport_error(e))?;
        if (200..300).contains(&status) {
            return serde_json::from_str(&text).map_err(|e| Error::BadBody {
                method,
                path: path.to_string(),
                reason: e.to_string(),
            });
        }
        let message = serde_json::from_str::<ErrorResponse>(&text)
            .map(|e| e.error)
            .unwrap_or_else(|_| text.trim().chars().take(200).collect());
        Err(match status {
            401 => Error::Unauthorized {
                url: self.base.clone(),
            },
            403 => Error::Forbidden {
                url: self.base.clone(),
            },
            404 if !message.is_empty() => Error::NotFound { message },
            _ => Error::Status {
                method,
                path: path.to_string(),
                status,
                message,
            },
        })
    }

    fn transport_error(&self, e: ureq::Error) -> Error {
        let url = self.base.clone();
        match e {
            ureq::Error::Timeout(_) => Error::Timeout { url },
            ureq::Error::Io(io) if io.kind() == io::ErrorKind::TimedOut => Error::Timeout { url },
            ureq::Error::Io(io) => {
                let reason = match io.kind() {
                    io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
                    _ => io.to_string(),
                };
                Error::Unreachable { url, reason }
            }
            ureq::Error::HostNotFound => Error::Unreachable {
                url,
                reason: "host not found".into(),
            },
            ureq::Error::ConnectionFailed => Error::Unreachable {
                url,
                reason: "connection failed".into(),
            },
            ureq::Error::BadUri(reason) => Error::BadUrl { url, reason },
            other => Error::Unreachable {
                url,
                reason: other.to_string(),
            },
        }
    }
}
