//! The `switchboard` binary: command line, configuration resolution (file < env < flags), model
//! fetching, and start-up of the engine, gateway and HTTP server.

mod catalog;
mod config;
mod fetch;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use switchboard_engine::Engine;
use switchboard_gateway::{ApiKeys, Catalog, CatalogEntry, Gateway};
use switchboard_store::Store;
use tokio::net::TcpListener;

use crate::config::{ServeArgs, Settings};

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Self-hostable LLM API platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server.
    Serve(Box<ServeArgs>),
    /// Download the default model into the model cache.
    Pull,
    /// Manage API keys in the store (as /v1/account/keys does), without a running server.
    Keys {
        /// TOML configuration file (for its `store`).
        #[arg(long, global = true)]
        config: Option<std::path::PathBuf>,
        /// The store: a SQLite file or a `postgres://` URL
        /// [default: $SWITCHBOARD_HOME/switchboard.db].
        #[arg(long, global = true, env = "SWITCHBOARD_STORE")]
        store: Option<String>,
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Usage and spend from the store (as /v1/account/activity and /balance report them).
    Usage {
        /// TOML configuration file (for its `store`).
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        /// The store: a SQLite file or a `postgres://` URL
        /// [default: $SWITCHBOARD_HOME/switchboard.db].
        #[arg(long, env = "SWITCHBOARD_STORE")]
        store: Option<String>,
        /// Whole UTC days to report, today included (1–366).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=366))]
        days: u64,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Make a key; its secret is printed once.
    Create {
        #[arg(long)]
        name: String,
        /// USD the key may spend.
        #[arg(long)]
        credit_limit: Option<f64>,
        /// ISO-8601 UTC time (2027-01-31T00:00:00Z) or date.
        #[arg(long)]
        expires_at: Option<String>,
        #[arg(long)]
        requests_per_minute: Option<u32>,
        #[arg(long)]
        tokens_per_minute: Option<u32>,
        #[arg(long)]
        max_concurrent: Option<u32>,
        /// A model the key may use (repeatable; default: every model).
        #[arg(long = "model")]
        models: Vec<String>,
        /// Who the key belongs to (a person, a team, an application).
        #[arg(long)]
        owner: Option<String>,
    },
    /// List the keys (never their secrets).
    List,
    /// Disable a key: it gets 401 until enabled again.
    Disable { id: String },
    /// Enable a disabled key.
    Enable { id: String },
    /// Give a key a new secret (printed once); the old one stops working.
    Rotate { id: String },
    /// Delete a key for good.
    Delete { id: String },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve(&args),
        Command::Pull => fetch::ensure_default_model().map(|path| {
            tracing::info!(path = %path.display(), "default model ready");
        }),
        Command::Keys {
            config,
            store,
            action,
        } => keys(config.as_deref(), store, action),
        Command::Usage {
            config,
            store,
            days,
        } => usage(config.as_deref(), store, days),
    }
}

/// The store's location: as configured, else the SQLite file under `$SWITCHBOARD_HOME`.
fn store_location(configured: Option<String>) -> String {
    configured.unwrap_or_else(|| {
        fetch::home()
            .join("switchboard.db")
            .to_string_lossy()
            .into_owned()
    })
}

async fn open_store(location: &str) -> Result<Store> {
    Store::connect(location).await.with_context(|| {
        format!(
            "opening the store {}",
            switchboard_store::redacted(location)
        )
    })
}

/// The store named by `--store`, else by the config file's `store`, else the default.
fn configured_store(config: Option<&std::path::Path>, store: Option<String>) -> Result<String> {
    let from_file = match config {
        Some(path) => config::load_file(path)?.store,
        None => None,
    };
    Ok(store_location(store.or(from_file)))
}

fn one_thread_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The store and the managed keys in it, for the commands that work on them directly.
async fn open_accounts(location: &str) -> Result<(Store, switchboard_server::accounts::Accounts)> {
    let store = open_store(location).await?;
    let accounts = switchboard_server::accounts::Accounts::new(store.clone())
        .await
        .map_err(command_error)?;
    Ok((store, accounts))
}

/// A refusal worded for the command line: the parameter it names, then why.
fn command_error(error: switchboard_model::Error) -> anyhow::Error {
    match error.param {
        Some(param) => anyhow::anyhow!("{param}: {}", error.message),
        None => anyhow::anyhow!(error.message),
    }
}

/// `switchboard usage`: the activity report and what all keys spent, as JSON.
fn usage(config: Option<&std::path::Path>, store: Option<String>, days: u64) -> Result<()> {
    use switchboard_server::accounts::activity_report;
    let location = configured_store(config, store)?;
    one_thread_runtime()?.block_on(async move {
        let (store, accounts) = open_accounts(&location).await?;
        let mut report = activity_report(&store, &accounts, days)
            .await
            .map_err(command_error)?;
        let spent = store.spent_by_all().await.context("reading the spend")?;
        report["spent"] = switchboard_server::accounts::usd(spent).into();
        println_json(&report)
    })
}

/// `switchboard keys …`: the account endpoints' operations, on the store directly.
fn keys(config: Option<&std::path::Path>, store: Option<String>, action: KeysAction) -> Result<()> {
    use serde_json::json;
    use switchboard_server::accounts::{key_json, key_with_secret};
    let location = configured_store(config, store)?;
    one_thread_runtime()?.block_on(async move {
        let (_, accounts) = open_accounts(&location).await?;
        let enable = matches!(action, KeysAction::Enable { .. });
        let shown = match action {
            KeysAction::Create {
                name,
                credit_limit,
                expires_at,
                requests_per_minute,
                tokens_per_minute,
                max_concurrent,
                models,
                owner,
            } => {
                let body = json!({
                    "name": name, "credit_limit": credit_limit, "expires_at": expires_at,
                    "owner": owner,
                    "rate_limit": {"requests_per_minute": requests_per_minute,
                                   "tokens_per_minute": tokens_per_minute,
                                   "max_concurrent": max_concurrent},
                    "models": (!models.is_empty()).then_some(models),
                });
                let (key, secret) = accounts.create(&body).await.map_err(command_error)?;
                key_with_secret(&key, &secret)
            }
            KeysAction::List => {
                let keys = accounts.list().await.map_err(command_error)?;
                json!({"keys": keys.iter().map(key_json).collect::<Vec<_>>()})
            }
            KeysAction::Disable { id } | KeysAction::Enable { id } => {
                let (key, _) = accounts
                    .update(&id, &json!({"is_enabled": enable}))
                    .await
                    .map_err(command_error)?;
                key_json(&key)
            }
            KeysAction::Rotate { id } => {
                let (key, secret) = accounts
                    .update(&id, &json!({"rotate": true}))
                    .await
                    .map_err(command_error)?;
                key_with_secret(&key, &secret.unwrap_or_default())
            }
            KeysAction::Delete { id } => {
                accounts.delete(&id).await.map_err(command_error)?;
                json!({"id": id, "deleted": true})
            }
        };
        println_json(&shown)
    })
}

/// A command's answer on stdout, for people and scripts alike.
fn println_json(value: &serde_json::Value) -> Result<()> {
    #[allow(clippy::print_stdout)]
    {
        println!("{}", serde_json::to_string_pretty(value)?);
    }
    Ok(())
}

fn serve(args: &ServeArgs) -> Result<()> {
    let settings = Settings::resolve(args)?;
    let mut keys = ApiKeys::new(&settings.api_keys);
    if let Some(admin) = &settings.admin_key {
        keys = keys.with_admin_key(admin);
    }
    raise_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let location = store_location(settings.store.clone());
    // The store first: keys made with `switchboard keys` count as keys for the exposure
    // check, which must refuse before the model is loaded.
    let store = runtime.block_on(async {
        let store = open_store(&location).await?;
        let managed = store.has_keys().await.context("reading the key store")?;
        anyhow::Ok((store, managed))
    });
    let (store, managed) = store?;
    tracing::info!(
        store = %switchboard_store::redacted(&location),
        backend = store.backend_name(),
        "store ready"
    );
    check_exposure(
        settings.listen,
        keys.is_empty() && !managed,
        settings.insecure_no_auth,
    )?;
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut catalog = Catalog::default();
    if settings.local_model {
        catalog.add(CatalogEntry::local(load_local_model(&settings)?, created));
    } else {
        tracing::info!("the embedded model is turned off: serving configured models only");
    }
    catalog::add_configured_models(
        &mut catalog,
        &settings.providers,
        &settings.models,
        created,
        |name| std::env::var(name).ok(),
    )?;
    if catalog.entries().is_empty() {
        bail!("the catalog is empty: enable the embedded model or configure [[models]]");
    }
    let mut gateway = Gateway::new(catalog, keys);
    if let Some(config) = &settings.web_search {
        gateway = gateway.with_web_search(catalog::web_search(config, |name| {
            std::env::var(name).ok()
        })?);
    }
    let gateway = Arc::new(gateway);
    let served = runtime.block_on(async move {
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("binding {}", settings.listen))?;
        tracing::info!(address = %listener.local_addr()?, "listening");
        switchboard_server::serve(
            listener,
            gateway,
            store,
            &settings.server,
            shutdown_signal(),
        )
        .await?;
        tracing::info!("shut down");
        Ok(())
    });
    // Connections still open after the drain deadline are closed here, not waited for.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    served
}

/// Each connection takes a file descriptor: lift the soft limit to the hard one, so the
/// connection cap, not a low default limit, decides how many clients are served.
fn raise_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(err) => tracing::warn!(%err, "cannot raise the open file limit"),
    }
}

/// Loads the default model (fetching it if needed) or `--model`.
fn load_local_model(settings: &Settings) -> Result<Engine> {
    let (path, model_id) = match &settings.model {
        Some(path) => (
            path.clone(),
            settings
                .model_id
                .clone()
                .unwrap_or_else(|| config::model_id_from_path(path)),
        ),
        None => (
            fetch::ensure_default_model()?,
            settings
                .model_id
                .clone()
                .unwrap_or_else(|| fetch::DEFAULT_MODEL_ID.to_owned()),
        ),
    };
    tracing::info!(path = %path.display(), id = %model_id, "loading model");
    Engine::load(&path, &model_id, &settings.engine)
        .with_context(|| format!("loading {}", path.display()))
}

/// Without keys, only loopback is safe to listen on.
fn check_exposure(listen: SocketAddr, no_keys: bool, insecure: bool) -> Result<()> {
    if !no_keys {
        return Ok(());
    }
    if listen.ip().is_loopback() {
        tracing::warn!("no API keys configured: any local process can use this server");
        return Ok(());
    }
    if insecure {
        tracing::warn!(
            address = %listen,
            "no API keys configured and listening beyond loopback (--insecure-no-auth)"
        );
        return Ok(());
    }
    bail!(
        "refusing to listen on {listen} without API keys: pass --api-key KEY (or set SWITCHBOARD_API_KEYS), \
         listen on a loopback address, or pass --insecure-no-auth to accept the risk"
    )
}

/// Resolves on the first SIGINT or SIGTERM and leaves a task behind that exits the process on
/// the next one. Both listeners exist before the first signal, so a second signal sent right
/// after the first is never lost.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut terminate), Ok(mut interrupt)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::warn!("cannot listen for shutdown signals");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        tracing::info!(
            "shutting down: draining in-flight requests (a second signal exits at once)"
        );
        tokio::spawn(async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
            tracing::warn!("second signal: exiting without waiting for in-flight requests");
            std::process::exit(130);
        });
    }
    #[cfg(not(unix))]
    {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        tracing::info!(
            "shutting down: draining in-flight requests (a second signal exits at once)"
        );
        tokio::spawn(async {
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        });
    }
}
