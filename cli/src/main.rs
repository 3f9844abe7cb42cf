fn main() {
    eprintln!("pifleet: not built yet");
    std::process::exit(2);
}
