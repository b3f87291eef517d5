//! Regression tests for what real clients and a hostile tester broke: schemas that clients
//! send, the engine's memory and queue under abuse, connection deadlines, and where requests
//! may come from. Each failed before its fix.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{assert_error, client, shared, start, MODEL, SYSTEM};
use serde_json::{json, Value};
use switchboard_engine::EngineConfig;
use switchboard_server::ServerConfig;
use switchboard_testkit::check_against_schema;

/// What Pydantic writes for a model with a nested model and an enum.
fn pydantic_parameters() -> Value {
    json!({
        "$defs": {
            "Color": {"enum": ["red", "green", "blue"], "title": "Color", "type": "string"},
            "Size": {"type": "object", "title": "Size",
                     "properties": {"width": {"type": "integer"}, "height": {"type": "integer"}},
                     "required": ["width", "height"], "additionalProperties": false}
        },
        "type": "object",
        "title": "Paint",
        "properties": {"color": {"$ref": "#/$defs/Color"}, "size": {"$ref": "#/$defs/Size"}},
        "required": ["color", "size"],
        "additionalProperties": false
    })
}

/// The parsed arguments of a Responses body's first `function_call` item.
fn first_call_arguments(response: &Value) -> Value {
    let call = response["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["type"] == "function_call")
        .unwrap_or_else(|| panic!("no call: {response}"));
    serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap()
}

/// Required properties that contain themselves: no finite JSON value satisfies this.
fn endless_schema() -> Value {
    json!({"$defs": {"p": {"type": "object", "properties": {"p": {"$ref": "#/$defs/p"}},
                           "required": ["p"]}},
           "$ref": "#/$defs/p"})
}

#[tokio::test]
async fn responses_tools_without_strict_take_loose_schemas() {
    // LangChain's bind_tools with use_responses_api, Open WebUI and the Vercel AI SDK send this.
    let parameters =
        json!({"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}});
    let body = json!({"model": MODEL, "instructions": SYSTEM, "input": "Weather in Oslo?",
        "tools": [{"type": "function", "name": "get_weather", "description": "Weather for a city.",
                   "parameters": parameters}],
        "tool_choice": "required", "max_output_tokens": 60, "temperature": 0});
    let (status, response) = shared().post("/v1/responses", &body).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["tools"][0]["strict"], false, "{response}");
    check_against_schema(&parameters, &first_call_arguments(&response)).unwrap();
}

#[tokio::test]
async fn tool_parameters_with_defs_and_refs_work_on_both_surfaces() {
    let parameters = pydantic_parameters();
    for strict in [true, false] {
        let chat = json!({"model": MODEL, "messages": common::ask("Paint a red 3 by 4 box."),
            "tools": [{"type": "function", "function": {"name": "paint", "parameters": parameters, "strict": strict}}],
            "tool_choice": "required", "max_tokens": 80, "temperature": 0});
        let (status, body) = shared().chat(&chat).await;
        assert_eq!(status, 200, "{body}");
        let arguments = &body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"];
        let arguments: Value = serde_json::from_str(arguments.as_str().unwrap()).unwrap();
        check_against_schema(&parameters, &arguments).unwrap();

        let responses = json!({"model": MODEL, "instructions": SYSTEM, "input": "Paint a red 3 by 4 box.",
            "tools": [{"type": "function", "name": "paint", "parameters": parameters, "strict": strict}],
            "tool_choice": "required", "max_output_tokens": 80, "temperature": 0});
        let (status, body) = shared().post("/v1/responses", &responses).await;
        assert_eq!(status, 200, "{body}");
        check_against_schema(&parameters, &first_call_arguments(&body)).unwrap();
    }
}

#[tokio::test]
async fn schema_errors_never_quote_the_tool_grammar() {
    let broken = json!({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}, "required": ["a"]});
    let chat = json!({"model": MODEL, "messages": common::user("x"),
        "tools": [{"type": "function", "function": {"name": "f", "parameters": broken}}],
        "tool_choice": "required", "max_tokens": 20});
    let (status, body) = shared().chat(&chat).await;
    assert_error(status, &body, 400, Some("tools[0].function.parameters"));
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("function 'f'"), "{message}");
    for internal in ["%json", "tool0", "anyOf", "start:", "lark"] {
        assert!(!message.contains(internal), "{message}");
    }
}

#[tokio::test]
async fn endless_schemas_are_refused_up_front() {
    let chat = json!({"model": MODEL, "messages": common::user("x"), "max_tokens": 20,
        "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": endless_schema()}}});
    let (status, body) = shared().chat(&chat).await;
    assert_error(status, &body, 400, Some("response_format"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no finite JSON value"),
        "{body}"
    );
    let responses = json!({"model": MODEL, "input": "x", "max_output_tokens": 20,
        "text": {"format": {"type": "json_schema", "name": "p", "schema": endless_schema()}}});
    let (status, body) = shared().post("/v1/responses", &responses).await;
    assert_error(status, &body, 400, Some("text.format"));
    let tool = json!({"model": MODEL, "messages": common::user("x"), "max_tokens": 20,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": endless_schema()}}]});
    let (status, body) = shared().chat(&tool).await;
    assert_error(status, &body, 400, Some("tools[0].function.parameters"));
}

/// KV-cache bytes one position takes in the default model (30 layers, 3 KV heads of 64, K and V
/// in half precision).
const KV_BYTES_PER_POSITION: usize = 30 * 192 * 2 * 2;

#[tokio::test]
async fn the_kv_budget_bounds_admission() {
    // Room for one request of up to ~120 positions at a time.
    let server = start(
        EngineConfig {
            kv_cache_bytes: 120 * KV_BYTES_PER_POSITION,
            ..EngineConfig::default()
        },
        &[],
        ServerConfig::default(),
    );
    // n × a full-length answer can never fit: a 400 that names the cause.
    let (status, body) = server
        .chat(&json!({"model": MODEL, "messages": common::user("Hi"), "n": 128}))
        .await;
    assert_error(status, &body, 400, Some("n"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("KV cache"),
        "{body}"
    );
    // Two requests that fit only one at a time: both are answered, never together.
    let request = json!({"model": MODEL, "messages": common::ask("Count to five."), "max_tokens": 40,
                         "temperature": 0});
    let engine = server.engine.clone();
    let watcher = tokio::spawn(async move {
        let mut most = 0;
        for _ in 0..400 {
            most = most.max(engine.running_requests());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        most
    });
    let (a, b) = tokio::join!(server.chat(&request), server.chat(&request));
    assert_eq!(a.0, 200, "{}", a.1);
    assert_eq!(b.0, 200, "{}", b.1);
    assert!(watcher.await.unwrap() <= 1, "both ran at once");
}

#[tokio::test]
async fn oversized_prompts_are_refused_before_tokenizing() {
    let huge = "lorem ipsum dolor sit amet ".repeat(550_000); // about 15 MB
    let (status, body) = shared()
        .chat(&json!({"model": MODEL, "messages": common::user(&huge), "max_tokens": 10}))
        .await;
    assert_error(status, &body, 400, Some("messages"));
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    // "at least": refused from its size alone, without tokenizing all of it.
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at least"),
        "{body}"
    );
    // A prompt a little over the window stops tokenizing at the window.
    let over = "lorem ipsum dolor sit amet ".repeat(2_000);
    let (status, body) = shared()
        .chat(&json!({"model": MODEL, "messages": common::user(&over), "max_tokens": 10}))
        .await;
    assert_error(status, &body, 400, Some("messages"));
    assert_eq!(body["error"]["code"], "context_length_exceeded");
}

#[tokio::test]
async fn abandoned_queued_requests_leave_the_queue() {
    let server = start(
        EngineConfig {
            queue_capacity: 1,
            max_sequences: 1,
            ..EngineConfig::default()
        },
        &[],
        ServerConfig::default(),
    );
    let long = json!({"model": MODEL, "messages": common::ask("Write a long story about a fox."),
                      "max_tokens": 400, "temperature": 0, "stream": true});
    for streamed in [true, false] {
        // A occupies the only running slot.
        let mut running = client()
            .post(server.url("/v1/chat/completions"))
            .json(&long)
            .send()
            .await
            .unwrap();
        assert_eq!(running.status(), 200);
        running.chunk().await.unwrap();
        // B waits in the queue's only place, then its client goes away.
        if streamed {
            let queued = client()
                .post(server.url("/v1/chat/completions"))
                .json(&long)
                .send()
                .await
                .unwrap();
            assert_eq!(queued.status(), 200);
            drop(queued);
        } else {
            let mut body = long.clone();
            body["stream"] = json!(false);
            let body = body.to_string();
            let mut socket = connect(&server);
            write!(
                socket,
                "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            drop(socket);
        }
        // C takes the place B left instead of a 503, long before A finishes. (A few quick tries:
        // the server learns of B's departure when its socket closes.)
        let mut answer = (0, Value::Null);
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            answer = server
                .chat(&json!({"model": MODEL, "messages": common::user("Hi"), "max_tokens": 5}))
                .await;
            if answer.0 != 503 {
                break;
            }
        }
        assert_eq!(answer.0, 200, "streamed B: {streamed}: {}", answer.1);
        drop(running);
    }
}

// ------------------------------------------------------------------------------------------
// Connections.

fn tight_server() -> common::TestServer {
    start(
        EngineConfig::default(),
        &[],
        ServerConfig {
            header_timeout: Duration::from_secs(1),
            body_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(3),
            ..ServerConfig::default()
        },
    )
}

fn connect(server: &common::TestServer) -> TcpStream {
    let address = server.base.trim_start_matches("http://");
    let stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Reads until the server closes the connection; what it sent, and how long that took.
fn read_until_closed(stream: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

/// One raw HTTP/1.1 exchange, for headers a client library would not send.
fn raw(server: &common::TestServer, request: &str) -> String {
    let mut stream = connect(server);
    stream.write_all(request.as_bytes()).unwrap();
    read_until_closed(&mut stream).0
}

#[tokio::test]
async fn silent_trickling_and_stalled_clients_are_cut_off() {
    let server = tight_server();
    let cases: [&[u8]; 3] = [
        b"",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: loc",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"model\"",
    ];
    let tasks: Vec<_> = cases
        .iter()
        .map(|sent| {
            let mut stream = connect(&server);
            let sent = sent.to_vec();
            std::thread::spawn(move || {
                stream.write_all(&sent).unwrap();
                read_until_closed(&mut stream)
            })
        })
        .collect();
    for (index, task) in tasks.into_iter().enumerate() {
        let (answer, took) = task.join().unwrap();
        assert!(
            took < Duration::from_secs(5),
            "case {index} held for {took:?}"
        );
        if index == 2 {
            assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
            assert!(answer.contains("request_timeout"), "{answer}");
        }
    }
    // An idle keep-alive connection is closed after the idle timeout, not the head's.
    let mut stream = connect(&server);
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let (answer, took) = read_until_closed(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        took > Duration::from_millis(2500) && took < Duration::from_secs(8),
        "idle connection closed after {took:?}, not about 3 s"
    );
}

#[tokio::test]
async fn a_slow_generation_is_never_cut_by_connection_deadlines() {
    let server = tight_server();
    // Longer than the head and idle deadlines together, with nothing sent until the end.
    let body = json!({"model": MODEL, "messages": common::ask("Write a long story about a fox."),
                      "max_tokens": 450, "temperature": 0});
    let started = Instant::now();
    let (status, response) = server.chat(&body).await;
    assert_eq!(status, 200, "{response}");
    eprintln!("generation took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off() {
    let server = start(
        EngineConfig::default(),
        &[],
        ServerConfig {
            write_timeout: Duration::from_secs(1),
            ..ServerConfig::default()
        },
    );
    // A stream far larger than any socket buffer (16 choices, 2000 tokens, 20 alternatives per
    // token), whose client reads nothing: the engine pauses it, the server cannot write, and the
    // connection must be cut, which cancels the generation.
    let body = json!({"model": MODEL, "messages": common::ask("Write a long story."), "stream": true,
                      "n": 16, "max_tokens": 2000, "logprobs": true, "top_logprobs": 20});
    let text = body.to_string();
    let mut stream = connect(&server);
    write!(
        stream,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
        text.len()
    )
    .unwrap();
    let started = Instant::now();
    while server.engine.running_requests() == 0 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        server.engine.running_requests(),
        1,
        "the stream never started"
    );
    while server.engine.running_requests() > 0 && started.elapsed() < Duration::from_secs(40) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        server.engine.running_requests(),
        0,
        "a stream nobody reads still holds the engine after {:?}",
        started.elapsed()
    );
    drop(stream);
}

#[tokio::test]
async fn the_connection_cap_holds_and_the_server_keeps_serving() {
    let server = start(
        EngineConfig::default(),
        &[],
        ServerConfig {
            header_timeout: Duration::from_secs(1),
            max_connections: 8,
            ..ServerConfig::default()
        },
    );
    let idle: Vec<TcpStream> = (0..40).map(|_| connect(&server)).collect();
    let started = Instant::now();
    let status = client()
        .get(server.url("/health"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(status, 200);
    assert!(started.elapsed() < Duration::from_secs(15));
    drop(idle);
}

// ------------------------------------------------------------------------------------------
// Where requests come from.

#[tokio::test]
async fn no_key_mode_refuses_foreign_hosts_and_origins() {
    let server = shared();
    let body = r#"{"model":"smollm2-135m-instruct","input":"hi","max_output_tokens":16}"#;
    let post = |host: &str, extra: &str| {
        format!(
            "POST /v1/responses HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let rebinding = raw(server, &post("attacker.example", ""));
    assert!(rebinding.starts_with("HTTP/1.1 403"), "{rebinding}");
    assert!(rebinding.contains("forbidden_host"), "{rebinding}");
    let cross_site = raw(
        server,
        &post("127.0.0.1", "Origin: http://attacker.example\r\n"),
    );
    assert!(cross_site.starts_with("HTTP/1.1 403"), "{cross_site}");
    assert!(cross_site.contains("forbidden_origin"), "{cross_site}");
    let local_page = raw(
        server,
        "GET /v1/models HTTP/1.1\r\nHost: localhost:8080\r\nOrigin: http://localhost:3000\r\nConnection: close\r\n\r\n",
    );
    assert!(local_page.starts_with("HTTP/1.1 200"), "{local_page}");
    assert!(
        local_page
            .to_ascii_lowercase()
            .contains("access-control-allow-origin: http://localhost:3000"),
        "{local_page}"
    );
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let server = start(
        EngineConfig::default(),
        &["sk-cors"],
        ServerConfig {
            cors_allowed_origins: vec!["https://app.example".into()],
            ..ServerConfig::default()
        },
    );
    let preflight = |origin: &str| {
        format!(
            "OPTIONS /v1/chat/completions HTTP/1.1\r\nHost: gateway.example\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization, content-type, x-stainless-os\r\nConnection: close\r\n\r\n"
        )
    };
    let allowed = raw(&server, &preflight("https://app.example")).to_ascii_lowercase();
    assert!(allowed.starts_with("http/1.1 200"), "{allowed}");
    assert!(
        allowed.contains("access-control-allow-origin: https://app.example"),
        "{allowed}"
    );
    assert!(allowed.contains("x-stainless-os"), "{allowed}");
    let other = raw(&server, &preflight("https://evil.example")).to_ascii_lowercase();
    assert!(!other.contains("access-control-allow-origin"), "{other}");
    // With keys, any Host name is served.
    let models = raw(
        &server,
        "GET /v1/models HTTP/1.1\r\nHost: gateway.example\r\nAuthorization: Bearer sk-cors\r\nConnection: close\r\n\r\n",
    );
    assert!(models.starts_with("HTTP/1.1 200"), "{models}");
}

#[tokio::test]
async fn a_non_ascii_authorization_header_is_a_wrong_key() {
    let server = start(
        EngineConfig::default(),
        &["sk-right"],
        ServerConfig::default(),
    );
    let mut stream = connect(&server);
    let mut request = b"GET /v1/models HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer sk-\xc3\xa9\r\nx-api-key: sk-right\r\nConnection: close\r\n\r\n".to_vec();
    stream.write_all(&request).unwrap();
    let (answer, _) = read_until_closed(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("invalid_api_key"), "{answer}");
    // The same request without the unreadable header is let in by x-api-key.
    request = b"GET /v1/models HTTP/1.1\r\nHost: localhost\r\nx-api-key: sk-right\r\nConnection: close\r\n\r\n".to_vec();
    let mut stream = connect(&server);
    stream.write_all(&request).unwrap();
    let (answer, _) = read_until_closed(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
