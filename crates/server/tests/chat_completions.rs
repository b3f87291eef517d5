//! End-to-end tests of `/v1/chat/completions` and `/v1/models` over HTTP, with the real default
//! model running in the real engine. Bodies and chunks are validated against the OpenAI spec.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{ask, assert_error, shared, user, validate, MODEL, SYSTEM};
use futures::StreamExt;
use serde_json::{json, Value};
use switchboard_engine::EngineConfig;
use switchboard_model::{Item, Request, Role};
use switchboard_server::ServerConfig;

fn content(body: &Value, choice: usize) -> &str {
    body["choices"][choice]["message"]["content"]
        .as_str()
        .unwrap()
}

/// Parses chunk payloads, checks the stream invariants, and returns (texts per choice, finish
/// reasons per choice, usage chunk).
fn check_stream(
    frames: &[String],
    n: usize,
    include_usage: bool,
) -> (Vec<String>, Vec<String>, Option<Value>) {
    assert_eq!(
        frames.last().map(String::as_str),
        Some("[DONE]"),
        "stream must end with [DONE]"
    );
    let chunks: Vec<Value> = frames[..frames.len() - 1]
        .iter()
        .map(|f| serde_json::from_str(f).unwrap())
        .collect();
    assert!(!chunks.is_empty());
    let (id, created, model) = (&chunks[0]["id"], &chunks[0]["created"], &chunks[0]["model"]);
    let mut texts = vec![String::new(); n];
    let mut finishes: Vec<Option<String>> = vec![None; n];
    let mut saw_role = vec![false; n];
    let mut usage = None;
    for (i, chunk) in chunks.iter().enumerate() {
        validate("CreateChatCompletionStreamResponse", chunk);
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(
            (&chunk["id"], &chunk["created"], &chunk["model"]),
            (id, created, model)
        );
        if include_usage {
            assert!(
                chunk.get("usage").is_some(),
                "with include_usage every chunk has usage"
            );
        } else {
            assert!(chunk.get("usage").is_none_or(Value::is_null));
        }
        let choices = chunk["choices"].as_array().unwrap();
        if choices.is_empty() {
            assert!(include_usage, "an empty choices chunk only carries usage");
            assert_eq!(i, chunks.len() - 1, "the usage chunk comes last");
            usage = Some(chunk["usage"].clone());
            continue;
        }
        for choice in choices {
            let index = choice["index"].as_u64().unwrap() as usize;
            assert!(
                finishes[index].is_none(),
                "no chunk after a choice finished"
            );
            if !saw_role[index] {
                assert_eq!(
                    choice["delta"]["role"], "assistant",
                    "first chunk carries the role"
                );
                saw_role[index] = true;
            }
            if let Some(text) = choice["delta"]["content"].as_str() {
                texts[index].push_str(text);
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                finishes[index] = Some(reason.to_owned());
            }
        }
    }
    let finishes = finishes
        .into_iter()
        .map(|f| f.expect("every choice has exactly one finish chunk"))
        .collect();
    if include_usage {
        assert!(usage.is_some(), "usage chunk missing");
    }
    (texts, finishes, usage)
}

#[tokio::test]
async fn models_are_listed_and_retrievable() {
    let server = shared();
    let client = common::client();
    let body: Value = client
        .get(server.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    validate("ListModelsResponse", &body);
    assert_eq!(body["object"], "list");
    let model = &body["data"][0];
    assert_eq!(model["id"], MODEL);
    assert_eq!(model["context_window"], 8192);
    assert!(model["capabilities"].is_array());
    assert!(model["pricing"].is_object());

    let response = client
        .get(server.url(&format!("/v1/models/{MODEL}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let one: Value = response.json().await.unwrap();
    validate("Model", &one);
    assert_eq!(one["id"], MODEL);

    let response = client
        .get(server.url("/v1/models/nope"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_error(status, &body, 404, None);
    assert_eq!(body["error"]["code"], "model_not_found");

    let health = client.get(server.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn completion_has_exact_usage_and_validates() {
    let server = shared();
    let messages = ask("What is the capital of France?");
    let (status, body) = server
        .chat(&json!({"model": MODEL, "messages": messages, "max_tokens": 40, "temperature": 0}))
        .await;
    assert_eq!(status, 200, "{body}");
    validate("CreateChatCompletionResponse", &body);
    assert_eq!(body["object"], "chat.completion");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert!(content(&body, 0).contains("Paris"), "{body}");
    let finish = body["choices"][0]["finish_reason"].as_str().unwrap();
    assert!(finish == "stop" || finish == "length");

    let request = Request::text(
        MODEL,
        vec![
            Item::text(Role::System, SYSTEM),
            Item::text(Role::User, "What is the capital of France?"),
        ],
    );
    let prompt_tokens = server.engine.prompt_tokens(&request).unwrap().len();
    let usage = &body["usage"];
    assert_eq!(usage["prompt_tokens"], prompt_tokens);
    let completion_tokens = usage["completion_tokens"].as_u64().unwrap();
    assert!(completion_tokens > 0 && completion_tokens <= 40);
    assert_eq!(
        usage["total_tokens"],
        prompt_tokens as u64 + completion_tokens
    );
}

#[tokio::test]
async fn greedy_output_matches_llama_cpp_reference() {
    let Some(golden) = golden() else { return };
    let server = shared();
    let mut compared = 0;
    for case in golden["greedy"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        let messages = chatml_messages(prompt);
        let want_ids = case["greedy_ids"].as_array().unwrap();
        let want_text = case["greedy_text"].as_str().unwrap();
        // Only prompts the model's own template can produce are reachable over the API (the
        // SmolLM2 template always renders a system turn); for those, template plus tokenizer
        // must give exactly the reference prompt ids.
        let items: Vec<Item> = messages
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let role = if m["role"] == "system" {
                    Role::System
                } else {
                    Role::User
                };
                Item::text(role, m["content"].as_str().unwrap())
            })
            .collect();
        let ours = server
            .engine
            .prompt_tokens(&Request::text(MODEL, items))
            .unwrap();
        let reference: Vec<u32> = case["prompt_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| u32::try_from(v.as_u64().unwrap()).unwrap())
            .collect();
        if ours != reference {
            assert!(
                !prompt.starts_with("<|im_start|>system"),
                "template renders {prompt:?} differently"
            );
            continue;
        }
        compared += 1;
        let (status, body) = server
            .chat(&json!({
                "model": MODEL, "messages": messages, "temperature": 0,
                "max_tokens": want_ids.len(),
            }))
            .await;
        assert_eq!(status, 200, "{body}");
        let got = content(&body, 0);
        // The engine's golden test checks every reference token under teacher forcing; here,
        // free-running over HTTP, a flipped near-tie may end agreement early, but never at once.
        let common = got
            .chars()
            .zip(want_text.chars())
            .take_while(|(a, b)| a == b)
            .count();
        assert!(
            common >= 15,
            "greedy output diverges early:\n got: {got:?}\nwant: {want_text:?}"
        );
    }
    assert!(
        compared > 0,
        "no reference prompt was reachable through the chat template"
    );
}

fn golden() -> Option<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/smollm2-golden.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(serde_json::from_str(&text).unwrap()),
        Err(_) => {
            eprintln!("skipping: {} not found", path.display());
            None
        }
    }
}

/// Turns a rendered ChatML prompt back into messages.
fn chatml_messages(prompt: &str) -> Value {
    let mut messages = Vec::new();
    for turn in prompt.split("<|im_start|>").skip(1) {
        let turn = turn.trim_end_matches('\n').trim_end_matches("<|im_end|>");
        let (role, text) = turn.split_once('\n').unwrap_or((turn, ""));
        if role == "assistant" && text.is_empty() {
            continue;
        }
        messages.push(json!({"role": role, "content": text}));
    }
    Value::Array(messages)
}

#[tokio::test]
async fn streaming_without_usage() {
    let server = shared();
    let (status, frames) = server
        .chat_stream(&json!({"model": MODEL, "messages": user("Say hello."), "stream": true, "max_tokens": 20}))
        .await;
    assert_eq!(status, 200);
    let (texts, finishes, usage) = check_stream(&frames, 1, false);
    assert!(!texts[0].is_empty());
    assert!(usage.is_none());
    assert!(["stop", "length"].contains(&finishes[0].as_str()));
}

#[tokio::test]
async fn streaming_with_usage_matches_the_non_streaming_answer() {
    let server = shared();
    let request = json!({
        "model": MODEL, "messages": user("Name three colors."), "max_tokens": 24, "seed": 7,
        "temperature": 0.8,
    });
    let (_, body) = server.chat(&request).await;
    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let (status, frames) = server.chat_stream(&streamed).await;
    assert_eq!(status, 200);
    let (texts, finishes, usage) = check_stream(&frames, 1, true);
    assert_eq!(texts[0], content(&body, 0));
    assert_eq!(
        finishes[0],
        body["choices"][0]["finish_reason"].as_str().unwrap()
    );
    let usage = usage.unwrap();
    assert_eq!(usage["prompt_tokens"], body["usage"]["prompt_tokens"]);
    assert_eq!(
        usage["completion_tokens"],
        body["usage"]["completion_tokens"]
    );
    assert_eq!(usage["total_tokens"], body["usage"]["total_tokens"]);
}

#[tokio::test]
async fn n_choices_stream_and_fold() {
    let server = shared();
    let request = json!({"model": MODEL, "messages": user("Tell me a fact."), "n": 2, "max_tokens": 16, "seed": 3});
    let (status, body) = server.chat(&request).await;
    assert_eq!(status, 200, "{body}");
    validate("CreateChatCompletionResponse", &body);
    let choices = body["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    assert_eq!(
        (choices[0]["index"].as_u64(), choices[1]["index"].as_u64()),
        (Some(0), Some(1))
    );
    assert_ne!(
        content(&body, 0),
        content(&body, 1),
        "choices are sampled independently"
    );

    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let (_, frames) = server.chat_stream(&streamed).await;
    let (texts, _, usage) = check_stream(&frames, 2, true);
    assert_eq!(texts[0], content(&body, 0));
    assert_eq!(texts[1], content(&body, 1));
    assert_eq!(
        usage.unwrap()["completion_tokens"],
        body["usage"]["completion_tokens"]
    );
}

#[tokio::test]
async fn same_seed_same_answer() {
    let server = shared();
    let request = json!({"model": MODEL, "messages": user("Write a short poem."), "seed": 1234, "temperature": 1.0, "max_tokens": 30});
    let (_, first) = server.chat(&request).await;
    let (_, second) = server.chat(&request).await;
    assert_eq!(content(&first, 0), content(&second, 0));
    let mut other = request.clone();
    other["seed"] = json!(4321);
    let (_, third) = server.chat(&other).await;
    assert_ne!(
        content(&first, 0),
        content(&third, 0),
        "a different seed should change a 30-token sample"
    );
}

#[tokio::test]
async fn stop_sequence_spanning_tokens_is_never_emitted() {
    let server = shared();
    let base = json!({"model": MODEL, "messages": ask("What is the capital of France?"), "temperature": 0, "max_tokens": 30});
    let (_, full) = server.chat(&base).await;
    let text = content(&full, 0).to_owned();
    // A stop string taken from the middle of the greedy answer, spanning a word boundary.
    let words: Vec<&str> = text.split(' ').collect();
    assert!(words.len() >= 4, "need a longer answer: {text:?}");
    let stop = format!("{} {}", words[2], &words[3][..1]);
    let cut = text.find(&stop).unwrap();
    let mut with_stop = base.clone();
    with_stop["stop"] = json!([stop, "never-appears"]);
    let (status, body) = server.chat(&with_stop).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(content(&body, 0), &text[..cut]);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");

    with_stop["stream"] = json!(true);
    let (_, frames) = server.chat_stream(&with_stop).await;
    let (texts, finishes, _) = check_stream(&frames, 1, false);
    assert_eq!(texts[0], &text[..cut]);
    assert_eq!(finishes[0], "stop");
}

#[tokio::test]
async fn max_completion_tokens_cuts_with_length() {
    let server = shared();
    let (status, body) = server
        .chat(&json!({"model": MODEL, "messages": user("Write a long story about a dragon."), "max_completion_tokens": 5}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["usage"]["completion_tokens"], 5);
}

#[tokio::test]
async fn logprobs_and_logit_bias() {
    let server = shared();
    let (status, body) = server
        .chat(&json!({"model": MODEL, "messages": user("Hi"), "max_tokens": 6, "logprobs": true, "top_logprobs": 3, "temperature": 0}))
        .await;
    assert_eq!(status, 200, "{body}");
    validate("CreateChatCompletionResponse", &body);
    let entries = body["choices"][0]["logprobs"]["content"]
        .as_array()
        .unwrap();
    assert_eq!(
        entries.len() as u64,
        body["usage"]["completion_tokens"].as_u64().unwrap()
            - u64::from(body["choices"][0]["finish_reason"] == "stop")
    );
    for entry in entries {
        let top = entry["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        assert!(entry["logprob"].as_f64().unwrap() <= 0.0);
        // Greedy: the chosen token is the most likely one.
        assert_eq!(entry["token"], top[0]["token"]);
    }

    // A +100 bias makes one ordinary token the only choice, whatever the prompt.
    let (status, body) = server
        .chat(&json!({"model": MODEL, "messages": user("Hi"), "max_tokens": 3, "logit_bias": {"260": 100}, "temperature": 0}))
        .await;
    assert_eq!(status, 200, "{body}");
    let text = content(&body, 0);
    let piece = String::from_utf8(server.engine.token_bytes(260)).unwrap();
    assert_eq!(text, piece.repeat(3));
}

#[tokio::test]
async fn concurrent_streams_progress_together() {
    let long = json!({"model": MODEL, "messages": user("Write a long essay about the sea."), "max_tokens": 120, "stream": true, "temperature": 0});
    let short =
        json!({"model": MODEL, "messages": user("Say yes."), "max_tokens": 4, "stream": true});
    let started = Instant::now();
    let long_task = tokio::spawn(async move {
        let (status, frames) = shared().chat_stream(&long).await;
        (status, frames, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut shorts = Vec::new();
    for _ in 0..3 {
        let short = short.clone();
        shorts.push(tokio::spawn(async move {
            let (status, frames) = shared().chat_stream(&short).await;
            (status, frames, started.elapsed())
        }));
    }
    let mut short_done = Duration::ZERO;
    for task in shorts {
        let (status, frames, elapsed) = task.await.unwrap();
        assert_eq!(status, 200);
        check_stream(&frames, 1, false);
        short_done = short_done.max(elapsed);
    }
    let (status, frames, long_done) = long_task.await.unwrap();
    assert_eq!(status, 200);
    let (_, finishes, _) = check_stream(&frames, 1, false);
    if finishes[0] == "length" {
        assert!(
            short_done < long_done,
            "short requests must not wait for the long one"
        );
    }
}

#[tokio::test]
async fn disconnect_cancels_generation() {
    let server = common::start(EngineConfig::default(), &[], ServerConfig::default());
    let response = common::client()
        .post(server.url("/v1/chat/completions"))
        .json(&json!({"model": MODEL, "messages": user("Count to one thousand."), "max_tokens": 4000, "stream": true, "temperature": 0}))
        .send()
        .await
        .unwrap();
    let mut stream = response.bytes_stream();
    let mut received = 0;
    while received < 3 {
        stream.next().await.unwrap().unwrap();
        received += 1;
    }
    assert_eq!(server.engine.running_requests(), 1);
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.engine.running_requests() > 0 {
        assert!(
            Instant::now() < deadline,
            "generation kept running after the client left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn python_sdk_client() {
    common::run_sdk_script("sdk_client.py").await;
}

#[tokio::test]
async fn repeated_prefixes_are_served_from_the_prefix_cache() {
    let server = shared();
    let system =
        "You are a meticulous assistant for a lighthouse museum. Answer visitors briefly, \
                  kindly and accurately, and mention opening hours (9 to 5) when relevant.";
    let first = json!({"model": MODEL, "temperature": 0, "max_tokens": 12, "messages": [
        {"role": "system", "content": system},
        {"role": "user", "content": "When can I visit?"},
    ]});
    let (status, one) = server.chat(&first).await;
    assert_eq!(status, 200, "{one}");
    let (_, again) = server.chat(&first).await;
    let cached = again["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    let prompt = again["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(
        cached + 1 >= prompt && cached > 0,
        "cached {cached} of {prompt}"
    );
    assert_eq!(
        content(&one, 0),
        content(&again, 0),
        "reuse must not change the answer"
    );

    // The next turn of the same chat reuses the whole earlier exchange.
    let reply = content(&one, 0).to_owned();
    let second = json!({"model": MODEL, "temperature": 0, "max_tokens": 8, "messages": [
        {"role": "system", "content": system},
        {"role": "user", "content": "When can I visit?"},
        {"role": "assistant", "content": reply},
        {"role": "user", "content": "Thanks!"},
    ]});
    let (status, next) = server.chat(&second).await;
    assert_eq!(status, 200, "{next}");
    let cached_next = next["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    assert!(
        cached_next >= prompt - 1,
        "cached {cached_next}, first prompt {prompt}"
    );
    validate("CreateChatCompletionResponse", &next);
}
