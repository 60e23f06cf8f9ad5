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
use crate::decision_log::{DecisionQueue, LogFailure};
use crate::error::ApiError;
use crate::error::ErrorCode;
use crate::learner::LearnerState;
use crate::metrics::Metrics;
use crate::replay::{ReplayOptions, replay};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tla_core::spec::Campaign;
use tla_store::{
    CampaignRow, CampaignStatus, CreateOnce, DecisionLog, DecisionRow, EventLog, IdempotencyRow,
    KeyRow, Store, StoreError,
};

/// Refuses a change of an archived campaign (409 `campaign_archived`): `what` says
/// what it cannot be (`"resumed"`, `"revised"`, ...).
pub(crate) fn refuse_archived(slot: &CampaignSlot, what: &str) -> Result<(), ApiError> {
    if slot.is_archived() {
        return Err(ApiError::new(
            ErrorCode::CampaignArchived,
            format!(
                "campaign {} is archived and cannot be {what}; an archived campaign keeps its history and report, and serves no decisions again (create a new campaign from its spec to serve it again)",
                slot.id
            ),
        ));
    }
    Ok(())
}

pub use crate::decision_log::DECISION_BACKLOG_LIMIT;
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
    /// With a stream: a spend lease is this share of a campaign's day's allowance
    /// ([`crate::lease::lease_size`], checked by [`crate::lease::check_lease_share`]).
    pub lease_share: f64,
    /// After the shutdown signal, how long requests in progress may finish before
    /// every connection still open is closed.
    pub shutdown_grace: Duration,
}

/// The default of [`ServerConfig::max_connections`] (also shown in `tla serve --help`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// The default of [`ServerConfig::shutdown_grace`] (also shown in `tla serve --help`).
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

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
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            lease_share: crate::lease::DEFAULT_LEASE_SHARE,
        }
    }
}

/// Shared state of the service (cheap to clone).
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    log: Arc<dyn EventLog>,
    /// Where decisions are written: the store, or a test's fault-injecting wrapper.
    decision_log: Arc<dyn DecisionLog>,
    clock: Arc<dyn Clock>,
    signer: DecisionSigner,
    config: ServerConfig,
    campaigns: Campaigns,
    keys: RwLock<HashMap<String, KeyRow>>,
    /// The dashboard's sessions and cached reports ([`crate::dashboard`]).
    dashboard: Arc<crate::dashboard::Shared>,
    metrics: Metrics,
    /// Highest event sequence applied to the engines.
    applied: AtomicU64,
    /// The learner's random stream and cadences, and its serialization lock.
    learner: Mutex<LearnerState>,
    learner_wake: tokio::sync::Notify,
    /// Decisions served and not yet written, and their writer's state.
    decisions: DecisionQueue,
    /// Why the last append to the event log failed, `None` once one succeeds.
    event_log_failure: Mutex<Option<LogFailure>>,
    /// When the state was opened, ms on its clock: decisions older than this were made
    /// by an earlier process, and the learner restores those an event refers to.
    opened_at_ms: i64,
    closing: AtomicBool,
    /// The shared stream, when the event log is one ([`AppState::attach_stream`]).
    stream: std::sync::OnceLock<Arc<crate::stream_log::JetStreamEventLog>>,
    /// This data directory's server id ([`AppState::server_id`]), read once.
    server_id: std::sync::OnceLock<String>,
    /// The state changes applied from the stream ([`crate::change`]).
    changes: crate::change::Applier,
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
    /// event log, on `clock`: loads the keys, rebuilds each campaign from its latest
    /// snapshot and the events after it ([`replay`]), and writes to the decision log
    /// every decision a stored event refers to that a crash kept out of it
    /// ([`crate::decision_log::restore_from_events`]).
    pub fn open(
        store: Store,
        log: Arc<dyn EventLog>,
        clock: Arc<dyn Clock>,
        secret: &[u8],
        config: ServerConfig,
    ) -> Result<Self, OpenError> {
        let decision_log: Arc<dyn DecisionLog> = Arc::new(store.clone());
        Self::open_with_decision_log(store, log, decision_log, clock, secret, config)
    }

    /// [`AppState::open`] writing decisions through `decision_log` instead of the
    /// store's own (tests pass a wrapper that injects write failures).
    pub fn open_with_decision_log(
        store: Store,
        log: Arc<dyn EventLog>,
        decision_log: Arc<dyn DecisionLog>,
        clock: Arc<dyn Clock>,
        secret: &[u8],
        config: ServerConfig,
    ) -> Result<Self, OpenError> {
        let now_ms = clock.now_ms();
        // Campaigns other servers of a shared log created are this server's too.
        for row in log.shared_campaigns()? {
            if store.campaign(&row.id)?.is_none() {
                store.insert_campaign(&row)?;
            }
        }
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
        let signer = DecisionSigner::new(secret);
        let changes_through = store.stream_changes_through()?;
        let covered = store.decisions_cover_seq()?;
        let mut recorded_cover = covered;
        if covered < replayed.applied_seq {
            let restored = crate::decision_log::restore_from_events(
                log.as_ref(),
                decision_log.as_ref(),
                &signer,
                covered,
                replayed.applied_seq,
            )?;
            if restored > 0 {
                tracing::warn!(
                    restored,
                    "decisions missing from the decision log were restored from the events that refer to them"
                );
            }
            match store.set_decisions_cover_seq(replayed.applied_seq) {
                Ok(()) => recorded_cover = replayed.applied_seq,
                Err(error) => {
                    tracing::warn!(%error, "recording the decision log's coverage failed; the learner retries")
                }
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                log,
                decision_log,
                clock,
                signer,
                campaigns: replayed.campaigns,
                keys: RwLock::new(keys),
                dashboard: Arc::default(),
                metrics: Metrics::default(),
                applied: AtomicU64::new(replayed.applied_seq),
                learner: Mutex::new(LearnerState {
                    rng: replayed.rng,
                    last_snapshot_ms: now_ms,
                    last_key_reload_ms: now_ms,
                    restoring: Vec::new(),
                    restored_through: replayed.applied_seq,
                    recorded_cover,
                    last_cover_ms: now_ms,
                    last_rollup_flush_ms: now_ms,
                }),
                learner_wake: tokio::sync::Notify::new(),
                decisions: DecisionQueue::new(replayed.applied_seq),
                event_log_failure: Mutex::new(None),
                opened_at_ms: now_ms,
                closing: AtomicBool::new(false),
                stream: std::sync::OnceLock::new(),
                server_id: std::sync::OnceLock::new(),
                changes: crate::change::Applier::new(changes_through),
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

    /// The dashboard's sessions and cached reports.
    pub fn dashboard(&self) -> &Arc<crate::dashboard::Shared> {
        &self.inner.dashboard
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Tells the state that its event log is this shared stream (the same object as
    /// [`AppState::log`]): `/healthz` and `/metrics` show its position, lag and
    /// connection, decisions are refused while it is stale, and a campaign created with
    /// an `Idempotency-Key` gets an id derived from that key, so creating it with the
    /// same key on every server of the stream names the same campaign. Once.
    pub fn attach_stream(&self, stream: Arc<crate::stream_log::JetStreamEventLog>) {
        stream.set_changes_through(self.inner.changes.through());
        let _ = self.inner.stream.set(stream);
    }

    /// This data directory's server id ([`tla_store::Store::server_id`]): what names
    /// the server's spend leases on a stream. Read from the store once. Blocking.
    pub fn server_id(&self) -> Result<&str, tla_store::StoreError> {
        if let Some(id) = self.inner.server_id.get() {
            return Ok(id);
        }
        let id = self.inner.store.server_id()?;
        Ok(self.inner.server_id.get_or_init(|| id))
    }

    /// The state changes applied from the stream.
    pub(crate) fn change_applier(&self) -> &crate::change::Applier {
        &self.inner.changes
    }

    /// Starts the campaigns created through the shared log that this server does not
    /// run yet (stored, then started as a campaign created here would be), drawing their
    /// first tables from `rng`. The learner step calls it before applying events, and
    /// again for an event of a campaign it does not know. Blocking.
    pub(crate) fn adopt_shared_campaigns(
        &self,
        rng: &mut rand_pcg::Pcg64Mcg,
    ) -> Result<(), OpenError> {
        for row in self.inner.log.shared_campaigns()? {
            if self.inner.campaigns.get(&row.id).is_some() {
                continue;
            }
            let campaign = tla_core::spec::CampaignSpec::from_json_str(&row.spec_json)
                .and_then(|spec| spec.validate())
                .map_err(|e| OpenError::Campaign {
                    id: row.id.clone(),
                    message: e.to_string(),
                })?;
            if self.inner.store.campaign(&row.id)?.is_none() {
                self.inner.store.insert_campaign(&row)?;
            }
            self.inner
                .campaigns
                .insert(Arc::new(CampaignSlot::new(&row, campaign, rng)));
            tracing::info!(campaign = %row.id, "campaign created on another server of the stream started");
        }
        Ok(())
    }

    /// The shared stream, if the event log is one.
    pub fn stream(&self) -> Option<&Arc<crate::stream_log::JetStreamEventLog>> {
        self.inner.stream.get()
    }

    /// 503 `stream_unavailable` when the event log is a stream this server has not
    /// heard from for longer than its bound: decisions are not served on a model that
    /// may be stale.
    pub fn check_stream(&self) -> Result<(), ApiError> {
        let Some(stream) = self.stream() else {
            return Ok(());
        };
        let health = stream.health(self.applied_seq());
        if health.stale {
            return Err(ApiError::new(
                crate::error::ErrorCode::StreamUnavailable,
                format!(
                    "this server has not heard from stream {} for {} ms (bound: {} ms); it decides again once the stream answers",
                    health.stream, health.since_contact_ms, health.stale_after_ms
                ),
            ));
        }
        Ok(())
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

    /// Stores and starts a validated campaign sent with an `Idempotency-Key`, unless
    /// that key made a campaign before: then answers that campaign (`false`: not
    /// created now) when the spec is the same, and refuses with 409
    /// `idempotency_key_reused` when it is not. Blocking.
    pub fn create_campaign_once(
        &self,
        campaign: Campaign,
        id: String,
        idempotency_key: &str,
        key_id: &str,
    ) -> Result<(Arc<CampaignSlot>, bool), ApiError> {
        let spec_json = serde_json::to_string(campaign.spec()).map_err(ApiError::internal)?;
        let spec_digest: [u8; 32] =
            <sha2::Sha256 as sha2::Digest>::digest(spec_json.as_bytes()).into();
        let now_ms = self.inner.clock.now_ms();
        let row = CampaignRow {
            id: id.clone(),
            name: campaign.spec().name.clone(),
            spec_json,
            status: CampaignStatus::Active,
            created_at_ms: now_ms,
        };
        let key = IdempotencyRow {
            key: idempotency_key.to_owned(),
            spec_digest,
            campaign_id: id,
            key_id: key_id.to_owned(),
            at_ms: now_ms,
        };
        // Under the learner's lock: a retry racing the first request finds the
        // campaign in the set once the key is in the store.
        let mut learner = self.learner_state();
        match self.inner.store.insert_campaign_once(&row, &key)? {
            CreateOnce::Created => {
                let slot = Arc::new(CampaignSlot::new(&row, campaign, &mut learner.rng));
                self.inner.campaigns.insert(slot.clone());
                Ok((slot, true))
            }
            CreateOnce::Existing(earlier) if earlier.spec_digest == spec_digest => {
                Ok((self.campaign(&earlier.campaign_id)?, false))
            }
            CreateOnce::Existing(earlier) => Err(ApiError::new(
                ErrorCode::IdempotencyKeyReused,
                format!(
                    "Idempotency-Key {} created campaign {} from another spec; a retry sends the same spec with the same key, a new campaign a new key",
                    crate::error::quoted(idempotency_key),
                    earlier.campaign_id
                ),
            )),
        }
    }

    /// Archives a campaign: a durable write of its status, then the flags. It serves
    /// no decision again and cannot be resumed; events for its earlier decisions are
    /// still taken and its report stays readable. Archiving an archived campaign
    /// answers it as it is. Blocking.
    pub fn archive(&self, id: &str) -> Result<Arc<CampaignSlot>, ApiError> {
        let slot = self.campaign(id)?;
        if slot.is_archived() {
            return Ok(slot);
        }
        self.inner
            .store
            .set_campaign_status(id, CampaignStatus::Archived)?;
        slot.paused.store(true, Ordering::SeqCst);
        slot.archived.store(true, Ordering::SeqCst);
        Ok(slot)
    }

    /// Pauses or resumes a campaign: a durable write of its status, then the flag.
    /// An archived campaign is refused (409 `campaign_archived`). Blocking.
    pub fn set_paused(&self, id: &str, paused: bool) -> Result<Arc<CampaignSlot>, ApiError> {
        let slot = self.campaign(id)?;
        refuse_archived(&slot, if paused { "paused" } else { "resumed" })?;
        let status = if paused {
            CampaignStatus::Paused
        } else {
            CampaignStatus::Active
        };
        self.inner.store.set_campaign_status(id, status)?;
        slot.paused.store(paused, Ordering::SeqCst);
        Ok(slot)
    }

    /// [`AppState::set_paused`] asked by key `key_id`, recorded in the campaign's control
    /// audit (the API's routes and the dashboard both call this). On a shared stream it
    /// is published and decided when applied, in stream order ([`crate::change`]).
    /// Blocking.
    pub fn set_paused_by(
        &self,
        id: &str,
        paused: bool,
        key_id: &str,
    ) -> Result<Arc<CampaignSlot>, ApiError> {
        if self.stream().is_some() {
            let slot = self.campaign(id)?;
            refuse_archived(&slot, if paused { "paused" } else { "resumed" })?;
            let change = if paused {
                crate::stream_log::Change::Pause
            } else {
                crate::stream_log::Change::Resume
            };
            return self.submit_campaign_change(id, change, key_id);
        }
        self.set_paused_at(id, paused, key_id, self.inner.clock.now_ms())
    }

    /// [`AppState::set_paused`] and its control audit line at `at_ms`: the one place
    /// a pause or resume is applied, here or from the stream. Blocking.
    pub(crate) fn set_paused_at(
        &self,
        id: &str,
        paused: bool,
        key_id: &str,
        at_ms: i64,
    ) -> Result<Arc<CampaignSlot>, ApiError> {
        let slot = self.set_paused(id, paused)?;
        self.record_control(id, if paused { "pause" } else { "resume" }, key_id, at_ms)?;
        Ok(slot)
    }

    /// [`AppState::archive`] asked by key `key_id`, recorded in the campaign's control
    /// audit; on a shared stream published and decided when applied. Blocking.
    pub fn archive_by(&self, id: &str, key_id: &str) -> Result<Arc<CampaignSlot>, ApiError> {
        if self.stream().is_some() {
            self.campaign(id)?;
            return self.submit_campaign_change(id, crate::stream_log::Change::Archive, key_id);
        }
        self.archive_at(id, key_id, self.inner.clock.now_ms())
    }

    /// [`AppState::archive`] and its control audit line at `at_ms`. Blocking.
    pub(crate) fn archive_at(
        &self,
        id: &str,
        key_id: &str,
        at_ms: i64,
    ) -> Result<Arc<CampaignSlot>, ApiError> {
        let slot = self.archive(id)?;
        self.record_control(id, "archive", key_id, at_ms)?;
        Ok(slot)
    }

    /// Publishes a pause, resume or archive and answers the campaign as applied.
    fn submit_campaign_change(
        &self,
        id: &str,
        change: crate::stream_log::Change,
        key_id: &str,
    ) -> Result<Arc<CampaignSlot>, ApiError> {
        match crate::change::submit(self, id, change, key_id, None)? {
            crate::change::Applied::Campaign(slot) => Ok(slot),
            crate::change::Applied::Already => self.campaign(id),
            other => Err(ApiError::internal(format!(
                "a status change applied as {other:?}"
            ))),
        }
    }

    fn record_control(
        &self,
        id: &str,
        action: &str,
        key_id: &str,
        at_ms: i64,
    ) -> Result<(), ApiError> {
        self.inner
            .store
            .record_control(&tla_store::NewControlAudit {
                campaign_id: id.to_owned(),
                action: action.to_owned(),
                detail: String::new(),
                key_id: key_id.to_owned(),
                at_ms,
            })?;
        Ok(())
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

    /// Queues the rows of decisions about to be served for the decision log, or
    /// refuses them (503 `decision_log_unavailable`, 507 `storage_full`: see
    /// [`DecisionQueue::admit`]); refused decisions must not be served.
    pub fn log_decisions(&self, rows: Vec<DecisionRow>) -> Result<(), ApiError> {
        self.inner.decisions.admit(rows)
    }

    /// The decision queue and its writer's state.
    pub fn decisions(&self) -> &DecisionQueue {
        &self.inner.decisions
    }

    /// Where decisions are written.
    pub fn decision_log(&self) -> &dyn DecisionLog {
        self.inner.decision_log.as_ref()
    }

    /// When the state was opened, ms on its clock.
    pub fn opened_at_ms(&self) -> i64 {
        self.inner.opened_at_ms
    }

    /// Records the outcome of an append to the event log, for `/healthz`.
    pub fn note_event_append(&self, result: Result<(), &StoreError>) {
        let failure = result
            .err()
            .filter(|error| !error.is_client_error())
            .map(LogFailure::of);
        let mut noted = self
            .inner
            .event_log_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *noted != failure {
            if let Some(failure) = failure {
                tracing::error!(?failure, "appending to the event log failed");
            } else {
                tracing::info!("the event log is written again");
            }
            *noted = failure;
        }
    }

    /// Why storage cannot be written now: the decision log's last write failed, or
    /// the event log's last append did (`None`: both succeeded). A full disk wins.
    pub fn storage_failure(&self) -> Option<LogFailure> {
        let event_log = *self
            .inner
            .event_log_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match (self.inner.decisions.failure(), event_log) {
            (Some(LogFailure::Full), _) | (_, Some(LogFailure::Full)) => Some(LogFailure::Full),
            (decisions, event_log) => decisions.or(event_log),
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
        self.inner.decisions.backlog()
    }

    /// Writes the queued decisions to the decision log, in order, in transactions of
    /// at most [`crate::decision_log::DECISION_CHUNK`] rows; a failed write keeps its
    /// rows for the next call. Blocking. Returns the rows written.
    pub fn write_decisions(&self) -> Result<usize, StoreError> {
        let last_seq = self.inner.log.last_seq().ok();
        let written = self.inner.decisions.write(
            self.inner.decision_log.as_ref(),
            last_seq,
            &self.inner.metrics,
            || self.inner.clock.now_ms(),
        )?;
        if written > 0 {
            // The disk took a commit: the event log's last failure is over too.
            self.note_event_append(Ok(()));
        }
        Ok(written)
    }

    /// While the event log's last append failed: one durable write to the store (the
    /// decision log's coverage record) to learn whether it is writable again, so
    /// `/healthz` recovers without waiting for an event. Returns whether the event log
    /// is taken as writable. Blocking.
    pub fn probe_storage(&self) -> bool {
        let failing = self
            .inner
            .event_log_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some();
        if !failing {
            return true;
        }
        let probe = self
            .inner
            .store
            .decisions_cover_seq()
            .and_then(|seq| self.inner.store.set_decisions_cover_seq(seq));
        if probe.is_ok() {
            self.note_event_append(Ok(()));
        }
        probe.is_ok()
    }

    /// Marks the state closing and wakes the learner and the decision writer for
    /// their last step.
    pub fn begin_close(&self) {
        self.inner.closing.store(true, Ordering::SeqCst);
        self.inner.learner_wake.notify_one();
        self.inner.decisions.wake();
    }
}
