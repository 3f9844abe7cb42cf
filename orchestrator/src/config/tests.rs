//! Configuration tests: sources in order, defaults, and errors that name the key.

use super::*;

fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |k| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    }
}

#[test]
fn defaults_are_the_seed_port_on_loopback() {
    let c = Config::default();
    assert_eq!(c.listen.to_string(), "127.0.0.1:5000");
    assert_eq!(c.db, DbLocation::File(PathBuf::from("pifleet.db")));
    assert_eq!(c.limits.heartbeat_interval_s, 10.0);
    assert_eq!(c.limits.max_attempts, 3);
    assert_eq!(c.max_body_bytes, 1024 * 1024);
}

#[test]
fn the_example_file_parses_and_matches_the_defaults() {
    let raw: RawConfig = toml::from_str(include_str!("../../orchestrator.toml.example")).unwrap();
    let example = Config::from_raw(raw, None).unwrap();
    let default = Config::default();
    assert_eq!(example.listen, default.listen);
    assert_eq!(example.durability, default.durability);
    assert_eq!(example.max_body_bytes, default.max_body_bytes);
    assert_eq!(example.server, default.server);
    assert_eq!(
        format!("{:?}", example.limits),
        format!("{:?}", default.limits)
    );
}

#[test]
fn state_directory_holds_the_default_db() {
    let c = Config::from_raw(RawConfig::default(), Some("/var/lib/pifleet:/other")).unwrap();
    assert_eq!(
        c.db,
        DbLocation::File(PathBuf::from("/var/lib/pifleet/pifleet.db"))
    );
}

#[test]
fn file_then_env_then_flags() {
    let file: RawConfig = toml::from_str("listen = \"127.0.0.1:1\"\nmax_attempts = 5").unwrap();
    let envr = RawConfig::from_env(env(&[
        ("PIFLEET_LISTEN", "127.0.0.1:2"),
        ("PIFLEET_MAX_ATTEMPTS", "4"),
    ]))
    .unwrap();
    let flags = RawConfig {
        listen: Some("127.0.0.1:3".into()),
        ..Default::default()
    };
    let c = Config::from_raw(file.overlay(envr).overlay(flags), None).unwrap();
    assert_eq!(c.listen.port(), 3);
    assert_eq!(c.limits.max_attempts, 4);
}

#[test]
fn errors_name_the_key() {
    let e = RawConfig::from_env(env(&[("PIFLEET_MAX_ATTEMPTS", "many")])).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("environment variable PIFLEET_MAX_ATTEMPTS"),
        "{e}"
    );
    let e = toml::from_str::<RawConfig>("listn = \"x\"").unwrap_err();
    assert!(e.to_string().contains("listn"), "{e}");
    let raw = RawConfig {
        soft_temp_c: Some(90.0),
        ..Default::default()
    };
    assert!(Config::from_raw(raw, None)
        .unwrap_err()
        .to_string()
        .starts_with("soft_temp_c:"));
}

#[test]
fn non_loopback_needs_tokens_or_insecure() {
    let raw = RawConfig {
        listen: Some("0.0.0.0:5000".into()),
        ..Default::default()
    };
    let e = Config::from_raw(raw.clone(), None).unwrap_err().to_string();
    assert!(e.contains("worker_token and client_token"), "{e}");
    let ok = RawConfig {
        insecure: Some(true),
        ..raw.clone()
    };
    assert!(Config::from_raw(ok, None).is_ok());
    let ok = RawConfig {
        worker_token: Some("w".repeat(20)),
        client_token: Some("c".repeat(20)),
        ..raw
    };
    assert!(Config::from_raw(ok, None).is_ok());
}

#[test]
fn worker_and_client_tokens_must_differ() {
    let raw = RawConfig {
        worker_token: Some("s".repeat(20)),
        client_token: Some("s".repeat(20)),
        ..Default::default()
    };
    let e = Config::from_raw(raw, None).unwrap_err().to_string();
    assert!(
        e.starts_with("client_token: must differ from worker_token"),
        "{e}"
    );
}

#[test]
fn model_staging_is_off_by_default_and_takes_a_mode_and_models() {
    let c = Config::default();
    assert_eq!(c.limits.staging.mode, StagingMode::Off);
    assert!(!c.limits.staging.allows("llama3.2:1b"));
    let raw: RawConfig = toml::from_str(
        "model_staging = \"pull\"\nstaging_models = [\"llama3.2:1b\", \"qwen2.5:latest\"]\n",
    )
    .unwrap();
    let s = Config::from_raw(raw, None).unwrap().limits.staging;
    assert_eq!(s.mode, StagingMode::Pull);
    assert!(s.allows("llama3.2:1b"));
    assert!(s.allows("qwen2.5"), "the :latest tag is the bare name");
    assert!(!s.allows("mistral:7b"));
    let raw = RawConfig::from_env(env(&[
        ("PIFLEET_MODEL_STAGING", "pull_and_preload"),
        ("PIFLEET_STAGING_MODELS", "*"),
    ]))
    .unwrap();
    let s = Config::from_raw(raw, None).unwrap().limits.staging;
    assert_eq!(s.mode, StagingMode::PullAndPreload);
    assert!(s.allows("anything:7b"));
}

#[test]
fn bad_staging_settings_say_what_where_and_how_to_fix() {
    let err = |toml_text: &str| {
        let raw: RawConfig = toml::from_str(toml_text).unwrap();
        Config::from_raw(raw, None).unwrap_err().to_string()
    };
    let e = err("model_staging = \"on\"\n");
    assert!(e.starts_with("model_staging:"), "{e}");
    assert!(
        e.contains("\"pull_and_preload\"") && e.contains("\"on\""),
        "{e}"
    );
    let e = err("model_staging = \"pull\"\n");
    assert!(e.starts_with("staging_models:"), "{e}");
    assert!(e.contains("[\"*\"]"), "{e}");
    let e = err("model_staging = \"pull\"\nstaging_models = [\"llama 3\"]\n");
    assert!(e.contains("entry 1") && e.contains("llama 3"), "{e}");
    let e = err("staging_pull_bytes_per_s = 0\n");
    assert!(e.starts_with("staging_pull_bytes_per_s:"), "{e}");
}
