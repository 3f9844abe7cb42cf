//! Registration: what this node says it can do ([`Capabilities`]), what the orchestrator
//! answered (its longest honoured long poll and the heartbeat period it expects), and the
//! one policy for an orchestrator that has forgotten us.
//!
//! The policy for a 404 ("not registered"), from the heartbeat and the work loops alike:
//! register again once, at once, unless another loop already did since the failed call
//! began (so two loops hitting the same 404 register once); if that registration fails,
//! the caller backs off as after any failed call, and its next 404 tries again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use pifleet_protocol::{task_type, Capabilities, ModelInfo, RegisterRequest};

use crate::activity::{lock, Activity};
use crate::client::Client;
use crate::config::Config;
use crate::config::VERSION;
use crate::credential;
use crate::error::ClientError;
use crate::gpio::LedState;
use crate::ollama::Ollama;
use crate::probe::HostFacts;
use crate::retry::{Backoff, Flap};
use crate::runner;
use crate::watchdog::{Beat, Stop};

/// Bound of one orchestrator call, as in [`crate::client`].
pub const CALL: Duration = Duration::from_secs(10);
/// Slack added to every progress deadline: HTTP timeouts, a slow SD card, a busy CPU.
pub const SLACK: Duration = Duration::from_secs(30);

pub struct Registrar {
    client: Client,
    ollama: Ollama,
    cfg: Config,
    facts: HostFacts,
    /// The model names last registered (None: Ollama was unreachable). Its mutex also
    /// keeps two threads from registering at once; nothing on a hot path takes it.
    models: Mutex<Option<Vec<String>>>,
    /// Successful registrations so far: a 404 seen before the latest one is already answered.
    epoch: AtomicU64,
    /// The orchestrator's longest honoured `?wait=` and expected heartbeat period, in ms
    /// (0: it did not say). Atomics, so a poll never waits behind a registration.
    max_wait_ms: AtomicU64,
    expected_heartbeat_ms: AtomicU64,
}

/// Sorted names, the form compared to see whether the model set changed.
pub fn model_names(models: &[ModelInfo]) -> Vec<String> {
    let mut names: Vec<String> = models.iter().map(|m| m.name.clone()).collect();
    names.sort();
    names
}

impl Registrar {
    pub fn new(cfg: &Config, client: Client, ollama: Ollama, facts: HostFacts) -> Registrar {
        Registrar {
            client,
            ollama,
            cfg: cfg.clone(),
            facts,
            models: Mutex::new(None),
            epoch: AtomicU64::new(0),
            max_wait_ms: AtomicU64::new(0),
            expected_heartbeat_ms: AtomicU64::new(0),
        }
    }

    /// Whether the orchestrator took us at least once (so unregistering means something).
    pub fn registered(&self) -> bool {
        self.epoch() > 0
    }

    /// Read before a call whose 404 would be answered by [`Registrar::forgotten`].
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// `models` None: Ollama did not answer, so gateway requests (which need it at once)
    /// are not offered; a later registration with models offers them again.
    fn capabilities(&self, models: Option<Vec<ModelInfo>>) -> Capabilities {
        let reachable = models.is_some();
        let details = models.unwrap_or_default();
        Capabilities {
            models: model_names(&details),
            task_types: runner::SUPPORTED
                .iter()
                .filter(|t| reachable || **t != task_type::OLLAMA_API)
                .map(|s| s.to_string())
                .collect(),
            slots: Some(self.cfg.slots),
            cores: self.facts.cores,
            memory_total_bytes: self.facts.memory_total_bytes,
            arch: Some(self.facts.arch.clone()),
            pi_model: self.facts.pi_model.clone(),
            agent_version: Some(VERSION.to_string()),
            model_details: details,
            model_pull: Some(self.cfg.allow_model_pull),
            ..Capabilities::default()
        }
    }

    /// Registers with the current capabilities; `models` None means Ollama is unreachable.
    pub fn register(&self, models: Option<Vec<ModelInfo>>) -> Result<(), ClientError> {
        self.register_locked(&mut lock(&self.models), models)
    }

    fn register_locked(
        &self,
        last: &mut MutexGuard<'_, Option<Vec<String>>>,
        models: Option<Vec<ModelInfo>>,
    ) -> Result<(), ClientError> {
        let req = RegisterRequest {
            worker_id: self.cfg.id.clone(),
            worker_type: Some(self.cfg.worker_type.clone()),
            capabilities: self.capabilities(models.clone()),
            want_credential: !self.client.has_credential(),
        };
        let resp = self.client.register(&req)?;
        if let Some(secret) = resp.credential {
            match credential::save(&self.cfg.state_dir, &secret) {
                Ok(()) => log::info!(
                    "got this node's own credential; kept in {} and used from now on",
                    credential::path(&self.cfg.state_dir).display()
                ),
                Err(e) => log::error!(
                    "cannot keep this node's credential in {}: {e}. It is used until the \
                     agent stops; after a restart the orchestrator will refuse this id until \
                     `pifleet-orchestrator nodes forget {}`",
                    credential::path(&self.cfg.state_dir).display(),
                    self.cfg.id
                ),
            }
            self.client.use_credential(secret);
        }
        **last = models.as_deref().map(model_names);
        self.max_wait_ms
            .store(resp.max_wait_s.unwrap_or(0) * 1000, Ordering::Relaxed);
        self.expected_heartbeat_ms.store(
            resp.heartbeat_interval_s.unwrap_or(0) * 1000,
            Ordering::Relaxed,
        );
        self.epoch.fetch_add(1, Ordering::SeqCst);
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

    /// The 404 policy (see the module comment). `since` is [`Registrar::epoch`] read
    /// before the call that got the 404; `models` what the caller already knows, if
    /// anything (else Ollama is asked).
    pub fn forgotten(
        &self,
        since: u64,
        why: &ClientError,
        models: Option<Vec<ModelInfo>>,
    ) -> Result<(), ClientError> {
        let mut last = lock(&self.models);
        if self.epoch() != since {
            return Ok(());
        }
        log::info!("orchestrator does not know us ({why}): registering again");
        let models = models.or_else(|| self.ollama.tags().ok());
        self.register_locked(&mut last, models)
    }

    /// Registers again when the model set on this node differs from the one registered.
    pub fn refresh_models(&self, models: &[ModelInfo]) {
        let names = model_names(models);
        let mut last = lock(&self.models);
        if last.as_ref() == Some(&names) {
            return;
        }
        log::info!(
            "model set changed to [{}]: registering again",
            names.join(", ")
        );
        if let Err(e) = self.register_locked(&mut last, Some(models.to_vec())) {
            log::warn!("re-registration failed: {e}");
        }
    }

    /// The first registration: retries with backoff until it works or a stop is
    /// requested (false).
    pub fn until_registered(&self, beat: &Beat, stop: &Stop, activity: &Activity) -> bool {
        let mut backoff = Backoff::new(self.cfg.retry_base, self.cfg.retry_max);
        let mut flap = Flap::default();
        activity.show(LedState::Registering);
        loop {
            if stop.requested() {
                return false;
            }
            activity.set_status(format!("registering with {}", self.cfg.orchestrator_url));
            beat.arm(CALL * 2 + SLACK);
            match self.register(self.ollama.tags().ok()) {
                Ok(()) => {
                    flap.ok("registration");
                    activity.show(LedState::Idle);
                    return true;
                }
                Err(e) => {
                    flap.fail("registration", &e);
                    activity.show(LedState::Error);
                    let d = backoff.delay();
                    beat.arm(d + SLACK);
                    if stop.wait(d) {
                        return false;
                    }
                }
            }
        }
    }

    /// Our long-poll wait, unless the orchestrator honours less.
    pub fn poll_wait(&self) -> Duration {
        match self.max_wait_ms.load(Ordering::Relaxed) {
            0 => self.cfg.poll_wait,
            ms => self.cfg.poll_wait.min(Duration::from_millis(ms)),
        }
    }

    /// Our interval, unless the orchestrator expects beats more often: beating slower than
    /// it expects would get a healthy node declared dead.
    pub fn heartbeat_interval(&self) -> Duration {
        match self.expected_heartbeat_ms.load(Ordering::Relaxed) {
            0 => self.cfg.heartbeat_interval,
            ms => self.cfg.heartbeat_interval.min(Duration::from_millis(ms)),
        }
    }
}
