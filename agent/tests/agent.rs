//! Integration tests of the agent's pieces against fakes of the outside world: a fake Pi
//! /proc + /sys tree and the faithful Ollama double of `pifleet-system-tests`.

mod util;

mod metrics {
    use crate::util::{tempdir, FakePi};
    use pifleet_agent::probe::{Probe, SysProbe};

    #[test]
    fn hot_throttled_pi_reports_heat_and_throttle_bits() {
        let pi = FakePi::new("hot");
        pi.set_temp_millic(84_704);
        pi.set_throttled("0x50006\n");
        pi.set_meminfo(3_884_096, 2_900_000, 102_396, 102_396);
        let state = tempdir("hot-state");
        let mut probe = SysProbe::new(&pi.proc_root, &pi.sys_root, state.path());
        pi.set_cpu(1900, 1100); // +900 busy, +100 idle since the first sample
        let m = probe.metrics();
        assert_eq!(m.cpu_percent, Some(90.0));
        assert!((m.temperature_c.unwrap() - 84.704).abs() < 0.01);
        assert_eq!(m.throttled, Some(0x50006));
        assert!(m.throttled_now(), "frequency capped + throttled now");
        assert!(!m.under_voltage_now());
        assert_eq!(m.load_avg, Some([3.95, 3.5, 2.1]));
        assert_eq!(m.uptime_s, Some(86_400));
        assert!(m.disk_free_bytes.is_some_and(|b| b > 0));

        let facts = probe.facts();
        assert_eq!(
            facts.pi_model.as_deref(),
            Some("Raspberry Pi 4 Model B Rev 1.4")
        );
        assert_eq!(facts.cores, Some(4));
        assert_eq!(facts.hostname.as_deref(), Some("pi-kitchen"));
        assert_eq!(facts.memory_total_bytes, Some(3_884_096 * 1024));
    }

    #[test]
    fn memory_starved_under_voltage_pi() {
        let pi = FakePi::new("starved");
        pi.set_temp_millic(51_000);
        pi.set_throttled("50005");
        pi.set_meminfo(948_012, 41_000, 102_396, 1_024);
        let state = tempdir("starved-state");
        let mut probe = SysProbe::new(&pi.proc_root, &pi.sys_root, state.path());
        let m = probe.metrics();
        assert_eq!(m.memory_total_bytes, Some(948_012 * 1024));
        assert_eq!(m.memory_available_bytes, Some(41_000 * 1024));
        assert_eq!(m.swap_total_bytes, Some(102_396 * 1024));
        assert_eq!(m.swap_free_bytes, Some(1_024 * 1024));
        assert!(m.under_voltage_now());
        assert_eq!(
            m.cpu_percent, None,
            "no time passed: no CPU figure, not a guess"
        );
    }

    #[test]
    fn missing_files_leave_fields_absent() {
        let empty = tempdir("empty-root");
        let empty = empty.path();
        let mut probe = SysProbe::new(&empty.join("proc"), &empty.join("sys"), empty);
        let m = probe.metrics();
        assert_eq!(m.cpu_percent, None);
        assert_eq!(m.load_avg, None);
        assert_eq!(m.memory_total_bytes, None);
        assert_eq!(m.temperature_c, None);
        assert_eq!(m.throttled, None);
        assert_eq!(m.uptime_s, None);
        let json = serde_json::to_value(&m).unwrap();
        assert!(
            json.get("temperature_c").is_none(),
            "absent, not null: {json}"
        );
        assert_eq!(probe.facts().pi_model, None);
    }
}

mod tasks {
    use std::time::Duration;

    use pifleet_agent::ollama::Ollama;
    use pifleet_agent::runner::Runner;
    use pifleet_protocol::{TaskAssignment, TaskOutcome};
    use pifleet_system_tests::fake_ollama::{FakeModel, FakeOllama};
    use serde_json::{json, Value};

    const MODEL: &str = "llama3.2:1b";

    fn setup() -> (FakeOllama, Runner) {
        let fake = FakeOllama::start(vec![FakeModel::small(MODEL)]).unwrap();
        let runner = runner_with(&fake, Duration::from_secs(5));
        (fake, runner)
    }

    fn runner_with(fake: &FakeOllama, first_token: Duration) -> Runner {
        let ollama = Ollama::new(
            &fake.url(),
            Duration::from_millis(10),
            Duration::from_millis(50),
        );
        Runner::new(ollama, None, None, Duration::from_secs(20), first_token)
    }

    fn task(kind: &str, data: Value) -> TaskAssignment {
        TaskAssignment {
            task_id: "t-1".into(),
            task_type: kind.into(),
            data,
            priority: Some(5),
            attempt: Some(1),
            timeout_s: None,
        }
    }

    fn chat(model: &str) -> TaskAssignment {
        task(
            "agent_action",
            json!({
                "messages": [
                    {"role": "system", "content": "You are terse."},
                    {"role": "user", "content": "Why is the sky blue?"}
                ],
                "model": model,
                "temperature": 0.8,
                "keep_alive": "30m"
            }),
        )
    }

    fn assert_failed(o: &TaskOutcome, needle: &str) {
        assert!(!o.success, "{o:?}");
        let e = o.error.as_deref().unwrap_or("");
        assert!(e.contains(needle), "error `{e}` lacks `{needle}`");
    }

    #[test]
    fn agent_action_streams_chat_and_reports_stats() {
        let (fake, runner) = setup();
        fake.set_reply("Rayleigh scattering makes it blue.");
        let o = runner.run(&chat(MODEL));
        assert!(o.success, "{o:?}");
        assert_eq!(
            o.output.as_deref(),
            Some("Rayleigh scattering makes it blue.")
        );
        assert_eq!(o.model.as_deref(), Some(MODEL));
        assert_eq!(o.completion_tokens, Some(5));
        assert_eq!(o.prompt_tokens, Some(3 + 5 + 8));
        assert_eq!(o.tokens_used, Some(21));
        assert_eq!(o.tokens_per_s, Some(20.0), "5 tokens in 250 ms");
        assert_eq!(o.duration_ms, Some(400));
        assert_eq!(o.load_duration_ms, Some(80));
        let sent = &fake.generations()[0];
        assert_eq!(sent.path, "/api/chat");
        assert_eq!(sent.body["stream"], json!(true));
        assert_eq!(sent.body["options"]["temperature"], json!(0.8));
        assert_eq!(sent.body["keep_alive"], json!("30m"));
        assert_eq!(
            sent.body["messages"][1]["content"],
            json!("Why is the sky blue?")
        );
    }

    #[test]
    fn code_generation_uses_generate_with_the_language() {
        let (fake, runner) = setup();
        fake.set_reply("def add(a, b): return a + b");
        let o = runner.run(&task(
            "code_generation",
            json!({"prompt": "Add two numbers", "language": "python", "model": MODEL}),
        ));
        assert!(o.success, "{o:?}");
        assert_eq!(o.output.as_deref(), Some("def add(a, b): return a + b"));
        assert_eq!(o.extra["language"], json!("python"));
        let sent = &fake.generations()[0];
        assert_eq!(sent.path, "/api/generate");
        assert_eq!(sent.body["prompt"], json!("Add two numbers"));
        assert!(sent.body["system"].as_str().unwrap().contains("python"));
    }

    #[test]
    fn unknown_model_fails_with_ollamas_message() {
        let (_fake, runner) = setup();
        let o = runner.run(&chat("mistral:7b"));
        assert_failed(&o, "model \"mistral:7b\" not found, try pulling it first");
        assert_eq!(
            o.retryable, None,
            "another try here would fail the same way"
        );
    }

    #[test]
    fn busy_ollama_is_retried_then_succeeds() {
        let (fake, runner) = setup();
        fake.busy_next(2);
        let o = runner.run(&chat(MODEL));
        assert!(o.success, "{o:?}");
        assert_eq!(fake.generations().len(), 3, "two 503s, then the stream");
    }

    #[test]
    fn ollama_busy_for_good_is_a_retryable_failure() {
        let (fake, runner) = setup();
        fake.busy_next(100);
        let o = runner.run(&chat(MODEL));
        assert_failed(&o, "busy");
        assert_eq!(o.retryable, Some(true));
    }

    #[test]
    fn error_line_mid_stream_is_a_failure() {
        let (fake, runner) = setup();
        fake.fail_mid_stream(Some("llama runner process has terminated: signal: killed"));
        let o = runner.run(&chat(MODEL));
        assert_failed(&o, "llama runner process has terminated");
        assert_eq!(o.output, None, "a half answer is not an answer");
    }

    #[test]
    fn slow_first_token_times_out_on_its_own_clock() {
        let fake = FakeOllama::start(vec![FakeModel::small(MODEL)]).unwrap();
        fake.delay_first_token(Duration::from_millis(1500));
        let runner = runner_with(&fake, Duration::from_millis(300));
        let o = runner.run(&chat(MODEL));
        assert_failed(&o, "no first token");
        assert_eq!(o.retryable, Some(true));
    }

    #[test]
    fn unreachable_ollama_is_a_retryable_failure() {
        let fake = FakeOllama::start(vec![]).unwrap();
        let url = fake.url();
        drop(fake);
        std::thread::sleep(Duration::from_millis(50));
        let ollama = Ollama::new(&url, Duration::from_millis(10), Duration::from_millis(50));
        let runner = Runner::new(
            ollama,
            None,
            None,
            Duration::from_secs(5),
            Duration::from_secs(2),
        );
        let o = runner.run(&chat(MODEL));
        assert!(!o.success);
        assert_eq!(o.retryable, Some(true), "{o:?}");
    }

    #[test]
    fn unknown_task_type_names_the_supported_ones() {
        let (_fake, runner) = setup();
        let o = runner.run(&task("image_generation", json!({})));
        assert_failed(&o, "unsupported task type `image_generation`");
        for t in pifleet_protocol::task_type::ALL {
            assert!(o.error.as_deref().unwrap().contains(t));
        }
    }

    #[test]
    fn malformed_task_data_fails_without_calling_ollama() {
        let (fake, runner) = setup();
        let o = runner.run(&task(
            "agent_action",
            json!({"messages": "hi", "model": MODEL}),
        ));
        assert_failed(&o, "data.messages must be an array");
        let o = runner.run(&task(
            "agent_action",
            json!({"messages": [{"role": "user", "content": "x"}]}),
        ));
        assert_failed(&o, "data.model is missing");
        assert!(fake.generations().is_empty());
    }

    #[test]
    fn evolution_tasks_run_natively() {
        let (fake, runner) = setup();
        let o = runner.run(&task(
            "evolution_crossover",
            json!({"genome1": {"param1": 0.8, "param2": 100}, "genome2": {"param1": 0.6, "param2": 150}}),
        ));
        assert!(o.success, "{o:?}");
        let g = o.genome.unwrap();
        assert!(g["param1"] == json!(0.8) || g["param1"] == json!(0.6));
        let o = runner.run(&task(
            "evolution_mutation",
            json!({"genome": {"param1": 0.7, "param2": 120}, "mutation_rate": 0.1, "seed": 99}),
        ));
        assert!(o.success, "{o:?}");
        assert_eq!(o.extra["seed"], json!(99));
        assert!(fake.generations().is_empty(), "no LLM needed");
    }

    #[test]
    fn tags_and_ps_read_the_double() {
        let (fake, runner) = setup();
        let ollama = Ollama::new(
            &fake.url(),
            Duration::from_millis(10),
            Duration::from_millis(50),
        );
        let tags = ollama.tags().unwrap();
        assert_eq!(tags.len(), 1);
        assert_eq!(tags[0].name, MODEL);
        assert_eq!(tags[0].family.as_deref(), Some("llama"));
        assert_eq!(tags[0].quantization.as_deref(), Some("Q4_K_M"));
        assert!(ollama.ps().unwrap().is_empty());
        assert!(runner.run(&chat(MODEL)).success);
        let ps = ollama.ps().unwrap();
        assert_eq!(ps[0].name, MODEL);
        assert!(ps[0].expires_at.is_some());
    }
}

mod lifecycle {
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use pifleet_agent::client::Client;
    use pifleet_agent::error::ClientError;
    use pifleet_agent::ollama::Ollama;
    use pifleet_agent::probe::HostFacts;
    use pifleet_agent::registration::Registrar;
    use pifleet_agent::watchdog::Notifier;
    use pifleet_agent::{Config, Handle};
    use pifleet_system_tests::fake_ollama::{FakeModel, FakeOllama};
    use pifleet_system_tests::fake_seed::SeedOrchestrator;
    use pifleet_system_tests::fleet::wait_for;
    use serde_json::json;

    use tempfile::TempDir;

    use crate::util::{tempdir, FakePi};

    const LIMIT: Duration = Duration::from_secs(20);

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);
    impl Notifier for Recorder {
        fn notify(&self, message: &str) {
            self.0.lock().unwrap().push(message.to_string());
        }
    }
    impl Recorder {
        fn has(&self, m: &str) -> bool {
            self.0.lock().unwrap().iter().any(|x| x == m)
        }
    }

    fn start(
        name: &str,
        seed: &SeedOrchestrator,
        ollama: &FakeOllama,
    ) -> (TempDir, Handle, Arc<Recorder>, Config) {
        let dir = tempdir(name);
        let mut cfg = Config::for_test(&seed.url(), &ollama.url(), name, dir.path());
        cfg.watchdog = Some(Duration::from_millis(200));
        let rec = Arc::new(Recorder::default());
        // The directory first: dropped last, after the agent has stopped.
        (dir, Handle::spawn(cfg.clone(), rec.clone()), rec, cfg)
    }

    #[test]
    fn seed_orchestrator_without_long_poll_gets_interval_polls_not_a_storm() {
        let seed = SeedOrchestrator::start().unwrap();
        let ollama = FakeOllama::start(vec![]).unwrap();
        let (_dir, agent, rec, _) = start("seed-poll", &seed, &ollama);
        wait_for("READY=1", LIMIT, || rec.has("READY=1").then_some(()));
        let first = wait_for("a first poll", LIMIT, || {
            seed.seen_matching("GET", "/api/workers/", "/tasks")
                .first()
                .cloned()
        });
        // The seed answers at once; the agent must fall back to its 200 ms interval.
        std::thread::sleep(Duration::from_millis(1000));
        let polls = seed.seen_matching("GET", "/api/workers/", "/tasks");
        let span = polls.last().unwrap().at - first.at;
        assert!(polls.len() >= 2, "kept polling: {}", polls.len());
        assert!(
            (polls.len() as f64) < 3.0 + span.as_secs_f64() / 0.1,
            "{} polls in {span:?} is a busy loop",
            polls.len()
        );
        assert!(
            polls[0].path.contains("?wait="),
            "asks for a long poll: {}",
            polls[0].path
        );
        agent.stop().unwrap();
        assert!(rec.has("STOPPING=1"));
        assert_eq!(
            seed.seen_matching("POST", "/api/workers/", "/unregister")
                .len(),
            1
        );
    }

    #[test]
    fn seed_task_runs_and_its_result_is_posted() {
        let seed = SeedOrchestrator::start().unwrap();
        let ollama = FakeOllama::start(vec![]).unwrap();
        seed.push_task(json!({"task_id": "uuid-1234", "type": "evolution_crossover",
            "data": {"genome1": {"param1": 0.8, "param2": 100}, "genome2": {"param1": 0.6, "param2": 150}}}));
        let (_dir, agent, _rec, cfg) = start("seed-task", &seed, &ollama);
        let posted = wait_for("the result", LIMIT, || {
            seed.seen_matching("POST", "/api/tasks/uuid-1234", "/result")
                .first()
                .cloned()
        });
        assert_eq!(posted.body["worker_id"], "seed-task");
        assert_eq!(posted.body["result"]["success"], true);
        assert!(posted.body["result"]["genome"]["param1"].is_number());
        assert!(
            posted.body.get("attempt").is_none(),
            "the seed sent no attempt: {}",
            posted.body
        );
        agent.stop().unwrap();
        let spool = cfg.state_dir.join("spool");
        assert_eq!(
            std::fs::read_dir(spool).unwrap().count(),
            0,
            "delivered results leave the spool"
        );
    }

    #[test]
    fn forgotten_worker_registers_again() {
        let seed = SeedOrchestrator::start().unwrap();
        let ollama = FakeOllama::start(vec![]).unwrap();
        let (_dir, agent, _rec, _) = start("forgotten", &seed, &ollama);
        wait_for("registration", LIMIT, || {
            (seed
                .seen_matching("POST", "/api/workers/register", "")
                .len()
                == 1)
                .then_some(())
        });
        seed.forget("forgotten");
        wait_for("a second registration", LIMIT, || {
            (seed
                .seen_matching("POST", "/api/workers/register", "")
                .len()
                >= 2)
                .then_some(())
        });
        agent.stop().unwrap();
    }

    #[test]
    fn a_404_already_answered_by_another_loop_registers_nobody() {
        let seed = SeedOrchestrator::start().unwrap();
        let ollama = FakeOllama::start(vec![]).unwrap();
        let dir = tempdir("policy");
        let cfg = Config::for_test(&seed.url(), &ollama.url(), "policy", dir.path());
        let client = Client::new(&seed.url(), None);
        let ollama_client = Ollama::new(&ollama.url(), cfg.retry_base, cfg.retry_max);
        let reg = Registrar::new(&cfg, client, ollama_client, HostFacts::default());
        let registrations = || {
            seed.seen_matching("POST", "/api/workers/register", "")
                .len()
        };
        assert!(!reg.registered());
        let before = reg.epoch();
        reg.register(None).unwrap();
        assert!(reg.registered());
        let why = ClientError::Status {
            status: 404,
            message: "Worker policy not found".into(),
        };
        // Two loops saw a 404 on calls that began before that registration: both are
        // answered by it.
        reg.forgotten(before, &why, None).unwrap();
        reg.forgotten(before, &why, None).unwrap();
        assert_eq!(registrations(), 1);
        // A 404 on a call that began after it: the orchestrator forgot us since.
        reg.forgotten(reg.epoch(), &why, None).unwrap();
        assert_eq!(registrations(), 2);
    }

    #[test]
    fn heartbeats_carry_fake_pi_metrics_ollama_state_and_models() {
        let seed = SeedOrchestrator::start().unwrap();
        let ollama = FakeOllama::start(vec![FakeModel::small("llama3.2:1b")]).unwrap();
        let pi = FakePi::new("hb-pi");
        pi.set_temp_millic(82_000);
        pi.set_throttled("0x80008");
        pi.set_meminfo(3_884_096, 500_000, 0, 0);
        let state = tempdir("hb-state");
        let mut cfg = Config::for_test(&seed.url(), &ollama.url(), "hb", state.path());
        cfg.proc_root = pi.proc_root.clone();
        cfg.sys_root = pi.sys_root.clone();
        let agent = Handle::spawn(cfg, Arc::new(Recorder::default()));

        let reg = wait_for("registration", LIMIT, || {
            seed.seen_matching("POST", "/api/workers/register", "")
                .first()
                .cloned()
        });
        let caps = &reg.body["capabilities"];
        assert_eq!(caps["models"], json!(["llama3.2:1b"]));
        assert_eq!(caps["pi_model"], "Raspberry Pi 4 Model B Rev 1.4");
        assert_eq!(caps["cores"], 4);
        assert_eq!(caps["slots"], 1);
        assert_eq!(caps["model_details"][0]["family"], "llama");

        let hb = wait_for("a heartbeat", LIMIT, || {
            seed.seen_matching("POST", "/api/workers/", "/heartbeat")
                .first()
                .cloned()
        });
        let m = &hb.body["metrics"];
        assert_eq!(m["temperature_c"], json!(82.0));
        assert_eq!(m["throttled"], json!(0x80008));
        assert_eq!(m["memory_available_bytes"], json!(500_000u64 * 1024));
        assert_eq!(m["ollama_reachable"], json!(true));
        assert_eq!(m["models_present"], json!(["llama3.2:1b"]));
        assert_eq!(m["models_loaded"], json!([]));
        assert!(m.get("swap_total_bytes").is_some());
        assert_eq!(hb.body["running_tasks"], json!([]));
        assert_eq!(hb.body["spooled_results"], json!([]));

        // A model pulled on the node: the agent registers again with the new set.
        let mut models = vec![
            FakeModel::small("llama3.2:1b"),
            FakeModel::small("qwen2.5:0.5b"),
        ];
        models[1].family = "qwen2".into();
        ollama.set_models(models);
        let again = wait_for("re-registration with two models", LIMIT, || {
            seed.seen_matching("POST", "/api/workers/register", "")
                .into_iter()
                .find(|r| {
                    r.body["capabilities"]["models"]
                        .as_array()
                        .is_some_and(|m| m.len() == 2)
                })
        });
        assert_eq!(again.body["capabilities"]["models"][1], "qwen2.5:0.5b");
        agent.stop().unwrap();
    }

    #[test]
    fn drained_node_stops_polling_until_undrained() {
        let seed = SeedOrchestrator::start().unwrap();
        let ollama = FakeOllama::start(vec![]).unwrap();
        seed.set_draining(true);
        let (_dir, agent, _rec, _) = start("drained", &seed, &ollama);
        wait_for("two heartbeats", LIMIT, || {
            (seed
                .seen_matching("POST", "/api/workers/", "/heartbeat")
                .len()
                >= 2)
                .then_some(())
        });
        // Before the first heartbeat answer the agent cannot know; after it, no polls.
        let before = seed.seen_matching("GET", "/api/workers/", "/tasks").len();
        std::thread::sleep(Duration::from_millis(500));
        let during = seed.seen_matching("GET", "/api/workers/", "/tasks").len();
        assert!(
            during <= before + 1,
            "a drained node takes no work: {before} -> {during} polls"
        );
        seed.set_draining(false);
        wait_for("polling again", LIMIT, || {
            (seed.seen_matching("GET", "/api/workers/", "/tasks").len() > during + 1).then_some(())
        });
        agent.stop().unwrap();
    }

    #[test]
    fn unreachable_orchestrator_is_retried_and_never_ready() {
        let ollama = FakeOllama::start(vec![]).unwrap();
        // An orchestrator that hangs up on every request, on a port this test holds the
        // whole time (a freed port could be taken by another test's server).
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::<String>::new()));
        let done = Arc::new(AtomicBool::new(false));
        let hangs_up = {
            let (requests, done) = (requests.clone(), done.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming().flatten() {
                    if done.load(Ordering::SeqCst) {
                        break;
                    }
                    let mut line = String::new();
                    let _ = BufReader::new(&conn).read_line(&mut line);
                    requests.lock().unwrap().push(line.trim().to_string());
                }
            })
        };
        let dir = tempdir("lonely");
        let cfg = Config::for_test(
            &format!("http://{addr}"),
            &ollama.url(),
            "lonely",
            dir.path(),
        );
        let rec = Arc::new(Recorder::default());
        let agent = Handle::spawn(cfg, rec.clone());
        let seen = wait_for("three registration attempts", LIMIT, || {
            let r = requests.lock().unwrap().clone();
            (r.len() >= 3).then_some(r)
        });
        for r in &seen {
            assert_eq!(r, "POST /api/workers/register HTTP/1.1", "{seen:?}");
        }
        assert!(!rec.has("READY=1"), "READY only after a registration");
        agent.stop().unwrap();
        assert!(rec.has("STOPPING=1"));
        assert!(
            !requests
                .lock()
                .unwrap()
                .iter()
                .any(|r| r.contains("unregister")),
            "never registered, so nothing to unregister"
        );
        done.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(addr);
        hangs_up.join().unwrap();
    }
}

mod binary {
    use std::process::Command;
    use std::time::Duration;

    use pifleet_system_tests::fake_seed::SeedOrchestrator;
    use pifleet_system_tests::fleet::wait_for;

    use crate::util::tempdir;

    const BIN: &str = env!("CARGO_BIN_EXE_pifleet-agent");

    fn agent(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        let mut cmd = Command::new(BIN);
        cmd.args(args).env_remove("PIFLEET_AGENT_CONFIG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run pifleet-agent")
    }

    #[test]
    fn bad_config_exits_2_naming_file_key_and_fix() {
        let dir = tempdir("bin-bad-config");
        let file = dir.path().join("agent.toml");
        std::fs::write(
            &file,
            "orchestrator_url = \"http://o:5000\"\nheartbeat = 10\n",
        )
        .unwrap();
        let out = agent(&["--config", file.to_str().unwrap(), "--id", "x"], &[]);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(file.to_str().unwrap()), "{err}");
        assert!(err.contains("heartbeat"), "{err}");
        assert!(err.contains("fix:"), "{err}");

        let out = agent(&["--id", "x"], &[("PIFLEET_OLLAMA_URL", "localhost:11434")]);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("PIFLEET_OLLAMA_URL") && err.contains("ollama_url"),
            "{err}"
        );

        let out = agent(&["--config", "/nonexistent/agent.toml"], &[]);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/agent.toml"));

        let out = agent(&["--frobnicate"], &[]);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("usage:"));
    }

    #[test]
    fn help_and_version_exit_0() {
        let out = agent(&["--help"], &[]);
        assert_eq!(out.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&out.stdout).contains("--orchestrator URL"));
        let out = agent(&["--version"], &[]);
        assert_eq!(out.status.code(), Some(0));
        let version = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            version.trim(),
            format!("pifleet-agent {}", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn daemon_detaches_writes_pid_and_log_and_stops_on_sigterm() {
        let seed = SeedOrchestrator::start().unwrap();
        let dir = tempdir("bin-daemon");
        let state = dir.path().join("state");
        let out = agent(
            &[
                "--daemon",
                "--orchestrator",
                &seed.url(),
                "--ollama",
                "http://127.0.0.1:9",
                "--id",
                "daemon-pi",
                "--state-dir",
                state.to_str().unwrap(),
            ],
            &[
                ("PIFLEET_HEARTBEAT_INTERVAL_S", "0.2"),
                ("PIFLEET_POLL_INTERVAL_S", "0.2"),
            ],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "the launching process returns at once"
        );
        let pid_file = state.join("pifleet-agent.pid");
        let pid = wait_for("the pid file", Duration::from_secs(10), || {
            std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
        });
        wait_for("a registration", Duration::from_secs(10), || {
            (!seed
                .seen_matching("POST", "/api/workers/register", "")
                .is_empty())
            .then_some(())
        });
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        wait_for("the unregister", Duration::from_secs(10), || {
            (!seed
                .seen_matching("POST", "/api/workers/", "/unregister")
                .is_empty())
            .then_some(())
        });
        wait_for("the daemon to exit", Duration::from_secs(10), || {
            (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(())
        });
        let log = std::fs::read_to_string(state.join("agent.log")).unwrap();
        assert!(log.contains("registered as daemon-pi"), "{log}");
        assert!(log.contains("stopped"), "{log}");
    }
}
