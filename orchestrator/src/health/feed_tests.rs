use std::pin::Pin;
use std::sync::atomic::AtomicBool;

use futures_util::StreamExt;
use pifleet_protocol::NodeDetail;

use super::*;
use crate::health::test_node;

/// A fleet the test changes by hand.
#[derive(Clone)]
struct Fake(Arc<FakeInner>);

struct FakeInner {
    snap: Mutex<FleetSnapshot>,
    tx: watch::Sender<u64>,
    stopping: AtomicBool,
}

impl Fake {
    fn new(nodes: usize) -> Fake {
        let nodes = (0..nodes)
            .map(|i| NodeDetail::from(test_node(&format!("pi-{i}"), 1.0)))
            .collect();
        Fake(Arc::new(FakeInner {
            snap: Mutex::new(FleetSnapshot {
                at: 1.0,
                nodes,
                ..Default::default()
            }),
            tx: watch::channel(0).0,
            stopping: AtomicBool::new(false),
        }))
    }

    /// Node `i` heartbeats: its card changes.
    fn beat(&self, i: usize, at: f64) {
        let mut snap = self.0.snap.lock().unwrap();
        snap.nodes[i].node.last_seen = at;
        snap.nodes[i].node.tasks_completed += 1;
        drop(snap);
        self.0.tx.send_modify(|g| *g += 1);
    }
}

impl Source for Fake {
    fn snapshot(&self) -> FleetSnapshot {
        self.0.snap.lock().unwrap().clone()
    }
    fn changes(&self) -> watch::Receiver<u64> {
        self.0.tx.subscribe()
    }
    fn stopping(&self) -> bool {
        self.0.stopping.load(Ordering::Relaxed)
    }
}

fn feed(fake: &Fake, max_streams: usize, backlog: usize) -> Feed {
    Feed::new(
        fake.clone(),
        FeedConfig {
            min_gap: Duration::from_millis(1),
            refresh: Duration::from_secs(60),
            keep_alive: Duration::from_secs(60),
            max_streams,
            backlog,
        },
    )
}

type Body = Pin<Box<dyn Stream<Item = Result<Bytes, Infallible>> + Send>>;

fn open(feed: &Feed) -> Body {
    Box::pin(feed.open().map_err(|_| "refused").unwrap())
}

/// The next event's JSON; a bound turns a stream that never speaks into a failure.
async fn next(body: &mut Body) -> (Bytes, serde_json::Value) {
    let item = tokio::time::timeout(Duration::from_secs(20), body.next())
        .await
        .expect("an event in time")
        .expect("the stream goes on");
    let bytes = item.unwrap();
    let text = std::str::from_utf8(&bytes).unwrap();
    let data = text
        .strip_prefix("event: fleet\ndata: ")
        .and_then(|t| t.strip_suffix("\n\n"))
        .unwrap_or_else(|| panic!("not a fleet event: {text:?}"));
    (bytes.clone(), serde_json::from_str(data).unwrap())
}

fn cards(v: &serde_json::Value) -> Vec<String> {
    v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn every_stream_gets_the_same_bytes_rendered_once() {
    let fake = Fake::new(3);
    let feed = feed(&fake, 10, 16);
    let mut a = open(&feed);
    let mut b = open(&feed);
    let (fa, va) = next(&mut a).await;
    let (fb, _) = next(&mut b).await;
    assert_eq!(cards(&va), ["pi-0", "pi-1", "pi-2"]);
    assert_eq!(fa.as_ptr(), fb.as_ptr(), "the first page is encoded once");

    fake.beat(1, 2.0);
    let (da, va) = next(&mut a).await;
    let (db, _) = next(&mut b).await;
    assert_eq!(cards(&va), ["pi-1"], "only the changed card");
    assert_eq!(da.as_ptr(), db.as_ptr(), "a change is encoded once for all");
}

#[tokio::test]
async fn a_stream_that_fell_behind_gets_the_whole_page_afresh() {
    let fake = Fake::new(3);
    let feed = feed(&fake, 10, 2);
    let mut slow = open(&feed);
    let mut fast = open(&feed);
    next(&mut slow).await;
    next(&mut fast).await;
    // More changes than the backlog holds while `slow` reads nothing.
    for round in 0..6 {
        fake.beat(round % 3, 10.0 + round as f64);
        let (_, v) = next(&mut fast).await;
        assert_eq!(cards(&v).len(), 1);
    }
    let (_, v) = next(&mut slow).await;
    assert_eq!(
        cards(&v),
        ["pi-0", "pi-1", "pi-2"],
        "the whole page, not the frames it missed"
    );
    assert_eq!(v["nodes"][2]["html"], {
        let f = feed.full().1;
        let t = std::str::from_utf8(&f).unwrap().to_string();
        let d: serde_json::Value = serde_json::from_str(
            t.trim_start_matches("event: fleet\ndata: ")
                .trim_end_matches('\n'),
        )
        .unwrap();
        d["nodes"][2]["html"].clone()
    });
    // And it carries on with the next change like the others.
    fake.beat(0, 99.0);
    let (_, v) = next(&mut slow).await;
    assert_eq!(cards(&v), ["pi-0"]);
}

#[tokio::test]
async fn the_cap_refuses_then_frees_a_place_when_a_stream_closes() {
    let fake = Fake::new(1);
    let feed = feed(&fake, 2, 16);
    let a = open(&feed);
    let _b = open(&feed);
    assert_eq!(feed.open_streams(), 2);
    assert!(feed.open().is_err(), "a third stream past max_streams");
    assert!(feed
        .metrics_text()
        .contains("pifleet_event_streams_refused_total 1\n"));
    drop(a);
    assert_eq!(feed.open_streams(), 1);
    assert!(feed.open().is_ok());
}

#[tokio::test]
async fn the_renderer_stops_and_forgets_when_the_last_stream_closes() {
    let fake = Fake::new(2);
    let feed = feed(&fake, 10, 16);
    let mut a = open(&feed);
    next(&mut a).await;
    assert!(feed.rendering());
    drop(a);
    // The renderer looks at the next change, finds nobody, and stops.
    fake.beat(0, 5.0);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while feed.rendering() {
        assert!(
            std::time::Instant::now() < deadline,
            "the renderer kept running"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(feed.lock().full.is_none() && !feed.lock().fresh);
    // A new stream renders afresh, with the change made while nobody watched.
    fake.beat(1, 6.0);
    let mut b = open(&feed);
    let (_, v) = next(&mut b).await;
    assert_eq!(cards(&v), ["pi-0", "pi-1"]);
    fake.beat(1, 7.0);
    let (_, v) = next(&mut b).await;
    assert_eq!(cards(&v), ["pi-1"]);
}

#[tokio::test]
async fn streams_end_at_shutdown() {
    let fake = Fake::new(1);
    let feed = feed(&fake, 10, 16);
    let mut a = open(&feed);
    next(&mut a).await;
    fake.0.stopping.store(true, Ordering::Relaxed);
    fake.beat(0, 2.0);
    let end = tokio::time::timeout(Duration::from_secs(20), a.next()).await;
    assert!(matches!(end, Ok(None)), "the stream ended");
    let mut late = open(&feed);
    assert!(
        late.next().await.is_none(),
        "a stream opened during shutdown ends at once"
    );
}
