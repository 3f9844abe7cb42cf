//! Many status pages at once against a real orchestrator process: 500 `GET /api/events`
//! streams over loopback all receive a change, one past `max_event_streams` is answered
//! 503 with a JSON error and a log line, and closing them brings the open-stream gauge of
//! `/metrics` back down, after which a stream is accepted again.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use pifleet_system_tests::orch::Orch;
use pifleet_system_tests::sim::{pi_metrics, SimAgent};
use pifleet_system_tests::sse::SseStream;
use serde_json::Value;

const STREAMS: usize = 500;

enum Seen {
    /// The stream's first event arrived and showed the fleet.
    First,
    /// The heartbeat's new temperature arrived.
    Change,
}

fn open_gauge(orch: &Orch) -> f64 {
    let (status, text) = orch.get_text("/metrics");
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix("pifleet_event_streams_open "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pifleet_event_streams_open in\n{text}"))
}

/// Waits for `n` reports on `rx`, each `want`; the bound turns a stall into a failure.
fn await_all(rx: &mpsc::Receiver<Seen>, n: usize, want: fn(&Seen) -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut got = 0;
    while got < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(s) if want(&s) => got += 1,
            Ok(_) => {}
            Err(_) => panic!("only {got} of {n} streams saw {what}"),
        }
    }
}

#[test]
fn five_hundred_streams_get_each_change_the_cap_answers_503_and_closing_frees_them() {
    let orch = Orch::start(&[("PIFLEET_MAX_EVENT_STREAMS", &STREAMS.to_string())]);
    let addr = orch.base.trim_start_matches("http://").to_string();
    let a = SimAgent::up(&orch.base, "pi-a", 50.0);
    SimAgent::up(&orch.base, "pi-b", 40.0);

    let (tx, rx) = mpsc::channel();
    let mut cutters = Vec::new();
    let mut readers = Vec::new();
    for _ in 0..STREAMS {
        let mut s = SseStream::open(&addr, "/api/events", None, Duration::from_secs(90))
            .expect("open an event stream");
        assert_eq!(s.status, 200, "{}", s.head);
        assert!(
            s.head.contains("content-type: text/event-stream"),
            "{}",
            s.head
        );
        cutters.push(s.cutter().unwrap());
        let tx = tx.clone();
        let reader = thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let mut first = true;
                // Ends with the stream: cut by the test, or an error the asserts report.
                while let Ok(Some((name, data))) = s.next_event() {
                    assert_eq!(name, "fleet");
                    let v: Value = serde_json::from_str(&data).expect("event data is JSON");
                    let cards = v["nodes"].as_array().cloned().unwrap_or_default();
                    if first {
                        first = false;
                        assert_eq!(v["order"], serde_json::json!(["pi-a", "pi-b"]), "{v}");
                        assert_eq!(cards.len(), 2, "the first event shows every card: {v}");
                        let _ = tx.send(Seen::First);
                    } else if cards
                        .iter()
                        .any(|c| c["html"].as_str().unwrap_or("").contains("77.2°C"))
                    {
                        let _ = tx.send(Seen::Change);
                    }
                }
            })
            .expect("spawn a reader");
        readers.push(reader);
    }
    await_all(
        &rx,
        STREAMS,
        |s| matches!(s, Seen::First),
        "their first event",
    );
    assert_eq!(open_gauge(&orch), STREAMS as f64);

    // One past the cap: refused with a JSON error that names the setting, and logged.
    let mut extra = SseStream::open(&addr, "/api/events", None, Duration::from_secs(30))
        .expect("connect past the cap");
    assert_eq!(extra.status, 503, "{}", extra.head);
    let body: Value = serde_json::from_str(&extra.body().unwrap()).expect("a JSON error body");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("max_event_streams") && error.contains(&STREAMS.to_string()),
        "{body}"
    );
    let log = std::fs::read_to_string(orch.dir().join("orchestrator-1.log")).unwrap();
    assert!(
        log.contains("event stream limit reached") && log.contains("max_event_streams=500"),
        "{log}"
    );

    // One change reaches every stream.
    a.heartbeat(pi_metrics(77.25));
    await_all(&rx, STREAMS, |s| matches!(s, Seen::Change), "the change");

    for c in &cutters {
        c.cut();
    }
    for r in readers {
        r.join().expect("a reader failed");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let open = open_gauge(&orch);
        if open == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{open} streams still counted open after every client closed"
        );
        thread::sleep(Duration::from_millis(50));
    }
    // The places are free again: a new page gets the whole fleet.
    let mut again = SseStream::open(&addr, "/api/events", None, Duration::from_secs(30)).unwrap();
    assert_eq!(again.status, 200, "{}", again.head);
    let (_, data) = again.next_event().unwrap().expect("a first event");
    assert!(data.contains("77.2°C"), "{data}");
}
