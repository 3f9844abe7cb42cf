//! The gateway as users meet it: the official `openai` and `ollama` Python packages
//! (unchanged, pinned in tests/python/requirements.txt, installed by scripts/python-venv.sh)
//! against a real orchestrator and real agents, each agent in front of its own Ollama
//! double. The Python side (tests/python/gateway_clients.py) asserts what the user sees;
//! this side checks what happened in the fleet, and kills agents at the right moment.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use pifleet_system_tests::fake_ollama::{FakeModel, FakeOllama};
use pifleet_system_tests::fleet::{start_agent, tempdir, wait_for, Orch, Proc};
use serde_json::{json, Value};

const MODEL: &str = "llama3.2:1b";
const KEY: &str = "gateway-test-client-key-0123456789";

fn python() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/pyvenv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/python-venv.sh (scripts/test.sh does)",
        p.display()
    );
    p
}

/// A Python client run; its stdout lines arrive as they are printed.
struct Py {
    child: Child,
    lines: mpsc::Receiver<String>,
    case: String,
}

impl Py {
    fn start(case: &str, base: &str, extra: Option<&str>) -> Py {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/gateway_clients.py");
        let mut cmd = Command::new(python());
        cmd.arg(script).args([case, base, MODEL, KEY]);
        if let Some(e) = extra {
            cmd.arg(e);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start python");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Py {
            child,
            lines,
            case: case.to_string(),
        }
    }

    /// Lets a case started with `on-go` send its request.
    fn go(&mut self) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin.write_all(b"go\n").expect("python reads its go line");
        stdin.flush().expect("flush");
    }

    /// The next line starting with `tag`, its rest.
    fn expect(&self, tag: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(l) if l.starts_with(tag) => return l[tag.len()..].trim().to_string(),
                Ok(_) => continue,
                Err(_) => panic!("{}: no {tag} line in time", self.case),
            }
        }
    }

    /// Waits for success and returns the RESULT object.
    fn result(mut self) -> Value {
        let result = self.lines.recv_timeout(Duration::from_secs(90));
        let status = self.child.wait().expect("python exits");
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        assert!(status.success(), "{} failed:\n{err}", self.case);
        let mut line = result.unwrap_or_default();
        while !line.starts_with("RESULT") {
            line = self
                .lines
                .recv_timeout(Duration::from_secs(5))
                .unwrap_or_else(|_| panic!("{}: no RESULT:\n{err}", self.case));
        }
        serde_json::from_str(line["RESULT".len()..].trim()).expect("RESULT is JSON")
    }
}

struct Fleet {
    orch: Orch,
    _dir: tempfile::TempDir,
    agents: Vec<(Proc, FakeOllama)>,
}

fn fleet(n: usize, reply: &str, env: &[(&str, &str)]) -> Fleet {
    let dir = tempdir("gateway");
    let mut all = vec![
        ("PIFLEET_CLIENT_TOKEN", KEY),
        ("PIFLEET_HEARTBEAT_INTERVAL_S", "0.3"),
        ("PIFLEET_DEAD_AFTER_MISSED", "3"),
        ("PIFLEET_TICK_S", "0.1"),
    ];
    all.extend_from_slice(env);
    let orch = Orch::start(&all);
    let mut agents = Vec::new();
    for i in 0..n {
        let double = FakeOllama::start(vec![FakeModel::small(MODEL)]).expect("double");
        double.set_reply(reply);
        let agent = start_agent(
            dir.path(),
            &format!("pi-{i}"),
            &orch.base,
            &double.url(),
            &[],
        );
        agents.push((agent, double));
    }
    wait_for(
        "every agent to offer ollama_api",
        Duration::from_secs(20),
        || {
            let (_, v) = orch.get("/api/nodes");
            let ready = v["nodes"].as_array()?.iter().filter(|n| {
                n["capabilities"]["task_types"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|x| x == "ollama_api"))
            });
            (ready.count() == n).then_some(())
        },
    );
    Fleet {
        orch,
        _dir: dir,
        agents,
    }
}

#[test]
fn the_official_clients_work_unchanged() {
    let f = fleet(2, "The sky is blue because of Rayleigh scattering.", &[]);
    let r = Py::start("openai_all", &f.orch.base, None).result();
    assert_eq!(r["text"], "The sky is blue because of Rayleigh scattering.");
    let r = Py::start("ollama_all", &f.orch.base, None).result();
    assert_eq!(r["text"], "The sky is blue because of Rayleigh scattering.");
    // Every request was a task in the queue, visible like any task.
    let (_, stats) = f.orch.get("/api/stats");
    // openai: chat x2, completions x2, embeddings; ollama: show, chat x2, generate x2, embed.
    assert_eq!(stats["tasks"]["completed"], 11, "{stats}");
    let (_, metrics) = f.orch.get_text("/metrics");
    assert!(
        metrics.contains(
            "pifleet_gateway_requests_total{api=\"openai\",endpoint=\"chat\",outcome=\"ok\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("pifleet_gateway_time_to_first_token_seconds_count{model=\"llama3.2:1b\"}"),
        "{metrics}"
    );
}

#[test]
fn the_first_chunk_reaches_the_user_while_the_double_still_generates() {
    let f = fleet(1, &"word ".repeat(40), &[]);
    let double = &f.agents[0].1;
    double.token_delay(Duration::from_millis(50));
    let r = Py::start("first_chunk", &f.orch.base, Some(&double.url())).result();
    let at_first = &r["at_first_chunk"];
    assert_eq!(at_first["active"], 1, "still generating: {r}");
    assert_eq!(at_first["completed"], 0, "{r}");
    assert_eq!(r["text"].as_str().unwrap().split_whitespace().count(), 40);
}

#[test]
fn a_user_who_hangs_up_cancels_the_task_and_the_node_moves_on() {
    let f = fleet(1, &"word ".repeat(200), &[]);
    let double = &f.agents[0].1;
    double.token_delay(Duration::from_millis(30));
    let py = Py::start("hang_up", &f.orch.base, None);
    let task = py.expect("TASK");
    let r = py.result();
    assert_eq!(r["chunks"], 2);
    // Ollama sees its request closed: the generation stops early.
    wait_for(
        "the double to see the abort",
        Duration::from_secs(10),
        || (double.aborted() == 1).then_some(()),
    );
    let (_, st) = f.orch.get(&format!("/api/tasks/status/{task}"));
    assert_eq!(st["status"], "cancelled", "{st}");
    // The node takes the next task at once.
    double.token_delay(Duration::ZERO);
    let r = Py::start("generate_once", &f.orch.base, None).result();
    assert!(r["text"].as_str().unwrap().starts_with("word"), "{r}");
}

/// Which agent's double is generating now.
fn generating(f: &Fleet) -> usize {
    wait_for("a double to be generating", Duration::from_secs(20), || {
        f.agents
            .iter()
            .position(|(_, d)| !d.generations().is_empty())
    })
}

#[test]
fn an_agent_killed_before_the_first_token_is_replaced_by_another_node() {
    let mut f = fleet(2, "Blue light scatters more.", &[]);
    for (_, d) in &f.agents {
        d.delay_first_token(Duration::from_millis(1500));
    }
    let py = Py::start("follow", &f.orch.base, Some("chat"));
    let busy = generating(&f);
    f.agents[busy].0.kill();
    let r = py.result();
    assert_eq!(r["error"], Value::Null, "{r}");
    assert_eq!(r["text"], "Blue light scatters more.");
    let other = 1 - busy;
    assert_eq!(f.agents[other].1.completed(), 1, "the other node answered");
}

#[test]
fn an_agent_killed_mid_stream_is_continued_or_ends_with_an_error() {
    let mut f = fleet(2, &"tok ".repeat(30), &[]);
    for (_, d) in &f.agents {
        d.token_delay(Duration::from_millis(40));
    }
    // Chat: continued on the other node from the partial reply.
    let py = Py::start("follow", &f.orch.base, Some("chat"));
    py.expect("FIRST");
    let busy = generating(&f);
    f.agents[busy].0.kill();
    let r = py.result();
    assert_eq!(r["error"], Value::Null, "continued, not failed: {r}");
    let other = &f.agents[1 - busy].1;
    let asked = other.generations();
    let last = asked.last().expect("the other node was asked to continue");
    let msgs = last.body["messages"].as_array().expect("a chat");
    assert_eq!(msgs.last().unwrap()["role"], "assistant", "{}", last.body);
    let partial = msgs.last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!partial.is_empty());
    assert!(r["text"].as_str().unwrap().starts_with(&partial), "{r}");

    // Generate: no continuation, an explicit error the client raises.
    let survivor = 1 - busy;
    let py = Py::start("follow", &f.orch.base, Some("generate"));
    py.expect("FIRST");
    f.agents[survivor].0.kill();
    let r = py.result();
    let err = r["error"]
        .as_str()
        .expect("an explicit error, never a silent truncation");
    assert!(err.contains("incomplete"), "{r}");
}

#[test]
fn a_gateway_request_goes_ahead_of_batch_work() {
    let f = fleet(1, &"x ".repeat(40), &[]);
    let double = &f.agents[0].1;
    // Python loads first, so a slow start on a busy machine cannot outlast the batch task.
    let mut py = Py::start("generate_once", &f.orch.base, Some("on-go"));
    py.expect("READY");
    // The first batch task keeps the only node busy long enough for the client to queue.
    double.token_delay(Duration::from_millis(250));
    let batch = || {
        let (s, v) = f.orch.post(
            "/api/tasks/submit",
            json!({"type": "agent_action", "priority": 5,
                   "data": {"model": MODEL, "prompt": "batch"}}),
        );
        assert_eq!(s, 201, "{v}");
        v["task_id"].as_str().unwrap().to_string()
    };
    let first = batch();
    wait_for("the node to be busy", Duration::from_secs(10), || {
        (double.active() > 0).then_some(())
    });
    let backlog: Vec<String> = (0..4).map(|_| batch()).collect();
    py.go();
    let gateway_task = wait_for(
        "the gateway request in the queue",
        Duration::from_secs(20),
        || {
            let (_, q) = f.orch.get("/api/tasks/queue");
            q["pending"]
                .as_array()?
                .iter()
                .find(|t| t["type"] == "ollama_api")
                .map(|t| t["task_id"].as_str().unwrap_or_default().to_string())
        },
    );
    let (_, st) = f.orch.get(&format!("/api/tasks/status/{first}"));
    assert_eq!(st["status"], "assigned", "the first batch task still runs");
    double.token_delay(Duration::from_millis(5));
    let r = py.result();
    assert!(r["text"].as_str().unwrap().starts_with('x'));
    let done_at = |id: &str| {
        let st = wait_for("a task to complete", Duration::from_secs(30), || {
            let (_, st) = f.orch.get(&format!("/api/tasks/status/{id}"));
            (st["status"] == "completed").then_some(st)
        });
        st["updated_at"].as_f64().unwrap()
    };
    let gw = done_at(&gateway_task);
    assert_eq!(
        f.orch.get(&format!("/api/tasks/status/{gateway_task}")).1["priority"],
        8
    );
    for id in &backlog {
        assert!(
            done_at(id) > gw,
            "the gateway request ran before every batch task"
        );
    }
}
