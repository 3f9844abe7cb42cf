fn main() {
    eprintln!("pifleet-agent: not built yet");
    std::process::exit(2);
}
