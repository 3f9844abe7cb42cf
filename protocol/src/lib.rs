//! Wire types shared by the pifleet agent and orchestrator.
//!
//! The protocol is the seed's D8 HTTP protocol (JSON over HTTP, default port 5000), kept
//! byte-for-byte compatible for existing clients and workers, plus additive extensions.
//! Every extension field is optional on the wire, and every type here accepts unknown
//! fields, so an old peer and a new peer understand each other in both directions.
//!
//! | method + path                          | request body        | response body            |
//! |----------------------------------------|---------------------|--------------------------|
//! | `GET /health`                          | -                   | [`HealthResponse`]       |
//! | `POST /api/workers/register`           | [`RegisterRequest`] | [`RegisterResponse`]     |
//! | `POST /api/workers/{id}/heartbeat`     | [`HeartbeatRequest`] (optional) | [`HeartbeatResponse`] |
//! | `GET /api/workers/{id}/tasks[?wait=S]` | -                   | [`PollResponse`]         |
//! | `POST /api/tasks/submit` (201)         | [`SubmitRequest`]   | [`SubmitResponse`]       |
//! | `POST /api/tasks/{id}/result`          | [`ResultRequest`]   | [`ResultResponse`]       |
//! | `GET /api/tasks/status/{id}[?wait=S]` | -                  | [`TaskStatusResponse`]   |
//! | `GET /api/workers/list`                | -                   | [`WorkersListResponse`]  |
//! | `POST /api/workers/{id}/unregister`    | -                   | [`UnregisterResponse`]   |
//! | `GET /api/stats`                       | -                   | [`StatsResponse`]        |
//! | `GET /api/tasks/queue`                 | -                   | [`QueueResponse`]        |
//! | `GET /api/tasks/recent[?limit=N]`      | -                   | [`RecentTasksResponse`]  |
//! | `GET /api/nodes`, `GET /api/nodes/{id}`| -                   | [`NodesResponse`], [`NodeDetail`] |
//! | `POST /api/nodes/{id}/drain`, `/undrain` | -                 | [`NodeView`]             |
//! | `GET /api/events`                      | -                   | `text/event-stream`      |
//! | `POST /api/tasks/{id}/stream?worker_id=W&attempt=N` | NDJSON chunks ([`OllamaApiTask`]) | `{"status":"ok"}` |
//! | `GET /metrics`                         | -                   | Prometheus text format   |
//!
//! Errors are always `{"error": "..."}` ([`ErrorResponse`]) with a 4xx/5xx status.
//! Authentication, when configured, is `Authorization: Bearer <token>`.
//! Timestamps are seconds since the Unix epoch as JSON numbers (like Python's `time.time()`).

/// The orchestrator's default TCP port, as in the seed.
pub const DEFAULT_PORT: u16 = 5000;

/// Endpoint paths. `{id}` segments are filled with [`worker_path`] / [`task_path`].
pub mod paths {
    pub const HEALTH: &str = "/health";
    pub const REGISTER: &str = "/api/workers/register";
    pub const WORKERS_LIST: &str = "/api/workers/list";
    pub const SUBMIT: &str = "/api/tasks/submit";
    pub const TASK_STATUS_PREFIX: &str = "/api/tasks/status/";
    pub const QUEUE: &str = "/api/tasks/queue";
    /// The last settled tasks, newest first.
    pub const RECENT: &str = "/api/tasks/recent";
    pub const STATS: &str = "/api/stats";
    pub const NODES: &str = "/api/nodes";
    pub const METRICS: &str = "/metrics";
    /// Server-sent events for the status page: the fleet, pushed on every change.
    pub const EVENTS: &str = "/api/events";
    /// The status page.
    pub const PAGE: &str = "/";

    /// Route patterns as the servers' routers spell them (`{id}` is one path segment).
    /// Clients fill them with [`crate::worker_path`], [`crate::task_path`] and
    /// [`crate::node_path`].
    pub mod routes {
        pub const TASK_STATUS: &str = "/api/tasks/status/{id}";
        pub const TASK_RESULT: &str = "/api/tasks/{id}/result";
        pub const WORKER_HEARTBEAT: &str = "/api/workers/{id}/heartbeat";
        pub const WORKER_TASKS: &str = "/api/workers/{id}/tasks";
        pub const WORKER_UNREGISTER: &str = "/api/workers/{id}/unregister";
        pub const NODE: &str = "/api/nodes/{id}";
        pub const NODE_DRAIN: &str = "/api/nodes/{id}/drain";
        pub const NODE_UNDRAIN: &str = "/api/nodes/{id}/undrain";
    }
}

/// `/api/nodes/{id}` (no action) or `/api/nodes/{id}/{action}` (`drain`, `undrain`).
pub fn node_path(node_id: &str, action: Option<&str>) -> String {
    match action {
        Some(a) => format!("{}/{}/{}", paths::NODES, encode_segment(node_id), a),
        None => format!("{}/{}", paths::NODES, encode_segment(node_id)),
    }
}

/// `/api/workers/{id}/{action}` with the id percent-encoded where it must be.
pub fn worker_path(worker_id: &str, action: &str) -> String {
    format!("/api/workers/{}/{}", encode_segment(worker_id), action)
}

/// `/api/tasks/{id}/stream?worker_id=W&attempt=N`: where an agent streams the chunks of an
/// [`task_type::OLLAMA_API`] task with `stream: true` (chunked NDJSON body, worker auth).
pub fn stream_path(task_id: &str, worker_id: &str, attempt: u32) -> String {
    format!(
        "{}?worker_id={}&attempt={attempt}",
        task_path(task_id, "stream"),
        encode_segment(worker_id)
    )
}

/// `/api/tasks/{id}/{action}`.
pub fn task_path(task_id: &str, action: &str) -> String {
    format!("/api/tasks/{}/{}", encode_segment(task_id), action)
}

/// Percent-encodes everything outside RFC 3986's unreserved set, so a worker id with a
/// space or a slash still names exactly one path segment.
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The task types of the seed. Types are strings on the wire so a custom worker may
/// offer types this crate does not know.
pub mod task_type {
    pub const AGENT_ACTION: &str = "agent_action";
    pub const EVOLUTION_CROSSOVER: &str = "evolution_crossover";
    pub const EVOLUTION_MUTATION: &str = "evolution_mutation";
    pub const CODE_GENERATION: &str = "code_generation";
    /// A request to the node's Ollama API made through the orchestrator's gateway. Data:
    /// [`crate::OllamaApiTask`]. Only nodes that list it in `capabilities.task_types` get
    /// one (a seed worker could not run it).
    pub const OLLAMA_API: &str = "ollama_api";
    pub const ALL: [&str; 4] = [
        AGENT_ACTION,
        EVOLUTION_CROSSOVER,
        EVOLUTION_MUTATION,
        CODE_GENERATION,
    ];
    /// Types that run on an LLM and so need `data.model` to be present on the node.
    pub const NEEDS_MODEL: [&str; 3] = [AGENT_ACTION, CODE_GENERATION, OLLAMA_API];
}

/// Lowest and highest task priority; higher runs first.
pub const PRIORITY_MIN: u8 = 1;
pub const PRIORITY_MAX: u8 = 10;
/// Priority of a submit that names none.
pub const PRIORITY_DEFAULT: u8 = 5;

/// Bits of the Pi firmware's `get_throttled` word.
pub mod throttle {
    pub const UNDER_VOLTAGE: u32 = 1 << 0;
    pub const FREQ_CAPPED: u32 = 1 << 1;
    pub const THROTTLED: u32 = 1 << 2;
    pub const SOFT_TEMP_LIMIT: u32 = 1 << 3;
    pub const UNDER_VOLTAGE_SINCE_BOOT: u32 = 1 << 16;
    pub const FREQ_CAPPED_SINCE_BOOT: u32 = 1 << 17;
    pub const THROTTLED_SINCE_BOOT: u32 = 1 << 18;
    pub const SOFT_TEMP_LIMIT_SINCE_BOOT: u32 = 1 << 19;
}

/// How operators read sizes and ages, shared by the CLI and the status page so a number
/// reads the same in a terminal and a browser.
pub mod human {
    /// `1.5G`, `512M`, `900K`: binary units, one decimal below 10.
    pub fn bytes(n: u64) -> String {
        const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
        let mut v = n as f64;
        let mut unit = 0;
        while v >= 1024.0 && unit < UNITS.len() - 1 {
            v /= 1024.0;
            unit += 1;
        }
        if unit == 0 {
            format!("{n}B")
        } else if v < 10.0 {
            format!("{v:.1}{}", UNITS[unit])
        } else {
            format!("{v:.0}{}", UNITS[unit])
        }
    }

    /// How long ago `at` was, as of `now`: `3s ago`, `5m ago`, `2h ago`, `4d ago`.
    pub fn ago(at: f64, now: f64) -> String {
        let s = (now - at).max(0.0) as u64;
        match s {
            0..=59 => format!("{s}s ago"),
            60..=3599 => format!("{}m ago", s / 60),
            3600..=86_399 => format!("{}h ago", s / 3600),
            _ => format!("{}d ago", s / 86_400),
        }
    }

    /// A span of time: `850ms`, `3.2s`, `48s`, `2m05s`, `3h07m`.
    pub fn duration(secs: f64) -> String {
        let s = secs.max(0.0);
        if s < 1.0 {
            format!("{}ms", (s * 1000.0).round() as u64)
        } else if s < 10.0 {
            format!("{s:.1}s")
        } else if s < 60.0 {
            format!("{}s", s as u64)
        } else if s < 3600.0 {
            let s = s as u64;
            format!("{}m{:02}s", s / 60, s % 60)
        } else {
            let m = s as u64 / 60;
            format!("{}h{:02}m", m / 60, m % 60)
        }
    }
}

mod nodes;
mod staging;
mod states;
mod tasks;
mod workers;

pub use nodes::*;
pub use staging::{StageAction, StageOrder, StageProgress, StageState};
pub use states::*;
pub use tasks::*;
pub use workers::*;

#[cfg(test)]
mod tests;
