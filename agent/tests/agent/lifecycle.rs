//! The agent's loops against a seed-protocol orchestrator double: registration, polls, heartbeats, drain, retries.

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
