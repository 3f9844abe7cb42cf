//! `POST /api/pull` as Ollama's `docs/api.md` ("Pull a Model") documents it: with
//! `stream` (the default) NDJSON lines `{"status": "pulling manifest"}`, then per layer
//! `{"status": "pulling <digest>", "digest", "total", "completed"}` as the download goes,
//! then `verifying sha256 digest`, `writing manifest` and `{"status": "success"}`; with
//! `"stream": false` the last object alone. A failure is an `{"error": ...}` line after the
//! manifest line (what Ollama sends for a name the registry does not know), or with
//! `stream: false` a 500 with that body. After a success the model is listed in
//! `/api/tags`.

use std::net::TcpStream;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

use super::http::{chunk, respond};
use super::models::model_named;
use super::{FakeModel, State};

/// Progress lines per pulled layer.
const STEPS: u64 = 5;
const DIGEST: &str = "sha256:dde5aa3fc5ffc17176b5e8bdc82f587b24b2678c6c66101bf7da77af9f7ccdff";

pub(super) fn pull(
    conn: &mut TcpStream,
    state: &Mutex<State>,
    body: &Value,
) -> std::io::Result<()> {
    let name = model_named(body);
    if name.is_empty() {
        return respond(conn, 400, &json!({"error": "model is required"}));
    }
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(true);
    let (fail, step) = {
        let st = state.lock().unwrap_or_else(|e| e.into_inner());
        (st.pull_error.clone(), st.pull_step)
    };
    let model = FakeModel::small(name);
    let finish = |state: &Mutex<State>| {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        if !st.models.iter().any(|m| m.name == name) {
            st.models.push(model.clone());
        }
        st.pulls_completed += 1;
    };
    if !stream {
        if let Some(msg) = fail {
            return respond(conn, 500, &json!({ "error": msg }));
        }
        std::thread::sleep(step * STEPS as u32);
        finish(state);
        return respond(conn, 200, &json!({"status": "success"}));
    }
    use std::io::Write;
    write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )?;
    chunk(conn, &json!({"status": "pulling manifest"}))?;
    if let Some(msg) = fail {
        chunk(conn, &json!({ "error": msg }))?;
        write!(conn, "0\r\n\r\n")?;
        return conn.flush();
    }
    let total = model.size;
    let short = &DIGEST["sha256:".len().."sha256:".len() + 12];
    for i in 0..=STEPS {
        chunk(
            conn,
            &json!({
                "status": format!("pulling {short}"),
                "digest": DIGEST,
                "total": total,
                "completed": total * i / STEPS,
            }),
        )?;
        if i < STEPS {
            std::thread::sleep(step);
        }
    }
    for status in ["verifying sha256 digest", "writing manifest"] {
        chunk(conn, &json!({ "status": status }))?;
    }
    finish(state);
    chunk(conn, &json!({"status": "success"}))?;
    write!(conn, "0\r\n\r\n")?;
    conn.flush()
}

/// The default pause between progress lines: long enough for a heartbeat to carry one.
pub(super) const DEFAULT_STEP: Duration = Duration::from_millis(300);
