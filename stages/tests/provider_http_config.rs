//! Configuration: `--base-url` rules, request shapes and headers per API,
//! the secret key, and the immutable registry (invariant D8).

use std::sync::Arc;

use demandflow_stages::provider::{
    endpoint_url, Api, ApiKey, ConfigError, Message, ProviderConfig, ProviderEntry,
    ProviderRegistry, RegistryBuilder, RegistryError,
};

#[test]
fn base_url_gets_the_standard_path_without_a_second_v1() {
    let cases = [
        (
            "http://127.0.0.1:9000",
            Api::OpenAiResponses,
            "http://127.0.0.1:9000/v1/responses",
        ),
        (
            "http://127.0.0.1:9000/",
            Api::AnthropicMessages,
            "http://127.0.0.1:9000/v1/messages",
        ),
        (
            "http://127.0.0.1:9000/v1",
            Api::OpenAiChat,
            "http://127.0.0.1:9000/v1/chat/completions",
        ),
        (
            "https://gw.example/v1/",
            Api::OpenAiResponses,
            "https://gw.example/v1/responses",
        ),
        (
            "https://gw.example/proxy",
            Api::AnthropicMessages,
            "https://gw.example/proxy/v1/messages",
        ),
        (
            "https://gw.example/proxy/v1",
            Api::AnthropicMessages,
            "https://gw.example/proxy/v1/messages",
        ),
        (
            "https://gw.example/v10",
            Api::OpenAiChat,
            "https://gw.example/v10/v1/chat/completions",
        ),
        (
            "http://[::1]:8080",
            Api::OpenAiChat,
            "http://[::1]:8080/v1/chat/completions",
        ),
    ];
    for (base, api, want) in cases {
        assert_eq!(endpoint_url(api, base).unwrap().as_str(), want, "{base}");
    }
}

#[test]
fn bad_base_urls_are_typed_errors_that_never_echo_credentials() {
    for bad in [
        "",
        "localhost:80",
        "ftp://h/",
        "http://h/?a=1",
        "http://h/#x",
        "http://",
    ] {
        assert!(
            matches!(
                endpoint_url(Api::OpenAiChat, bad),
                Err(ConfigError::BaseUrl { .. })
            ),
            "{bad}"
        );
    }
    let err = endpoint_url(Api::OpenAiChat, "http://user:hunter2@h/").unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn request_shapes_and_headers_per_api() {
    let base = "http://127.0.0.1:1";
    let mk = |api| {
        ProviderConfig::new(api, base)
            .unwrap()
            .api_key("sk-secret-1")
            .model("m")
            .max_tokens(33)
            .system("be brief")
            .messages([
                Message::user("hi"),
                Message::assistant("hello"),
                Message::user("more"),
            ])
    };

    let r = mk(Api::OpenAiResponses);
    let b = r.request_body();
    assert_eq!(b["max_output_tokens"], 33);
    assert_eq!(b["instructions"], "be brief");
    assert_eq!(b["input"][2]["content"], "more");
    let h = r.request_headers().unwrap();
    assert_eq!(h["authorization"], "Bearer sk-secret-1");
    assert!(h["authorization"].is_sensitive());
    assert_eq!(h["accept"], "text/event-stream");

    let c = mk(Api::OpenAiChat);
    let b = c.request_body();
    assert_eq!(b["messages"][0]["role"], "system");
    assert_eq!(b["messages"][1]["content"], "hi");
    assert_eq!(b["max_tokens"], 33);
    assert_eq!(b["stream_options"]["include_usage"], true);

    let a = mk(Api::AnthropicMessages);
    let b = a.request_body();
    assert_eq!(b["system"], "be brief");
    assert_eq!(b["messages"].as_array().unwrap().len(), 3);
    assert_eq!(b["stream"], true);
    let h = a.request_headers().unwrap();
    assert_eq!(h["x-api-key"], "sk-secret-1");
    assert_eq!(h["anthropic-version"], "2023-06-01");
    assert!(h.get("authorization").is_none());

    for cfg in [r, c, a] {
        assert!(!format!("{cfg:?}").contains("sk-secret-1"));
    }
}

#[test]
fn a_key_that_cannot_be_a_header_is_a_typed_error() {
    let cfg = ProviderConfig::new(Api::OpenAiChat, "http://h")
        .unwrap()
        .api_key("bad\nkey");
    assert_eq!(cfg.request_headers().unwrap_err(), ConfigError::InvalidKey);
    assert!(!format!("{:?}", ApiKey::new("bad\nkey")).contains("bad"));
}

#[test]
fn registry_has_builtins_and_user_entries() {
    let reg = RegistryBuilder::with_builtins()
        .register(
            ProviderEntry::new("local", Api::OpenAiChat, "http://127.0.0.1:8000/v1")
                .model("llama")
                .customize(|c| c.max_tokens(7)),
        )
        .build();
    let ids: Vec<_> = reg.ids().collect();
    assert_eq!(
        ids,
        [
            "anthropic-messages",
            "gemini",
            "local",
            "openai-chat",
            "openai-responses"
        ]
    );
    let local = reg.config("local").unwrap();
    assert_eq!(local.model_name(), "llama");
    assert_eq!(local.request_body()["max_tokens"], 7);
    assert_eq!(
        reg.config("anthropic-messages")
            .unwrap()
            .endpoint()
            .as_str(),
        "https://api.anthropic.com/v1/messages"
    );
    assert_eq!(
        reg.get("openai-chat")
            .unwrap()
            .config_at("http://127.0.0.1:5/v1")
            .unwrap()
            .endpoint()
            .as_str(),
        "http://127.0.0.1:5/v1/chat/completions"
    );
    assert!(matches!(
        reg.config("missing"),
        Err(RegistryError::Unknown(_))
    ));
    let bad = RegistryBuilder::empty()
        .register(ProviderEntry::new("bad", Api::OpenAiChat, "nope"))
        .build();
    assert!(matches!(bad.config("bad"), Err(RegistryError::Config(_))));
    assert!(reg.producer("local", |c| c.prompt("x")).is_ok());
}

/// D8: look-ups keep working after panics elsewhere — in another thread, in
/// a task, and in a customize hook called through the registry itself.
#[tokio::test]
async fn lookups_succeed_after_panics_anywhere_else() {
    let reg = Arc::new(
        RegistryBuilder::with_builtins()
            .register(
                ProviderEntry::new("boom", Api::OpenAiChat, "http://127.0.0.1:1").customize(|c| {
                    if c.model_name() == "gpt-4.1-mini" {
                        panic!("a user hook panicked");
                    }
                    c
                }),
            )
            .build(),
    );
    let r = reg.clone();
    let thread = std::thread::spawn(move || {
        let _cfg = r.config("openai-chat").unwrap();
        panic!("a thread holding the registry panicked");
    });
    assert!(thread.join().is_err());
    let r = reg.clone();
    let task = tokio::spawn(async move {
        let _ = r.get("anthropic-messages");
        panic!("a task holding the registry panicked");
    });
    assert!(task.await.unwrap_err().is_panic());
    let r = reg.clone();
    let hook = std::thread::spawn(move || r.config("boom"));
    assert!(hook.join().is_err());

    for id in ["openai-responses", "openai-chat", "anthropic-messages"] {
        assert!(reg.get(id).is_some(), "{id} still registered");
        assert!(reg.config(id).is_ok());
    }
    assert!(reg.get("boom").is_some());
    let clone: ProviderRegistry = (*reg).clone();
    assert_eq!(clone.ids().count(), 5);
}
