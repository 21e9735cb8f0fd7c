//! Streams an LLM answer to the terminal as it is generated, then prints
//! how it ended and the token usage.
//!
//! ```text
//! cargo run -p demandflow-stages --example stream_answer
//! cargo run -p demandflow-stages --example stream_answer -- [--api API] [--base-url URL] [--model MODEL] [PROMPT]
//! ```
//!
//! Without `--base-url` the answer comes from the embedded mock provider,
//! started on a loopback port, which trickles out lorem ipsum: no network
//! and no key needed. With `--base-url` it asks a real provider, the key
//! read from `OPENAI_API_KEY` (`--api openai-chat`, the default, or
//! `openai-responses`), `ANTHROPIC_API_KEY` (`anthropic-messages`) or
//! `GEMINI_API_KEY` (`gemini`), e.g.
//!
//! ```text
//! OPENAI_API_KEY=sk-... cargo run -p demandflow-stages --example stream_answer -- \
//!     --base-url https://api.openai.com --model gpt-4o-mini "Write a haiku about backpressure"
//! ```
//!
//! The provider is a pipeline stage (`ProviderProducer`) and the terminal
//! pulls its events through `Pipeline::stream`: the HTTP body is read only
//! as fast as the text is printed.

use std::io::Write;
use std::time::Duration;

use demandflow::{Pipeline, Subscribe};
use demandflow_stages::mock::{Behaviour, GenerateSpec, MockConfig, MockServer, Pace};
use demandflow_stages::provider::{
    Api, ApiKey, MessageBuilder, ProviderConfig, ProviderEvent, ProviderProducer,
};
use futures::StreamExt;

/// What the command line asked for.
struct Args {
    api: Api,
    base_url: Option<String>,
    model: Option<String>,
    prompt: String,
}

#[tokio::main]
async fn main() {
    // Errors are printed as their message (a `main` returning `Result`
    // would print their `Debug` form).
    if let Err(e) = run().await {
        eprintln!("stream_answer: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;

    // No --base-url: start the mock on 127.0.0.1 (a free port), answering
    // with 40 tokens, one every 25 ms, so that the streaming shows.
    let mut mock = None;
    let base_url = match &args.base_url {
        Some(url) => url.clone(),
        None => {
            let answer = GenerateSpec::tokens(40).pace(Pace::trickle(Duration::from_millis(25)));
            let server = MockServer::start(
                MockConfig::default().default_behaviour(Behaviour::Generate(answer)),
            )
            .await?;
            let url = server.url();
            mock = Some(server);
            url
        }
    };

    let mut config = ProviderConfig::new(args.api, &base_url)?.prompt(&args.prompt);
    if let Some(model) = &args.model {
        config = config.model(model.as_str());
    }
    let key_var = match args.api {
        Api::AnthropicMessages => "ANTHROPIC_API_KEY",
        Api::Gemini => "GEMINI_API_KEY",
        _ => "OPENAI_API_KEY",
    };
    if let Some(key) = ApiKey::from_env(key_var) {
        config = config.api_key(key);
    } else if args.base_url.is_some() {
        eprintln!("note: {key_var} is not set; sending the request without a key");
    }

    // The pipeline: one producer, the provider's stream of events.
    let mut p = Pipeline::new();
    let llm = p.producer("llm", ProviderProducer::new(config)?);
    let mut events = p.stream(&llm, Subscribe::max_demand(16));
    let run = p.spawn()?;

    println!("> {}\n", args.prompt);
    // Prints each piece of text as it arrives (flushed: stdout is
    // line-buffered), and puts the events together into the final message.
    let mut message = MessageBuilder::default();
    let mut stdout = std::io::stdout();
    while let Some(event) = events.next().await {
        if let ProviderEvent::TextDelta { text } = &event {
            print!("{text}");
            stdout.flush()?;
        }
        message.push(&event);
    }
    run.join().await?;
    let message = message.finish();

    println!("\n");
    println!("status: {}", message.status.as_str());
    match message.usage {
        Some(u) => println!(
            "usage:  {} input tokens, {} output tokens",
            u.input_tokens, u.output_tokens
        ),
        None => println!("usage:  not reported"),
    }
    for e in &message.errors {
        eprintln!("error:  {}: {}", e.kind, e.message);
    }
    if let Some(server) = mock {
        server.shutdown().await;
    }
    if !message.is_success() {
        return Err(format!("the answer ended {}", message.status.as_str()).into());
    }
    Ok(())
}

const USAGE: &str = "usage: stream_answer [--api API] [--base-url URL] [--model MODEL] [PROMPT]";

fn parse_args() -> Result<Args, Box<dyn std::error::Error>> {
    let mut args = Args {
        api: Api::OpenAiChat,
        base_url: None,
        model: None,
        prompt: String::new(),
    };
    let mut words = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| it.next().ok_or(format!("{flag} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--api" => args.api = value("--api")?.parse()?,
            "--base-url" => args.base_url = Some(value("--base-url")?),
            "--model" => args.model = Some(value("--model")?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            flag if flag.starts_with("--") => {
                return Err(format!("unknown option {flag}\n{USAGE}").into())
            }
            word => words.push(word.to_owned()),
        }
    }
    args.prompt = if words.is_empty() {
        "Tell me about backpressure.".to_owned()
    } else {
        words.join(" ")
    };
    Ok(args)
}
