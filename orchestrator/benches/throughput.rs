//! Drives a real orchestrator (SQLite store on disk, HTTP on loopback) with many
//! long-polling workers and prints:
//! - end-to-end tasks/s (submit -> assign -> result),
//! - submit->assign latency p50/p99 with workers waiting,
//! - heartbeats/s accepted from 1,000+ registered nodes.
//!
//! `cargo bench -p pifleet-orchestrator --bench throughput -- [--tasks N] [--workers N]
//! [--nodes N] [--seconds S] [--durability normal|full] [--backlog N] [--distinct-lanes N]`,
//! or `scripts/bench-orchestrator.sh` (`scripts/bench-lanes.sh` for the two backlogs).
//! All traffic goes to 127.0.0.1; every phase is bounded in count and time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use pifleet_orchestrator::clock::SystemClock;
use pifleet_orchestrator::config::{Config, RawConfig};
use pifleet_orchestrator::store::sqlite::Durability;
use pifleet_orchestrator::store::SqliteStore;
use pifleet_orchestrator::Orchestrator;
use serde_json::{json, Value};

// The same allocator as the binary, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    tasks: usize,
    workers: usize,
    submitters: usize,
    nodes: usize,
    seconds: f64,
    latency_tasks: usize,
    /// Tasks for a model no node has, queued before the run: shows that a poll's cost
    /// does not grow with the queue.
    backlog: usize,
    /// Tasks no node can run, each with requirements of its own (half a unique type,
    /// half a unique `min_memory_bytes` above every node's memory), queued before the
    /// run: shows that a scheduling pass does not grow with the number of lanes.
    distinct_lanes: usize,
    durability: Durability,
}

fn args() -> Args {
    let mut a = Args {
        tasks: 30_000,
        workers: 64,
        submitters: 32,
        nodes: 1_000,
        seconds: 5.0,
        latency_tasks: 3_000,
        backlog: 0,
        distinct_lanes: 0,
        durability: Durability::Normal,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let val = argv.get(i + 1).cloned().unwrap_or_default();
        let num = || {
            val.parse::<usize>()
                .unwrap_or_else(|_| panic!("{}: expected a number, got {val:?}", argv[i]))
        };
        match argv[i].as_str() {
            "--tasks" => a.tasks = num(),
            "--workers" => a.workers = num(),
            "--submitters" => a.submitters = num(),
            "--nodes" => a.nodes = num(),
            "--latency-tasks" => a.latency_tasks = num(),
            "--backlog" => a.backlog = num(),
            "--distinct-lanes" => a.distinct_lanes = num(),
            "--seconds" => a.seconds = val.parse().unwrap_or(5.0),
            "--durability" => {
                a.durability = match val.as_str() {
                    "full" => Durability::Full,
                    _ => Durability::Normal,
                }
            }
            // `cargo bench` passes `--bench`; anything else unknown is ignored too.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    tx: SendRequest<Full<Bytes>>,
    host: String,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        Conn {
            tx,
            host: addr.to_string(),
        }
    }

    async fn call(&mut self, method: &str, path: &str, body: Option<String>) -> (u16, Bytes) {
        self.tx.ready().await.expect("connection ready");
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .expect("request");
        let resp = self.tx.send_request(req).await.expect("send");
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (status, bytes)
    }
}

fn micros_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_micros() as u64
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

/// Workers that long-poll, record how long each task took from submit to assignment,
/// and report success at once. They stop after `stop_after` results in total.
async fn run_workers(
    addr: SocketAddr,
    prefix: &str,
    count: usize,
    stop_after: usize,
    epoch: Instant,
) -> (Vec<u64>, Instant) {
    let done = Arc::new(AtomicU64::new(0));
    let finished: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(stop_after)));
    let mut handles = Vec::new();
    for i in 0..count {
        let id = format!("{prefix}-{i}");
        let done = done.clone();
        let latencies = latencies.clone();
        let finished = finished.clone();
        handles.push(tokio::spawn(async move {
            let mut c = Conn::open(addr).await;
            let poll = format!("/api/workers/{id}/tasks?wait=2");
            let mut local = Vec::new();
            while (done.load(Ordering::Relaxed) as usize) < stop_after {
                let (s, body) = c.call("GET", &poll, None).await;
                assert_eq!(s, 200, "poll: {}", String::from_utf8_lossy(&body));
                let v: Value = serde_json::from_slice(&body).expect("poll json");
                let task = &v["task"];
                if task.is_null() {
                    continue;
                }
                let got = micros_since(epoch);
                if let Some(t0) = task["data"]["t0"].as_u64() {
                    local.push(got.saturating_sub(t0));
                }
                let tid = task["task_id"].as_str().expect("task_id");
                let body = format!(
                    r#"{{"worker_id":"{id}","attempt":{},"result":{{"success":true,"output":"ok"}}}}"#,
                    task["attempt"]
                );
                let (s, b) = c.call("POST", &format!("/api/tasks/{tid}/result"), Some(body)).await;
                assert_eq!(s, 200, "result: {}", String::from_utf8_lossy(&b));
                if done.fetch_add(1, Ordering::Relaxed) as usize + 1 == stop_after {
                    *finished.lock().expect("lock") = Some(Instant::now());
                }
            }
            latencies.lock().expect("lock").extend(local);
        }));
    }
    // Idle workers finish their last long poll before they notice the end.
    for h in handles {
        h.await.expect("worker");
    }
    let lat = std::mem::take(&mut *latencies.lock().expect("lock"));
    let end = finished.lock().expect("lock").unwrap_or_else(Instant::now);
    (lat, end)
}

async fn register(addr: SocketAddr, prefix: &str, count: usize) {
    let mut conns = Vec::new();
    for _ in 0..8.min(count.max(1)) {
        conns.push(Conn::open(addr).await);
    }
    let per = count.div_ceil(conns.len());
    let mut handles = Vec::new();
    for (k, mut c) in conns.into_iter().enumerate() {
        let prefix = prefix.to_string();
        handles.push(tokio::spawn(async move {
            for i in (k * per)..((k + 1) * per).min(count) {
                let body = json!({"worker_id": format!("{prefix}-{i}"), "worker_type": "bench",
                    "capabilities": {"models": ["bench:1b"], "task_types": ["agent_action"],
                                     "memory_total_bytes": 8u64 << 30}});
                let (s, _) = c
                    .call("POST", "/api/workers/register", Some(body.to_string()))
                    .await;
                assert_eq!(s, 200);
            }
        }));
    }
    for h in handles {
        h.await.expect("register");
    }
}

/// Tasks no registered node can run, each in a lane of its own.
async fn submit_distinct(addr: SocketAddr, submitters: usize, total: usize) {
    let per = total.div_ceil(submitters);
    let mut handles = Vec::new();
    for k in 0..submitters {
        let range = (k * per)..((k + 1) * per).min(total);
        handles.push(tokio::spawn(async move {
            let mut c = Conn::open(addr).await;
            for i in range {
                let body = if i % 2 == 0 {
                    format!(r#"{{"type":"nobody-runs-{i}","data":{{}}}}"#)
                } else {
                    let need = (1u64 << 40) + i as u64;
                    format!(
                        r#"{{"type":"agent_action","data":{{"model":"bench:1b","min_memory_bytes":{need}}}}}"#
                    )
                };
                let (s, b) = c.call("POST", "/api/tasks/submit", Some(body)).await;
                assert_eq!(s, 201, "submit: {}", String::from_utf8_lossy(&b));
            }
        }));
    }
    for h in handles {
        h.await.expect("submitter");
    }
}

async fn submit_all(addr: SocketAddr, submitters: usize, total: usize, epoch: Instant) {
    submit_model(addr, submitters, total, epoch, "bench:1b").await
}

async fn submit_model(
    addr: SocketAddr,
    submitters: usize,
    total: usize,
    epoch: Instant,
    model: &'static str,
) {
    let per = total.div_ceil(submitters);
    let mut handles = Vec::new();
    for k in 0..submitters {
        let n = per.min(total.saturating_sub(k * per));
        handles.push(tokio::spawn(async move {
            let mut c = Conn::open(addr).await;
            for _ in 0..n {
                let body = format!(
                    r#"{{"type":"agent_action","priority":5,"data":{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}],"t0":{}}}}}"#,
                    micros_since(epoch)
                );
                let (s, b) = c.call("POST", "/api/tasks/submit", Some(body)).await;
                assert_eq!(s, 201, "submit: {}", String::from_utf8_lossy(&b));
            }
        }));
    }
    for h in handles {
        h.await.expect("submitter");
    }
}

fn main() {
    let a = args();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("bench.db");

    // The server gets its own runtime so client and server work are scheduled apart,
    // as with two processes; both share the machine's cores.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("server")
        .enable_all()
        .build()
        .expect("server runtime");
    let raw = RawConfig {
        max_wait_s: Some(5.0),
        heartbeat_interval_s: Some(30.0),
        ..Default::default()
    };
    let config = Config::from_raw(raw, None).expect("config");
    let store = SqliteStore::open(&db, a.durability).expect("open db");
    let orch = Orchestrator::open(&config, Box::new(store), Arc::new(SystemClock)).expect("open");
    let listener = server_rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = server_rt.spawn(orch.serve(listener, async {
        let _ = stop_rx.await;
    }));

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("client")
        .enable_all()
        .build()
        .expect("client runtime");

    println!(
        "pifleet orchestrator benchmark: SQLite store ({:?} durability) at {}, HTTP on {addr}",
        a.durability,
        db.display()
    );
    client_rt.block_on(async {
        let epoch = Instant::now();

        if a.backlog > 0 {
            submit_model(addr, a.submitters, a.backlog, epoch, "nobody-has:70b").await;
            println!("backlog: {} pending tasks no node can run", a.backlog);
        }
        if a.distinct_lanes > 0 {
            submit_distinct(addr, a.submitters, a.distinct_lanes).await;
            println!(
                "backlog: {} pending tasks no node can run, each in a lane of its own",
                a.distinct_lanes
            );
        }

        // 1. End to end: submitters and long-polling workers run at once.
        register(addr, "w", a.workers).await;
        let workers = tokio::spawn(run_workers(addr, "w", a.workers, a.tasks, epoch));
        let start = Instant::now();
        submit_all(addr, a.submitters, a.tasks, epoch).await;
        let submitted = start.elapsed();
        let (mut lat, end) = workers.await.expect("workers");
        let elapsed = end - start;
        lat.sort_unstable();
        println!(
            "end to end: {} tasks, {} long-polling workers, {} submitters: {:.0} tasks/s \
             (submit {:.0}/s; submit->assign under saturation p50 {:.2} ms, p99 {:.2} ms)",
            a.tasks,
            a.workers,
            a.submitters,
            a.tasks as f64 / elapsed.as_secs_f64(),
            a.tasks as f64 / submitted.as_secs_f64(),
            percentile(&lat, 0.50),
            percentile(&lat, 0.99),
        );

        // 2. Latency with workers waiting: one submitter, one task at a time.
        let workers = tokio::spawn(run_workers(addr, "w", a.workers, a.latency_tasks, epoch));
        tokio::time::sleep(Duration::from_millis(300)).await;
        submit_all(addr, 1, a.latency_tasks, epoch).await;
        let (mut lat, _) = workers.await.expect("workers");
        lat.sort_unstable();
        println!(
            "submit->assign with {} workers waiting: {} tasks, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            a.workers,
            lat.len(),
            percentile(&lat, 0.50),
            percentile(&lat, 0.99),
            percentile(&lat, 1.0),
        );

        // 3. Heartbeats with metrics from many registered nodes.
        register(addr, "n", a.nodes).await;
        let deadline = Instant::now() + Duration::from_secs_f64(a.seconds);
        let accepted = Arc::new(AtomicU64::new(0));
        let conns = 64;
        let mut handles = Vec::new();
        let start = Instant::now();
        for k in 0..conns {
            let accepted = accepted.clone();
            let nodes = a.nodes;
            handles.push(tokio::spawn(async move {
                let mut c = Conn::open(addr).await;
                let mut i = k;
                while Instant::now() < deadline {
                    let node = i % nodes;
                    let body = format!(
                        r#"{{"metrics":{{"cpu_percent":{}.5,"load_avg":[0.5,0.4,0.3],"memory_total_bytes":8589934592,"memory_available_bytes":6442450944,"temperature_c":{}.0,"throttled":0,"disk_free_bytes":20000000000,"models_present":["bench:1b"],"models_loaded":[]}}}}"#,
                        i % 100,
                        40 + i % 30
                    );
                    let (s, _) = c.call("POST", &format!("/api/workers/n-{node}/heartbeat"), Some(body)).await;
                    assert_eq!(s, 200);
                    accepted.fetch_add(1, Ordering::Relaxed);
                    i += conns;
                }
            }));
        }
        for h in handles {
            h.await.expect("heartbeater");
        }
        let n = accepted.load(Ordering::Relaxed);
        println!(
            "heartbeats: {} nodes, {} connections: {:.0} heartbeats/s ({} in {:.1} s)",
            a.nodes,
            conns,
            n as f64 / start.elapsed().as_secs_f64(),
            n,
            start.elapsed().as_secs_f64()
        );
    });
    let _ = stop_tx.send(());
    server_rt
        .block_on(server)
        .expect("server task")
        .expect("server");
}
