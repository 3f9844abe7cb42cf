//! The command line: `--key value` and `--key=value`, the few flags that override the
//! config file and environment, and the usage text.

use std::path::PathBuf;

use crate::error::Error;

pub const USAGE: &str = "usage: pifleet-agent [--config FILE] [--orchestrator URL] [--ollama URL] [--id NAME] [--state-dir DIR] [--daemon]

  --config FILE        config file (default /etc/pifleet/agent.toml, or $PIFLEET_AGENT_CONFIG)
  --orchestrator URL   orchestrator base URL (default http://127.0.0.1:5000)
  --ollama URL         local Ollama base URL (default http://127.0.0.1:11434)
  --id NAME            worker id (default: the hostname)
  --state-dir DIR      where the result spool lives (default $STATE_DIRECTORY or /var/lib/pifleet-agent)
  --daemon             detach from the terminal; log to STATE_DIR/agent.log
  -h, --help           this text
  -V, --version        the version

Every config key can also be set as PIFLEET_<KEY> in the environment (e.g. PIFLEET_WORKER_TOKEN).";

/// The command line.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Args {
    pub config: Option<PathBuf>,
    pub orchestrator: Option<String>,
    pub ollama: Option<String>,
    pub id: Option<String>,
    pub state_dir: Option<String>,
    pub daemon: bool,
    pub help: bool,
    pub version: bool,
}

impl Args {
    /// Parses the arguments after the program name; `--key value` and `--key=value`.
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Args, Error> {
        let mut out = Args::default();
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| it.next())
                    .ok_or_else(|| Error::Usage(format!("{flag} needs a value\n\n{USAGE}")))
            };
            match flag.as_str() {
                "--config" | "-c" => out.config = Some(PathBuf::from(value()?)),
                "--orchestrator" => out.orchestrator = Some(value()?),
                "--ollama" => out.ollama = Some(value()?),
                "--id" => out.id = Some(value()?),
                "--state-dir" => out.state_dir = Some(value()?),
                "--daemon" => out.daemon = true,
                "-h" | "--help" => out.help = true,
                "-V" | "--version" => out.version = true,
                other => {
                    return Err(Error::Usage(format!(
                        "unknown argument `{other}`\n\n{USAGE}"
                    )))
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_parse_both_forms() {
        let a = Args::parse(
            [
                "--orchestrator=http://o:5000",
                "--daemon",
                "--state-dir",
                "/tmp/x",
            ]
            .map(String::from),
        )
        .unwrap();
        assert_eq!(a.orchestrator.as_deref(), Some("http://o:5000"));
        assert!(a.daemon);
        assert_eq!(a.state_dir.as_deref(), Some("/tmp/x"));
        assert!(Args::parse(["--bogus".to_string()]).is_err());
        assert!(Args::parse(["--id".to_string()]).is_err());
    }
}
