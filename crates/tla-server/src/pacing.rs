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
//! - A campaign with a `holdout` paces each arm on its own
//!   ([`tla_core::pacing::PacingConfig::split_holdout`]): the policy's arm spends
//!   `1 - share` of the budget and cap under the price of money, the holdout's arm
//!   spends `share` of them evenly over its own traffic (buying at random, no price of
//!   money, no minimum return). Each arm sees only its own opportunities; a cost event
//!   is spent in its decision's arm (the arm its reservation, or else its signed id,
//!   names). Spend reports and the spend restored from the store name no arm: they are
//!   split between the arms by the share.
//! - With a stream, a version is served only within the spend lease this server holds
//!   ([`LeaseHold`], [`crate::lease`]; docs/scale-out.md, *Budgets across servers*):
//!   its reservation must fit in what is left of the lease, which it uses at once.

use crate::lease::{Grant, LEASE_RENEW_AT, LEASE_TTL_MS, RETRY_REFUSED_MS};
use rand::Rng;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use tla_core::engine::Engine;
use tla_core::pacing::{
    CostModel, HOUR_MS, Pacer, PacingConfig, PacingMode, PacingStatus, SkipReason, Traffic, hour_of,
};
use tla_core::policy::{Choice, Gate};
use tla_core::spec::FlightPlan;

/// Consecutive refused lease asks double the wait before the next at most this many
/// times (250 ms to 8 s).
pub const MAX_REFUSED_BACKOFF: u32 = 5;

/// A reservation whose cost has not arrived within this many milliseconds is given
/// back (its cost, when it comes, is still spent).
pub const RESERVATION_TTL_MS: i64 = 15 * 60_000;

/// One campaign's pacing state.
#[derive(Debug)]
pub struct CampaignPacing {
    inner: Mutex<Inner>,
    /// The campaign's holdout share (0: none).
    holdout_share: f64,
}

#[derive(Debug)]
struct Inner {
    /// The pacer of the policy's arm (of every opportunity without a holdout).
    pacer: Pacer,
    /// The pacer of the holdout's arm, with a holdout: even pacing on its share.
    holdout: Option<Pacer>,
    /// The flight's budget and daily cap the arms were last set from.
    budget: (f64, Option<f64>),
    /// Open reservations by decision id: (amount, time, held out).
    reservations: HashMap<String, (f64, i64, bool)>,
    /// Decision ids in the order reserved, for expiry.
    order: VecDeque<(i64, String)>,
    /// This server's spend lease, with a stream.
    lease: LeaseHold,
}

/// This server's spend lease of the campaign's budget (with a stream: docs/scale-out.md,
/// *Budgets across servers*). Purchases commit their reservation to the lease when
/// decided, so a request for several decisions, or requests at once, never pass it.
#[derive(Debug, Default)]
struct LeaseHold {
    /// Whether purchases need a lease (the server's log is a stream).
    on: bool,
    /// The lease held, if any.
    current: Option<Grant>,
    /// Committed under the current lease: reservations of its purchases, plus their
    /// costs above their reservations once known.
    used: f64,
    /// The stream sequence of the latest lease granted (held or not).
    latest: u64,
    /// Purchases not settled yet, by the lease they were made under.
    open: BTreeMap<u64, u64>,
    /// The lease of each purchase not settled yet, by decision id.
    of: HashMap<String, u64>,
    /// When an ask was last refused or granted less than asked, for the retry.
    refused_at_ms: Option<i64>,
    /// Asks refused in a row: the wait before the next doubles with each (at most
    /// [`MAX_REFUSED_BACKOFF`] doublings).
    refusals: u32,
    /// A purchase did not fit in what is left of the lease held.
    short: bool,
    /// Purchases skipped for want of lease.
    skips: u64,
}

/// What `/healthz` shows of this server's lease of one campaign.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct LeaseStatus {
    /// The lease held (0: none).
    pub held: f64,
    /// Committed under it.
    pub used: f64,
    /// Milliseconds until it expires on this server's clock (0: none or expired).
    pub expires_in_ms: i64,
    /// Purchases not settled yet (under any lease).
    pub open_purchases: u64,
    /// Purchases skipped for want of lease.
    pub skips: u64,
}

impl LeaseHold {
    /// Whether a purchase reserving `reserve` fits in the lease at `now_ms`. While no
    /// cost is known (`reserve` 0) at most one purchase is open: a probe.
    fn fits(&self, reserve: f64, now_ms: i64) -> bool {
        let Some(lease) = self.current else {
            return false;
        };
        if now_ms >= lease.expires_at_ms {
            return false;
        }
        if reserve > 0.0 {
            self.used + reserve <= lease.amount
        } else {
            self.of.is_empty()
        }
    }

    /// A purchase under `lease` was settled (its cost arrived, or it was not served,
    /// or its reservation expired).
    fn settle(&mut self, decision_id: &str) -> Option<u64> {
        let lease = self.of.remove(decision_id)?;
        if let Some(open) = self.open.get_mut(&lease) {
            *open -= 1;
            if *open == 0 {
                self.open.remove(&lease);
            }
        }
        Some(lease)
    }

    fn is_current(&self, lease: u64) -> bool {
        self.current.is_some_and(|c| c.seq == lease)
    }
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
    /// The spend lease a version served commits to (with a stream).
    pub lease: Option<u64>,
    /// Whether it was skipped for want of lease.
    pub lease_skip: bool,
}

impl CampaignPacing {
    /// The pacing of a flight of `segments` segments that has spent nothing, with a
    /// holdout of `holdout_share` (0: none).
    pub fn new(plan: &FlightPlan, segments: usize, holdout_share: f64) -> Self {
        let config = PacingConfig {
            mode: PacingMode::Value,
            budget: plan.budget,
            daily_cap: plan.daily_cap,
            start_ms: plan.start_ms,
            end_ms: plan.end_ms,
            min_roas: plan.min_roas,
            hourly_traffic: plan.hourly_traffic,
        };
        let (policy, holdout) = if holdout_share > 0.0 {
            let (policy, holdout) = config.split_holdout(holdout_share);
            (policy, Some(Pacer::new(holdout, segments)))
        } else {
            (config, None)
        };
        Self {
            inner: Mutex::new(Inner {
                pacer: Pacer::new(policy, segments),
                holdout,
                budget: (plan.budget, plan.daily_cap),
                reservations: HashMap::new(),
                order: VecDeque::new(),
                lease: LeaseHold::default(),
            }),
            holdout_share,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Prices an opportunity of `segment` at `now_ms` under the flight in force
    /// (`plan`) in the arm of its unit (`held_out`), and decides under the gate with
    /// `engine`: the policy, or for the holdout the even split.
    pub fn decide<R: Rng + ?Sized>(
        &self,
        plan: &FlightPlan,
        engine: &Engine,
        segment: usize,
        now_ms: i64,
        held_out: bool,
        rng: &mut R,
    ) -> Paced {
        let mut inner = self.lock();
        inner.expire(now_ms);
        if inner.budget != (plan.budget, plan.daily_cap) {
            inner.budget = (plan.budget, plan.daily_cap);
            let share = self.holdout_share;
            inner.each_arm(share, |pacer, k| {
                pacer.set_budget(plan.budget * k, plan.daily_cap.map(|c| c * k), now_ms);
            });
        }
        let pacer = inner.arm(held_out);
        if pacer.planned_never() {
            // The first plan (a new campaign, or the first request after a start).
            pacer.replan(now_ms, &|s, price| engine.buy_probability(s, price));
        }
        let mut bid = pacer.bid(segment, now_ms);
        let mut lease_skip = false;
        if inner.lease.on && bid.gate != Gate::Closed && !inner.lease.fits(bid.reserve, now_ms) {
            // A hard limit, as the budget: skipped with propensity 1.
            inner.lease.short |= inner.lease.current.is_some() && bid.reserve > 0.0;
            bid.gate = Gate::Closed;
            bid.skip_reason = SkipReason::Budget;
            inner.lease.skips += 1;
            lease_skip = true;
        }
        let choice = if held_out && self.holdout_share > 0.0 {
            engine.decide_held_out(segment, bid.gate, rng)
        } else {
            engine.decide_gated(segment, bid.gate, rng)
        };
        let mut lease = None;
        if inner.lease.on && choice.version.is_some() {
            // Committed now, under the lock: the next decision sees it.
            inner.lease.used += bid.reserve;
            lease = inner.lease.current.map(|c| c.seq);
        }
        Paced {
            choice,
            skip: choice.version.is_none().then_some(bid.skip_reason),
            reserve: bid.reserve,
            lease,
            lease_skip,
        }
    }

    /// Purchases need a spend lease from now on (the server's log is a stream).
    pub fn use_leases(&self) {
        self.lock().lease.on = true;
    }

    /// Whether this server should ask for its next lease at `now_ms`: it holds none, or
    /// has committed [`LEASE_RENEW_AT`] of it, or a purchase did not fit in what is left
    /// of it, or it expires within a quarter of its life; and every purchase under its leases before its latest is settled (rule R2),
    /// and no ask was granted less than asked in the last [`RETRY_REFUSED_MS`], nor
    /// refused in the last `RETRY_REFUSED_MS` doubled for each refusal in a row before
    /// it (at most [`MAX_REFUSED_BACKOFF`] times).
    pub fn lease_due(&self, now_ms: i64) -> bool {
        let inner = self.lock();
        let hold = &inner.lease;
        if !hold.on {
            return false;
        }
        let wanted = match hold.current {
            None => true,
            Some(lease) => {
                hold.short
                    || hold.used >= LEASE_RENEW_AT * lease.amount
                    || now_ms >= lease.expires_at_ms - LEASE_TTL_MS / 4
            }
        };
        let settled = hold.open.keys().all(|&lease| lease == hold.latest);
        let wait = RETRY_REFUSED_MS << hold.refusals.min(MAX_REFUSED_BACKOFF);
        let waited = hold.refused_at_ms.is_none_or(|at| now_ms - at >= wait);
        wanted && settled && waited
    }

    /// What the stream's rule gave this server's ask of `asked` at `now_ms`: a new
    /// lease (which supersedes the one held), or a refusal (which drops it too). After a
    /// refusal or a grant below `asked`, the next ask waits [`RETRY_REFUSED_MS`].
    pub fn take_lease(&self, grant: Grant, asked: f64, now_ms: i64) {
        let mut inner = self.lock();
        let hold = &mut inner.lease;
        hold.used = 0.0;
        hold.short = false;
        if grant.amount > 0.0 {
            hold.current = Some(grant);
            hold.latest = grant.seq;
            hold.refused_at_ms = (grant.amount < asked).then_some(now_ms);
            hold.refusals = 0;
        } else {
            hold.refusals += 1;
            hold.current = None;
            hold.refused_at_ms = Some(now_ms);
        }
    }

    /// A purchase of `decision_id` committed to `lease` ([`Paced::lease`]) was served.
    pub fn commit_to_lease(&self, decision_id: &str, lease: u64) {
        let mut inner = self.lock();
        let hold = &mut inner.lease;
        hold.of.insert(decision_id.to_string(), lease);
        *hold.open.entry(lease).or_default() += 1;
    }

    /// This server's lease of the campaign at `now_ms`, if purchases need one.
    pub fn lease_status(&self, now_ms: i64) -> Option<LeaseStatus> {
        let inner = self.lock();
        let hold = &inner.lease;
        hold.on.then(|| LeaseStatus {
            held: hold.current.map_or(0.0, |c| c.amount),
            used: hold.used,
            expires_in_ms: hold
                .current
                .map_or(0, |c| (c.expires_at_ms - now_ms).max(0)),
            open_purchases: hold.of.len() as u64,
            skips: hold.skips,
        })
    }

    /// Solves for the price of money again if it is due at `now_ms` (the learner step
    /// calls it, off the decision path); whether it did.
    pub fn replan_if_due(&self, engine: &Engine, now_ms: i64) -> bool {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let mut replanned = false;
        for pacer in std::iter::once(&mut inner.pacer).chain(inner.holdout.as_mut()) {
            if pacer.replan_due(now_ms) {
                pacer.replan(now_ms, &|s, price| engine.buy_probability(s, price));
                replanned = true;
            }
        }
        replanned
    }

    /// Reserves `amount` for the version served under `decision_id` at `now_ms`, in
    /// the arm of its unit (`held_out`).
    pub fn reserve(&self, decision_id: &str, amount: f64, now_ms: i64, held_out: bool) {
        let mut inner = self.lock();
        inner.arm(held_out).reserve(amount, now_ms);
        inner
            .reservations
            .insert(decision_id.to_string(), (amount, now_ms, held_out));
        inner.order.push_back((now_ms, decision_id.to_string()));
    }

    /// Gives back the reservation of a decision that was not served after all (its
    /// decision could not be logged).
    pub fn release(&self, decision_id: &str, now_ms: i64) {
        let mut inner = self.lock();
        if let Some((amount, _, held_out)) = inner.reservations.remove(decision_id) {
            inner.arm(held_out).release(amount, now_ms);
            if let Some(lease) = inner.lease.settle(decision_id) {
                if inner.lease.is_current(lease) {
                    inner.lease.used = (inner.lease.used - amount).max(0.0);
                }
            }
        }
    }

    /// A cost event of `amount` for `decision_id` (decided at `decided_at_ms` for
    /// `segment`, in the holdout if `held_out`) arrived at `at_ms`: its reservation is
    /// settled, the amount spent in its arm and learned at the hour of the decision.
    pub fn cost(
        &self,
        decision_id: &str,
        held_out: bool,
        segment: usize,
        decided_at_ms: i64,
        amount: f64,
        at_ms: i64,
    ) {
        let mut inner = self.lock();
        let (reserved, held_out) = inner
            .reservations
            .remove(decision_id)
            .map_or((0.0, held_out), |(amount, _, held_out)| (amount, held_out));
        if let Some(lease) = inner.lease.settle(decision_id) {
            if inner.lease.is_current(lease) && amount > reserved {
                inner.lease.used += amount - reserved;
            }
        }
        inner
            .arm(held_out)
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
        let share = self.holdout_share;
        self.lock().each_arm(share, |pacer, k| {
            let impressions = (impressions as f64 * k).round() as u64;
            pacer.report_spend(segment, hour, impressions, amount * k, at_ms);
        });
    }

    /// Sets the spend so far and today's from the store (after a restart or a
    /// correction), at `now_ms`; with a holdout, split between the arms by its share.
    pub fn set_spent(&self, spent: f64, spent_today: f64, now_ms: i64) {
        let share = self.holdout_share;
        self.lock().each_arm(share, |pacer, k| {
            pacer.set_spent(spent * k, spent_today * k, now_ms);
        });
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

    /// Where the flight's spend stands at `now_ms` (with a holdout, the policy's arm).
    pub fn status(&self, now_ms: i64) -> PacingStatus {
        self.lock().pacer.status(now_ms)
    }

    /// A platform's result for `segment` over `[start_ms, end_ms)`: `impressions`
    /// bought for `amount`. The cost models learn it spread evenly over the period's
    /// hours (a daily result says what the segment costs, not what each hour of the day
    /// does; an hourly one teaches its hour); the spend itself is counted from the store
    /// ([`CampaignPacing::restore_spent`]), so a re-imported period counts once.
    pub fn learn_result_costs(
        &self,
        segment: usize,
        start_ms: i64,
        end_ms: i64,
        impressions: u64,
        amount: f64,
    ) {
        if impressions == 0 || !(amount.is_finite() && amount > 0.0) || end_ms <= start_ms {
            return;
        }
        let hours = ((end_ms - start_ms + HOUR_MS - 1) / HOUR_MS).max(1) as u64;
        let mut inner = self.lock();
        for i in 0..hours {
            let part = impressions * (i + 1) / hours - impressions * i / hours;
            if part == 0 {
                continue;
            }
            let hour = hour_of(start_ms + i as i64 * HOUR_MS);
            let spent = amount * part as f64 / impressions as f64;
            // The price is the arms' alike: both learn it whole.
            inner.each_arm(0.0, |pacer, _| {
                pacer.learn_costs(segment, hour, part, spent)
            });
        }
    }

    /// Calls `f` with what the policy's arm knows of costs (fitted) and of the traffic
    /// on offer: what a plan prices with.
    pub fn with_knowledge<T>(&self, f: impl FnOnce(&CostModel, &Traffic) -> T) -> T {
        let mut inner = self.lock();
        let pacer = &mut inner.pacer;
        pacer.fitted_costs();
        f(pacer.costs(), pacer.traffic())
    }
}

impl Inner {
    /// The pacer of an arm: the holdout's for a unit held out (with a holdout), the
    /// policy's otherwise.
    fn arm(&mut self, held_out: bool) -> &mut Pacer {
        match (held_out, self.holdout.as_mut()) {
            (true, Some(holdout)) => holdout,
            _ => &mut self.pacer,
        }
    }

    /// Calls `f` with each arm's pacer and its part of the whole (`1 - share` for the
    /// policy, `share` for the holdout; the policy's is 1 without a holdout).
    fn each_arm(&mut self, share: f64, mut f: impl FnMut(&mut Pacer, f64)) {
        match self.holdout.as_mut() {
            Some(holdout) => {
                f(&mut self.pacer, 1.0 - share);
                f(holdout, share);
            }
            None => f(&mut self.pacer, 1.0),
        }
    }

    /// Gives back the reservations older than [`RESERVATION_TTL_MS`].
    fn expire(&mut self, now_ms: i64) {
        while let Some(at) = self.order.front().map(|(at, _)| *at) {
            if now_ms - at < RESERVATION_TTL_MS {
                break;
            }
            let (_, id) = self.order.pop_front().expect("a front entry");
            if let Some((amount, reserved_at, held_out)) = self.reservations.get(&id).copied() {
                if reserved_at == at {
                    self.reservations.remove(&id);
                    self.arm(held_out).release(amount, now_ms);
                    // Its lease counts it as settled (docs/scale-out.md: a cost after
                    // the reservation's expiry is outside the bound).
                    self.lease.settle(&id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use tla_core::pacing::DAY_MS;
    use tla_core::spec::CampaignSpec;

    /// With leases, a purchase is served only within the lease held: its reservation
    /// is committed when decided, a cost above it is added when it arrives, and the
    /// next lease is due when the lease is nearly used, once the purchases under the
    /// leases before the latest are settled.
    #[test]
    fn purchases_are_committed_within_the_lease_held() {
        let campaign = CampaignSpec::from_toml_str(include_str!("../../../examples/small.toml"))
            .unwrap()
            .validate()
            .unwrap();
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(2);
        let engine = Engine::new(&campaign, &mut rng);
        let plan = FlightPlan {
            budget: 1_000.0,
            daily_cap: None,
            start_ms: 0,
            end_ms: 10 * DAY_MS,
            min_roas: None,
            hourly_traffic: None,
        };
        let pacing = CampaignPacing::new(&plan, 3, 0.0);
        let at = HOUR_MS;
        // Without leases (SQLite) nothing changes; with them, no lease: no purchase.
        assert!(pacing.lease_status(at).is_none());
        pacing.use_leases();
        assert!(pacing.lease_due(at));
        let paced = pacing.decide(&plan, &engine, 0, at, false, &mut rng);
        assert!(paced.lease_skip && paced.choice.version.is_none());
        assert_eq!(paced.skip, Some(SkipReason::Budget));
        assert_eq!(paced.choice.propensity, 1.0);
        let grant = |seq, amount| Grant {
            seq,
            amount,
            expires_at_ms: at + LEASE_TTL_MS,
        };
        pacing.take_lease(grant(7, 1.0), 1.0, at);
        assert!(!pacing.lease_due(at));
        // No cost known: one probe at a time.
        let probe = pacing.decide(&plan, &engine, 0, at, false, &mut rng);
        assert_eq!((probe.lease, probe.reserve), (Some(7), 0.0));
        pacing.reserve("p", probe.reserve, at, false);
        pacing.commit_to_lease("p", 7);
        assert!(
            pacing
                .decide(&plan, &engine, 0, at, false, &mut rng)
                .lease_skip
        );
        // Its cost (0.1 above a reservation of 0) is committed to the lease.
        pacing.cost("p", false, 0, at, 0.1, at);
        let status = pacing.lease_status(at).unwrap();
        assert!((status.used - 0.1).abs() < 1e-12 && status.open_purchases == 0);
        // Costs known (after the plan that follows the first costs): reservations are
        // committed until the lease is used; then the next is due.
        assert!(pacing.replan_if_due(&engine, at));
        let mut served = 0;
        for k in 0..100 {
            let paced = pacing.decide(&plan, &engine, 0, at, false, &mut rng);
            if let Some(lease) = paced.lease {
                let id = format!("d{k}");
                pacing.reserve(&id, paced.reserve, at, false);
                pacing.commit_to_lease(&id, lease);
                served += 1;
            }
        }
        let status = pacing.lease_status(at).unwrap();
        assert!(served > 0 && status.used <= 1.0 + 1e-12, "{status:?}");
        assert!(status.skips > 0);
        assert!(pacing.lease_due(at), "{status:?}");
        // The next lease: the purchases under lease 7 may be open...
        pacing.take_lease(grant(9, 1.0), 1.0, at);
        pacing.take_lease(grant(11, 0.5), 1.0, at);
        // ... but after a third lease the purchases under 7 must be settled first (R2).
        assert!(!pacing.lease_due(at + 10 * RETRY_REFUSED_MS + LEASE_TTL_MS));
        for k in 0..100 {
            pacing.cost(&format!("d{k}"), false, 0, at, 0.01, at);
        }
        assert!(pacing.lease_due(at + LEASE_TTL_MS));
        // A refusal drops the lease held, and the next ask waits.
        pacing.take_lease(grant(12, 0.0), 1.0, at);
        assert_eq!(pacing.lease_status(at).unwrap().held, 0.0);
        assert!(!pacing.lease_due(at + 1));
        assert!(pacing.lease_due(at + 2 * RETRY_REFUSED_MS));
        // An expired lease pays for nothing.
        pacing.take_lease(grant(13, 1.0), 1.0, at);
        let late = at + LEASE_TTL_MS;
        assert!(
            pacing
                .decide(&plan, &engine, 0, late, false, &mut rng)
                .lease_skip
        );
    }

    /// Each arm is paced on its own: the policy's pacer holds `1 - share` of the budget
    /// and cap, a held-out decision is the even split, a cost is spent in its
    /// decision's arm, and what names no arm is split by the share.
    #[test]
    fn each_arm_is_paced_on_its_own() {
        let spec = format!(
            "holdout = 0.25\n{}",
            include_str!("../../../examples/small.toml")
        );
        let campaign = CampaignSpec::from_toml_str(&spec)
            .unwrap()
            .validate()
            .unwrap();
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(1);
        let engine = Engine::new(&campaign, &mut rng);
        let plan = FlightPlan {
            budget: 1_000.0,
            daily_cap: Some(100.0),
            start_ms: 0,
            end_ms: 10 * DAY_MS,
            min_roas: None,
            hourly_traffic: None,
        };
        let pacing = CampaignPacing::new(&plan, 3, campaign.holdout());
        let status = pacing.status(HOUR_MS);
        assert_eq!((status.budget, status.daily_cap), (750.0, Some(75.0)));
        // No cost known yet: the holdout buys, the even split with its propensity.
        let even = 1.0 / campaign.allowed_versions() as f64;
        for _ in 0..20 {
            let paced = pacing.decide(&plan, &engine, 0, HOUR_MS, true, &mut rng);
            assert!(paced.choice.version.is_some());
            assert!((paced.choice.propensity - even).abs() < 1e-15);
        }
        // A cost settles in the arm its reservation names, whatever is passed.
        pacing.reserve("held", 1.0, HOUR_MS, true);
        pacing.cost("held", false, 0, HOUR_MS, 5.0, HOUR_MS + 1);
        assert_eq!(pacing.status(HOUR_MS + 1).spent, 0.0);
        pacing.cost("policy", false, 0, HOUR_MS, 3.0, HOUR_MS + 1);
        assert_eq!(pacing.status(HOUR_MS + 1).spent, 3.0);
        // Without a reservation, the arm passed (from the signed id) counts.
        pacing.cost("held-2", true, 0, HOUR_MS, 7.0, HOUR_MS + 1);
        assert_eq!(pacing.status(HOUR_MS + 1).spent, 3.0);
        // A spend report names no arm: the policy's part is 1 - share.
        pacing.spend_report(0, 0, HOUR_MS, 8.0, None, HOUR_MS + 2);
        assert_eq!(pacing.status(HOUR_MS + 2).spent, 9.0);
        pacing.set_spent(100.0, 10.0, HOUR_MS + 3);
        let status = pacing.status(HOUR_MS + 3);
        assert_eq!((status.spent, status.spent_today), (75.0, 7.5));
        // A budget change splits the same way.
        let more = plan.with_budget(2_000.0, None);
        pacing.decide(&more, &engine, 1, HOUR_MS + 4, false, &mut rng);
        let status = pacing.status(HOUR_MS + 4);
        assert_eq!((status.budget, status.daily_cap), (1_500.0, None));
        // Without a holdout the one pacer holds everything.
        let plain = CampaignPacing::new(&plan, 3, 0.0);
        assert_eq!(plain.status(0).budget, 1_000.0);
        plain.cost("x", true, 0, HOUR_MS, 2.0, HOUR_MS);
        assert_eq!(plain.status(HOUR_MS).spent, 2.0);
    }
}
