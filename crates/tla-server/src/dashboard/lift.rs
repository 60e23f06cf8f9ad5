//! The campaign page's lift and holdout sections, computed off the request path.
//!
//! The lift reads the decision log (up to [`crate::report::LOG_ROWS_CAP`] rows) and fits
//! a model on its first half: seconds on a campaign with millions of decisions. The page
//! renders the rest of the report from the engine ([`crate::report::campaign_report`]
//! with no log rows) and takes these two sections from this cache: computed by a thread
//! of its own when missing or older than [`LIFT_MAX_AGE_MS`], waited for at most
//! [`LIFT_WAIT`], else shown as of their last computation.

use crate::campaign::CampaignSlot;
use crate::state::AppState;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tla_core::holdout::HoldoutLift;
use tla_core::report::Lift;

/// How long a computed lift is shown before it is computed again, ms.
pub const LIFT_MAX_AGE_MS: i64 = 60_000;

/// How long a page waits for a lift being computed before it renders without it.
pub const LIFT_WAIT: Duration = Duration::from_millis(200);

/// The lift and holdout sections of one campaign's report.
#[derive(Debug, Clone, Default)]
pub struct CachedLift {
    /// When they were computed, ms on the state's clock (`None`: never yet).
    pub at_ms: Option<i64>,
    /// The report's `lift`.
    pub lift: Option<Lift>,
    /// The report's `lift_unavailable`.
    pub lift_unavailable: Option<String>,
    /// The report's `holdout`.
    pub holdout: Option<HoldoutLift>,
    /// Why the last computation failed.
    pub error: Option<String>,
    /// Whether a computation is running.
    pub computing: bool,
}

/// The cached sections of every campaign.
#[derive(Debug, Default)]
pub struct LiftCache {
    by_campaign: Mutex<HashMap<String, CachedLift>>,
}

impl LiftCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedLift>> {
        self.by_campaign
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The sections of `slot` now: starts a computation when they are missing or stale
    /// (and none runs), waits for it at most [`LIFT_WAIT`]. Blocking.
    pub fn get(&self, state: &AppState, slot: &Arc<CampaignSlot>, now_ms: i64) -> CachedLift {
        let started = {
            let mut cache = self.lock();
            let entry = cache.entry(slot.id.clone()).or_default();
            let stale = entry
                .at_ms
                .is_none_or(|at| now_ms.saturating_sub(at) >= LIFT_MAX_AGE_MS);
            if stale && !entry.computing {
                entry.computing = true;
                true
            } else {
                false
            }
        };
        if started {
            let (done, finished) = std::sync::mpsc::channel();
            let state = state.clone();
            let slot = slot.clone();
            std::thread::spawn(move || {
                let report = crate::report::campaign_report(
                    &slot,
                    state.store(),
                    &super::page::report_settings(),
                    crate::report::LOG_ROWS_CAP,
                    now_ms,
                );
                let mut cache = state.dashboard().lifts.lock();
                let entry = cache.entry(slot.id.clone()).or_default();
                entry.computing = false;
                entry.at_ms = Some(now_ms);
                match report {
                    Ok(report) => {
                        entry.lift = report.lift;
                        entry.lift_unavailable = report.lift_unavailable;
                        entry.holdout = report.holdout;
                        entry.error = None;
                    }
                    Err(error) => entry.error = Some(error.to_string()),
                }
                let _ = done.send(());
            });
            let _ = finished.recv_timeout(LIFT_WAIT);
        }
        self.lock().get(&slot.id).cloned().unwrap_or_default()
    }
}
