//! The command line's bad-input cases, against the built binary: each gives
//! a clear message (what was typed, the usage line, a suggestion for a near
//! miss) and exit status 2; help, `--version` and completions exit 0 with
//! their text on stdout.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_demandflow");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit status 2, nothing on stdout, and stderr holding each of `says`.
#[track_caller]
fn usage_error(args: &[&str], says: &[&str]) {
    let out = run(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(out.stdout.is_empty(), "{args:?}: {}", stdout(&out));
    assert!(err.starts_with("error: "), "{args:?}: {err}");
    for s in says {
        assert!(err.contains(s), "{args:?} should say {s:?}: {err}");
    }
}

#[test]
fn a_mistyped_command_gets_a_suggestion_and_the_usage() {
    usage_error(
        &["demoo"],
        &[
            "unrecognized subcommand 'demoo'",
            "a similar subcommand exists: 'demo'",
            "Usage: demandflow <COMMAND>",
        ],
    );
    usage_error(&["repaly"], &["'replay'"]);
}

#[test]
fn a_mistyped_flag_gets_a_suggestion_and_the_commands_usage() {
    usage_error(
        &["demo", "--token", "5"],
        &[
            "'--token'",
            "a similar argument exists: '--tokens'",
            "Usage: demandflow demo",
        ],
    );
    usage_error(
        &["stream", "--base-ulr", "http://x"],
        &["'--base-url'", "Usage: demandflow stream"],
    );
    usage_error(
        &["chaos", "--frobnicate"],
        &["'--frobnicate'", "Usage: demandflow chaos"],
    );
}

#[test]
fn a_bad_value_is_echoed_with_what_was_expected() {
    usage_error(
        &["demo", "--tokens", "many"],
        &["invalid value 'many' for '--tokens <N>'"],
    );
    usage_error(
        &["bench", "--shape", "chian3"],
        &["'chian3'", "a similar value exists: 'chain3'"],
    );
    usage_error(
        &["replay", "--api", "openai-caht", "x.sse"],
        &["'openai-caht'", "'openai-chat'", "possible values"],
    );
    usage_error(
        &["chaos", "--crash-rate", "2"],
        &["invalid value '2' for '--crash-rate <P>': must be in [0, 1]"],
    );
    usage_error(&["bench", "--reps", "0"], &["'0'", "at least 1"]);
    usage_error(
        &["replay", "--api", "gemini", "--chunk", "0", "x.sse"],
        &["'0'"],
    );
    usage_error(
        &["stream", "--api", "openai-chat", "--base-url", "not-a-url"],
        &[
            "invalid --base-url 'not-a-url': ",
            "Usage: demandflow stream",
        ],
    );
    usage_error(
        &["mock", "--fault", "explode:1"],
        &["'explode:1'", "stall:N"],
    );
    usage_error(&["mock", "--addr", "nowhere"], &["'nowhere'"]);
}

#[test]
fn missing_arguments_are_named() {
    // No command at all: the top-level help, on stderr, as an error.
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert!(
        err.contains("Usage: demandflow <COMMAND>") && err.contains("replay"),
        "{err}"
    );
    usage_error(
        &["replay", "--api", "openai-chat"],
        &["<FILE>", "Usage: demandflow replay"],
    );
    usage_error(&["replay", "x.sse"], &["--api <API>"]);
}

#[test]
fn help_command_prints_that_commands_help() {
    for command in ["demo", "bench", "stream", "chaos", "replay", "mock"] {
        let out = run(&["help", command]);
        assert_eq!(out.status.code(), Some(0), "{command}: {out:?}");
        let text = stdout(&out);
        assert!(
            text.contains(&format!("Usage: demandflow {command}")),
            "{command}: {text}"
        );
        // The same text as `COMMAND --help`.
        assert_eq!(text, stdout(&run(&[command, "--help"])), "{command}");
    }
    let bench = stdout(&run(&["help", "bench"]));
    assert!(
        bench.contains("--shape") && bench.contains("--latency"),
        "{bench}"
    );
}

#[test]
fn replay_help_is_the_full_help_on_stdout() {
    let out = run(&["replay", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
    let text = stdout(&out);
    for part in [
        "--api <API>",
        "--chunk <N>",
        "<FILE>",
        "Exit status",
        "summary",
    ] {
        assert!(text.contains(part), "{part}: {text}");
    }
    assert!(text.lines().count() > 10, "{text}");
}

#[test]
fn version_prints_the_crate_version() {
    for flag in ["--version", "-V"] {
        let out = run(&[flag]);
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(
            stdout(&out).trim(),
            format!("demandflow {}", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn completions_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = run(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {out:?}");
        let script = stdout(&out);
        assert!(script.contains("demandflow"), "{shell}");
        for command in ["demo", "bench", "replay", "base-url", "shape"] {
            assert!(script.contains(command), "{shell}: {command}");
        }
    }
    usage_error(&["completions", "tcsh"], &["'tcsh'", "possible values"]);
}

#[test]
fn replay_of_nothing_decodable_exits_1_with_a_warning() {
    let dir = std::env::temp_dir().join(format!("demandflow-cli-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.sse");
    std::fs::write(&empty, b"").unwrap();
    let anthropic = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sse/03_anthropic_messages_text.sse");
    let empty_out = run(&["replay", "--api", "openai-chat", empty.to_str().unwrap()]);
    let other_out = run(&[
        "replay",
        "--api",
        "openai-chat",
        anthropic.to_str().unwrap(),
    ]);
    let right_out = run(&[
        "replay",
        "--api",
        "anthropic-messages",
        anthropic.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(empty_out.status.code(), Some(1), "{empty_out:?}");
    assert!(stderr(&empty_out).contains("nothing decoded (the file is empty)"));
    assert_eq!(other_out.status.code(), Some(1), "{other_out:?}");
    let err = stderr(&other_out);
    assert!(
        err.contains("warning") && err.contains("try --api anthropic-messages"),
        "{err}"
    );
    assert_eq!(right_out.status.code(), Some(0), "{right_out:?}");
    assert!(right_out.stderr.is_empty(), "{right_out:?}");
}
