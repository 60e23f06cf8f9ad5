//! The campaign report as the API and the CLI serve it: the core's report
//! ([`tla_core::report::build`]) of a clone of the campaign's engine, plus the lift
//! section computed from the decision log (every decision with its propensity) joined
//! with the event log (each decision's reward: the sum of its conversion values). It
//! needs a campaign and a store, not a running service: `tla report --data` builds it
//! over campaigns rebuilt by [`crate::replay`].
//!
//! A campaign with a `holdout` gets the holdout section ([`holdout_lift`]): each served
//! decision of the log, in log order, with its arm, its conversion values and its
//! costs (as corrected), through [`tla_core::holdout::HoldoutTracker`]. The lift
//! section then reads the policy's arm only: its rows' propensities are the policy's,
//! and its realized value is the policy's.
//!
//! The money section ([`tla_core::report::money`]) is computed with the budget in force
//! (the spec's, as the latest budget change set it), the campaign's stored spend reports
//! and the time of the report.
//!
//! Corrections count everywhere: the engine has learned the events as corrected, the
//! lift's rewards are the corrected values ([`logged_rows`]), and the report lists every
//! correction with its audit (`corrections`). They are read from the store's event log
//! ([`tla_store::Store::event_log`]), the log the server writes.
//!
//! Blocking: call it from `spawn_blocking` in async code.

use crate::campaign::CampaignSlot;
use rand::SeedableRng;
use std::collections::HashMap;
use tla_core::holdout::{HoldoutLift, HoldoutTracker};
use tla_core::ope::LoggedRow;
use tla_core::report::{
    self, MoneyInputs, Report, ReportBudgetChange, ReportCorrection, ReportSettings,
};
use tla_store::{DecisionRow, EventKind, EventLog, Store, StoreError, StoredCorrection};

/// Most decisions read from the log for the lift section; the report says when the log
/// was cut short (`lift.capped`).
pub const LOG_ROWS_CAP: usize = 2_000_000;

/// Seed of the report's Monte Carlo draws: the same state gives the same report.
pub const REPORT_SEED: u64 = 0x5EED;

/// Decisions read per page.
const PAGE: usize = 50_000;

/// The report of one campaign at time `now_ms` (ms since the Unix epoch), with the lift
/// section when `store` has its decisions and the money section over the budget in
/// force and the stored spend reports. When the lift cannot be computed, the report
/// says why (`lift_unavailable`) and the reason is logged.
pub fn campaign_report(
    slot: &CampaignSlot,
    store: &Store,
    settings: &ReportSettings,
    rows_cap: usize,
    now_ms: i64,
) -> Result<Report, StoreError> {
    // Clone under the read lock, compute outside it: decisions go on meanwhile.
    let (engine, current) = {
        let engine = slot.engine();
        (engine.clone(), slot.current())
    };
    let campaign = &current.campaign;
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(REPORT_SEED);
    let mut report = report::build(campaign, &engine, settings, &mut rng);
    report.campaign = Some(slot.id.clone());
    let corrections = store.event_log().corrections(&slot.id)?;
    report.corrections = corrections.iter().map(report_correction).collect();
    let reported = reported_by_segment(slot, store)?;
    report.money = report::money(
        campaign,
        &engine,
        &MoneyInputs {
            flight: slot.flight(),
            reported_by_segment: &reported,
            now_ms: Some(now_ms),
        },
    );
    if let Some(pacing) = &slot.pacing {
        let price = pacing.status(now_ms).price_of_money;
        report.money.price_of_money = Some(price);
        report.money.price_of_money_text = Some(tla_core::pacing::price_in_words(price));
    }
    report.money.budget_changes = store
        .budget_changes(&slot.id)?
        .into_iter()
        .map(|stored| {
            let change = stored.change;
            ReportBudgetChange {
                old_budget: change.old_budget,
                new_budget: change.new_budget,
                old_daily_cap: change.old_daily_cap,
                new_daily_cap: change.new_daily_cap,
                spent: change.spent,
                reason: change.reason,
                key_id: change.key_id,
                at: change.at_ms,
            }
        })
        .collect();
    // Decisions of older revisions, in the indices of the revision in force; the
    // policy's arm only.
    let (rows, capped) = logged_rows_in(store, &slot.id, rows_cap, &|d| {
        if d.held_out {
            return None;
        }
        crate::revise::map_decision(slot, d.revision, current.number, d.segment, d.version)
            .map(|(segment, version)| (segment as usize, version))
    })?;
    if campaign.holdout() > 0.0 {
        report.holdout = Some(holdout_lift(store, &slot.id, campaign.holdout(), rows_cap)?);
    }
    if !rows.is_empty() {
        let best = report::best_versions(&engine, &mut rng);
        let first_half_best = report::best_versions_on_first_half(campaign, &rows, &mut rng);
        match report::lift(&rows, campaign.allowed_versions(), &best, &first_half_best) {
            Ok(mut lift) => {
                lift.rows_cap = Some(rows_cap);
                lift.capped = capped;
                report.lift = Some(lift);
            }
            Err(error) => {
                tracing::warn!(campaign = %slot.id, rows = rows.len(), %error, "lift not computed");
                report.lift_unavailable = Some(format!(
                    "the lift over {} logged decisions could not be estimated: {error}",
                    rows.len()
                ));
            }
        }
    }
    Ok(report)
}

/// A correction as the report lists it.
fn report_correction(correction: &StoredCorrection) -> ReportCorrection {
    ReportCorrection {
        event_id: correction.event_id.clone(),
        event_type: correction.event_kind.as_str().to_owned(),
        action: correction.action.as_str().to_owned(),
        old_value: correction.old_value,
        new_value: correction.new_value(),
        reason: correction.reason.clone(),
        key_id: correction.key_id.clone(),
        at: correction.at_ms,
    }
}

/// Applies a campaign's corrections to the conversion values summed per decision: each
/// corrected conversion counts with its last value, a retracted one not at all.
pub fn correct_rewards(rewards: &mut HashMap<String, f64>, corrections: &[StoredCorrection]) {
    correct_sums(rewards, corrections, EventKind::Conversion);
}

/// Applies a campaign's corrections of events of `kind` to their values summed per
/// decision ([`tla_store::Store::value_by_decision`]): each corrected event counts with
/// its last value, a retracted one not at all.
pub fn correct_sums(
    sums: &mut HashMap<String, f64>,
    corrections: &[StoredCorrection],
    kind: EventKind,
) {
    // The first correction of an event holds the value it was stored with; the
    // last one its value now.
    let mut first_and_last: HashMap<u64, (&StoredCorrection, &StoredCorrection)> = HashMap::new();
    for correction in corrections.iter().filter(|c| c.event_kind == kind) {
        first_and_last
            .entry(correction.event_seq)
            .and_modify(|(_, last)| *last = correction)
            .or_insert((correction, correction));
    }
    for (first, last) in first_and_last.into_values() {
        let now = last.new_value().unwrap_or(0.0);
        if let Some(sum) = sums.get_mut(&first.decision_id) {
            // Sums are >= 0; rounding must not make one negative.
            // An unknown amount was summed as the 0 it is stored with.
            *sum = (*sum + now - first.old_value.unwrap_or(0.0)).max(0.0);
        }
    }
}

/// What a campaign has spent, as stored: its cost events (as corrected, learned or
/// not yet), its spend reports and the spend of its platform results in force.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSpend {
    /// The sum of the campaign's cost events' amounts, as corrected.
    pub cost_events: f64,
    /// The sum of its spend reports' amounts.
    pub reports: f64,
    /// The spend reports' amounts summed per segment, in the campaign's order.
    pub reports_by_segment: Vec<f64>,
    /// The sum of the spend of its platform results in force (a re-imported period
    /// once).
    pub platform_results: f64,
}

impl StoredSpend {
    /// Everything spent: cost events, spend reports and platform results.
    pub fn total(&self) -> f64 {
        self.cost_events + self.reports + self.platform_results
    }
}

/// What campaign `slot` has spent, read from `store`: the cost events through the
/// store's `(campaign, kind)` index, as corrected, the spend reports and the platform
/// results in force.
pub fn stored_spend(slot: &CampaignSlot, store: &Store) -> Result<StoredSpend, StoreError> {
    let corrections = store.event_log().corrections(&slot.id)?;
    stored_spend_through(slot, store, u64::MAX, &corrections)
}

/// [`stored_spend`] counting the cost events up to sequence `through` only, as
/// `corrections` correct them: a server of a stream checks a budget change against
/// the costs and the corrections before the change's place
/// (`JetStreamEventLog::corrections_through`; its spend reports and platform results
/// are stored in stream order by the learner that applies the change, so the store
/// holds exactly those before it).
pub fn stored_spend_through(
    slot: &CampaignSlot,
    store: &Store,
    through: u64,
    corrections: &[StoredCorrection],
) -> Result<StoredSpend, StoreError> {
    let mut costs = store.value_by_decision_through(&slot.id, EventKind::Cost, through)?;
    correct_sums(&mut costs, corrections, EventKind::Cost);
    let reports_by_segment = reported_by_segment(slot, store)?;
    Ok(StoredSpend {
        // Folds from +0: an empty `sum` of floats is -0.
        cost_events: costs.values().fold(0.0, |sum, amount| sum + amount),
        reports: reports_by_segment
            .iter()
            .fold(0.0, |sum, amount| sum + amount),
        reports_by_segment,
        platform_results: store.results_spend(&slot.id)?,
    })
}

/// The amounts of campaign `slot`'s spend reports, summed per segment in the spec's
/// order.
pub fn reported_by_segment(slot: &CampaignSlot, store: &Store) -> Result<Vec<f64>, StoreError> {
    let mut sums = vec![0.0; slot.current().campaign.design().segment_names.len()];
    for report in store.spend_reports(&slot.id)? {
        if let Some(sum) = sums.get_mut(report.segment as usize) {
            *sum += report.amount;
        }
    }
    Ok(sums)
}

/// The campaign's first `cap` logged decisions with their propensities and rewards
/// (sum of conversion values, as corrected: [`correct_rewards`]), and whether the cap
/// cut the log short. Reads the campaign's decisions and its conversions only
/// ([`tla_store::Store::value_by_decision`]), not the other campaigns' events.
///
/// A campaign with a holdout logs both arms; each row's propensity is that of the arm
/// that decided it (the policy's, or the even split's for a decision held out), which
/// is the probability of its logging policy, as importance weighting needs.
pub fn logged_rows(
    store: &Store,
    id: &str,
    cap: usize,
) -> Result<(Vec<LoggedRow>, bool), StoreError> {
    logged_rows_in(store, id, cap, &|d| Some((d.segment as usize, d.version)))
}

/// [`logged_rows`] with each decision's segment and version given by `in_force`
/// (from the stored decision: its revision, segment, version and arm), which maps a
/// decision of an older revision to the revision in force; a decision it maps to
/// `None` (an option since removed, an arm left out) is left out.
pub fn logged_rows_in(
    store: &Store,
    id: &str,
    cap: usize,
    in_force: &dyn Fn(&DecisionRow) -> Option<(usize, u64)>,
) -> Result<(Vec<LoggedRow>, bool), StoreError> {
    // Only this campaign's conversions, through the store's (campaign, kind) index.
    let mut rewards = store.value_by_decision(id, EventKind::Conversion)?;
    correct_rewards(&mut rewards, &store.event_log().corrections(id)?);
    let mut rows = Vec::new();
    let mut after_rowid = 0;
    let mut capped = false;
    loop {
        let limit = PAGE.min(cap - rows.len());
        if limit == 0 {
            capped = !store.decisions(id, after_rowid, 1)?.is_empty();
            break;
        }
        let page = store.decisions(id, after_rowid, limit)?;
        let Some(&(last, _)) = page.last() else {
            break;
        };
        rows.extend(page.iter().filter_map(|(_, d)| {
            let (segment, action) = in_force(d)?;
            Some(LoggedRow {
                segment,
                action,
                propensity: d.propensity,
                reward: rewards.get(&d.decision_id).copied().unwrap_or(0.0),
            })
        }));
        after_rowid = last;
    }
    Ok((rows, capped))
}

/// The holdout section of campaign `id` with a holdout of `share`: its first `cap`
/// served decisions in log order, each with its arm, its conversion values and its
/// costs (cost events), as corrected, through
/// [`tla_core::holdout::HoldoutTracker`] at its defaults. Spend reports name no
/// decision, so the lift per dollar counts cost events only.
pub fn holdout_lift(
    store: &Store,
    id: &str,
    share: f64,
    cap: usize,
) -> Result<HoldoutLift, StoreError> {
    let corrections = store.event_log().corrections(id)?;
    let mut rewards = store.value_by_decision(id, EventKind::Conversion)?;
    correct_rewards(&mut rewards, &corrections);
    let mut costs = store.value_by_decision(id, EventKind::Cost)?;
    correct_sums(&mut costs, &corrections, EventKind::Cost);
    let mut tracker = HoldoutTracker::with_defaults(share);
    let mut after_rowid = 0;
    let mut read = 0;
    loop {
        let limit = PAGE.min(cap - read);
        if limit == 0 {
            break;
        }
        let page = store.decisions(id, after_rowid, limit)?;
        let Some(&(last, _)) = page.last() else {
            break;
        };
        for (_, d) in &page {
            let value = rewards.get(&d.decision_id).copied().unwrap_or(0.0);
            let spend = costs.get(&d.decision_id).copied().unwrap_or(0.0);
            tracker.push(d.held_out, value, spend);
        }
        read += page.len();
        after_rowid = last;
    }
    Ok(tracker.lift())
}
