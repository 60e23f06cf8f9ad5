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
    /// Most HTTP connections open at once; the server keeps it below the process's
    /// open-file limit (help text with the default: `max_connections_help`).
    #[arg(long, help = max_connections_help())]
    pub max_connections: Option<usize>,
    /// Seconds requests in progress may take to finish after SIGTERM or Ctrl-C before
    /// every connection is closed (help text with the default: `shutdown_grace_help`).
    #[arg(long, value_name = "SECONDS", help = shutdown_grace_help())]
    pub shutdown_grace: Option<f64>,
    /// The event log shared with other servers: a NATS JetStream cluster,
    /// `nats://HOST:PORT[,HOST:PORT...]` (needs --stream and TLA_SECRET); without it the
    /// log is the data directory's SQLite file (docs/scale-out.md).
    #[arg(long, value_name = "URLS")]
    pub event_log: Option<String>,
    /// The JetStream stream holding the shared event log (created if missing, with
    /// min(3, cluster size) replicas).
    #[arg(long, value_name = "NAME")]
    pub stream: Option<String>,
    /// Seconds a server may go without hearing from the stream before it refuses
    /// decisions (503 `stream_unavailable`) [default: 5].
    #[arg(long, value_name = "SECONDS")]
    pub stream_stale_secs: Option<f64>,
    /// With a stream: a spend lease of a campaign's budget is this share of its day's
    /// allowance (docs/scale-out.md, *Budgets across servers*); in (0, 1] (help text
    /// with the default: `lease_share_help`).
    #[arg(long, value_name = "SHARE", help = lease_share_help())]
    pub lease_share: Option<f64>,
}

/// `--lease-share`'s help, with the default of [`ServerConfig`].
fn lease_share_help() -> String {
    format!(
        "With a stream: a spend lease of a campaign's budget is this share of its day's \
         allowance, in (0, 1] [default: {}]; the overspend bound is servers x lease \
         (docs/scale-out.md).",
        tla_server::lease::DEFAULT_LEASE_SHARE
    )
}

/// `--max-connections`'s help, with the default of [`ServerConfig`]. The flag has no
/// clap default: unset, it leaves the value to the environment and the config file.
fn max_connections_help() -> String {
    format!(
        "Most HTTP connections open at once [default: {}]; the server keeps it below \
         the process's open-file limit.",
        tla_server::state::DEFAULT_MAX_CONNECTIONS
    )
}

/// `--shutdown-grace`'s help, with the default of [`ServerConfig`].
fn shutdown_grace_help() -> String {
    format!(
        "Seconds requests in progress may take to finish after SIGTERM or Ctrl-C before \
         every connection is closed [default: {}].",
        tla_server::state::DEFAULT_SHUTDOWN_GRACE.as_secs_f64()
    )
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
    max_connections: Option<usize>,
    idle_timeout_secs: Option<f64>,
    header_read_timeout_secs: Option<f64>,
    body_read_timeout_secs: Option<f64>,
    write_timeout_secs: Option<f64>,
    shutdown_grace_secs: Option<f64>,
    event_log: Option<String>,
    stream: Option<String>,
    stream_stale_secs: Option<f64>,
    lease_share: Option<f64>,
    /// The decision-id secret shared by the servers of a stream (`TLA_SECRET` wins).
    secret: Option<String>,
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
    /// The shared stream and the decision-id secret of its servers, when the event log
    /// is a stream (`--event-log`); `None`: the data directory's SQLite log.
    pub stream: Option<(tla_server::stream_log::StreamSettings, String)>,
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
    if let Some(n) = args.max_connections.or(file.max_connections) {
        if n == 0 {
            bail!("max_connections = 0 is not accepted; accepted: 1 or more");
        }
        server.max_connections = n;
    }
    if let Some(share) = args.lease_share.or(file.lease_share) {
        server.lease_share =
            tla_server::lease::check_lease_share(share).map_err(anyhow::Error::msg)?;
    }
    for (name, value, field) in [
        (
            "idle_timeout_secs",
            file.idle_timeout_secs,
            &mut server.idle_timeout,
        ),
        (
            "header_read_timeout_secs",
            file.header_read_timeout_secs,
            &mut server.header_read_timeout,
        ),
        (
            "body_read_timeout_secs",
            file.body_read_timeout_secs,
            &mut server.body_read_timeout,
        ),
        (
            "write_timeout_secs",
            file.write_timeout_secs,
            &mut server.write_timeout,
        ),
        (
            "shutdown_grace_secs",
            args.shutdown_grace.or(file.shutdown_grace_secs),
            &mut server.shutdown_grace,
        ),
    ] {
        if let Some(seconds) = value {
            *field = seconds_setting(name, seconds)?;
        }
    }
    let stream = match (
        args.event_log.clone().or(file.event_log),
        args.stream.clone().or(file.stream),
    ) {
        (None, None) => None,
        (Some(_), None) => {
            bail!("--event-log needs --stream NAME (the stream holding the shared log)")
        }
        (None, Some(_)) => bail!("--stream needs --event-log nats://HOST:PORT[,HOST:PORT...]"),
        (Some(event_log), Some(stream)) => {
            let stale_after = match args.stream_stale_secs.or(file.stream_stale_secs) {
                Some(seconds) => seconds_setting("stream_stale_secs", seconds)?,
                None => tla_server::stream_log::DEFAULT_STALE_AFTER,
            };
            let settings =
                tla_server::stream_log::StreamSettings::parse(&event_log, &stream, stale_after)
                    .map_err(anyhow::Error::msg)?;
            let secret = env_parse("TLA_SECRET")?.or(file.secret).unwrap_or_default();
            if secret.len() < tla_server::stream_log::MIN_SECRET_LEN {
                bail!("{}", tla_server::stream_log::StreamOpenError::Secret);
            }
            Some((settings, secret))
        }
    };
    Ok(Resolved {
        data,
        listen,
        server,
        admin_key: env_parse("TLA_ADMIN_KEY")?,
        stream,
    })
}

/// A duration setting in seconds: finite, above 0 and at most a day.
fn seconds_setting(name: &str, seconds: f64) -> anyhow::Result<std::time::Duration> {
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 86_400.0) {
        bail!("{name} = {seconds} is not accepted; accepted: seconds above 0, at most 86400");
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let handle = runtime.handle().clone();
    let stream = resolved.stream.clone();
    let secret = match &stream {
        Some((_, shared)) => shared.as_bytes().to_vec(),
        None => store
            .server_secret()
            .context("cannot read the server secret")?,
    };
    runtime.block_on(async move {
        let state = tokio::task::spawn_blocking({
            let server = resolved.server.clone();
            move || -> anyhow::Result<AppState> {
                let Some((settings, _)) = stream else {
                    let log = Arc::new(store.event_log());
                    return Ok(AppState::open(
                        store,
                        log,
                        Arc::new(SystemClock),
                        &secret,
                        server,
                    )?);
                };
                let shared = Arc::new(tla_server::stream_log::JetStreamEventLog::open(
                    settings,
                    &secret,
                    handle,
                    store.clone(),
                )?);
                // The replay stops at the first state change this data directory has
                // not applied (the learner applies it in its place).
                shared.set_changes_through(store.stream_changes_through()?);
                let log: Arc<dyn tla_store::EventLog> = shared.clone();
                let state = AppState::open(store, log, Arc::new(SystemClock), &secret, server)?;
                state.attach_stream(shared);
                Ok(state)
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

    /// The help of the connection flags shows the defaults `ServerConfig` uses.
    #[test]
    fn the_help_shows_the_server_defaults() {
        #[derive(Debug, clap::Parser)]
        struct Serve {
            #[command(flatten)]
            args: ServeArgs,
        }
        let help = <Serve as clap::CommandFactory>::command()
            .render_help()
            .to_string();
        let defaults = ServerConfig::default();
        for shown in [
            format!("[default: {}]", defaults.max_connections),
            format!("[default: {}]", defaults.shutdown_grace.as_secs_f64()),
        ] {
            assert!(help.contains(&shown), "{shown} not in {help}");
        }
        assert!(
            help.contains("Most HTTP connections open at once"),
            "{help}"
        );
    }

    fn args_with(config: &Path) -> ServeArgs {
        ServeArgs {
            data: None,
            listen: None,
            config: Some(config.to_path_buf()),
            demo: false,
            demo_rate: 50,
            seed: None,
            max_connections: None,
            shutdown_grace: None,
            event_log: None,
            stream: None,
            stream_stale_secs: None,
            lease_share: None,
        }
    }

    /// The lease share comes from the file, the flag beats it, and a share outside
    /// (0, 1] is refused with what is accepted.
    #[test]
    fn the_lease_share_is_a_setting_checked_at_start() {
        let path = std::env::temp_dir().join(format!("tla-lease-{}.toml", std::process::id()));
        std::fs::write(&path, "version = 1\nlease_share = 0.2\n").unwrap();
        let none = |_: &str| None;
        let mut args = args_with(&path);
        assert_eq!(resolve(&args, &none).unwrap().server.lease_share, 0.2);
        args.lease_share = Some(0.01);
        assert_eq!(resolve(&args, &none).unwrap().server.lease_share, 0.01);
        for bad in [0.0, -0.1, 1.5, f64::NAN] {
            args.lease_share = Some(bad);
            let refused = resolve(&args, &none).unwrap_err().to_string();
            assert!(
                refused.contains("lease_share") && refused.contains("accepted"),
                "{refused}"
            );
        }
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            ServerConfig::default().lease_share,
            tla_server::lease::DEFAULT_LEASE_SHARE
        );
    }

    /// A stream needs both flags and a secret of at least 16 characters; TLA_SECRET
    /// beats the file's `secret`; without the flags the log stays SQLite.
    #[test]
    fn a_stream_needs_its_name_and_a_shared_secret() {
        let path = std::env::temp_dir().join(format!("tla-stream-{}.toml", std::process::id()));
        std::fs::write(&path, "version = 1\nsecret = \"file-secret-0123456789\"\n").unwrap();
        let none = |_: &str| None;
        assert!(resolve(&args_with(&path), &none).unwrap().stream.is_none());
        let mut args = args_with(&path);
        args.event_log = Some("nats://127.0.0.1:4222,127.0.0.1:4223".into());
        let refused = resolve(&args, &none).unwrap_err().to_string();
        assert!(refused.contains("needs --stream"), "{refused}");
        args.stream = Some("tla".into());
        let (settings, secret) = resolve(&args, &none).unwrap().stream.unwrap();
        assert_eq!(secret, "file-secret-0123456789");
        assert_eq!(settings.servers.len(), 2);
        assert_eq!(
            settings.stale_after,
            tla_server::stream_log::DEFAULT_STALE_AFTER
        );
        let env = |name: &str| (name == "TLA_SECRET").then(|| "env-secret-0123456789".to_string());
        assert_eq!(
            resolve(&args, &env).unwrap().stream.unwrap().1,
            "env-secret-0123456789"
        );
        let short = |name: &str| (name == "TLA_SECRET").then(|| "short".to_string());
        let refused = resolve(&args, &short).unwrap_err().to_string();
        assert!(refused.contains("TLA_SECRET"), "{refused}");
        args.stream_stale_secs = Some(0.0);
        let refused = resolve(&args, &none).unwrap_err().to_string();
        assert!(refused.contains("stream_stale_secs"), "{refused}");
        std::fs::remove_file(&path).unwrap();
    }

    /// The connection limits come from the file, the two flags beat it, and a duration
    /// that is not a positive number of seconds is refused with what is accepted.
    #[test]
    fn connection_limits_resolve_from_file_and_flags() {
        let file = std::env::temp_dir().join(format!("tla-limits-{}.toml", std::process::id()));
        std::fs::write(
            &file,
            "version = 1\nmax_connections = 50\nidle_timeout_secs = 0.5\n\
             header_read_timeout_secs = 2\nbody_read_timeout_secs = 3\nshutdown_grace_secs = 4\n\
             write_timeout_secs = 5\n",
        )
        .unwrap();
        let no_env = |_: &str| None;
        let resolved = resolve(&args_with(&file), &no_env).unwrap().server;
        assert_eq!(resolved.max_connections, 50);
        assert_eq!(resolved.idle_timeout, std::time::Duration::from_millis(500));
        assert_eq!(
            resolved.header_read_timeout,
            std::time::Duration::from_secs(2)
        );
        assert_eq!(
            resolved.body_read_timeout,
            std::time::Duration::from_secs(3)
        );
        assert_eq!(resolved.shutdown_grace, std::time::Duration::from_secs(4));
        assert_eq!(resolved.write_timeout, std::time::Duration::from_secs(5));
        let mut args = args_with(&file);
        args.max_connections = Some(7);
        args.shutdown_grace = Some(1.5);
        let resolved = resolve(&args, &no_env).unwrap().server;
        assert_eq!(resolved.max_connections, 7);
        assert_eq!(
            resolved.shutdown_grace,
            std::time::Duration::from_millis(1500)
        );

        std::fs::write(&file, "version = 1\nheader_read_timeout_secs = 0\n").unwrap();
        let refused = resolve(&args_with(&file), &no_env).unwrap_err().to_string();
        assert_eq!(
            refused,
            "header_read_timeout_secs = 0 is not accepted; accepted: seconds above 0, at most 86400"
        );
        std::fs::write(&file, "version = 1\nmax_connections = 0\n").unwrap();
        let refused = resolve(&args_with(&file), &no_env).unwrap_err().to_string();
        assert!(
            refused.contains("max_connections = 0 is not accepted"),
            "{refused}"
        );
        std::fs::remove_file(&file).unwrap();
    }
}
