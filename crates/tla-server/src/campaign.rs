//! The live campaigns: each one's revisions (the validated spec of each, and what the
//! event checks need), its engine behind a lock (decisions read it, the learner writes
//! it), and the set of them by id.

use crate::dashboard::rollup::PendingRollups;
use crate::error::ApiError;
use crate::pacing::CampaignPacing;
use rand::Rng;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tla_core::engine::Engine;
use tla_core::revision::Revision;
use tla_core::spec::{Campaign, FlightPlan};
use tla_store::{CampaignRow, CampaignStatus, EventFix, StoredCorrection, StoredEvent};

/// One revision of a campaign: its validated spec and what requests need of it.
#[derive(Debug)]
pub struct LiveRevision {
    /// The revision number: 1 at creation, one more at each accepted replacement.
    pub number: u32,
    /// The validated spec of this revision.
    pub campaign: Campaign,
    /// Segment index by name.
    pub segments: HashMap<String, usize>,
    /// Attribution window, ms.
    pub attribution_window_ms: i64,
    /// The event sequence the revision took effect after (0 for revision 1): the
    /// campaign's events with a higher `seq` are learned under it.
    pub from_seq: u64,
    /// When it took effect, ms since the Unix epoch.
    pub at_ms: i64,
    /// Why, as given (revision 2 on).
    pub reason: Option<String>,
    /// How the indices of the revision before map onto this one's (`None` for
    /// revision 1): an event for a decision of an older revision is learned through it.
    pub from_previous: Option<Revision>,
}

impl LiveRevision {
    /// Revision `number` of a campaign, its spec `campaign`, in force after event
    /// `from_seq` from `at_ms`.
    pub fn new(
        number: u32,
        campaign: Campaign,
        from_seq: u64,
        at_ms: i64,
        reason: Option<String>,
        from_previous: Option<Revision>,
    ) -> Self {
        let segments = campaign
            .design()
            .segment_names
            .iter()
            .enumerate()
            .map(|(i, name)| (name.clone(), i))
            .collect();
        let attribution_window_ms = i64::from(campaign.spec().attribution_window_hours) * 3_600_000;
        Self {
            number,
            campaign,
            segments,
            attribution_window_ms,
            from_seq,
            at_ms,
            reason,
            from_previous,
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
    /// Whether decisions are paused (always, once archived).
    pub paused: AtomicBool,
    /// Whether the campaign is archived: it serves no decision again.
    pub archived: AtomicBool,
    /// Every revision, in order (`revisions[n - 1]` is revision `n`); the last is in
    /// force. Replaced only under the engine's write lock, so a reader holding the
    /// engine sees the revision the engine is at.
    revisions: RwLock<Vec<Arc<LiveRevision>>>,
    /// The engine: decisions read it, the learner writes it.
    engine: RwLock<Engine>,
    /// Events applied since the last snapshot.
    pub(crate) since_snapshot: AtomicU64,
    /// The net effect of the campaign's corrections by event sequence number
    /// ([`tla_store::effects`]): every event is applied through [`CampaignSlot::fix_of`].
    fixes: RwLock<HashMap<u64, EventFix>>,
    /// How many of the campaign's corrections `fixes` reflects: on a shared stream the
    /// learner brings in those other servers recorded
    /// ([`crate::correction::follow_stream`]).
    corrections_in_force: AtomicU64,
    /// The flight in force: the spec's `[flight]` with the budget and daily cap of the
    /// campaign's latest budget change ([`crate::budget`]); `None` without a flight.
    flight: RwLock<Option<FlightPlan>>,
    /// The pacing of a campaign with a flight ([`crate::pacing`]); `None` without one.
    pub pacing: Option<CampaignPacing>,
    /// Rollups of the events learned not yet in the store ([`crate::dashboard::rollup`]).
    rollups: Mutex<PendingRollups>,
}

impl CampaignSlot {
    /// The slot of a stored campaign, its engine at the prior; `rng` draws the first
    /// decision distributions.
    pub fn new<R: Rng + ?Sized>(row: &CampaignRow, campaign: Campaign, rng: &mut R) -> Self {
        let engine = Engine::new(&campaign, rng);
        let flight = campaign.flight().copied();
        let pacing = campaign.flight().map(|plan| {
            CampaignPacing::new(
                plan,
                campaign.design().segment_names.len(),
                campaign.holdout(),
            )
        });
        let first = LiveRevision::new(1, campaign, 0, row.created_at_ms, None, None);
        Self {
            id: row.id.clone(),
            name: row.name.clone(),
            created_at_ms: row.created_at_ms,
            paused: AtomicBool::new(row.status != CampaignStatus::Active),
            archived: AtomicBool::new(row.status == CampaignStatus::Archived),
            revisions: RwLock::new(vec![Arc::new(first)]),
            engine: RwLock::new(engine),
            since_snapshot: AtomicU64::new(0),
            fixes: RwLock::new(HashMap::new()),
            corrections_in_force: AtomicU64::new(0),
            flight: RwLock::new(flight),
            pacing,
            rollups: Mutex::new(PendingRollups::default()),
        }
    }

    /// The rollups learned and not yet stored ([`crate::dashboard::rollup`]).
    pub fn rollups(&self) -> std::sync::MutexGuard<'_, PendingRollups> {
        self.rollups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The revision in force.
    pub fn current(&self) -> Arc<LiveRevision> {
        let revisions = self
            .revisions
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        revisions.last().expect("a campaign has revision 1").clone()
    }

    /// Revision `number`, if the campaign has it.
    pub fn revision(&self, number: u32) -> Option<Arc<LiveRevision>> {
        let revisions = self
            .revisions
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let index = usize::try_from(number).ok()?.checked_sub(1)?;
        revisions.get(index).cloned()
    }

    /// Every revision, in order.
    pub fn revisions(&self) -> Vec<Arc<LiveRevision>> {
        self.revisions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Adds a revision (the next number) to the list: when opening, before any event
    /// is applied; when revising, under the engine's write lock, with the revised
    /// engine.
    pub(crate) fn push_revision(&self, revision: Arc<LiveRevision>) {
        let mut revisions = self
            .revisions
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        debug_assert_eq!(revision.number as usize, revisions.len() + 1);
        revisions.push(revision);
    }

    /// Whether the campaign is archived.
    pub fn is_archived(&self) -> bool {
        self.archived.load(Ordering::SeqCst)
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

    /// Puts the net effect of the campaign's corrections (all of them, in the order
    /// recorded) in force for the events applied from now on.
    pub(crate) fn set_fixes(&self, corrections: &[StoredCorrection]) {
        *self.fixes.write().unwrap_or_else(PoisonError::into_inner) =
            tla_store::effects(corrections);
        self.corrections_in_force
            .store(corrections.len() as u64, Ordering::Relaxed);
    }

    /// How many of the campaign's corrections are in force.
    pub(crate) fn corrections_in_force(&self) -> u64 {
        self.corrections_in_force.load(Ordering::Relaxed)
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

    /// Whether decisions are paused (archived included).
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
