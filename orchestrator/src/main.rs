fn main() {
    eprintln!("pifleet-orchestrator: not built yet");
    std::process::exit(2);
}
