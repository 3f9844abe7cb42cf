//! `pifleet-gateway-load --url URL --model M [--streams N] [--requests R] [--key K]`
//!
//! Load for scripts/bench-gateway.sh: R streaming `POST /api/chat` requests, N at a time,
//! each read line by line as a client would. Prints one JSON line: time to first chunk
//! (p50, p99, ms), chunks received, wall time, chunks per second. Point `--url` at the
//! gateway or straight at an Ollama (the double) to compare.

use std::io::{BufRead, BufReader};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> ExitCode {
    let mut url = String::new();
    let mut model = "llama3.2:1b".to_string();
    let mut streams = 1usize;
    let mut requests = 100usize;
    let mut key: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_default();
        match a.as_str() {
            "--url" => url = v,
            "--model" => model = v,
            "--streams" => streams = v.parse().unwrap_or(1),
            "--requests" => requests = v.parse().unwrap_or(100),
            "--key" => key = Some(v),
            other => {
                eprintln!("pifleet-gateway-load: unknown argument {other}");
                return ExitCode::from(2);
            }
        }
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(300)))
        .max_idle_connections_per_host(streams.max(1) * 2)
        .build()
        .into();
    let next = Arc::new(AtomicUsize::new(0));
    let ttft = Arc::new(Mutex::new(Vec::with_capacity(requests)));
    let chunks = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..streams)
        .map(|_| {
            let (agent, url, model, key) = (agent.clone(), url.clone(), model.clone(), key.clone());
            let (next, ttft, chunks, failures) =
                (next.clone(), ttft.clone(), chunks.clone(), failures.clone());
            std::thread::spawn(move || {
                while next.fetch_add(1, Ordering::SeqCst) < requests {
                    let t0 = Instant::now();
                    let mut req = agent.post(format!("{url}/api/chat"));
                    if let Some(k) = &key {
                        req = req.header("Authorization", format!("Bearer {k}"));
                    }
                    let body = json!({"model": model, "stream": true,
                        "messages": [{"role": "user", "content": "Go"}]});
                    let resp = match req.send_json(body) {
                        Ok(r) if r.status() == 200 => r,
                        _ => {
                            failures.fetch_add(1, Ordering::SeqCst);
                            continue;
                        }
                    };
                    let mut first = None;
                    let mut n = 0;
                    let reader = BufReader::new(resp.into_body().into_reader());
                    for line in reader.lines() {
                        let Ok(line) = line else { break };
                        if line.is_empty() {
                            continue;
                        }
                        if first.is_none() {
                            first = Some(t0.elapsed().as_secs_f64() * 1000.0);
                        }
                        n += 1;
                    }
                    chunks.fetch_add(n, Ordering::SeqCst);
                    if let Some(f) = first {
                        ttft.lock().unwrap_or_else(|e| e.into_inner()).push(f);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let wall = start.elapsed().as_secs_f64();
    let mut t = ttft.lock().unwrap_or_else(|e| e.into_inner()).clone();
    t.sort_by(f64::total_cmp);
    let n = chunks.load(Ordering::SeqCst);
    println!(
        "{}",
        json!({
            "requests": requests, "streams": streams,
            "failures": failures.load(Ordering::SeqCst),
            "ttft_p50_ms": percentile(&t, 0.5), "ttft_p99_ms": percentile(&t, 0.99),
            "chunks": n, "wall_s": wall, "chunks_per_s": n as f64 / wall,
        })
    );
    ExitCode::SUCCESS
}
