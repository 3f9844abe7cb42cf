//! The page's work section: what runs where and for how long, what waits and why, what
//! just finished (duration, tokens/s) and how fast each node generates. Rendered from the
//! same snapshot as the rest of the page, so it agrees with the cards and the summary.

use std::fmt::Write as _;

use pifleet_protocol::human::duration;
use pifleet_protocol::TaskState;

use super::html::{escape, time};
use super::FleetSnapshot;

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

fn task_cell(id: &str) -> String {
    format!(
        r#"<code title="{}">{}</code>"#,
        escape(id),
        escape(short(id))
    )
}

/// A part's heading (with its count), and `nothing` when it has nothing to list; true
/// when there is something to list.
fn heading(h: &mut String, title: &str, count: Option<u64>, nothing: &str, empty: bool) -> bool {
    match count {
        Some(n) => {
            let _ = write!(h, r#"<h3>{title} <span class="muted">{n}</span></h3>"#);
        }
        None => {
            let _ = write!(h, "<h3>{title}</h3>");
        }
    }
    if empty {
        let _ = write!(h, r#"<p class="muted">{nothing}</p>"#);
    }
    !empty
}

/// The work section for the first render (`now` fills the relative times) or the live
/// updates (`None`: the script fills them, so unchanged work renders to the same bytes).
pub fn work_html(s: &FleetSnapshot, now: Option<f64>) -> String {
    let w = &s.work;
    let mut h = String::new();
    if heading(
        &mut h,
        "Running",
        Some(s.tasks.assigned),
        "nothing running",
        w.running.is_empty(),
    ) {
        h.push_str(r#"<table class="work running"><thead><tr><th>task</th><th>type</th><th>node</th><th>started</th></tr></thead><tbody>"#);
        for t in &w.running {
            let _ = write!(
                h,
                r#"<tr data-task="{id}"><td>{task}</td><td>{ty}</td><td class="host">{node}</td><td class="since">{since}</td></tr>"#,
                id = escape(&t.task_id),
                task = task_cell(&t.task_id),
                ty = escape(&t.task_type),
                node = escape(t.assigned_to.as_deref().unwrap_or("–")),
                since = t.assigned_at.map(|at| time(at, now)).unwrap_or_default(),
            );
        }
        h.push_str("</tbody></table>");
    }
    if heading(
        &mut h,
        "Waiting",
        Some(s.pending()),
        "nothing waiting",
        w.pending.is_empty(),
    ) {
        h.push_str(r#"<ul class="work pending">"#);
        for t in &w.pending {
            let _ = write!(
                h,
                r#"<li data-task="{id}"><div class="meta">{task} {ty} · P{p} · queued {since}</div><div class="reason">{reason}</div></li>"#,
                id = escape(&t.task_id),
                task = task_cell(&t.task_id),
                ty = escape(&t.task_type),
                p = t.priority,
                since = time(t.created_at, now),
                reason = escape(t.pending_reason.as_deref().unwrap_or("")),
            );
        }
        h.push_str("</ul>");
        let more = s.pending().saturating_sub(w.pending.len() as u64);
        if more > 0 {
            let _ = write!(h, r#"<p class="muted">and {more} more</p>"#);
        }
    }
    if heading(
        &mut h,
        "Recent",
        None,
        "nothing finished yet",
        w.recent.is_empty(),
    ) {
        h.push_str(r#"<table class="work recent"><thead><tr><th>task</th><th>type</th><th>result</th><th>node</th><th>took</th><th>tok/s</th><th>finished</th></tr></thead><tbody>"#);
        for t in &w.recent {
            let (word, cls) = match t.status {
                TaskState::Completed => ("done", "ok"),
                TaskState::Failed => ("failed", "bad"),
                other => (other.as_str(), ""),
            };
            let title = t
                .error
                .as_deref()
                .map(|e| format!(r#" title="{}""#, escape(e)))
                .unwrap_or_default();
            let _ = write!(
                h,
                r#"<tr data-task="{id}"><td>{task}</td><td>{ty}</td><td class="result {cls}"{title}>{word}</td><td class="host">{node}</td><td class="took">{took}</td><td class="tps">{tps}</td><td>{when}</td></tr>"#,
                id = escape(&t.task_id),
                task = task_cell(&t.task_id),
                ty = escape(&t.task_type),
                node = escape(t.node.as_deref().unwrap_or("–")),
                took = t
                    .duration_ms
                    .map(|ms| duration(ms as f64 / 1000.0))
                    .unwrap_or_else(|| "–".into()),
                tps = t
                    .tokens_per_s
                    .map(|r| format!("{r:.1}"))
                    .unwrap_or_else(|| "–".into()),
                when = time(t.finished_at, now),
            );
        }
        h.push_str("</tbody></table>");
    }
    if !w.speeds.is_empty() {
        h.push_str(r#"<h3>Generation speed</h3><table class="work speeds"><tbody>"#);
        for sp in &w.speeds {
            let _ = write!(
                h,
                r#"<tr data-node="{node}"><td class="host">{node}</td><td class="tps">{tps:.1} tok/s</td><td class="muted">{n} task{s}{model}</td></tr>"#,
                node = escape(&sp.node),
                tps = sp.tokens_per_s,
                n = sp.tasks,
                s = if sp.tasks == 1 { "" } else { "s" },
                model = sp
                    .model
                    .as_deref()
                    .map(|m| format!(", {}", escape(m)))
                    .unwrap_or_default(),
            );
        }
        h.push_str("</tbody></table>");
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::{NodeSpeed, Work};
    use pifleet_protocol::{QueueEntry, RecentTask};

    fn entry(id: &str, status: TaskState) -> QueueEntry {
        QueueEntry {
            task_id: id.into(),
            task_type: "agent_action".into(),
            priority: 8,
            status,
            assigned_to: None,
            attempts: 1,
            created_at: 90.0,
            pending_reason: None,
            assigned_at: None,
            expected_start_s: None,
        }
    }

    #[test]
    fn shows_running_waiting_with_reason_recent_with_duration_and_speed() {
        let mut run = entry("run-0001-x", TaskState::Assigned);
        run.assigned_to = Some("pi-desk".into());
        run.assigned_at = Some(95.0);
        let mut wait = entry("wait-0002-x", TaskState::Pending);
        wait.pending_reason = Some("no node offers model \"qwen2.5:7b\" <big>".into());
        let done = RecentTask {
            task_id: "done-0003-x".into(),
            task_type: "code_generation".into(),
            status: TaskState::Completed,
            node: Some("pi-kitchen".into()),
            priority: 5,
            attempts: 1,
            created_at: 80.0,
            finished_at: 99.0,
            duration_ms: Some(4_210),
            model: Some("llama3.2:1b".into()),
            completion_tokens: Some(60),
            tokens_per_s: Some(14.26),
            error: None,
        };
        let s = FleetSnapshot {
            at: 100.0,
            pending_by_priority: [(8u8, 3u64)].into_iter().collect(),
            tasks: pifleet_protocol::TaskCounts {
                assigned: 1,
                ..Default::default()
            },
            work: Work {
                running: vec![run],
                pending: vec![wait],
                recent: vec![done],
                speeds: vec![NodeSpeed {
                    node: "pi-kitchen".into(),
                    tokens_per_s: 14.26,
                    tasks: 1,
                    model: Some("llama3.2:1b".into()),
                }],
            },
            ..Default::default()
        };
        let h = work_html(&s, Some(100.0));
        assert!(h.contains(r#"<td class="host">pi-desk</td><td class="since"><time data-ts="95.000">5s ago</time>"#), "{h}");
        assert!(
            h.contains("no node offers model &quot;qwen2.5:7b&quot; &lt;big&gt;"),
            "{h}"
        );
        assert!(h.contains("and 2 more"), "{h}");
        assert!(
            h.contains(r#"<td class="took">4.2s</td><td class="tps">14.3</td>"#),
            "{h}"
        );
        assert!(
            h.contains(
                r#"<td class="tps">14.3 tok/s</td><td class="muted">1 task, llama3.2:1b</td>"#
            ),
            "{h}"
        );
        // Live updates leave the relative times to the script.
        assert!(work_html(&s, None).contains(r#"<time data-ts="95.000"></time>"#));
    }

    #[test]
    fn an_idle_fleet_says_so() {
        let h = work_html(&FleetSnapshot::default(), Some(0.0));
        assert!(h.contains("nothing running"), "{h}");
        assert!(h.contains("nothing waiting"), "{h}");
        assert!(h.contains("nothing finished yet"), "{h}");
        assert!(!h.contains("Generation speed"), "{h}");
    }
}
