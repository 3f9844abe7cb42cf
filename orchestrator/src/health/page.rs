//! The status page: server-rendered HTML (nodes as cards with inline-SVG sparklines, the
//! work (`work.rs`), the queue by priority, recent failures) and the same fragments as JSON for the live
//! updates. The CSS and the small script are embedded in the binary: no build step, no CDN.

use std::fmt::Write as _;

use pifleet_protocol::human::{ago, bytes};
use pifleet_protocol::{Heat, MetricSample, NodeDetail, StageState, Thresholds, WorkerState};

use super::html::{escape, sparkline, time};
use super::FleetSnapshot;

pub const CSS: &str = include_str!("assets/pifleet.css");
pub const JS: &str = include_str!("assets/pifleet.js");
pub const CSS_PATH: &str = "/static/pifleet.css";
pub const JS_PATH: &str = "/static/pifleet.js";

/// At most this many history points per sparkline.
const SPARK_POINTS: usize = 60;
/// Failures listed on the page.
const FAILURES_SHOWN: usize = 10;

fn last_points(history: &[MetricSample]) -> &[MetricSample] {
    &history[history.len().saturating_sub(SPARK_POINTS)..]
}

fn status_class(s: WorkerState) -> &'static str {
    s.as_str()
}

/// One node's card. `data-id` carries the node id for the live updates.
/// Temperatures are marked warm and hot at the configured `t`.
pub fn node_card(detail: &NodeDetail, now: f64, t: &Thresholds) -> String {
    card(detail, Some(now), t)
}

fn card(detail: &NodeDetail, now: Option<f64>, t: &Thresholds) -> String {
    let n = &detail.node;
    let status = n.shown_status();
    let m = n.metrics.as_ref();
    let hist = last_points(&detail.history);
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<article class="node st-{cls}" data-id="{id}"><header><h2>{id}</h2><span class="badge st-{cls}">{st}</span></header>"#,
        cls = status_class(status),
        id = escape(&n.worker_id),
        st = status.as_str(),
    );
    let caps = &n.capabilities;
    let mut hw: Vec<String> = Vec::new();
    if let Some(p) = &caps.pi_model {
        hw.push(p.clone());
    } else {
        hw.push(n.worker_type.clone());
    }
    if let Some(a) = &caps.arch {
        hw.push(a.clone());
    }
    if let Some(c) = caps.cores {
        hw.push(format!("{c} cores"));
    }
    hw.push(format!(
        "{} slot{}",
        caps.slots.unwrap_or(1),
        if caps.slots.unwrap_or(1) == 1 {
            ""
        } else {
            "s"
        }
    ));
    let _ = write!(h, r#"<p class="hw">{}</p>"#, escape(&hw.join(" · ")));

    // Temperature
    let temp = m.and_then(|m| m.temperature_c);
    let temp_cls = match temp.map(|c| t.heat(c)) {
        Some(Heat::Hot) => "hot",
        Some(Heat::Warm) => "warm",
        Some(Heat::Cool) => "ok",
        None => "none",
    };
    let temps: Vec<Option<f64>> = hist
        .iter()
        .map(|s| s.temperature_c.map(f64::from))
        .collect();
    let t_lo = temps.iter().flatten().cloned().fold(30.0, f64::min);
    let t_hi = temps.iter().flatten().cloned().fold(90.0, f64::max);
    let _ = write!(
        h,
        r#"<div class="gauges"><div class="gauge"><span class="k">temp</span><span class="v temp {temp_cls}">{}</span>{}</div>"#,
        temp.map(|t| format!("{t:.1}°C"))
            .unwrap_or_else(|| "–".into()),
        sparkline(
            &temps,
            t_lo,
            t_hi,
            Some(f64::from(t.soft_temp_c)),
            "temperature history"
        ),
    );
    // CPU
    let cpu = m.and_then(|m| m.cpu_percent);
    let cpus: Vec<Option<f64>> = hist.iter().map(|s| s.cpu_percent.map(f64::from)).collect();
    let _ = write!(
        h,
        r#"<div class="gauge"><span class="k">cpu</span><span class="v cpu">{}</span>{}</div>"#,
        cpu.map(|c| format!("{c:.0}%"))
            .unwrap_or_else(|| "–".into()),
        sparkline(&cpus, 0.0, 100.0, None, "cpu history"),
    );
    // Memory available
    let avail = m.and_then(|m| m.memory_available_bytes);
    let total = m
        .and_then(|m| m.memory_total_bytes)
        .or(caps.memory_total_bytes);
    let mems: Vec<Option<f64>> = hist
        .iter()
        .map(|s| s.memory_available_bytes.map(|b| b as f64))
        .collect();
    let m_hi = total
        .map(|t| t as f64)
        .unwrap_or_else(|| mems.iter().flatten().cloned().fold(1.0, f64::max));
    let mem_text = match (avail, total) {
        (Some(a), Some(t)) => format!("{}/{}", bytes(a), bytes(t)),
        (Some(a), None) => bytes(a),
        _ => "–".into(),
    };
    let _ = write!(
        h,
        r#"<div class="gauge"><span class="k">mem free</span><span class="v mem">{}</span>{}</div></div>"#,
        escape(&mem_text),
        sparkline(&mems, 0.0, m_hi, None, "free memory history"),
    );

    // Warnings
    let mut flags: Vec<&str> = Vec::new();
    if let Some(m) = m {
        if m.under_voltage_now() {
            flags.push("under-voltage");
        }
        if m.throttled_now() {
            flags.push("throttled");
        }
        if m.soft_temp_limit_now() {
            flags.push("soft temp limit");
        }
        if m.ollama_reachable == Some(false) {
            flags.push("ollama unreachable");
        }
    }
    if n.draining && status != WorkerState::Dead {
        flags.push("draining: no new work");
    }
    if !flags.is_empty() {
        let _ = write!(h, r#"<p class="flags">{}</p>"#, escape(&flags.join(" · ")));
    }

    // Models: present, loaded ones highlighted.
    let present: Vec<String> = m
        .and_then(|m| m.models_present.clone())
        .unwrap_or_else(|| caps.models.clone());
    let mut models: Vec<(String, bool)> = present
        .iter()
        .map(|name| (name.clone(), m.is_some_and(|m| m.has_model_loaded(name))))
        .collect();
    if let Some(loaded) = m.and_then(|m| m.models_loaded.as_ref()) {
        for l in loaded {
            if !present.contains(&l.name) {
                models.push((l.name.clone(), true));
            }
        }
    }
    h.push_str(r#"<p class="models">"#);
    if models.is_empty() {
        h.push_str(r#"<span class="muted">no models</span>"#);
    }
    for (name, loaded) in &models {
        let _ = write!(
            h,
            r#"<span class="model{}"{}>{}</span>"#,
            if *loaded { " loaded" } else { "" },
            if *loaded { r#" title="loaded""# } else { "" },
            escape(name)
        );
    }
    h.push_str("</p>");

    // Tasks
    h.push_str(r#"<p class="tasks">"#);
    if n.current_tasks.is_empty() {
        h.push_str(r#"<span class="muted">idle</span>"#);
    } else {
        h.push_str("running ");
        for t in &n.current_tasks {
            let _ = write!(
                h,
                r#"<code title="{}">{}</code>{} "#,
                escape(t),
                escape(t.get(..8).unwrap_or(t)),
                if n.streaming.contains(t) {
                    r#" <span class="streaming">streaming</span>"#
                } else {
                    ""
                }
            );
        }
    }
    let _ = write!(
        h,
        r#" · {} done · {} failed</p>"#,
        n.tasks_completed, n.tasks_failed
    );
    // Pulls and pre-loads under way or failed (a finished one is in the models above).
    for st in n.staging.iter().filter(|s| s.state != StageState::Done) {
        let _ = write!(h, r#"<p class="staging">{}</p>"#, escape(&st.describe()));
    }
    let _ = write!(
        h,
        r#"<footer>last seen {}</footer></article>"#,
        time(n.last_seen, now)
    );
    h
}

pub fn summary_html(s: &FleetSnapshot) -> String {
    let c = s.status_counts();
    let mut h = String::new();
    let stat = |h: &mut String, n: u64, label: &str, cls: &str| {
        let _ = write!(
            h,
            r#"<span class="stat {cls}"><b>{n}</b> {}</span>"#,
            escape(label)
        );
    };
    stat(
        &mut h,
        c.total,
        if c.total == 1 { "node" } else { "nodes" },
        "",
    );
    stat(&mut h, c.online, "online", "st-online");
    stat(&mut h, c.busy, "busy", "st-busy");
    stat(&mut h, c.draining, "draining", "st-draining");
    stat(&mut h, c.dead, "dead", "st-dead");
    h.push_str(r#"<span class="sep"></span>"#);
    stat(&mut h, s.pending(), "pending", "");
    stat(&mut h, s.tasks.assigned, "running", "");
    stat(&mut h, s.tasks.completed, "completed", "");
    stat(
        &mut h,
        s.tasks.failed,
        "failed",
        if s.tasks.failed > 0 { "bad" } else { "" },
    );
    stat(&mut h, s.tasks.retried, "retried", "");
    h
}

pub fn queue_html(s: &FleetSnapshot) -> String {
    let max = s
        .pending_by_priority
        .values()
        .cloned()
        .max()
        .unwrap_or(0)
        .max(1);
    let mut h = String::from(r#"<table class="queue"><tbody>"#);
    for p in (pifleet_protocol::PRIORITY_MIN..=pifleet_protocol::PRIORITY_MAX).rev() {
        let n = s.pending_by_priority.get(&p).copied().unwrap_or(0);
        let _ = write!(
            h,
            r#"<tr data-priority="{p}"><th>P{p}</th><td class="bar"><span style="width:{:.1}%"></span></td><td class="n">{n}</td></tr>"#,
            n as f64 * 100.0 / max as f64
        );
    }
    let _ = write!(
        h,
        r#"</tbody></table><p class="muted">{} pending · {} running</p>"#,
        s.pending(),
        s.tasks.assigned
    );
    h
}

pub fn failures_html(s: &FleetSnapshot) -> String {
    failures(s, Some(s.at))
}

fn failures(s: &FleetSnapshot, now: Option<f64>) -> String {
    if s.recent_failures.is_empty() {
        return r#"<p class="muted">no failed tasks</p>"#.into();
    }
    let mut h = String::from(r#"<ul class="failures">"#);
    for f in s.recent_failures.iter().take(FAILURES_SHOWN) {
        let error: String = f.error.chars().take(200).collect();
        let _ = write!(
            h,
            r#"<li><div class="meta"><code title="{id}">{short}</code> {ty} on {node} · {when}</div><div class="err">{err}</div></li>"#,
            id = escape(&f.task_id),
            short = escape(f.task_id.get(..8).unwrap_or(&f.task_id)),
            ty = escape(&f.task_type),
            node = escape(f.worker_id.as_deref().unwrap_or("–")),
            when = time(f.failed_at, now),
            err = escape(&error),
        );
    }
    h.push_str("</ul>");
    h
}

const EMPTY_NODES: &str = r#"<p class="empty muted">No nodes yet. Start an agent: <code>pifleet-agent --orchestrator URL</code></p>"#;

pub const EMPTY_NODES_HTML: &str = EMPTY_NODES;

/// A card for the live updates: relative times are left for the script to fill, so a
/// card whose node did not change renders to the same bytes.
pub fn live_card(detail: &NodeDetail, t: &Thresholds) -> String {
    card(detail, None, t)
}

/// The failures list for the live updates (relative times left to the script).
pub fn live_failures(s: &FleetSnapshot) -> String {
    failures(s, None)
}

/// Nodes in display order (by id).
pub fn sorted(s: &FleetSnapshot) -> Vec<&NodeDetail> {
    let mut v: Vec<&NodeDetail> = s.nodes.iter().collect();
    v.sort_by(|a, b| a.node.worker_id.cmp(&b.node.worker_id));
    v
}

/// The whole page, complete without JavaScript; the script only keeps it live.
pub fn page(s: &FleetSnapshot) -> String {
    let mut cards = String::new();
    for d in sorted(s) {
        cards.push_str(&node_card(d, s.at, &s.thresholds));
    }
    if cards.is_empty() {
        cards.push_str(EMPTY_NODES);
    }
    format!(
        r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pifleet</title>
<link rel="stylesheet" href="{css}">
<script src="{js}" defer></script>
</head>
<body>
<header class="top"><h1>pifleet</h1><span id="live" class="live off" title="live updates">connecting</span></header>
<section id="summary" class="summary">{summary}</section>
<main>
<div class="main-col">
<section class="nodes-wrap"><h2 class="section">Nodes</h2><div id="nodes" class="nodes">{cards}</div></section>
<section class="work-wrap"><h2 class="section">Work</h2><div id="work">{work}</div></section>
</div>
<aside>
<section><h2 class="section">Queue by priority</h2><div id="queue">{queue}</div></section>
<section><h2 class="section">Recent failures</h2><div id="failures">{failures}</div></section>
</aside>
</main>
<footer class="bottom muted">updated <time id="asof" data-ts="{at:.3}">{asof}</time> · <a href="/api/nodes">/api/nodes</a> · <a href="/metrics">/metrics</a></footer>
</body>
</html>
"##,
        css = CSS_PATH,
        js = JS_PATH,
        summary = summary_html(s),
        queue = queue_html(s),
        failures = failures_html(s),
        work = super::work::work_html(s, Some(s.at)),
        at = s.at,
        asof = ago(s.at, s.at),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::test_node;
    use pifleet_protocol::{NodeMetrics, NodeView, StageProgress};

    fn detail(id: &str, temp: f32) -> NodeDetail {
        NodeDetail {
            node: NodeView {
                metrics: Some(NodeMetrics {
                    temperature_c: Some(temp),
                    cpu_percent: Some(40.0),
                    ..Default::default()
                }),
                tasks_completed: 1,
                ..test_node(id, 95.0)
            },
            history: (0..3)
                .map(|i| MetricSample {
                    at: i as f64,
                    temperature_c: Some(temp - 2.0 + i as f32),
                    cpu_percent: if i == 1 { None } else { Some(10.0) },
                    ..Default::default()
                })
                .collect(),
            thresholds: None,
            speeds: Vec::new(),
        }
    }

    #[test]
    fn card_escapes_the_node_id_and_shows_metrics() {
        let mut d = detail("<pi&1>", 81.5);
        d.node.draining = true;
        let html = node_card(&d, 100.0, &Thresholds::default());
        assert!(html.contains(r#"data-id="&lt;pi&amp;1&gt;""#), "{html}");
        assert!(!html.contains("<pi&1>"));
        assert!(
            html.contains(r#"<span class="v temp warm">81.5°C</span>"#),
            "{html}"
        );
        assert!(html.contains("st-draining"));
        assert!(html.contains("draining: no new work"));
        assert!(html.contains("5s ago"));
    }

    #[test]
    fn card_shows_a_pull_under_way_and_a_failed_one() {
        let mut d = detail("pi-1", 50.0);
        let p: StageProgress = serde_json::from_value(serde_json::json!({
            "id": 1, "action": "pull", "model": "qwen2.5:0.5b", "state": "running",
            "status": "pulling dde5aa3fc5ff", "completed_bytes": 3, "total_bytes": 4
        }))
        .unwrap();
        let failed = StageProgress {
            model: "x<y".into(),
            state: StageState::Failed,
            error: Some("pull model manifest: file does not exist".into()),
            ..p.clone()
        };
        d.node.staging = vec![p, failed];
        let html = node_card(&d, 100.0, &Thresholds::default());
        assert!(
            html.contains("pull qwen2.5:0.5b: running, pulling dde5aa3fc5ff 75%"),
            "{html}"
        );
        assert!(
            html.contains("pull x&lt;y: failed: pull model manifest: file does not exist"),
            "{html}"
        );
    }

    #[test]
    fn page_is_complete_without_script() {
        let snap = FleetSnapshot {
            at: 100.0,
            nodes: vec![detail("pi-b", 50.0), detail("pi-a", 60.0)],
            pending_by_priority: [(10u8, 2u64), (5, 1)].into_iter().collect(),
            ..Default::default()
        };
        let html = page(&snap);
        let a = html.find(r#"data-id="pi-a""#).unwrap();
        let b = html.find(r#"data-id="pi-b""#).unwrap();
        assert!(a < b, "cards sorted by name");
        assert!(html.contains(r#"<tr data-priority="10"><th>P10</th><td class="bar"><span style="width:100.0%"></span></td><td class="n">2</td></tr>"#));
        assert!(html.contains("<b>3</b> pending"));
        assert!(html.contains("no failed tasks"));
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no external resources"
        );
    }

    #[test]
    fn empty_fleet_says_how_to_add_a_node() {
        let html = page(&FleetSnapshot::default());
        assert!(html.contains("No nodes yet"));
    }
}
