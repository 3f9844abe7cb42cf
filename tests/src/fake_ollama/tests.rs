//! The double over real HTTP, and its date arithmetic.

use std::io::{BufRead, BufReader};
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use super::generate::civil_from_days;
use super::{FakeModel, FakeOllama};

#[test]
fn counts_finished_and_aborted_generations_and_takes_config_over_http() {
    let fake = FakeOllama::start(vec![FakeModel::small("m")]).unwrap();
    let url = fake.url();
    let stats = || -> Value {
        ureq::get(format!("{url}/test/stats"))
            .call()
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap()
    };
    assert_eq!(stats(), json!({"active": 0, "completed": 0, "aborted": 0}));
    ureq::post(format!("{url}/test/config"))
        .send_json(json!({"tokens": 3, "token_delay_ms": 1}))
        .unwrap();
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let text = ureq::post(format!("{url}/api/chat"))
        .send_json(&chat)
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert_eq!(text.lines().count(), 4, "3 tokens and the final object");
    assert_eq!(stats()["completed"], 1);

    fake.set_tokens(1000);
    fake.token_delay(Duration::from_millis(20));
    let mut resp = ureq::post(format!("{url}/api/chat"))
        .send_json(&chat)
        .unwrap();
    let mut first = String::new();
    BufReader::new(resp.body_mut().as_reader())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("tok1"), "{first}");
    assert_eq!(fake.active(), 1);
    drop(resp);
    let start = std::time::Instant::now();
    while fake.aborted() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never saw the hang-up"
        );
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!((fake.active(), fake.completed()), (0, 1));
}

#[test]
fn civil_dates_are_right() {
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(19_723), (2024, 1, 1));
}
