//! `pifleet-orchestrator keys add|list|revoke` and `nodes forget`: they work on the
//! database file, beside a running server or without one. A running server sees the
//! change from its next request on (see [`super`]); a stopped one when it starts.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use pifleet_protocol::{PRIORITY_MAX, PRIORITY_MIN};

use super::ring::CONFIG_KEY_NAME;
use super::role::Role;
use super::secret;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, DbLocation, RawConfig};
use crate::store::keys::{AuthDb, AuthDbError, KeyRow};

/// The database `serve` would use, found the same way (file, environment, flag).
#[derive(Debug, clap::Args)]
pub struct DbArgs {
    /// TOML configuration file (also PIFLEET_CONFIG).
    #[arg(long, env = "PIFLEET_CONFIG", value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// SQLite database file [default: as for `serve`].
    #[arg(long, value_name = "PATH", global = true)]
    db: Option<String>,
}

impl DbArgs {
    pub fn file(self) -> Result<PathBuf, String> {
        let from_file = match &self.config {
            Some(path) => RawConfig::from_file(path).map_err(|e| e.to_string())?,
            None => RawConfig::default(),
        };
        let from_env = RawConfig::from_env(|k| std::env::var(k).ok()).map_err(|e| e.to_string())?;
        let from_flags = RawConfig {
            db: self.db,
            // Nothing listens here, so the listen-address safety check does not apply.
            insecure: Some(true),
            ..Default::default()
        };
        let state_dir = std::env::var("STATE_DIRECTORY").ok();
        let config = Config::from_raw(
            from_file.overlay(from_env).overlay(from_flags),
            state_dir.as_deref(),
        )
        .map_err(|e| format!("invalid configuration: {e}"))?;
        match config.db {
            DbLocation::File(path) => Ok(path),
            DbLocation::Memory => {
                Err("keys and credentials need a database file, not :memory:".into())
            }
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add a client key and print its secret (shown only this once).
    Add {
        /// A name for the key (letters, digits, `.`, `_`, `-`): shown in `keys list` and
        /// `/metrics`.
        name: String,
        /// read: status, lists, nodes, the page, /metrics. submit: also tasks and the
        /// gateway. admin: also drain, undrain, forget.
        #[arg(long, value_parser = Role::parse)]
        role: Role,
        /// Priority of this key's tasks that name none [default: 5].
        #[arg(long, value_name = "N", value_parser = priority)]
        priority: Option<u8>,
        /// Highest priority this key may ask for [default: 10].
        #[arg(long, value_name = "N", value_parser = priority)]
        max_priority: Option<u8>,
        /// Requests per minute (a bucket of that size, refilled continuously).
        #[arg(long, value_name = "REQ_PER_MIN", value_parser = clap::value_parser!(u64).range(1..))]
        rate: Option<u64>,
        /// Generated tokens per day, charged as results arrive.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        tokens_per_day: Option<u64>,
    },
    /// List the keys: names, roles, limits, created, last used (never the secret).
    List,
    /// Revoke a key: refused from the next request on.
    Revoke { name: String },
}

#[derive(Debug, Subcommand)]
pub enum NodesCommand {
    /// Drop a node and its credential (a lost or stolen card). Its tasks are requeued;
    /// it may join again only with the join token.
    Forget {
        #[arg(value_name = "ID")]
        id: String,
    },
}

fn priority(text: &str) -> Result<u8, String> {
    match text.trim().parse::<u8>() {
        Ok(p) if (PRIORITY_MIN..=PRIORITY_MAX).contains(&p) => Ok(p),
        _ => Err(format!(
            "expected a priority from {PRIORITY_MIN} to {PRIORITY_MAX}, got \"{text}\""
        )),
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        return Err(format!(
            "key name \"{name}\": use 1 to 64 letters, digits, '.', '_' or '-'"
        ));
    }
    if name == CONFIG_KEY_NAME {
        return Err(format!(
            "key name \"{CONFIG_KEY_NAME}\" is taken by the configured client token"
        ));
    }
    Ok(())
}

/// Seconds since the epoch as `2026-12-02 06:31Z`.
pub fn utc(at: f64) -> String {
    let secs = at.max(0.0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60
    )
}

fn open(path: &Path) -> Result<AuthDb, String> {
    if !path.exists() {
        eprintln!(
            "note: {} does not exist yet; creating it (is this the orchestrator's --db?)",
            path.display()
        );
    }
    AuthDb::open(path).map_err(|e| e.to_string())
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("pifleet-orchestrator: {msg}");
    ExitCode::FAILURE
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

pub fn keys(db_path: &Path, cmd: KeysCommand) -> ExitCode {
    let mut db = match open(db_path) {
        Ok(db) => db,
        Err(e) => return fail(e),
    };
    match cmd {
        KeysCommand::Add {
            name,
            role,
            priority,
            max_priority,
            rate,
            tokens_per_day,
        } => {
            if let Err(e) = check_name(&name) {
                return fail(e);
            }
            if let (Some(p), Some(m)) = (priority, max_priority) {
                if p > m {
                    return fail(format!(
                        "--priority {p} is above --max-priority {m}: lower one of them"
                    ));
                }
            }
            let secret = match secret::generate(secret::KEY_PREFIX) {
                Ok(s) => s,
                Err(e) => return fail(format!("no random numbers: {e}")),
            };
            let row = KeyRow {
                name: name.clone(),
                role: role.as_str().to_string(),
                secret_sha256: secret::to_hex(&secret::digest(&secret)),
                priority,
                max_priority,
                rate_per_min: rate,
                tokens_per_day,
                created_at: SystemClock.now(),
                last_used: None,
            };
            match db.add_key(&row) {
                Ok(()) => {}
                Err(e @ AuthDbError::KeyExists(_)) => return fail(e),
                Err(e) => return fail(format!("{}: {e}", db_path.display())),
            }
            eprintln!(
                "added key \"{name}\" (role {role}). Its secret follows, shown only now: \
                 the database keeps only its SHA-256."
            );
            println!("{secret}");
            ExitCode::SUCCESS
        }
        KeysCommand::List => {
            let rows = match db.keys() {
                Ok(r) => r,
                Err(e) => return fail(e),
            };
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "{:<20} {:<7} {:>8} {:>4} {:>9} {:>11}  {:<18} LAST USED",
                "NAME", "ROLE", "PRIORITY", "MAX", "RATE/MIN", "TOKENS/DAY", "CREATED"
            );
            for r in &rows {
                let _ = writeln!(
                    out,
                    "{:<20} {:<7} {:>8} {:>4} {:>9} {:>11}  {:<18} {}",
                    r.name,
                    r.role,
                    opt(r.priority),
                    opt(r.max_priority),
                    opt(r.rate_per_min),
                    opt(r.tokens_per_day),
                    utc(r.created_at),
                    r.last_used.map_or_else(|| "never".to_string(), utc),
                );
            }
            if rows.is_empty() {
                let _ = writeln!(
                    out,
                    "(no keys; the configured client_token is an admin key)"
                );
            }
            ExitCode::SUCCESS
        }
        KeysCommand::Revoke { name } => match db.revoke_key(&name) {
            Ok(true) => {
                println!(
                    "revoked key \"{name}\": a running orchestrator refuses it from its next request on"
                );
                ExitCode::SUCCESS
            }
            Ok(false) => fail(format!("no key named \"{name}\" (`keys list` shows them)")),
            Err(e) => fail(e),
        },
    }
}

pub fn nodes(db_path: &Path, cmd: NodesCommand) -> ExitCode {
    let mut db = match open(db_path) {
        Ok(db) => db,
        Err(e) => return fail(e),
    };
    let NodesCommand::Forget { id } = cmd;
    let known = db
        .has_worker_row(&id)
        .and_then(|w| Ok(w || db.has_credential(&id)?));
    match known {
        Ok(true) => {}
        Ok(false) => {
            return fail(format!(
                "no node \"{id}\" in {} (`pifleet nodes` lists them)",
                db_path.display()
            ))
        }
        Err(e) => return fail(e),
    }
    match db.request_forget(&id, SystemClock.now()) {
        Ok(had_credential) => {
            println!(
                "forgot node \"{id}\"{}: its tasks are requeued (by the running orchestrator \
                 now, or by the next to start); it can join again only with the join token",
                if had_credential {
                    " and dropped its credential"
                } else {
                    " (it had no credential)"
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_civil_dates() {
        assert_eq!(utc(0.0), "1970-01-01 00:00Z");
        assert_eq!(utc(951_782_400.0), "2000-02-29 00:00Z");
        assert_eq!(utc(1_796_193_060.0), "2026-12-02 06:31Z");
    }

    #[test]
    fn names_and_priorities_are_checked() {
        assert!(check_name("ci-batch.2").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("has space").is_err());
        assert!(check_name(CONFIG_KEY_NAME)
            .unwrap_err()
            .contains("client token"));
        assert_eq!(priority("7"), Ok(7));
        assert!(priority("0").is_err());
        assert!(priority("11").unwrap_err().contains("1 to 10"));
    }
}
