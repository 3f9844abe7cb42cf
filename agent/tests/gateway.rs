//! The agent's side of the gateway (`ollama_api` tasks) against the Ollama double and a
//! small orchestrator double: every endpoint, the result's `response` against what the
//! double itself answers with `stream: false`, live streaming of each line while Ollama
//! still generates, and a 409 or a broken upload dropping the Ollama request at once.

mod fake_orch;

mod api {
    use std::time::Duration;

    use pifleet_agent::ollama::Ollama;
    use pifleet_agent::runner::Runner;
    use pifleet_protocol::{TaskAssignment, TaskOutcome};
    use pifleet_system_tests::fake_ollama::{FakeModel, FakeOllama};
    use serde_json::{json, Value};

    const MODEL: &str = "llama3.2:1b";

    fn setup() -> (FakeOllama, Runner) {
        let fake = FakeOllama::start(vec![FakeModel::small(MODEL)]).unwrap();
        let ollama = Ollama::new(
            &fake.url(),
            Duration::from_millis(10),
            Duration::from_millis(50),
        );
        let runner = Runner::new(
            ollama,
            None,
            None,
            Duration::from_secs(20),
            Duration::from_secs(5),
        );
        (fake, runner)
    }

    fn api_task(endpoint: &str, request: Value, stream: bool) -> TaskAssignment {
        TaskAssignment {
            task_id: "gw-1".into(),
            task_type: "ollama_api".into(),
            data: json!({"model": MODEL, "endpoint": endpoint, "request": request, "stream": stream}),
            priority: Some(8),
            attempt: Some(1),
            timeout_s: None,
        }
    }

    /// What the double answers itself, asked directly.
    fn direct(fake: &FakeOllama, path: &str, body: Value) -> Value {
        ureq::post(format!("{}{path}", fake.url()))
            .send_json(&body)
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap()
    }

    /// `created_at` is the clock; everything else must match.
    fn without_clock(mut v: Value) -> Value {
        if let Some(o) = v.as_object_mut() {
            o.remove("created_at");
        }
        v
    }

    fn ok(o: &TaskOutcome) -> &Value {
        assert!(o.success, "{o:?}");
        o.response.as_ref().expect("a response")
    }

    #[test]
    fn chat_reports_the_body_ollama_answers_without_streaming() {
        let (fake, runner) = setup();
        fake.set_reply("Rayleigh scattering makes it blue.");
        let request = json!({
            "model": MODEL,
            "messages": [{"role": "user", "content": "Why is the sky blue?"}],
            "options": {"temperature": 0.1, "seed": 7}
        });
        let o = runner.run(&api_task("chat", request.clone(), false));
        let response = ok(&o).clone();
        let mut plain = request.clone();
        plain["stream"] = json!(false);
        assert_eq!(
            without_clock(response.clone()),
            without_clock(direct(&fake, "/api/chat", plain))
        );
        assert_eq!(
            response["message"]["content"],
            "Rayleigh scattering makes it blue."
        );
        assert_eq!(
            o.output.as_deref(),
            Some("Rayleigh scattering makes it blue.")
        );
        assert_eq!(o.completion_tokens, Some(5));
        assert_eq!(o.prompt_eval_ms, Some(70));
        assert_eq!(o.eval_ms, Some(250));
        assert_eq!(o.load_duration_ms, Some(80));
        assert_eq!(o.tokens_per_s, Some(20.0));
        let sent = &fake.generations()[0];
        assert_eq!(
            sent.body["stream"],
            json!(true),
            "always streamed from Ollama"
        );
        assert_eq!(
            sent.body["options"], request["options"],
            "passed as it came"
        );
    }

    #[test]
    fn generate_streamed_to_nowhere_still_reports_the_whole_answer() {
        let (fake, runner) = setup();
        fake.set_tokens(12);
        let request = json!({"model": MODEL, "prompt": "count", "raw": true});
        let o = runner.run(&api_task("generate", request.clone(), true));
        let response = ok(&o).clone();
        let mut plain = request;
        plain["stream"] = json!(false);
        assert_eq!(
            without_clock(response.clone()),
            without_clock(direct(&fake, "/api/generate", plain))
        );
        assert_eq!(response["context"], json!([1, 2, 3]));
        assert_eq!(response["eval_count"], 12);
    }

    #[test]
    fn embed_and_show_report_ollamas_answer() {
        let (fake, runner) = setup();
        let request = json!({"model": MODEL, "input": ["why is the sky blue", "sunsets"]});
        let o = runner.run(&api_task("embed", request.clone(), false));
        assert_eq!(ok(&o), &direct(&fake, "/api/embed", request));
        assert_eq!(ok(&o)["embeddings"].as_array().unwrap().len(), 2);
        assert_eq!(o.prompt_tokens, Some(6));
        assert_eq!(o.model.as_deref(), Some(MODEL));

        let o = runner.run(&api_task("show", json!({}), false));
        assert_eq!(ok(&o)["details"]["family"], "llama");
        assert_eq!(
            fake.requests().last().unwrap().body["model"],
            MODEL,
            "data.model fills a request that names none"
        );
        assert!(ok(&o)["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("completion")));
    }

    #[test]
    fn unknown_model_and_bad_data_fail_with_the_reason() {
        let (fake, runner) = setup();
        let mut t = api_task("show", json!({"model": "mistral:7b"}), false);
        t.data["model"] = json!("mistral:7b");
        let o = runner.run(&t);
        assert!(!o.success);
        assert!(o.error.as_deref().unwrap().contains("mistral:7b"), "{o:?}");
        assert_eq!(o.retryable, None);

        let o = runner.run(&api_task("pull", json!({}), false));
        let e = o.error.unwrap();
        assert!(
            e.contains("`pull`") && e.contains("chat, generate, embed, show"),
            "{e}"
        );
        let o = runner.run(&api_task("chat", json!("hi"), true));
        assert!(o.error.unwrap().contains("data.request must be an object"));
        assert_eq!(fake.requests().len(), 1, "bad data never reaches Ollama");
    }

    #[test]
    fn seed_llm_tasks_carry_prompt_and_eval_time_too() {
        let (_fake, runner) = setup();
        let o = runner.run(&TaskAssignment {
            task_type: "agent_action".into(),
            data: json!({"model": MODEL, "prompt": "hi"}),
            ..api_task("chat", json!({}), false)
        });
        assert!(o.success, "{o:?}");
        assert_eq!(o.prompt_eval_ms, Some(70));
        assert!(o.eval_ms.is_some());
        assert_eq!(
            o.response, None,
            "only the gateway's type reports a response"
        );
    }
}

mod streaming {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use pifleet_agent::watchdog::NoNotifier;
    use pifleet_agent::{Config, Handle};
    use pifleet_protocol::stream_path;
    use pifleet_system_tests::fake_ollama::{FakeModel, FakeOllama};
    use pifleet_system_tests::fake_seed::SeedOrchestrator;
    use pifleet_system_tests::fleet::wait_for;
    use serde_json::{json, Value};
    use tempfile::TempDir;

    use crate::fake_orch::{FakeOrch, StreamMode};

    const MODEL: &str = "llama3.2:1b";
    const LIMIT: Duration = Duration::from_secs(20);

    struct Rig {
        ollama: Arc<FakeOllama>,
        orch: FakeOrch,
        agent: Option<Handle>,
        _dir: TempDir,
    }

    impl Drop for Rig {
        fn drop(&mut self) {
            drop(self.agent.take());
        }
    }

    /// An agent between the Ollama double and the orchestrator double; each streamed
    /// line is stamped with the double's counts at the moment it arrived.
    fn rig(ollama_url: Option<String>) -> Rig {
        let ollama = Arc::new(FakeOllama::start(vec![FakeModel::small(MODEL)]).unwrap());
        let seen = Arc::new(Mutex::new(ollama.clone()));
        let orch = FakeOrch::start(move || {
            let o = seen.lock().unwrap();
            json!({"active": o.active(), "completed": o.completed()})
        });
        let dir = tempfile::tempdir().unwrap();
        let url = ollama_url.unwrap_or_else(|| ollama.url());
        let mut cfg = Config::for_test(&orch.url(), &url, "pi-1", dir.path());
        cfg.worker_token = Some("worker-secret".into());
        let agent = Handle::spawn(cfg, Arc::new(NoNotifier));
        Rig {
            ollama,
            orch,
            agent: Some(agent),
            _dir: dir,
        }
    }

    fn chat_task(id: &str, stream: bool) -> Value {
        json!({
            "task_id": id, "type": "ollama_api", "attempt": 1,
            "data": {"model": MODEL, "endpoint": "chat", "stream": stream,
                     "request": {"model": MODEL, "messages": [{"role": "user", "content": "count"}]}}
        })
    }

    #[test]
    fn each_line_leaves_as_ollama_writes_it_while_it_still_generates() {
        let r = rig(None);
        r.ollama.set_tokens(20);
        r.ollama.token_delay(Duration::from_millis(30));
        r.orch.push_task(chat_task("g-1", true));
        let result = wait_for("the result", LIMIT, || r.orch.result_for("g-1"));
        let streams = r.orch.streams();
        assert_eq!(streams.len(), 1, "one upload per generation");
        let s = &streams[0];
        assert_eq!(s.path, stream_path("g-1", "pi-1", 1));
        assert!(s.chunked, "a chunked body");
        assert_eq!(s.content_type, "application/x-ndjson");
        assert_eq!(
            s.authorization.as_deref(),
            Some("Bearer worker-secret"),
            "worker auth"
        );
        assert!(s.ended, "the body ended cleanly");
        assert_eq!(s.lines.len(), 21, "20 tokens and the final object");
        for (i, line) in s.lines.iter().enumerate() {
            assert!(line.text.ends_with('\n') && !line.text.ends_with("\n\n"));
            let v: Value = serde_json::from_str(&line.text).unwrap();
            if i < 20 {
                let word = format!("tok{}", i + 1);
                let piece = if i < 19 { word + " " } else { word };
                assert_eq!(v["message"]["content"], json!(piece));
                assert_eq!(v["done"], false);
            } else {
                assert_eq!(v["done"], true);
                assert_eq!(v["eval_count"], 20);
            }
        }
        assert_eq!(
            s.lines[0].probe,
            json!({"active": 1, "completed": 0}),
            "the first line arrived while Ollama was still generating"
        );
        let res = &result["result"];
        assert_eq!(result["attempt"], 1);
        assert_eq!(res["success"], true, "{res}");
        let text: String = (1..=20)
            .map(|i| format!("tok{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(res["response"]["message"]["content"], json!(text));
        assert_eq!(res["response"]["done_reason"], "stop");
        assert_eq!(res["output"], json!(text));
        assert_eq!(res["completion_tokens"], 20);
        assert!(
            res["prompt_eval_ms"].is_u64() && res["eval_ms"].is_u64(),
            "{res}"
        );
        assert_eq!(r.ollama.aborted(), 0);
    }

    fn cut_off(mode: StreamMode, lines: usize) {
        let r = rig(None);
        r.ollama.set_tokens(200);
        r.ollama.token_delay(Duration::from_millis(20));
        r.orch.set_mode(mode);
        r.orch.push_task(chat_task("cut-1", true));
        r.orch.push_task(
            json!({"task_id": "next-2", "type": "evolution_mutation", "attempt": 1,
            "data": {"genome": {"a": 1.0}, "seed": 1}}),
        );
        wait_for("the generation dropped", LIMIT, || {
            (r.ollama.aborted() == 1).then_some(())
        });
        assert_eq!(r.ollama.completed(), 0);
        let next = wait_for("the next task's result", LIMIT, || {
            r.orch.result_for("next-2")
        });
        assert_eq!(next["result"]["success"], true, "the slot was freed");
        assert_eq!(r.orch.result_for("cut-1"), None, "nothing reported for it");
        let s = &r.orch.streams()[0];
        assert!(!s.ended);
        assert_eq!(s.lines.len(), lines);
    }

    #[test]
    fn a_409_mid_stream_drops_the_ollama_request_and_reports_nothing() {
        cut_off(StreamMode::ConflictAfter(3), 3);
    }

    #[test]
    fn a_409_before_the_first_line_drops_the_ollama_request_too() {
        // The attempt was revoked between the assignment and the upload.
        cut_off(StreamMode::ConflictAfter(0), 0);
    }

    #[test]
    fn a_broken_upload_drops_the_ollama_request_and_reports_nothing() {
        cut_off(StreamMode::HangUpAfter(3), 3);
    }

    #[test]
    fn ollama_failing_mid_stream_ends_the_stream_with_its_error_and_fails_the_task() {
        let r = rig(None);
        r.ollama
            .fail_mid_stream(Some("llama runner process has terminated: signal: killed"));
        r.orch.push_task(chat_task("f-1", true));
        let result = wait_for("the result", LIMIT, || r.orch.result_for("f-1"));
        let s = &r.orch.streams()[0];
        assert!(s.ended, "ended cleanly, not cut off");
        let last: Value = serde_json::from_str(&s.lines.last().unwrap().text).unwrap();
        assert_eq!(
            last,
            json!({"error": "llama runner process has terminated: signal: killed"})
        );
        assert_eq!(result["result"]["success"], false);
        assert!(result["result"]["error"]
            .as_str()
            .unwrap()
            .contains("llama runner process has terminated"));
    }

    #[test]
    fn a_streaming_task_that_cannot_start_opens_no_stream() {
        let r = rig(None);
        let mut t = chat_task("m-1", true);
        t["data"]["model"] = json!("mistral:7b");
        t["data"]["request"]["model"] = json!("mistral:7b");
        r.orch.push_task(t);
        let result = wait_for("the result", LIMIT, || r.orch.result_for("m-1"));
        assert_eq!(result["result"]["success"], false);
        assert!(r.orch.streams().is_empty());
    }

    #[test]
    fn ollama_api_is_offered_only_while_ollama_answers() {
        let task_types = |r: &Rig| {
            wait_for("a registration", LIMIT, || {
                r.orch.registrations().first().cloned()
            })["capabilities"]["task_types"]
                .clone()
        };
        let r = rig(None);
        assert!(task_types(&r)
            .as_array()
            .unwrap()
            .contains(&json!("ollama_api")));
        // A seed orchestrator answers 404 to /api/tags: an Ollama that does not work.
        let seed = SeedOrchestrator::start().unwrap();
        let dead = rig(Some(seed.url()));
        let types = task_types(&dead);
        assert!(
            !types.as_array().unwrap().contains(&json!("ollama_api")),
            "{types}"
        );
        assert!(types
            .as_array()
            .unwrap()
            .contains(&json!("evolution_mutation")));
    }
}
