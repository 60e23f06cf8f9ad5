//! Rebuilds the campaigns of a data directory: each stored campaign's engine from its
//! latest snapshot plus the events after it, in log order, each event as its
//! corrections say (a retracted one skipped, a corrected one with its new value), each
//! import of platform results right after the event it was taken after; then
//! each campaign's spend reports ([`learner::learn_spend_report`]).
//!
//! [`replay`] only reads: it needs no server secret, builds no [`crate::AppState`] and
//! writes nothing (see [`tla_store::Store::open_read_only`] for SQLite's shared-memory
//! index), so `tla report --data` and `tla export` run it over a store opened
//! read-only ([`tla_store::Store::open_read_only`]). The server opens its state with
//! the same function, so a restart and a report see the same models.

use crate::campaign::{CampaignSlot, Campaigns, LiveRevision};
use crate::{learner, revise};
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;
use std::collections::HashMap;
use std::sync::Arc;
use tla_core::revision::Revision;
use tla_core::spec::CampaignSpec;
use tla_store::{EventLog, Store, StoreError};

/// How to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayOptions {
    /// Seed of the engines' random stream (their decision distributions).
    pub seed: u64,
    /// Ignore snapshots and rebuild every model from the whole event log.
    pub from_start: bool,
    /// The time the decision distributions are built at, ms since the Unix epoch.
    pub now_ms: i64,
}

/// The campaigns of a data directory, rebuilt.
#[derive(Debug)]
pub struct Replayed {
    /// The campaigns, with their engines.
    pub campaigns: Campaigns,
    /// The highest event sequence applied to every engine.
    pub applied_seq: u64,
    /// The engines' random stream after the replay (the learner goes on with it).
    pub rng: Pcg64Mcg,
}

/// Why the campaigns could not be rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored campaign no longer validates.
    #[error("stored campaign {id} does not validate: {message}")]
    Campaign {
        /// Campaign id.
        id: String,
        /// Why.
        message: String,
    },
}

/// Rebuilds every campaign of `store` from its latest snapshot (unless
/// `options.from_start`) and the events of `log` after it. Reads only.
pub fn replay(
    store: &Store,
    log: &dyn EventLog,
    options: ReplayOptions,
) -> Result<Replayed, OpenError> {
    let mut rng = Pcg64Mcg::seed_from_u64(options.seed);
    let campaigns = Campaigns::default();
    let mut covered = HashMap::new();
    let mut results = crate::platform::PendingResults::default();
    for row in store.campaigns()? {
        let campaign = CampaignSpec::from_json_str(&row.spec_json)
            .and_then(|spec| spec.validate())
            .map_err(|e| OpenError::Campaign {
                id: row.id.clone(),
                message: e.to_string(),
            })?;
        let slot = CampaignSlot::new(&row, campaign, &mut rng);
        // Every revision, so decisions of each are understood; the engine takes each
        // at its point of the log (`revise::catch_up`).
        for stored in store.revisions(&row.id)? {
            let refused = |message: String| OpenError::Campaign {
                id: row.id.clone(),
                message: format!("revision {}: {message}", stored.revision),
            };
            let next = CampaignSpec::from_json_str(&stored.spec_json)
                .and_then(|spec| spec.validate())
                .map_err(|e| refused(e.to_string()))?;
            let map = Revision::between(&slot.current().campaign, &next)
                .map_err(|e| refused(e.to_string()))?;
            slot.push_revision(Arc::new(LiveRevision::new(
                stored.revision,
                next,
                stored.from_seq,
                stored.at_ms,
                stored.reason,
                Some(map),
            )));
        }
        // The budget in force: the spec's, as the latest budget change set it.
        let flight =
            crate::budget::in_force(store, &row.id, slot.current().campaign.flight().copied())?;
        *slot
            .flight_lock()
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = flight;
        // Corrections first: every event is applied as corrected, and a snapshot
        // that covered a corrected event was deleted when the correction was made.
        slot.set_fixes(&log.corrections(&row.id)?);
        let mut seq = 0;
        let mut restored = false;
        let snapshot = if options.from_start {
            None
        } else {
            store.latest_snapshot(&row.id)?
        };
        if let Some((covers, bytes)) = snapshot {
            if let Some(engine) = revise::engine_from_snapshot(&slot, covers, &bytes, &mut rng) {
                slot.replace_engine(engine);
                seq = covers;
                restored = true;
            }
        }
        results.load(store, &row.id, restored.then_some(seq))?;
        covered.insert(row.id.clone(), seq);
        slot.rollups().set_through(store.rollup_through(&row.id)?);
        campaigns.insert(Arc::new(slot));
    }
    let start = covered.values().copied().min().unwrap_or(0);
    let mut caught_up = learner::CaughtUp::after(start);
    learner::apply_log_observed(
        &campaigns,
        log,
        &covered,
        &mut caught_up,
        &mut results,
        &mut |_| {},
        // The server's start stored the shared campaigns before this replay.
        &mut |_| None,
    )?;
    // The results imported after the campaign's last event, and the revisions made
    // after it.
    for slot in campaigns.all() {
        results.rest(&slot, &mut slot.engine_mut());
        revise::catch_up(&slot, &mut slot.engine_mut(), u64::MAX);
    }
    // Spend reports are not in the log's sequence: each campaign's, after its events.
    for slot in campaigns.all() {
        for report in store.spend_reports(&slot.id)? {
            learner::learn_spend_report(&slot, &report);
        }
        // The spend before the snapshot was not replayed: the store has all of it.
        if let Some(pacing) = &slot.pacing {
            crate::platform::learn_costs(&slot, pacing, &store.results(&slot.id, None)?);
            pacing.restore_spent(&slot, store, options.now_ms)?;
        }
    }
    let now = options.now_ms.max(0) as u64;
    for slot in campaigns.all() {
        slot.engine_mut().refresh_all(&mut rng, now);
    }
    Ok(Replayed {
        campaigns,
        applied_seq: caught_up.last_seq,
        rng,
    })
}
