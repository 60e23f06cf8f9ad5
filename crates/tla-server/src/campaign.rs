//! The live campaigns: each one's validated spec, its engine behind a lock (decisions
//! read it, the learner writes it) and what the event checks need, and the set of them
//! by id.

use crate::error::ApiError;
use crate::pacing::CampaignPacing;
use rand::Rng;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tla_core::engine::Engine;
use tla_core::spec::{Campaign, FlightPlan};
use tla_store::{CampaignRow, CampaignStatus, EventFix, StoredEvent};

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
    engine: RwLock<Engine>,
    /// Segment index by name.
    pub segments: HashMap<String, usize>,
    /// Attribution window, ms.
    pub attribution_window_ms: i64,
    /// Events applied since the last snapshot.
    pub(crate) since_snapshot: AtomicU64,
    /// The net effect of the campaign's corrections by event sequence number
    /// ([`tla_store::effects`]): every event is applied through [`CampaignSlot::fix_of`].
    fixes: RwLock<HashMap<u64, EventFix>>,
    /// The flight in force: the spec's `[flight]` with the budget and daily cap of the
    /// campaign's latest budget change ([`crate::budget`]); `None` without a flight.
    flight: RwLock<Option<FlightPlan>>,
    /// The pacing of a campaign with a flight ([`crate::pacing`]); `None` without one.
    pub pacing: Option<CampaignPacing>,
}

impl CampaignSlot {
    /// The slot of a stored campaign, its engine at the prior; `rng` draws the first
    /// decision distributions.
    pub fn new<R: Rng + ?Sized>(row: &CampaignRow, campaign: Campaign, rng: &mut R) -> Self {
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
            engine: RwLock::new(engine),
            segments,
            attribution_window_ms,
            since_snapshot: AtomicU64::new(0),
            fixes: RwLock::new(HashMap::new()),
            flight: RwLock::new(campaign.flight().copied()),
            pacing: campaign
                .flight()
                .map(|plan| CampaignPacing::new(plan, campaign.design().segment_names.len())),
            campaign,
        }
    }

    /// The flight in force: the spec's budget and daily cap as the latest budget change
    /// set them, the spec's dates and minimum return; `None` when the spec has no
    /// `[flight]`. What reports and pacing read.
    pub fn flight(&self) -> Option<FlightPlan> {
        *self.flight.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The flight's lock, written by a budget change ([`crate::budget::change`]), which
    /// holds it while it checks, records and applies the change.
    pub(crate) fn flight_lock(&self) -> &RwLock<Option<FlightPlan>> {
        &self.flight
    }

    /// The correction in force for a stored event of this campaign, if any.
    pub fn fix_of(&self, event: &StoredEvent) -> Option<EventFix> {
        let fixes = self.fixes.read().unwrap_or_else(PoisonError::into_inner);
        if fixes.is_empty() {
            return None;
        }
        fixes.get(&event.seq).copied()
    }

    /// Puts the net effect of the campaign's corrections in force for the events
    /// applied from now on.
    pub(crate) fn set_fixes(&self, fixes: HashMap<u64, EventFix>) {
        *self.fixes.write().unwrap_or_else(PoisonError::into_inner) = fixes;
    }

    /// Swaps in a rebuilt engine (after a correction), under a brief write lock.
    pub(crate) fn replace_engine(&self, engine: Engine) {
        *self.engine_mut() = engine;
    }

    /// Reads the engine.
    pub fn engine(&self) -> RwLockReadGuard<'_, Engine> {
        self.engine.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes the engine (the learner and the replay only).
    pub(crate) fn engine_mut(&self) -> RwLockWriteGuard<'_, Engine> {
        self.engine.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether decisions are paused.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// Rebuilds the decision distributions due at `now_millis`: the engine plans the
    /// refresh under the read lock (decisions go on), then applies it under a short
    /// write lock. Returns how many were rebuilt.
    pub fn refresh<R: Rng + ?Sized>(&self, rng: &mut R, now_millis: u64) -> usize {
        let Some(plan) = self.engine().plan_refresh(rng, now_millis) else {
            return 0;
        };
        self.engine_mut().apply_refresh(plan)
    }
}

/// The live campaigns by id.
#[derive(Debug, Default)]
pub struct Campaigns {
    by_id: RwLock<HashMap<String, Arc<CampaignSlot>>>,
}

impl Campaigns {
    /// Adds (or replaces) a campaign.
    pub fn insert(&self, slot: Arc<CampaignSlot>) {
        self.by_id
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(slot.id.clone(), slot);
    }

    /// One campaign, if it exists.
    pub fn get(&self, id: &str) -> Option<Arc<CampaignSlot>> {
        self.by_id
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// One campaign, or a `not_found` error naming it.
    pub fn find(&self, id: &str) -> Result<Arc<CampaignSlot>, ApiError> {
        self.get(id)
            .ok_or_else(|| ApiError::not_found(format!("no campaign with id {id:?}")))
    }

    /// Every campaign, by creation time, then id.
    pub fn all(&self) -> Vec<Arc<CampaignSlot>> {
        let mut all: Vec<_> = self
            .by_id
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        all
    }
}
