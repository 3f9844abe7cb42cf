//! `pifleet-agent`: the minimal-footprint worker that turns a Raspberry Pi (or any Linux
//! box) into a pifleet node.
//!
//! Blocking by design: plain threads and `ureq`, no async runtime. One thread registers
//! and then runs a work loop per task slot (long-poll `GET /api/workers/{id}/tasks?wait=N`,
//! execute, spool the result, deliver it); one thread heartbeats live metrics from /proc
//! and /sys; the calling thread supervises: systemd notifications, the watchdog, signals.
//!
//! Wire format: the types of `pifleet-protocol` (the seed's D8 HTTP protocol plus optional
//! fields). A sample config (`/etc/pifleet/agent.toml`):
//!
//! ```toml
//! orchestrator_url = "http://192.168.1.10:5000"
//! worker_token = "change-me"
//! ollama_url = "http://127.0.0.1:11434"
//! heartbeat_interval_s = 10
//! led_pin = 17
//! ```

pub mod client;
pub mod config;
pub mod error;
pub mod gpio;
pub mod ollama;
pub mod probe;
pub mod runner;
pub mod spool;
pub mod watchdog;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pifleet_protocol::{
    Capabilities, HeartbeatRequest, ModelInfo, RegisterRequest, ResultRequest, TaskAssignment,
};

use crate::client::Client;
pub use crate::config::{Args, Config};
use crate::error::ClientError;
pub use crate::error::Error;
use crate::gpio::{LedState, Status};
use crate::ollama::Ollama;
use crate::probe::{HostFacts, Probe, SysProbe};
use crate::runner::{Runner, SplitMix64};
use crate::spool::{Delivery, Spool};
use crate::watchdog::{Beat, Beats, Notifier, Stop};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Slack added to every progress deadline: HTTP timeouts, a slow SD card, a busy CPU.
const SLACK: Duration = Duration::from_secs(30);
/// Bound of one orchestrator call, as in [`client`].
const CALL: Duration = Duration::from_secs(10);

/// `d` scaled by a random factor in [0.8, 1.2), so a fleet does not act in step.
pub fn jitter(d: Duration) -> Duration {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut s = STATE.load(Ordering::Relaxed);
    if s == 0 {
        s = runner::fresh_seed("jitter");
    }
    let mut rng = SplitMix64::new(s);
    let f = 0.8 + 0.4 * rng.next_f64();
    STATE.store(rng.next_u64() | 1, Ordering::Relaxed);
    d.mul_f64(f)
}

/// Exponential backoff with jitter, capped.
struct Backoff {
    base: Duration,
    max: Duration,
    cur: Duration,
}

impl Backoff {
    fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max,
            cur: base,
        }
    }
    fn next(&mut self) -> Duration {
        let d = jitter(self.cur);
        self.cur = (self.cur * 2).min(self.max);
        d
    }
    fn reset(&mut self) {
        self.cur = self.base;
    }
}

/// Logs a failing call once when it starts failing and once when it recovers, instead of
/// every few seconds while an orchestrator is down.
#[derive(Default)]
struct Flap(bool);

impl Flap {
    fn fail(&mut self, what: &str, e: &dyn std::fmt::Display) {
        if !self.0 {
            log::warn!("{what}: {e} (retrying quietly)");
        } else {
            log::debug!("{what}: {e}");
        }
        self.0 = true;
    }
    fn ok(&mut self, what: &str) {
        if self.0 {
            log::info!("{what}: working again");
        }
        self.0 = false;
    }
}

/// What the last registration sent. Its mutex also keeps two threads from registering at
/// once; nothing on a hot path takes it.
struct Registration {
    models: Option<Vec<String>>,
}

struct Shared {
    cfg: Config,
    client: Client,
    ollama: Ollama,
    runner: Runner,
    spool: Spool,
    stop: Stop,
    notifier: Arc<dyn Notifier>,
    led: Status,
    beats: Beats,
    facts: HostFacts,
    registration: Mutex<Registration>,
    /// The orchestrator's longest honoured `?wait=` and expected heartbeat period, in ms
    /// (0: it did not say). Atomics, so a poll never waits behind a registration.
    max_wait_ms: AtomicU64,
    expected_heartbeat_ms: AtomicU64,
    registered: AtomicBool,
    draining: AtomicBool,
    running: Mutex<Vec<String>>,
    status: Mutex<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn set_status(&self, s: impl Into<String>) {
        *lock(&self.status) = s.into();
    }

    fn model_names(models: &[ModelInfo]) -> Vec<String> {
        let mut names: Vec<String> = models.iter().map(|m| m.name.clone()).collect();
        names.sort();
        names
    }

    /// Registers with the current capabilities; `models` None means Ollama is unreachable.
    fn register(&self, models: Option<Vec<ModelInfo>>) -> Result<(), ClientError> {
        let mut reg = lock(&self.registration);
        let details = models.clone().unwrap_or_default();
        let caps = Capabilities {
            models: Self::model_names(&details),
            task_types: runner::SUPPORTED.iter().map(|s| s.to_string()).collect(),
            slots: Some(self.cfg.slots),
            cores: self.facts.cores,
            memory_total_bytes: self.facts.memory_total_bytes,
            arch: Some(self.facts.arch.clone()),
            pi_model: self.facts.pi_model.clone(),
            agent_version: Some(VERSION.to_string()),
            model_details: details,
            ..Capabilities::default()
        };
        let req = RegisterRequest {
            worker_id: self.cfg.id.clone(),
            worker_type: Some(self.cfg.worker_type.clone()),
            capabilities: caps,
        };
        let resp = self.client.register(&req)?;
        reg.models = models.as_deref().map(Self::model_names);
        self.max_wait_ms
            .store(resp.max_wait_s.unwrap_or(0) * 1000, Ordering::Relaxed);
        self.expected_heartbeat_ms.store(
            resp.heartbeat_interval_s.unwrap_or(0) * 1000,
            Ordering::Relaxed,
        );
        self.registered.store(true, Ordering::SeqCst);
        log::info!(
            "registered as {} with {} (agent {}, models: {})",
            self.cfg.id,
            self.cfg.orchestrator_url,
            VERSION,
            if req.capabilities.models.is_empty() {
                "none".to_string()
            } else {
                req.capabilities.models.join(", ")
            }
        );
        Ok(())
    }

    fn models_now(&self) -> Option<Vec<ModelInfo>> {
        self.ollama.tags().ok()
    }

    /// Registers, retrying with backoff until it works or a stop is requested.
    fn register_until_ok(&self, beat: &Beat) -> bool {
        let mut backoff = Backoff::new(self.cfg.retry_base, self.cfg.retry_max);
        let mut flap = Flap::default();
        self.led.set(LedState::Registering);
        loop {
            if self.stop.requested() {
                return false;
            }
            self.set_status(format!("registering with {}", self.cfg.orchestrator_url));
            beat.arm(CALL * 2 + SLACK);
            match self.register(self.models_now()) {
                Ok(()) => {
                    flap.ok("registration");
                    self.led.set(LedState::Idle);
                    return true;
                }
                Err(e) => {
                    flap.fail("registration", &e);
                    self.led.set(LedState::Error);
                    let d = backoff.next();
                    beat.arm(d + SLACK);
                    if self.stop.wait(d) {
                        return false;
                    }
                }
            }
        }
    }

    fn poll_wait(&self) -> Duration {
        match self.max_wait_ms.load(Ordering::Relaxed) {
            0 => self.cfg.poll_wait,
            ms => self.cfg.poll_wait.min(Duration::from_millis(ms)),
        }
    }

    /// Our interval, unless the orchestrator expects beats more often: beating slower than
    /// it expects would get a healthy node declared dead.
    fn heartbeat_interval(&self) -> Duration {
        match self.expected_heartbeat_ms.load(Ordering::Relaxed) {
            0 => self.cfg.heartbeat_interval,
            ms => self.cfg.heartbeat_interval.min(Duration::from_millis(ms)),
        }
    }
}

/// Runs the agent until `stop` is requested (or a signal sets its flag): registers,
/// heartbeats, takes and runs work; then drains, flushes the spool and unregisters.
pub fn run(cfg: Config, notifier: Arc<dyn Notifier>, stop: Stop) -> Result<(), Error> {
    std::fs::create_dir_all(&cfg.state_dir).map_err(|source| Error::StateDir {
        path: cfg.state_dir.clone(),
        source,
    })?;
    let spool = Spool::open(&cfg.state_dir)?;
    let probe = SysProbe::new(&cfg.proc_root, &cfg.sys_root, &cfg.state_dir);
    let facts = probe.facts();
    let ollama = Ollama::new(&cfg.ollama_url, cfg.retry_base, cfg.retry_max);
    let runner = Runner::new(
        ollama.clone(),
        cfg.default_model.clone(),
        cfg.keep_alive.clone(),
        cfg.task_timeout,
        cfg.first_token_timeout,
    );
    log::info!(
        "pifleet-agent {VERSION} starting: id {}, orchestrator {}, ollama {}, state {}{}",
        cfg.id,
        cfg.orchestrator_url,
        cfg.ollama_url,
        cfg.state_dir.display(),
        cfg.config_path
            .as_ref()
            .map(|p| format!(", config {}", p.display()))
            .unwrap_or_default()
    );
    let pending = spool.len();
    if pending > 0 {
        log::info!("{pending} spooled result(s) from a previous run will be delivered first");
    }
    let shared = Arc::new(Shared {
        client: Client::new(&cfg.orchestrator_url, cfg.worker_token.clone()),
        ollama,
        runner,
        spool,
        stop: stop.clone(),
        notifier,
        led: Status::default(),
        beats: Beats::default(),
        facts,
        registration: Mutex::new(Registration { models: None }),
        max_wait_ms: AtomicU64::new(0),
        expected_heartbeat_ms: AtomicU64::new(0),
        registered: AtomicBool::new(false),
        draining: AtomicBool::new(false),
        running: Mutex::new(Vec::new()),
        status: Mutex::new("starting".into()),
        cfg,
    });
    let led = gpio::start(shared.cfg.led_pin, shared.led.clone(), stop.clone());

    let boot = {
        let s = shared.clone();
        let beat = shared.beats.add("work loop 0", CALL * 2 + SLACK);
        std::thread::Builder::new()
            .name("work-0".into())
            .spawn(move || boot(s, beat, probe))
            .map_err(Error::Thread)?
    };
    supervise(&shared);
    shutdown(&shared);
    if boot.is_finished() {
        let _ = boot.join();
    }
    if let Some(l) = led {
        let _ = l.join();
    }
    Ok(())
}

/// Registers, says READY, then starts the heartbeat and the other slots and becomes slot 0.
fn boot(s: Arc<Shared>, beat: Arc<Beat>, probe: SysProbe) {
    // Results from a previous run go first, even before registering: the orchestrator
    // settles them by task and attempt, and a re-registration requeues nothing.
    if let Delivery::Done(n) = s.spool.deliver(&s.client) {
        if n > 0 {
            log::info!("{n} spooled result(s) delivered");
        }
    }
    if !s.register_until_ok(&beat) {
        beat.finish();
        return;
    }
    s.notifier.notify("READY=1");
    {
        let s = s.clone();
        let beat = s
            .beats
            .add("heartbeat", s.cfg.heartbeat_interval * 2 + CALL * 3 + SLACK);
        let _ = std::thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || heartbeat_loop(s, beat, probe));
    }
    for slot in 1..s.cfg.slots {
        let s = s.clone();
        let beat = s.beats.add(&format!("work loop {slot}"), CALL * 2 + SLACK);
        let _ = std::thread::Builder::new()
            .name(format!("work-{slot}"))
            .spawn(move || work_loop(s, beat));
    }
    work_loop(s, beat);
}

fn heartbeat_loop(s: Arc<Shared>, beat: Arc<Beat>, mut probe: SysProbe) {
    let mut orch = Flap::default();
    let mut ollama_flap = Flap::default();
    let mut said_interval = false;
    loop {
        let interval = s.heartbeat_interval();
        if interval < s.cfg.heartbeat_interval && !said_interval {
            log::info!(
                "the orchestrator expects a heartbeat every {interval:?}: beating at that pace, not every {:?}",
                s.cfg.heartbeat_interval
            );
            said_interval = true;
        }
        beat.arm(interval * 2 + CALL * 3 + SLACK);
        let mut m = probe.metrics();
        let models = match s.ollama.tags() {
            Ok(models) => {
                ollama_flap.ok("ollama");
                m.ollama_reachable = Some(true);
                m.models_present = Some(Shared::model_names(&models));
                if let Ok(ps) = s.ollama.ps() {
                    m.models_loaded = Some(ps);
                }
                Some(models)
            }
            Err(e) => {
                ollama_flap.fail(&format!("ollama at {}", s.cfg.ollama_url), &e);
                m.ollama_reachable = Some(false);
                None
            }
        };
        if let Some(models) = &models {
            let names = Shared::model_names(models);
            let changed = lock(&s.registration).models.as_ref() != Some(&names);
            if changed {
                log::info!(
                    "model set changed to [{}]: registering again",
                    names.join(", ")
                );
                if let Err(e) = s.register(Some(models.clone())) {
                    log::warn!("re-registration failed: {e}");
                }
            }
        }
        let req = HeartbeatRequest {
            metrics: Some(m),
            running_tasks: Some(lock(&s.running).clone()),
        };
        match s.client.heartbeat(&s.cfg.id, &req) {
            Ok(resp) => {
                orch.ok("heartbeat");
                let draining = resp.draining.unwrap_or(false);
                if s.draining.swap(draining, Ordering::SeqCst) != draining {
                    log::info!(
                        "{}",
                        if draining {
                            "drained by the operator: finishing current work, taking none"
                        } else {
                            "drain lifted: taking work again"
                        }
                    );
                }
            }
            Err(e) if e.status() == Some(404) => {
                log::info!("orchestrator does not know us ({e}): registering again");
                if let Err(e) = s.register(models.or_else(|| s.models_now())) {
                    orch.fail("re-registration", &e);
                }
            }
            Err(e) => orch.fail("heartbeat", &e),
        }
        if s.stop.wait(jitter(interval)) {
            break;
        }
    }
    beat.finish();
}

fn work_loop(s: Arc<Shared>, beat: Arc<Beat>) {
    let mut backoff = Backoff::new(s.cfg.retry_base, s.cfg.retry_max);
    let mut delivery = Flap::default();
    let mut polling = Flap::default();
    while !s.stop.requested() {
        beat.arm(CALL * 2 + SLACK);
        match s.spool.deliver(&s.client) {
            Delivery::Done(_) => delivery.ok("result delivery"),
            Delivery::Retry(e) => {
                delivery.fail("result delivery", &e);
                s.set_status(format!("holding {} undelivered result(s)", s.spool.len()));
                let d = backoff.next();
                beat.arm(d + SLACK);
                if s.stop.wait(d) {
                    break;
                }
                continue;
            }
        }
        if s.draining.load(Ordering::SeqCst) {
            s.set_status("drained: taking no work");
            beat.arm(s.cfg.poll_interval + SLACK);
            s.stop.wait(s.cfg.poll_interval);
            continue;
        }
        let wait = s.poll_wait();
        beat.arm(wait + CALL + SLACK);
        if lock(&s.running).is_empty() {
            s.set_status("idle: waiting for work");
        }
        let t0 = Instant::now();
        match s.client.poll(&s.cfg.id, wait) {
            Ok(Some(task)) => {
                polling.ok("polling");
                backoff.reset();
                if s.stop.requested() {
                    // Unregistering on the way out requeues it for another node.
                    log::info!("stopping: task {} handed back", task.task_id);
                    break;
                }
                execute(&s, &beat, task);
            }
            Ok(None) => {
                polling.ok("polling");
                backoff.reset();
                // An orchestrator that ignores `wait` (the seed's) answers at once:
                // fall back to interval polling.
                let e = t0.elapsed();
                if e < s.cfg.poll_interval {
                    beat.arm(s.cfg.poll_interval + SLACK);
                    s.stop.wait(s.cfg.poll_interval - e);
                }
            }
            Err(e) if e.status() == Some(404) => {
                log::info!("orchestrator does not know us ({e}): registering again");
                if !s.register_until_ok(&beat) {
                    break;
                }
            }
            Err(e) => {
                polling.fail("polling for work", &e);
                let d = backoff.next();
                beat.arm(d + SLACK);
                s.stop.wait(d);
            }
        }
    }
    beat.finish();
}

fn execute(s: &Shared, beat: &Beat, task: TaskAssignment) {
    let id = task.task_id.clone();
    lock(&s.running).push(id.clone());
    s.led.set(LedState::Working);
    s.set_status(format!("running task {id} ({})", task.task_type));
    beat.arm(s.runner.timeout_for(&task) + SLACK);
    log::info!(
        "task {id}: {} (attempt {})",
        task.task_type,
        task.attempt.unwrap_or(1)
    );
    let outcome = s.runner.run(&task);
    if outcome.success {
        log::info!(
            "task {id}: done in {} ms{}",
            outcome.duration_ms.unwrap_or(0),
            outcome
                .tokens_per_s
                .map(|t| format!(", {t} tokens/s"))
                .unwrap_or_default()
        );
    } else {
        log::warn!(
            "task {id}: failed: {}",
            outcome.error.as_deref().unwrap_or("no reason given")
        );
    }
    let result = serde_json::to_value(&outcome).unwrap_or_else(
        |e| serde_json::json!({"success": false, "error": format!("cannot encode result: {e}")}),
    );
    let req = ResultRequest {
        worker_id: s.cfg.id.clone(),
        result,
        attempt: task.attempt,
    };
    // Spool first: from here on a crash or an outage cannot lose the result.
    if let Err(e) = s.spool.put(&id, &req) {
        log::error!("{e}: delivering task {id}'s result without a spool copy");
        if let Err(e) = s.client.result(&id, &req) {
            log::error!("result for task {id} lost: {e}");
        }
    }
    let mut running = lock(&s.running);
    running.retain(|r| r != &id);
    if running.is_empty() {
        s.led.set(LedState::Idle);
    }
}

/// The calling thread: turns signals into a stop, pings the watchdog while every loop
/// keeps its deadline, keeps systemd's STATUS= line current.
fn supervise(s: &Shared) {
    let mut dog = s.cfg.watchdog.map(watchdog::Watchdog::new);
    let tick = dog.as_ref().map_or(Duration::from_secs(1), |d| {
        d.half().min(Duration::from_secs(1))
    });
    let mut last_status = String::new();
    loop {
        if s.stop.requested() {
            // Set by a signal handler, which cannot wake the sleepers itself.
            s.stop.request();
            break;
        }
        if let Some(dog) = dog.as_mut() {
            match dog.tick(&s.beats, s.notifier.as_ref()) {
                watchdog::Tick::Withheld(overdue) => {
                    log::error!(
                        "{} missed its deadline: withholding watchdog pings so systemd restarts us",
                        overdue.join(", ")
                    );
                    s.led.set(LedState::Error);
                }
                watchdog::Tick::Resumed => {
                    log::info!("all loops progressing again: watchdog pings resumed")
                }
                _ => {}
            }
        }
        let status = lock(&s.status).clone();
        if status != last_status {
            s.notifier.notify(&format!("STATUS={status}"));
            last_status = status;
        }
        s.stop.wait(tick);
    }
}

/// Stop taking work, let the running task finish (up to `stop_grace`), flush the spool,
/// unregister.
fn shutdown(s: &Shared) {
    s.notifier.notify("STOPPING=1");
    s.notifier.notify("STATUS=stopping");
    let deadline = Instant::now() + s.cfg.stop_grace;
    let mut said = false;
    loop {
        let n = lock(&s.running).len();
        if n == 0 {
            break;
        }
        if Instant::now() >= deadline {
            log::warn!(
                "stopping: {n} task(s) still running after {:?}: handing them back",
                s.cfg.stop_grace
            );
            break;
        }
        if !said {
            log::info!("stopping: waiting for {n} running task(s) to finish");
            said = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    match s.spool.deliver(&s.client) {
        Delivery::Done(_) => {}
        Delivery::Retry(e) => log::warn!(
            "stopping with {} result(s) spooled in {} ({e}): they go first on the next start",
            s.spool.len(),
            s.spool.dir().display()
        ),
    }
    if s.registered.load(Ordering::SeqCst) {
        match s.client.unregister(&s.cfg.id) {
            Ok(r) => {
                let requeued = r.requeued.unwrap_or_default();
                log::info!(
                    "unregistered{}",
                    if requeued.is_empty() {
                        String::new()
                    } else {
                        format!("; handed back {}", requeued.join(", "))
                    }
                );
            }
            Err(e) => {
                log::warn!("unregister failed ({e}); the orchestrator will notice the silence")
            }
        }
    }
    log::info!("stopped");
}

/// The binary's whole life: arguments, config, logger, daemon, signals, [`run`].
/// Exit codes: 0 clean stop, 1 runtime failure, 2 bad usage or config.
pub fn main_inner(args: Vec<String>) -> ExitCode {
    let args = match Args::parse(args.into_iter().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("pifleet-agent: {e}");
            return ExitCode::from(2);
        }
    };
    if args.help {
        println!("{}", config::USAGE);
        return ExitCode::SUCCESS;
    }
    if args.version {
        println!("pifleet-agent {VERSION}");
        return ExitCode::SUCCESS;
    }
    let mut cfg = match Config::load(&args, |k| std::env::var(k).ok(), true) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pifleet-agent: {e}");
            return ExitCode::from(2);
        }
    };
    cfg.watchdog = sd_notify::watchdog_enabled();
    let _ = simple_logger::SimpleLogger::new()
        .with_level(cfg.log_level)
        .with_module_level("ureq", log::LevelFilter::Warn)
        .with_module_level("ureq_proto", log::LevelFilter::Warn)
        .init();
    if cfg.daemon {
        if let Err(e) = daemonize(&cfg) {
            log::error!("{e}");
            return ExitCode::from(1);
        }
    }
    let stop = Stop::new();
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // A second signal while draining means "now": exit at once, the spool keeps results.
        let second = signal_hook::flag::register_conditional_shutdown(sig, 1, stop.flag());
        if let Err(e) = second.and_then(|_| signal_hook::flag::register(sig, stop.flag())) {
            log::error!("{}", Error::Signal(e));
            return ExitCode::from(1);
        }
    }
    match run(cfg, Arc::new(watchdog::SystemdNotifier), stop) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(1)
        }
    }
}

fn daemonize(cfg: &Config) -> Result<(), Error> {
    std::fs::create_dir_all(&cfg.state_dir).map_err(|source| Error::StateDir {
        path: cfg.state_dir.clone(),
        source,
    })?;
    let log_path = cfg.state_dir.join("agent.log");
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| Error::Daemonize(format!("cannot open {}: {e}", log_path.display())))
    };
    daemonize::Daemonize::new()
        .pid_file(cfg.state_dir.join("pifleet-agent.pid"))
        .working_directory(&cfg.state_dir)
        .stdout(open()?)
        .stderr(open()?)
        .start()
        .map_err(|e| Error::Daemonize(e.to_string()))
}

/// A running agent inside the current process, for tests and embedding.
pub struct Handle {
    stop: Stop,
    thread: Option<JoinHandle<Result<(), Error>>>,
}

impl Handle {
    pub fn spawn(cfg: Config, notifier: Arc<dyn Notifier>) -> Handle {
        let stop = Stop::new();
        let s2 = stop.clone();
        let thread = std::thread::spawn(move || run(cfg, notifier, s2));
        Handle {
            stop,
            thread: Some(thread),
        }
    }

    /// As SIGTERM would: drain, flush, unregister; returns what `run` returned.
    pub fn stop(mut self) -> Result<(), Error> {
        self.stop.request();
        self.thread
            .take()
            .map(|t| t.join().unwrap_or(Ok(())))
            .unwrap_or(Ok(()))
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop.request();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
