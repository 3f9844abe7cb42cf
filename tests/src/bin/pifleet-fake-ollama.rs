//! `pifleet-fake-ollama [--listen ADDR] [--model NAME]... [--reply TEXT] [--tokens N] [--token-delay-ms N]`
//!
//! The Ollama test double as a process, for scripts and demos on machines without Ollama.
//! Prints `listening on http://ADDR` once it accepts connections.

use std::process::ExitCode;
use std::time::Duration;

use pifleet_system_tests::fake_ollama::{FakeModel, FakeOllama};

fn main() -> ExitCode {
    let mut listen = "127.0.0.1:11434".to_string();
    let mut models = Vec::new();
    let mut reply = None;
    let mut token_delay = Duration::ZERO;
    let mut tokens = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let res = match arg.as_str() {
            "--listen" => value("--listen").map(|v| listen = v),
            "--model" => value("--model").map(|v| models.push(FakeModel::small(&v))),
            "--reply" => value("--reply").map(|v| reply = Some(v)),
            "--tokens" => value("--tokens").and_then(|v| {
                v.parse::<usize>()
                    .map(|n| tokens = Some(n))
                    .map_err(|e| format!("--tokens {v}: {e}"))
            }),
            "--token-delay-ms" => value("--token-delay-ms").and_then(|v| {
                v.parse::<u64>()
                    .map(|ms| token_delay = Duration::from_millis(ms))
                    .map_err(|e| format!("--token-delay-ms {v}: {e}"))
            }),
            "-h" | "--help" => {
                println!("usage: pifleet-fake-ollama [--listen ADDR] [--model NAME]... [--reply TEXT] [--tokens N] [--token-delay-ms N]");
                return ExitCode::SUCCESS;
            }
            other => Err(format!("unknown argument {other}")),
        };
        if let Err(e) = res {
            eprintln!("pifleet-fake-ollama: {e}");
            return ExitCode::from(2);
        }
    }
    if models.is_empty() {
        models.push(FakeModel::small("llama3.2:1b"));
    }
    let fake = match FakeOllama::start_on(&listen, models) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("pifleet-fake-ollama: cannot listen on {listen}: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(r) = reply {
        fake.set_reply(&r);
    }
    if let Some(n) = tokens {
        fake.set_tokens(n);
    }
    fake.token_delay(token_delay);
    println!("listening on {}", fake.url());
    loop {
        std::thread::park();
    }
}
