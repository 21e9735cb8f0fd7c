//! A two-turn tool-using conversation through a pipeline, against the
//! embedded mock provider (`demandflow mock`'s server, started in-process
//! on a loopback port).
//!
//! Turn 1 offers a `get_weather` tool; the model answers with a call to it
//! (the mock fills the schema's required properties with placeholders).
//! The example runs the tool locally, then turn 2 sends the conversation
//! back — the question, the assistant's turn with its tool call, a user
//! turn with the tool result — and prints the final answer.
//!
//! ```text
//! cargo run -p demandflow-stages --example tool_conversation [-- API]
//! ```
//!
//! `API` is `openai-chat` (the default), `openai-responses`,
//! `anthropic-messages` or `gemini`. Point `ProviderConfig::new` at a real
//! provider (with its key) to hold the same conversation with a model.

use demandflow::{BoxError, Pipeline, Subscribe};
use demandflow_stages::mock::{MockConfig, MockServer};
use demandflow_stages::provider::{
    final_messages, Api, FinalMessage, Message, Part, ProviderConfig, ProviderProducer, Role, Tool,
    ToolCall,
};
use serde_json::{json, Value};

/// What the conversation produced: turn 1's tool call, the tool's output,
/// and turn 2's answer.
#[derive(Debug)]
pub(crate) struct Conversation {
    /// The call the model made in turn 1.
    pub(crate) call: ToolCall,
    /// What the local tool returned.
    pub(crate) tool_output: String,
    /// The model's final message in turn 2.
    pub(crate) answer: FinalMessage,
}

const QUESTION: &str = "What is the weather in Oslo?";

fn weather_tool() -> Tool {
    Tool::function(
        "get_weather",
        "Current weather in a city.",
        json!({
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"]
        }),
    )
}

/// The local tool: a canned forecast for the city it is asked about.
fn get_weather(arguments: &Value) -> String {
    let city = arguments
        .get("city")
        .and_then(Value::as_str)
        .unwrap_or("nowhere");
    format!("Sunny and 21 C in {city}")
}

/// One turn: a pipeline of the provider producer and the final-message
/// consumer; returns the turn's final message.
async fn turn(config: ProviderConfig) -> Result<FinalMessage, BoxError> {
    let mut p = Pipeline::new();
    let llm = p.producer("llm", ProviderProducer::new(config)?);
    let (consumer, slot) = final_messages();
    p.consumer("final", consumer)
        .subscribe(&llm, Subscribe::default());
    p.spawn()?.join().await?;
    let message = slot.last().ok_or("the stream ended without a message")?;
    if !message.is_success() {
        return Err(format!("the turn ended {}", message.status.as_str()).into());
    }
    Ok(message)
}

/// Holds the two-turn conversation with the provider at `base_url`.
pub(crate) async fn converse(api: Api, base_url: &str) -> Result<Conversation, BoxError> {
    let base = ProviderConfig::new(api, base_url)?
        .api_key("example-key-not-secret")
        .max_tokens(1024)
        .tools([weather_tool()]);

    // Turn 1: the question, with the tool on offer.
    let first = turn(base.clone().messages([Message::user(QUESTION)])).await?;
    let call = first
        .tool_calls
        .first()
        .cloned()
        .ok_or("turn 1 made no tool call")?;
    let arguments = call
        .arguments
        .as_ref()
        .map_err(|e| format!("the call's arguments do not parse: {e:?}"))?;
    let tool_output = get_weather(arguments);

    // Turn 2: the conversation so far, the assistant's call replayed as
    // received (with any reasoning and its signature) and the result.
    let result = Part::ToolResult {
        id: call.id.clone(),
        name: call.name.clone(),
        kind: call.kind,
        content: tool_output.clone(),
        is_error: false,
    };
    let answer = turn(base.messages([
        Message::user(QUESTION),
        Message::from_final(&first),
        Message::new(Role::User, vec![result]),
    ]))
    .await?;
    Ok(Conversation {
        call,
        tool_output,
        answer,
    })
}

/// Starts the mock on 127.0.0.1 (port 0) and holds the conversation.
pub(crate) async fn run(api: Api) -> Result<Conversation, BoxError> {
    let server = MockServer::start(MockConfig::default()).await?;
    converse(api, &server.url()).await
}

#[tokio::main]
async fn main() {
    let name = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "openai-chat".to_owned());
    let api: Api = match name.parse() {
        Ok(api) => api,
        Err(e) => {
            eprintln!("{e} (openai-chat, openai-responses, anthropic-messages, gemini)");
            std::process::exit(2);
        }
    };
    match run(api).await {
        Ok(c) => {
            let args = c.call.arguments.as_ref().map_or(Value::Null, Clone::clone);
            println!("api          {}", api.as_str());
            println!("user         {QUESTION}");
            println!("tool call    {}({args}) id={}", c.call.name, c.call.id);
            println!("tool result  {}", c.tool_output);
            println!("answer       {}", c.answer.text);
        }
        Err(e) => {
            eprintln!("tool_conversation: {e}");
            std::process::exit(1);
        }
    }
}
