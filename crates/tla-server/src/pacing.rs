//! Pacing in the service: a campaign with a `[flight]` keeps a [`Pacer`]
//! (`tla_core::pacing`, `docs/pacing.md`) that prices each decision request as an
//! opportunity. A decision is then a version or a *skip* (the ad server does not bid),
//! each with its exact propensity, and both are logged.
//!
//! - The price of money is solved again in the learner step when it is due
//!   ([`CampaignPacing::replan_if_due`]), off the decision path.
//! - Deciding ([`CampaignPacing::decide`]) bids, decides under the gate and, for a
//!   version served, reserves a high quantile of its expected cost under its decision
//!   id; the flight budget and the day's cap count the reservations, so neither is
//!   passed while costs are on their way.
//! - A cost event settles its decision's reservation and is spent and learned by the
//!   cost model at the hour of its decision ([`CampaignPacing::cost`]); a reservation
//!   whose cost has not come within [`RESERVATION_TTL_MS`] is given back.
//! - A spend report is spent and learned as a total ([`CampaignPacing::spend_report`]).
//! - The budget and daily cap in force are read from the campaign slot at each bid, so
//!   a budget change takes effect at the next decision; the plan restarts from what was
//!   spent then.
//! - After a restart or a correction, the flight's spend and the day's are set from the
//!   store ([`CampaignPacing::restore_spent`]); the cost model relearns from the events
//!   replayed after the latest snapshot and the traffic forecast from the traffic that
//!   follows.

use rand::Rng;
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use tla_core::engine::Engine;
use tla_core::pacing::{
    HOUR_MS, Pacer, PacingConfig, PacingMode, PacingStatus, SkipReason, hour_of,
};
use tla_core::policy::Choice;
use tla_core::spec::FlightPlan;

/// A reservation whose cost has not arrived within this many milliseconds is given
/// back (its cost, when it comes, is still spent).
pub const RESERVATION_TTL_MS: i64 = 15 * 60_000;

/// One campaign's pacing state.
#[derive(Debug)]
pub struct CampaignPacing {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    pacer: Pacer,
    /// Open reservations by decision id: (amount, time).
    reservations: HashMap<String, (f64, i64)>,
    /// Decision ids in the order reserved, for expiry.
    order: VecDeque<(i64, String)>,
}

/// The outcome of one priced decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Paced {
    /// The version or the skip, with its exact propensity.
    pub choice: Choice,
    /// Why it was skipped, for a skip.
    pub skip: Option<SkipReason>,
    /// What to reserve for a version served ([`CampaignPacing::reserve`]).
    pub reserve: f64,
}

impl CampaignPacing {
    /// The pacing of a flight of `segments` segments that has spent nothing.
    pub fn new(plan: &FlightPlan, segments: usize) -> Self {
        let config = PacingConfig {
            mode: PacingMode::Value,
            budget: plan.budget,
            daily_cap: plan.daily_cap,
            start_ms: plan.start_ms,
            end_ms: plan.end_ms,
            min_roas: plan.min_roas,
            hourly_traffic: plan.hourly_traffic,
        };
        Self {
            inner: Mutex::new(Inner {
                pacer: Pacer::new(config, segments),
                reservations: HashMap::new(),
                order: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Prices an opportunity of `segment` at `now_ms` under the flight in force
    /// (`plan`) and decides under the gate with `engine`.
    pub fn decide<R: Rng + ?Sized>(
        &self,
        plan: &FlightPlan,
        engine: &Engine,
        segment: usize,
        now_ms: i64,
        rng: &mut R,
    ) -> Paced {
        let mut inner = self.lock();
        inner.expire(now_ms);
        let config = *inner.pacer.config();
        if config.budget != plan.budget || config.daily_cap != plan.daily_cap {
            inner.pacer.set_budget(plan.budget, plan.daily_cap, now_ms);
        }
        if inner.pacer.planned_never() {
            // The first plan (a new campaign, or the first request after a start).
            inner
                .pacer
                .replan(now_ms, &|s, price| engine.buy_probability(s, price));
        }
        let bid = inner.pacer.bid(segment, now_ms);
        let choice = engine.decide_gated(segment, bid.gate, rng);
        Paced {
            choice,
            skip: choice.version.is_none().then_some(bid.skip_reason),
            reserve: bid.reserve,
        }
    }

    /// Solves for the price of money again if it is due at `now_ms` (the learner step
    /// calls it, off the decision path); whether it did.
    pub fn replan_if_due(&self, engine: &Engine, now_ms: i64) -> bool {
        let mut inner = self.lock();
        if !inner.pacer.replan_due(now_ms) {
            return false;
        }
        inner
            .pacer
            .replan(now_ms, &|s, price| engine.buy_probability(s, price));
        true
    }

    /// Reserves `amount` for the version served under `decision_id` at `now_ms`.
    pub fn reserve(&self, decision_id: &str, amount: f64, now_ms: i64) {
        let mut inner = self.lock();
        inner.pacer.reserve(amount, now_ms);
        inner
            .reservations
            .insert(decision_id.to_string(), (amount, now_ms));
        inner.order.push_back((now_ms, decision_id.to_string()));
    }

    /// Gives back the reservation of a decision that was not served after all (its
    /// decision could not be logged).
    pub fn release(&self, decision_id: &str, now_ms: i64) {
        let mut inner = self.lock();
        if let Some((amount, _)) = inner.reservations.remove(decision_id) {
            inner.pacer.release(amount, now_ms);
        }
    }

    /// A cost event of `amount` for `decision_id` (decided at `decided_at_ms` for
    /// `segment`) arrived at `at_ms`: its reservation is settled, the amount spent and
    /// learned at the hour of the decision.
    pub fn cost(
        &self,
        decision_id: &str,
        segment: usize,
        decided_at_ms: i64,
        amount: f64,
        at_ms: i64,
    ) {
        let mut inner = self.lock();
        let reserved = inner
            .reservations
            .remove(decision_id)
            .map_or(0.0, |(amount, _)| amount);
        inner
            .pacer
            .settle(reserved, segment, hour_of(decided_at_ms), amount, at_ms);
    }

    /// A spend report of `amount` over `impressions` (if the channel said) for
    /// `segment`, for the period `[start_ms, end_ms)`, arrived at `at_ms`: spent, and
    /// learned as a total at the hour of the period's middle.
    pub fn spend_report(
        &self,
        segment: usize,
        start_ms: i64,
        end_ms: i64,
        amount: f64,
        impressions: Option<u64>,
        at_ms: i64,
    ) {
        let middle = start_ms + (end_ms - start_ms) / 2;
        let hour = hour_of(middle);
        // A report over more than an hour teaches no hour of the day.
        let impressions = impressions
            .filter(|_| end_ms - start_ms <= HOUR_MS)
            .unwrap_or(0);
        self.lock()
            .pacer
            .report_spend(segment, hour, impressions, amount, at_ms);
    }

    /// Sets the spend so far and today's from the store (after a restart or a
    /// correction), at `now_ms`.
    pub fn set_spent(&self, spent: f64, spent_today: f64, now_ms: i64) {
        self.lock().pacer.set_spent(spent, spent_today, now_ms);
    }

    /// Sets the spend of campaign `slot` from `store` at `now_ms`: everything spent
    /// (cost events as corrected, and spend reports), and today's (the UTC day's cost
    /// events as stored, and the spend reports that arrived today).
    pub fn restore_spent(
        &self,
        slot: &crate::campaign::CampaignSlot,
        store: &tla_store::Store,
        now_ms: i64,
    ) -> Result<(), tla_store::StoreError> {
        let total = crate::report::stored_spend(slot, store)?.total();
        let midnight = now_ms.div_euclid(tla_core::pacing::DAY_MS) * tla_core::pacing::DAY_MS;
        let today_costs = store.value_since(&slot.id, tla_store::EventKind::Cost, midnight)?;
        let today_reports: f64 = store
            .spend_reports(&slot.id)?
            .iter()
            .filter(|r| r.at_ms >= midnight)
            .map(|r| r.amount)
            .sum();
        self.set_spent(total, today_costs + today_reports, now_ms);
        Ok(())
    }

    /// Where the flight's spend stands at `now_ms`.
    pub fn status(&self, now_ms: i64) -> PacingStatus {
        self.lock().pacer.status(now_ms)
    }
}

impl Inner {
    /// Gives back the reservations older than [`RESERVATION_TTL_MS`].
    fn expire(&mut self, now_ms: i64) {
        while let Some(at) = self.order.front().map(|(at, _)| *at) {
            if now_ms - at < RESERVATION_TTL_MS {
                break;
            }
            let (_, id) = self.order.pop_front().expect("a front entry");
            if let Some((amount, reserved_at)) = self.reservations.get(&id).copied() {
                if reserved_at == at {
                    self.reservations.remove(&id);
                    self.pacer.release(amount, now_ms);
                }
            }
        }
    }
}
