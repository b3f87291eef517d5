//! Test support: a real server with the real default model on an ephemeral loopback port,
//! plus helpers to call it and to read SSE streams.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::Value;
use switchboard_engine::{Engine, EngineConfig};
use switchboard_gateway::{ApiKeys, Catalog, CatalogEntry, Gateway};
use switchboard_server::ServerConfig;

pub const MODEL: &str = "smollm2-135m-instruct";

pub struct TestServer {
    pub base: String,
    pub engine: Engine,
}

pub fn model_path() -> PathBuf {
    let path = switchboard_testkit::default_model_path();
    assert!(
        path.is_file(),
        "the default model is missing at {}: run `cargo run -p switchboard -- pull` (scripts/test.sh does)",
        path.display()
    );
    path
}

/// The server most tests share: no keys, default limits.
pub fn shared() -> &'static TestServer {
    static SERVER: OnceLock<TestServer> = OnceLock::new();
    SERVER.get_or_init(|| start(EngineConfig::default(), &[], ServerConfig::default()))
}

/// A dedicated server, for tests that need keys or tight limits.
pub fn start(
    engine_config: EngineConfig,
    keys: &[&str],
    server_config: ServerConfig,
) -> TestServer {
    init_logging();
    let engine = Engine::load(&model_path(), MODEL, &engine_config).expect("load model");
    let mut catalog = Catalog::default();
    catalog.add(CatalogEntry::local(engine.clone(), 1_700_000_000));
    let base = serve_catalog(catalog, keys, server_config);
    TestServer { base, engine }
}

/// Serves `catalog` (no model needed when it holds only fakes); the server's base URL.
pub fn serve_catalog(catalog: Catalog, keys: &[&str], server_config: ServerConfig) -> String {
    serve_gateway(Gateway::new(catalog, ApiKeys::new(keys)), server_config)
}

/// The script of a fake provider that answers "ok" at once: text, a stop, `usage` when given,
/// the end.
pub fn answer_ok(
    usage: Option<switchboard_model::Usage>,
) -> Vec<switchboard_providers::fake::Step> {
    use switchboard_model::{Event, FinishReason};
    use switchboard_providers::fake::Step;
    let mut script = vec![
        Step::Emit(Event::TextDelta {
            choice: 0,
            text: "ok".into(),
            logprobs: vec![],
        }),
        Step::Emit(Event::Finished {
            choice: 0,
            reason: FinishReason::Stop,
            stop_sequence: None,
        }),
    ];
    script.extend(usage.map(|usage| Step::Emit(Event::Usage(usage))));
    script.push(Step::Emit(Event::Done));
    script
}

/// A catalog entry served by a fake provider playing `script`.
pub fn fake_entry(
    id: &str,
    script: Vec<switchboard_providers::fake::Step>,
    pricing: switchboard_gateway::Pricing,
) -> CatalogEntry {
    CatalogEntry {
        id: id.into(),
        owned_by: "fake".into(),
        created: 1_700_000_000,
        context_window: 8_000,
        capabilities: vec![],
        pricing,
        routes: vec![switchboard_gateway::Route::new(
            "fake",
            Arc::new(switchboard_providers::fake::FakeProvider::new(script)),
            id,
            1,
        )],
    }
}

/// The `type` of each object in a JSON list (output items, content blocks, input items).
pub fn types_of(list: &Value) -> Vec<&str> {
    list.as_array()
        .expect("a JSON list")
        .iter()
        .map(|item| item["type"].as_str().expect("a type"))
        .collect()
}

/// Serves a fake (an upstream, a search backend, pages) on a loopback port; its base URL.
pub async fn spawn_app(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    format!("http://{address}")
}

/// Serves `gateway` on a private in-memory store; the server's base URL.
pub fn serve_gateway(gateway: Gateway, server_config: ServerConfig) -> String {
    serve_gateway_on(gateway, server_config, None)
}

/// Serves `gateway` on the store at `store` (a `postgres://` URL several nodes share), or on a
/// private in-memory one; the server's base URL.
pub fn serve_gateway_on(
    gateway: Gateway,
    server_config: ServerConfig,
    store: Option<String>,
) -> String {
    init_logging();
    let gateway = Arc::new(gateway);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let store = match store {
                Some(location) => switchboard_store::Store::connect(&location).await.unwrap(),
                None => switchboard_store::Store::in_memory().await.unwrap(),
            };
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            switchboard_server::serve(
                listener,
                gateway,
                store,
                &server_config,
                std::future::pending(),
            )
            .await
            .unwrap();
        });
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("server start");
    format!("http://{addr}")
}

/// `SWITCHBOARD_TEST_LOG=debug` (any `tracing` filter) writes the servers' logs to stderr.
fn init_logging() {
    if let Ok(filter) = std::env::var("SWITCHBOARD_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = client()
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn chat(&self, body: &Value) -> (u16, Value) {
        self.post("/v1/chat/completions", body).await
    }

    /// Streams a chat completion and returns the decoded `data:` payloads, `[DONE]` last.
    pub async fn chat_stream(&self, body: &Value) -> (u16, Vec<String>) {
        let response = client()
            .post(self.url("/v1/chat/completions"))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        if status == 200 {
            assert_eq!(
                response.headers()["content-type"].to_str().unwrap(),
                "text/event-stream"
            );
        }
        let text = response.text().await.unwrap();
        (status, sse_data(&text))
    }
}

pub fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter(|frame| !frame.trim().is_empty())
        .map(|frame| {
            frame
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("frame without data: {frame:?}"))
                .to_owned()
        })
        .collect()
}

/// The named events of an Anthropic-style SSE body: `(event name, data)` per frame.
pub fn named_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|frame| !frame.trim().is_empty())
        .map(|frame| {
            let field = |prefix: &str| {
                frame
                    .lines()
                    .find_map(|l| l.strip_prefix(prefix))
                    .unwrap_or_else(|| panic!("no {prefix:?} line in {frame:?}"))
            };
            let data = serde_json::from_str(field("data: ")).expect("JSON data");
            (field("event: ").to_owned(), data)
        })
        .collect()
}

/// Validates against the OpenAI spec, or says clearly why it cannot.
pub fn validate(schema: &str, body: &Value) {
    switchboard_testkit::validate_or_skip(schema, body);
}

/// SmolLM2's template adds its own system prompt when none is given, and with it this small
/// model tends to answer in French; tests that check answers bring their own.
pub const SYSTEM: &str = "You are a helpful assistant.";

/// The arguments schema of the `get_weather` tool both surfaces' tests call.
pub fn weather_parameters() -> Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 30},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
        },
        "required": ["city", "unit"],
        "additionalProperties": false
    })
}

pub fn ask(text: &str) -> Value {
    serde_json::json!([{ "role": "system", "content": SYSTEM }, { "role": "user", "content": text }])
}

pub fn user(text: &str) -> Value {
    serde_json::json!([{ "role": "user", "content": text }])
}

/// Asserts an OpenAI error body with the given status, type and param.
pub fn assert_error(status: u16, body: &Value, want_status: u16, want_param: Option<&str>) {
    assert_eq!(status, want_status, "body: {body}");
    validate("ErrorResponse", body);
    let error = &body["error"];
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(error["type"].is_string(), "{body}");
    if let Some(param) = want_param {
        assert_eq!(error["param"], param, "{body}");
    }
}

/// POSTs `body` to `base` + `path`: the status, headers and raw text of the answer.
pub async fn post_raw(
    base: &str,
    path: &str,
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, String) {
    let response = client()
        .post(format!("{base}{path}"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

/// Runs one of the official-SDK scripts in `tests/` against the shared server; it must print
/// ALL OK. Skips with a message when no Python with `openai` is configured.
pub async fn run_sdk_script(script: &str) {
    run_sdk_script_against(script, &shared().url("/v1")).await;
}

/// Runs an SDK script against the server at `base_url` (its `/v1`).
pub async fn run_sdk_script_against(script: &str, base_url: &str) {
    let Some(python) = std::env::var_os("SWITCHBOARD_TEST_PYTHON") else {
        switchboard_testkit::skip_unless_ci(&format!(
            "{script}: set SWITCHBOARD_TEST_PYTHON to a python with `openai` installed"
        ));
        return;
    };
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(script);
    let output = tokio::process::Command::new(python)
        .arg(path)
        .env("SWITCHBOARD_BASE_URL", base_url)
        .env("SWITCHBOARD_MODEL", MODEL)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("ALL OK"), "{stdout}");
}
