//! Real Redis and Postgres servers for the several-node tests, from Debian's packages
//! (`scripts/test.sh` installs them when missing): each on a free loopback port with a throwaway
//! directory, stopped and removed when dropped. Without the programs a test skips (fails under
//! CI, see [`crate::skip_unless_ci`]).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

fn scratch_dir(kind: &str, port: u16) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sb-{kind}-{}-{port}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

fn runs(program: &Path, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `redis-server` on loopback.
pub struct Redis {
    child: Child,
    dir: PathBuf,
    /// `redis://127.0.0.1:PORT`.
    pub url: String,
}

impl Redis {
    /// Starts one; `None` (after saying why) when `redis-server` is not installed.
    #[must_use]
    pub fn start() -> Option<Self> {
        if !runs(Path::new("redis-server"), "--version") {
            crate::skip_unless_ci("redis-server is not installed");
            return None;
        }
        let port = free_port();
        let dir = scratch_dir("redis", port);
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting redis-server: {e}"));
        let redis = Self {
            child,
            dir,
            url: format!("redis://127.0.0.1:{port}"),
        };
        wait_for_port(port, "redis-server");
        Some(redis)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Postgres server on loopback with trust authentication for the user `switchboard`.
pub struct Postgres {
    child: Option<Child>,
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres_user: bool,
    /// `postgres://switchboard@127.0.0.1:PORT/postgres`.
    pub url: String,
}

/// Where Postgres' server programs are: where Debian's packages put them (the newest
/// version), else on `PATH`.
fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    (runs(Path::new("initdb"), "--version") && runs(Path::new("postgres"), "--version"))
        .then(PathBuf::new)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

impl Postgres {
    /// Initialises and starts one; `None` (after saying why) when Postgres is not installed.
    /// As root (Postgres refuses to run as root) it runs as the `postgres` user Debian's
    /// package creates.
    #[must_use]
    pub fn start() -> Option<Self> {
        let Some(bin) = postgres_bin() else {
            crate::skip_unless_ci("Postgres (initdb, postgres) is not installed");
            return None;
        };
        let as_postgres_user = is_root();
        let port = free_port();
        let dir = scratch_dir("postgres", port);
        if as_postgres_user {
            let owned = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                owned,
                "running as root needs the `postgres` user to own {}",
                dir.display()
            );
        }
        let mut postgres = Self {
            child: None,
            bin,
            dir,
            port,
            as_postgres_user,
            url: format!("postgres://switchboard@127.0.0.1:{port}/postgres"),
        };
        let initdb = postgres
            .command("initdb")
            .arg("-D")
            .arg(postgres.dir.join("data"))
            .args(["-U", "switchboard", "--auth=trust", "--no-sync"])
            .args(["-E", "UTF8", "--locale=C"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap_or_else(|e| panic!("running initdb: {e}"));
        assert!(
            initdb.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        postgres.resume();
        Some(postgres)
    }

    /// One of its programs, as the user it runs as.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres_user {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    /// Starts the server (again, after [`Postgres::stop`]) on the same port and data, and
    /// waits until it accepts connections.
    ///
    /// # Panics
    /// When it does not start.
    pub fn resume(&mut self) {
        let port = self.port.to_string();
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-h", "127.0.0.1", "-p", &port, "-k"])
            .arg(&self.dir)
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=200"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting postgres: {e}"));
        self.child = Some(child);
        wait_for_port(self.port, "postgres");
        // Listening comes before accepting: wait until it says it accepts connections.
        let ready = self.bin.join("pg_isready");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !Command::new(&ready)
            .args(["-q", "-h", "127.0.0.1", "-p", &port])
            .status()
            .is_ok_and(|s| s.success())
        {
            assert!(Instant::now() < deadline, "postgres did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server at once (an outage); [`Postgres::resume`] brings it back.
    pub fn stop(&mut self) {
        // Under runuser the child is not postgres itself: stop the server by its data directory.
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["stop", "-m", "immediate", "-w"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
