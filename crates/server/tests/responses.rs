//! The Responses API over HTTP with the real default model: plain and streamed responses whose
//! every body and event validates against the OpenAI spec, instructions, token limits, tool
//! calls and their results, structured output, conversation state through
//! `previous_response_id`, retrieval, deletion and input items of stored responses (visible to
//! their own key only), truncation, and the error cases.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{assert_error, client, shared, validate, TestServer, MODEL, SYSTEM};
use serde_json::{json, Value};
use switchboard_engine::EngineConfig;
use switchboard_server::ServerConfig;
use switchboard_testkit::check_against_schema;

impl TestServer {
    async fn respond(&self, body: &Value) -> (u16, Value) {
        self.post("/v1/responses", body).await
    }

    /// One request with an optional key and JSON body; the answer's status and JSON body.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> (u16, Value) {
        let mut request = client().request(method, self.url(path));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn get_with(&self, path: &str, key: Option<&str>) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None, key).await
    }

    async fn post_with(&self, path: &str, body: &Value, key: &str) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body), Some(key))
            .await
    }

    async fn delete_with(&self, path: &str, key: Option<&str>) -> (u16, Value) {
        self.send(reqwest::Method::DELETE, path, None, key).await
    }

    /// Streams a response; checks every frame's `event:` line against its `type`, validates it
    /// and returns the events' data.
    async fn respond_stream(&self, body: &Value) -> (u16, Vec<Value>) {
        let response = client()
            .post(self.url("/v1/responses"))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let is_sse = response.headers()["content-type"] == "text/event-stream";
        let text = response.text().await.unwrap();
        if status != 200 {
            return (status, vec![serde_json::from_str(&text).unwrap()]);
        }
        assert!(is_sse);
        let mut events = Vec::new();
        for frame in text.split("\n\n").filter(|f| !f.trim().is_empty()) {
            let (event_line, data_line) = frame.split_once('\n').expect("event and data lines");
            let name = event_line.strip_prefix("event: ").expect("event: line");
            let data: Value = serde_json::from_str(data_line.strip_prefix("data: ").unwrap())
                .expect("data is JSON");
            assert_eq!(data["type"], name, "event line matches the type");
            validate("ResponseStreamEvent", &data);
            events.push(data);
        }
        for (index, event) in events.iter().enumerate() {
            assert_eq!(event["sequence_number"], index, "{event}");
        }
        (status, events)
    }
}

fn greedy(input: Value) -> Value {
    json!({"model": MODEL, "input": input, "instructions": SYSTEM, "temperature": 0, "max_output_tokens": 40})
}

fn output_text(response: &Value) -> String {
    response["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|item| item["type"] == "message")
        .flat_map(|item| item["content"].as_array().unwrap().iter())
        .filter(|part| part["type"] == "output_text")
        .map(|part| part["text"].as_str().unwrap())
        .collect()
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn plain_response_validates_and_answers() {
    let server = shared();
    let (status, body) = server
        .respond(&greedy(json!("What is the capital of France?")))
        .await;
    assert_eq!(status, 200, "{body}");
    validate("Response", &body);
    assert_eq!(body["object"], "response");
    assert!(body["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(body["status"], "completed");
    assert_eq!(body["model"], MODEL);
    assert_eq!(body["instructions"], SYSTEM);
    assert_eq!(body["store"], true);
    let text = output_text(&body);
    assert!(text.contains("Paris"), "{text}");
    let message = &body["output"][0];
    assert!(message["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["status"], "completed");
    let usage = &body["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["input_tokens"].as_u64().unwrap() + usage["output_tokens"].as_u64().unwrap()
    );
}

#[tokio::test]
async fn streamed_response_emits_events_in_order_and_matches_the_body() {
    let server = shared();
    let request = greedy(json!("What is the capital of France?"));
    let (status, plain) = server.respond(&request).await;
    assert_eq!(status, 200, "{plain}");
    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let (status, events) = server.respond_stream(&streamed).await;
    assert_eq!(status, 200);
    let names = kinds(&events);
    assert_eq!(
        &names[..4],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added"
        ]
    );
    let tail = &names[names.len() - 4..];
    assert_eq!(
        tail,
        [
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    let deltas: String = events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert!(!deltas.is_empty());
    let done = events
        .iter()
        .find(|e| e["type"] == "response.output_text.done")
        .unwrap();
    assert_eq!(done["text"], deltas);
    let completed = &events.last().unwrap()["response"];
    validate("Response", completed);
    assert_eq!(output_text(completed), deltas);
    assert_eq!(
        deltas,
        output_text(&plain),
        "greedy stream equals the plain body"
    );
    assert_eq!(events[0]["response"]["status"], "in_progress");
    let item_id = &events[2]["item"]["id"];
    assert!(events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .all(|e| &e["item_id"] == item_id));
    // A streamed response is stored too.
    let id = completed["id"].as_str().unwrap();
    let (status, stored) = server.get_with(&format!("/v1/responses/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(&stored, completed);
}

#[tokio::test]
async fn max_output_tokens_makes_it_incomplete() {
    let server = shared();
    let request = json!({"model": MODEL, "input": "Tell me a long story about a dragon.",
                         "instructions": SYSTEM, "temperature": 0, "max_output_tokens": 16});
    let (status, body) = server.respond(&request).await;
    assert_eq!(status, 200, "{body}");
    validate("Response", &body);
    assert_eq!(body["status"], "incomplete");
    assert_eq!(body["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(body["usage"]["output_tokens"], 16);
    assert_eq!(body["output"][0]["status"], "incomplete");
    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let (_, events) = server.respond_stream(&streamed).await;
    let last = events.last().unwrap();
    assert_eq!(last["type"], "response.incomplete");
    assert_eq!(
        last["response"]["incomplete_details"]["reason"],
        "max_output_tokens"
    );
}

#[tokio::test]
async fn instructions_are_a_system_message_that_is_not_carried_over() {
    let server = shared();
    let short = json!({"model": MODEL, "input": "Hi", "temperature": 0, "max_output_tokens": 16,
                       "instructions": "Be brief."});
    let mut long = short.clone();
    long["instructions"] = json!("Be brief. ".repeat(20));
    let (_, short) = server.respond(&short).await;
    let (status, long) = server.respond(&long).await;
    assert_eq!(status, 200, "{long}");
    assert_eq!(short["instructions"], "Be brief.");
    let tokens = |body: &Value| body["usage"]["input_tokens"].as_u64().unwrap();
    assert!(tokens(&long) >= tokens(&short) + 19 * 3, "{short} {long}");
    let (status, next) = server
        .respond(
            &json!({"model": MODEL, "input": "Thanks", "temperature": 0, "max_output_tokens": 16,
                         "previous_response_id": long["id"]}),
        )
        .await;
    assert_eq!(status, 200, "{next}");
    assert_eq!(next["instructions"], Value::Null);
    let items = &next["output"];
    assert!(items.as_array().is_some_and(|items| !items.is_empty()));
}

fn weather_tool() -> Value {
    json!([{
        "type": "function",
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": common::weather_parameters()
    }])
}

#[tokio::test]
async fn function_call_round_trip() {
    let server = shared();
    let (status, first) = server
        .respond(&json!({
            "model": MODEL, "instructions": SYSTEM, "temperature": 0,
            "input": "What is the weather in Paris?", "parallel_tool_calls": false,
            "tools": weather_tool(), "tool_choice": "required"
        }))
        .await;
    assert_eq!(status, 200, "{first}");
    validate("Response", &first);
    assert_eq!(first["status"], "completed");
    let call = first["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["type"] == "function_call")
        .expect("a function_call item")
        .clone();
    assert_eq!(call["name"], "get_weather");
    assert!(call["id"].as_str().unwrap().starts_with("fc_"));
    assert_eq!(call["status"], "completed");
    let arguments: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    check_against_schema(&weather_tool()[0]["parameters"], &arguments).unwrap();

    // The result goes back through previous_response_id; the model answers in text.
    let (status, second) = server
        .respond(&json!({
            "model": MODEL, "temperature": 0, "max_output_tokens": 40, "instructions": SYSTEM,
            "previous_response_id": first["id"], "tools": weather_tool(),
            "input": [{"type": "function_call_output", "call_id": call["call_id"],
                       "output": "{\"temperature\": 21, \"unit\": \"celsius\", \"sky\": \"sunny\"}"}]
        }))
        .await;
    assert_eq!(status, 200, "{second}");
    validate("Response", &second);
    assert_eq!(second["previous_response_id"], first["id"]);
    assert!(
        second["usage"]["input_tokens"].as_u64().unwrap()
            > first["usage"]["input_tokens"].as_u64().unwrap()
    );

    // The same round trip stateless: the client sends the call and its output itself.
    let (status, stateless) = server
        .respond(&json!({
            "model": MODEL, "temperature": 0, "max_output_tokens": 40, "store": false,
            "instructions": SYSTEM, "tools": weather_tool(), "tool_choice": "none",
            "input": [
                {"role": "user", "content": "What is the weather in Paris?"},
                {"type": "function_call", "call_id": call["call_id"], "name": "get_weather",
                 "arguments": call["arguments"]},
                {"type": "function_call_output", "call_id": call["call_id"],
                 "output": "{\"temperature\": 21, \"unit\": \"celsius\", \"sky\": \"sunny\"}"}
            ]
        }))
        .await;
    assert_eq!(status, 200, "{stateless}");
    assert!(stateless["output"]
        .as_array()
        .unwrap()
        .iter()
        .all(|item| item["type"] == "message"));
    assert!(!output_text(&stateless).is_empty());
    let id = stateless["id"].as_str().unwrap();
    let (status, _) = server.get_with(&format!("/v1/responses/{id}"), None).await;
    assert_eq!(status, 404, "store: false keeps nothing");
}

#[tokio::test]
async fn streamed_function_call_events() {
    let server = shared();
    let (status, events) = server
        .respond_stream(&json!({
            "model": MODEL, "instructions": SYSTEM, "temperature": 0, "stream": true,
            "input": "What is the weather in Oslo?", "parallel_tool_calls": false,
            "tools": weather_tool(), "tool_choice": {"type": "function", "name": "get_weather"}
        }))
        .await;
    assert_eq!(status, 200);
    let added = events
        .iter()
        .find(|e| e["type"] == "response.output_item.added" && e["item"]["type"] == "function_call")
        .expect("function_call item added");
    assert_eq!(added["item"]["name"], "get_weather");
    assert_eq!(added["item"]["arguments"], "");
    let item_id = &added["item"]["id"];
    let deltas: String = events
        .iter()
        .filter(|e| e["type"] == "response.function_call_arguments.delta")
        .inspect(|e| assert_eq!(&e["item_id"], item_id))
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    let done = events
        .iter()
        .find(|e| e["type"] == "response.function_call_arguments.done")
        .unwrap();
    assert_eq!(done["arguments"], deltas);
    assert_eq!(done["name"], "get_weather");
    let arguments: Value = serde_json::from_str(&deltas).unwrap();
    check_against_schema(&weather_tool()[0]["parameters"], &arguments).unwrap();
    assert_eq!(events.last().unwrap()["type"], "response.completed");
    let calls = events
        .iter()
        .filter(|e| {
            e["type"] == "response.output_item.done" && e["item"]["type"] == "function_call"
        })
        .count();
    assert_eq!(calls, 1, "parallel_tool_calls: false allows one call");
}

#[tokio::test]
async fn json_schema_text_format_validates() {
    let server = shared();
    let schema = json!({
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 30},
            "population": {"type": "integer", "minimum": 0, "maximum": 100000000}
        },
        "required": ["city", "population"],
        "additionalProperties": false
    });
    for seed_prompt in ["Describe Paris.", "Describe Tokyo.", "Describe Lima."] {
        let (status, body) = server
            .respond(&json!({
                "model": MODEL, "instructions": SYSTEM, "input": seed_prompt, "temperature": 1,
                "max_output_tokens": 120,
                "text": {"format": {"type": "json_schema", "name": "city", "strict": true, "schema": schema}}
            }))
            .await;
        assert_eq!(status, 200, "{body}");
        validate("Response", &body);
        assert_eq!(body["text"]["format"]["type"], "json_schema");
        let value: Value = serde_json::from_str(&output_text(&body)).unwrap();
        check_against_schema(&schema, &value).unwrap();
    }
    let (status, body) = server
        .respond(
            &json!({"model": MODEL, "instructions": SYSTEM, "input": "List three colors.",
                         "max_output_tokens": 120, "text": {"format": {"type": "json_object"}}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let value: Value = serde_json::from_str(&output_text(&body)).unwrap();
    assert!(value.is_object());
}

#[tokio::test]
async fn previous_response_id_continues_and_stored_responses_can_be_managed() {
    let server = shared();
    let (status, first) = server
        .respond(&greedy(json!("My name is Ada and I live in Lisbon.")))
        .await;
    assert_eq!(status, 200, "{first}");
    let first_id = first["id"].as_str().unwrap();
    let (status, second) = server
        .respond(
            &json!({"model": MODEL, "temperature": 0, "max_output_tokens": 30,
                         "instructions": SYSTEM, "previous_response_id": first_id,
                         "input": "In which city do I live?"}),
        )
        .await;
    assert_eq!(status, 200, "{second}");
    validate("Response", &second);
    // The whole first exchange is in the prompt, and its computed state is reused.
    let first_total = first["usage"]["total_tokens"].as_u64().unwrap();
    assert!(second["usage"]["input_tokens"].as_u64().unwrap() > first_total);
    assert!(
        second["usage"]["input_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap()
            > 0,
        "{second}"
    );
    // The continued conversation is exactly the one a client could have sent in full.
    let (status, stateless) = server
        .respond(
            &json!({"model": MODEL, "temperature": 0, "max_output_tokens": 30,
            "instructions": SYSTEM, "store": false, "input": [
                {"role": "user", "content": "My name is Ada and I live in Lisbon."},
                {"role": "assistant", "content": output_text(&first)},
                {"role": "user", "content": "In which city do I live?"}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{stateless}");
    assert_eq!(output_text(&second), output_text(&stateless));
    assert_eq!(
        second["usage"]["input_tokens"],
        stateless["usage"]["input_tokens"]
    );

    // Retrieval returns the stored body unchanged.
    let (status, fetched) = server
        .get_with(&format!("/v1/responses/{first_id}"), None)
        .await;
    assert_eq!(status, 200);
    validate("Response", &fetched);
    assert_eq!(fetched, first);

    // Input items: only this response's own input, newest first by default.
    let second_id = second["id"].as_str().unwrap();
    let (status, items) = server
        .get_with(&format!("/v1/responses/{second_id}/input_items"), None)
        .await;
    assert_eq!(status, 200, "{items}");
    validate("ResponseItemList", &items);
    assert_eq!(items["object"], "list");
    assert_eq!(items["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        items["data"][0]["content"][0]["text"],
        "In which city do I live?"
    );
    assert_eq!(items["first_id"], items["data"][0]["id"]);
    assert_eq!(items["has_more"], false);

    // Deleting removes it; continuing from it is then an error.
    let (status, deleted) = server
        .delete_with(&format!("/v1/responses/{first_id}"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        deleted,
        json!({"id": first_id, "object": "response", "deleted": true})
    );
    let (status, body) = server
        .get_with(&format!("/v1/responses/{first_id}"), None)
        .await;
    assert_error(status, &body, 404, None);
    let (status, body) = server
        .delete_with(&format!("/v1/responses/{first_id}"), None)
        .await;
    assert_error(status, &body, 404, None);
    let (status, body) = server
        .respond(&json!({"model": MODEL, "input": "Again?", "previous_response_id": first_id}))
        .await;
    assert_error(status, &body, 400, Some("previous_response_id"));
    assert_eq!(body["error"]["code"], "previous_response_not_found");
    // The second response kept its own copy of the context.
    let (status, third) = server
        .respond(
            &json!({"model": MODEL, "input": "And my name?", "temperature": 0,
                         "max_output_tokens": 20, "previous_response_id": second_id}),
        )
        .await;
    assert_eq!(status, 200, "{third}");
}

#[tokio::test]
async fn stored_responses_belong_to_their_key_and_truncation_auto_fits_the_window() {
    let engine = EngineConfig {
        context_window: 320,
        ..EngineConfig::default()
    };
    let server = common::start(engine, &["key-a", "key-b"], ServerConfig::default());
    let (status, created) = server
        .post_with(
            "/v1/responses",
            &json!({"model": MODEL, "input": "Hello", "temperature": 0, "max_output_tokens": 16}),
            "key-a",
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_str().unwrap();
    let path = format!("/v1/responses/{id}");
    assert_eq!(server.get_with(&path, Some("key-a")).await.0, 200);
    let (status, body) = server.get_with(&path, Some("key-b")).await;
    assert_error(status, &body, 404, None);
    let (status, body) = server
        .get_with(&format!("{path}/input_items"), Some("key-b"))
        .await;
    assert_error(status, &body, 404, None);
    assert_eq!(server.delete_with(&path, Some("key-b")).await.0, 404);
    let (status, body) = server
        .post_with(
            "/v1/responses",
            &json!({"model": MODEL, "input": "Hi", "previous_response_id": id}),
            "key-b",
        )
        .await;
    assert_error(status, &body, 400, Some("previous_response_id"));
    let (status, body) = server.get_with(&path, None).await;
    assert_error(status, &body, 401, None);

    // A conversation longer than the window: refused as it is, served with truncation.
    let long_turn = "Tell me about lighthouses and the sea. ".repeat(12);
    let input: Vec<Value> = (0..4)
        .flat_map(|_| {
            [
                json!({"role": "user", "content": long_turn}),
                json!({"role": "assistant", "content": "Lighthouses guide ships."}),
            ]
        })
        .chain([json!({"role": "user", "content": "Thanks!"})])
        .collect();
    let request =
        json!({"model": MODEL, "input": input, "temperature": 0, "max_output_tokens": 16});
    let (status, body) = server.post_with("/v1/responses", &request, "key-a").await;
    assert_error(status, &body, 400, None);
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    let mut truncating = request.clone();
    truncating["truncation"] = json!("auto");
    let (status, body) = server
        .post_with("/v1/responses", &truncating, "key-a")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["truncation"], "auto");
    assert!(body["usage"]["input_tokens"].as_u64().unwrap() + 16 <= 320);
}

#[tokio::test]
async fn errors_match_chat_completions() {
    let server = shared();
    let cases = [
        (json!({"input": "x"}), 400, Some("model")),
        (json!({"model": MODEL}), 400, Some("input")),
        (
            json!({"model": MODEL, "input": "x", "temperature": 5}),
            400,
            Some("temperature"),
        ),
        (
            json!({"model": MODEL, "input": "x", "unknown_field": 1}),
            400,
            Some("unknown_field"),
        ),
        (
            json!({"model": MODEL, "input": [{"role": "wizard", "content": "x"}]}),
            400,
            Some("input[0].role"),
        ),
        (
            json!({"model": "no-such-model", "input": "x"}),
            404,
            Some("model"),
        ),
        (
            json!({"model": MODEL, "input": "x", "tools": [{"type": "web_search"}]}),
            400,
            Some("tools"),
        ),
        (
            json!({"model": MODEL, "input": "x", "reasoning": {"effort": "high"}}),
            400,
            Some("reasoning.effort"),
        ),
        (
            json!({"model": MODEL, "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]}]}),
            400,
            Some("input"),
        ),
        (
            json!({"model": MODEL, "input": "x", "max_output_tokens": 1_000_000}),
            400,
            None,
        ),
        (
            json!({"model": MODEL, "input": "x", "background": true}),
            400,
            Some("background"),
        ),
        (
            json!({"model": MODEL, "input": "x", "text": {"format": {"type": "json_schema", "name": "s", "strict": true, "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}}}),
            400,
            Some("text.format"),
        ),
        (
            // An explicitly strict tool with a schema strict mode cannot take is refused.
            json!({"model": MODEL, "input": "x", "tools": [{"type": "function", "name": "f", "strict": true, "parameters": {"type": "object", "properties": {"a": {"type": "string"}}}}]}),
            400,
            Some("tools[0].parameters"),
        ),
    ];
    for (body, want, param) in cases {
        let (status, error) = server.respond(&body).await;
        assert_error(status, &error, want, param);
    }
    let (status, error) = server
        .respond(&json!({"model": MODEL, "input": "x", "max_output_tokens": 1_000_000}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(error["error"]["code"], "context_length_exceeded");
    assert_eq!(error["error"]["param"], "input");
    let response = client()
        .post(server.url("/v1/responses"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    assert_error(status, &response.json().await.unwrap(), 400, None);
    let (status, body) = server.get_with("/v1/responses/resp_missing", None).await;
    assert_error(status, &body, 404, None);
    let (status, body) = server
        .get_with("/v1/responses/resp_missing/input_items?limit=500", None)
        .await;
    assert_error(status, &body, 404, None);
}

#[tokio::test]
async fn python_sdk_responses() {
    common::run_sdk_script("sdk_responses.py").await;
}

/// With parallel calls allowed and no token limit, this model repeats the same call until the
/// context window is full; an exact repeat now ends the turn instead, on both surfaces.
#[tokio::test]
async fn an_exact_repeat_of_a_call_ends_the_turn() {
    let server = shared();
    let (status, events) = server
        .respond_stream(&json!({
            "model": MODEL, "instructions": SYSTEM, "temperature": 0, "stream": true,
            "input": "What is the weather in Oslo?", "tools": weather_tool(), "tool_choice": "required"
        }))
        .await;
    assert_eq!(status, 200);
    let done = &events.last().unwrap()["response"];
    assert_eq!(done["status"], "completed", "{done}");
    let calls: Vec<(String, Value)> = done["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|item| item["type"] == "function_call")
        .map(|item| {
            let arguments = serde_json::from_str(item["arguments"].as_str().unwrap()).unwrap();
            (item["name"].as_str().unwrap().to_owned(), arguments)
        })
        .collect();
    assert!(!calls.is_empty());
    for (i, call) in calls.iter().enumerate() {
        assert!(!calls[..i].contains(call), "repeated call {call:?}");
    }
    assert!(
        done["usage"]["output_tokens"].as_u64().unwrap() < 400,
        "{done}"
    );
    let streamed_calls = events
        .iter()
        .filter(|e| {
            e["type"] == "response.output_item.done" && e["item"]["type"] == "function_call"
        })
        .count();
    assert_eq!(streamed_calls, calls.len(), "no dropped call was streamed");

    let (status, chat) = server
        .chat(&json!({
            "model": MODEL, "temperature": 0, "tool_choice": "required",
            "messages": common::ask("What is the weather in Oslo?"),
            "tools": [{"type": "function", "function": {"name": "get_weather",
                       "parameters": weather_tool()[0]["parameters"]}}]
        }))
        .await;
    assert_eq!(status, 200, "{chat}");
    let choice = &chat["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let arguments: Vec<&str> = choice["message"]["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|call| call["function"]["arguments"].as_str().unwrap())
        .collect();
    for (i, call) in arguments.iter().enumerate() {
        assert!(!arguments[..i].contains(call), "repeated call {call}");
    }
}
