//! Helpers for the whole-system tests in `tests/tests/`: they start the real binaries
//! (built by `cargo build --workspace --bins` before the tests run) on free loopback ports.

use std::path::PathBuf;

/// Path of a workspace binary in the current target directory's debug profile.
pub fn binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join("debug").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        path.display()
    );
    path
}

pub mod fake_ollama;
pub mod fake_seed;
pub mod fleet;
pub mod orch;
pub mod sim;
pub mod webdriver;
