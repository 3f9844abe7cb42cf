//! Pure text rendering of the orchestrator's views: no I/O, the clock and colour choice
//! are arguments, so every table is testable byte for byte.

mod task;

pub use pifleet_protocol::human::{ago, bytes};
use pifleet_protocol::{
    Heat, MetricSample, NodeDetail, NodeView, NodesResponse, Thresholds, WorkerState,
};
pub use task::{standing, task_status};

/// ANSI styles, applied only when the caller says colours are wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    Bold,
    Dim,
    Green,
    Yellow,
    Red,
    Cyan,
}

impl Style {
    fn code(self) -> &'static str {
        match self {
            Style::Plain => "",
            Style::Bold => "\x1b[1m",
            Style::Dim => "\x1b[2m",
            Style::Green => "\x1b[32m",
            Style::Yellow => "\x1b[33m",
            Style::Red => "\x1b[31m",
            Style::Cyan => "\x1b[36m",
        }
    }
}

pub(crate) fn paint(text: &str, style: Style, color: bool) -> String {
    if !color || style == Style::Plain || text.is_empty() {
        text.to_string()
    } else {
        format!("{}{}\x1b[0m", style.code(), text)
    }
}

pub fn status_style(status: WorkerState) -> Style {
    match status {
        WorkerState::Online => Style::Green,
        WorkerState::Busy => Style::Cyan,
        WorkerState::Draining => Style::Yellow,
        WorkerState::Dead => Style::Red,
    }
}

/// Warm (yellow) and hot (red) at the orchestrator's configured soft and hard limits.
pub fn temp_style(t: f32, th: &Thresholds) -> Style {
    match th.heat(t) {
        Heat::Hot => Style::Red,
        Heat::Warm => Style::Yellow,
        Heat::Cool => Style::Green,
    }
}

/// Models present on the node; a loaded one is marked with `*`.
pub fn models_cell(node: &NodeView) -> String {
    let metrics = node.metrics.as_ref();
    let present: Vec<String> = metrics
        .and_then(|m| m.models_present.clone())
        .unwrap_or_else(|| node.capabilities.models.clone());
    let mut names: Vec<String> = present
        .iter()
        .map(|name| {
            if metrics.is_some_and(|m| m.has_model_loaded(name)) {
                format!("{name}*")
            } else {
                name.clone()
            }
        })
        .collect();
    // A model loaded but not listed as present (a race between two probes) still shows.
    if let Some(loaded) = metrics.and_then(|m| m.models_loaded.as_ref()) {
        for l in loaded {
            if !present.contains(&l.name) {
                names.push(format!("{}*", l.name));
            }
        }
    }
    if names.is_empty() {
        "-".into()
    } else {
        names.join(",")
    }
}

pub(crate) fn short_id(id: &str) -> &str {
    match id.char_indices().nth(8) {
        Some((i, _)) => &id[..i],
        None => id,
    }
}

fn task_cell(node: &NodeView) -> String {
    match node.current_tasks.as_slice() {
        [] => "-".into(),
        [one] => short_id(one).to_string(),
        [first, rest @ ..] => format!("{}+{}", short_id(first), rest.len()),
    }
}

fn temp_cell(node: &NodeView, th: &Thresholds) -> (String, Style) {
    let Some(m) = node.metrics.as_ref() else {
        return ("-".into(), Style::Plain);
    };
    let mut text = match m.temperature_c {
        Some(t) => format!("{t:.1}°C"),
        None => "-".into(),
    };
    let mut style = m
        .temperature_c
        .map(|t| temp_style(t, th))
        .unwrap_or(Style::Plain);
    if m.under_voltage_now() {
        text.push_str(" UV");
        style = Style::Red;
    } else if m.throttled_now() {
        text.push_str(" THR");
        style = Style::Red;
    }
    (text, style)
}

fn cpu_cell(node: &NodeView) -> String {
    node.metrics
        .as_ref()
        .and_then(|m| m.cpu_percent)
        .map(|c| format!("{c:.0}%"))
        .unwrap_or_else(|| "-".into())
}

fn mem_cell(node: &NodeView) -> String {
    let m = node.metrics.as_ref();
    let avail = m.and_then(|m| m.memory_available_bytes);
    let total = m
        .and_then(|m| m.memory_total_bytes)
        .or(node.capabilities.memory_total_bytes);
    match (avail, total) {
        (Some(a), Some(t)) => format!("{}/{}", bytes(a), bytes(t)),
        (Some(a), None) => format!("{} free", bytes(a)),
        (None, Some(t)) => format!("?/{}", bytes(t)),
        (None, None) => "-".into(),
    }
}

pub(crate) struct Cell {
    text: String,
    style: Style,
}

pub(crate) fn cell(text: impl Into<String>, style: Style) -> Cell {
    Cell {
        text: text.into(),
        style,
    }
}

const MODELS_MAX: usize = 32;

pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

/// The `pifleet nodes` table: one row per node, sorted by name.
pub fn nodes_table(resp: &NodesResponse, now: f64, color: bool) -> String {
    let header = [
        "NAME",
        "STATUS",
        "TEMP",
        "CPU",
        "MEM FREE",
        "MODELS",
        "TASK",
        "LAST SEEN",
    ];
    let th = resp.thresholds.unwrap_or_default();
    let mut nodes: Vec<&NodeView> = resp.nodes.iter().collect();
    nodes.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
    let rows: Vec<Vec<Cell>> = nodes
        .iter()
        .map(|n| {
            let status = n.shown_status();
            let (temp, temp_style) = temp_cell(n, &th);
            let seen_style = if status == WorkerState::Dead {
                Style::Red
            } else {
                Style::Plain
            };
            vec![
                cell(n.worker_id.clone(), Style::Bold),
                cell(status.as_str(), status_style(status)),
                cell(temp, temp_style),
                cell(cpu_cell(n), Style::Plain),
                cell(mem_cell(n), Style::Plain),
                cell(truncate(&models_cell(n), MODELS_MAX), Style::Plain),
                cell(task_cell(n), Style::Plain),
                cell(ago(n.last_seen, now), seen_style),
            ]
        })
        .collect();
    let mut out = table(&header, &rows, color);
    if rows.is_empty() {
        out.push_str("(no nodes registered)\n");
    }
    out
}

/// Columns padded to their widest cell, a dim header, trailing blanks trimmed.
pub(crate) fn table(header: &[&str], rows: &[Vec<Cell>], color: bool) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.text.chars().count());
        }
    }
    let mut out = String::new();
    let last = header.len() - 1;
    let head: Vec<String> = header
        .iter()
        .enumerate()
        .map(|(i, h)| pad(h, widths[i], i == last))
        .collect();
    out.push_str(&paint(&head.join("  "), Style::Dim, color));
    out.push('\n');
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| paint(&pad(&c.text, widths[i], i == last), c.style, color))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn pad(s: &str, width: usize, last: bool) -> String {
    if last {
        return s.to_string();
    }
    let n = s.chars().count();
    format!("{s}{}", " ".repeat(width.saturating_sub(n)))
}

/// A one-line summary under the table: `3 nodes: 2 online, 1 busy`.
pub fn nodes_summary(resp: &NodesResponse) -> String {
    let mut counts = [0u64; 4];
    for n in &resp.nodes {
        counts[match n.shown_status() {
            WorkerState::Online => 0,
            WorkerState::Busy => 1,
            WorkerState::Draining => 2,
            WorkerState::Dead => 3,
        }] += 1;
    }
    let names = ["online", "busy", "draining", "dead"];
    let parts: Vec<String> = counts
        .iter()
        .zip(names)
        .filter(|(c, _)| **c > 0)
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    let total = resp.nodes.len();
    let noun = if total == 1 { "node" } else { "nodes" };
    if parts.is_empty() {
        format!("{total} {noun}")
    } else {
        format!("{total} {noun}: {}", parts.join(", "))
    }
}

/// Unicode block sparkline of a series (missing points are skipped).
pub fn sparkline(values: &[f64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    if values.is_empty() {
        return String::new();
    }
    let min = values.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let span = max - min;
    values
        .iter()
        .map(|v| {
            if span <= f64::EPSILON {
                BARS[3]
            } else {
                BARS[(((v - min) / span) * 7.0).round() as usize]
            }
        })
        .collect()
}

fn series(history: &[MetricSample], f: impl Fn(&MetricSample) -> Option<f64>) -> Vec<f64> {
    history.iter().filter_map(f).collect()
}

/// `pifleet node ID`: everything about one node, with history sparklines.
pub fn node_detail(detail: &NodeDetail, now: f64, color: bool) -> String {
    let n = &detail.node;
    let th = detail.thresholds.unwrap_or_default();
    let status = n.shown_status();
    let mut lines: Vec<(String, String)> = Vec::new();
    let mut kv = |k: &str, v: String| lines.push((k.to_string(), v));
    kv(
        "status",
        paint(status.as_str(), status_style(status), color),
    );
    if n.draining {
        kv(
            "draining",
            "yes: finishes its running tasks, takes no new work".into(),
        );
    }
    kv("type", n.worker_type.clone());
    kv("last seen", ago(n.last_seen, now));
    kv("registered", ago(n.registered_at, now));
    let caps = &n.capabilities;
    if let Some(model) = &caps.pi_model {
        kv("hardware", model.clone());
    }
    if let Some(arch) = &caps.arch {
        kv("arch", arch.clone());
    }
    if let Some(cores) = caps.cores {
        kv("cores", cores.to_string());
    }
    kv("slots", caps.slots.unwrap_or(1).to_string());
    kv(
        "task types",
        if caps.task_types.is_empty() {
            "all".into()
        } else {
            caps.task_types.join(", ")
        },
    );
    if let Some(v) = &caps.agent_version {
        kv("agent", v.clone());
    }
    kv("models", models_cell(n));
    if let Some(m) = &n.metrics {
        let (temp, style) = temp_cell(n, &th);
        kv("temperature", paint(&temp, style, color));
        kv("cpu", cpu_cell(n));
        if let Some(l) = m.load_avg {
            kv("load", format!("{:.2} {:.2} {:.2}", l[0], l[1], l[2]));
        }
        kv("memory", mem_cell(n));
        if let Some(d) = m.disk_free_bytes {
            kv("disk free", bytes(d));
        }
        if let Some(t) = m.throttled {
            kv("throttled", format!("0x{t:x}"));
        }
        if let Some(r) = m.ollama_reachable {
            kv("ollama", if r { "reachable" } else { "unreachable" }.into());
        }
        if let Some(u) = m.uptime_s {
            kv("uptime", ago(0.0, u as f64).trim_end_matches(" ago").into());
        }
    }
    kv(
        "tasks",
        format!(
            "{} running, {} completed, {} failed",
            n.current_tasks.len(),
            n.tasks_completed,
            n.tasks_failed
        ),
    );
    for t in &n.current_tasks {
        if n.streaming.contains(t) {
            kv("  running", format!("{t} (streaming to a gateway client)"));
        } else {
            kv("  running", t.clone());
        }
    }
    for st in &n.staging {
        let mut line = st.describe();
        match (st.attempts, st.retry_in_s) {
            (Some(a), Some(r)) => {
                line.push_str(&format!(" ({a} failed, may be asked again in {r:.0}s)"))
            }
            (Some(a), None) if st.state == pifleet_protocol::StageState::Failed => {
                line.push_str(&format!(" ({a} failed, not asked again)"))
            }
            _ => {}
        }
        kv("staging", line);
    }
    for sp in &detail.speeds {
        let from = match sp.source.as_str() {
            "measured" => format!("measured, {} results", sp.results),
            other => format!("borrowed: {other}"),
        };
        kv(
            &format!("speed {}", sp.model),
            format!(
                "{:.1} tok/s generation, {:.1} tok/s prompt, {:.1}s cold load ({from})",
                sp.gen_tps, sp.prompt_tps, sp.cold_load_s
            ),
        );
    }
    let h = &detail.history;
    if !h.is_empty() {
        let temp = series(h, |s| s.temperature_c.map(f64::from));
        let cpu = series(h, |s| s.cpu_percent.map(f64::from));
        let mem = series(h, |s| s.memory_available_bytes.map(|b| b as f64));
        let range = |v: &[f64], fmt: &dyn Fn(f64) -> String| -> String {
            let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
            let max = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            format!("{}  ({} .. {})", sparkline(v), fmt(min), fmt(max))
        };
        if !temp.is_empty() {
            kv("temp history", range(&temp, &|v| format!("{v:.1}°C")));
        }
        if !cpu.is_empty() {
            kv("cpu history", range(&cpu, &|v| format!("{v:.0}%")));
        }
        if !mem.is_empty() {
            kv("mem history", range(&mem, &|v| bytes(v as u64)));
        }
        kv(
            "samples",
            format!("{} over {}", h.len(), {
                let span = h.last().map(|l| l.at).unwrap_or(0.0) - h[0].at;
                ago(0.0, span).trim_end_matches(" ago").to_string()
            }),
        );
    }
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = paint(&n.worker_id, Style::Bold, color);
    out.push('\n');
    for (k, v) in lines {
        out.push_str(&format!("  {k:<width$}  {v}\n"));
    }
    out
}

#[cfg(test)]
mod tests;
