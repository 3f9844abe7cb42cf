//! The agent's own credential, against the real orchestrator (both processes on
//! loopback): stored on the first registration (mode 0600), used instead of the join
//! token from then on and after a restart, and, once the node is forgotten, a plain
//! message saying how to join again.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use pifleet_system_tests::binary;
use pifleet_system_tests::fake_ollama::FakeOllama;
use pifleet_system_tests::fleet::{
    start_agent, submit, tempdir, wait_for, wait_task, worker, Orch,
};
use serde_json::{json, Value};

const JOIN: &str = "join-token-0123456789abcdef";
const LIMIT: Duration = Duration::from_secs(30);

fn crossover() -> Value {
    json!({"type": "evolution_crossover",
           "data": {"genome1": {"param1": 0.8}, "genome2": {"param1": 0.6}}})
}

/// Registers `id` with the join token alone, as a thief with a copied card would.
fn register_with_join_token(base: &str, id: &str) -> u16 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    agent
        .post(format!("{base}/api/workers/register"))
        .header("Authorization", format!("Bearer {JOIN}"))
        .send_json(json!({"worker_id": id, "worker_type": "llm", "capabilities": {}}))
        .unwrap()
        .status()
        .as_u16()
}

fn agent_logs(dir: &Path, id: &str) -> String {
    let mut all = String::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with(&format!("agent-{id}-")) {
            all.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    all
}

#[test]
fn the_credential_is_kept_reused_after_a_restart_and_a_forget_says_how_to_rejoin() {
    let dir = tempdir("agent-credential");
    let dir = dir.path();
    let orch = Orch::start_in(dir, &[("PIFLEET_WORKER_TOKEN", JOIN)]);
    let ollama = FakeOllama::start(vec![]).unwrap();
    let env = [("PIFLEET_WORKER_TOKEN", JOIN)];
    let state = dir.join("agent-pi-c");
    let file = state.join("credential");

    let mut agent = start_agent(dir, "pi-c", &orch.base, &ollama.url(), &env);
    wait_for("pi-c registered", LIMIT, || worker(&orch.base, "pi-c"));
    let first = wait_for("the credential file", LIMIT, || {
        std::fs::read_to_string(&file).ok()
    });
    assert!(first.trim().starts_with("pfn_"), "{first}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "credential file mode {mode:o}");
    let task = submit(&orch.base, &crossover());
    wait_task(&orch.base, &task, &["completed"], LIMIT);
    // The join token alone can no longer take the id.
    assert_eq!(register_with_join_token(&orch.base, "pi-c"), 403);

    // Restarted, the agent uses the stored credential: no new one, work still flows.
    agent.terminate(LIMIT);
    let mut agent = start_agent(dir, "pi-c", &orch.base, &ollama.url(), &env);
    let task = submit(&orch.base, &crossover());
    wait_task(&orch.base, &task, &["completed"], LIMIT);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), first);
    assert!(agent_logs(dir, "pi-c").contains("using this node's own credential"));

    // Forgotten (a lost card): the agent says what to do.
    let out = Command::new(binary("pifleet-orchestrator"))
        .args(["nodes", "forget", "pi-c", "--db"])
        .arg(orch.db())
        .env_remove("PIFLEET_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = wait_for("the agent's advice", LIMIT, || {
        let logs = agent_logs(dir, "pi-c");
        logs.contains("refuses this node's credential")
            .then_some(logs)
    });
    assert!(said.contains("delete the file `credential`"), "{said}");
    assert!(said.contains("join token"), "{said}");
    agent.terminate(LIMIT);

    // Following the advice: a new credential, and the node works again.
    std::fs::remove_file(&file).unwrap();
    let mut agent = start_agent(dir, "pi-c", &orch.base, &ollama.url(), &env);
    let second = wait_for("a new credential", LIMIT, || {
        std::fs::read_to_string(&file).ok()
    });
    assert_ne!(first, second);
    let task = submit(&orch.base, &crossover());
    wait_task(&orch.base, &task, &["completed"], LIMIT);
    agent.terminate(LIMIT);
}
