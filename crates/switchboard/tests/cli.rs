//! The real binary: start-up refusals, config errors, and a served model answering /health.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command.env_remove("SWITCHBOARD_API_KEYS");
    command
}

fn model_path() -> Option<PathBuf> {
    let path = switchboard_testkit::default_model_path();
    if path.is_file() {
        Some(path)
    } else {
        eprintln!(
            "skipping: {} is missing (run `switchboard pull`)",
            path.display()
        );
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
    let mut child = binary()
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
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            assert!(!line.contains("sk-cli-test"), "a key was logged: {line}");
            if let Some(at) = line.find("address=") {
                let address = line[at + 8..].split_whitespace().next().unwrap().to_owned();
                let _ = tx.send(address);
            }
        }
    });
    let address = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("server did not report its address");
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
