//! The status page and its live event stream: pushes, shutdown with a page open, the
//! client token, server-side rendering.

use super::*;

/// Reads server-sent events until one's data satisfies `pred`.
/// `GET /api/events`, read with a bound: a stream that never ended fails the test
/// instead of hanging it.
fn event_stream(orch: &Orch) -> ureq::http::Response<ureq::Body> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    agent
        .get(format!("{}/api/events", orch.base))
        .call()
        .expect("event stream")
}

fn read_event_until(
    reader: &mut impl BufRead,
    deadline: Instant,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let mut event = String::new();
    let mut line = String::new();
    loop {
        assert!(Instant::now() < deadline, "no matching event in time");
        line.clear();
        let n = reader.read_line(&mut line).expect("read event stream");
        assert!(n > 0, "event stream ended");
        let l = line.trim_end();
        if let Some(name) = l.strip_prefix("event:") {
            event = name.trim().to_string();
        } else if let Some(data) = l.strip_prefix("data:") {
            assert_eq!(event, "fleet");
            let v: Value = serde_json::from_str(data.trim()).expect("event data is JSON");
            if pred(&v) {
                return v;
            }
        }
    }
}

#[test]
fn event_stream_pushes_node_changes() {
    let orch = Orch::start(&[]);
    let a = SimAgent::up(&orch.base, "pi-a", 50.0);
    let resp = event_stream(&orch);
    assert!(resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/event-stream")));
    let mut reader = BufReader::new(resp.into_body().into_reader());
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = read_event_until(&mut reader, deadline, |_| true);
    let card = first["nodes"][0]["html"].as_str().unwrap();
    assert_eq!(first["nodes"][0]["id"], json!("pi-a"));
    assert!(card.contains("50.0°C"), "{card}");

    a.heartbeat(pi_metrics(77.25));
    read_event_until(&mut reader, deadline, |v| {
        v["nodes"][0]["html"]
            .as_str()
            .unwrap_or("")
            .contains("77.2°C")
    });
    SimAgent::up(&orch.base, "pi-b", 40.0);
    read_event_until(&mut reader, deadline, |v| {
        v["order"] == json!(["pi-a", "pi-b"])
            && v["nodes"][0]["id"] == json!("pi-b")
            && v["nodes"].as_array().is_some_and(|n| n.len() == 1)
    });
}

#[test]
fn open_status_page_does_not_hold_up_shutdown() {
    let mut orch = Orch::start(&[]);
    SimAgent::up(&orch.base, "pi-a", 50.0);
    let resp = event_stream(&orch);
    let mut reader = BufReader::new(resp.into_body().into_reader());
    read_event_until(
        &mut reader,
        Instant::now() + Duration::from_secs(20),
        |_| true,
    );
    assert_eq!(
        orch.terminate(Duration::from_secs(20)),
        Some(0),
        "SIGTERM with a browser connected must still stop the orchestrator cleanly"
    );
    // The stream ended rather than being cut: the chunked body reaches its last chunk,
    // which a dropped connection never sends (ureq then reports an error).
    let mut rest = String::new();
    let end = std::io::Read::read_to_string(&mut reader, &mut rest);
    assert!(
        end.is_ok(),
        "the event stream must end cleanly at shutdown, not be cut: {end:?} after {rest:?}"
    );
}

#[test]
fn page_and_metrics_need_the_client_token_when_configured() {
    let orch = Orch::start(&[
        ("PIFLEET_CLIENT_TOKEN", "client-secret-0123456789"),
        ("PIFLEET_WORKER_TOKEN", "worker-secret-0123456789"),
    ]);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let status = |path: &str, auth: Option<&str>| {
        let mut req = agent.get(format!("{}{}", orch.base, path));
        if let Some(a) = auth {
            req = req.header("Authorization", format!("Bearer {a}"));
        }
        req.call().unwrap().status().as_u16()
    };
    assert_eq!(status("/", None), 401);
    let hint = agent
        .get(format!("{}/", orch.base))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(hint.contains("/?token="), "{hint}");
    assert_eq!(status("/?token=wrong", None), 401);
    assert_eq!(status("/?token=client-secret-0123456789", None), 200);
    assert_eq!(status("/", Some("client-secret-0123456789")), 200);
    assert_eq!(status("/api/nodes", None), 401);
    assert_eq!(status("/api/nodes", Some("client-secret-0123456789")), 200);
    assert_eq!(status("/metrics", None), 401);
    assert_eq!(status("/metrics", Some("client-secret-0123456789")), 200);
    assert_eq!(status("/metrics", Some("worker-secret-0123456789")), 401);
    assert_eq!(status("/api/events", None), 401);
    assert_eq!(
        status("/api/events?token=client-secret-0123456789", None),
        200
    );
    assert_eq!(status("/static/pifleet.js", None), 200);
    assert_eq!(status("/static/pifleet.css", None), 200);
}

#[test]
fn status_page_is_server_rendered() {
    let orch = Orch::start(&[]);
    SimAgent::up(&orch.base, "pi-kitchen", 66.0);
    let (status, html) = orch.get_text("/");
    assert_eq!(status, 200);
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains(r#"data-id="pi-kitchen""#));
    assert!(html.contains("66.0°C"));
    assert!(html.contains("<svg class=\"spark\""));
    assert!(html.contains(r#"<script src="/static/pifleet.js" defer></script>"#));
    let resp = ureq::get(format!("{}/", orch.base)).call().unwrap();
    let csp = resp.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
}
