//! `demandflow batch`'s flags (stages/src/cli/batch.rs), parsed the way the
//! binary will once the command is registered.

#[path = "../src/cli/batch.rs"]
mod batch;

use std::path::PathBuf;
use std::time::Duration;

use batch::{parse_duration, BatchArgs};
use clap::Parser;
use demandflow_stages::provider::Api;

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    args: BatchArgs,
}

fn parse(args: &[&str]) -> Result<BatchArgs, clap::Error> {
    Cli::try_parse_from(std::iter::once("batch").chain(args.iter().copied())).map(|c| c.args)
}

const REQUIRED: [&str; 6] = [
    "--base-url",
    "http://127.0.0.1:1",
    "--input",
    "in.jsonl",
    "--output",
    "out.jsonl",
];

#[test]
fn defaults_and_every_flag() {
    let a = parse(&REQUIRED).unwrap();
    assert_eq!(a.api, None);
    assert_eq!(
        (a.concurrency, a.max_attempts, a.grace),
        (32, 3, Duration::from_secs(10))
    );
    assert!(!a.resume && !a.json && !a.raw);
    assert_eq!((a.rpm, a.tpm), (None, None));
    assert_eq!(a.key_var(Api::AnthropicMessages), "ANTHROPIC_API_KEY");
    assert_eq!(a.key_var(Api::OpenAiChat), "OPENAI_API_KEY");

    let mut all = REQUIRED.to_vec();
    all.extend([
        "--api",
        "anthropic-messages",
        "--rpm",
        "6000",
        "--tpm",
        "600000",
        "--concurrency",
        "8",
        "--resume",
        "--json",
        "--raw",
        "--max-attempts",
        "5",
        "--grace",
        "500ms",
        "--api-key-env",
        "MY_KEY",
    ]);
    let a = parse(&all).unwrap();
    assert_eq!(a.api, Some(Api::AnthropicMessages));
    assert_eq!(
        (a.rpm, a.tpm, a.concurrency, a.max_attempts),
        (Some(6000), Some(600_000), 8, 5)
    );
    assert!(a.resume && a.json && a.raw);
    assert_eq!(a.grace, Duration::from_millis(500));
    assert_eq!(
        (&a.input, &a.output),
        (&PathBuf::from("in.jsonl"), &PathBuf::from("out.jsonl"))
    );
    assert_eq!(a.key_var(Api::AnthropicMessages), "MY_KEY");
}

#[test]
fn bad_values_are_usage_errors() {
    for bad in [
        &["--api", "gemini"][..],
        &["--api", "nope"],
        &["--concurrency", "0"],
        &["--rpm", "0"],
        &["--max-attempts", "0"],
        &["--grace", "10"],
        &["--grace", "tens"],
    ] {
        let mut args = REQUIRED.to_vec();
        args.extend(bad);
        assert!(parse(&args).is_err(), "{bad:?} accepted");
    }
    assert!(
        parse(&["--input", "x", "--output", "y"]).is_err(),
        "--base-url is required"
    );
}

#[test]
fn durations() {
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    assert!(parse_duration("99999999999999999999h").is_err());
    assert!(parse_duration("s").is_err());
}

#[test]
fn every_flag_is_documented() {
    use clap::CommandFactory;
    let cmd = Cli::command();
    for arg in cmd.get_arguments().filter(|a| a.get_id() != "help") {
        assert!(arg.get_help().is_some(), "--{} has no help", arg.get_id());
    }
}
