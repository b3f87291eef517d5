//! The real binary, started as a child process.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

pub fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command.env_remove("SWITCHBOARD_API_KEYS");
    command
}

/// Everything a server logged so far, line by line.
pub type Log = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// Starts a server command and waits for the address it reports; its log is collected, and a
/// `secret` appearing in it fails the test.
pub fn spawn_server(
    mut command: Command,
    secret: Option<&'static str>,
) -> (std::process::Child, String, Log) {
    let mut child = command
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = Log::default();
    let (tx, rx) = std::sync::mpsc::channel();
    let lines = std::sync::Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(secret) = secret {
                assert!(!line.contains(secret), "a key was logged: {line}");
            }
            if let Some(at) = line.find("address=") {
                let address = line[at + 8..].split_whitespace().next().unwrap().to_owned();
                let _ = tx.send(address);
            }
            lines.lock().unwrap().push(line);
        }
    });
    let address = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("server did not report its address");
    (child, address, log)
}
