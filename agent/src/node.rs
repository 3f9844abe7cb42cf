//! The node's shared parts, one field per concern, handed by `Arc` to every thread:
//! built once by `run.rs`, read by the work loops, the heartbeat and the supervisor.

use std::sync::Arc;

use crate::abort::Aborts;
use crate::activity::Activity;
use crate::client::Client;
use crate::config::Config;
use crate::credential;
use crate::delivery::Outbox;
use crate::error::Error;
use crate::gpio::Status;
use crate::ollama::Ollama;
use crate::probe::{Probe, SysProbe};
use crate::registration::Registrar;
use crate::runner::Runner;
use crate::spool::Spool;
use crate::staging::Stager;
use crate::watchdog::{Beats, Notifier, Stop};

pub struct Node {
    pub cfg: Config,
    /// The orchestrator, for polls, heartbeats and unregistering.
    pub client: Client,
    pub ollama: Ollama,
    pub runner: Runner,
    pub outbox: Outbox,
    pub registrar: Registrar,
    pub activity: Activity,
    /// Gateway requests still waiting for Ollama's first token.
    pub aborts: Aborts,
    pub stop: Stop,
    pub notifier: Arc<dyn Notifier>,
    pub beats: Beats,
    /// Model pulls and pre-loads the orchestrator asked for.
    pub stager: Stager,
}

impl Node {
    /// Opens the state directory and the spool and wires the parts together; the probe
    /// goes to the heartbeat thread, which alone samples /proc and /sys.
    pub fn open(
        cfg: Config,
        notifier: Arc<dyn Notifier>,
        stop: Stop,
    ) -> Result<(Node, SysProbe), Error> {
        std::fs::create_dir_all(&cfg.state_dir).map_err(|source| Error::StateDir {
            path: cfg.state_dir.clone(),
            source,
        })?;
        let spool = Spool::open(&cfg.state_dir)?;
        let probe = SysProbe::new(&cfg.proc_root, &cfg.sys_root, &cfg.state_dir);
        let ollama = Ollama::new(&cfg.ollama_url, cfg.retry_base, cfg.retry_max);
        let runner = Runner::new(
            ollama.clone(),
            cfg.default_model.clone(),
            cfg.keep_alive.clone(),
            cfg.task_timeout,
            cfg.first_token_timeout,
        );
        let client = Client::new(&cfg.orchestrator_url, cfg.worker_token.clone());
        let stored = credential::load(&cfg.state_dir).map_err(|source| Error::StateDir {
            path: credential::path(&cfg.state_dir),
            source,
        })?;
        if let Some(secret) = stored {
            log::info!(
                "using this node's own credential from {}",
                credential::path(&cfg.state_dir).display()
            );
            client.use_credential(secret);
        }
        let registrar = Registrar::new(&cfg, client.clone(), ollama.clone(), probe.facts());
        let node = Node {
            outbox: Outbox::new(spool, client.clone()),
            client,
            ollama,
            runner,
            registrar,
            activity: Activity::new(Status::default()),
            aborts: Aborts::default(),
            stop,
            notifier,
            beats: Beats::default(),
            stager: Stager::default(),
            cfg,
        };
        Ok((node, probe))
    }
}
