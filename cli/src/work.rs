//! The work half of `pifleet watch`: what runs where, what waits and why, what just
//! finished and how fast. Pure text like [`crate::render`]: clock and colour are arguments.

use pifleet_protocol::human::{ago, duration};
use pifleet_protocol::{QueueEntry, QueueResponse, RecentTask, RecentTasksResponse, TaskState};

use crate::render::{cell, paint, short_id, table, truncate, Cell, Style};

/// Rows shown per section: a terminal, not a report.
pub const SHOWN: usize = 8;
/// Reasons and errors are cut to this many characters.
const TEXT_MAX: usize = 72;

/// Running tasks, pending tasks with their reasons, and the last settled tasks.
/// `recent` is `None` against an orchestrator that does not list them.
pub fn work_view(
    queue: &QueueResponse,
    recent: Option<&RecentTasksResponse>,
    now: f64,
    color: bool,
) -> String {
    let mut out = String::new();
    let head = format!(
        "QUEUE  {} running, {} pending",
        queue.total_assigned, queue.total_pending
    );
    out.push_str(&paint(&head, Style::Bold, color));
    out.push('\n');
    section(
        &mut out,
        &["RUNNING", "TYPE", "NODE", "FOR", "ATTEMPT"],
        &queue.assigned,
        queue.total_assigned,
        color,
        |e| {
            vec![
                cell(
                    e.assigned_to.clone().unwrap_or_else(|| "-".into()),
                    Style::Cyan,
                ),
                cell(
                    e.assigned_at
                        .map(|at| duration(now - at))
                        .unwrap_or_else(|| "-".into()),
                    Style::Plain,
                ),
                cell(e.attempts.max(1).to_string(), Style::Plain),
            ]
        },
    );
    section(
        &mut out,
        &["PENDING", "TYPE", "PRI", "WAITING", "STARTS", "REASON"],
        &queue.pending,
        queue.total_pending,
        color,
        |e| {
            vec![
                cell(e.priority.to_string(), Style::Plain),
                cell(duration(now - e.created_at), Style::Plain),
                cell(
                    e.expected_start_s
                        .map(|s| format!("~{}", duration(s)))
                        .unwrap_or_else(|| "-".into()),
                    Style::Plain,
                ),
                cell(
                    truncate(e.pending_reason.as_deref().unwrap_or("-"), TEXT_MAX),
                    Style::Yellow,
                ),
            ]
        },
    );
    if let Some(recent) = recent {
        out.push('\n');
        out.push_str(&paint("RECENT", Style::Bold, color));
        out.push('\n');
        if recent.tasks.is_empty() {
            out.push_str("(nothing finished yet)\n");
        } else {
            let rows: Vec<Vec<Cell>> = recent
                .tasks
                .iter()
                .take(SHOWN)
                .map(|t| recent_row(t, now))
                .collect();
            out.push_str(&table(
                &[
                    "TASK", "TYPE", "RESULT", "NODE", "TOOK", "TOK/S", "FINISHED", "ERROR",
                ],
                &rows,
                color,
            ));
        }
    }
    out
}

fn recent_row(t: &RecentTask, now: f64) -> Vec<Cell> {
    let (word, style) = match t.status {
        TaskState::Completed => ("done", Style::Green),
        TaskState::Failed => ("failed", Style::Red),
        other => (other.as_str(), Style::Plain),
    };
    vec![
        cell(short_id(&t.task_id), Style::Plain),
        cell(t.task_type.clone(), Style::Plain),
        cell(word, style),
        cell(t.node.clone().unwrap_or_else(|| "-".into()), Style::Plain),
        cell(
            t.duration_ms
                .map(|ms| duration(ms as f64 / 1000.0))
                .unwrap_or_else(|| "-".into()),
            Style::Plain,
        ),
        cell(
            t.tokens_per_s
                .map(|r| format!("{r:.1}"))
                .unwrap_or_else(|| "-".into()),
            Style::Plain,
        ),
        cell(ago(t.finished_at, now), Style::Plain),
        cell(
            truncate(t.error.as_deref().unwrap_or(""), TEXT_MAX),
            Style::Red,
        ),
    ]
}

/// A table of queue entries (id and type, then `rest`), and how many more there are.
fn section(
    out: &mut String,
    header: &[&str],
    entries: &[QueueEntry],
    total: u64,
    color: bool,
    rest: impl Fn(&QueueEntry) -> Vec<Cell>,
) {
    if entries.is_empty() {
        return;
    }
    let rows: Vec<Vec<Cell>> = entries
        .iter()
        .take(SHOWN)
        .map(|e| {
            let mut row = vec![
                cell(short_id(&e.task_id), Style::Plain),
                cell(e.task_type.clone(), Style::Plain),
            ];
            row.extend(rest(e));
            row
        })
        .collect();
    out.push_str(&table(header, &rows, color));
    let shown = entries.len().min(SHOWN) as u64;
    if total > shown {
        out.push_str(&format!("… and {} more\n", total - shown));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn entry(id: &str, ty: &str, status: TaskState) -> QueueEntry {
        QueueEntry {
            task_id: id.into(),
            task_type: ty.into(),
            priority: 5,
            status,
            assigned_to: None,
            attempts: 1,
            created_at: 1000.0,
            pending_reason: None,
            assigned_at: None,
            expected_start_s: None,
        }
    }

    fn recent(id: &str, status: TaskState) -> RecentTask {
        RecentTask {
            task_id: id.into(),
            task_type: "agent_action".into(),
            status,
            node: Some("pi-desk".into()),
            priority: 8,
            attempts: 1,
            created_at: 1000.0,
            finished_at: 1090.0,
            duration_ms: Some(4_120),
            model: Some("llama3.2:1b".into()),
            completion_tokens: Some(42),
            tokens_per_s: Some(12.34),
            error: None,
        }
    }

    #[test]
    fn shows_running_pending_with_reason_and_recent() {
        let mut run = entry("aaaaaaaa-1", "agent_action", TaskState::Assigned);
        run.assigned_to = Some("pi-kitchen".into());
        run.assigned_at = Some(1097.0);
        let mut wait = entry("bbbbbbbb-2", "code_generation", TaskState::Pending);
        wait.pending_reason = Some("no node offers model \"llama3.2:1b\"".into());
        let mut next = entry("eeeeeeee-5", "agent_action", TaskState::Pending);
        next.pending_reason = Some("every node that can run it is busy".into());
        next.expected_start_s = Some(95.4);
        let queue = QueueResponse {
            pending_limit: None,
            pending: vec![next, wait],
            assigned: vec![run],
            by_priority: BTreeMap::new(),
            total_pending: 2,
            total_assigned: 1,
        };
        let mut failed = recent("cccccccc-3", TaskState::Failed);
        failed.tokens_per_s = None;
        failed.duration_ms = None;
        failed.error = Some("Ollama: model not found".into());
        let recent = RecentTasksResponse {
            tasks: vec![recent("dddddddd-4", TaskState::Completed), failed],
        };
        let text = work_view(&queue, Some(&recent), 1100.0, false);
        let expected = "\
QUEUE  1 running, 2 pending
RUNNING   TYPE          NODE        FOR   ATTEMPT
aaaaaaaa  agent_action  pi-kitchen  3.0s  1
PENDING   TYPE             PRI  WAITING  STARTS  REASON
eeeeeeee  agent_action     5    1m40s    ~1m35s  every node that can run it is busy
bbbbbbbb  code_generation  5    1m40s    -       no node offers model \"llama3.2:1b\"

RECENT
TASK      TYPE          RESULT  NODE     TOOK  TOK/S  FINISHED  ERROR
dddddddd  agent_action  done    pi-desk  4.1s  12.3   10s ago
cccccccc  agent_action  failed  pi-desk  -     -      10s ago   Ollama: model not found
";
        assert_eq!(text, expected);
    }

    #[test]
    fn long_lists_say_how_many_more_and_old_servers_show_no_recent() {
        let pending: Vec<QueueEntry> = (0..20)
            .map(|i| entry(&format!("{i:08}"), "evolution_mutation", TaskState::Pending))
            .collect();
        let queue = QueueResponse {
            pending_limit: None,
            pending,
            assigned: vec![],
            by_priority: BTreeMap::new(),
            total_pending: 500,
            total_assigned: 0,
        };
        let text = work_view(&queue, None, 1100.0, false);
        assert!(text.contains("… and 492 more"), "{text}");
        assert!(!text.contains("RECENT"), "{text}");
        assert_eq!(
            text.lines()
                .filter(|l| l.contains("evolution_mutation"))
                .count(),
            SHOWN
        );
    }
}
