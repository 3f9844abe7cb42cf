//! The binary's whole life: arguments, config, logger, daemon, signals, then [`run`].
//! Exit codes: 0 clean stop, 1 runtime failure, 2 bad usage or config.

use std::process::ExitCode;
use std::sync::Arc;

use crate::config::VERSION;
use crate::config::{self, Args, Config};
use crate::error::Error;
use crate::run::run;
use crate::watchdog::{Stop, SystemdNotifier};

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
    match run(cfg, Arc::new(SystemdNotifier), stop) {
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
