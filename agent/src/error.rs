//! One error enum per concern, each variant carrying the context a person needs to fix it.

use std::path::PathBuf;
use std::time::Duration;

/// Why the agent could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error("cannot read config file {path}: {source}; fix: check the path and its permissions, or pass --config FILE")]
    ConfigRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    ConfigParse { path: PathBuf, message: String },
    #[error("{origin}: `{key}` {message}; fix: {fix}")]
    ConfigValue {
        origin: String,
        key: String,
        message: String,
        fix: String,
    },
    #[error("cannot create state directory {path}: {source}; fix: create it writable by the agent or set state_dir")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("spool {path}: {source}")]
    Spool {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot daemonize: {0}")]
    Daemonize(String),
    #[error("cannot install signal handlers: {0}")]
    Signal(std::io::Error),
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
}

/// A failed call to the orchestrator. Status answers are kept apart from transport
/// failures: a 404 means "register again", a refused connection means "wait and retry".
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("orchestrator answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("orchestrator unreachable: {0}")]
    Transport(String),
    #[error("orchestrator sent an unexpected body: {0}")]
    Decode(String),
}

impl ClientError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A failed call to the local Ollama.
#[derive(Debug, thiserror::Error)]
pub enum OllamaError {
    #[error("ollama: {0}")]
    ModelNotFound(String),
    #[error("ollama stayed busy (503) after {attempts} attempts: {message}")]
    Busy { attempts: u32, message: String },
    #[error("ollama answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("ollama unreachable: {0}")]
    Transport(String),
    #[error("no first token from ollama within {0:?}")]
    FirstTokenTimeout(Duration),
    #[error("ollama did not finish within {0:?}")]
    TotalTimeout(Duration),
    #[error("ollama failed mid-stream: {0}")]
    Stream(String),
    #[error("ollama sent an unexpected body: {0}")]
    Decode(String),
}

impl OllamaError {
    /// Whether another attempt (here or on another node) could succeed.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            OllamaError::Busy { .. }
                | OllamaError::Transport(_)
                | OllamaError::FirstTokenTimeout(_)
                | OllamaError::TotalTimeout(_)
        )
    }
}
