//! The task runner against the Ollama double: each task type, Ollama's failures, timeouts.

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
