//! The campaign report: what was served, what it raised, what won and how sure the
//! model is, and what the adaptive policy earned against an even split and against the
//! best single version.
//!
//! [`build`] reads an [`Engine`] (the served counts and the posterior) and its
//! [`Campaign`]; [`lift`] reads a log of decisions with their propensities and rewards.
//! Both are pure: randomness is passed in, nothing is read from the outside. The maths
//! and every field are written out in `docs/reports.md`.
//!
//! # Posterior quantities
//!
//! Every credible interval, probability of being best and expected loss comes from the
//! same `draws` Monte Carlo draws of the model's weights (stated in the report as
//! [`Report::draws`]). In one draw every conversion-model weight is drawn from its
//! Gaussian belief and every expected donation `E[amount | conversion]` from the
//! value model; then:
//!
//! - a **version** `v` in segment `s` has rate `Phi(x_sv / beta)` where `x_sv` is the
//!   sum of its active drawn weights (bias, segment, each option's main effect and
//!   segment interaction, each modelled pair), and value per impression
//!   `rate * amount(s, ask option of v)`;
//! - the **segment-average version** of `s` replaces each component's contribution by
//!   its average over that component's options, and each pair's by the average over the
//!   pair matrix: `x_s = bias + segment_s + sum_k mean_o (main_ko + inter_kso) +
//!   sum_pairs mean(pair)`; its amount is the average over ask options;
//! - an **option** `o` of component `k` is the segment-average version with component
//!   `k` pinned to `o` (its main effect and segment interaction, the pair terms that
//!   involve `k` averaged over the other component only), and the amount of `o` when `k`
//!   carries the ask; then averaged over segments weighted by served traffic (the
//!   spec's shares before any traffic).
//!
//! Posterior means, 2.5% and 97.5% quantiles are those of the draws. The probability
//! of being best is the share of draws in which an item has the highest objective
//! (value per impression when the objective is value, otherwise the rate) among its
//! rivals; the expected loss is the mean over draws of `max(rivals) - item`.

use crate::engine::{Counts, Engine};
use crate::ope::adaptive::{
    AdaptiveAipw, Stabilizer, StabilizerState, default_half_life, stabilizing_weight,
};
use crate::ope::direct::ShrunkMeanModel;
use crate::ope::targets::TargetProbabilities;
use crate::ope::{self, Estimate, LoggedRow, OpeError, Z95};
use crate::policy::factorized::{FactorizedSampler, FactorizedSettings};
use crate::spec::{Campaign, FlightPlan};
use crate::stats;
use rand::Rng;
use rand_distr::StandardNormal;
use std::collections::BTreeMap;

/// Default number of Monte Carlo draws of the report's posterior (probability of being
/// best, expected loss). Not the policy's Thompson draws per decision distribution
/// ([`crate::policy::campaign::DEFAULT_DRAWS`]).
pub const DEFAULT_POSTERIOR_DRAWS: usize = 1000;

/// How a report is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportSettings {
    /// Monte Carlo draws of the posterior.
    pub draws: usize,
    /// Leading versions listed per segment.
    pub leaders: usize,
    /// Most (segment, version) rows listed, by impressions.
    pub max_versions: usize,
}

impl Default for ReportSettings {
    fn default() -> Self {
        Self {
            draws: DEFAULT_POSTERIOR_DRAWS,
            leaders: 5,
            max_versions: 100,
        }
    }
}

/// A posterior summary: mean and 95% equal-tailed credible interval of the draws.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Interval {
    /// Mean of the draws.
    pub mean: f64,
    /// 2.5% quantile of the draws.
    pub lower: f64,
    /// 97.5% quantile of the draws.
    pub upper: f64,
}

/// A campaign report.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Report {
    /// Campaign id (set by the server; null from [`build`]).
    #[cfg_attr(feature = "openapi", schema(required))]
    pub campaign: Option<String>,
    /// Campaign name from the spec.
    pub name: String,
    /// What the campaign maximizes: `value`, `conversions` or `clicks`.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::design::Objective))]
    pub objective: String,
    /// Events the model has learned.
    pub events_learned: u64,
    /// Monte Carlo draws behind every interval, P(best) and expected loss.
    pub draws: usize,
    /// Credible level of every interval (0.95).
    pub credible_level: f64,
    /// The campaign in the story's terms.
    pub summary: Summary,
    /// Per component, the option leaderboard.
    pub components: Vec<ComponentReport>,
    /// Per segment, counts, the segment-average version and the leading versions.
    pub segments: Vec<SegmentReport>,
    /// The most served (segment, version) pairs.
    pub versions: VersionTable,
    /// Value against an even split and against the best single version, from the
    /// logged propensities; absent when no decision log was read.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub lift: Option<Lift>,
    /// Why the lift section is absent although the decision log had rows (left out of
    /// the JSON when there is nothing to explain).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub lift_unavailable: Option<String>,
    /// The corrections of the campaign's events (retractions and new amounts), in the
    /// order they were made, as audited; the model and the lift have learned the
    /// events as corrected. Set by the server; left out of the JSON when there are none.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Vec::is_empty")
    )]
    pub corrections: Vec<ReportCorrection>,
    /// The money: spend against the plan, return per dollar, cost per donor, spend behind
    /// versions that ask to act, spend per segment.
    #[cfg_attr(feature = "serde", serde(default))]
    pub money: Money,
    /// How the model forgets: the setting and the rate in force.
    #[cfg_attr(feature = "serde", serde(default))]
    pub forgetting: ReportForgetting,
    /// The policy against its holdout ([`crate::holdout`]): value per impression and per
    /// dollar in each arm, the lift with its fixed-horizon interval and its confidence
    /// sequence valid at every look. Set by the server from the decision log for a
    /// campaign with a `holdout`; left out of the JSON otherwise.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub holdout: Option<crate::holdout::HoldoutLift>,
}

/// How a campaign's model forgets old events (the spec's `forgetting`,
/// `docs/models.md`).
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportForgetting {
    /// The setting: `auto`, `off`, or a half-life such as `3d`.
    pub setting: String,
    /// The half-life in force, which decisions draw from: `off` (no forgetting) or a
    /// half-life such as `4d`. Under `auto`, the candidate with the lowest discounted
    /// log-loss on the even split's share of the traffic.
    pub in_force: String,
    /// Under `auto`: times the rate in force changed.
    pub switches: u64,
    /// Under `auto`: each candidate half-life and its discounted log-loss (lower
    /// predicts better).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Vec::is_empty")
    )]
    pub candidates: Vec<ForgettingCandidate>,
}

/// One half-life `auto` weighs.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ForgettingCandidate {
    /// `off` or a half-life such as `4d`.
    pub half_life: String,
    /// Discounted prequential log-loss, nats.
    pub log_loss: f64,
}

/// The forgetting section of a report, from the engine's model.
pub fn forgetting(engine: &Engine) -> ReportForgetting {
    use crate::model::forgetting::half_life_text;
    let candidates = engine.sampler().forgetting();
    let listed = candidates.candidates();
    ReportForgetting {
        setting: candidates.setting().to_string(),
        in_force: half_life_text(candidates.half_life_in_force()),
        switches: candidates.switches(),
        candidates: if listed.len() > 1 {
            listed
                .into_iter()
                .map(|(half_life, log_loss)| ForgettingCandidate {
                    half_life: half_life_text(half_life),
                    log_loss,
                })
                .collect()
        } else {
            Vec::new()
        },
    }
}

/// The money of a campaign: what it spent (cost events tied to decisions, and spend
/// reports that are not), against the budget and the even plan of its flight.
///
/// Built by [`money`]; [`build`] fills it from the engine and the spec's flight alone
/// (no spend reports, no plan: it reads no clock), and the server rebuilds it with the
/// budget in force, the stored spend reports and the time of the report.
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = ReportMoney))]
pub struct Money {
    /// Everything spent: `attributed_spend + unattributed_spend`.
    pub spend: f64,
    /// Spend of the cost events, each tied to a decision (as learned, corrections
    /// applied).
    pub attributed_spend: f64,
    /// Spend of the spend reports: per segment and period, tied to no decision.
    pub unattributed_spend: f64,
    /// The budget of the flight in force (the spec's, or its latest change); null
    /// without a flight.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub budget: Option<f64>,
    /// The daily cap in force; null without one.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub daily_cap: Option<f64>,
    /// `budget - spend` (negative when spend went past the budget); null without a
    /// flight.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub budget_left: Option<f64>,
    /// The time the plan is computed at, ms since the Unix epoch; null without a flight
    /// or when no time was given (a report built without a clock).
    #[cfg_attr(feature = "openapi", schema(required))]
    pub as_of: Option<i64>,
    /// Share of the flight elapsed at `as_of`, from 0 to 1; null before the flight
    /// starts, without a flight or without `as_of`.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub flight_elapsed: Option<f64>,
    /// What the plan says should be spent by `as_of`: the budget times the elapsed
    /// share of the flight (time-even); null when `flight_elapsed` is.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub spend_plan: Option<f64>,
    /// `100 * spend / spend_plan`; null when the plan is null or 0.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub spend_vs_plan_pct: Option<f64>,
    /// The least value raised per unit of spend the flight asks for; null when unset.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub min_roas: Option<f64>,
    /// Donations raised per unit of spend: `donations / spend`; null when spend is 0.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub value_per_dollar: Option<f64>,
    /// `spend / donors`; null when there is no donor.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub cost_per_donor: Option<f64>,
    /// Share of the attributed spend (cost events) behind versions that ask to act;
    /// null when the attributed spend is 0. Spend reports name no version and are not
    /// in it (`unattributed_spend`).
    #[cfg_attr(feature = "openapi", schema(required))]
    pub acting_spend_share: Option<f64>,
    /// Spend per segment, in the spec's order.
    pub segments: Vec<SegmentMoney>,
    /// The price of money in force (a campaign with a flight, as the running service
    /// paces it, `docs/pacing.md`): the value a dollar must buy to be spent now; at
    /// the margin, about what the next dollar buys. Null without a flight, or in a
    /// report read from a data directory (the pacing lives in the service).
    #[cfg_attr(feature = "openapi", schema(required))]
    #[cfg_attr(feature = "serde", serde(default))]
    pub price_of_money: Option<f64>,
    /// The price of money in words ("the next $1 buys about $2.10 of donations");
    /// null when it is.
    #[cfg_attr(feature = "openapi", schema(required))]
    #[cfg_attr(feature = "serde", serde(default))]
    pub price_of_money_text: Option<String>,
    /// The changes of the budget and daily cap of the running campaign, oldest first,
    /// as audited; the last one is in force. Set by the server; left out of the JSON
    /// when there are none.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Vec::is_empty")
    )]
    pub budget_changes: Vec<ReportBudgetChange>,
}

/// One change of a running campaign's budget and daily cap, as the report lists it.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportBudgetChange {
    /// The budget before the change.
    pub old_budget: f64,
    /// The budget after it.
    pub new_budget: f64,
    /// The daily cap before; null for none.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub old_daily_cap: Option<f64>,
    /// The daily cap after; null for none.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub new_daily_cap: Option<f64>,
    /// What the campaign had spent when the change was made.
    pub spent: f64,
    /// Why, as given by whoever asked.
    pub reason: String,
    /// The id of the API key that asked.
    pub key_id: String,
    /// When, ms since the Unix epoch.
    pub at: i64,
}

/// The spend of one segment.
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = ReportSegmentMoney))]
pub struct SegmentMoney {
    /// Segment name.
    pub segment: String,
    /// `attributed_spend + unattributed_spend`.
    pub spend: f64,
    /// Spend of the segment's cost events.
    pub attributed_spend: f64,
    /// Spend of the segment's spend reports.
    pub unattributed_spend: f64,
}

/// What [`money`] needs beyond the campaign and its engine.
#[derive(Debug, Clone, Copy, Default)]
pub struct MoneyInputs<'a> {
    /// The flight in force (budget and daily cap possibly changed since the spec).
    pub flight: Option<FlightPlan>,
    /// The spend reports' amounts summed per segment, in the spec's order (shorter
    /// or empty: 0 for the segments left out).
    pub reported_by_segment: &'a [f64],
    /// The time to compute the plan at, ms since the Unix epoch.
    pub now_ms: Option<i64>,
}

/// A ratio, or null when it is not a finite number.
fn finite(ratio: f64) -> Option<f64> {
    ratio.is_finite().then_some(ratio)
}

/// The money section from the engine's counts (cost events, donations, donors) and
/// `inputs`. Pure: the time comes in as a number.
pub fn money(campaign: &Campaign, engine: &Engine, inputs: &MoneyInputs<'_>) -> Money {
    let names = &campaign.design().segment_names;
    let segments: Vec<SegmentMoney> = names
        .iter()
        .zip(engine.segment_counts())
        .enumerate()
        .map(|(s, (name, counts))| {
            let reported = inputs.reported_by_segment.get(s).copied().unwrap_or(0.0);
            SegmentMoney {
                segment: name.clone(),
                spend: (counts.spend + reported).min(f64::MAX),
                attributed_spend: counts.spend,
                unattributed_spend: reported,
            }
        })
        .collect();
    let summary = summary(campaign, engine);
    let attributed = summary.spend;
    // A fold from +0: an empty `sum` of floats is -0.
    let unattributed = inputs
        .reported_by_segment
        .iter()
        .fold(0.0, |sum, amount| sum + amount)
        .min(f64::MAX);
    let spend = (attributed + unattributed).min(f64::MAX);
    let flight = inputs.flight;
    let flight_elapsed = flight
        .zip(inputs.now_ms)
        .and_then(|(flight, now)| flight.elapsed_share(now));
    let spend_plan = flight
        .zip(flight_elapsed)
        .map(|(flight, share)| flight.budget * share);
    Money {
        spend,
        attributed_spend: attributed,
        unattributed_spend: unattributed,
        budget: flight.map(|f| f.budget),
        daily_cap: flight.and_then(|f| f.daily_cap),
        budget_left: flight.map(|f| f.budget - spend),
        as_of: inputs.now_ms.filter(|_| flight.is_some()),
        flight_elapsed,
        spend_plan,
        spend_vs_plan_pct: spend_plan
            .filter(|plan| *plan > 0.0)
            .and_then(|plan| finite(100.0 * spend / plan)),
        min_roas: flight.and_then(|f| f.min_roas),
        value_per_dollar: (spend > 0.0)
            .then(|| summary.donations / spend)
            .and_then(finite),
        cost_per_donor: (summary.donors > 0).then(|| spend / summary.donors as f64),
        acting_spend_share: summary.acting_share_spend,
        segments,
        price_of_money: None,
        price_of_money_text: None,
        budget_changes: Vec::new(),
    }
}

/// One correction of an event, as the report lists it.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportCorrection {
    /// The corrected event's id.
    pub event_id: String,
    /// The corrected event's type: `impression`, `click`, `conversion` or `cost`.
    pub event_type: String,
    /// `retract` (learned as if never sent) or `correct` (a new value).
    pub action: String,
    /// The event's value before this correction; null when that was a conversion's
    /// unknown amount (sent without one), which is not 0.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub old_value: Option<f64>,
    /// The value after it; null for a retraction.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub new_value: Option<f64>,
    /// Why, as given by whoever asked.
    pub reason: String,
    /// The id of the API key that asked.
    pub key_id: String,
    /// When, ms since the Unix epoch.
    pub at: i64,
}

/// The campaign in the story's terms.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = ReportSummary))]
pub struct Summary {
    /// Versions the spec defines (after exclusions).
    pub versions_defined: u64,
    /// Versions defined that ask the reader to act.
    pub acting_versions_defined: u64,
    /// `acting_versions_defined / versions_defined`.
    pub acting_share_defined: f64,
    /// Distinct versions with at least one impression (any segment).
    pub versions_served: u64,
    /// Share of the versions served that ask to act (null when none was served).
    #[cfg_attr(feature = "openapi", schema(required))]
    pub acting_share_served: Option<f64>,
    /// Share of spend behind versions that ask to act (null when spend is 0).
    #[cfg_attr(feature = "openapi", schema(required))]
    pub acting_share_spend: Option<f64>,
    /// Impressions.
    pub impressions: u64,
    /// Clicks.
    pub clicks: u64,
    /// Spend.
    pub spend: f64,
    /// Donors: conversions.
    pub donors: u64,
    /// Donations: the sum of conversion amounts, as raised.
    pub donations: f64,
    /// `spend / donors` (null when there is no donor).
    #[cfg_attr(feature = "openapi", schema(required))]
    pub cost_per_donor: Option<f64>,
    /// `donations / spend` (null when spend is 0, or the ratio is too large for a
    /// number).
    #[cfg_attr(feature = "openapi", schema(required))]
    pub value_per_dollar: Option<f64>,
    /// Donors whose conversion carried no amount (counted in `donors`, not in
    /// `donations`).
    #[cfg_attr(feature = "serde", serde(default))]
    pub donors_amount_unknown: u64,
    /// Donations as the value model learned them: each amount after the model's
    /// heavy-tail cap (`docs/models.md`); below `donations` when an outlier was capped.
    #[cfg_attr(feature = "serde", serde(default))]
    pub donations_learned: f64,
}

/// Posterior of a rate and of value per impression.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PosteriorStats {
    /// Conversion rate (click rate when the objective is clicks).
    pub rate: Interval,
    /// Value per impression: rate times expected donation (null without a value model,
    /// i.e. when the objective is not value).
    #[cfg_attr(feature = "openapi", schema(required))]
    pub value_per_impression: Option<Interval>,
}

/// The option leaderboard of one component.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ComponentReport {
    /// Component name.
    pub component: String,
    /// Its options, in declared order.
    pub options: Vec<OptionRow>,
}

/// One option of a component.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OptionRow {
    /// Option name.
    pub option: String,
    /// Whether the option asks the reader to act.
    pub asks_to_act: bool,
    /// Served counts of versions carrying the option.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub counts: Counts,
    /// Posterior of the option on the segment-average version, traffic-weighted.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub posterior: PosteriorStats,
    /// Probability that the option is the best of its component.
    pub p_best: f64,
    /// Expected objective lost by choosing it over the best of its component.
    pub expected_loss: f64,
}

/// One segment.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SegmentReport {
    /// Segment name.
    pub segment: String,
    /// Traffic weight used when averaging over segments.
    pub weight: f64,
    /// Served counts.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub counts: Counts,
    /// Posterior of the segment-average version.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub posterior: PosteriorStats,
    /// Versions served in the segment with the highest posterior mean objective, best
    /// first; P(best) and expected loss among them.
    pub leaders: Vec<VersionRow>,
}

/// One version in one segment.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionRow {
    /// Segment name.
    pub segment: String,
    /// Version index.
    pub version: u64,
    /// The version as text.
    pub text: String,
    /// Whether it asks the reader to act.
    pub asks_to_act: bool,
    /// Served counts in the segment.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub counts: Counts,
    /// Posterior in the segment.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub posterior: PosteriorStats,
    /// Probability of being best among the segment's leaders (null outside them).
    #[cfg_attr(feature = "openapi", schema(required))]
    pub p_best: Option<f64>,
    /// Expected loss against the segment's leaders (null outside them).
    #[cfg_attr(feature = "openapi", schema(required))]
    pub expected_loss: Option<f64>,
}

/// The most served (segment, version) pairs.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionTable {
    /// (segment, version) pairs with at least one impression.
    pub served_pairs: u64,
    /// Cap on the rows listed.
    pub cap: usize,
    /// The rows, by impressions descending, then segment and version.
    pub rows: Vec<VersionRow>,
}

/// Traffic weight of each segment: served impressions, or the spec's shares before any.
fn segment_weights(campaign: &Campaign, engine: &Engine) -> Vec<f64> {
    let total: u64 = engine.segment_counts().iter().map(|c| c.impressions).sum();
    if total == 0 {
        return campaign.segment_shares().to_vec();
    }
    engine
        .segment_counts()
        .iter()
        .map(|c| c.impressions as f64 / total as f64)
        .collect()
}

/// The summary in the story's terms from the served counts.
pub fn summary(campaign: &Campaign, engine: &Engine) -> Summary {
    let mut per_version: BTreeMap<u64, Counts> = BTreeMap::new();
    for (&(_, version), counts) in engine.version_counts() {
        per_version.entry(version).or_default().merge(counts);
    }
    let (mut served, mut acting_served, mut acting_spend) = (0u64, 0u64, 0.0);
    for (&version, counts) in &per_version {
        let acting = campaign.asks_to_act(version);
        if counts.impressions > 0 {
            served += 1;
            acting_served += u64::from(acting);
        }
        if acting {
            acting_spend = (acting_spend + counts.spend).min(f64::MAX);
        }
    }
    let mut total = Counts::default();
    for counts in engine.segment_counts() {
        total.merge(counts);
    }
    let defined = campaign.allowed_versions();
    let acting_defined = campaign.acting_versions();
    Summary {
        versions_defined: defined,
        acting_versions_defined: acting_defined,
        acting_share_defined: if defined > 0 {
            acting_defined as f64 / defined as f64
        } else {
            0.0
        },
        versions_served: served,
        acting_share_served: (served > 0).then(|| acting_served as f64 / served as f64),
        acting_share_spend: (total.spend > 0.0).then(|| acting_spend / total.spend),
        impressions: total.impressions,
        clicks: total.clicks,
        spend: total.spend,
        donors: total.conversions,
        donations: total.value,
        cost_per_donor: (total.conversions > 0).then(|| total.spend / total.conversions as f64),
        value_per_dollar: (total.spend > 0.0)
            .then(|| total.value / total.spend)
            .filter(|ratio| ratio.is_finite()),
        donors_amount_unknown: total.conversions_amount_unknown,
        donations_learned: total.value_learned,
    }
}

/// Draws of a rate and of value per impression, one per Monte Carlo draw.
#[derive(Debug, Clone, Default)]
struct Samples {
    rate: Vec<f64>,
    value: Vec<f64>,
}

impl Samples {
    fn with_capacity(n: usize) -> Self {
        Self {
            rate: Vec::with_capacity(n),
            value: Vec::with_capacity(n),
        }
    }

    /// The objective's draws: value when modelled, else the rate.
    fn objective(&self, has_value: bool) -> &[f64] {
        if has_value { &self.value } else { &self.rate }
    }

    fn stats(&self, has_value: bool) -> PosteriorStats {
        PosteriorStats {
            rate: interval(&self.rate),
            value_per_impression: has_value.then(|| interval(&self.value)),
        }
    }
}

/// Mean and 2.5% / 97.5% quantiles (linear interpolation between order statistics).
fn interval(draws: &[f64]) -> Interval {
    if draws.is_empty() {
        return Interval {
            mean: f64::NAN,
            lower: f64::NAN,
            upper: f64::NAN,
        };
    }
    let mut sorted = draws.to_vec();
    sorted.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        let h = q * (sorted.len() - 1) as f64;
        let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
        sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
    };
    Interval {
        mean: draws.iter().sum::<f64>() / draws.len() as f64,
        lower: quantile(0.025),
        upper: quantile(0.975),
    }
}

/// P(best) and expected loss of each of `items` (each a slice of per-draw objectives of
/// equal length). Ties go to the first item.
pub fn best_and_loss(items: &[&[f64]]) -> Vec<(f64, f64)> {
    let Some(first) = items.first() else {
        return Vec::new();
    };
    let draws = first.len();
    let mut wins = vec![0u64; items.len()];
    let mut loss = vec![0.0; items.len()];
    for d in 0..draws {
        let (mut best, mut best_value) = (0, f64::NEG_INFINITY);
        for (i, item) in items.iter().enumerate() {
            if item[d] > best_value {
                best = i;
                best_value = item[d];
            }
        }
        wins[best] += 1;
        for (i, item) in items.iter().enumerate() {
            loss[i] += best_value - item[d];
        }
    }
    let n = draws.max(1) as f64;
    wins.iter()
        .zip(&loss)
        .map(|(&w, &l)| (w as f64 / n, l / n))
        .collect()
}

/// A (segment, version) whose posterior is drawn.
#[derive(Debug)]
struct Tracked {
    segment: usize,
    version: u64,
    active: Vec<usize>,
    amount_index: usize,
    samples: Samples,
}

/// Builds the report of a campaign from its engine. `rng` feeds the Monte Carlo draws;
/// the same seed, engine and settings give the same report. [`Report::lift`] is left
/// empty: fill it with [`lift`] when a decision log is at hand.
pub fn build<R: Rng + ?Sized>(
    campaign: &Campaign,
    engine: &Engine,
    settings: &ReportSettings,
    rng: &mut R,
) -> Report {
    let design = campaign.design();
    let spec = campaign.spec();
    let space = engine.space();
    let sampler = engine.sampler();
    let conversion = sampler.conversion();
    let layout = conversion.layout();
    let beta = conversion.prior().beta;
    let value_model = sampler.value();
    let has_value = value_model.is_some();
    let ask_component = design
        .ask
        .as_ref()
        .map(|a| a.component)
        .filter(|_| value_model.is_some_and(|v| v.ask_options() > 0));
    let segments = design.segments();
    let components = design.components();
    let weights = segment_weights(campaign, engine);
    let draws = settings.draws.max(1);

    // Leaders per segment: served versions by exact posterior mean objective.
    let mut served_by_segment: Vec<Vec<(f64, u64)>> = vec![Vec::new(); segments];
    let mut served_pairs = 0u64;
    for (&(segment, version), counts) in engine.version_counts() {
        if counts.impressions == 0 {
            continue;
        }
        served_pairs += 1;
        let s = segment as usize;
        served_by_segment[s].push((sampler.expected_objective(s, version), version));
    }
    let mut tracked: Vec<Tracked> = Vec::new();
    let track = |segment: usize, version: u64, tracked: &mut Vec<Tracked>| -> usize {
        if let Some(i) = tracked
            .iter()
            .position(|t| t.segment == segment && t.version == version)
        {
            return i;
        }
        let options = space.decode(version);
        let mut active = Vec::new();
        layout.active_features(segment, &options, &mut active);
        tracked.push(Tracked {
            segment,
            version,
            active,
            amount_index: ask_component.map_or(0, |k| options[k] as usize),
            samples: Samples::with_capacity(draws),
        });
        tracked.len() - 1
    };
    let mut leaders: Vec<Vec<usize>> = Vec::with_capacity(segments);
    for (s, served) in served_by_segment.iter_mut().enumerate() {
        served.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        leaders.push(
            served
                .iter()
                .take(settings.leaders)
                .map(|&(_, v)| track(s, v, &mut tracked))
                .collect(),
        );
    }
    let mut by_impressions: Vec<(&(u32, u64), &Counts)> = engine
        .version_counts()
        .iter()
        .filter(|(_, c)| c.impressions > 0)
        .collect();
    by_impressions.sort_by(|a, b| b.1.impressions.cmp(&a.1.impressions).then(a.0.cmp(b.0)));
    let listed: Vec<usize> = by_impressions
        .iter()
        .take(settings.max_versions)
        .map(|(key, _)| track(key.0 as usize, key.1, &mut tracked))
        .collect();

    // Monte Carlo.
    let option_counts = &layout.option_counts;
    let mut option_samples: Vec<Vec<Samples>> = option_counts
        .iter()
        .map(|&n| vec![Samples::with_capacity(draws); n])
        .collect();
    let mut segment_samples = vec![Samples::with_capacity(draws); segments];
    let prior_weights = conversion.weights();
    let mut w = vec![0.0; prior_weights.len()];
    let amount_len = value_model.map_or(1, |v| v.ask_options().max(1));
    let mut amounts = vec![vec![0.0; amount_len]; segments];
    let mut comp_avg = vec![0.0; components];
    let pairs = &layout.pairs;
    let mut pair_full = vec![0.0; pairs.len()];
    let mut pair_rows: Vec<Vec<f64>> = pairs
        .iter()
        .map(|&(a, _, _)| vec![0.0; option_counts[a]])
        .collect();
    let mut pair_cols: Vec<Vec<f64>> = pairs
        .iter()
        .map(|&(_, b, _)| vec![0.0; option_counts[b]])
        .collect();
    let mut option_rate = vec![0.0; option_counts.iter().sum()];
    let mut option_value = vec![0.0; option_rate.len()];
    let option_base: Vec<usize> = option_counts
        .iter()
        .scan(0, |acc, &n| {
            let start = *acc;
            *acc += n;
            Some(start)
        })
        .collect();
    for _ in 0..draws {
        for (x, belief) in w.iter_mut().zip(prior_weights) {
            *x = belief.draw(rng.sample(StandardNormal));
        }
        if let Some(value) = value_model {
            for (s, out) in amounts.iter_mut().enumerate() {
                value.draw_expected_amounts(s, || rng.sample(StandardNormal), out);
            }
        }
        for (p, &(a, b, offset)) in pairs.iter().enumerate() {
            let (na, nb) = (option_counts[a], option_counts[b]);
            pair_rows[p].iter_mut().for_each(|x| *x = 0.0);
            pair_cols[p].iter_mut().for_each(|x| *x = 0.0);
            let mut total = 0.0;
            for oa in 0..na {
                for ob in 0..nb {
                    let x = w[offset + oa * nb + ob];
                    pair_rows[p][oa] += x / nb as f64;
                    pair_cols[p][ob] += x / na as f64;
                    total += x;
                }
            }
            pair_full[p] = total / (na * nb) as f64;
        }
        option_rate.iter_mut().for_each(|x| *x = 0.0);
        option_value.iter_mut().for_each(|x| *x = 0.0);
        for s in 0..segments {
            let base = w[0] + w[layout.segment_offset + s];
            let option_score = |k: usize, o: usize| {
                let main = w[layout.option_offset[k] + o];
                let inter = layout.segment_interaction_offset[k]
                    .map_or(0.0, |offset| w[offset + s * option_counts[k] + o]);
                main + inter
            };
            for (k, avg) in comp_avg.iter_mut().enumerate() {
                *avg = (0..option_counts[k])
                    .map(|o| option_score(k, o))
                    .sum::<f64>()
                    / option_counts[k] as f64;
            }
            let average_score = base + comp_avg.iter().sum::<f64>() + pair_full.iter().sum::<f64>();
            let average_amount = amounts[s].iter().sum::<f64>() / amounts[s].len() as f64;
            let rate = stats::normal_cdf(average_score / beta);
            segment_samples[s].rate.push(rate);
            segment_samples[s].value.push(rate * average_amount);
            for k in 0..components {
                for o in 0..option_counts[k] {
                    let mut score = average_score - comp_avg[k] + option_score(k, o);
                    for (p, &(a, b, _)) in pairs.iter().enumerate() {
                        if a == k {
                            score += pair_rows[p][o] - pair_full[p];
                        } else if b == k {
                            score += pair_cols[p][o] - pair_full[p];
                        }
                    }
                    let rate = stats::normal_cdf(score / beta);
                    let amount = if ask_component == Some(k) {
                        amounts[s][o]
                    } else {
                        average_amount
                    };
                    option_rate[option_base[k] + o] += weights[s] * rate;
                    option_value[option_base[k] + o] += weights[s] * rate * amount;
                }
            }
        }
        for k in 0..components {
            for o in 0..option_counts[k] {
                option_samples[k][o]
                    .rate
                    .push(option_rate[option_base[k] + o]);
                option_samples[k][o]
                    .value
                    .push(option_value[option_base[k] + o]);
            }
        }
        for t in &mut tracked {
            let score: f64 = t.active.iter().map(|&i| w[i]).sum();
            let rate = stats::normal_cdf(score / beta);
            t.samples.rate.push(rate);
            t.samples
                .value
                .push(rate * amounts[t.segment][t.amount_index]);
        }
    }

    let version_row = |t: &Tracked, best: Option<(f64, f64)>| VersionRow {
        segment: design.segment_names[t.segment].clone(),
        version: t.version,
        text: campaign.render(t.version),
        asks_to_act: campaign.asks_to_act(t.version),
        counts: engine
            .version_counts()
            .get(&(t.segment as u32, t.version))
            .copied()
            .unwrap_or_default(),
        posterior: t.samples.stats(has_value),
        p_best: best.map(|b| b.0),
        expected_loss: best.map(|b| b.1),
    };
    let components_report = (0..components)
        .map(|k| {
            let objectives: Vec<&[f64]> = option_samples[k]
                .iter()
                .map(|s| s.objective(has_value))
                .collect();
            let best = best_and_loss(&objectives);
            ComponentReport {
                component: design.component_names[k].clone(),
                options: spec.components[k]
                    .options
                    .iter()
                    .enumerate()
                    .map(|(o, option)| OptionRow {
                        option: option.name.clone(),
                        asks_to_act: campaign.option_asks_to_act(k, o as u32),
                        counts: engine.option_counts()[k][o],
                        posterior: option_samples[k][o].stats(has_value),
                        p_best: best[o].0,
                        expected_loss: best[o].1,
                    })
                    .collect(),
            }
        })
        .collect();
    let segments_report = (0..segments)
        .map(|s| {
            let objectives: Vec<&[f64]> = leaders[s]
                .iter()
                .map(|&i| tracked[i].samples.objective(has_value))
                .collect();
            let best = best_and_loss(&objectives);
            SegmentReport {
                segment: design.segment_names[s].clone(),
                weight: weights[s],
                counts: engine.segment_counts()[s],
                posterior: segment_samples[s].stats(has_value),
                leaders: leaders[s]
                    .iter()
                    .zip(&best)
                    .map(|(&i, &b)| version_row(&tracked[i], Some(b)))
                    .collect(),
            }
        })
        .collect();
    let rows = listed
        .iter()
        .map(|&i| version_row(&tracked[i], None))
        .collect();
    Report {
        campaign: None,
        name: spec.name.clone(),
        objective: design.objective.as_str().to_string(),
        events_learned: engine.events(),
        draws,
        credible_level: 0.95,
        summary: summary(campaign, engine),
        components: components_report,
        segments: segments_report,
        versions: VersionTable {
            served_pairs,
            cap: settings.max_versions,
            rows,
        },
        lift: None,
        lift_unavailable: None,
        corrections: Vec::new(),
        money: money(
            campaign,
            engine,
            &MoneyInputs {
                flight: campaign.flight().copied(),
                ..MoneyInputs::default()
            },
        ),
        forgetting: forgetting(engine),
        holdout: None,
    }
}

/// A mean per impression with its 95% normal interval.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeanEstimate {
    /// Value per impression.
    pub value: f64,
    /// Standard error; infinite with fewer than two rows (null in JSON).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>, required))]
    pub std_error: f64,
    /// Lower end of the 95% interval; null in JSON when the standard error is infinite.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>, required))]
    pub lower: f64,
    /// Upper end of the 95% interval; null in JSON when the standard error is infinite.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>, required))]
    pub upper: f64,
}

impl MeanEstimate {
    fn from_terms(terms: impl Iterator<Item = f64> + Clone, n: usize) -> Self {
        let nf = n as f64;
        let value = terms.clone().sum::<f64>() / nf;
        let std_error = if n < 2 {
            f64::INFINITY
        } else {
            (terms.map(|x| (x - value) * (x - value)).sum::<f64>() / (nf - 1.0) / nf).sqrt()
        };
        Self {
            value,
            std_error,
            lower: value - Z95 * std_error,
            upper: value + Z95 * std_error,
        }
    }
}

/// The realized policy against one counterfactual policy.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Comparison {
    /// SNIPS estimate of the counterfactual's value per impression (null when it
    /// cannot be estimated; see `error`).
    #[cfg_attr(feature = "openapi", schema(required))]
    pub estimate: Option<Estimate>,
    /// Realized minus the estimate, per impression, with its interval.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub lift: Option<MeanEstimate>,
    /// Why the counterfactual could not be estimated.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub error: Option<String>,
    /// Adaptively weighted AIPW estimate of the counterfactual's value per impression
    /// (`tla_core::ope::adaptive`: online shrunk-mean direct model, stabilizing weights
    /// from the log's earlier rows), which keeps its coverage under adaptive logging;
    /// null when it cannot be estimated or has no finite interval yet.
    #[cfg_attr(feature = "serde", serde(default))]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub aw_aipw: Option<Estimate>,
    /// Realized minus the AW-AIPW estimate, per impression, with its interval.
    #[cfg_attr(feature = "serde", serde(default))]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub aw_aipw_lift: Option<MeanEstimate>,
}

/// Value of the policy that ran against an even split and the best single version.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Lift {
    /// Decisions evaluated.
    pub rows: usize,
    /// Cap on the decisions read (set by the caller; null when none).
    #[cfg_attr(feature = "openapi", schema(required))]
    pub rows_cap: Option<usize>,
    /// Whether the cap cut the log short (only the first `rows_cap` decisions count).
    pub capped: bool,
    /// Mean reward per decision of the policy that ran.
    pub realized: MeanEstimate,
    /// Against every allowed version with probability `1 / versions_defined`.
    pub even_split: Comparison,
    /// Against always serving each segment's top posterior-mean version as a model of
    /// the log's first half picks it, scored on the second half (its `lift` is the
    /// second half's realized value minus the estimate).
    pub best_single_version: Comparison,
    /// The best single version per segment, in segment order.
    pub best_versions: Vec<u64>,
}

/// Compares the realized value of a log with a target policy by SNIPS; the lift's
/// standard error is that of the paired per-row influence terms
/// `(r_i - R) - w_i (r_i - V) / mean(w)`. Beside it, by adaptively weighted AIPW
/// ([`aw_aipw_comparison`]).
fn compare(rows: &[LoggedRow], target: TargetProbabilities<'_>) -> Comparison {
    let estimate = ope::weights(rows, |s, a| target.probability(s, a)).and_then(|w| {
        let snips = ope::snips(rows, |s, a| target.probability(s, a))?;
        Ok((w, snips))
    });
    let (aw_aipw, aw_aipw_lift) = aw_aipw_comparison(rows, target)
        // Only an estimate with an interval: one that claims nothing (its weights all 0
        // so far) is left out, like a comparison that cannot be made.
        .filter(|(e, l)| {
            e.value.is_finite()
                && l.value.is_finite()
                && e.std_error.is_finite()
                && l.std_error.is_finite()
        })
        .unzip();
    match estimate {
        Ok((w, snips)) => {
            let n = rows.len();
            let realized = rows.iter().map(|r| r.reward).sum::<f64>() / n as f64;
            let mean_w = w.iter().sum::<f64>() / n as f64;
            let terms = rows.iter().zip(&w).map(move |(r, &w)| {
                (r.reward - realized) - w * (r.reward - snips.value) / mean_w
                    + (realized - snips.value)
            });
            let lift = MeanEstimate::from_terms(terms, n);
            if !(snips.value.is_finite() && lift.value.is_finite()) {
                return Comparison {
                    estimate: None,
                    lift: None,
                    error: Some(
                        OpeError::RewardsTooLarge {
                            largest: rows.iter().map(|r| r.reward).fold(0.0, f64::max),
                        }
                        .to_string(),
                    ),
                    aw_aipw: None,
                    aw_aipw_lift: None,
                };
            }
            Comparison {
                estimate: Some(snips),
                lift: Some(lift),
                error: None,
                aw_aipw,
                aw_aipw_lift,
            }
        }
        Err(error) => Comparison {
            estimate: None,
            lift: None,
            error: Some(error.to_string()),
            aw_aipw,
            aw_aipw_lift,
        },
    }
}

/// The adaptively weighted AIPW estimate of `target` on `rows` (in log order; the
/// online shrunk-mean model, weights from the log's earlier rows) and the lift
/// `R - Q` of the realized mean over it. The lift's standard error is the delta
/// method's on the pair: `sqrt(sum_t z_t^2)` with
/// `z_t = (r_t - R) / n - p_s h_t (Γ_t - Q_s) / sum_{s} h - (Q_s - Q) / n` (`s` the
/// row's context, `p_s` its share), at least the estimate's own standard error. `None`
/// when it cannot be estimated.
fn aw_aipw_comparison(
    rows: &[LoggedRow],
    target: TargetProbabilities<'_>,
) -> Option<(Estimate, MeanEstimate)> {
    let contexts = rows.iter().map(|r| r.segment + 1).max()?;
    let square_mass: Vec<f64> = (0..contexts).map(|s| target.square_mass(s)).collect();
    let mut state = StabilizerState::new(Stabilizer::FromLog {
        square_mass: &square_mass,
        half_life: default_half_life(rows.len(), contexts),
    });
    let mut aipw = AdaptiveAipw::new(ShrunkMeanModel::online(contexts, target));
    let mut terms = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let pi = target.probability(row.segment, row.action);
        let moment = state.moment(i, row.segment).ok()?;
        let h = stabilizing_weight(moment);
        let gamma = aipw.push(i, row, pi, moment).ok()?;
        state.learn(row.segment, pi);
        terms.push((row.reward, h, gamma));
    }
    let estimate = aipw.estimate().ok()?;
    let n = rows.len() as f64;
    let realized = rows.iter().map(|r| r.reward).sum::<f64>() / n;
    let value = realized - estimate.value;
    // Per context: its share, Q_s and sum h.
    let mut strata = vec![(0.0, 0.0, 0.0); contexts];
    for (s, p, q, _) in aipw.strata() {
        strata[s].0 = p;
        strata[s].1 = q;
    }
    for (row, &(_, h, _)) in rows.iter().zip(&terms) {
        strata[row.segment].2 += h;
    }
    let std_error = if rows.len() < 2 {
        f64::INFINITY
    } else {
        // The influence of row t on R - Q, with Q = sum_s (n_s / n) Q_s.
        let paired = rows
            .iter()
            .zip(&terms)
            .map(|(row, &(r, h, gamma))| {
                let (p, q, sum_h) = strata[row.segment];
                let within = if sum_h > 0.0 {
                    p * h * (gamma - q) / sum_h
                } else {
                    0.0
                };
                let z = (r - realized) / n - within - (q - estimate.value) / n;
                z * z
            })
            .sum::<f64>();
        // At least the estimate's own variance (with its plug-in floor).
        paired.max(estimate.std_error * estimate.std_error).sqrt()
    };
    Some((
        estimate,
        MeanEstimate {
            value,
            std_error,
            lower: value - Z95 * std_error,
            upper: value + Z95 * std_error,
        },
    ))
}

/// What the policy that ran earned against an even split and against the best single
/// version per segment, from its own log.
///
/// Every row is a decision with the exact propensity the logging policy gave it and
/// its reward (the sum of its conversion values, 0 without one). The realized value is
/// the mean reward; each counterfactual is estimated by self-normalized IPS with target
/// `1 / allowed_versions` (even split) or `1[action = best(segment)]` (best single
/// version). This is unbiased in the limit because every allowed version had a
/// positive propensity in every decision: the exploration floor mixes the uniform
/// distribution over allowed versions into every decision distribution, so the
/// logging policy covers the support of both targets (this needs the spec's
/// `exploration > 0`, the default).
///
/// The best single version is picked on the first half of the log (in log order) and
/// scored on the second half only: a version picked as best on a log and scored on the
/// same log is scored optimistically (it was picked partly for its luck there, and
/// under adaptive logging that luck sits in the early rows, logged with small
/// propensities and so the largest weights). Splitting by time, not by alternate rows,
/// keeps the second half's outcomes out of the pick altogether: under adaptive logging
/// alternate rows are not independent, since each half's outcomes steer the
/// propensities, and so the data, of the other. `chosen_on_first_half` is the best
/// version per segment of a model trained on the first half only
/// ([`best_versions_on_first_half`]); the realized value it is compared with is the
/// second half's. `best` (the picks of the model trained on everything, the versions a
/// team would run) is reported as is. The best single version is rarely logged in a
/// space of millions of versions, so its estimate may be unavailable or wide (see its
/// effective sample size).
pub fn lift(
    rows: &[LoggedRow],
    allowed_versions: u64,
    best: &[u64],
    chosen_on_first_half: &[u64],
) -> Result<Lift, OpeError> {
    if rows.is_empty() {
        return Err(OpeError::EmptyLog);
    }
    let realized = MeanEstimate::from_terms(rows.iter().map(|r| r.reward), rows.len());
    if !realized.value.is_finite() {
        return Err(OpeError::RewardsTooLarge {
            largest: rows.iter().map(|r| r.reward).fold(0.0, f64::max),
        });
    }
    let second = &rows[rows.len() / 2..];
    let best_single_version = if rows.len() < 2 {
        Comparison {
            estimate: None,
            lift: None,
            error: Some("one row cannot be split into two halves".into()),
            aw_aipw: None,
            aw_aipw_lift: None,
        }
    } else {
        // One version per segment; a segment without a pick matches no version.
        let contexts = rows.iter().map(|r| r.segment + 1).max().unwrap_or(0);
        let mut picks = chosen_on_first_half.to_vec();
        picks.resize(picks.len().max(contexts), u64::MAX);
        compare(second, TargetProbabilities::PerContext(&picks))
    };
    Ok(Lift {
        rows: rows.len(),
        rows_cap: None,
        capped: false,
        realized,
        even_split: compare(
            rows,
            TargetProbabilities::Uniform(allowed_versions.max(1) as usize),
        ),
        best_single_version,
        best_versions: best.to_vec(),
    })
}

/// The best single version per segment by posterior mean ([`best_versions`]) of a
/// model of `campaign` trained from its prior on the first half of `rows` (in log
/// order, as [`lift`] splits them): each row is learned as an impression, and as a
/// conversion with its reward when the reward is positive.
///
/// # Panics
/// If a row's segment or version is outside the campaign (rows from its own decision
/// log never are).
pub fn best_versions_on_first_half<R: Rng + ?Sized>(
    campaign: &Campaign,
    rows: &[LoggedRow],
    rng: &mut R,
) -> Vec<u64> {
    let design = campaign.design();
    let mut sampler = FactorizedSampler::new(design, FactorizedSettings::default());
    crate::target::learn_rows(&mut sampler, design, &rows[..rows.len() / 2]);
    best_of(&mut sampler, design.segments(), rng)
}

/// The allowed version with the highest posterior mean objective in each segment.
pub fn best_versions<R: Rng + ?Sized>(engine: &Engine, rng: &mut R) -> Vec<u64> {
    let mut sampler = engine.sampler().clone();
    best_of(&mut sampler, engine.segment_counts().len(), rng)
}

fn best_of<R: Rng + ?Sized>(
    sampler: &mut FactorizedSampler,
    segments: usize,
    rng: &mut R,
) -> Vec<u64> {
    (0..segments)
        .map(|s| sampler.posterior_mean_best(s, rng))
        .collect()
}

#[cfg(all(test, feature = "text"))]
mod tests {
    use super::*;
    use crate::engine::Feedback;
    use crate::spec::CampaignSpec;
    use rand::SeedableRng;

    const SPEC: &str = include_str!("../../../examples/small.toml");

    fn campaign() -> Campaign {
        CampaignSpec::from_toml_str(SPEC)
            .unwrap()
            .validate()
            .unwrap()
    }

    #[test]
    fn money_sets_spend_against_the_flight_and_stays_finite_or_null() {
        let campaign = campaign();
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(3);
        let mut engine = Engine::new(&campaign, &mut rng);
        // Nothing spent, no flight: zeros (never -0) and nulls.
        let empty = money(&campaign, &engine, &MoneyInputs::default());
        assert_eq!(empty.spend.to_bits(), 0.0f64.to_bits());
        assert_eq!(empty.unattributed_spend.to_bits(), 0.0f64.to_bits());
        assert_eq!(
            (empty.budget, empty.spend_plan, empty.as_of),
            (None, None, None)
        );
        assert_eq!((empty.value_per_dollar, empty.cost_per_donor), (None, None));
        assert_eq!(empty.segments.len(), 3);

        let version = (0..campaign.total_versions())
            .find(|&v| campaign.is_allowed(v))
            .unwrap();
        engine.learn(1, version, Feedback::Impression);
        engine.learn(1, version, Feedback::Cost { amount: 30.0 });
        engine.learn(1, version, Feedback::Conversion { amount: Some(90.0) });
        let flight = FlightPlan {
            budget: 1_000.0,
            daily_cap: None,
            start_ms: 0,
            end_ms: 1_000,
            min_roas: Some(2.0),
            hourly_traffic: None,
        };
        let inputs = |now_ms| MoneyInputs {
            flight: Some(flight),
            reported_by_segment: &[10.0, 0.0, 20.0],
            now_ms: Some(now_ms),
        };
        let quarter = money(&campaign, &engine, &inputs(250));
        assert_eq!(
            (
                quarter.spend,
                quarter.attributed_spend,
                quarter.unattributed_spend
            ),
            (60.0, 30.0, 30.0)
        );
        assert_eq!(
            (quarter.budget, quarter.budget_left),
            (Some(1_000.0), Some(940.0))
        );
        assert_eq!(
            (quarter.flight_elapsed, quarter.spend_plan),
            (Some(0.25), Some(250.0))
        );
        assert_eq!(quarter.spend_vs_plan_pct, Some(24.0));
        assert_eq!(
            (quarter.value_per_dollar, quarter.cost_per_donor),
            (Some(1.5), Some(60.0))
        );
        assert_eq!(quarter.min_roas, Some(2.0));
        let acting = campaign.asks_to_act(version);
        assert_eq!(
            quarter.acting_spend_share,
            Some(if acting { 1.0 } else { 0.0 })
        );
        let spends: Vec<(f64, f64, f64)> = quarter
            .segments
            .iter()
            .map(|s| (s.spend, s.attributed_spend, s.unattributed_spend))
            .collect();
        assert_eq!(
            spends,
            [(10.0, 0.0, 10.0), (30.0, 30.0, 0.0), (20.0, 0.0, 20.0)]
        );
        // Before the start there is no plan; at the start it is 0 (no percentage); after
        // the end it is the whole budget.
        let before = money(&campaign, &engine, &inputs(-1));
        assert_eq!(
            (before.flight_elapsed, before.spend_plan, before.as_of),
            (None, None, Some(-1))
        );
        let start = money(&campaign, &engine, &inputs(0));
        assert_eq!(
            (start.spend_plan, start.spend_vs_plan_pct),
            (Some(0.0), None)
        );
        let after = money(&campaign, &engine, &inputs(5_000));
        assert_eq!(
            (after.flight_elapsed, after.spend_plan),
            (Some(1.0), Some(1_000.0))
        );
        // A plan so small the percentage is not a finite number: null.
        let tiny = FlightPlan {
            budget: 1e-310,
            ..flight
        };
        let tiny = money(
            &campaign,
            &engine,
            &MoneyInputs {
                flight: Some(tiny),
                now_ms: Some(1),
                ..inputs(0)
            },
        );
        assert_eq!(tiny.spend_vs_plan_pct, None);
    }

    #[test]
    fn an_item_far_ahead_is_best_with_no_loss() {
        let ahead: Vec<f64> = (0..1000).map(|i| 10.0 + f64::from(i % 7)).collect();
        let behind: Vec<f64> = (0..1000).map(|i| f64::from(i % 5)).collect();
        let result = best_and_loss(&[&behind, &ahead]);
        assert_eq!(result[1], (1.0, 0.0));
        assert_eq!(result[0].0, 0.0);
        let mean_gap = ahead.iter().zip(&behind).map(|(a, b)| a - b).sum::<f64>() / 1000.0;
        assert!((result[0].1 - mean_gap).abs() < 1e-12);
    }

    #[test]
    fn interval_of_known_draws() {
        let draws: Vec<f64> = (0..=100).map(f64::from).collect();
        let i = interval(&draws);
        assert_eq!((i.mean, i.lower, i.upper), (50.0, 2.5, 97.5));
    }

    #[test]
    fn summary_arithmetic() {
        let campaign = campaign();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut engine = Engine::new(&campaign, &mut rng);
        let acting = (0..campaign.total_versions())
            .find(|&v| campaign.is_allowed(v) && campaign.asks_to_act(v))
            .unwrap();
        let quiet = (0..campaign.total_versions())
            .find(|&v| campaign.is_allowed(v) && !campaign.asks_to_act(v));
        engine.learn(0, acting, Feedback::Impression);
        engine.learn(0, acting, Feedback::Cost { amount: 3.0 });
        engine.learn(0, acting, Feedback::Conversion { amount: Some(30.0) });
        engine.learn(1, acting, Feedback::Impression);
        if let Some(quiet) = quiet {
            engine.learn(0, quiet, Feedback::Impression);
            engine.learn(0, quiet, Feedback::Cost { amount: 1.0 });
        }
        let s = summary(&campaign, &engine);
        assert_eq!(s.donors, 1);
        assert_eq!(s.donations, 30.0);
        if quiet.is_some() {
            assert_eq!(s.versions_served, 2);
            assert_eq!(s.spend, 4.0);
            assert_eq!(s.acting_share_served, Some(0.5));
            assert_eq!(s.acting_share_spend, Some(0.75));
            assert_eq!(s.cost_per_donor, Some(4.0));
            assert_eq!(s.value_per_dollar, Some(7.5));
        } else {
            assert_eq!(s.versions_served, 1);
            assert_eq!(s.acting_share_spend, Some(1.0));
        }
        assert_eq!(s.versions_defined, campaign.allowed_versions());
        let empty = summary(&campaign, &Engine::new(&campaign, &mut rng));
        assert_eq!(
            (
                empty.cost_per_donor,
                empty.value_per_dollar,
                empty.acting_share_served
            ),
            (None, None, None)
        );
    }

    #[test]
    fn report_finds_an_option_far_ahead() {
        let campaign = campaign();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut engine = Engine::new(&campaign, &mut rng);
        let space = engine.space().clone();
        // Option 0 of component 0 converts at 30%, every other option at 1%.
        for i in 0..20_000u64 {
            let v = space.sample_uniform(&mut rng);
            let s = (i % campaign.design().segments() as u64) as usize;
            engine.learn(s, v, Feedback::Impression);
            let p = if space.option_of(v, 0) == 0 {
                0.3
            } else {
                0.01
            };
            if rng.random::<f64>() < p {
                engine.learn(s, v, Feedback::Conversion { amount: Some(20.0) });
            }
        }
        let settings = ReportSettings {
            draws: 400,
            ..ReportSettings::default()
        };
        let report = build(&campaign, &engine, &settings, &mut rng);
        assert_eq!(report.draws, 400);
        let first = &report.components[0].options[0];
        assert!(first.p_best > 0.99, "{first:?}");
        assert!(first.expected_loss < 1e-9);
        assert!(first.posterior.rate.lower > report.components[0].options[1].posterior.rate.upper);
        assert!(report.segments.iter().all(|s| s.leaders.len() <= 5));
        assert!(report.versions.rows.len() <= 100);
        let again = build(
            &campaign,
            &engine,
            &settings,
            &mut rand::rngs::StdRng::seed_from_u64(7),
        );
        let _ = again;
    }

    #[test]
    fn lift_by_hand() {
        // Two versions, propensities 0.5 each; the even split (1/2) equals the logging
        // policy, so its SNIPS estimate is the mean reward and the lift is 0.
        let rows = [
            LoggedRow {
                segment: 0,
                action: 0,
                propensity: 0.5,
                reward: 10.0,
            },
            LoggedRow {
                segment: 0,
                action: 1,
                propensity: 0.5,
                reward: 0.0,
            },
            LoggedRow {
                segment: 0,
                action: 0,
                propensity: 0.5,
                reward: 0.0,
            },
            LoggedRow {
                segment: 0,
                action: 1,
                propensity: 0.5,
                reward: 2.0,
            },
        ];
        // The first half (rows 0, 1) picked version 0; the second half (rows 2, 3)
        // scores it: only row 2 matches, reward 0, so SNIPS 0 on 2 rows; the lift is
        // the realized mean of the second half (1) minus 0.
        let lift = lift(&rows, 2, &[1], &[0]).unwrap();
        assert_eq!(lift.realized.value, 3.0);
        assert_eq!(lift.best_versions, vec![1]);
        let even = lift.even_split.estimate.unwrap();
        assert!((even.value - 3.0).abs() < 1e-12);
        assert!(lift.even_split.lift.unwrap().value.abs() < 1e-12);
        let best = lift.best_single_version.estimate.unwrap();
        assert!(best.value.abs() < 1e-12, "{best:?}");
        assert_eq!(best.rows, 2);
        assert!((lift.best_single_version.lift.unwrap().value - 1.0).abs() < 1e-12);
        // Picked version 1 instead: only row 3 matches, SNIPS 2, lift 1 - 2 = -1.
        let other = super::lift(&rows, 2, &[1], &[1]).unwrap();
        assert!((other.best_single_version.estimate.unwrap().value - 2.0).abs() < 1e-12);
        assert!((other.best_single_version.lift.unwrap().value + 1.0).abs() < 1e-12);
        // Beside SNIPS, adaptively weighted AIPW; its lift is the realized mean minus
        // its estimate.
        let aw = lift.even_split.aw_aipw.unwrap();
        assert_eq!(aw.estimator, ope::Estimator::AwAipw);
        assert_eq!(aw.rows, 4);
        let aw_lift = lift.even_split.aw_aipw_lift.unwrap();
        assert!((aw_lift.value - (3.0 - aw.value)).abs() < 1e-12);
        assert!(aw_lift.std_error.is_finite() && aw_lift.std_error > 0.0);
        // A version the second half never logged cannot be estimated.
        let none = super::lift(&rows, 2, &[1], &[7]).unwrap();
        assert!(none.best_single_version.estimate.is_none());
        assert!(none.best_single_version.error.is_some());
    }
}
