//! `tla serve` and `tla keys`: the service on an embedded data directory, and its keys.
//!
//! Configuration has one strict, versioned shape, taken from (highest first) the
//! command line, the environment (`TLA_DATA`, `TLA_LISTEN`, `TLA_ADMIN_KEY`, `TLA_SEED`),
//! and an optional TOML file (`--config`, see `examples/tla.toml`).

use anyhow::{Context, bail};
use rand::Rng as _;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tla_server::auth::{Scope, hash_secret, new_key, parse_token, secret_matches};
use tla_server::{AppState, Clock, ServerConfig, SystemClock};
use tla_store::{KeyRow, Store};

/// Arguments of `tla serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Data directory (created if missing) [default: ./tla-data; env TLA_DATA].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080; env TLA_LISTEN].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Optional TOML config file (lowest precedence).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Create (once) the demo campaign and run a simulated audience against it.
    #[arg(long)]
    pub demo: bool,
    /// Decision requests per second the demo audience sends (each asks for 10).
    #[arg(long, default_value_t = 50)]
    pub demo_rate: u32,
    /// Seed of the server's random streams [env TLA_SEED].
    #[arg(long)]
    pub seed: Option<u64>,
}

/// The config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    /// Format version; must be 1.
    version: u32,
    data: Option<PathBuf>,
    listen: Option<SocketAddr>,
    seed: Option<u64>,
    max_body_bytes: Option<usize>,
    max_events_per_request: Option<usize>,
    max_decisions_per_request: Option<usize>,
}

/// The resolved configuration.
#[derive(Debug)]
pub struct Resolved {
    /// Data directory.
    pub data: PathBuf,
    /// Listen address.
    pub listen: SocketAddr,
    /// Server limits and seed.
    pub server: ServerConfig,
    /// `TLA_ADMIN_KEY`, if set.
    pub admin_key: Option<String>,
}

/// Resolves flags > environment > file > defaults. `env` is the environment, as data.
pub fn resolve(args: &ServeArgs, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Resolved> {
    let file = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            let file: FileConfig = toml::from_str(&text).with_context(|| {
                format!(
                    "{} is not a valid config file (see examples/tla.toml)",
                    path.display()
                )
            })?;
            if file.version != 1 {
                bail!(
                    "{}: version = {} is not accepted; accepted: 1",
                    path.display(),
                    file.version
                );
            }
            file
        }
        None => FileConfig::default(),
    };
    let env_parse =
        |name: &str| -> anyhow::Result<Option<String>> { Ok(env(name).filter(|v| !v.is_empty())) };
    let data = args
        .data
        .clone()
        .or(env_parse("TLA_DATA")?.map(PathBuf::from))
        .or(file.data)
        .unwrap_or_else(|| PathBuf::from("./tla-data"));
    let listen = match (args.listen, env_parse("TLA_LISTEN")?) {
        (Some(listen), _) => listen,
        (None, Some(text)) => text.parse().with_context(|| {
            format!("TLA_LISTEN={text:?} is not an address like 127.0.0.1:8080")
        })?,
        (None, None) => file
            .listen
            .unwrap_or_else(|| "127.0.0.1:8080".parse().expect("valid")),
    };
    let seed = match (args.seed, env_parse("TLA_SEED")?) {
        (Some(seed), _) => Some(seed),
        (None, Some(text)) => Some(
            text.parse()
                .with_context(|| format!("TLA_SEED={text:?} is not a whole number"))?,
        ),
        (None, None) => file.seed,
    };
    let mut server = ServerConfig::default();
    if let Some(seed) = seed {
        server.seed = seed;
    }
    if let Some(n) = file.max_body_bytes {
        server.max_body_bytes = n;
    }
    if let Some(n) = file.max_events_per_request {
        server.max_events_per_request = n;
    }
    if let Some(n) = file.max_decisions_per_request {
        server.max_decisions_per_request = n;
    }
    Ok(Resolved {
        data,
        listen,
        server,
        admin_key: env_parse("TLA_ADMIN_KEY")?,
    })
}

fn now_ms() -> i64 {
    SystemClock.now_ms()
}

/// Makes sure an admin key exists: `TLA_ADMIN_KEY` if given, else a new one printed once.
fn ensure_admin_key(store: &Store, admin_key: Option<&str>) -> anyhow::Result<()> {
    let keys = store.keys()?;
    if let Some(token) = admin_key {
        let Some((id, secret)) = parse_token(token) else {
            bail!("TLA_ADMIN_KEY is not a key of the form tla_<12 hex>_<32 hex>");
        };
        if let Some(stored) = keys.iter().find(|k| k.id == id) {
            // The same id with another secret, or a revoked key, would leave the
            // operator locked out while the server starts as if all were well.
            if !secret_matches(secret, &stored.hash) {
                bail!(
                    "TLA_ADMIN_KEY names key {id}, which this data directory holds with another secret; give that key's full token, or a key with a new id"
                );
            }
            if stored.revoked {
                bail!(
                    "TLA_ADMIN_KEY names key {id}, which is revoked in this data directory; give a key with a new id"
                );
            }
            return Ok(());
        }
        store.insert_key(&KeyRow {
            id: id.to_string(),
            hash: hash_secret(secret),
            scopes: vec![Scope::Admin.as_str().into()],
            created_at_ms: now_ms(),
            revoked: false,
            label: "from TLA_ADMIN_KEY".into(),
        })?;
        return Ok(());
    }
    let has_admin = keys
        .iter()
        .any(|k| !k.revoked && k.scopes.iter().any(|s| s == Scope::Admin.as_str()));
    if !has_admin {
        let token = create_key(store, &[Scope::Admin], "first admin key")?;
        println!("created the first admin key (shown once; keep it): {token}");
    }
    Ok(())
}

fn create_key(store: &Store, scopes: &[Scope], label: &str) -> anyhow::Result<String> {
    let key = new_key(rand::rng().random());
    store.insert_key(&KeyRow {
        id: key.id.clone(),
        hash: key.hash,
        scopes: scopes.iter().map(|s| s.as_str().to_string()).collect(),
        created_at_ms: now_ms(),
        revoked: false,
        label: label.into(),
    })?;
    Ok(key.token)
}

fn open_store(data: &Path) -> anyhow::Result<Store> {
    Store::open(data).with_context(|| format!("cannot open the data directory {}", data.display()))
}

/// Resolves when Ctrl-C or SIGTERM arrives.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down: draining requests, applying committed events, snapshotting");
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let resolved = resolve(&args, &|name| std::env::var(name).ok())?;
    let store = open_store(&resolved.data)?;
    ensure_admin_key(&store, resolved.admin_key.as_deref())?;
    let secret = store
        .server_secret()
        .context("cannot read the server secret")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let state = tokio::task::spawn_blocking({
            let server = resolved.server.clone();
            move || {
                let log = Arc::new(store.event_log());
                AppState::open(store, log, Arc::new(SystemClock), &secret, server)
            }
        })
        .await??;
        let listener = tokio::net::TcpListener::bind(resolved.listen)
            .await
            .with_context(|| format!("cannot listen on {}", resolved.listen))?;
        let address = listener.local_addr()?;
        println!(
            "tla serving on http://{address} (data in {})",
            resolved.data.display()
        );
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let demo = if args.demo {
            Some(
                crate::demo::start(
                    state.clone(),
                    address,
                    args.demo_rate,
                    resolved.server.seed,
                    stop_rx.clone(),
                )
                .await?,
            )
        } else {
            None
        };
        let shutdown = async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        };
        tla_server::run(listener, state, shutdown).await?;
        if let Some(demo) = demo {
            let _ = demo.await;
        }
        println!("tla stopped cleanly");
        anyhow::Ok(())
    })
}

/// Arguments of `tla keys`.
#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    /// Data directory [default: ./tla-data; env TLA_DATA].
    #[arg(long, global = true)]
    pub data: Option<PathBuf>,
    #[command(subcommand)]
    pub command: KeysCommand,
}

/// `tla keys` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key; prints the token once.
    Create {
        /// Scopes, comma-separated: admin, decide, ingest, read, correct (retract or
        /// correct stored events).
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// What the key is for.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List keys (ids, scopes, labels; never secrets).
    List,
    /// Revoke a key by id (takes effect within a second on a running server).
    Revoke {
        /// The key id (the 12 hex digits after `tla_`).
        id: String,
    },
}

pub fn run_keys(args: KeysArgs) -> anyhow::Result<()> {
    let data = args
        .data
        .or(std::env::var("TLA_DATA")
            .ok()
            .filter(|v| !v.is_empty())
            .map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("./tla-data"));
    let store = open_store(&data)?;
    match args.command {
        KeysCommand::Create { scopes, label } => {
            let scopes = scopes
                .iter()
                .map(|s| {
                    Scope::parse(s.trim()).with_context(|| {
                        format!(
                            "unknown scope {s:?}; accepted: {}",
                            Scope::ALL.map(Scope::as_str).join(", ")
                        )
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            println!("{}", create_key(&store, &scopes, &label)?);
        }
        KeysCommand::List => {
            for key in store.keys()? {
                println!(
                    "{}  {:<24} {:<8} {}",
                    key.id,
                    key.scopes.join(","),
                    if key.revoked { "revoked" } else { "active" },
                    key.label
                );
            }
        }
        KeysCommand::Revoke { id } => {
            if !store.revoke_key(&id)? {
                bail!("no key with id {id:?}; `tla keys list` shows them");
            }
            println!("revoked {id}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `TLA_ADMIN_KEY`: installed when new, accepted when stored as given, refused with
    /// a reason when its id is stored with another secret or revoked.
    #[test]
    fn an_admin_key_from_the_environment_is_installed_or_refused_with_a_reason() {
        let store = Store::open_in_memory().unwrap();
        let key = new_key([7; 22]);
        ensure_admin_key(&store, Some(&key.token)).unwrap();
        ensure_admin_key(&store, Some(&key.token)).unwrap();
        assert_eq!(store.keys().unwrap().len(), 1);
        let other_secret = format!("tla_{}_{}", key.id, "0".repeat(32));
        let refused = ensure_admin_key(&store, Some(&other_secret)).unwrap_err();
        assert!(refused.to_string().contains("another secret"), "{refused}");
        store.revoke_key(&key.id).unwrap();
        let refused = ensure_admin_key(&store, Some(&key.token)).unwrap_err();
        assert!(refused.to_string().contains("revoked"), "{refused}");
        assert_eq!(
            store.keys().unwrap().len(),
            1,
            "nothing stored by a refusal"
        );
    }
}
