//! Client keys: roles per endpoint, priorities and quotas, what /health tells without a
//! token, and the gateway taking submit keys.

use super::*;

/// `(method, path, role needed)`; `{task}` and `{node}` are filled in.
const ENDPOINTS: &[(&str, &str, &str)] = &[
    ("GET", "/api/stats", "read"),
    ("GET", "/api/tasks/queue", "read"),
    ("GET", "/api/tasks/status/{task}", "read"),
    ("GET", "/api/workers/list", "read"),
    ("GET", "/api/nodes", "read"),
    ("GET", "/api/nodes/{node}", "read"),
    ("GET", "/metrics", "read"),
    ("GET", "/", "read"),
    ("GET", "/api/events", "read"),
    ("POST", "/api/tasks/submit", "submit"),
    ("POST", "/api/nodes/{node}/drain", "admin"),
    ("POST", "/api/nodes/{node}/undrain", "admin"),
    ("POST", "/api/nodes/{node}/forget", "admin"),
];

fn rank(role: &str) -> u8 {
    match role {
        "read" => 0,
        "submit" => 1,
        _ => 2,
    }
}

#[tokio::test]
async fn each_role_reaches_its_endpoints_and_is_refused_the_others() {
    let s = start();
    let keys: Vec<(&str, String)> = ["read", "submit", "admin"]
        .into_iter()
        .map(|role| (role, s.add_key(&format!("k-{role}"), &["--role", role])))
        .collect();
    let task = s
        .submit(CLIENT, json!({"type": "code_generation", "data": {}}))
        .await;
    for (role, key) in &keys {
        // A node per role, so one role's forget does not change another's answers.
        let node = format!("n-{role}");
        s.join(&node).await;
        for (method, path, needed) in ENDPOINTS {
            let path = path.replace("{task}", &task).replace("{node}", &node);
            let body = (*method == "POST").then(|| json!({"type": "code_generation", "data": {}}));
            let r = call(
                s.addr,
                method,
                &path,
                Some(key),
                body,
                path != "/api/events",
            )
            .await;
            if rank(role) >= rank(needed) {
                assert!(
                    (200..300).contains(&r.status),
                    "{role} {method} {path}: {} {}",
                    r.status,
                    r.body
                );
            } else {
                assert_eq!(r.status, 403, "{role} {method} {path}: {}", r.body);
                assert!(
                    error_of(&r).contains(&format!("needs role {needed}")),
                    "{}",
                    r.body
                );
            }
        }
    }
    // The page takes a key by ?token= as well.
    let read = &keys[0].1;
    let r = call(s.addr, "GET", &format!("/?token={read}"), None, None, true).await;
    assert_eq!(r.status, 200);
    // Without a key, or with a wrong one: 401 everywhere.
    for token in [None, Some("pfk_0000"), Some(JOIN)] {
        let r = s.call("GET", "/api/stats", token, None).await;
        assert_eq!(r.status, 401, "{token:?}: {}", r.body);
    }

    // Revoked from the command line beside the server: refused from the next request.
    let submit_key = &keys[1].1;
    assert_eq!(
        s.call("GET", "/api/stats", Some(submit_key), None)
            .await
            .status,
        200
    );
    let (code, out, err) = s.cli(&["keys", "revoke", "k-submit"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("revoked"), "{out}");
    let r = s.call("GET", "/api/stats", Some(submit_key), None).await;
    assert_eq!(r.status, 401, "{}", r.body);

    // Per-key counters on /metrics, by name.
    let r = s.call("GET", "/metrics", Some(CLIENT), None).await;
    let text = r.body.as_str().unwrap_or_default().to_string();
    assert!(
        text.contains("pifleet_key_requests_total{key=\"k-read\"}"),
        "{text}"
    );
    assert!(
        text.contains("pifleet_key_tasks_total{key=\"k-submit\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("pifleet_key_refused_total{key=\"k-read\",reason=\"role\"} 4"),
        "{text}"
    );

    // Secrets: never in `keys list`, never in the log.
    let (code, list, _) = s.cli(&["keys", "list"]);
    assert_eq!(code, 0);
    assert!(
        list.contains("k-read") && list.contains("k-admin"),
        "{list}"
    );
    assert!(!list.contains("k-submit"), "revoked keys are gone: {list}");
    let log = s.log();
    for (_, key) in &keys {
        assert!(!list.contains(key.as_str()), "a secret in keys list");
        assert!(!log.contains(key.as_str()), "a secret in the log");
        assert!(!log.contains(&key[4..20]), "part of a secret in the log");
    }
}

#[tokio::test]
async fn a_keys_default_priority_applies_and_its_maximum_caps() {
    let s = start();
    let key = s.add_key(
        "batch",
        &["--role", "submit", "--priority", "3", "--max-priority", "6"],
    );
    let plain = s
        .submit(&key, json!({"type": "code_generation", "data": {}}))
        .await;
    let asked = s
        .submit(
            &key,
            json!({"type": "code_generation", "data": {}, "priority": 6}),
        )
        .await;
    let r = s
        .call(
            "POST",
            "/api/tasks/submit",
            Some(&key),
            Some(json!({"type": "code_generation", "data": {}, "priority": 7})),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        error_of(&r).contains("maximum of key \"batch\" (6)"),
        "{}",
        r.body
    );
    for (task, want) in [(&plain, 3), (&asked, 6)] {
        let st = s
            .call(
                "GET",
                &format!("/api/tasks/status/{task}"),
                Some(&key),
                None,
            )
            .await;
        assert_eq!(st.body["priority"], want, "{}", st.body);
    }
    // The client token is an admin key without limits: the protocol's default.
    let t = s
        .submit(
            CLIENT,
            json!({"type": "code_generation", "data": {}, "priority": 10}),
        )
        .await;
    let st = s
        .call("GET", &format!("/api/tasks/status/{t}"), Some(CLIENT), None)
        .await;
    assert_eq!(st.body["priority"], 10);
}

#[tokio::test]
async fn both_quotas_answer_429_with_retry_after() {
    let s = start();
    // A rate of 2 per minute: the third request inside a minute is refused.
    let slow = s.add_key("slow", &["--role", "read", "--rate", "2"]);
    for _ in 0..2 {
        assert_eq!(
            s.call("GET", "/api/stats", Some(&slow), None).await.status,
            200
        );
    }
    let r = s.call("GET", "/api/stats", Some(&slow), None).await;
    assert_eq!(r.status, 429, "{}", r.body);
    let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&wait), "{wait}");
    assert!(error_of(&r).contains("2 requests per minute"), "{}", r.body);

    // 100 generated tokens a day: a result of 500 tokens puts the key in debt.
    let thrifty = s.add_key("thrifty", &["--role", "submit", "--tokens-per-day", "100"]);
    let cred = s.join("w-a").await;
    let task = s
        .submit(&thrifty, json!({"type": "code_generation", "data": {}}))
        .await;
    assert_eq!(s.poll("w-a", &cred).await["task_id"], task);
    let r = s
        .call(
            "POST",
            &format!("/api/tasks/{task}/result"),
            Some(&cred),
            Some(json!({"worker_id": "w-a", "result": {"output": "long", "success": true, "completion_tokens": 500}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s
        .call(
            "POST",
            "/api/tasks/submit",
            Some(&thrifty),
            Some(json!({"type": "code_generation", "data": {}})),
        )
        .await;
    assert_eq!(r.status, 429, "{}", r.body);
    let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    // 400 tokens of debt at 100 a day: about four days.
    assert!(wait > 3 * 86_400 && wait <= 4 * 86_400 + 1, "{wait}");
    assert!(
        error_of(&r).contains("100 generated tokens per day"),
        "{}",
        r.body
    );
    // Reading does not generate: still allowed.
    let r = s
        .call(
            "GET",
            &format!("/api/tasks/status/{task}"),
            Some(&thrifty),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let m = s.call("GET", "/metrics", Some(CLIENT), None).await;
    let text = m.body.as_str().unwrap_or_default().to_string();
    assert!(
        text.contains("pifleet_key_generated_tokens_total{key=\"thrifty\"} 500"),
        "{text}"
    );
    assert!(
        text.contains("pifleet_key_refused_total{key=\"slow\",reason=\"rate\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn health_tells_only_healthy_without_a_token() {
    let s = start();
    s.join("w-a").await;
    let r = s.call("GET", "/health", None, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!({"status": "healthy"}));
    let r = s
        .call("GET", "/health", Some("wrong-token-123456789"), None)
        .await;
    assert_eq!(r.body, json!({"status": "healthy"}));
    for token in [CLIENT, JOIN] {
        let r = s.call("GET", "/health", Some(token), None).await;
        assert_eq!(r.body["workers_online"], 1, "{}", r.body);
        assert_eq!(r.body["tasks_pending"], 0);
    }
}

#[test]
fn equal_worker_and_client_tokens_refuse_to_start() {
    let out = bin()
        .args(["serve", "--listen", "127.0.0.1:0", "--db", ":memory:"])
        .env("PIFLEET_WORKER_TOKEN", JOIN)
        .env("PIFLEET_CLIENT_TOKEN", JOIN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("client_token: must differ from worker_token"),
        "{err}"
    );
}

#[tokio::test]
async fn the_gateway_takes_submit_keys_and_refuses_in_the_apis_own_shape() {
    let s = start();
    let reader = s.add_key("viewer", &["--role", "read"]);
    let app = s.add_key("app", &["--role", "submit", "--rate", "1"]);
    // A read key may not run models: 403, OpenAI's error object on /v1.
    let r = s.call("GET", "/v1/models", Some(&reader), None).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("needs role submit"));
    assert_eq!(r.body["error"]["type"], "invalid_request_error");
    // No key: 401 with OpenAI's code.
    let r = s.call("GET", "/v1/models", None, None).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "invalid_api_key");
    // A submit key: allowed, then its rate of one a minute answers 429 in Ollama's shape.
    let r = s.call("GET", "/api/tags", Some(&app), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s.call("GET", "/api/tags", Some(&app), None).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(
        r.body["error"]
            .as_str()
            .unwrap()
            .contains("1 requests per minute"),
        "{}",
        r.body
    );
    let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let r = s.call("GET", "/v1/models", Some(&app), None).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "rate_limit_exceeded");
    // The client token is an admin key: the gateway's old key keeps working.
    let r = s.call("GET", "/v1/models", Some(CLIENT), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
}
