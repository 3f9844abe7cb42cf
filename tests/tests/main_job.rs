//! The README's main job, `scripts/fleet.sh`, as a new user runs it on a machine without
//! Ollama: the LLM demo tasks wait with a visible reason when the stand-in is refused, a
//! restart does not pile up demo tasks, and by default the built-in Ollama stand-in runs
//! them to completion and the terminal view shows them done. SIGTERM stops everything.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pifleet_system_tests::fleet::{get, tempdir, wait_for};
use pifleet_system_tests::{binary, terminate};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(60);
/// What the stand-in answers (scripts/fleet.sh sets it).
const STAND_IN_REPLY: &str = "Local models on small boards";

/// `scripts/fleet.sh` with this checkout's binaries, its state in `dir`, a free port and
/// an Ollama URL where nothing answers (127.0.0.2: the tests only ever bind 127.0.0.1).
struct MainJob {
    child: Child,
    out: Arc<Mutex<String>>,
    err: PathBuf,
}

impl MainJob {
    fn start(dir: &Path, env: &[(&str, &str)]) -> MainJob {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let bin = binary("pifleet-orchestrator")
            .parent()
            .expect("target dir")
            .to_path_buf();
        let run = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        let err = dir.join(format!("fleet-{run}.err"));
        let mut cmd = Command::new(root.join("scripts/fleet.sh"));
        cmd.env("FLEET_BIN", &bin)
            .env("FLEET_DIR", dir.join("state"))
            .env("FLEET_PORT", "0")
            .env("FLEET_OLLAMA_URL", "http://127.0.0.2:9")
            .env("FLEET_HEARTBEAT_S", "0.5")
            .env_remove("FLEET_FAKE_OLLAMA")
            .env_remove("FLEET_MODEL")
            .env_remove("FLEET_DEMO")
            .env_remove("FLEET_WATCH")
            .env_remove("PIFLEET_URL")
            .env_remove("PIFLEET_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&err).expect("stderr file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("run scripts/fleet.sh");
        let out = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().expect("stdout");
        let sink = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut o = sink.lock().unwrap();
                o.push_str(&line);
                o.push('\n');
            }
        });
        MainJob { child, out, err }
    }

    /// Everything the terminal view printed so far (frames, one after the other).
    fn view(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    /// The banner: what the script said on stderr.
    fn banner(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// The orchestrator's URL, once the banner names it.
    fn url(&self) -> String {
        wait_for("the orchestrator's URL in the banner", LIMIT, || {
            let banner = self.banner();
            let rest = banner.split("orchestrator on ").nth(1)?;
            Some(rest.split_whitespace().next()?.to_string())
        })
    }

    /// Waits until the terminal view shows a line with every one of `words`.
    fn shows(&self, what: &str, words: &[&str]) -> String {
        wait_for(what, LIMIT, || {
            let view = self.view();
            view.lines()
                .find(|l| words.iter().all(|w| l.contains(w)))
                .map(str::to_string)
        })
    }

    /// SIGTERM, as systemd or `kill` sends it: the script must stop every process it
    /// started and exit 0.
    fn stop(mut self, url: &str) {
        let code = terminate(&mut self.child, LIMIT);
        assert_eq!(
            code,
            Some(0),
            "fleet.sh exits 0 on SIGTERM; banner:\n{}",
            self.banner()
        );
        assert!(
            get(url, "/health").is_err(),
            "the orchestrator at {url} stopped with the script"
        );
    }
}

impl Drop for MainJob {
    fn drop(&mut self) {
        // A failed assertion: stop the script (its trap stops its children).
        if let Ok(None) = self.child.try_wait() {
            let _ = terminate(&mut self.child, Duration::from_secs(20));
        }
    }
}

fn demo_ids(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("state/demo-tasks"))
        .expect("the demo's task ids")
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn without_ollama_the_demo_completes_through_the_stand_in_and_the_view_shows_it() {
    let tmp = tempdir("main-job");
    let dir = tmp.path();

    // Stand-in refused: the LLM tasks wait, and the view says why.
    let job = MainJob::start(dir, &[("FLEET_FAKE_OLLAMA", "0")]);
    let url = job.url();
    let line = job.shows(
        "a pending LLM task with its reason in the terminal view",
        &["agent_action", "no node offers model \"llama3.2:1b\""],
    );
    assert!(
        line.contains("PENDING") || job.view().contains("PENDING"),
        "{line}"
    );
    job.shows(
        "the native demo tasks done",
        &["evolution_mutation", "done"],
    );
    assert!(
        job.banner().contains("FLEET_FAKE_OLLAMA=0"),
        "{}",
        job.banner()
    );
    let first = demo_ids(dir);
    assert_eq!(first.len(), 4, "{first:?}");
    job.stop(&url);

    // Restarted the default way: no Ollama, so the built-in stand-in; the demo tasks
    // still queued from the first run are not submitted again.
    let job = MainJob::start(dir, &[]);
    let url = job.url();
    let banner = wait_for("the whole banner", LIMIT, || {
        let b = job.banner();
        b.contains("nodes, queue and recent tasks below")
            .then_some(b)
    });
    assert!(banner.contains("built-in Ollama stand-in"), "{banner}");
    assert!(
        banner.contains("ollama pull llama3.2:1b"),
        "how to use a real one: {banner}"
    );
    assert!(banner.contains("still queued"), "{banner}");
    assert_eq!(demo_ids(dir), first, "the same demo tasks");

    job.shows(
        "agent_action done in the view",
        &["agent_action", "done", "pi-"],
    );
    job.shows(
        "code_generation done in the view",
        &["code_generation", "done", "pi-"],
    );
    let stats = get(&url, "/api/stats").unwrap();
    assert_eq!(stats["tasks"]["total"], json!(4), "no pile-up: {stats}");
    let chat = &first[2];
    let status = get(&url, &format!("/api/tasks/status/{chat}")).unwrap();
    assert_eq!(status["status"], "completed", "{status}");
    let output = status["result"]["output"].as_str().unwrap_or("");
    assert!(
        output.contains(STAND_IN_REPLY),
        "the stand-in answered: {status}"
    );
    assert!(
        !job.view().lines().any(|l| l.contains(" failed ")),
        "nothing failed:\n{}",
        job.view()
    );
    job.stop(&url);
}
