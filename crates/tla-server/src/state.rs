//! The server's state: campaigns and their engines, keys, the event log, the clock,
//! the decision log writer, and the learner's lock.
//!
//! Events take one path: a request's good events ([`crate::event`]) are appended to the
//! event log (a durable group commit) and acknowledged; the learner
//! ([`crate::learner`]) tails the log and applies each event to its campaign's engine
//! in sequence order. [`AppState::open`] rebuilds the campaigns with
//! [`crate::replay::replay`], the same function `tla report --data` uses.

use crate::auth::{self, Scope};
use crate::campaign::{CampaignSlot, Campaigns};
use crate::clock::Clock;
use crate::decision_id::DecisionSigner;
use crate::error::ApiError;
use crate::learner::LearnerState;
use crate::metrics::Metrics;
use crate::replay::{ReplayOptions, replay};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tla_core::spec::Campaign;
use tla_store::{CampaignRow, CampaignStatus, DecisionRow, EventLog, KeyRow, Store};

pub use crate::replay::OpenError;

/// Limits and cadences of the service.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest request body accepted, bytes.
    pub max_body_bytes: usize,
    /// Most decisions one request may ask for.
    pub max_decisions_per_request: usize,
    /// Most events one request may carry.
    pub max_events_per_request: usize,
    /// Snapshot a campaign after this many new events...
    pub snapshot_every_events: u64,
    /// ... or after this long, if it learned anything.
    pub snapshot_every: Duration,
    /// How often the learner looks for new events when not woken.
    pub learner_tick: Duration,
    /// How often the key cache is reloaded from the store (revocations take effect).
    pub key_reload: Duration,
    /// Seed of the engines' random streams (decisions use per-request randomness).
    pub seed: u64,
    /// Ignore snapshots on open and rebuild every model from the whole event log.
    pub replay_from_start: bool,
    /// Longest a connection may wait, sending nothing, for its next request (a new
    /// connection, or one kept alive after a response) before it is closed.
    pub idle_timeout: Duration,
    /// Longest a request head (request line and headers) may take from its first byte
    /// before the connection is closed.
    pub header_read_timeout: Duration,
    /// Longest a handler waits for the whole request body from its first read; then
    /// 408 `request_timeout`.
    pub body_read_timeout: Duration,
    /// Longest a response write may wait for the client to read before the connection
    /// is closed.
    pub write_timeout: Duration,
    /// Most connections open at once; the server lowers it below the process's
    /// open-file limit ([`crate::connections::connection_cap`]).
    pub max_connections: usize,
    /// After the shutdown signal, how long requests in progress may finish before
    /// every connection still open is closed.
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_decisions_per_request: 100,
            max_events_per_request: 10_000,
            snapshot_every_events: 200_000,
            snapshot_every: Duration::from_secs(60),
            learner_tick: Duration::from_millis(20),
            key_reload: Duration::from_secs(1),
            seed: 0x7A1A,
            replay_from_start: false,
            idle_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Rows per decision-log transaction.
const DECISION_CHUNK: usize = 10_000;

/// Decisions queued for the log beyond which new decisions are refused (503) until the
/// log catches up: every decision served must be logged with its propensity.
pub const DECISION_BACKLOG_LIMIT: usize = 1_000_000;

/// Shared state of the service (cheap to clone).
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    log: Arc<dyn EventLog>,
    clock: Arc<dyn Clock>,
    signer: DecisionSigner,
    config: ServerConfig,
    campaigns: Campaigns,
    keys: RwLock<HashMap<String, KeyRow>>,
    metrics: Metrics,
    /// Highest event sequence applied to the engines.
    applied: AtomicU64,
    /// The learner's random stream and cadences, and its serialization lock.
    learner: Mutex<LearnerState>,
    learner_wake: tokio::sync::Notify,
    decision_log: Mutex<Vec<DecisionRow>>,
    closing: AtomicBool,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("applied", &self.applied)
            .field("closing", &self.closing)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Opens the state over a store (campaigns, keys, decisions, snapshots) and an
    /// event log, on `clock`: loads the keys, and rebuilds each campaign from its
    /// latest snapshot and the events after it ([`replay`]).
    pub fn open(
        store: Store,
        log: Arc<dyn EventLog>,
        clock: Arc<dyn Clock>,
        secret: &[u8],
        config: ServerConfig,
    ) -> Result<Self, OpenError> {
        let now_ms = clock.now_ms();
        let replayed = replay(
            &store,
            log.as_ref(),
            ReplayOptions {
                seed: config.seed,
                from_start: config.replay_from_start,
                now_ms,
            },
        )?;
        let keys = store
            .keys()?
            .into_iter()
            .map(|k| (k.id.clone(), k))
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                log,
                clock,
                signer: DecisionSigner::new(secret),
                campaigns: replayed.campaigns,
                keys: RwLock::new(keys),
                metrics: Metrics::default(),
                applied: AtomicU64::new(replayed.applied_seq),
                learner: Mutex::new(LearnerState {
                    rng: replayed.rng,
                    last_snapshot_ms: now_ms,
                    last_key_reload_ms: now_ms,
                }),
                learner_wake: tokio::sync::Notify::new(),
                decision_log: Mutex::new(Vec::new()),
                closing: AtomicBool::new(false),
                config,
            }),
        })
    }

    pub(crate) fn learner_state(&self) -> std::sync::MutexGuard<'_, LearnerState> {
        self.inner
            .learner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The event log.
    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.inner.log
    }

    /// The clock.
    pub fn clock(&self) -> &dyn Clock {
        self.inner.clock.as_ref()
    }

    /// The decision id signer.
    pub fn signer(&self) -> &DecisionSigner {
        &self.inner.signer
    }

    /// Limits and cadences.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// Metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Highest event sequence applied to the engines.
    pub fn applied_seq(&self) -> u64 {
        self.inner.applied.load(Ordering::SeqCst)
    }

    pub(crate) fn set_applied_seq(&self, seq: u64) {
        self.inner.applied.store(seq, Ordering::SeqCst);
    }

    /// Whether the server is shutting down.
    pub fn closing(&self) -> bool {
        self.inner.closing.load(Ordering::SeqCst)
    }

    pub(crate) fn campaigns_set(&self) -> &Campaigns {
        &self.inner.campaigns
    }

    /// Every campaign, by creation time.
    pub fn campaigns(&self) -> Vec<Arc<CampaignSlot>> {
        self.inner.campaigns.all()
    }

    /// One campaign, or a `not_found` error.
    pub fn campaign(&self, id: &str) -> Result<Arc<CampaignSlot>, ApiError> {
        self.inner.campaigns.find(id)
    }

    /// Stores and starts a validated campaign; returns its slot. Blocking.
    pub fn create_campaign(
        &self,
        campaign: Campaign,
        id: String,
    ) -> Result<Arc<CampaignSlot>, ApiError> {
        let spec_json = serde_json::to_string(campaign.spec()).map_err(ApiError::internal)?;
        let row = CampaignRow {
            id,
            name: campaign.spec().name.clone(),
            spec_json,
            status: CampaignStatus::Active,
            created_at_ms: self.inner.clock.now_ms(),
        };
        self.inner.store.insert_campaign(&row)?;
        let slot = {
            let mut learner = self.learner_state();
            Arc::new(CampaignSlot::new(&row, campaign, &mut learner.rng))
        };
        self.inner.campaigns.insert(slot.clone());
        Ok(slot)
    }

    /// Pauses or resumes a campaign: a durable write of its status, then the flag.
    /// Blocking.
    pub fn set_paused(&self, id: &str, paused: bool) -> Result<Arc<CampaignSlot>, ApiError> {
        let slot = self.campaign(id)?;
        let status = if paused {
            CampaignStatus::Paused
        } else {
            CampaignStatus::Active
        };
        self.inner.store.set_campaign_status(id, status)?;
        slot.paused.store(paused, Ordering::SeqCst);
        Ok(slot)
    }

    /// Checks a bearer token for a scope (admin holds every scope).
    pub fn authorize(&self, header: Option<&str>, scope: Scope) -> Result<(), ApiError> {
        self.authorize_key(header, scope).map(drop)
    }

    /// [`AppState::authorize`], returning the key's public id (for an audit record).
    pub fn authorize_key(&self, header: Option<&str>, scope: Scope) -> Result<String, ApiError> {
        let Some(header) = header else {
            return Err(ApiError::unauthorized(
                "missing API key: send it as `Authorization: Bearer tla_<id>_<secret>`",
            ));
        };
        // The scheme name is case-insensitive (RFC 9110, section 11.1).
        let token = match header.trim().split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => "",
        };
        let Some((id, secret)) = auth::parse_token(token) else {
            return Err(ApiError::unauthorized(
                "malformed API key: expected `Authorization: Bearer tla_<12 hex>_<32 hex>`",
            ));
        };
        let keys = self
            .inner
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = keys
            .get(id)
            .filter(|k| !k.revoked && auth::secret_matches(secret, &k.hash));
        let Some(key) = key else {
            return Err(ApiError::unauthorized("unknown or revoked API key"));
        };
        let allowed = key
            .scopes
            .iter()
            .any(|s| s == Scope::Admin.as_str() || s == scope.as_str());
        if allowed {
            Ok(key.id.clone())
        } else {
            let needs = match scope {
                Scope::Admin => "`admin`".to_owned(),
                other => format!("`{}` (or `admin`)", other.as_str()),
            };
            Err(ApiError::forbidden(format!(
                "this key has scopes [{}]; this endpoint needs {needs}",
                key.scopes.join(", "),
            )))
        }
    }

    /// Reloads the key cache from the store.
    pub fn reload_keys(&self) -> Result<(), tla_store::StoreError> {
        let keys = self
            .inner
            .store
            .keys()?
            .into_iter()
            .map(|k| (k.id.clone(), k))
            .collect();
        *self
            .inner
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
        Ok(())
    }

    /// Queues decisions for the decision log (written by the learner, in batches).
    pub fn log_decisions(&self, rows: Vec<DecisionRow>) {
        let mut queue = self
            .inner
            .decision_log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if queue.is_empty() {
            *queue = rows;
        } else {
            queue.extend(rows);
        }
    }

    /// Wakes the learner (new events were committed).
    pub fn wake_learner(&self) {
        self.inner.learner_wake.notify_one();
    }

    /// Resolves when the learner is woken.
    pub(crate) async fn learner_woken(&self) {
        self.inner.learner_wake.notified().await;
    }

    /// Decisions queued for the decision log and not yet written.
    pub fn decision_backlog(&self) -> usize {
        self.inner
            .decision_log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Writes queued decisions to the decision log, in transactions of at most
    /// `DECISION_CHUNK` rows so event commits interleave with a large backlog.
    pub(crate) fn flush_decisions(&self) {
        let rows = std::mem::take(
            &mut *self
                .inner
                .decision_log
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for chunk in rows.chunks(DECISION_CHUNK) {
            match self.inner.store.append_decisions(chunk) {
                Ok(()) => Metrics::add(&self.inner.metrics.decisions_logged, chunk.len() as u64),
                Err(error) => {
                    tracing::error!(%error, rows = chunk.len(), "decision log write failed")
                }
            }
        }
    }

    /// Marks the state closing and wakes the learner for its last step.
    pub fn begin_close(&self) {
        self.inner.closing.store(true, Ordering::SeqCst);
        self.inner.learner_wake.notify_one();
    }
}
