use std::process::ExitCode;

fn main() -> ExitCode {
    pifleet_agent::main_inner(std::env::args().collect())
}
