//! A simulated ad platform (`tla simulate --mode plan`, `docs/platform.md`).
//!
//! On an ad platform the platform buys the impressions: each period the campaign hands
//! it a [`Plan`] (per ad set = segment, a budget and the ads with their shares) and
//! reads back aggregates per ad. [`PlatformLearner`] plays both sides inside the one
//! simulation loop ([`crate::online::run`]), as a [`Learner`]:
//!
//! - **deciding** is the platform's delivery: an opportunity of segment `s` is bought
//!   with probability `q_s = min(1, B_left / (N_left · c))`, the ad set's budget left
//!   over the cost of the segment's opportunities left in the period at the
//!   platform's expected cost (even delivery, re-paced at each opportunity), and shown
//!   an ad drawn by the delivered shares: the plan's shares perturbed once per period
//!   by the platform's own noise (`share · exp(η z − η²/2)`, `z` standard normal,
//!   renormalized; [`DEFAULT_SHARE_NOISE`]). Each outcome's propensity is exact
//!   (`q_s` times the delivered share; the skip `1 − q_s`);
//! - **learning** buffers the answers as aggregates per (ad set, ad) and, when the
//!   period ends, the campaign imports them: the model learns them as the events one by
//!   one, each ad's mean amount once ([`crate::AnyPolicy::learn_results_at`]), the cost
//!   model learns the spend per
//!   (segment, hour) as spend reports, and the next plan is made
//!   ([`crate::AnyPolicy::make_plan`]) with the period's share of the budget left.
//!
//! The run's pacer ([`PacingMode::Platform`]) keeps only the hard limits of the flight
//! budget, so the budget scorer scores the run like any other.
//!
//! What the campaign knows: its aggregates, the spend they report, and the traffic on
//! offer per segment and hour (the platform's audience estimate: here, the
//! opportunities the platform saw, counted as they come).

use crate::AnyPolicy;
use crate::online::{Answer, Learner};
use crate::world::World;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_pcg::Pcg64Mcg;
use std::cell::RefCell;
use std::collections::BTreeMap;
use tla_core::pacing::{CostModel, HOUR_MS, HOURS, PacingMode, Traffic, hour_of};
use tla_core::plan::{AdResult, Plan, PlanRequest, PlanSettings};
use tla_core::policy::{Choice, Decision, Gate};

/// Default log-scale noise of the platform's delivered shares around the plan's, per
/// ad per period.
pub const DEFAULT_SHARE_NOISE: f64 = 0.2;
/// Seed offset of the platform's own noise stream.
const PLATFORM_STREAM: u64 = 0x2545_F491_4F6C_DD1D;

/// How the simulated platform runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlatformRun {
    /// Hours between plans.
    pub plan_every_hours: f64,
    /// How plans are made.
    pub settings: PlanSettings,
    /// Log-scale noise of the delivered shares ([`DEFAULT_SHARE_NOISE`]).
    pub share_noise: f64,
}

impl PlatformRun {
    /// Plans every `plan_every_hours` with `K` ads per ad set, the other settings at
    /// their defaults.
    pub fn new(plan_every_hours: f64, ads_per_segment: usize) -> Self {
        Self {
            plan_every_hours,
            settings: PlanSettings {
                ads_per_segment,
                ..PlanSettings::default()
            },
            share_noise: DEFAULT_SHARE_NOISE,
        }
    }

    /// The period's length in ms.
    fn period_ms(&self) -> i64 {
        ((self.plan_every_hours * HOUR_MS as f64).round() as i64).max(1)
    }
}

/// One ad set's delivery in the period.
#[derive(Debug, Clone, Default)]
struct Delivery {
    budget: f64,
    spent: f64,
    /// The ads' versions and delivered shares.
    ads: Vec<(u64, f64)>,
}

/// The campaign and the simulated platform, as one [`Learner`] (module documentation).
#[derive(Debug)]
pub struct PlatformLearner {
    policy: AnyPolicy,
    run: PlatformRun,
    /// The flight budget.
    budget: f64,
    /// The flight's length, ms.
    length_ms: i64,
    /// The flight's traffic weight of each hour of the day (mean 1).
    shape: [f64; HOURS],
    /// The platform's expected opportunities per ms of each (segment, hour of day),
    /// and expected cost per impression.
    rate: Vec<[f64; HOURS]>,
    cost: Vec<[f64; HOURS]>,
    /// The segments' declared shares of traffic (the world's).
    segment_shares: Vec<f64>,
    /// What the campaign learns of costs (spend reports) and of the traffic on offer.
    costs: CostModel,
    traffic: RefCell<Traffic>,
    now_ms: i64,
    period_start_ms: i64,
    period_end_ms: i64,
    plan: Option<Plan>,
    plans: u64,
    delivery: Vec<Delivery>,
    /// This period's aggregates per (segment, version), and spend per (segment, hour).
    results: BTreeMap<(usize, u64), AdResult>,
    hourly: BTreeMap<(usize, usize), (u64, f64)>,
    spent: f64,
    noise: Pcg64Mcg,
    model_version: u64,
}

impl PlatformLearner {
    /// The platform for `policy` in `world` (which must have a flight), a run of
    /// `impressions` opportunities with flight budget `budget`; `seed` seeds the
    /// platform's noise.
    ///
    /// # Panics
    /// If the world has no flight.
    pub fn new(
        policy: AnyPolicy,
        world: &World,
        impressions: u64,
        budget: f64,
        run: PlatformRun,
        seed: u64,
    ) -> Self {
        let flight = world
            .flight
            .as_ref()
            .expect("a simulated platform plays a world with a flight");
        let segments = world.segments();
        let weights: f64 = flight.hour_weights.iter().sum();
        let mut shape = [1.0; HOURS];
        for (h, w) in shape.iter_mut().enumerate() {
            *w = flight.hour_weights[h] * HOURS as f64 / weights;
        }
        // Opportunity t of T is at flight fraction (t + 0.5) / T; hour h of each day
        // holds its weight's share of the day's T / days.
        let per_day = impressions as f64 / flight.days as f64;
        let rate = (0..segments)
            .map(|s| {
                let mut r = [0.0; HOURS];
                for (h, v) in r.iter_mut().enumerate() {
                    *v = per_day * flight.hour_weights[h] / weights * world.segment_probs[s]
                        / HOUR_MS as f64;
                }
                r
            })
            .collect();
        let cost = (0..segments)
            .map(|s| {
                let mut c = [0.0; HOURS];
                for (h, v) in c.iter_mut().enumerate() {
                    *v = flight.expected_cost(s, h);
                }
                c
            })
            .collect();
        Self {
            policy,
            run,
            budget,
            length_ms: flight.length_ms(),
            shape,
            rate,
            cost,
            segment_shares: world.segment_probs.clone(),
            costs: CostModel::new(segments),
            traffic: RefCell::new(Traffic::new(segments, Some(shape))),
            now_ms: 0,
            period_start_ms: 0,
            period_end_ms: 0,
            plan: None,
            plans: 0,
            delivery: vec![Delivery::default(); segments],
            results: BTreeMap::new(),
            hourly: BTreeMap::new(),
            spent: 0.0,
            noise: Pcg64Mcg::seed_from_u64(seed ^ PLATFORM_STREAM),
            model_version: 0,
        }
    }

    /// The pacing mode a run with the platform keeps: only the hard limits.
    pub const PACING: PacingMode = PacingMode::Platform;

    /// The policy behind the plans.
    pub fn policy(&self) -> &AnyPolicy {
        &self.policy
    }

    /// Plans made so far.
    pub fn plans(&self) -> u64 {
        self.plans
    }

    /// The plan in force.
    pub fn plan(&self) -> Option<&Plan> {
        self.plan.as_ref()
    }

    /// Traffic weight of `[from, to)`: milliseconds times the hour's weight.
    fn weight(&self, from: i64, to: i64) -> f64 {
        let mut t = from;
        let mut total = 0.0;
        while t < to {
            let end = ((t.div_euclid(HOUR_MS) + 1) * HOUR_MS).min(to);
            total += (end - t) as f64 * self.shape[hour_of(t)];
            t = end;
        }
        total
    }

    /// The share of the flight's traffic after `end` (by the flight's hourly traffic
    /// shape): what a report at `end` can still be used on.
    fn flight_left_after(&self, end: i64) -> f64 {
        let whole = self.weight(0, self.length_ms);
        if whole > 0.0 {
            (self.weight(end, self.length_ms) / whole).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// The platform's buy probability for `segment` now: the ad set's budget left over
    /// what its opportunities left in the period would cost.
    fn buy_probability_now(&self, segment: usize) -> f64 {
        let delivery = &self.delivery[segment];
        let left = delivery.budget - delivery.spent;
        if left <= 0.0 || delivery.ads.is_empty() {
            return 0.0;
        }
        let mut t = self.now_ms;
        let mut cost = 0.0;
        while t < self.period_end_ms {
            let end = ((t.div_euclid(HOUR_MS) + 1) * HOUR_MS).min(self.period_end_ms);
            let h = hour_of(t);
            cost += (end - t) as f64 * self.rate[segment][h] * self.cost[segment][h];
            t = end;
        }
        if cost <= 0.0 {
            1.0
        } else {
            (left / cost).min(1.0)
        }
    }

    /// The period ends: the campaign imports its aggregates (the model learns them one
    /// by one at the period's end, the cost model their spend) and plans the next.
    fn next_period<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        let at = u64::try_from(self.period_end_ms.max(0)).unwrap_or(0);
        let results: Vec<AdResult> = std::mem::take(&mut self.results).into_values().collect();
        self.policy.learn_results_at(&results, at);
        self.model_version += results.iter().map(|r| r.impressions).sum::<u64>();
        for ((segment, hour), (impressions, spend)) in std::mem::take(&mut self.hourly) {
            self.costs.observe_total(segment, hour, impressions, spend);
        }
        self.costs.refit();

        let start = self.period_end_ms.max(self.now_ms.min(self.period_end_ms));
        let start = if self.plan.is_none() { 0 } else { start };
        let end = (start + self.run.period_ms()).min(self.length_ms.max(start + 1));
        let rest = self.weight(start, self.length_ms.max(end));
        let share = if rest > 0.0 {
            self.weight(start, end) / rest
        } else {
            1.0
        };
        let budget = ((self.budget - self.spent).max(0.0) * share).max(0.0);
        let traffic = self.traffic.borrow();
        let request = PlanRequest {
            previous: self.plan.as_ref(),
            settings: self.run.settings,
            costs: (self.costs.observations() > 0.0).then_some(&self.costs),
            traffic: (traffic.seen() > 0.0).then_some(&*traffic),
            segment_shares: Some(&self.segment_shares),
            flight_left: Some(self.flight_left_after(end)),
            ..PlanRequest::new(start, end, budget)
        };
        let plan = self
            .policy
            .make_plan(&request, rng)
            .expect("the platform's plan settings are checked when the run starts");
        drop(traffic);
        for (delivery, set) in self.delivery.iter_mut().zip(&plan.ad_sets) {
            let mut ads: Vec<(u64, f64)> = set
                .ads
                .iter()
                .map(|ad| {
                    let z: f64 = self.noise.sample(StandardNormal);
                    let eta = self.run.share_noise;
                    (ad.version, ad.share * (eta * z - 0.5 * eta * eta).exp())
                })
                .collect();
            let total: f64 = ads.iter().map(|a| a.1).sum();
            for ad in &mut ads {
                ad.1 /= total;
            }
            *delivery = Delivery {
                budget: set.budget,
                spent: 0.0,
                ads,
            };
        }
        self.period_start_ms = start;
        self.period_end_ms = end;
        self.plan = Some(plan);
        self.plans += 1;
    }

    /// The delivered share of `version` in `segment`'s ad set (0: not running).
    fn delivered_share(&self, segment: usize, version: u64) -> f64 {
        self.delivery[segment]
            .ads
            .iter()
            .find(|a| a.0 == version)
            .map_or(0.0, |a| a.1)
    }

    /// An ad of `segment`'s ad set drawn by the delivered shares.
    fn draw_ad<R: Rng + ?Sized>(&self, segment: usize, rng: &mut R) -> (u64, f64) {
        let ads = &self.delivery[segment].ads;
        let u: f64 = rng.random();
        let mut acc = 0.0;
        for &(version, share) in ads {
            acc += share;
            if u < acc {
                return (version, share);
            }
        }
        *ads.last()
            .expect("an ad set of a plan runs at least one ad")
    }
}

impl Learner for PlatformLearner {
    fn decide<R: Rng + ?Sized>(&self, segment: usize, rng: &mut R) -> Decision {
        let (version, propensity) = self.draw_ad(segment, rng);
        Decision {
            version,
            propensity,
            model_version: self.model_version,
        }
    }

    fn propensity(&self, segment: usize, version: u64) -> f64 {
        self.delivered_share(segment, version)
    }

    fn learn(&mut self, segment: usize, decision: &Decision, answer: &Answer) {
        let result = self
            .results
            .entry((segment, decision.version))
            .or_insert(AdResult {
                segment,
                version: decision.version,
                impressions: 0,
                clicks: 0,
                conversions: 0,
                value: 0.0,
                spend: 0.0,
            });
        result.impressions += 1;
        if answer.converted {
            result.clicks += 1;
            result.conversions += 1;
            result.value += answer.donation;
        }
        result.spend += answer.cost;
        let cell = self
            .hourly
            .entry((segment, hour_of(self.now_ms)))
            .or_default();
        cell.0 += 1;
        cell.1 += answer.cost;
        self.delivery[segment].spent += answer.cost;
        self.spent += answer.cost;
    }

    /// The plan stands for its period: nothing is refreshed between plans.
    fn refresh_due<R: Rng + ?Sized>(&mut self, _rng: &mut R, _now_millis: Option<u64>) -> usize {
        0
    }

    fn decide_gated<R: Rng + ?Sized>(&self, segment: usize, gate: Gate, rng: &mut R) -> Choice {
        self.traffic.borrow_mut().observe(segment, self.now_ms);
        let q = match gate {
            Gate::Closed => 0.0,
            _ => self.buy_probability_now(segment),
        };
        if q > 0.0 && rng.random::<f64>() < q {
            let (version, share) = self.draw_ad(segment, rng);
            Choice {
                version: Some(version),
                propensity: q * share,
                model_version: self.model_version,
            }
        } else {
            Choice {
                version: None,
                propensity: 1.0 - q,
                model_version: self.model_version,
            }
        }
    }

    fn buy_probability(&self, segment: usize, _price: f64) -> f64 {
        self.buy_probability_now(segment)
    }

    fn gated_mass(
        &self,
        segment: usize,
        gate: Gate,
        pick: &dyn Fn(u64) -> bool,
        _picked_allowed: u64,
    ) -> f64 {
        let q = match gate {
            Gate::Closed => 0.0,
            _ => self.buy_probability_now(segment),
        };
        q * self.delivery[segment]
            .ads
            .iter()
            .filter(|a| pick(a.0))
            .map(|a| a.1)
            .sum::<f64>()
    }

    /// Before each opportunity: the policy learns of launched options, and a period
    /// that has ended is imported and the next planned.
    fn launch_due<R: Rng + ?Sized>(&mut self, world: &World, f: f64, rng: &mut R) -> bool {
        let revised = self.policy.launch_due(world, f, rng);
        if let Some(flight) = &world.flight {
            self.now_ms = flight.clock(f).2;
        }
        while self.plan.is_none() || self.now_ms >= self.period_end_ms {
            self.next_period(rng);
        }
        revised
    }

    fn end_flight<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        self.policy.end_flight(rng);
    }
}
