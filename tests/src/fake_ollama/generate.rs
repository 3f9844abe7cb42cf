//! `POST /api/chat` and `POST /api/generate`: NDJSON chunks, the final statistics, the
//! failure knobs, and stopping when the client hangs up.

use std::io::Write;
use std::net::TcpStream;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::http::{chunk, respond};
use super::State;

pub(super) fn generate(
    conn: &mut TcpStream,
    state: &Mutex<State>,
    path: &str,
    body: &Value,
) -> std::io::Result<()> {
    let chat = path == "/api/chat";
    let model = body.get("model").and_then(Value::as_str).unwrap_or("");
    if model.is_empty() {
        return respond(conn, 400, &json!({"error": "model is required"}));
    }
    let (reply, fail, first_delay, token_delay, speed) = {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        if !st.models.iter().any(|m| m.name == model) {
            drop(st);
            let msg = format!("model \"{model}\" not found, try pulling it first");
            return respond(conn, 404, &json!({ "error": msg }));
        }
        if st.busy_next > 0 {
            st.busy_next -= 1;
            drop(st);
            return respond(
                conn,
                503,
                &json!({"error": "server busy, please try again.  maximum pending requests exceeded"}),
            );
        }
        if !st.loaded.iter().any(|m| m == model) {
            st.loaded.push(model.to_string());
        }
        (
            st.reply.clone(),
            st.fail_mid_stream.clone(),
            st.first_token_delay,
            st.token_delay,
            st.speed,
        )
    };
    let prompt_words = if chat {
        body.get("messages")
            .and_then(Value::as_array)
            .map(|ms| {
                ms.iter()
                    .filter_map(|m| m.get("content").and_then(Value::as_str))
                    .map(|c| c.split_whitespace().count())
                    .sum::<usize>()
            })
            .unwrap_or(0)
    } else {
        body.get("prompt")
            .and_then(Value::as_str)
            .map(|p| p.split_whitespace().count())
            .unwrap_or(0)
    };
    // Ollama stops a generation whose client went away, even before the first token
    // (while it loads the model or reads the prompt): so does the double, and counts it.
    if let Err(e) = pause_unless_closed(conn, first_delay) {
        state.lock().unwrap_or_else(|e| e.into_inner()).aborted += 1;
        return Err(e);
    }
    let tokens: Vec<String> = reply.split_inclusive(' ').map(str::to_string).collect();
    let eval_count = tokens.len() as u64;
    let piece = |text: &str, done: bool| -> Value {
        let mut v = json!({"model": model, "created_at": now_rfc3339()});
        if chat {
            v["message"] = json!({"role": "assistant", "content": text});
        } else {
            v["response"] = json!(text);
        }
        v["done"] = json!(done);
        v
    };
    let mut final_obj = piece("", true);
    final_obj["done_reason"] = json!("stop");
    if !chat {
        final_obj["context"] = json!([1, 2, 3]);
    }
    let eval_duration = (50_000_000.0 * eval_count.max(1) as f64 / speed) as u64;
    let prompt_eval_duration = (70_000_000.0 / speed) as u64;
    final_obj["total_duration"] = json!(eval_duration + prompt_eval_duration + 80_000_000);
    final_obj["load_duration"] = json!(80_000_000u64);
    final_obj["prompt_eval_count"] = json!(prompt_words as u64 + 8);
    final_obj["prompt_eval_duration"] = json!(prompt_eval_duration);
    final_obj["eval_count"] = json!(eval_count);
    final_obj["eval_duration"] = json!(eval_duration);

    if body.get("stream") == Some(&Value::Bool(false)) {
        if let Some(msg) = fail {
            return respond(conn, 500, &json!({ "error": msg }));
        }
        let all = piece(&reply, true);
        let mut merged = final_obj;
        if chat {
            merged["message"] = all["message"].clone();
        } else {
            merged["response"] = all["response"].clone();
        }
        return respond(conn, 200, &merged);
    }
    let count = |f: fn(&mut State)| f(&mut state.lock().unwrap_or_else(|e| e.into_inner()));
    count(|st| st.active += 1);
    let streamed = stream_tokens(conn, &tokens, token_delay, &fail, &piece, &final_obj);
    match streamed {
        Ok(true) => count(|st| {
            st.active -= 1;
            st.completed += 1
        }),
        Ok(false) => count(|st| st.active -= 1),
        Err(_) => count(|st| {
            st.active -= 1;
            st.aborted += 1
        }),
    }
    streamed.map(|_| ())
}

/// Streams the chunks; Ok(true) when the final object went out, Ok(false) after an error
/// line, Err when the client closed the connection early.
fn stream_tokens(
    conn: &mut TcpStream,
    tokens: &[String],
    token_delay: Duration,
    fail: &Option<String>,
    piece: &dyn Fn(&str, bool) -> Value,
    final_obj: &Value,
) -> std::io::Result<bool> {
    write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )?;
    for (i, t) in tokens.iter().enumerate() {
        if i > 0 {
            pause_unless_closed(conn, token_delay)?;
        }
        chunk(conn, &piece(t, false))?;
        if i == 0 {
            if let Some(msg) = fail {
                chunk(conn, &json!({ "error": msg }))?;
                write!(conn, "0\r\n\r\n")?;
                conn.flush()?;
                return Ok(false);
            }
        }
    }
    chunk(conn, final_obj)?;
    // The generation is over once its final object is out: a client that hangs up on
    // reading it, before the chunked terminator, did not abort anything.
    let _ = write!(conn, "0\r\n\r\n").and_then(|()| conn.flush());
    Ok(true)
}

/// Waits `d`, failing as soon as the client has closed its end (a write alone would
/// notice only a token or two later).
fn pause_unless_closed(conn: &TcpStream, d: Duration) -> std::io::Result<()> {
    let until = std::time::Instant::now() + d;
    loop {
        conn.set_nonblocking(true)?;
        let mut byte = [0u8; 1];
        let peeked = conn.peek(&mut byte);
        conn.set_nonblocking(false)?;
        match peeked {
            Ok(0) => return Err(std::io::ErrorKind::ConnectionAborted.into()),
            Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => return Err(e),
            _ => {}
        }
        let now = std::time::Instant::now();
        if now >= until {
            return Ok(());
        }
        thread::sleep((until - now).min(Duration::from_millis(5)));
    }
}

pub(super) fn unknown_model(
    conn: &mut TcpStream,
    state: &Mutex<State>,
    model: &str,
) -> Option<std::io::Result<()>> {
    let st = state.lock().unwrap_or_else(|e| e.into_inner());
    if st.models.iter().any(|m| m.name == model) {
        return None;
    }
    drop(st);
    let msg = format!("model \"{model}\" not found, try pulling it first");
    Some(respond(conn, 404, &json!({ "error": msg })))
}

fn now_rfc3339() -> String {
    // Ollama prints local time with nanoseconds; a fixed UTC shape is as parseable.
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000000000Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// Howard Hinnant's days-to-civil, so the double needs no date crate.
pub(super) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}
