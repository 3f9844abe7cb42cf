use super::*;

#[test]
fn colour_needs_a_terminal_and_no_no_color() {
    assert!(want_color(true, None));
    assert!(!want_color(false, None));
    assert!(!want_color(true, Some("1".into())));
    assert!(want_color(true, Some("".into())));
}

#[test]
fn args_parse_with_defaults() {
    let cli =
        Cli::try_parse_from(["pifleet", "submit", "agent_action", "-p", "9", "--wait"]).unwrap();
    assert_eq!(cli.url, DEFAULT_URL);
    match cli.command {
        Command::Submit {
            task_type,
            priority,
            wait,
            ..
        } => {
            assert_eq!(task_type, "agent_action");
            assert_eq!(priority, Some(9));
            assert!(wait);
        }
        other => panic!("{other:?}"),
    }
    assert!(Cli::try_parse_from(["pifleet", "submit", "x", "-p", "11"]).is_err());
}

#[test]
fn unreachable_orchestrator_names_the_url_and_the_fix() {
    // Port 9 on loopback (discard) is closed on any sane test machine.
    let cli = Cli::try_parse_from(["pifleet", "--url", "http://127.0.0.1:9", "nodes"]).unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut term = Term {
        out: &mut out,
        err: &mut err,
        color: false,
        err_tty: false,
        out_tty: false,
    };
    let msg = run(cli, &mut term).unwrap_err().to_string();
    assert!(msg.contains("http://127.0.0.1:9"), "{msg}");
    assert!(msg.contains("pifleet-orchestrator serve"), "{msg}");
}

#[test]
fn bad_url_is_refused_before_any_request() {
    let err = Client::new("localhost:5000", None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("http://"), "{err}");
}
