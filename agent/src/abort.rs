//! Stopping a gateway request while Ollama has not answered yet. Ollama writes nothing
//! until the first token exists, so while a Pi loads a model or reads a long prompt the
//! agent is blocked on that socket and its token upload has nothing to send: the
//! orchestrator's 409 on the upload cannot reach it. Such a request runs on an HTTP
//! client of its own, kept here; when a heartbeat answer says the task is no longer this
//! node's (its client hung up), shutting that client down closes the Ollama connection,
//! which is how Ollama is told to stop.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use crate::activity::lock;

/// How often the node beats while a request waits for Ollama's first token, so a
/// hang-up reaches it within about this long (the heartbeat answer names the task).
pub const WAITING_BEAT: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct Aborts {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    waiting: HashMap<String, ureq::Agent>,
    stopped: HashSet<String>,
}

impl Aborts {
    /// `task` waits for Ollama's first token on `client`.
    pub fn waiting(&self, task: &str, client: ureq::Agent) {
        lock(&self.inner).waiting.insert(task.to_string(), client);
    }

    /// Ollama answered (or failed): the token upload takes over. True when the task was
    /// stopped meanwhile, so its outcome is not reported.
    pub fn answered(&self, task: &str) -> bool {
        let mut inner = lock(&self.inner);
        inner.waiting.remove(task);
        inner.stopped.remove(task)
    }

    /// The orchestrator no longer wants `task` from this node: closes its Ollama request
    /// if it is still waiting. True when one was closed.
    pub fn stop(&self, task: &str) -> bool {
        let mut inner = lock(&self.inner);
        let Some(client) = inner.waiting.remove(task) else {
            return false;
        };
        inner.stopped.insert(task.to_string());
        drop(inner);
        client.shutdown();
        true
    }

    pub fn any_waiting(&self) -> bool {
        !lock(&self.inner).waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    #[test]
    fn stopping_a_waiting_request_closes_its_connection() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/api/chat", server.local_addr().unwrap());
        let aborts = std::sync::Arc::new(Aborts::default());
        // Far longer than the server's read timeout below, so only the stop can close it.
        let client = crate::http::agent(Duration::from_secs(60));
        aborts.waiting("t-1", client.clone());
        let caller = std::thread::spawn(move || client.post(&url).send("{}"));
        // The server reads the request and never answers, like Ollama loading a model.
        let (mut conn, _) = server.accept().unwrap();
        let mut buf = [0u8; 256];
        let _ = conn.read(&mut buf).unwrap();
        assert!(!aborts.stop("t-2"), "not waiting");
        assert!(aborts.stop("t-1"));
        // The server sees the connection closed: end of stream, not a read timeout. The
        // first read may have taken only the headers, so what is left of the request is
        // read through first.
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut rest = Vec::new();
        conn.read_to_end(&mut rest)
            .expect("the connection is closed, not left open until the timeout");
        assert!(
            rest.len() <= 2,
            "only the request's body was still unread: {rest:?}"
        );
        assert!(caller.join().unwrap().is_err(), "the call was interrupted");
        assert!(aborts.answered("t-1"), "stopped meanwhile");
        assert!(!aborts.any_waiting());
    }
}
