//! The engine of one live campaign: decides, learns from events, summarizes.
//!
//! [`Engine`] wraps the campaign's policy (factorized Thompson sampling under the
//! exploration floor, built by [`CampaignPolicySettings`] from the spec) and maps the events a campaign receives
//! onto what the models learn:
//!
//! | event | conversion model (objective value or conversions) | click model (objective clicks) | value model |
//! |---|---|---|---|
//! | `impression` | a miss | a miss | — |
//! | `click` | — | a hit | — |
//! | `conversion` with amount | a hit | — | the amount (Huber-capped, see `model::value`) |
//! | `conversion` without amount | a hit | — | — (amount unknown) |
//! | `cost` | — | — | — |
//!
//! The counts keep both sides of an amount: `value` sums the amounts raised, as sent;
//! `value_learned` sums the amounts the value model learned from (each after the cap in
//! force when it arrived, [`crate::model::value::ValueModel::learned_amount`]). A
//! conversion without an amount counts as a conversion and in
//! `conversions_amount_unknown`, adding nothing to either sum: its amount is unknown, not 0.
//! The value model never learns an amount above the campaign's `max_value`: the server
//! refuses such conversions, and one in a log written before that rule is learned as
//! `max_value` (and counted as raised in full). So every sum and every expected amount
//! stays a finite number.
//!
//! An impression is learned as a miss when it arrives; a conversion that follows it is
//! learned as a hit. Learning both is the usual treatment of delayed conversions: the
//! impression cannot wait for the attribution window to close, and with conversion
//! rates of a few percent the extra miss per conversion biases the rate down by about
//! that rate, relatively (2% of 2%), and not the ranking of versions.
//!
//! The engine is a pure value: the server feeds it events in log order, so the model is
//! a function of the log prefix it has applied, and a snapshot plus the events after it
//! rebuilds exactly the same model.
//!
//! A running campaign takes a new spec with [`Engine::revise`]: revision n+1, matched by
//! name ([`crate::revision`]). Every learned weight and every count moves to the new
//! indices, new options and segments start at their prior, retired options and pins
//! take effect in every decision table at once, and the revision number counts up
//! from 1. Events for decisions of an older revision are learned after mapping their
//! version with [`crate::revision::Revision::map_version`].

use crate::decision::DecisionTable;
use crate::design::Objective;
use crate::plan::{AdResult, ResultError};
use crate::policy::campaign::{CampaignPolicy, CampaignPolicySettings};
use crate::policy::factorized::FactorizedSampler;
use crate::policy::thompson::PosteriorSampler;
use crate::policy::{
    Choice, Decision, Gate, Outcome, Policy, PricedPolicy, decide_gated, gated_mass,
    gated_propensity,
};
use crate::revision::{Revision, RevisionError, RevisionSummary};
use crate::snapshot::SnapshotError;
use crate::spec::Campaign;
use rand::Rng;
use std::collections::BTreeMap;

/// What one event says about one decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Feedback {
    /// The version was shown.
    Impression,
    /// The reader clicked.
    Click,
    /// The reader converted, giving `amount`.
    Conversion {
        /// Donation amount; `None` when the conversion carried none (unknown, not 0).
        amount: Option<f64>,
    },
    /// Money spent on the impression.
    Cost {
        /// Spend.
        amount: f64,
    },
}

/// What the model learns from one event under an objective (the table above): an
/// impression is a miss; a click is a hit of the click model; a conversion is a hit of
/// the conversion model and, with a positive amount, a donation of the value model (an
/// unknown amount is passed as 0, which the value model does not learn); a cost, or an
/// event the objective does not model, teaches nothing (`None`).
pub fn learned_outcome(
    objective: Objective,
    segment: usize,
    version: u64,
    feedback: Feedback,
) -> Option<Outcome> {
    let outcome = |clicked, converted, value| Outcome {
        segment,
        version,
        clicked,
        converted,
        value,
    };
    match (feedback, objective) {
        (Feedback::Impression, _) => Some(outcome(false, false, 0.0)),
        (Feedback::Click, Objective::Clicks) => Some(outcome(true, false, 0.0)),
        (Feedback::Conversion { amount }, Objective::Value | Objective::Conversions) => {
            Some(outcome(false, true, amount.unwrap_or(0.0)))
        }
        _ => None,
    }
}

/// Served counts of one segment, option or version.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Counts {
    /// Impressions.
    pub impressions: u64,
    /// Clicks.
    pub clicks: u64,
    /// Conversions (with or without an amount).
    pub conversions: u64,
    /// Donations raised: the conversion amounts as sent, summed.
    pub value: f64,
    /// Spend, summed.
    pub spend: f64,
    /// Conversions that carried no amount (included in `conversions`; their amount is
    /// unknown and adds nothing to `value` or `value_learned`).
    #[cfg_attr(feature = "serde", serde(default))]
    pub conversions_amount_unknown: u64,
    /// Donations as the value model learned them: each amount after the cap in force
    /// when it arrived (`docs/models.md`), summed; equal to `value` when no amount was
    /// capped or the campaign has no value model (objective not `value`).
    #[cfg_attr(feature = "serde", serde(default))]
    pub value_learned: f64,
}

impl Counts {
    /// Counts one event; `learned` is the amount the value model learned from (the
    /// conversion's amount, or less when capped). Sums saturate at `f64::MAX`, so they
    /// stay finite even over a log written before amounts were bounded.
    fn add(&mut self, feedback: Feedback, learned: f64) {
        match feedback {
            Feedback::Impression => self.impressions += 1,
            Feedback::Click => self.clicks += 1,
            Feedback::Conversion {
                amount: Some(amount),
            } => {
                self.conversions += 1;
                self.value = finite_sum(self.value, amount);
                self.value_learned = finite_sum(self.value_learned, learned);
            }
            Feedback::Conversion { amount: None } => {
                self.conversions += 1;
                self.conversions_amount_unknown += 1;
            }
            Feedback::Cost { amount } => self.spend = finite_sum(self.spend, amount),
        }
    }

    /// Events of the kinds counted one by one (impressions, clicks, conversions), or 1
    /// when only spend was counted: whether anything was recorded, as a number.
    pub fn events(&self) -> u64 {
        let counted = self.impressions + self.clicks + self.conversions;
        if counted == 0 && *self != Counts::default() {
            1
        } else {
            counted
        }
    }

    /// Adds another's counts to these (sums saturate as in counting).
    pub fn merge(&mut self, other: &Counts) {
        self.impressions += other.impressions;
        self.clicks += other.clicks;
        self.conversions += other.conversions;
        self.value = finite_sum(self.value, other.value);
        self.spend = finite_sum(self.spend, other.spend);
        self.conversions_amount_unknown += other.conversions_amount_unknown;
        self.value_learned = finite_sum(self.value_learned, other.value_learned);
    }
}

/// `a + b` for amounts (finite, >= 0), at most `f64::MAX`.
fn finite_sum(a: f64, b: f64) -> f64 {
    (a + b).min(f64::MAX)
}

/// New decision tables drawn from a copy of an engine's model by
/// [`Engine::plan_refresh`], waiting to be put in force by [`Engine::apply_refresh`].
#[derive(Debug, Clone)]
pub struct RefreshPlan {
    /// The segments due and their new tables.
    tables: Vec<(usize, DecisionTable)>,
    /// When the plan was made, ms; the tables' cadence clocks start there.
    now_millis: u64,
    /// Events the engine had learned when the plan was made.
    events_at_plan: u64,
}

impl RefreshPlan {
    /// How many segments the plan rebuilds.
    pub fn len(&self) -> usize {
        self.tables.len()
    }

    /// Whether the plan rebuilds no segment (never, as made by
    /// [`Engine::plan_refresh`]).
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }
}

/// The live state of one campaign.
#[derive(Debug, Clone)]
pub struct Engine {
    /// The campaign revision in force.
    campaign: Campaign,
    /// Its revision number, from 1.
    revision: u32,
    /// The policy settings the engine was built with.
    settings: CampaignPolicySettings,
    objective: Objective,
    /// The campaign's `max_value`: the value model learns no amount above it (events
    /// above it are refused at ingest; a log written before that is learned capped).
    max_value: f64,
    policy: CampaignPolicy,
    /// Counts per segment.
    segment_counts: Vec<Counts>,
    /// Counts per component and option.
    option_counts: Vec<Vec<Counts>>,
    /// Counts per (segment, version) served, sparse: only pairs with an event. A
    /// `BTreeMap`, so iteration (reports, snapshots) is in a fixed order.
    version_counts: BTreeMap<(u32, u64), Counts>,
    /// Events learned.
    events: u64,
}

impl Engine {
    /// The engine of a validated campaign at its prior; `rng` draws the first decision
    /// distributions.
    pub fn new<R: Rng + ?Sized>(campaign: &Campaign, rng: &mut R) -> Self {
        Self::with_settings(
            campaign,
            CampaignPolicySettings::for_campaign(campaign),
            rng,
        )
    }

    /// The engine of a validated campaign with other policy settings (a comparison of
    /// model settings, say); [`Engine::new`] uses the campaign's own.
    pub fn with_settings<R: Rng + ?Sized>(
        campaign: &Campaign,
        settings: CampaignPolicySettings,
        rng: &mut R,
    ) -> Self {
        let design = campaign.design();
        let policy = settings.build_available(design, campaign.availability(), rng);
        Self {
            campaign: campaign.clone(),
            revision: 1,
            settings,
            objective: design.objective,
            max_value: campaign.max_value(),
            policy,
            segment_counts: vec![Counts::default(); design.segments()],
            option_counts: design
                .space
                .option_counts()
                .iter()
                .map(|&n| vec![Counts::default(); n as usize])
                .collect(),
            version_counts: BTreeMap::new(),
            events: 0,
        }
    }

    /// The campaign revision in force.
    pub fn campaign(&self) -> &Campaign {
        &self.campaign
    }

    /// The revision number in force: 1 for the spec the engine was built with, one more
    /// for each [`Engine::revise`].
    pub fn revision(&self) -> u32 {
        self.revision
    }

    /// Puts the next revision of the campaign, `next`, in force (see the module
    /// documentation and [`crate::revision`]): refused when the revision itself is
    /// ([`Revision::between`]), or when it removes an option or a segment that has
    /// counted events (retire the option instead, `retired = true`). On refusal the
    /// engine is unchanged. Every decision table is drawn anew with `rng`, stamped at
    /// `now_millis`. The next spec's draws, cadence and floor apply, with the model
    /// settings the engine was built with.
    pub fn revise<R: Rng + ?Sized>(
        &mut self,
        next: &Campaign,
        rng: &mut R,
        now_millis: u64,
    ) -> Result<RevisionSummary, RevisionError> {
        let revision = Revision::between(&self.campaign, next)?;
        for &option in revision.removed_options() {
            let events = self.option_counts[option.component][option.option as usize].events();
            if events > 0 {
                return Err(RevisionError::OptionHasEvents {
                    field: format!("components[{}].options", option.component),
                    name: revision.old_option_name(option),
                    events,
                });
            }
        }
        for segment in revision.removed_segments() {
            let events = self.segment_counts[segment].events();
            if events > 0 {
                return Err(RevisionError::SegmentHasEvents {
                    name: revision.old_segment_name(segment).to_owned(),
                    events,
                });
            }
        }
        let design = next.design();
        let mut segment_counts = vec![Counts::default(); design.segments()];
        for (segment, counts) in segment_counts.iter_mut().enumerate() {
            if let Some(old) = revision.old_segment(segment) {
                *counts = self.segment_counts[old];
            }
        }
        let option_counts: Vec<Vec<Counts>> = design
            .space
            .option_counts()
            .iter()
            .enumerate()
            .map(|(k, &n)| {
                (0..n)
                    .map(|o| {
                        revision
                            .old_option(k, o)
                            .map_or_else(Counts::default, |old| self.option_counts[k][old as usize])
                    })
                    .collect()
            })
            .collect();
        let version_counts: BTreeMap<(u32, u64), Counts> = self
            .version_counts
            .iter()
            .filter_map(|(&(segment, version), counts)| {
                let segment = revision.map_segment(segment as usize)?;
                let version = revision.map_version(version)?;
                Some(((segment as u32, version), *counts))
            })
            .collect();
        let mut settings = CampaignPolicySettings {
            factorized: self.settings.factorized,
            ..CampaignPolicySettings::for_campaign(next)
        };
        if self.settings.cadence.every_millis.is_none() {
            settings = settings.without_clock();
        }
        let mut policy = settings.revise(&self.policy, &revision, design, next.availability(), rng);
        policy.base_mut().mark_built_at(Some(now_millis));
        let summary = revision.summary(&self.campaign, next);
        self.policy = policy;
        self.settings = settings;
        self.segment_counts = segment_counts;
        self.option_counts = option_counts;
        self.version_counts = version_counts;
        self.objective = design.objective;
        self.max_value = next.max_value();
        self.campaign = next.clone();
        self.revision += 1;
        Ok(RevisionSummary {
            revision: self.revision,
            ..summary
        })
    }

    /// Chooses a version for an impression of `segment`, with its exact propensity.
    pub fn decide<R: Rng + ?Sized>(&self, segment: usize, rng: &mut R) -> Decision {
        self.policy.decide(segment, rng)
    }

    /// The model version of `segment`'s decision table in force: what a unit's draws
    /// are seeded with ([`crate::holdout::UnitRng::for_draw`]), so a returning unit sees
    /// the same version while the table stands.
    pub fn model_version(&self, segment: usize) -> u64 {
        self.policy.model_version(segment)
    }

    /// A decision of the holdout arm ([`crate::holdout`]) for `segment` under `gate`:
    /// the even split over the versions available to the segment (retired options and
    /// pins respected), with its exact propensity given the arm (`1 / |available|`
    /// times what the gate buys; a price never skips it, a throttle does at its rate).
    pub fn decide_held_out<R: Rng + ?Sized>(
        &self,
        segment: usize,
        gate: Gate,
        rng: &mut R,
    ) -> Choice {
        crate::holdout::EvenSplit::new(self.space(), self.campaign.availability())
            .decide_gated(segment, gate, rng)
    }

    /// The exact probability that [`Engine::decide`] returns `version` for `segment` now.
    pub fn propensity(&self, segment: usize, version: u64) -> f64 {
        self.policy.propensity(segment, version)
    }

    /// Chooses a version, or a skip, for an opportunity of `segment` under the pacing
    /// rule's `gate` ([`crate::pacing`]), with the exact propensity of the outcome.
    pub fn decide_gated<R: Rng + ?Sized>(&self, segment: usize, gate: Gate, rng: &mut R) -> Choice {
        decide_gated(&self.policy, segment, gate, rng)
    }

    /// The exact probability that [`Engine::decide_gated`] gives `version` (`None`: the
    /// skip) under `gate`.
    pub fn gated_propensity(&self, segment: usize, version: Option<u64>, gate: Gate) -> f64 {
        gated_propensity(&self.policy, segment, version, gate)
    }

    /// The probability that an opportunity of `segment` priced at `price` is bought
    /// (what the pacing planner forecasts spend with).
    pub fn buy_probability(&self, segment: usize, price: f64) -> f64 {
        1.0 - self.policy.skip_probability(segment, price)
    }

    /// The probability that [`Engine::decide_gated`] buys a version for which `pick`
    /// holds (`picked_allowed`: how many versions available to `segment` it holds for).
    pub fn gated_mass(
        &self,
        segment: usize,
        gate: Gate,
        pick: &dyn Fn(u64) -> bool,
        picked_allowed: u64,
    ) -> f64 {
        gated_mass(&self.policy, segment, gate, pick, picked_allowed)
    }

    /// Learns one event about a decision of `version` for `segment`, at the model's
    /// latest time (the latest event time or refresh it has seen; use
    /// [`Engine::learn_at`] when the event's time is known).
    pub fn learn(&mut self, segment: usize, version: u64, feedback: Feedback) {
        self.learn_event(segment, version, feedback, None);
    }

    /// Learns one event about a decision of `version` for `segment` that happened at
    /// `at_millis` (ms on the caller's clock): a model that forgets first brings the
    /// weights the event touches up to that time (`docs/models.md`, forgetting).
    pub fn learn_at(&mut self, segment: usize, version: u64, feedback: Feedback, at_millis: u64) {
        self.learn_event(segment, version, feedback, Some(at_millis));
    }

    fn learn_event(
        &mut self,
        segment: usize,
        version: u64,
        feedback: Feedback,
        at_millis: Option<u64>,
    ) {
        self.learn_event_of(segment, version, feedback, at_millis, true);
    }

    /// [`Engine::learn_event`]; with `amount_to_model` false a conversion's amount is
    /// counted but not learned by the value model (a platform's mean amount, which
    /// [`Engine::learn_results`] teaches once per result).
    fn learn_event_of(
        &mut self,
        segment: usize,
        version: u64,
        feedback: Feedback,
        at_millis: Option<u64>,
        amount_to_model: bool,
    ) {
        // What the value model learns from, read before it learns: the amount, at most
        // the campaign's max_value, after the model's heavy-tail cap.
        let (learned, model_amount) = match feedback {
            Feedback::Conversion {
                amount: Some(amount),
            } => {
                let bounded = amount.min(self.max_value);
                let learned = self
                    .sampler()
                    .learned_amount(segment, version, bounded)
                    .unwrap_or(bounded);
                (learned, Some(bounded))
            }
            _ => (0.0, None),
        };
        let space = self.policy.space();
        self.segment_counts[segment].add(feedback, learned);
        for (k, counts) in self.option_counts.iter_mut().enumerate() {
            counts[space.option_of(version, k) as usize].add(feedback, learned);
        }
        self.version_counts
            .entry((segment as u32, version))
            .or_default()
            .add(feedback, learned);
        self.events += 1;
        let model_feedback = match model_amount {
            Some(amount) => Feedback::Conversion {
                amount: Some(amount).filter(|_| amount_to_model),
            },
            None => feedback,
        };
        if let Some(outcome) = learned_outcome(self.objective, segment, version, model_feedback) {
            // The engine weighs every event alike in scoring forgetting candidates:
            // the floor's share of a decision depends on the decision tables in force,
            // which a replay of the log does not reproduce, and the model must be a
            // function of the log.
            match at_millis {
                Some(at) => self.policy.observe_scored(&outcome, at, 1.0),
                None => self.policy.observe(&outcome),
            }
        }
    }

    /// Rebuilds the decision distributions whose cadence is due; returns how many.
    pub fn refresh_due<R: Rng + ?Sized>(&mut self, rng: &mut R, now_millis: u64) -> usize {
        self.policy.refresh_due(rng, Some(now_millis))
    }

    /// Segments whose decision distribution is due for a rebuild at `now_millis`.
    pub fn due_segments(&self, now_millis: u64) -> Vec<usize> {
        self.policy.base().due_segments(Some(now_millis))
    }

    /// The first half of a refresh that leaves decisions running: draws new decision
    /// tables for the segments due at `now_millis` from a copy of the model, leaving
    /// the engine untouched, so a server holds only a read lock meanwhile. `None` when
    /// no segment is due. Put the plan in force with [`Engine::apply_refresh`].
    pub fn plan_refresh<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        now_millis: u64,
    ) -> Option<RefreshPlan> {
        let due = self.due_segments(now_millis);
        if due.is_empty() {
            return None;
        }
        let base = self.policy.base();
        let mut sampler = base.sampler().clone();
        sampler.advance_clock(now_millis);
        let tables = due
            .iter()
            .map(|&segment| (segment, base.draw_table(&mut sampler, segment, rng)))
            .collect();
        Some(RefreshPlan {
            tables,
            now_millis,
            events_at_plan: self.events,
        })
    }

    /// The second half of a refresh: installs the tables of a plan this engine made
    /// with [`Engine::plan_refresh`] and returns how many. A plan made before the engine
    /// learned further events was drawn from an older model; it is dropped (0), its
    /// segments stay due, and the next plan draws from the current model.
    pub fn apply_refresh(&mut self, plan: RefreshPlan) -> usize {
        if plan.events_at_plan != self.events {
            return 0;
        }
        let installed = plan.tables.len();
        let base = self.policy.base_mut();
        for (segment, table) in plan.tables {
            base.install_table(segment, table, Some(plan.now_millis));
        }
        base.finish_refresh();
        installed
    }

    /// Rebuilds every segment's decision distribution now (after a restore). Like
    /// [`Engine::plan_refresh`], the tables are drawn from a copy of the model brought
    /// up to `now_millis`: what the engine has learned depends on its events alone,
    /// never on when it was restored or refreshed.
    pub fn refresh_all<R: Rng + ?Sized>(&mut self, rng: &mut R, now_millis: u64) {
        let tables = self.draw_tables(rng, now_millis);
        let base = self.policy.base_mut();
        for (segment, table) in tables.into_iter().enumerate() {
            base.install_table(segment, table, Some(now_millis));
        }
        base.finish_refresh();
    }

    /// A fresh decision table for every segment, drawn from a copy of the model
    /// brought up to `now_millis`, leaving the engine untouched: the batch Thompson
    /// draws a plan for a period is made of ([`crate::plan::make_plan`]), and what
    /// [`Engine::refresh_all`] installs.
    pub fn draw_tables<R: Rng + ?Sized>(&self, rng: &mut R, now_millis: u64) -> Vec<DecisionTable> {
        self.draw_tables_of(rng, now_millis, self.policy.base().draws(), None)
    }

    /// [`Engine::draw_tables`] with `draws` posterior draws per segment, at `draw_scale`
    /// (`None`: the decision tables' scale): a plan's own ([`crate::plan::PlanSettings`]).
    pub fn draw_tables_of<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        now_millis: u64,
        draws: usize,
        draw_scale: Option<f64>,
    ) -> Vec<DecisionTable> {
        let mut sampler = self.policy.base().sampler().clone();
        if let Some(scale) = draw_scale {
            sampler.set_draw_scale(scale);
        }
        sampler.advance_clock(now_millis);
        (0..self.segment_counts.len())
            .map(|segment| {
                crate::policy::thompson::ThompsonPolicy::draw_table_of(
                    &mut sampler,
                    segment,
                    draws,
                    rng,
                )
            })
            .collect()
    }

    /// Learns the aggregates an ad platform reports, per (ad set = segment, ad =
    /// version), as it would learn the same events one by one (`docs/platform.md`):
    /// the events of [`crate::plan::for_each_event`], all at `at_millis`, each result's
    /// mean amount once as the mean of its conversions' amounts
    /// ([`crate::model::value::ValueModel::observe_mean_at`]), then the spend, counted
    /// as one cost event per result.
    /// Every result is checked first ([`AdResult::check`], its segment and version in
    /// the campaign); on a refusal nothing is learned.
    pub fn learn_results(
        &mut self,
        results: &[AdResult],
        at_millis: u64,
    ) -> Result<(), ResultError> {
        for result in results {
            result.check()?;
            let segments = self.segment_counts.len();
            if result.segment >= segments {
                return Err(ResultError::Segment {
                    segment: result.segment,
                    segments,
                });
            }
            if !self.space().is_allowed(result.version) {
                return Err(ResultError::Version {
                    version: result.version,
                    total: self.space().total(),
                });
            }
        }
        crate::plan::for_each_event(results, |segment, version, feedback| {
            self.learn_event_of(segment, version, feedback, Some(at_millis), false);
        });
        for result in results {
            if let Some(mean) = result.mean_amount() {
                self.policy.base_mut().sampler_mut().observe_mean_amount_at(
                    result.segment,
                    result.version,
                    mean.min(self.max_value),
                    result.conversions,
                    at_millis,
                );
            }
        }
        for result in results {
            if result.spend > 0.0 {
                self.learn_event(
                    result.segment,
                    result.version,
                    Feedback::Cost {
                        amount: result.spend,
                    },
                    Some(at_millis),
                );
            }
        }
        Ok(())
    }

    /// The version space.
    pub fn space(&self) -> &crate::space::VersionSpace {
        self.policy.space()
    }

    /// The model's sampler (posterior state).
    pub fn sampler(&self) -> &FactorizedSampler {
        self.policy.base().sampler()
    }

    /// The decision distribution in force for a segment.
    pub fn table(&self, segment: usize) -> &DecisionTable {
        self.policy.base().table(segment)
    }

    /// Events learned.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Served counts per segment.
    pub fn segment_counts(&self) -> &[Counts] {
        &self.segment_counts
    }

    /// Served counts per component and option.
    pub fn option_counts(&self) -> &[Vec<Counts>] {
        &self.option_counts
    }

    /// Served counts per (segment, version), only for pairs that received an event,
    /// in (segment, version) order.
    pub fn version_counts(&self) -> &BTreeMap<(u32, u64), Counts> {
        &self.version_counts
    }

    /// The learned state as bytes: events learned, (from format 3) the revision number,
    /// the model's snapshot, the counts
    /// per segment and per option, then the sparse counts per (segment, version): their
    /// number, then each pair's segment, version and counts in (segment, version) order.
    /// Counts are impressions, clicks, conversions, value, spend and (from snapshot
    /// format 2) conversions of unknown amount and value learned.
    pub fn snapshot(&self) -> Vec<u8> {
        self.snapshot_in_format(crate::snapshot::FORMAT)
    }

    /// [`Engine::snapshot`] in `format` (1 leaves out what format 2 added; tests write
    /// it to check that older snapshots are still read).
    fn snapshot_in_format(&self, format: u32) -> Vec<u8> {
        let mut writer = crate::snapshot::Writer::with_format(ENGINE_SNAPSHOT_KIND, format);
        writer.u64(self.events);
        if format >= 3 {
            writer.u64(u64::from(self.revision));
        }
        writer.bytes(&self.sampler().snapshot());
        for counts in self
            .segment_counts
            .iter()
            .chain(self.option_counts.iter().flatten())
        {
            write_counts(&mut writer, counts);
        }
        writer.u64(self.version_counts.len() as u64);
        for (&(segment, version), counts) in &self.version_counts {
            writer.u64(u64::from(segment));
            writer.u64(version);
            write_counts(&mut writer, counts);
        }
        writer.finish()
    }

    /// Restores [`Engine::snapshot`] bytes of an engine of the same campaign revision,
    /// of this format or an older one (format 1's counts have no unknown amounts, and
    /// its value model learned every amount as sent: `value_learned = value`; formats 1
    /// and 2 record no revision and are taken as revision 1). The engine takes the
    /// revision number the snapshot records; [`Engine::restore_revision`] checks it
    /// instead. On error the engine is left unchanged. Call [`Engine::refresh_all`]
    /// afterwards.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        self.restore_checked(bytes, None)
    }

    /// [`Engine::restore`] of a snapshot that must have been taken under campaign
    /// revision `revision` (the revision of the spec this engine was built from);
    /// refused otherwise. Snapshots of format 1 and 2 were taken under revision 1.
    pub fn restore_revision(&mut self, bytes: &[u8], revision: u32) -> Result<(), SnapshotError> {
        self.restore_checked(bytes, Some(revision))
    }

    fn restore_checked(
        &mut self,
        bytes: &[u8],
        expected: Option<u32>,
    ) -> Result<(), SnapshotError> {
        let mut reader = crate::snapshot::Reader::new(bytes, ENGINE_SNAPSHOT_KIND)?;
        let events = reader.u64()?;
        let revision = if reader.format() >= 3 {
            u32::try_from(reader.u64()?).map_err(|_| {
                SnapshotError::Format("the revision number does not fit in 32 bits".into())
            })?
        } else {
            1
        };
        if let Some(expected) = expected.filter(|&e| e != revision) {
            return Err(SnapshotError::Mismatch(format!(
                "the snapshot was taken under revision {revision} of the campaign, and the spec given is revision {expected}"
            )));
        }
        let mut sampler = self.sampler().clone();
        sampler.restore(reader.bytes()?)?;
        let mut segment_counts = self.segment_counts.clone();
        let mut option_counts = self.option_counts.clone();
        for counts in segment_counts
            .iter_mut()
            .chain(option_counts.iter_mut().flatten())
        {
            *counts = read_counts(&mut reader)?;
        }
        let pairs = reader.u64()?;
        let mut version_counts = BTreeMap::new();
        for _ in 0..pairs {
            let segment = reader.u64()?;
            let version = reader.u64()?;
            let counts = read_counts(&mut reader)?;
            if segment >= segment_counts.len() as u64 || version >= self.space().total() {
                return Err(SnapshotError::Mismatch(format!(
                    "served counts of segment {segment}, version {version} outside the campaign"
                )));
            }
            version_counts.insert((segment as u32, version), counts);
        }
        reader.finish()?;
        *self.policy.base_mut().sampler_mut() = sampler;
        self.segment_counts = segment_counts;
        self.option_counts = option_counts;
        self.version_counts = version_counts;
        self.events = events;
        self.revision = revision;
        Ok(())
    }
}

/// Kind byte of engine snapshots.
const ENGINE_SNAPSHOT_KIND: u8 = 2;

fn write_counts(writer: &mut crate::snapshot::Writer, counts: &Counts) {
    writer.u64(counts.impressions);
    writer.u64(counts.clicks);
    writer.u64(counts.conversions);
    writer.f64(counts.value);
    writer.f64(counts.spend);
    if writer.format() >= 2 {
        writer.u64(counts.conversions_amount_unknown);
        writer.f64(counts.value_learned);
    }
}

fn read_counts(reader: &mut crate::snapshot::Reader<'_>) -> Result<Counts, SnapshotError> {
    let mut counts = Counts {
        impressions: reader.u64()?,
        clicks: reader.u64()?,
        conversions: reader.u64()?,
        value: reader.f64()?,
        spend: reader.f64()?,
        ..Counts::default()
    };
    if reader.format() >= 2 {
        counts.conversions_amount_unknown = reader.u64()?;
        counts.value_learned = reader.f64()?;
    } else {
        counts.value_learned = counts.value;
    }
    Ok(counts)
}

#[cfg(all(test, feature = "text"))]
mod tests {
    use super::*;
    use crate::spec::CampaignSpec;
    use rand::SeedableRng;

    const SPEC: &str = include_str!("../../../examples/small.toml");

    fn feed(engine: &mut Engine, seed: u64, n: usize) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for i in 0..n {
            let segment = i % engine.segment_counts.len();
            let decision = engine.decide(segment, &mut rng);
            engine.learn(segment, decision.version, Feedback::Impression);
            if rng.random::<f64>() < 0.05 {
                engine.learn(
                    segment,
                    decision.version,
                    Feedback::Conversion { amount: Some(20.0) },
                );
            }
            engine.refresh_due(&mut rng, i as u64);
        }
    }

    #[test]
    fn snapshot_then_replay_equals_full_replay() {
        let campaign = CampaignSpec::from_toml_str(SPEC)
            .unwrap()
            .validate()
            .unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut engine = Engine::new(&campaign, &mut rng);
        feed(&mut engine, 2, 2_000);
        let bytes = engine.snapshot();
        let mut restored = Engine::new(&campaign, &mut rng);
        restored.restore(&bytes).unwrap();
        assert_eq!(restored.snapshot(), bytes);
        assert_eq!(restored.events(), engine.events());
        assert_eq!(restored.segment_counts(), engine.segment_counts());
        assert_eq!(restored.version_counts(), engine.version_counts());
        assert!(!engine.version_counts().is_empty());
        let before = restored.snapshot();
        assert!(restored.restore(&bytes[..bytes.len() - 1]).is_err());
        assert_eq!(
            restored.snapshot(),
            before,
            "a refused snapshot changes nothing"
        );
    }

    #[test]
    fn a_planned_refresh_draws_what_an_in_place_refresh_draws_and_a_stale_plan_is_dropped() {
        let campaign = CampaignSpec::from_toml_str(SPEC)
            .unwrap()
            .validate()
            .unwrap();
        let mut in_place = Engine::new(&campaign, &mut rand::rngs::StdRng::seed_from_u64(1));
        let mut planned = Engine::new(&campaign, &mut rand::rngs::StdRng::seed_from_u64(1));
        for engine in [&mut in_place, &mut planned] {
            for i in 0..300u64 {
                engine.learn((i % 2) as usize, i % 7, Feedback::Impression);
            }
        }
        // Far past the time cadence: every segment is due.
        let now = 1 << 40;
        let segments = in_place.segment_counts().len();
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        assert_eq!(in_place.refresh_due(&mut rng, now), segments);
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let plan = planned.plan_refresh(&mut rng, now).unwrap();
        assert_eq!(plan.len(), segments);
        assert_eq!(planned.apply_refresh(plan), segments);
        for segment in 0..segments {
            assert_eq!(
                planned.propensity(segment, 3),
                in_place.propensity(segment, 3)
            );
        }
        assert!(planned.plan_refresh(&mut rng, now).is_none(), "nothing due");
        // Something new to learn from, then the plan goes stale before it is applied.
        let later = now * 2;
        planned.learn(0, 3, Feedback::Impression);
        planned.learn(1, 3, Feedback::Impression);
        let stale = planned.plan_refresh(&mut rng, later).unwrap();
        planned.learn(0, 3, Feedback::Impression);
        assert_eq!(planned.apply_refresh(stale), 0);
        assert_eq!(planned.due_segments(later).len(), segments);
    }

    #[test]
    fn events_map_to_the_models_by_objective() {
        let campaign = CampaignSpec::from_toml_str(SPEC)
            .unwrap()
            .validate()
            .unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut engine = Engine::new(&campaign, &mut rng);
        engine.learn(0, 3, Feedback::Impression);
        engine.learn(0, 3, Feedback::Click);
        engine.learn(0, 3, Feedback::Cost { amount: 0.5 });
        engine.learn(0, 3, Feedback::Conversion { amount: Some(25.0) });
        // Value objective: the impression and the conversion reach the model.
        assert_eq!(engine.sampler().conversion().observations(), 2);
        assert_eq!(engine.sampler().value().unwrap().observations(), 1);
        let counts = engine.segment_counts()[0];
        assert_eq!(
            (counts.impressions, counts.clicks, counts.conversions),
            (1, 1, 1)
        );
        assert_eq!((counts.value, counts.spend), (25.0, 0.5));
        assert_eq!(engine.events(), 4);
        assert_eq!(engine.version_counts().len(), 1);
        assert_eq!(engine.version_counts()[&(0, 3)], counts);
    }

    #[test]
    fn a_conversion_without_amount_is_a_conversion_of_unknown_amount() {
        let campaign = CampaignSpec::from_toml_str(SPEC)
            .unwrap()
            .validate()
            .unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut engine = Engine::new(&campaign, &mut rng);
        engine.learn(0, 3, Feedback::Impression);
        engine.learn(0, 3, Feedback::Conversion { amount: None });
        // A hit of the conversion model; the value model learns nothing.
        assert_eq!(engine.sampler().conversion().observations(), 2);
        assert_eq!(engine.sampler().value().unwrap().observations(), 0);
        let counts = engine.segment_counts()[0];
        assert_eq!(
            (counts.conversions, counts.conversions_amount_unknown),
            (1, 1)
        );
        assert_eq!((counts.value, counts.value_learned), (0.0, 0.0));
        engine.learn(0, 3, Feedback::Conversion { amount: Some(25.0) });
        let counts = engine.segment_counts()[0];
        assert_eq!((counts.conversions, counts.value), (2, 25.0));
        assert_eq!(counts.value_learned, 25.0);
    }

    #[test]
    fn an_outlier_is_counted_as_raised_and_learned_as_capped() {
        let campaign = CampaignSpec::from_toml_str(SPEC)
            .unwrap()
            .validate()
            .unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut engine = Engine::new(&campaign, &mut rng);
        for _ in 0..50 {
            engine.learn(0, 3, Feedback::Conversion { amount: Some(20.0) });
        }
        engine.learn(
            0,
            3,
            Feedback::Conversion {
                amount: Some(2_000.0),
            },
        );
        let counts = engine.segment_counts()[0];
        assert_eq!(counts.value, 50.0 * 20.0 + 2_000.0);
        assert!(
            counts.value_learned > 50.0 * 20.0 + 20.0
                && counts.value_learned < 50.0 * 20.0 + 2_000.0,
            "{counts:?}"
        );
        assert_eq!(engine.version_counts()[&(0, 3)], counts);
    }

    #[test]
    fn a_format_1_snapshot_is_still_read() {
        let campaign = CampaignSpec::from_toml_str(SPEC)
            .unwrap()
            .validate()
            .unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut engine = Engine::new(&campaign, &mut rng);
        feed(&mut engine, 2, 500);
        let old = engine.snapshot_in_format(1);
        assert_eq!(&old[4..8], &1u32.to_le_bytes());
        let mut restored = Engine::new(&campaign, &mut rng);
        restored.restore(&old).unwrap();
        // Format 1 knows no unknown amounts; its model learned every amount as sent.
        let expected: Vec<Counts> = engine
            .segment_counts()
            .iter()
            .map(|c| Counts {
                value_learned: c.value,
                ..*c
            })
            .collect();
        assert_eq!(restored.segment_counts(), expected.as_slice());
        assert_eq!(
            restored.sampler().snapshot(),
            engine.sampler().snapshot(),
            "the model is restored as saved"
        );
        assert_eq!(restored.events(), engine.events());
    }

    #[test]
    fn restore_refuses_version_counts_outside_the_campaign() {
        let campaign = CampaignSpec::from_toml_str(SPEC)
            .unwrap()
            .validate()
            .unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut engine = Engine::new(&campaign, &mut rng);
        engine.learn(0, 3, Feedback::Impression);
        let mut bytes = engine.snapshot();
        // The last pair's version sits 56 + 8 bytes before the end.
        let at = bytes.len() - 64;
        bytes[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let mut other = Engine::new(&campaign, &mut rng);
        assert!(matches!(
            other.restore(&bytes),
            Err(SnapshotError::Mismatch(_))
        ));
        assert!(other.version_counts().is_empty());
        // A snapshot without the sparse section (the old shape) is refused too.
        let old = engine.snapshot();
        assert!(other.restore(&old[..old.len() - 80]).is_err());
    }
}
