//! The campaign page's report, computed off the request path.
//!
//! A campaign's report ([`crate::report::campaign_report`]: posterior draws for the
//! leaderboards and segment leaders, the lift over up to [`crate::report::LOG_ROWS_CAP`]
//! logged decisions with a model fit on their first half) takes a second or more on a
//! campaign with millions of versions and decisions. The page takes it from this cache:
//! computed by a thread of its own when missing or older than [`REPORT_MAX_AGE_MS`],
//! waited for at most [`REPORT_WAIT`], else shown as of its last computation (the live
//! figures come by server-sent events meanwhile).

use crate::campaign::CampaignSlot;
use crate::state::AppState;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tla_core::report::Report;

/// How long a computed report is shown before it is computed again, ms.
pub const REPORT_MAX_AGE_MS: i64 = 60_000;

/// How long a page waits for a report being computed before it renders without it.
pub const REPORT_WAIT: Duration = Duration::from_millis(200);

/// One campaign's cached report.
#[derive(Debug, Clone, Default)]
pub struct CachedReport {
    /// When it was computed, ms on the state's clock (`None`: never yet).
    pub at_ms: Option<i64>,
    /// The report.
    pub report: Option<Arc<Report>>,
    /// Why the last computation failed.
    pub error: Option<String>,
    /// Whether a computation is running.
    pub computing: bool,
}

/// The cached reports of every campaign.
#[derive(Debug, Default)]
pub struct ReportCache {
    by_campaign: Mutex<HashMap<String, CachedReport>>,
}

impl ReportCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedReport>> {
        self.by_campaign
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets a campaign's report (after a control changed it), so the next page
    /// computes it again.
    pub fn forget(&self, id: &str) {
        let mut cache = self.lock();
        if let Some(entry) = cache.get_mut(id) {
            entry.at_ms = None;
        }
    }

    /// The report of `slot` now: starts a computation when it is missing or stale (and
    /// none runs), waits for it at most [`REPORT_WAIT`]. Blocking.
    pub fn get(&self, state: &AppState, slot: &Arc<CampaignSlot>, now_ms: i64) -> CachedReport {
        let started = {
            let mut cache = self.lock();
            let entry = cache.entry(slot.id.clone()).or_default();
            let stale = entry
                .at_ms
                .is_none_or(|at| now_ms.saturating_sub(at) >= REPORT_MAX_AGE_MS);
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
                let mut cache = state.dashboard().reports.lock();
                let entry = cache.entry(slot.id.clone()).or_default();
                entry.computing = false;
                entry.at_ms = Some(now_ms);
                match report {
                    Ok(report) => {
                        entry.report = Some(Arc::new(report));
                        entry.error = None;
                    }
                    Err(error) => entry.error = Some(error.to_string()),
                }
                let _ = done.send(());
            });
            let _ = finished.recv_timeout(REPORT_WAIT);
        }
        self.lock().get(&slot.id).cloned().unwrap_or_default()
    }
}
