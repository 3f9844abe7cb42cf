//! `pifleet-events-load --url URL --pid PID [--nodes N] [--streams S] [--seconds D]
//! [--beat-s B] [--history H]`
//!
//! Load for scripts/bench-events.sh: N simulated nodes register and heartbeat over HTTP
//! (first H quick beats each, so every card has a full history, then one beat per node
//! every B seconds with moving metrics), S status-page event streams are held open, and for
//! D seconds the orchestrator process PID is measured: CPU (from /proc/PID/stat), peak RSS,
//! and `/health` latency probed every 20 ms. Then the streams close and the RSS and the
//! open-stream gauge are read again. Prints one JSON line.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pifleet_system_tests::sim::{pi_caps, pi_metrics, SimAgent};
use pifleet_system_tests::sse::SseStream;
use serde_json::json;

struct Args {
    url: String,
    pid: u32,
    nodes: usize,
    streams: usize,
    seconds: f64,
    beat_s: f64,
    history: usize,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        url: String::new(),
        pid: 0,
        nodes: 300,
        streams: 500,
        seconds: 20.0,
        beat_s: 10.0,
        history: 120,
    };
    let mut args = std::env::args().skip(1);
    while let Some(k) = args.next() {
        let v = args.next().ok_or(format!("{k} needs a value"))?;
        let bad = |_: std::num::ParseIntError| format!("{k}: not a number: {v}");
        let badf = |_: std::num::ParseFloatError| format!("{k}: not a number: {v}");
        match k.as_str() {
            "--url" => a.url = v.trim_end_matches('/').to_string(),
            "--pid" => a.pid = v.parse().map_err(bad)?,
            "--nodes" => a.nodes = v.parse().map_err(bad)?,
            "--streams" => a.streams = v.parse().map_err(bad)?,
            "--seconds" => a.seconds = v.parse().map_err(badf)?,
            "--beat-s" => a.beat_s = v.parse().map_err(badf)?,
            "--history" => a.history = v.parse().map_err(bad)?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.url.is_empty() || a.pid == 0 {
        return Err("--url and --pid are required".into());
    }
    Ok(a)
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    num(11) + num(12)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn clk_tck() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

/// The open-stream gauge from `/metrics`, if the orchestrator exports it.
fn gauge(agent: &ureq::Agent, url: &str) -> Option<f64> {
    let text = agent
        .get(format!("{url}/metrics"))
        .call()
        .ok()?
        .body_mut()
        .read_to_string()
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("pifleet_event_streams_open "))
        .and_then(|v| v.trim().parse().ok())
}

fn main() -> ExitCode {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("pifleet-events-load: {e}");
            return ExitCode::from(2);
        }
    };
    let addr = a.url.trim_start_matches("http://").to_string();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();

    // Nodes with a full history, registered from a few threads.
    let nodes: Arc<Vec<SimAgent>> = Arc::new(
        (0..a.nodes)
            .map(|i| SimAgent::new(&a.url, &format!("bench-{i:04}"), None))
            .collect(),
    );
    let fill: Vec<_> = (0..4)
        .map(|t| {
            let (nodes, history) = (nodes.clone(), a.history);
            std::thread::spawn(move || {
                for (i, n) in nodes.iter().enumerate().skip(t).step_by(4) {
                    n.register(pi_caps());
                    for beat in 0..history {
                        n.heartbeat(pi_metrics(45.0 + ((i + beat) % 30) as f32));
                    }
                }
            })
        })
        .collect();
    for f in fill {
        let _ = f.join();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let beats = Arc::new(AtomicU64::new(0));
    let failed_beats = Arc::new(AtomicU64::new(0));
    // Every node beats once per `beat_s`, spread evenly, with a moving temperature.
    let beater = {
        let (nodes, stop, beats, failed, beat_s) = (
            nodes.clone(),
            stop.clone(),
            beats.clone(),
            failed_beats.clone(),
            a.beat_s,
        );
        let (hb, url) = (agent.clone(), a.url.clone());
        std::thread::spawn(move || {
            let gap = Duration::from_secs_f64(beat_s / nodes.len().max(1) as f64);
            let mut round = 0usize;
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                for (i, n) in nodes.iter().enumerate() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    // Not SimAgent::heartbeat, which panics: a beat the loaded server
                    // answers too late is counted, not fatal.
                    let ok = hb
                        .post(format!("{url}/api/workers/{}/heartbeat", n.id))
                        .send_json(json!({
                            "metrics": pi_metrics(45.0 + ((i + round) % 30) as f32)
                        }))
                        .is_ok_and(|r| r.status() == 200);
                    if ok {
                        beats.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    next += gap;
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
                round += 1;
            }
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let rss_before = rss_kib(a.pid);

    // The streams: one thread each, counting events; the first event of each is awaited.
    let events = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let opened = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let cutters = Arc::new(Mutex::new(Vec::new()));
    let start_open = Instant::now();
    let mut rss_peak = 0;
    let readers: Vec<_> = (0..a.streams)
        .map(|_| {
            let (addr, events, bytes, opened, refused, cutters) = (
                addr.clone(),
                events.clone(),
                bytes.clone(),
                opened.clone(),
                refused.clone(),
                cutters.clone(),
            );
            std::thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || {
                    // A burst of connects can overflow the listen backlog: retry as a
                    // browser's EventSource would.
                    let mut tries = 0;
                    let mut s = loop {
                        match SseStream::open(&addr, "/api/events", None, Duration::from_secs(60)) {
                            Ok(s) => break s,
                            Err(e) if tries >= 10 => {
                                eprintln!("pifleet-events-load: open a stream: {e}");
                                refused.fetch_add(1, Ordering::Relaxed);
                                return;
                            }
                            Err(_) => {
                                tries += 1;
                                std::thread::sleep(Duration::from_millis(200));
                            }
                        }
                    };
                    if s.status != 200 {
                        eprintln!("pifleet-events-load: stream answered {}", s.status);
                        refused.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    if let Ok(c) = s.cutter() {
                        cutters.lock().unwrap_or_else(|p| p.into_inner()).push(c);
                    }
                    let mut first = true;
                    while let Ok(Some((_, data))) = s.next_event() {
                        if first {
                            opened.fetch_add(1, Ordering::Relaxed);
                            first = false;
                        }
                        events.fetch_add(1, Ordering::Relaxed);
                        bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                    }
                })
                .expect("spawn a stream reader")
        })
        .collect();
    while opened.load(Ordering::Relaxed) + refused.load(Ordering::Relaxed) < a.streams
        && start_open.elapsed() < Duration::from_secs(120)
    {
        rss_peak = rss_peak.max(rss_kib(a.pid));
        std::thread::sleep(Duration::from_millis(50));
    }
    let open_s = start_open.elapsed().as_secs_f64();
    let open_gauge = gauge(&agent, &a.url);
    // Settle after the burst of first events, then measure.
    std::thread::sleep(Duration::from_secs(3));
    let (cpu0, ev0, by0, beats0) = (
        cpu_ticks(a.pid),
        events.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed),
        beats.load(Ordering::Relaxed),
    );
    let t0 = Instant::now();
    let mut health = Vec::new();
    let probe: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    while t0.elapsed().as_secs_f64() < a.seconds {
        let s = Instant::now();
        let ok = probe
            .get(format!("{}/health", a.url))
            .call()
            .is_ok_and(|mut r| r.status() == 200 && r.body_mut().read_to_string().is_ok());
        if ok {
            health.push(s.elapsed().as_secs_f64() * 1000.0);
        }
        rss_peak = rss_peak.max(rss_kib(a.pid));
        std::thread::sleep(Duration::from_millis(20));
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = (cpu_ticks(a.pid) - cpu0) as f64 / clk_tck();
    let (ev, by, bt) = (
        events.load(Ordering::Relaxed) - ev0,
        bytes.load(Ordering::Relaxed) - by0,
        beats.load(Ordering::Relaxed) - beats0,
    );

    for c in cutters.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        c.cut();
    }
    for r in readers {
        let _ = r.join();
    }
    // The gauge falls as the server notices each closed socket.
    let closed_at = Instant::now();
    let mut closed_gauge = gauge(&agent, &a.url);
    while closed_gauge.is_some_and(|g| g > 0.0) && closed_at.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
        closed_gauge = gauge(&agent, &a.url);
    }
    std::thread::sleep(Duration::from_secs(2));
    let rss_after = rss_kib(a.pid);
    stop.store(true, Ordering::Relaxed);
    let _ = beater.join();

    health.sort_by(f64::total_cmp);
    println!(
        "{}",
        json!({
            "nodes": a.nodes,
            "streams": opened.load(Ordering::Relaxed),
            "refused": refused.load(Ordering::Relaxed),
            "open_s": open_s,
            "heartbeats_per_s": bt as f64 / wall,
            "heartbeats_failed": failed_beats.load(Ordering::Relaxed),
            "cpu_percent": cpu / wall * 100.0,
            "events_per_stream_per_s": ev as f64 / wall / a.streams.max(1) as f64,
            "event_kib_per_s": by as f64 / wall / 1024.0,
            "rss_before_mib": rss_before as f64 / 1024.0,
            "rss_peak_mib": rss_peak as f64 / 1024.0,
            "rss_after_close_mib": rss_after as f64 / 1024.0,
            "gauge_open": open_gauge,
            "gauge_after_close": closed_gauge,
            "health_probes": health.len(),
            "health_p50_ms": percentile(&health, 0.5),
            "health_p99_ms": percentile(&health, 0.99),
            "health_max_ms": health.last().copied().unwrap_or(f64::NAN),
        })
    );
    ExitCode::SUCCESS
}
