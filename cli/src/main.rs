use clap::Parser;

fn main() -> std::process::ExitCode {
    pifleet::main_with(pifleet::Cli::parse())
}
