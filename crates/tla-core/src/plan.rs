//! Plans for ad platforms that own the impression (`docs/platform.md`).
//!
//! On an ad platform nobody outside decides impression by impression: for a period (a
//! day, or every few hours) a team gives each ad set (an audience: here a segment) a
//! budget and uploads the ads it runs, and the platform reports aggregates per ad. A
//! [`Plan`] is that period's decision: per segment, the budget and the `K` versions to
//! run with each one's share of the ad set's impressions.
//!
//! - **Versions** by batch Thompson sampling: a fresh decision table per segment
//!   ([`Engine::draw_tables`], the `M` posterior draws' best versions with their sampled
//!   values, as every decision table), and the `K` versions most draws chose above the
//!   segment's price, with shares in proportion to those draws, mixed with a minimum
//!   exploration share spread evenly over the ad set's ads. Slots the draws leave empty
//!   are filled with versions drawn uniformly from those available to the segment.
//! - **Budgets** by the money rule of the pacer ([`crate::pacing::solve_price`]): the
//!   price of money `λ` at which the expected spend over the period's forecast traffic
//!   matches the period's budget; an ad set's budget is its part of that spend, priced
//!   with draws at the exploiting scale while the versions' draws may follow the flight
//!   left ([`PlanSettings::budget_draw_scale_schedule`]). Then a
//!   floor (each ad set at least the exploration share's part of an even split) and a
//!   limit on how fast a budget moves from the previous plan, with the budgets still
//!   summing to the request.
//!
//! A plan is a logged decision distribution: each version's share is its propensity in
//! its ad set for the period.
//!
//! The module is pure: the caller passes the period, the engine, the knowledge of
//! costs and traffic, and the random stream.

use crate::decision::DecisionTable;
use crate::engine::{Engine, Feedback};
use crate::pacing::{CostModel, SpendCell, Traffic, expected_spend, solve_price};
use rand::Rng;

/// Default number of ads per ad set (`K`).
pub const DEFAULT_ADS_PER_SEGMENT: usize = 6;
/// Default minimum exploration share: of each ad set's impressions, spread evenly over
/// its ads; and of the period's budget, spread evenly over the ad sets as their floor.
pub const DEFAULT_MIN_EXPLORATION_SHARE: f64 = 0.1;
/// Default limit on an ad set's budget move between periods: at most this fraction of
/// its previous budget (scaled to the new period's total) up or down.
pub const DEFAULT_MAX_BUDGET_MOVE: f64 = 0.5;
/// Default number of posterior draws per ad set a plan is drawn from (`M`).
pub const DEFAULT_PLAN_DRAWS: usize = 64;
/// Whether a plan's draw scale follows the flight left by default
/// ([`PlanSettings::draw_scale_schedule`]; `docs/platform.md`, *Measured*).
pub const DEFAULT_DRAW_SCALE_SCHEDULE: bool = true;
/// Whether the money rule's draws follow the flight left too by default
/// ([`PlanSettings::budget_draw_scale_schedule`]; `docs/platform.md`, *Measured*): no,
/// the budgets are priced at the exploiting scale.
pub const DEFAULT_BUDGET_DRAW_SCALE_SCHEDULE: bool = false;
/// Default discount of an option already in an ad set's batch ([`PlanSettings::option_repeat`];
/// 1: none).
pub const DEFAULT_OPTION_REPEAT: f64 = 1.0;

/// How plans are made; every default is a `DEFAULT_*` constant of this module.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PlanSettings {
    /// `K`: the most versions an ad set runs (at least 1).
    pub ads_per_segment: usize,
    /// The minimum exploration share, in [0, 1]: each ad set gives at least this share
    /// of its impressions evenly to its ads, and each ad set's budget is at least this
    /// share of an even split of the period's budget.
    pub min_exploration_share: f64,
    /// How fast an ad set's budget may move between periods: within `(1 ± this)` times
    /// its previous budget, scaled by the ratio of the periods' totals (positive;
    /// `f64::INFINITY`: no limit).
    pub max_budget_move: f64,
    /// Minimum return: a version's draws count for the plan only where their sampled
    /// value is at least this many times the expected cost (the pacer's `min_roas`).
    pub min_roas: Option<f64>,
    /// `M`: posterior draws per ad set the plan's versions and shares are drawn from,
    /// and the money rule's price and budgets (from a second set of `M` when
    /// [`PlanSettings::budget_draw_scale_schedule`] gives them another scale; at least
    /// 1; `docs/platform.md`, *Versions*).
    #[cfg_attr(feature = "serde", serde(default = "default_plan_draws"))]
    pub draws: usize,
    /// Scale of the posterior spread in the plan's draws (positive; 1: Thompson
    /// sampling from the posterior itself). `None`: the scale the campaign's decision
    /// tables draw at. Models without such a scale ignore it.
    #[cfg_attr(feature = "serde", serde(default))]
    pub draw_scale: Option<f64>,
    /// The share of each ad set's impressions spread evenly over its ads, in [0, 1],
    /// apart from the budget floor (`docs/platform.md`, *Versions*). `None`:
    /// [`PlanSettings::min_exploration_share`], which then sets both.
    #[cfg_attr(feature = "serde", serde(default))]
    pub ad_exploration_share: Option<f64>,
    /// How much an option already in an ad set's batch discounts another ad with it, in
    /// (0, 1] (`docs/platform.md`, *A diverse batch*): the ads are chosen one by one,
    /// each the version whose draws times this factor to the power of the number of
    /// ads already carrying each of its options is highest. 1: the `K` versions with
    /// most draws.
    #[cfg_attr(feature = "serde", serde(default = "default_option_repeat"))]
    pub option_repeat: f64,
    /// Whether the draws' scale follows the flight left (`docs/platform.md`, *The
    /// spread of a plan's draws*): `σ = σ_end + (1 − σ_end) · f`, `f` the share of the
    /// flight's traffic after the period ([`PlanRequest::flight_left`]) and `σ_end`
    /// [`PlanSettings::draw_scale`] (else the decision tables' scale): the posterior's
    /// own spread while all the flight is ahead, the exploiting scale for the last
    /// plan. `false`, or a request without `flight_left`: the scale `σ_end` throughout.
    #[cfg_attr(feature = "serde", serde(default = "default_draw_scale_schedule"))]
    pub draw_scale_schedule: bool,
    /// Whether the money rule's draws (the price of money and the ad sets' budgets)
    /// follow the flight left as the versions' do (`docs/platform.md`, *Budgets priced at
    /// the exploiting scale*). `false` (the default): the budgets are priced with their
    /// own draws at `σ_end`, the pacer's scale, and only the versions explore at the
    /// scheduled scale. Without the schedule both are at `σ_end`, from one set of draws.
    #[cfg_attr(
        feature = "serde",
        serde(default = "default_budget_draw_scale_schedule")
    )]
    pub budget_draw_scale_schedule: bool,
}

#[cfg(feature = "serde")]
fn default_option_repeat() -> f64 {
    DEFAULT_OPTION_REPEAT
}

#[cfg(feature = "serde")]
fn default_draw_scale_schedule() -> bool {
    DEFAULT_DRAW_SCALE_SCHEDULE
}

#[cfg(feature = "serde")]
fn default_budget_draw_scale_schedule() -> bool {
    DEFAULT_BUDGET_DRAW_SCALE_SCHEDULE
}

#[cfg(feature = "serde")]
fn default_plan_draws() -> usize {
    DEFAULT_PLAN_DRAWS
}

impl Default for PlanSettings {
    fn default() -> Self {
        Self {
            ads_per_segment: DEFAULT_ADS_PER_SEGMENT,
            min_exploration_share: DEFAULT_MIN_EXPLORATION_SHARE,
            max_budget_move: DEFAULT_MAX_BUDGET_MOVE,
            min_roas: None,
            draws: DEFAULT_PLAN_DRAWS,
            draw_scale: None,
            ad_exploration_share: None,
            option_repeat: DEFAULT_OPTION_REPEAT,
            draw_scale_schedule: DEFAULT_DRAW_SCALE_SCHEDULE,
            budget_draw_scale_schedule: DEFAULT_BUDGET_DRAW_SCALE_SCHEDULE,
        }
    }
}

/// What a plan is asked for: the period, its budget, the previous plan, the settings and
/// what is known of costs and traffic.
#[derive(Debug, Clone)]
pub struct PlanRequest<'a> {
    /// Start of the period, ms (the engine's clock: the model's beliefs are brought up to
    /// it before the draws).
    pub start_ms: i64,
    /// End of the period (exclusive), ms; after `start_ms`.
    pub end_ms: i64,
    /// The period's total budget over all ad sets (finite, at least 0).
    pub budget: f64,
    /// The plan of the previous period, whose budgets the move limit holds to.
    pub previous: Option<&'a Plan>,
    /// The settings.
    pub settings: PlanSettings,
    /// Expected costs per segment and hour ([`CostModel`], as of its last refit). `None`,
    /// or a segment whose cost is not known: the budget spread evenly over the forecast
    /// opportunities stands for its cost.
    pub costs: Option<&'a CostModel>,
    /// The traffic forecast (opportunities per hour of the day, segment shares).
    /// `None`: the traffic's size is unknown; the campaign's segment shares stand for
    /// its split, and the budget is split as the money rule splits spend at `λ = 0`.
    pub traffic: Option<&'a Traffic>,
    /// The segments' shares of traffic, as declared, when the model's own
    /// ([`PlanModel::segment_shares`]) are not the campaign's: what a plan without a
    /// traffic forecast splits by. `None`: the model's.
    pub segment_shares: Option<&'a [f64]>,
    /// The share of the flight's traffic after this period, in [0, 1]: what the
    /// period's report can still be used on, which
    /// [`PlanSettings::draw_scale_schedule`] follows. `None`: not known (the flight's
    /// end or its traffic shape).
    pub flight_left: Option<f64>,
}

impl<'a> PlanRequest<'a> {
    /// A request for the period `[start_ms, end_ms)` with `budget`, no previous plan,
    /// the default settings and no knowledge of costs or traffic.
    pub fn new(start_ms: i64, end_ms: i64, budget: f64) -> Self {
        Self {
            start_ms,
            end_ms,
            budget,
            previous: None,
            settings: PlanSettings::default(),
            costs: None,
            traffic: None,
            segment_shares: None,
            flight_left: None,
        }
    }

    /// The scale the plan's draws are drawn at: [`PlanSettings::draw_scale`], or with
    /// [`PlanSettings::draw_scale_schedule`] and a known [`PlanRequest::flight_left`]
    /// `f`, `σ_end + (1 − σ_end) · f` with `σ_end` that scale, else `tables_scale` (the
    /// model's decision tables' scale; `None`: the model has none, and no schedule).
    pub fn draw_scale(&self, tables_scale: Option<f64>) -> Option<f64> {
        let end = self.settings.draw_scale;
        match self.flight_left {
            Some(f) if self.settings.draw_scale_schedule => {
                end.or(tables_scale).map(|end| end + (1.0 - end) * f)
            }
            _ => end,
        }
    }

    /// The scale the money rule's draws are drawn at, if they are not the versions'
    /// ([`PlanRequest::draw_scale`]): `σ_end` ([`PlanSettings::draw_scale`], else
    /// `tables_scale`) when the versions' draws follow the flight left to another scale
    /// and [`PlanSettings::budget_draw_scale_schedule`] is off. `None`: the money rule
    /// prices with the versions' draws (also for a model without a scale, `tables_scale`
    /// `None`, whose draws no scale changes).
    pub fn budget_draw_scale(&self, tables_scale: Option<f64>) -> Option<f64> {
        if self.settings.budget_draw_scale_schedule {
            return None;
        }
        tables_scale?;
        let end = self.settings.draw_scale.or(tables_scale)?;
        let versions = self.draw_scale(tables_scale).or(tables_scale)?;
        (versions != end).then_some(end)
    }
}

/// The share of a flight `[flight_start_ms, flight_end_ms)` after a period ending at
/// `period_end_ms`, by time: [`PlanRequest::flight_left`] for a planner that knows the
/// flight's dates but not how its traffic falls within them (the service; the
/// simulated platform weighs by its traffic instead). In [0, 1]: 1 for a period ending
/// before the flight starts, 0 for one ending at or after its end. `None` for a flight
/// that does not end after it starts.
pub fn flight_left_by_time(
    flight_start_ms: i64,
    flight_end_ms: i64,
    period_end_ms: i64,
) -> Option<f64> {
    let length = flight_end_ms
        .checked_sub(flight_start_ms)
        .filter(|&l| l > 0)?;
    let after = flight_end_ms.saturating_sub(period_end_ms.max(flight_start_ms));
    Some((after as f64 / length as f64).clamp(0.0, 1.0))
}

/// A period's plan: per ad set (segment), its budget and its ads.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Plan {
    /// The campaign revision the versions belong to ([`Engine::revision`]): a version
    /// index means a combination of options only within its revision.
    pub revision: u32,
    /// Start of the period, ms.
    pub start_ms: i64,
    /// End of the period (exclusive), ms.
    pub end_ms: i64,
    /// One per segment, in segment order.
    pub ad_sets: Vec<AdSetPlan>,
    /// The price of money the budgets were priced at (0: the budget buys everything
    /// worth anything).
    #[cfg_attr(feature = "serde", serde(default))]
    pub price_of_money: f64,
}

impl Plan {
    /// The plan's total budget.
    pub fn budget(&self) -> f64 {
        self.ad_sets.iter().map(|a| a.budget).sum()
    }

    /// The share (propensity) of `version` in `segment`'s ad set: 0 when it does not run.
    pub fn share(&self, segment: usize, version: u64) -> f64 {
        self.ad_sets
            .iter()
            .find(|a| a.segment == segment)
            .and_then(|a| a.ads.iter().find(|ad| ad.version == version))
            .map_or(0.0, |ad| ad.share)
    }
}

/// One ad set of a plan: a segment, its budget for the period and its ads.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct AdSetPlan {
    /// The segment.
    pub segment: usize,
    /// Its budget for the period.
    pub budget: f64,
    /// Its ads, most weight first; their shares sum to 1.
    pub ads: Vec<PlannedAd>,
}

/// One ad of an ad set: a version and its share of the ad set's impressions.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PlannedAd {
    /// The version (an index of the campaign revision's version space).
    pub version: u64,
    /// Its share of the ad set's impressions in the period, in (0, 1]: its propensity.
    pub share: f64,
}

/// A plan request refused: the field, and what is accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// `K` is 0.
    #[error("ads_per_segment: 0; accepted: at least 1 ad per ad set")]
    AdsPerSegment,
    /// The period is empty or reversed.
    #[error(
        "end_ms: {end_ms} is not after start_ms {start_ms}; accepted: a period that ends after it starts"
    )]
    Period {
        /// The start given.
        start_ms: i64,
        /// The end given.
        end_ms: i64,
    },
    /// The budget is negative or not finite.
    #[error("budget: {0} is not accepted; accepted: a finite amount at least 0")]
    Budget(f64),
    /// The exploration share is outside [0, 1].
    #[error("min_exploration_share: {0} is not accepted; accepted: a number in [0, 1]")]
    ExplorationShare(f64),
    /// The budget move limit is not positive.
    #[error(
        "max_budget_move: {0} is not accepted; accepted: a positive fraction (or infinity: no limit)"
    )]
    BudgetMove(f64),
    /// The minimum return is negative or not finite.
    #[error("min_roas: {0} is not accepted; accepted: a finite number at least 0")]
    MinRoas(f64),
    /// No posterior draws.
    #[error("draws: 0; accepted: at least 1 posterior draw per ad set")]
    Draws,
    /// The draws' scale is not positive or not finite.
    #[error("draw_scale: {0} is not accepted; accepted: a finite number above 0")]
    DrawScale(f64),
    /// The ads' exploration share is outside [0, 1].
    #[error("ad_exploration_share: {0} is not accepted; accepted: a number in [0, 1]")]
    AdExplorationShare(f64),
    /// The share of the flight left is outside [0, 1].
    #[error("flight_left: {0} is not accepted; accepted: a share of the flight in [0, 1]")]
    FlightLeft(f64),
    /// The discount of a repeated option is outside (0, 1].
    #[error("option_repeat: {0} is not accepted; accepted: a number above 0 and at most 1")]
    OptionRepeat(f64),
}

impl PlanSettings {
    /// The share of each ad set's impressions spread evenly over its ads:
    /// [`PlanSettings::ad_exploration_share`], else the minimum exploration share.
    pub fn ads_exploration(&self) -> f64 {
        self.ad_exploration_share
            .unwrap_or(self.min_exploration_share)
    }

    /// Checks the settings ([`PlanError`] names the field).
    pub fn check(&self) -> Result<(), PlanError> {
        if self.ads_per_segment == 0 {
            return Err(PlanError::AdsPerSegment);
        }
        if self.draws == 0 {
            return Err(PlanError::Draws);
        }
        if let Some(scale) = self.draw_scale {
            if !(scale.is_finite() && scale > 0.0) {
                return Err(PlanError::DrawScale(scale));
            }
        }
        if !(0.0..=1.0).contains(&self.min_exploration_share) {
            return Err(PlanError::ExplorationShare(self.min_exploration_share));
        }
        if let Some(share) = self.ad_exploration_share {
            if !(0.0..=1.0).contains(&share) {
                return Err(PlanError::AdExplorationShare(share));
            }
        }
        if !(self.option_repeat > 0.0 && self.option_repeat <= 1.0) {
            return Err(PlanError::OptionRepeat(self.option_repeat));
        }
        if self.max_budget_move.is_nan() || self.max_budget_move <= 0.0 {
            return Err(PlanError::BudgetMove(self.max_budget_move));
        }
        if let Some(r) = self.min_roas {
            if !(r.is_finite() && r >= 0.0) {
                return Err(PlanError::MinRoas(r));
            }
        }
        Ok(())
    }
}

/// What a plan is drawn from: a campaign's model of its versions. [`Engine`] is one; the
/// simulator's policy is another (its versions translated to the world's after).
pub trait PlanModel {
    /// Number of segments (ad sets).
    fn segments(&self) -> usize;
    /// The campaign revision the versions belong to.
    fn revision(&self) -> u32;
    /// Each segment's share of the traffic, as declared (what a plan without a traffic
    /// forecast splits by).
    fn segment_shares(&self) -> Vec<f64>;
    /// A fresh decision table of `draws` posterior draws per segment, their spread
    /// scaled by `draw_scale` where the model has such a scale (`None`: its decision
    /// tables' scale): the batch of Thompson draws, from the model as of `now_millis`.
    fn draw_tables<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        now_millis: u64,
        draws: usize,
        draw_scale: Option<f64>,
    ) -> Vec<DecisionTable>;
    /// The scale of the posterior spread the model's decision tables draw at (`None`:
    /// the model has no such scale).
    fn tables_draw_scale(&self) -> Option<f64>;
    /// How many versions `segment` may run.
    fn available(&self, segment: usize) -> u64;
    /// A version drawn uniformly from those `segment` may run.
    fn sample_available<R: Rng + ?Sized>(&self, segment: usize, rng: &mut R) -> u64;
    /// The option of each component in `version`, into `out` (one per component).
    fn options_into(&self, version: u64, out: &mut Vec<u32>);
}

impl PlanModel for Engine {
    fn segments(&self) -> usize {
        self.segment_counts().len()
    }
    fn revision(&self) -> u32 {
        Engine::revision(self)
    }
    fn segment_shares(&self) -> Vec<f64> {
        self.campaign().segment_shares().to_vec()
    }
    fn draw_tables<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        now_millis: u64,
        draws: usize,
        draw_scale: Option<f64>,
    ) -> Vec<DecisionTable> {
        Engine::draw_tables_of(self, rng, now_millis, draws, draw_scale)
    }
    fn tables_draw_scale(&self) -> Option<f64> {
        Some(self.sampler().draw_scale())
    }
    fn available(&self, segment: usize) -> u64 {
        self.campaign().availability().count(segment)
    }
    fn sample_available<R: Rng + ?Sized>(&self, segment: usize, rng: &mut R) -> u64 {
        self.campaign()
            .availability()
            .sample_uniform(self.space(), segment, rng)
    }
    fn options_into(&self, version: u64, out: &mut Vec<u32>) {
        out.resize(self.space().components(), 0);
        self.space().decode_into(version, out);
    }
}

/// The plan of a period for a campaign's engine (module documentation,
/// `docs/platform.md`), its draws from `rng`.
pub fn make_plan<R: Rng + ?Sized>(
    engine: &Engine,
    request: &PlanRequest<'_>,
    rng: &mut R,
) -> Result<Plan, PlanError> {
    make_plan_with(engine, request, rng)
}

/// [`make_plan`] over any [`PlanModel`].
pub fn make_plan_with<M: PlanModel + ?Sized, R: Rng + ?Sized>(
    engine: &M,
    request: &PlanRequest<'_>,
    rng: &mut R,
) -> Result<Plan, PlanError> {
    let settings = &request.settings;
    settings.check()?;
    if request.end_ms <= request.start_ms {
        return Err(PlanError::Period {
            start_ms: request.start_ms,
            end_ms: request.end_ms,
        });
    }
    if !(request.budget.is_finite() && request.budget >= 0.0) {
        return Err(PlanError::Budget(request.budget));
    }
    if let Some(f) = request.flight_left {
        if !(0.0..=1.0).contains(&f) {
            return Err(PlanError::FlightLeft(f));
        }
    }
    let segments = engine.segments();
    let now = u64::try_from(request.start_ms).unwrap_or(0);
    let tables = engine.draw_tables(
        rng,
        now,
        settings.draws,
        request.draw_scale(engine.tables_draw_scale()),
    );
    // The money rule's own draws at the exploiting scale, when the versions' explore at
    // another (`PlanSettings::budget_draw_scale_schedule`).
    let priced = request
        .budget_draw_scale(engine.tables_draw_scale())
        .map(|scale| engine.draw_tables(rng, now, settings.draws, Some(scale)));
    let priced = priced.as_deref().unwrap_or(&tables);
    let buy = |s: usize, price: f64| {
        let table = &priced[s];
        1.0 - table.draws_at_or_below(price) as f64 / table.draws() as f64
    };
    let cells = period_cells(engine, request, segments);
    let roas = settings.min_roas.unwrap_or(0.0);
    // The money rule: λ such that the expected spend matches the budget. A minimum
    // return prices at max(λ, r) ĉ, as the pacer's: when buying at r spends no more than
    // the budget, r is the price (the expected spend falls as the price rises).
    let lambda = if roas > 0.0 && expected_spend(&cells, roas, &buy) <= request.budget {
        roas
    } else {
        solve_price(&cells, request.budget, 0.0, &buy)
    };
    let mut spend = vec![0.0; segments];
    let mut capacity = vec![0.0; segments];
    let mut cost_sum = vec![(0.0, 0.0); segments];
    for cell in &cells {
        let price = lambda * cell.cost;
        let on_offer = cell.opportunities * cell.cost;
        spend[cell.segment] += on_offer * buy(cell.segment, price);
        capacity[cell.segment] += on_offer;
        cost_sum[cell.segment].0 += on_offer;
        cost_sum[cell.segment].1 += cell.opportunities;
    }
    // The money rule's split of the spend, scaled to the budget; nothing worth buying
    // anywhere: the split of the traffic on offer.
    let target = if spend.iter().sum::<f64>() > 0.0 {
        spend
    } else if capacity.iter().sum::<f64>() > 0.0 {
        capacity
    } else {
        vec![1.0; segments]
    };
    let budgets = fit_budgets(&target, &bounds(request, segments), request.budget);
    let ad_sets = (0..segments)
        .map(|s| {
            let mean_cost = if cost_sum[s].1 > 0.0 {
                cost_sum[s].0 / cost_sum[s].1
            } else {
                0.0
            };
            let price = lambda * mean_cost;
            AdSetPlan {
                segment: s,
                budget: budgets[s],
                ads: choose_ads(engine, &tables[s], s, price, settings, rng),
            }
        })
        .collect();
    Ok(Plan {
        revision: engine.revision(),
        start_ms: request.start_ms,
        end_ms: request.end_ms,
        ad_sets,
        price_of_money: lambda,
    })
}

/// The period's cells of traffic and cost: from the forecast and the cost model where
/// known; a cost not known is the budget spread evenly over the forecast opportunities;
/// without a forecast, one cell per segment with its campaign share as opportunities.
fn period_cells<M: PlanModel + ?Sized>(
    engine: &M,
    request: &PlanRequest<'_>,
    segments: usize,
) -> Vec<SpendCell> {
    let shares: Vec<f64> = match request.traffic {
        Some(traffic) => traffic.segment_shares(),
        None => request
            .segment_shares
            .map_or_else(|| engine.segment_shares(), <[f64]>::to_vec),
    };
    let Some(traffic) = request.traffic else {
        return (0..segments)
            .map(|segment| SpendCell {
                segment,
                hour: 0,
                opportunities: shares.get(segment).copied().unwrap_or(0.0),
                cost: request
                    .costs
                    .and_then(|c| c.expected(segment, 0))
                    .unwrap_or(1.0),
            })
            .collect();
    };
    let forecast = traffic.forecast(request.start_ms, request.end_ms);
    let total: f64 = forecast.iter().sum();
    let even_cost = if total > 0.0 {
        request.budget / total
    } else {
        1.0
    };
    let mut cells = Vec::new();
    for (hour, &n) in forecast.iter().enumerate() {
        for (segment, &p) in shares.iter().enumerate().take(segments) {
            if n * p <= 0.0 {
                continue;
            }
            let cost = request
                .costs
                .and_then(|c| c.expected(segment, hour))
                .unwrap_or(even_cost);
            cells.push(SpendCell {
                segment,
                hour,
                opportunities: n * p,
                cost,
            });
        }
    }
    cells
}

/// Per ad set, the budget's bounds: the exploration floor, and the move limit around
/// the previous plan's budget (scaled by the ratio of the totals).
fn bounds(request: &PlanRequest<'_>, segments: usize) -> Vec<(f64, f64)> {
    let settings = &request.settings;
    let floor = settings.min_exploration_share * request.budget / segments.max(1) as f64;
    let previous_total = request.previous.map_or(0.0, Plan::budget);
    (0..segments)
        .map(|s| {
            let before = request
                .previous
                .filter(|_| previous_total > 0.0 && settings.max_budget_move.is_finite())
                .and_then(|p| p.ad_sets.iter().find(|a| a.segment == s))
                .map(|a| a.budget * request.budget / previous_total);
            match before {
                Some(b) => (
                    floor.max(b * (1.0 - settings.max_budget_move)),
                    (b * (1.0 + settings.max_budget_move)).max(floor),
                ),
                None => (floor, f64::INFINITY),
            }
        })
        .collect()
}

/// Budgets `clamp(t · target_s, lo_s, hi_s)` with `t` such that they sum to `total`
/// (bisection on `t`). When the bounds cannot hold with that sum (the floors above it,
/// or the ceilings below it), the sum wins: the bounds' nearest budgets are scaled to it.
pub(crate) fn fit_budgets(target: &[f64], bounds: &[(f64, f64)], total: f64) -> Vec<f64> {
    let at = |t: f64| -> Vec<f64> {
        target
            .iter()
            .zip(bounds)
            .map(|(&x, &(lo, hi))| (t * x).clamp(lo, hi.max(lo)))
            .collect()
    };
    let sum = |v: &[f64]| v.iter().sum::<f64>();
    let scaled = |v: Vec<f64>| {
        let s = sum(&v);
        if s > 0.0 {
            v.into_iter().map(|b| b * total / s).collect()
        } else {
            vec![total / target.len().max(1) as f64; target.len()]
        }
    };
    if total <= 0.0 {
        return vec![0.0; target.len()];
    }
    let low = at(0.0);
    if sum(&low) >= total {
        return scaled(low);
    }
    let mut hi_t = 1.0;
    while sum(&at(hi_t)) < total {
        hi_t *= 2.0;
        if hi_t > 1e300 {
            // The ceilings (or zero targets) hold the sum below the total.
            let mut top = at(hi_t);
            // Targets of 0 stay at their floor; spread what is left over the others.
            if sum(&top) <= 0.0 {
                top = vec![1.0; target.len()];
            }
            return scaled(top);
        }
    }
    let mut lo_t = 0.0;
    for _ in 0..100 {
        let mid = 0.5 * (lo_t + hi_t);
        if sum(&at(mid)) < total {
            lo_t = mid;
        } else {
            hi_t = mid;
        }
    }
    scaled(at(hi_t))
}

/// The ads of `segment`'s ad set: the `K` versions with most draws whose sampled value
/// exceeds `price` (all draws, when none does; ties in a random order), each draw count
/// discounted by [`PlanSettings::option_repeat`] for every ad already chosen that shares
/// an option with it; shares in proportion to those draws mixed with the ads'
/// exploration share spread evenly; slots left filled with versions drawn uniformly
/// from those available to the segment (with a discount, the least repeating of a few
/// such draws).
fn choose_ads<M: PlanModel + ?Sized, R: Rng + ?Sized>(
    engine: &M,
    table: &DecisionTable,
    segment: usize,
    price: f64,
    settings: &PlanSettings,
    rng: &mut R,
) -> Vec<PlannedAd> {
    let k = settings.ads_per_segment;
    let above: Vec<(u64, f64)> = table
        .entries()
        .map(|(v, _)| (v, table.probability_above(v, price)))
        .filter(|&(_, p)| p > 0.0)
        .collect();
    let mut ranked = if above.is_empty() {
        table.entries().collect::<Vec<_>>()
    } else {
        above
    };
    // Most draws first; ties in a random order (by version index they would favour
    // the versions whose first components' options come first).
    ranked.sort_by_key(|a| a.0);
    for i in (1..ranked.len()).rev() {
        ranked.swap(i, rng.random_range(0..=i));
    }
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut batch = Batch::new(settings.option_repeat);
    if batch.discounts() {
        let mut options = Vec::new();
        let mut left = ranked;
        ranked = Vec::with_capacity(k);
        while ranked.len() < k && !left.is_empty() {
            let mut best = (0, f64::NEG_INFINITY);
            for (i, &(v, p)) in left.iter().enumerate() {
                engine.options_into(v, &mut options);
                let score = p * batch.discount(&options);
                if score > best.1 {
                    best = (i, score);
                }
            }
            let chosen = left.remove(best.0);
            engine.options_into(chosen.0, &mut options);
            batch.add(&options);
            ranked.push(chosen);
        }
    } else {
        ranked.truncate(k);
    }
    let room = engine.available(segment).min(k as u64) as usize;
    let mut tries = 0;
    let mut options = Vec::new();
    while ranked.len() < room && tries < 64 * k {
        tries += 1;
        let mut v = engine.sample_available(segment, rng);
        if batch.discounts() {
            engine.options_into(v, &mut options);
            let mut best = batch.discount(&options);
            for _ in 1..FILL_CANDIDATES {
                let w = engine.sample_available(segment, rng);
                engine.options_into(w, &mut options);
                let d = batch.discount(&options);
                if d > best {
                    (v, best) = (w, d);
                }
            }
        }
        if !ranked.iter().any(|&(w, _)| w == v) {
            engine.options_into(v, &mut options);
            batch.add(&options);
            ranked.push((v, 0.0));
        }
    }
    let mass: f64 = ranked.iter().map(|r| r.1).sum();
    let epsilon = if mass > 0.0 {
        settings.ads_exploration()
    } else {
        1.0
    };
    let n = ranked.len() as f64;
    let mut ads: Vec<PlannedAd> = ranked
        .into_iter()
        .map(|(version, p)| PlannedAd {
            version,
            share: (1.0 - epsilon) * if mass > 0.0 { p / mass } else { 0.0 } + epsilon / n,
        })
        .filter(|ad| ad.share > 0.0)
        .collect();
    let total: f64 = ads.iter().map(|a| a.share).sum();
    for ad in &mut ads {
        ad.share /= total;
    }
    ads
}

/// Uniform draws a filler slot chooses the least repeating of, when repeated options
/// are discounted.
const FILL_CANDIDATES: usize = 16;

/// The options an ad set's batch holds so far, per component, and the discount of a
/// repeated option ([`PlanSettings::option_repeat`]).
struct Batch {
    repeat: f64,
    /// Per component, (option, ads holding it).
    held: Vec<Vec<(u32, u32)>>,
}

impl Batch {
    fn new(repeat: f64) -> Self {
        Self {
            repeat,
            held: Vec::new(),
        }
    }

    /// Whether repeated options are discounted at all.
    fn discounts(&self) -> bool {
        self.repeat < 1.0
    }

    /// `repeat` to the power of the number of (ad, component) pairs already holding
    /// one of `options`.
    fn discount(&self, options: &[u32]) -> f64 {
        let repeats: u32 = options
            .iter()
            .zip(&self.held)
            .map(|(o, held)| held.iter().find(|h| h.0 == *o).map_or(0, |h| h.1))
            .sum();
        self.repeat.powi(repeats as i32)
    }

    fn add(&mut self, options: &[u32]) {
        if self.held.len() < options.len() {
            self.held.resize(options.len(), Vec::new());
        }
        for (o, held) in options.iter().zip(&mut self.held) {
            match held.iter_mut().find(|h| h.0 == *o) {
                Some(h) => h.1 += 1,
                None => held.push((*o, 1)),
            }
        }
    }
}

/// The stable name of an ad: `tla-<campaign>-<revision>-<version>`.
pub fn ad_name(campaign: &str, revision: u32, version: u64) -> String {
    format!("tla-{campaign}-{revision}-{version}")
}

/// An ad name that is not `tla-<campaign>-<revision>-<version>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "ad name {name:?}: {problem}; accepted: tla-<campaign>-<revision>-<version> (revision and version whole numbers, the campaign id not empty)"
)]
pub struct AdNameError {
    /// The name given.
    pub name: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

/// The campaign id, revision and version of an [`ad_name`]. Campaign ids may hold `-`:
/// the revision and the version are read from the right.
pub fn parse_ad_name(name: &str) -> Result<(String, u32, u64), AdNameError> {
    let error = |problem| AdNameError {
        name: name.to_owned(),
        problem,
    };
    let rest = name
        .strip_prefix("tla-")
        .ok_or_else(|| error("it does not start with `tla-`"))?;
    let (rest, version) = rest
        .rsplit_once('-')
        .ok_or_else(|| error("it has no revision and version"))?;
    let (campaign, revision) = rest
        .rsplit_once('-')
        .ok_or_else(|| error("it has no revision"))?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(version) {
        return Err(error("the version is not a whole number"));
    }
    if !digits(revision) {
        return Err(error("the revision is not a whole number"));
    }
    if campaign.is_empty() {
        return Err(error("the campaign id is empty"));
    }
    let version = version
        .parse()
        .map_err(|_| error("the version is too large"))?;
    let revision = revision
        .parse()
        .map_err(|_| error("the revision is too large"))?;
    Ok((campaign.to_owned(), revision, version))
}

/// What a platform reports of one ad (a version in an ad set) over a period.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct AdResult {
    /// The ad set's segment.
    pub segment: usize,
    /// The ad's version.
    pub version: u64,
    /// Impressions.
    pub impressions: u64,
    /// Clicks (at most the impressions).
    pub clicks: u64,
    /// Conversions (at most the impressions).
    pub conversions: u64,
    /// Conversion value, summed (finite, at least 0).
    pub value: f64,
    /// Amount spent (finite, at least 0).
    pub spend: f64,
}

/// A result refused: the field, and what is accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResultError {
    /// The value is negative or not finite.
    #[error("value: {0} is not accepted; accepted: a finite amount at least 0")]
    Value(f64),
    /// The spend is negative or not finite.
    #[error("spend: {0} is not accepted; accepted: a finite amount at least 0")]
    Spend(f64),
    /// More clicks than impressions.
    #[error(
        "clicks: {clicks} is more than the {impressions} impressions; accepted: at most the impressions"
    )]
    Clicks {
        /// Clicks given.
        clicks: u64,
        /// Impressions given.
        impressions: u64,
    },
    /// More conversions than impressions.
    #[error(
        "conversions: {conversions} is more than the {impressions} impressions; accepted: at most the impressions"
    )]
    Conversions {
        /// Conversions given.
        conversions: u64,
        /// Impressions given.
        impressions: u64,
    },
    /// The segment is not one of the campaign's.
    #[error("segment: {segment} is not a segment of the campaign; accepted: 0 to {} ({segments} segments)", segments.saturating_sub(1))]
    Segment {
        /// Segment given.
        segment: usize,
        /// Segments of the campaign.
        segments: usize,
    },
    /// The version is not an allowed version of the campaign's space.
    #[error(
        "version: {version} is not an allowed version of the campaign; accepted: an allowed index below {total}"
    )]
    Version {
        /// Version given.
        version: u64,
        /// Versions in the space, exclusions included.
        total: u64,
    },
}

/// The events of `results` one by one, in the order [`Engine::learn_results`] learns
/// them (`docs/platform.md`): each result's impressions in turn, its clicks and
/// conversions spread evenly among them (event `j` of `c` right after impression
/// `floor((j + 0.5) n / c)` of `n`), the results interleaved in proportion (impression
/// `i` of a result of `n` at position `(i + 0.5) / n`; ties in the results' order). A
/// conversion's own amount is not reported: each of the `c` conversions of a result
/// carries the mean amount ([`AdResult::mean_amount`]) for the counts, but the value
/// model must not learn it `c` times (that would teach it a spread of 0 between the
/// gifts): it learns each result's mean once, as one observation of the mean of `c`
/// amounts ([`crate::model::value::ValueModel::observe_mean_at`]), as
/// [`Engine::learn_results`] does. Spend is not an event here. `learn(segment,
/// version, feedback)` is called for each event.
pub fn for_each_event(results: &[AdResult], mut learn: impl FnMut(usize, u64, Feedback)) {
    use std::cmp::Reverse;
    // Per result: the next impression, and the clicks and conversions given so far.
    let mut cursors = vec![(0u64, 0u64, 0u64); results.len()];
    let position = |i: u64, n: u64| ((i as f64 + 0.5) / n as f64).to_bits();
    let mut heap: std::collections::BinaryHeap<Reverse<(u64, usize)>> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.impressions > 0)
        .map(|(k, r)| Reverse((position(0, r.impressions), k)))
        .collect();
    while let Some(Reverse((_, k))) = heap.pop() {
        let result = &results[k];
        let (i, clicks, conversions) = &mut cursors[k];
        let (segment, version, n) = (result.segment, result.version, result.impressions);
        let now = *i;
        learn(segment, version, Feedback::Impression);
        let due = |j: u64, c: u64| ((j as f64 + 0.5) * n as f64 / c as f64) as u64 <= now;
        while *clicks < result.clicks && due(*clicks, result.clicks) {
            *clicks += 1;
            learn(segment, version, Feedback::Click);
        }
        let amount = result.mean_amount();
        while *conversions < result.conversions && due(*conversions, result.conversions) {
            *conversions += 1;
            learn(segment, version, Feedback::Conversion { amount });
        }
        *i += 1;
        if *i < n {
            heap.push(Reverse((position(*i, n), k)));
        }
    }
}

impl AdResult {
    /// The mean amount of the result's conversions, `V / c` (`None` without
    /// conversions or with a value of 0: amounts unknown).
    pub fn mean_amount(&self) -> Option<f64> {
        (self.value > 0.0 && self.conversions > 0).then(|| self.value / self.conversions as f64)
    }

    /// Checks the numbers (not whether the segment and version are the campaign's:
    /// [`Engine::learn_results`] does).
    pub fn check(&self) -> Result<(), ResultError> {
        if !(self.value.is_finite() && self.value >= 0.0) {
            return Err(ResultError::Value(self.value));
        }
        if !(self.spend.is_finite() && self.spend >= 0.0) {
            return Err(ResultError::Spend(self.spend));
        }
        if self.clicks > self.impressions {
            return Err(ResultError::Clicks {
                clicks: self.clicks,
                impressions: self.impressions,
            });
        }
        if self.conversions > self.impressions {
            return Err(ResultError::Conversions {
                conversions: self.conversions,
                impressions: self.impressions,
            });
        }
        Ok(())
    }
}

#[cfg(all(test, feature = "text"))]
mod tests {
    use super::*;
    use crate::pacing::HOUR_MS;
    use crate::spec::CampaignSpec;
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};

    const SPEC: &str = include_str!("../../../examples/small.toml");

    fn engine(seed: u64) -> Engine {
        let campaign = CampaignSpec::from_toml_str(SPEC)
            .unwrap()
            .validate()
            .unwrap();
        Engine::new(&campaign, &mut rand::rngs::StdRng::seed_from_u64(seed))
    }

    /// Version 3 converts at 6%, every other at 1%, in every segment; $25 a gift.
    fn teach(engine: &mut Engine, impressions: u64) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let allowed: Vec<u64> = (0..engine.space().total())
            .filter(|&v| engine.space().is_allowed(v))
            .collect();
        for i in 0..impressions {
            let segment = (i % 3) as usize;
            let version = allowed[(i as usize / 3) % allowed.len()];
            engine.learn(segment, version, Feedback::Impression);
            let rate = if version == 3 { 0.06 } else { 0.01 };
            if rand::Rng::random::<f64>(&mut rng) < rate {
                engine.learn(
                    segment,
                    version,
                    Feedback::Conversion { amount: Some(25.0) },
                );
            }
        }
    }

    fn check_shares(plan: &Plan, k: usize, epsilon: f64) {
        for set in &plan.ad_sets {
            assert!(!set.ads.is_empty() && set.ads.len() <= k, "{set:?}");
            let sum: f64 = set.ads.iter().map(|a| a.share).sum();
            assert!((sum - 1.0).abs() < 1e-12, "{sum}");
            for ad in &set.ads {
                assert!(
                    ad.share >= epsilon / set.ads.len() as f64 - 1e-12,
                    "{set:?}"
                );
            }
            let mut versions: Vec<u64> = set.ads.iter().map(|a| a.version).collect();
            versions.dedup();
            assert_eq!(versions.len(), set.ads.len(), "distinct versions");
        }
    }

    #[test]
    fn a_plan_respects_k_its_shares_its_floor_and_its_budget() {
        let mut engine = engine(1);
        teach(&mut engine, 30_000);
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        for k in [1, 3, 6, 20] {
            let mut request = PlanRequest::new(0, 86_400_000, 300.0);
            request.settings.ads_per_segment = k;
            let plan = make_plan(&engine, &request, &mut rng).unwrap();
            assert_eq!(plan.ad_sets.len(), 3);
            assert_eq!(plan.revision, 1);
            check_shares(&plan, k.min(16), request.settings.min_exploration_share);
            assert!((plan.budget() - 300.0).abs() < 1e-9, "{}", plan.budget());
            for set in &plan.ad_sets {
                assert!(set.budget >= 0.1 * 300.0 / 3.0 - 1e-9, "{set:?}");
            }
            if k >= 6 {
                assert_eq!(plan.ad_sets[0].ads.len(), k.min(16), "slots filled");
            }
            // The best version leads every ad set.
            for set in &plan.ad_sets {
                assert_eq!(set.ads[0].version, 3, "{set:?}");
                assert!(set.ads[0].share > 0.3, "{set:?}");
            }
        }
        // No exploration share: shares are the draws' alone, fillers dropped.
        let mut request = PlanRequest::new(0, 86_400_000, 300.0);
        request.settings.min_exploration_share = 0.0;
        let plan = make_plan(&engine, &request, &mut rng).unwrap();
        check_shares(&plan, 6, 0.0);
        // Same seed, same plan.
        let a = make_plan(&engine, &request, &mut rand::rngs::StdRng::seed_from_u64(9));
        let b = make_plan(&engine, &request, &mut rand::rngs::StdRng::seed_from_u64(9));
        assert_eq!(a, b);
    }

    #[test]
    fn a_plan_draws_its_own_number_of_draws_at_its_own_scale() {
        let mut engine = engine(1);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        // Before any data, posterior draws at scale 1 choose many versions.
        for table in engine.draw_tables_of(&mut rng, 0, 10, Some(1.0)) {
            assert_eq!(table.draws(), 10);
            assert!(table.len() > 1, "{}", table.len());
        }
        // After, at a scale near 0 every draw is the posterior mean's argmax.
        teach(&mut engine, 30_000);
        for table in engine.draw_tables_of(&mut rng, 0, 10, Some(1e-9)) {
            assert_eq!((table.draws(), table.len()), (10, 1));
        }
        // The plan's scale, not the decision tables': near 0 and without an exploration
        // share, each ad set runs the posterior mean's best version alone.
        let mut request = PlanRequest::new(0, 86_400_000, 300.0);
        request.settings.min_exploration_share = 0.0;
        request.settings.draw_scale = Some(1e-9);
        let plan = make_plan(&engine, &request, &mut rng).unwrap();
        for set in &plan.ad_sets {
            assert_eq!(
                set.ads,
                vec![PlannedAd {
                    version: 3,
                    share: 1.0
                }]
            );
        }
    }

    #[test]
    fn the_flight_left_by_time_is_the_share_of_the_flight_after_the_period() {
        let day = 86_400_000;
        // A 14-day flight: after the first day 13/14 is left, after the last none.
        assert_eq!(flight_left_by_time(0, 14 * day, day), Some(13.0 / 14.0));
        assert_eq!(flight_left_by_time(0, 14 * day, 14 * day), Some(0.0));
        assert_eq!(flight_left_by_time(0, 14 * day, 20 * day), Some(0.0));
        // A period ending before the flight starts leaves all of it.
        assert_eq!(flight_left_by_time(day, 3 * day, 0), Some(1.0));
        assert_eq!(flight_left_by_time(day, day, 0), None);
        assert_eq!(flight_left_by_time(2 * day, day, 0), None);
    }

    /// With the schedule (the budgets' too), a plan draws at `σ_end + (1 − σ_end) f`:
    /// the same plan, draw for draw, as a plan at that fixed scale; without the flight
    /// left known, at `σ_end`. A share of the flight outside [0, 1] is refused.
    #[test]
    fn a_scheduled_draw_scale_follows_the_flight_left() {
        let mut engine = engine(1);
        teach(&mut engine, 3_000);
        let tables = engine.sampler().draw_scale();
        let plan = |settings: PlanSettings, flight_left: Option<f64>| {
            let request = PlanRequest {
                settings,
                flight_left,
                ..PlanRequest::new(0, 86_400_000, 300.0)
            };
            let mut rng = rand::rngs::StdRng::seed_from_u64(9);
            make_plan(&engine, &request, &mut rng)
        };
        let fixed = |scale: f64| {
            plan(
                PlanSettings {
                    draw_scale: Some(scale),
                    ..PlanSettings::default()
                },
                None,
            )
            .unwrap()
        };
        let scheduled = PlanSettings {
            draw_scale_schedule: true,
            budget_draw_scale_schedule: true,
            ..PlanSettings::default()
        };
        assert_eq!(plan(scheduled, Some(1.0)).unwrap(), fixed(1.0));
        assert_eq!(plan(scheduled, Some(0.0)).unwrap(), fixed(tables));
        assert_eq!(plan(scheduled, None).unwrap(), fixed(tables));
        let half = tables + (1.0 - tables) * 0.5;
        assert_eq!(plan(scheduled, Some(0.5)).unwrap(), fixed(half));
        assert_ne!(fixed(half), fixed(tables));
        let to_low = PlanSettings {
            draw_scale: Some(0.2),
            ..scheduled
        };
        assert_eq!(plan(to_low, Some(0.25)).unwrap(), fixed(0.4));
        // Without the schedule the flight left changes nothing.
        let unscheduled = PlanSettings {
            draw_scale_schedule: false,
            ..PlanSettings::default()
        };
        assert_eq!(plan(unscheduled, Some(1.0)).unwrap(), fixed(tables));
        let refused = plan(scheduled, Some(1.5)).unwrap_err().to_string();
        assert!(refused.starts_with("flight_left: 1.5"), "{refused}");
    }

    /// An engine that records the scales its draws are asked at.
    struct Recording<'a> {
        engine: &'a Engine,
        scales: std::cell::RefCell<Vec<Option<f64>>>,
        /// Whether it stands for a model without a draw scale.
        scaleless: bool,
    }

    impl PlanModel for Recording<'_> {
        fn segments(&self) -> usize {
            PlanModel::segments(self.engine)
        }
        fn revision(&self) -> u32 {
            PlanModel::revision(self.engine)
        }
        fn segment_shares(&self) -> Vec<f64> {
            PlanModel::segment_shares(self.engine)
        }
        fn draw_tables<R: Rng + ?Sized>(
            &self,
            rng: &mut R,
            now_millis: u64,
            draws: usize,
            draw_scale: Option<f64>,
        ) -> Vec<DecisionTable> {
            self.scales.borrow_mut().push(draw_scale);
            PlanModel::draw_tables(self.engine, rng, now_millis, draws, draw_scale)
        }
        fn tables_draw_scale(&self) -> Option<f64> {
            if self.scaleless {
                return None;
            }
            PlanModel::tables_draw_scale(self.engine)
        }
        fn available(&self, segment: usize) -> u64 {
            PlanModel::available(self.engine, segment)
        }
        fn sample_available<R: Rng + ?Sized>(&self, segment: usize, rng: &mut R) -> u64 {
            PlanModel::sample_available(self.engine, segment, rng)
        }
        fn options_into(&self, version: u64, out: &mut Vec<u32>) {
            PlanModel::options_into(self.engine, version, out);
        }
    }

    /// By default the versions' draws follow the flight left and the money rule prices
    /// with its own draws at `σ_end`, from the same random stream after the versions'
    /// draws; with `budget_draw_scale_schedule` it prices with the versions' draws. One
    /// set of draws when the scales agree.
    #[test]
    fn the_budgets_are_priced_at_the_exploiting_scale_while_the_versions_explore() {
        let mut engine = engine(1);
        teach(&mut engine, 3_000);
        let tables = engine.sampler().draw_scale();
        let half = tables + (1.0 - tables) * 0.5;
        // Without a traffic forecast or costs the cells are the segments' shares at a
        // cost of 1: a budget of 0.3 buys less than everything, so the price is above 0.
        let request = |settings: PlanSettings, flight_left: Option<f64>| PlanRequest {
            settings,
            flight_left,
            ..PlanRequest::new(0, 86_400_000, 0.3)
        };
        let recorded = |settings: PlanSettings, flight_left: Option<f64>, scaleless: bool| {
            let model = Recording {
                engine: &engine,
                scales: std::cell::RefCell::new(Vec::new()),
                scaleless,
            };
            let mut rng = rand::rngs::StdRng::seed_from_u64(9);
            let plan = make_plan_with(&model, &request(settings, flight_left), &mut rng).unwrap();
            (plan, model.scales.into_inner())
        };
        let plan = |settings: PlanSettings, flight_left: Option<f64>| {
            recorded(settings, flight_left, false)
        };
        // The price the money rule solves for over a set of draws.
        let price = |tables: &[DecisionTable]| {
            let segments = PlanModel::segments(&engine);
            let cells = period_cells(&engine, &request(PlanSettings::default(), None), segments);
            let buy = |s: usize, price: f64| {
                1.0 - tables[s].draws_at_or_below(price) as f64 / tables[s].draws() as f64
            };
            solve_price(&cells, 0.3, 0.0, &buy)
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let versions = engine.draw_tables_of(&mut rng, 0, DEFAULT_PLAN_DRAWS, Some(half));
        let at_end = engine.draw_tables_of(&mut rng, 0, DEFAULT_PLAN_DRAWS, Some(tables));

        let (default, scales) = plan(PlanSettings::default(), Some(0.5));
        assert_eq!(scales, vec![Some(half), Some(tables)]);
        assert!(default.price_of_money > 0.0);
        assert_eq!(default.price_of_money, price(&at_end));
        // The ads from the versions' draws, at that price (each ad set's mean cost is 1
        // here), from the same stream after both sets of draws.
        check_shares(
            &default,
            DEFAULT_ADS_PER_SEGMENT,
            DEFAULT_MIN_EXPLORATION_SHARE,
        );
        for (s, set) in default.ad_sets.iter().enumerate() {
            let ads = choose_ads(
                &engine,
                &versions[s],
                s,
                default.price_of_money,
                &PlanSettings::default(),
                &mut rng,
            );
            assert_eq!(set.ads, ads);
        }
        let on_schedule = PlanSettings {
            budget_draw_scale_schedule: true,
            ..PlanSettings::default()
        };
        let (scheduled, scales) = plan(on_schedule, Some(0.5));
        assert_eq!(scales, vec![Some(half)]);
        assert_eq!(scheduled.price_of_money, price(&versions));
        // The wider draws sample higher best values, so they price higher.
        assert!(scheduled.price_of_money > default.price_of_money);
        // Without the schedule, for the last plan (nothing left: the same scale) or
        // without the flight left known, one set of draws.
        let unscheduled = PlanSettings {
            draw_scale_schedule: false,
            ..PlanSettings::default()
        };
        assert_eq!(plan(unscheduled, Some(0.5)).1, vec![None]);
        assert_eq!(
            plan(PlanSettings::default(), Some(0.0)).1,
            vec![Some(tables)]
        );
        assert_eq!(plan(PlanSettings::default(), None).1, vec![None]);
        // A model without a draw scale: one set, whatever the settings' scale.
        let own_scale = PlanSettings {
            draw_scale: Some(0.8),
            ..PlanSettings::default()
        };
        assert_eq!(recorded(own_scale, Some(0.5), true).1, vec![Some(0.9)]);
        assert_eq!(
            recorded(own_scale, Some(0.5), false).1,
            vec![Some(0.9), Some(0.8)]
        );
    }

    #[test]
    fn the_ads_exploration_share_is_apart_from_the_budget_floor() {
        let mut engine = engine(1);
        teach(&mut engine, 30_000);
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        // All of each ad set's impressions spread evenly, the budget floor at 0.
        let mut request = PlanRequest::new(0, 86_400_000, 300.0);
        request.settings.min_exploration_share = 0.0;
        request.settings.ad_exploration_share = Some(1.0);
        let plan = make_plan(&engine, &request, &mut rng).unwrap();
        for set in &plan.ad_sets {
            assert_eq!(set.ads.len(), 6, "{set:?}");
            for ad in &set.ads {
                assert!((ad.share - 1.0 / 6.0).abs() < 1e-12, "{set:?}");
            }
        }
        // None of them spread (fillers dropped), while the budget floor holds at 0.6.
        request.settings.min_exploration_share = 0.6;
        request.settings.ad_exploration_share = Some(0.0);
        let plan = make_plan(&engine, &request, &mut rng).unwrap();
        check_shares(&plan, 6, 0.0);
        for set in &plan.ad_sets {
            assert!(set.budget >= 0.6 * 300.0 / 3.0 - 1e-9, "{set:?}");
            assert!(set.ads.len() < 6, "fillers of share 0 dropped: {set:?}");
            assert_eq!(set.ads[0].version, 3, "{set:?}");
        }
        // Without it, the minimum exploration share sets both.
        request.settings.ad_exploration_share = None;
        assert_eq!(request.settings.ads_exploration(), 0.6);
        let plan = make_plan(&engine, &request, &mut rng).unwrap();
        check_shares(&plan, 6, 0.6);
    }

    #[test]
    fn a_discount_of_repeated_options_makes_ads_differ_in_every_component() {
        let engine = engine(1);
        let components = engine.space().components();
        // Two ads per ad set, before any data (every draw's best version at random):
        // with the discount the two share no option (the small campaign has at least
        // two options per component and a version for each pair); without it, draws at
        // random often share one.
        let repeats = |repeat: f64| -> usize {
            let mut shared = 0;
            for seed in 0..20 {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                let mut request = PlanRequest::new(0, 86_400_000, 300.0);
                request.settings.ads_per_segment = 2;
                request.settings.option_repeat = repeat;
                let plan = make_plan(&engine, &request, &mut rng).unwrap();
                check_shares(&plan, 2, request.settings.min_exploration_share);
                for set in &plan.ad_sets {
                    assert_eq!(set.ads.len(), 2, "{set:?}");
                    let a = engine.space().decode(set.ads[0].version);
                    let b = engine.space().decode(set.ads[1].version);
                    shared += (0..components).filter(|&c| a[c] == b[c]).count();
                }
            }
            shared
        };
        assert_eq!(repeats(1e-3), 0);
        assert!(repeats(1.0) > 10, "{}", repeats(1.0));
        // Fillers too: one draw per ad set leaves the other slots to uniform draws,
        // chosen among a few to repeat the fewest options.
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let mut request = PlanRequest::new(0, 86_400_000, 300.0);
        request.settings.ads_per_segment = 2;
        request.settings.draws = 1;
        request.settings.option_repeat = 1e-3;
        let plan = make_plan(&engine, &request, &mut rng).unwrap();
        for set in &plan.ad_sets {
            let a = engine.space().decode(set.ads[0].version);
            let b = engine.space().decode(set.ads[1].version);
            assert!((0..components).all(|c| a[c] != b[c]), "{set:?}");
        }
    }

    #[test]
    fn budgets_follow_value_per_dollar_by_the_money_rule() {
        let mut engine = engine(1);
        teach(&mut engine, 30_000);
        // Equal traffic; segment 1 costs four times what the others cost.
        let mut traffic = Traffic::new(3, None);
        let mut costs = CostModel::new(3);
        for i in 0..30_000i64 {
            let segment = (i % 3) as usize;
            let now = i * 10_000;
            traffic.observe(segment, now);
            let cost = if segment == 1 { 0.4 } else { 0.1 };
            costs.observe(segment, crate::pacing::hour_of(now), cost);
        }
        costs.refit();
        let start = 30_000 * 10_000;
        let day = 24 * HOUR_MS;
        // What the day's traffic costs in all: a budget of a fifth of it is priced.
        let opportunities: f64 = traffic.forecast(start, start + day).iter().sum();
        let budget = opportunities * 0.2 / 5.0;
        let mut request = PlanRequest::new(start, start + day, budget);
        request.costs = Some(&costs);
        request.traffic = Some(&traffic);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let plan = make_plan(&engine, &request, &mut rng).unwrap();
        assert!((plan.budget() - budget).abs() < 1e-6 * budget);
        assert!(plan.price_of_money > 0.0, "the budget binds: {plan:?}");
        let b: Vec<f64> = plan.ad_sets.iter().map(|a| a.budget).collect();
        assert!(b[1] < b[0] && b[1] < b[2], "dear segment gets less: {b:?}");
        // A budget above everything worth buying: λ = 0.
        let mut rich = request.clone();
        rich.budget = opportunities * 10.0;
        let plan = make_plan(&engine, &rich, &mut rng).unwrap();
        assert_eq!(plan.price_of_money, 0.0);
        assert!((plan.budget() - rich.budget).abs() < 1e-6 * rich.budget);
    }

    #[test]
    fn a_budget_moves_at_most_the_limit_between_periods() {
        let mut engine = engine(1);
        teach(&mut engine, 30_000);
        let previous = Plan {
            revision: 1,
            start_ms: 0,
            end_ms: 86_400_000,
            ad_sets: (0..3)
                .map(|segment| AdSetPlan {
                    segment,
                    budget: [10.0, 80.0, 10.0][segment],
                    ads: vec![PlannedAd {
                        version: 0,
                        share: 1.0,
                    }],
                })
                .collect(),
            price_of_money: 0.0,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        // Twice the total: each ad set within (1 ± 0.2) of twice its budget.
        let mut request = PlanRequest::new(86_400_000, 2 * 86_400_000, 200.0);
        request.previous = Some(&previous);
        request.settings.max_budget_move = 0.2;
        let plan = make_plan(&engine, &request, &mut rng).unwrap();
        assert!((plan.budget() - 200.0).abs() < 1e-9);
        for set in &plan.ad_sets {
            let before = 2.0 * previous.ad_sets[set.segment].budget;
            assert!(
                set.budget >= 0.8 * before - 1e-9 && set.budget <= 1.2 * before + 1e-9,
                "{} vs {before}",
                set.budget
            );
        }
        // Without a limit the money rule moves the budgets much further (the segments
        // are alike: toward a third each).
        request.settings.max_budget_move = f64::INFINITY;
        let free = make_plan(&engine, &request, &mut rng).unwrap();
        assert!(free.ad_sets[1].budget < 0.8 * 160.0, "{free:?}");
    }

    #[test]
    fn requests_are_refused_with_the_field_and_what_is_accepted() {
        let engine = engine(1);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let cases: Vec<(PlanRequest<'_>, &str)> = vec![
            (
                PlanRequest {
                    settings: PlanSettings {
                        ads_per_segment: 0,
                        ..PlanSettings::default()
                    },
                    ..PlanRequest::new(0, 10, 1.0)
                },
                "ads_per_segment",
            ),
            (
                PlanRequest {
                    settings: PlanSettings {
                        draws: 0,
                        ..PlanSettings::default()
                    },
                    ..PlanRequest::new(0, 10, 1.0)
                },
                "draws",
            ),
            (
                PlanRequest {
                    settings: PlanSettings {
                        draw_scale: Some(0.0),
                        ..PlanSettings::default()
                    },
                    ..PlanRequest::new(0, 10, 1.0)
                },
                "draw_scale",
            ),
            (
                PlanRequest {
                    settings: PlanSettings {
                        draw_scale: Some(f64::INFINITY),
                        ..PlanSettings::default()
                    },
                    ..PlanRequest::new(0, 10, 1.0)
                },
                "draw_scale",
            ),
            (PlanRequest::new(10, 10, 1.0), "end_ms"),
            (PlanRequest::new(10, 5, 1.0), "end_ms"),
            (PlanRequest::new(0, 10, -1.0), "budget"),
            (PlanRequest::new(0, 10, f64::NAN), "budget"),
            (
                PlanRequest {
                    settings: PlanSettings {
                        min_exploration_share: 1.5,
                        ..PlanSettings::default()
                    },
                    ..PlanRequest::new(0, 10, 1.0)
                },
                "min_exploration_share",
            ),
            (
                PlanRequest {
                    settings: PlanSettings {
                        max_budget_move: 0.0,
                        ..PlanSettings::default()
                    },
                    ..PlanRequest::new(0, 10, 1.0)
                },
                "max_budget_move",
            ),
            (
                PlanRequest {
                    settings: PlanSettings {
                        min_roas: Some(-1.0),
                        ..PlanSettings::default()
                    },
                    ..PlanRequest::new(0, 10, 1.0)
                },
                "min_roas",
            ),
            (
                PlanRequest {
                    settings: PlanSettings {
                        ad_exploration_share: Some(-0.1),
                        ..PlanSettings::default()
                    },
                    ..PlanRequest::new(0, 10, 1.0)
                },
                "ad_exploration_share",
            ),
            (
                PlanRequest {
                    settings: PlanSettings {
                        ad_exploration_share: Some(1.5),
                        ..PlanSettings::default()
                    },
                    ..PlanRequest::new(0, 10, 1.0)
                },
                "ad_exploration_share",
            ),
            (
                PlanRequest {
                    settings: PlanSettings {
                        option_repeat: 0.0,
                        ..PlanSettings::default()
                    },
                    ..PlanRequest::new(0, 10, 1.0)
                },
                "option_repeat",
            ),
            (
                PlanRequest {
                    settings: PlanSettings {
                        option_repeat: 1.5,
                        ..PlanSettings::default()
                    },
                    ..PlanRequest::new(0, 10, 1.0)
                },
                "option_repeat",
            ),
            (
                PlanRequest {
                    settings: PlanSettings {
                        option_repeat: f64::NAN,
                        ..PlanSettings::default()
                    },
                    ..PlanRequest::new(0, 10, 1.0)
                },
                "option_repeat",
            ),
        ];
        for (request, field) in cases {
            let message = make_plan(&engine, &request, &mut rng)
                .unwrap_err()
                .to_string();
            assert!(
                message.starts_with(field) && message.contains("accepted"),
                "{message}"
            );
        }
        // A budget of 0 is a plan of nothing to spend.
        let plan = make_plan(&engine, &PlanRequest::new(0, 10, 0.0), &mut rng).unwrap();
        assert_eq!(plan.budget(), 0.0);
    }

    #[test]
    fn ad_names_round_trip_and_bad_ones_are_refused() {
        for (campaign, revision, version) in [
            ("spring", 1, 0),
            ("spring-appeal-2026", 12, 987_654_321_012),
            ("a", u32::MAX, u64::MAX),
            ("x--y-", 3, 4),
        ] {
            let name = ad_name(campaign, revision, version);
            assert_eq!(
                parse_ad_name(&name).unwrap(),
                (campaign.to_owned(), revision, version)
            );
        }
        assert_eq!(ad_name("spring-appeal", 2, 17), "tla-spring-appeal-2-17");
        for bad in [
            "spring-1-2",
            "tla-",
            "tla-1-2",
            "tla--1-2",
            "tla-spring-1-",
            "tla-spring-x-2",
            "tla-spring-1-+2",
            "tla-spring-99999999999-2",
            "tla-spring-1-99999999999999999999999",
        ] {
            let error = parse_ad_name(bad).unwrap_err();
            assert!(error.to_string().contains("accepted"), "{error}");
            assert_eq!(error.name, bad);
        }
    }

    #[test]
    fn results_are_checked_field_by_field() {
        let good = AdResult {
            segment: 0,
            version: 3,
            impressions: 100,
            clicks: 10,
            conversions: 2,
            value: 50.0,
            spend: 12.5,
        };
        assert_eq!(good.check(), Ok(()));
        let cases = [
            (
                AdResult {
                    value: -1.0,
                    ..good
                },
                "value",
            ),
            (
                AdResult {
                    value: f64::INFINITY,
                    ..good
                },
                "value",
            ),
            (
                AdResult {
                    spend: -0.01,
                    ..good
                },
                "spend",
            ),
            (
                AdResult {
                    spend: f64::NAN,
                    ..good
                },
                "spend",
            ),
            (
                AdResult {
                    clicks: 101,
                    ..good
                },
                "clicks",
            ),
            (
                AdResult {
                    conversions: 101,
                    ..good
                },
                "conversions",
            ),
        ];
        for (result, field) in cases {
            let message = result.check().unwrap_err().to_string();
            assert!(
                message.starts_with(field) && message.contains("accepted"),
                "{message}"
            );
        }
        let mut engine = engine(1);
        let bytes = engine.snapshot();
        for (result, field) in [
            (AdResult { segment: 3, ..good }, "segment"),
            (
                AdResult {
                    version: 1_000,
                    ..good
                },
                "version",
            ),
        ] {
            let message = engine
                .learn_results(&[good, result], 0)
                .unwrap_err()
                .to_string();
            assert!(message.starts_with(field), "{message}");
        }
        assert_eq!(engine.snapshot(), bytes, "a refused batch learns nothing");
        engine.learn_results(&[good], 0).unwrap();
        let counts = engine.version_counts()[&(0, 3)];
        assert_eq!(
            (counts.impressions, counts.clicks, counts.conversions),
            (100, 10, 2)
        );
        assert!((counts.value - 50.0).abs() < 1e-9 && counts.spend == 12.5);
    }

    /// Aggregates against the same events one by one, in the order they happened, and
    /// beside it the same events one by one in another order (how much the order alone
    /// moves the model): the posterior mean value per impression of every (segment,
    /// version), the best version by posterior mean, the value model's noise. The
    /// figures are in `docs/platform.md`.
    #[test]
    fn learning_aggregates_is_close_to_learning_the_events_one_by_one() {
        let mut one_by_one = engine(1);
        let mut shuffled = engine(1);
        let mut aggregated = engine(1);
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let allowed: Vec<u64> = (0..one_by_one.space().total())
            .filter(|&v| one_by_one.space().is_allowed(v))
            .collect();
        let rate = |s: usize, v: u64| 0.01 + 0.004 * ((v * 7 + s as u64 * 3) % 11) as f64;
        // Six "days" of 20,000 impressions, each reported as aggregates.
        for day in 0..6u64 {
            let at = day * 86_400_000;
            let mut totals = std::collections::BTreeMap::new();
            let mut events = Vec::new();
            for _ in 0..20_000 {
                let segment = rand::Rng::random_range(&mut rng, 0..3usize);
                let version = allowed[rand::Rng::random_range(&mut rng, 0..allowed.len())];
                let entry = totals.entry((segment, version)).or_insert(AdResult {
                    segment,
                    version,
                    impressions: 0,
                    clicks: 0,
                    conversions: 0,
                    value: 0.0,
                    spend: 0.0,
                });
                entry.impressions += 1;
                let mut amount = None;
                if rand::Rng::random::<f64>(&mut rng) < rate(segment, version) {
                    let z: f64 = StandardNormal.sample(&mut rng);
                    let a = (25f64.ln() + 0.1 * segment as f64 + 0.6 * z).exp();
                    entry.conversions += 1;
                    entry.value += a;
                    amount = Some(a);
                }
                events.push((segment, version, amount));
            }
            let learn = |engine: &mut Engine, events: &[(usize, u64, Option<f64>)]| {
                for &(segment, version, amount) in events {
                    engine.learn_at(segment, version, Feedback::Impression, at);
                    if amount.is_some() {
                        engine.learn_at(segment, version, Feedback::Conversion { amount }, at);
                    }
                }
            };
            learn(&mut one_by_one, &events);
            rand::seq::SliceRandom::shuffle(events.as_mut_slice(), &mut rng);
            learn(&mut shuffled, &events);
            let results: Vec<AdResult> = totals.into_values().collect();
            aggregated.learn_results(&results, at).unwrap();
        }
        let compare = |other: &Engine| {
            let mut worst: f64 = 0.0;
            let mut same_best = 0;
            for segment in 0..3 {
                let objective = |e: &Engine, v: u64| e.sampler().expected_objective(segment, v);
                for &v in &allowed {
                    let (a, b) = (objective(&one_by_one, v), objective(other, v));
                    worst = worst.max((b / a - 1.0).abs());
                }
                let best = |e: &Engine| {
                    allowed
                        .iter()
                        .copied()
                        .max_by(|&x, &y| objective(e, x).total_cmp(&objective(e, y)))
                        .unwrap()
                };
                same_best += usize::from(best(&one_by_one) == best(other));
            }
            (worst, same_best)
        };
        let (worst, same_best) = compare(&aggregated);
        let (order, order_best) = compare(&shuffled);
        let noise = |e: &Engine| e.sampler().value().unwrap().noise_variance().sqrt();
        eprintln!(
            "aggregates vs one by one: largest relative difference of a posterior mean value per impression {worst:.4}, same best version in {same_best} of 3 segments; another order one by one: {order:.4}, {order_best} of 3; value noise sd {:.3} one by one, {:.3} aggregated",
            noise(&one_by_one),
            noise(&aggregated)
        );
        // About what the order of the events alone moves, and the same ranking.
        assert!(
            worst < 0.08 && worst < 2.0 * order,
            "{worst} (order {order})"
        );
        assert_eq!(same_best, 3);
        let (a, b) = (one_by_one.segment_counts(), aggregated.segment_counts());
        for (x, y) in a.iter().zip(b) {
            assert_eq!(
                (x.impressions, x.conversions),
                (y.impressions, y.conversions)
            );
            assert!((x.value - y.value).abs() < 1e-6 * x.value);
        }
    }
}
