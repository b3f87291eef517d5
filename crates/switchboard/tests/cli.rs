//! The real binary: start-up refusals, config errors, and a served model answering /health.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{binary, spawn_server, Log};

fn model_path() -> Option<PathBuf> {
    let path = switchboard_testkit::default_model_path();
    if path.is_file() {
        Some(path)
    } else {
        switchboard_testkit::skip_unless_ci(&format!(
            "{} is missing (run `switchboard pull`)",
            path.display()
        ));
        None
    }
}

#[test]
fn refuses_public_listen_without_keys() {
    let output = binary()
        .args([
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--model",
            "/nonexistent.gguf",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("refusing to listen"), "{stderr}");
    assert!(stderr.contains("--insecure-no-auth"), "{stderr}");
}

#[test]
fn unknown_config_keys_are_errors() {
    let dir = std::env::temp_dir().join(format!("sb-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("bad.toml");
    std::fs::write(&config, "listn = \"127.0.0.1:1\"\n").unwrap();
    let output = binary()
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown field"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_model_file_is_a_clear_error() {
    let output = binary()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--model",
            "/nonexistent.gguf",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent.gguf"), "{stderr}");
}

#[test]
fn serves_health_and_models_with_a_key() {
    let Some(model) = model_path() else { return };
    let mut command = binary();
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--api-key",
            "sk-cli-test",
            "--threads",
            "1",
            "--model",
        ])
        .arg(&model)
        .env("RUST_LOG", "info");
    let (mut child, address, _) = spawn_server(command, Some("sk-cli-test"));
    let get = |path: &str, key: Option<&str>| {
        let mut stream = TcpStream::connect(&address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let auth = key
            .map(|k| format!("Authorization: Bearer {k}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    };
    let started = Instant::now();
    assert!(get("/health", None).starts_with("HTTP/1.1 200"));
    assert!(get("/v1/models", None).starts_with("HTTP/1.1 401"));
    let models = get("/v1/models", Some("sk-cli-test"));
    assert!(models.starts_with("HTTP/1.1 200"), "{models}");
    assert!(models.contains("smollm2-135m-instruct.q4_1"), "{models}");
    assert!(started.elapsed() < Duration::from_secs(30));
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A served default model, its address and everything it logged so far.
struct Served {
    child: std::process::Child,
    address: String,
    log: Log,
    dir: PathBuf,
}

impl Served {
    /// Starts `switchboard serve` on the default model; `shell_prefix` runs before it in `sh`
    /// (a `ulimit`, say).
    fn start(name: &str, shell_prefix: &str, extra: &[&str], rust_log: &str) -> Option<Self> {
        let model = model_path()?;
        let dir = std::env::temp_dir().join(format!("sb-cli-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("{shell_prefix} exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_switchboard"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--threads",
                "1",
                "--model",
            ])
            .arg(&model)
            .arg("--store")
            .arg(dir.join("store.db"))
            .args(extra)
            .env_remove("SWITCHBOARD_API_KEYS")
            .env("RUST_LOG", rust_log);
        let (child, address, log) = spawn_server(command, None);
        Some(Self {
            child,
            address,
            log,
            dir,
        })
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(&self.address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream
    }

    fn exchange(&self, request: &str) -> String {
        let mut stream = self.connect();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; its status, or `None` if it was still running at the
    /// deadline (then it is killed).
    fn wait_exit(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Opens a connection that sends half a request head and never the rest, then sends
    /// SIGTERM; the connection is returned so it stays open.
    fn half_request_then_terminate(&self) -> TcpStream {
        let mut half = self.connect();
        half.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: local")
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        self.signal("TERM");
        half
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn hard_file_limit() -> Option<u64> {
    let output = Command::new("sh")
        .args(["-c", "ulimit -Hn"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    match text.trim() {
        "unlimited" => Some(u64::MAX),
        number => number.parse().ok(),
    }
}

#[test]
fn a_low_soft_file_limit_does_not_starve_the_server() {
    if hard_file_limit().is_none_or(|hard| hard < 1024) {
        eprintln!("skipping: the hard open-file limit is below 1024, nothing to raise to");
        return;
    }
    // 64 descriptors would be gone after ~50 idle sockets; the server raises its soft limit.
    let Some(served) = Served::start("fd", "ulimit -Sn 64;", &[], "info") else {
        return;
    };
    let idle: Vec<TcpStream> = (0..150).map(|_| served.connect()).collect();
    let started = Instant::now();
    let health =
        served.exchange("GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert!(
        health.starts_with("HTTP/1.1 200"),
        "{health}\n{}",
        served.log()
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!served.log().contains("accept error"), "{}", served.log());
    drop(idle);
}

#[test]
fn shutdown_drains_with_a_deadline_and_a_second_signal_exits_at_once() {
    // A half-sent request head is not finished by its client; the drain deadline ends it.
    let Some(mut served) = Served::start("drain", "", &["--shutdown-timeout", "2"], "info") else {
        return;
    };
    let half = served.half_request_then_terminate();
    let status = served.wait_exit(Duration::from_secs(8));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        served.log()
    );
    assert!(
        served.log().contains("drain deadline passed"),
        "{}",
        served.log()
    );
    drop(half);

    let Some(mut served) = Served::start("again", "", &["--shutdown-timeout", "120"], "info")
    else {
        return;
    };
    let half = served.half_request_then_terminate();
    std::thread::sleep(Duration::from_millis(500));
    assert!(served.child.try_wait().unwrap().is_none(), "still draining");
    served.signal("TERM");
    let status = served.wait_exit(Duration::from_secs(5));
    assert_eq!(status.and_then(|s| s.code()), Some(130), "{}", served.log());
    drop(half);
}

#[test]
fn logs_never_quote_prompts_or_completions() {
    let Some(served) = Served::start("log", "", &[], "trace,hyper=info,sqlx=info") else {
        return;
    };
    let body = serde_json::json!({
        "model": "smollm2-135m-instruct.q4_1",
        "messages": [{"role": "user", "content": "Describe the zebra-canary-42 as JSON."}],
        "response_format": {"type": "json_object"},
        "max_tokens": 40,
        "temperature": 0,
    })
    .to_string();
    let response = served.exchange(&format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let json: serde_json::Value =
        serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let content = json["choices"][0]["message"]["content"].as_str().unwrap();
    let log = served.log();
    assert!(
        log.contains("request admitted"),
        "debug logging is on: {log}"
    );
    assert!(
        !log.contains("zebra-canary"),
        "the prompt reached the log:\n{log}"
    );
    let sample: String = content
        .chars()
        .filter(|c| c.is_alphanumeric())
        .take(16)
        .collect();
    if sample.len() >= 8 {
        let log_letters: String = log.chars().filter(|c| c.is_alphanumeric()).collect();
        assert!(
            !log_letters.contains(&sample),
            "the completion reached the log:\n{log}"
        );
    }
}

#[test]
fn a_config_without_the_embedded_model_serves_its_configured_catalog() {
    let dir = std::env::temp_dir().join(format!("sb-cli-gateway-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("gateway.toml");
    // The upstream is never called: listing the catalog needs no upstream.
    std::fs::write(
        &config,
        r#"
[engine]
enabled = false

[[providers]]
name = "oai"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
api_key_env = "SB_CLI_TEST_UPSTREAM_KEY"

[[models]]
id = "gpt-test"
context_window = 128000
capabilities = ["tools", "json_object", "json_schema", "vision", "reasoning"]
pricing = { input = 0.15, cached_input = 0.075, output = 0.60 }
routes = [{ provider = "oai", model = "gpt-4o-mini" }]
"#,
    )
    .unwrap();
    let mut command = binary();
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--store"])
        .arg(dir.join("store.db"))
        .arg("--config")
        .arg(&config)
        .env("SB_CLI_TEST_UPSTREAM_KEY", "sk-upstream-secret")
        .env("RUST_LOG", "info");
    let (mut child, address, _) = spawn_server(command, Some("sk-upstream-secret"));
    let mut stream = TcpStream::connect(&address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /v1/models HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body: serde_json::Value =
        serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let models = body["data"].as_array().unwrap();
    assert_eq!(models.len(), 1, "only the configured model: {body}");
    assert_eq!(models[0]["id"], "gpt-test");
    assert_eq!(models[0]["owned_by"], "oai");
    assert_eq!(models[0]["pricing"]["cached_input_per_million"], 0.075);
    assert_eq!(
        models[0]["architecture"]["input_modalities"],
        serde_json::json!(["text", "image"])
    );
}

/// `switchboard keys …` manages keys in the store without a server: a key made here has its
/// secret printed once, is listed without it, can be disabled, rotated and deleted.
#[test]
fn keys_are_managed_from_the_command_line() {
    let dir = std::env::temp_dir().join(format!("sb-cli-keys-{}", std::process::id()));
    let store = dir.join("switchboard.db");
    let keys = |args: &[&str]| -> serde_json::Value {
        let output = binary()
            .arg("keys")
            .args(args)
            .arg("--store")
            .arg(&store)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let created = keys(&[
        "create",
        "--name",
        "ci",
        "--credit-limit",
        "5",
        "--requests-per-minute",
        "30",
        "--model",
        "alpha",
        "--owner",
        "platform team",
    ]);
    let secret = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("sk-sb-"));
    assert_eq!(created["credit_limit"], 5.0);
    assert_eq!(created["rate_limit"]["requests_per_minute"], 30);
    assert_eq!(created["models"], serde_json::json!(["alpha"]));
    assert_eq!(created["owner"], "platform team");
    let listed = keys(&["list"]);
    assert_eq!(listed["keys"][0]["id"], id.as_str());
    assert!(!listed.to_string().contains(&secret));
    assert_eq!(keys(&["disable", &id])["is_enabled"], false);
    assert_eq!(keys(&["enable", &id])["is_enabled"], true);
    let rotated = keys(&["rotate", &id]);
    assert_ne!(rotated["key"].as_str().unwrap(), secret);
    // With a managed key in the store, listening beyond loopback is allowed (the next
    // failure is the model's).
    let output = binary()
        .args([
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--model",
            "/nonexistent.gguf",
            "--store",
        ])
        .arg(&store)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("refusing to listen"), "{stderr}");
    assert!(stderr.contains("nonexistent.gguf"), "{stderr}");
    // `switchboard usage` reports from the same store (nothing served yet).
    let output = binary()
        .args(["usage", "--days", "7", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["period_days"], 7);
    assert_eq!(report["total_stats"]["total_requests"], 0);
    assert_eq!(report["spent"], "0.000000");
    assert_eq!(keys(&["delete", &id])["deleted"], true);
    assert_eq!(keys(&["list"])["keys"], serde_json::json!([]));
    // Mistakes are named.
    let output = binary()
        .args([
            "keys",
            "create",
            "--name",
            "x",
            "--expires-at",
            "yesterday",
            "--store",
        ])
        .arg(&store)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("expires_at"));
    std::fs::remove_dir_all(&dir).unwrap();
}
