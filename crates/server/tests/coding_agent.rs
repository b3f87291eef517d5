//! A real Anthropic-speaking coding agent (Claude Code, the npm package, pure JavaScript in its
//! 1.x line) pointed at Switchboard's Messages surface with `ANTHROPIC_BASE_URL`, over an
//! OpenAI-compatible upstream: the agent's own requests (its long system prompt, a dozen tools
//! with cache_control, metadata, streaming) must decode, translate and come back in a shape the
//! agent accepts, through one tool round trip that changes a file on disk.
//!
//! Runs when `SWITCHBOARD_TEST_CLAUDE_CODE` names the package's `cli.js` (scripts/test.sh
//! installs it); skips otherwise, and fails under CI when it cannot run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use switchboard_gateway::{Catalog, CatalogEntry, Pricing, Route};
use switchboard_model::Capability;
use switchboard_providers::openai::{OpenAiConfig, OpenAiProvider, Timeouts};
use switchboard_server::ServerConfig;

const PROOF: &str = "written by the model through Switchboard";

#[derive(Clone)]
struct Fake {
    received: Arc<Mutex<Vec<Value>>>,
    proof_path: String,
}

fn chunk(delta: Value, finish: Option<&str>) -> Value {
    json!({"id": "chatcmpl-cc", "object": "chat.completion.chunk", "created": 1, "model": "up",
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

fn stream(chunks: &[Value]) -> Response {
    let mut text: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    text.push_str(&format!(
        "data: {}\n\n",
        json!({"id": "chatcmpl-cc", "object": "chat.completion.chunk", "created": 1,
               "model": "up", "choices": [],
               "usage": {"prompt_tokens": 900, "completion_tokens": 12, "total_tokens": 912}})
    ));
    text.push_str("data: [DONE]\n\n");
    ([("content-type", "text/event-stream")], text).into_response()
}

/// A scripted model: with the agent's Write tool on offer and no result yet, it writes the
/// proof file; once the result is back, it says it is done. Anything else (the agent's side
/// requests on its small model) gets a short answer.
async fn completions(State(fake): State<Fake>, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap();
    fake.received.lock().unwrap().push(body.clone());
    let messages = body["messages"].as_array().unwrap();
    let offers_write = body["tools"]
        .as_array()
        .is_some_and(|tools| tools.iter().any(|t| t["function"]["name"] == "Write"));
    let answered = messages.iter().any(|m| m["role"] == "tool");
    if offers_write && !answered {
        let arguments = json!({"file_path": fake.proof_path, "content": PROOF}).to_string();
        return stream(&[
            chunk(
                json!({"role": "assistant", "content": "Writing the file."}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_w1", "type": "function",
                        "function": {"name": "Write", "arguments": arguments}}]}),
                None,
            ),
            chunk(json!({}), Some("tool_calls")),
        ]);
    }
    let text = if answered {
        "Done: the file is written."
    } else {
        "ok"
    };
    stream(&[
        chunk(json!({"role": "assistant", "content": text}), None),
        chunk(json!({}), Some("stop")),
    ])
}

#[tokio::test]
async fn claude_code_runs_a_tool_session_through_the_messages_surface() {
    let Some(cli) = std::env::var_os("SWITCHBOARD_TEST_CLAUDE_CODE") else {
        switchboard_testkit::skip_unless_ci(
            "Claude Code session: set SWITCHBOARD_TEST_CLAUDE_CODE to its cli.js",
        );
        return;
    };
    let scratch = std::env::temp_dir().join(format!("switchboard-agent-{}", std::process::id()));
    let work = scratch.join("work");
    let home = scratch.join("home");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    let proof_path = work.join("proof.txt");
    let fake = Fake {
        received: Arc::default(),
        proof_path: proof_path.to_string_lossy().into_owned(),
    };
    let app = Router::new()
        .route("/v1/chat/completions", post(completions))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let provider: Arc<dyn switchboard_gateway::Provider> = Arc::new(
        OpenAiProvider::new(OpenAiConfig {
            name: "up".into(),
            base_url: format!("http://{address}/v1"),
            api_key: Some("sk-up".into()),
            headers: Vec::new(),
            timeouts: Timeouts::default(),
        })
        .unwrap(),
    );
    let mut catalog = Catalog::default();
    for id in ["agent-main", "agent-small"] {
        catalog.add(CatalogEntry {
            id: id.into(),
            owned_by: "up".into(),
            created: 1_700_000_000,
            context_window: 200_000,
            capabilities: vec![Capability::Tools, Capability::Vision, Capability::Reasoning],
            pricing: Pricing::default(),
            routes: vec![Route::new("up", Arc::clone(&provider), "up-model", 0)],
        });
    }
    let base = common::serve_catalog(catalog, &["sk-agent"], ServerConfig::default());

    let run = tokio::process::Command::new("node")
        .arg(&cli)
        .args(["-p", "Create proof.txt with the proof sentence."])
        .args(["--model", "agent-main", "--allowedTools", "Write"])
        .args(["--output-format", "json"])
        .current_dir(&work)
        .env("HOME", &home)
        .env("ANTHROPIC_BASE_URL", &base)
        .env("ANTHROPIC_API_KEY", "sk-agent")
        .env("ANTHROPIC_SMALL_FAST_MODEL", "agent-small")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_ERROR_REPORTING", "1")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("Claude Code finished within two minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let received = fake.received.lock().unwrap().clone();
    let context = format!(
        "status {:?}\nstdout: {stdout}\nstderr: {stderr}\nupstream received {} requests",
        output.status,
        received.len()
    );
    assert!(output.status.success(), "{context}");
    let result: Value = serde_json::from_str(stdout.trim()).expect(&context);
    assert_eq!(result["is_error"], false, "{context}");
    assert_eq!(result["result"], "Done: the file is written.", "{context}");
    assert_eq!(std::fs::read_to_string(&proof_path).unwrap(), PROOF);
    std::fs::remove_dir_all(&scratch).unwrap();

    // The agent's turn reached the upstream whole: its system prompt, its tools, the call and
    // the tool's result in the next turn.
    let last = received
        .iter()
        .rev()
        .find(|b| {
            b["messages"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["role"] == "tool")
        })
        .expect(&context);
    let messages = last["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert!(last["tools"].as_array().unwrap().len() > 5, "{last}");
    // The agent's metadata.user_id travels as the upstream's `user`.
    assert!(last["user"].is_string(), "{last}");
    let call_turn = messages
        .iter()
        .find(|m| m["tool_calls"].is_array())
        .unwrap();
    assert_eq!(call_turn["tool_calls"][0]["function"]["name"], "Write");
    let result_turn = messages.iter().find(|m| m["role"] == "tool").unwrap();
    assert_eq!(
        result_turn["tool_call_id"],
        call_turn["tool_calls"][0]["id"]
    );
    assert!(
        result_turn["content"]
            .as_str()
            .unwrap()
            .contains("proof.txt"),
        "{result_turn}"
    );
}
