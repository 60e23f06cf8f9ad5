//! The server's state: campaigns and their engines, keys, the event log, the learner
//! that applies the log to the engines in order, the decision log writer, snapshots.
//!
//! Events take one path: a request's good events are appended to the event log (a
//! durable group commit) and acknowledged; the learner tails the log and applies each
//! event to its campaign's engine in sequence order. So every engine is a function of
//! the log prefix it has applied, and a restart (latest snapshot, then the events after
//! it) rebuilds exactly the model that a replay of the whole log would.

use crate::auth::{self, Scope};
use crate::decision_id::DecisionSigner;
use crate::error::ApiError;
use crate::metrics::Metrics;
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tla_core::engine::{Engine, Feedback};
use tla_core::spec::{Campaign, CampaignSpec};
use tla_store::{
    CampaignRow, CampaignStatus, DecisionRow, EventKind, EventLog, KeyRow, Store, StoredEvent,
};

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
        }
    }
}

/// One live campaign.
#[derive(Debug)]
pub struct CampaignSlot {
    /// Campaign id.
    pub id: String,
    /// Name from the spec.
    pub name: String,
    /// Creation time, ms since the Unix epoch.
    pub created_at_ms: i64,
    /// Whether decisions are paused.
    pub paused: AtomicBool,
    /// The validated spec.
    pub campaign: Campaign,
    /// The engine: decisions read it, the learner writes it.
    pub engine: RwLock<Engine>,
    /// Segment index by name.
    pub segments: HashMap<String, usize>,
    /// Attribution window, ms.
    pub attribution_window_ms: i64,
    /// Events applied since the last snapshot.
    since_snapshot: AtomicU64,
}

impl CampaignSlot {
    fn new(row: &CampaignRow, campaign: Campaign, rng: &mut Pcg64Mcg) -> Self {
        let engine = Engine::new(&campaign, rng);
        let segments = campaign
            .design()
            .segment_names
            .iter()
            .enumerate()
            .map(|(i, name)| (name.clone(), i))
            .collect();
        let attribution_window_ms = i64::from(campaign.spec().attribution_window_hours) * 3_600_000;
        Self {
            id: row.id.clone(),
            name: row.name.clone(),
            created_at_ms: row.created_at_ms,
            paused: AtomicBool::new(row.status == CampaignStatus::Paused),
            campaign,
            engine: RwLock::new(engine),
            segments,
            attribution_window_ms,
            since_snapshot: AtomicU64::new(0),
        }
    }

    /// Reads the engine.
    pub fn engine(&self) -> std::sync::RwLockReadGuard<'_, Engine> {
        self.engine
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Rebuilds the decision distributions due at `now_millis`: the engine plans the
    /// refresh under the read lock (decisions go on), then applies it under a short
    /// write lock. Returns how many were rebuilt.
    pub fn refresh<R: rand::Rng + ?Sized>(&self, rng: &mut R, now_millis: u64) -> usize {
        let Some(plan) = self.engine().plan_refresh(rng, now_millis) else {
            return 0;
        };
        self.engine_mut().apply_refresh(plan)
    }

    fn engine_mut(&self) -> std::sync::RwLockWriteGuard<'_, Engine> {
        self.engine
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Rows per decision-log transaction.
const DECISION_CHUNK: usize = 10_000;

/// Decisions queued for the log beyond which new decisions are refused (503) until the
/// log catches up: every decision served must be logged with its propensity.
pub const DECISION_BACKLOG_LIMIT: usize = 1_000_000;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Shared state of the service (cheap to clone).
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    log: Arc<dyn EventLog>,
    signer: DecisionSigner,
    config: ServerConfig,
    campaigns: RwLock<HashMap<String, Arc<CampaignSlot>>>,
    keys: RwLock<HashMap<String, KeyRow>>,
    metrics: Metrics,
    /// Highest event sequence applied to the engines.
    applied: AtomicU64,
    /// The learner's random stream (decision tables) and its serialization lock.
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

#[derive(Debug)]
struct LearnerState {
    rng: Pcg64Mcg,
    last_snapshot: Instant,
    last_key_reload: Instant,
}

/// Why the state could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] tla_store::StoreError),
    /// A stored campaign no longer validates.
    #[error("stored campaign {id} does not validate: {message}")]
    Campaign {
        /// Campaign id.
        id: String,
        /// Why.
        message: String,
    },
}

impl AppState {
    /// Opens the state over a store: loads keys and campaigns, restores each campaign's
    /// latest snapshot and replays the events after it.
    pub fn open(store: Store, secret: &[u8], config: ServerConfig) -> Result<Self, OpenError> {
        let log: Arc<dyn EventLog> = Arc::new(store.event_log());
        let mut rng = Pcg64Mcg::seed_from_u64(config.seed);
        let mut campaigns = HashMap::new();
        let mut covered = HashMap::new();
        for row in store.campaigns()? {
            let campaign = CampaignSpec::from_json_str(&row.spec_json)
                .and_then(|spec| spec.validate())
                .map_err(|e| OpenError::Campaign {
                    id: row.id.clone(),
                    message: e.to_string(),
                })?;
            let slot = CampaignSlot::new(&row, campaign, &mut rng);
            let mut seq = 0;
            let snapshot = if config.replay_from_start {
                None
            } else {
                store.latest_snapshot(&row.id)?
            };
            if let Some((covers, bytes)) = snapshot {
                match slot.engine_mut().restore(&bytes) {
                    Ok(()) => seq = covers,
                    Err(error) => {
                        tracing::warn!(campaign = %row.id, %error, "snapshot refused; replaying the whole log")
                    }
                }
            }
            covered.insert(row.id.clone(), seq);
            campaigns.insert(row.id.clone(), Arc::new(slot));
        }
        let keys = store
            .keys()?
            .into_iter()
            .map(|k| (k.id.clone(), k))
            .collect();
        let state = Self {
            inner: Arc::new(Inner {
                store,
                log,
                signer: DecisionSigner::new(secret),
                campaigns: RwLock::new(campaigns),
                keys: RwLock::new(keys),
                metrics: Metrics::default(),
                applied: AtomicU64::new(0),
                learner: Mutex::new(LearnerState {
                    rng,
                    last_snapshot: Instant::now(),
                    last_key_reload: Instant::now(),
                }),
                learner_wake: tokio::sync::Notify::new(),
                decision_log: Mutex::new(Vec::new()),
                closing: AtomicBool::new(false),
                config,
            }),
        };
        let start = covered.values().copied().min().unwrap_or(0);
        state.inner.applied.store(start, Ordering::SeqCst);
        state.catch_up(&covered)?;
        let mut learner = state.learner_state();
        let now = now_ms().max(0) as u64;
        for slot in state.campaigns() {
            slot.engine_mut().refresh_all(&mut learner.rng, now);
        }
        drop(learner);
        Ok(state)
    }

    fn learner_state(&self) -> std::sync::MutexGuard<'_, LearnerState> {
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

    /// Whether the server is shutting down.
    pub fn closing(&self) -> bool {
        self.inner.closing.load(Ordering::SeqCst)
    }

    /// Every campaign, by creation time.
    pub fn campaigns(&self) -> Vec<Arc<CampaignSlot>> {
        let map = self
            .inner
            .campaigns
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut all: Vec<_> = map.values().cloned().collect();
        all.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        all
    }

    /// One campaign, or a 404.
    pub fn campaign(&self, id: &str) -> Result<Arc<CampaignSlot>, ApiError> {
        let map = self
            .inner
            .campaigns
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("no campaign with id {id:?}")))
    }

    /// Stores and starts a validated campaign; returns its slot.
    pub fn create_campaign(
        &self,
        campaign: Campaign,
        id: String,
    ) -> Result<Arc<CampaignSlot>, ApiError> {
        let spec_json = serde_json::to_string(campaign.spec()).map_err(ApiError::internal)?;
        let row = CampaignRow {
            id: id.clone(),
            name: campaign.spec().name.clone(),
            spec_json,
            status: CampaignStatus::Active,
            created_at_ms: now_ms(),
        };
        self.inner.store.insert_campaign(&row)?;
        let slot = {
            let mut learner = self.learner_state();
            let slot = CampaignSlot::new(&row, campaign, &mut learner.rng);
            Arc::new(slot)
        };
        self.inner
            .campaigns
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, slot.clone());
        Ok(slot)
    }

    /// Pauses or resumes a campaign.
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
        let Some(header) = header else {
            return Err(ApiError::unauthorized(
                "missing API key: send it as `Authorization: Bearer tla_<id>_<secret>`",
            ));
        };
        let token = header.strip_prefix("Bearer ").unwrap_or("").trim();
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
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this key has scopes [{}]; this endpoint needs `{}` (or `admin`)",
                key.scopes.join(", "),
                scope.as_str()
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
    fn flush_decisions(&self) {
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

    /// Applies every event after the applied sequence to its campaign's engine, in
    /// order. `covered` skips, per campaign, events its restored snapshot already holds.
    fn catch_up(&self, covered: &HashMap<String, u64>) -> Result<u64, tla_store::StoreError> {
        const PAGE: usize = 8192;
        let mut applied_total = 0;
        loop {
            let after = self.applied_seq();
            let events = self.inner.log.read_after(after, PAGE)?;
            let Some(last) = events.last().map(|e| e.seq) else {
                return Ok(applied_total);
            };
            let mut current: Option<(String, Arc<CampaignSlot>)> = None;
            for event in &events {
                if covered
                    .get(&event.campaign_id)
                    .is_some_and(|&c| event.seq <= c)
                {
                    continue;
                }
                let slot = match &current {
                    Some((id, slot)) if *id == event.campaign_id => slot.clone(),
                    _ => match self.campaign(&event.campaign_id) {
                        Ok(slot) => {
                            current = Some((event.campaign_id.clone(), slot.clone()));
                            slot
                        }
                        Err(_) => {
                            tracing::warn!(seq = event.seq, campaign = %event.campaign_id, "event of an unknown campaign skipped");
                            continue;
                        }
                    },
                };
                apply(&slot, event);
                slot.since_snapshot.fetch_add(1, Ordering::Relaxed);
                applied_total += 1;
            }
            Metrics::add(&self.inner.metrics.events_learned, events.len() as u64);
            self.inner.applied.store(last, Ordering::SeqCst);
            if events.len() < PAGE {
                return Ok(applied_total);
            }
        }
    }

    /// One learner step: apply new events, rebuild due decision tables, write queued
    /// decisions, snapshot when due, reload keys when due. Blocking.
    pub fn learner_step(&self, force_snapshot: bool) {
        let learned = match self.catch_up(&HashMap::new()) {
            Ok(n) => n,
            Err(error) => {
                tracing::error!(%error, "reading the event log failed");
                0
            }
        };
        let now = now_ms().max(0) as u64;
        let mut learner = self.learner_state();
        for slot in self.campaigns() {
            let rebuilt = slot.refresh(&mut learner.rng, now);
            Metrics::add(&self.inner.metrics.refreshes, rebuilt as u64);
        }
        self.flush_decisions();
        let config = &self.inner.config;
        let snapshot_due = learner.last_snapshot.elapsed() >= config.snapshot_every;
        for slot in self.campaigns() {
            let since = slot.since_snapshot.load(Ordering::Relaxed);
            if since > 0
                && (force_snapshot || snapshot_due || since >= config.snapshot_every_events)
            {
                self.snapshot(&slot);
            }
        }
        if snapshot_due || force_snapshot {
            learner.last_snapshot = Instant::now();
        }
        if learner.last_key_reload.elapsed() >= config.key_reload {
            if let Err(error) = self.reload_keys() {
                tracing::error!(%error, "reloading keys failed");
            }
            learner.last_key_reload = Instant::now();
        }
        let _ = learned;
    }

    fn snapshot(&self, slot: &CampaignSlot) {
        // The engine is read under its lock together with the sequence it covers.
        let (bytes, covers) = {
            let engine = slot.engine();
            (engine.snapshot(), self.applied_seq())
        };
        match self
            .inner
            .store
            .save_snapshot(&slot.id, covers, &bytes, now_ms())
        {
            Ok(()) => {
                slot.since_snapshot.store(0, Ordering::Relaxed);
                Metrics::add(&self.inner.metrics.snapshots, 1);
            }
            Err(error) => tracing::error!(campaign = %slot.id, %error, "snapshot failed"),
        }
    }

    /// Runs the learner until `closing` is set, then a last step with snapshots.
    pub async fn run_learner(self) {
        loop {
            let tick = self.inner.config.learner_tick;
            tokio::select! {
                () = self.inner.learner_wake.notified() => {}
                () = tokio::time::sleep(tick) => {}
            }
            let closing = self.closing();
            let state = self.clone();
            let _ = tokio::task::spawn_blocking(move || state.learner_step(closing)).await;
            if closing {
                return;
            }
        }
    }

    /// Marks the state closing and wakes the learner for its last step.
    pub fn begin_close(&self) {
        self.inner.closing.store(true, Ordering::SeqCst);
        self.inner.learner_wake.notify_one();
    }
}

/// Applies one stored event to its campaign's engine.
fn apply(slot: &CampaignSlot, event: &StoredEvent) {
    let feedback = match event.kind {
        EventKind::Impression => Feedback::Impression,
        EventKind::Click => Feedback::Click,
        EventKind::Conversion => Feedback::Conversion {
            amount: event.value,
        },
        EventKind::Cost => Feedback::Cost {
            amount: event.value,
        },
    };
    let segment = event.segment as usize;
    let mut engine = slot.engine_mut();
    if segment < engine.segment_counts().len() && engine.space().is_allowed(event.version) {
        engine.learn(segment, event.version, feedback);
    } else {
        tracing::warn!(
            seq = event.seq,
            "event outside its campaign's space skipped"
        );
    }
}
