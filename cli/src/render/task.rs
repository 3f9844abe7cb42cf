//! `pifleet task ID`: one task's status as text.

use pifleet_protocol::human::{ago, duration};
use pifleet_protocol::{TaskStatusResponse, QUEUE_POSITION_COUNTED as POSITION_COUNTED};

/// A pending task's place and expected start: `#3, starts in ~42s`.
pub fn standing(t: &TaskStatusResponse) -> Option<String> {
    let place = match t.queue_position? {
        p if p > POSITION_COUNTED => format!("behind more than {POSITION_COUNTED} tasks"),
        p => format!("#{p}"),
    };
    Some(match t.expected_start_s {
        Some(s) => format!("{place}, starts in ~{}", duration(s)),
        None => place,
    })
}

/// `pifleet task ID`.
pub fn task_status(t: &TaskStatusResponse, now: f64) -> String {
    let mut out = format!("task {}\n", t.task_id);
    let mut kv = |k: &str, v: String| out.push_str(&format!("  {k:<10}  {v}\n"));
    kv("status", t.status.as_str().into());
    if let Some(ty) = &t.task_type {
        kv("type", ty.clone());
    }
    if let Some(p) = t.priority {
        kv("priority", p.to_string());
    }
    if let Some(w) = &t.assigned_to {
        kv("node", w.clone());
    }
    match (t.attempts, t.max_attempts) {
        (Some(a), Some(m)) => kv("attempts", format!("{a} of {m}")),
        (Some(a), None) => kv("attempts", a.to_string()),
        _ => {}
    }
    if let Some(r) = &t.pending_reason {
        kv("waiting", r.clone());
    }
    if let Some(line) = standing(t) {
        kv("in line", line);
    }
    if let Some(e) = &t.error {
        kv("error", e.clone());
    }
    if let Some(c) = t.created_at {
        kv("created", ago(c, now));
    }
    if let Some(u) = t.updated_at {
        kv("updated", ago(u, now));
    }
    if let Some(r) = &t.result {
        let pretty = serde_json::to_string_pretty(r).unwrap_or_default();
        out.push_str("  result\n");
        for line in pretty.lines() {
            out.push_str("    ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
