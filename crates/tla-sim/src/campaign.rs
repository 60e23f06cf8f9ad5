//! A campaign run end to end against a ground truth drawn for it, and the report of
//! that run checked against the truth.
//!
//! [`run_campaign`] drives the same [`Engine`] the service runs (factorized Thompson
//! sampling under the spec's exploration floor, decision tables refreshed on the
//! spec's cadence) through the simulation loop of [`crate::online`], with the audience
//! of `tla serve --demo`: a segment arrives with the spec's traffic shares, the engine
//! decides, the world of [`crate::generate::world_for`] answers with a conversion and
//! its donation in cents or nothing, and the engine learns the impression, its cost and
//! the conversion ([`EngineLearner`]). The observer [`CampaignRecorder`] logs every
//! decision with its exact propensity and its reward, as the service's decision log
//! would hold it. No HTTP, no clock: simulated time advances by
//! `1 / impressions_per_second` per impression, so the same seed gives the same run.
//!
//! [`leader_check`] compares a report's option leaderboards with
//! [`crate::generate::option_truths`]; [`lift_truth`] gives the true values of the
//! counterfactuals the report's lift section estimates.

use crate::generate::{OptionTruth, SegmentTruth};
use crate::online::{
    self, Clock, EngineLearner, Flow, Impression, Observer, Progress, RunConfig, Streams,
};
use crate::world::World;
use tla_core::design::Objective;
use tla_core::engine::Engine;
use tla_core::ope::LoggedRow;
use tla_core::report::Report;
use tla_core::spec::Campaign;

/// How a campaign run goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CampaignRunConfig {
    /// Impressions to serve.
    pub impressions: u64,
    /// Seed of the audience, the outcomes and the engine's draws.
    pub seed: u64,
    /// Spend per impression, learned as a cost event after each impression (0: none).
    pub cost_per_impression: f64,
    /// Impressions per simulated second (the spec's time-based refresh cadence
    /// counts simulated time). The demo audience serves 500 a second.
    pub impressions_per_second: u64,
}

impl CampaignRunConfig {
    /// `impressions` at `seed`, $8 per thousand impressions, 5,000 impressions a
    /// second.
    pub fn new(impressions: u64, seed: u64) -> Self {
        Self {
            impressions,
            seed,
            cost_per_impression: 0.008,
            impressions_per_second: 5_000,
        }
    }
}

/// What a campaign run leaves: the engine as the service would hold it, the decision
/// log, and what the truth says the served versions were worth.
#[derive(Debug, Clone)]
pub struct CampaignRun {
    /// The engine after the run (model, served counts, decision tables).
    pub engine: Engine,
    /// Every decision with its exact propensity and reward (its donation, 0 without).
    pub rows: Vec<LoggedRow>,
    /// What was raised and spent, and what it was worth.
    pub totals: CampaignTotals,
}

impl CampaignRun {
    /// Share of the oracle's expected value the served versions earned.
    pub fn oracle_share(&self) -> f64 {
        self.totals.expected_value / self.totals.oracle_value.max(f64::MIN_POSITIVE)
    }

    /// Share of the oracle's expected value the even split would have earned.
    pub fn even_share(&self) -> f64 {
        self.totals.even_value / self.totals.oracle_value.max(f64::MIN_POSITIVE)
    }
}

/// Sums over the impressions of a campaign run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CampaignTotals {
    /// Conversions.
    pub donors: u64,
    /// Donations, summed.
    pub raised: f64,
    /// Spend, summed.
    pub spend: f64,
    /// Sum over impressions of the true expected value of the version served.
    pub expected_value: f64,
    /// Sum over impressions of the segment oracle's expected value.
    pub oracle_value: f64,
    /// Sum over impressions of the segment's even-split expected value.
    pub even_value: f64,
}

/// The observer behind [`run_campaign`]: logs every decision with its propensity and
/// reward, and sums what was raised and spent and what the truth says the served
/// versions were worth.
#[derive(Debug)]
pub struct CampaignRecorder<'a> {
    truths: &'a [SegmentTruth],
    /// Every decision with its exact propensity and reward (its donation, 0 without).
    pub rows: Vec<LoggedRow>,
    /// The sums so far.
    pub totals: CampaignTotals,
}

impl<'a> CampaignRecorder<'a> {
    /// A recorder scoring against `truths` (one per segment), with room for
    /// `impressions` rows.
    pub fn new(truths: &'a [SegmentTruth], impressions: u64) -> Self {
        Self {
            truths,
            rows: Vec::with_capacity(usize::try_from(impressions).unwrap_or(0)),
            totals: CampaignTotals::default(),
        }
    }

    /// The run recorded, with the engine it left.
    pub fn into_run(self, engine: Engine) -> CampaignRun {
        CampaignRun {
            engine,
            rows: self.rows,
            totals: self.totals,
        }
    }
}

impl<L: ?Sized> Observer<L> for CampaignRecorder<'_> {
    fn impression(&mut self, impression: &Impression) -> Flow {
        let (segment, answer) = (impression.segment, &impression.answer);
        let totals = &mut self.totals;
        totals.expected_value += answer.expected_value;
        totals.oracle_value += self.truths[segment].best_value;
        totals.even_value += self.truths[segment].even_value;
        if answer.cost > 0.0 {
            totals.spend += answer.cost;
        }
        if answer.converted {
            totals.donors += 1;
            totals.raised += answer.donation;
        }
        self.rows.push(LoggedRow {
            segment,
            action: impression.decision.version,
            propensity: impression.decision.propensity,
            reward: answer.donation,
        });
        Flow::Continue
    }
}

/// Runs `campaign` against `world` (drawn for its design: same space and segments)
/// for `config.impressions` impressions; `truths` are the world's
/// [`crate::generate::segment_truths`]. The loop is [`crate::online::run`] with
/// [`Streams::new`] at `config.seed` over the campaign's segment shares, the layout of
/// every mode (the engine's first decision tables drawn from its policy stream), an [`EngineLearner`], a [`Clock`] at
/// `config.impressions_per_second`, spend `config.cost_per_impression` per impression
/// and donations in cents; a [`CampaignRecorder`] records it. `progress` is called
/// every 10,000 impressions with the number done, and at the end.
///
/// # Panics
/// If the world's space or segments differ from the campaign's.
pub fn run_campaign(
    campaign: &Campaign,
    world: &World,
    truths: &[SegmentTruth],
    config: &CampaignRunConfig,
    progress: impl FnMut(u64),
) -> CampaignRun {
    let design = campaign.design();
    assert_eq!(
        world.space, design.space,
        "the world is not of this campaign"
    );
    assert_eq!(world.segments(), design.segments());
    assert_eq!(truths.len(), design.segments());
    let mut streams = Streams::new(config.seed, campaign.segment_shares());
    let mut engine = Engine::new(campaign, streams.policy());
    let mut recorder = CampaignRecorder::new(truths, config.impressions);
    let run_config = RunConfig {
        clock: Clock::per_second(config.impressions_per_second),
        cost_per_impression: config.cost_per_impression,
        donations_in_cents: true,
        ..RunConfig::new(config.impressions)
    };
    online::run(
        world,
        &mut streams,
        &mut EngineLearner {
            engine: &mut engine,
        },
        &run_config,
        (&mut recorder, Progress::new(10_000, progress)),
    );
    recorder.into_run(engine)
}

/// One component of the [`leader_check`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ComponentCheck {
    /// Component name.
    pub component: String,
    /// The report's leading option: the highest probability of being best.
    pub leader: String,
    /// Its probability of being best, as the report states it.
    pub leader_p_best: f64,
    /// The oracle's option: the one carried by the segments' best versions for the
    /// largest share of traffic.
    pub oracle_option: String,
    /// That share of traffic.
    pub oracle_share: f64,
    /// Share of traffic whose best version carries the report's leader.
    pub leader_oracle_share: f64,
    /// Whether the leader is the oracle's option: the check.
    pub matched: bool,
    /// The option with the highest true even-split objective (averaged over every
    /// allowed version carrying it; see [`OptionTruth`]).
    pub even_best: String,
    /// Rank of the leader by true even-split objective (1: the even-split best).
    pub even_rank: usize,
    /// The leader's true even-split objective as a share below the even-split best.
    pub even_shortfall: f64,
    /// The option with the highest true value at the segment-average version
    /// ([`OptionTruth::average_version_value`]), the quantity the leaderboard's model
    /// estimates.
    pub average_version_best: String,
}

/// The check "leaders are the oracle's options": per component, is the option a
/// report ranks first (highest probability of being best) the option the truth's best
/// versions carry for most of the traffic? Each row also ranks the leader by the
/// true even-split objective, which answers a different question (which option is
/// best averaged over every version, including versions no one would serve) and
/// differs from the oracle's option when options interact.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LeaderCheck {
    /// What the even-split ranking uses: `value` or `rate`.
    pub by: &'static str,
    /// One row per component, in the spec's order.
    pub components: Vec<ComponentCheck>,
    /// Components whose leader is the oracle's option.
    pub matched: usize,
}

impl LeaderCheck {
    /// Whether every component's leader is the oracle's option.
    pub fn all_matched(&self) -> bool {
        self.matched == self.components.len()
    }
}

/// Checks `report`'s option leaderboards against `truths` (per component, per option,
/// in the report's order). The even-split ranking is by value per impression for
/// value campaigns, by rate otherwise.
///
/// # Panics
/// If the report and the truths have different shapes.
pub fn leader_check(
    report: &Report,
    truths: &[Vec<OptionTruth>],
    objective: Objective,
) -> LeaderCheck {
    assert_eq!(report.components.len(), truths.len(), "shape mismatch");
    let by_value = objective == Objective::Value;
    let truth_of = |t: &OptionTruth| if by_value { t.value } else { t.rate };
    let oracle_of = |t: &OptionTruth| {
        if by_value {
            t.oracle_share
        } else {
            t.oracle_share_rate
        }
    };
    let average_of = |t: &OptionTruth| {
        if by_value {
            t.average_version_value
        } else {
            t.average_version_rate
        }
    };
    let components: Vec<ComponentCheck> = report
        .components
        .iter()
        .zip(truths)
        .map(|(component, truths)| {
            assert_eq!(component.options.len(), truths.len(), "shape mismatch");
            let first_max = |score: &dyn Fn(usize) -> f64| {
                (0..truths.len()).fold(0, |best, o| if score(o) > score(best) { o } else { best })
            };
            let leader = first_max(&|o| component.options[o].p_best);
            let oracle = first_max(&|o| oracle_of(&truths[o]));
            let even = first_max(&|o| truth_of(&truths[o]));
            let average = first_max(&|o| average_of(&truths[o]));
            let leader_truth = truth_of(&truths[leader]);
            let even_truth = truth_of(&truths[even]);
            ComponentCheck {
                component: component.component.clone(),
                leader: component.options[leader].option.clone(),
                leader_p_best: component.options[leader].p_best,
                oracle_option: component.options[oracle].option.clone(),
                oracle_share: oracle_of(&truths[oracle]),
                leader_oracle_share: oracle_of(&truths[leader]),
                // A tie in oracle share counts for either option.
                matched: oracle_of(&truths[leader]) >= oracle_of(&truths[oracle]),
                even_best: component.options[even].option.clone(),
                even_rank: 1 + truths.iter().filter(|t| truth_of(t) > leader_truth).count(),
                even_shortfall: if even_truth > 0.0 {
                    1.0 - leader_truth / even_truth
                } else {
                    0.0
                },
                average_version_best: component.options[average].option.clone(),
            }
        })
        .collect();
    LeaderCheck {
        by: if by_value { "value" } else { "rate" },
        matched: components.iter().filter(|c| c.matched).count(),
        components,
    }
}

/// True values of what a report's lift section estimates, over the run's own segment
/// mix (the share of logged rows in each segment).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LiftTruth {
    /// Mean true expected value of the versions served.
    pub realized_expected: f64,
    /// True value per impression of the even split over the allowed versions.
    pub even_split: f64,
    /// True value per impression of the best single version the lift estimates: over
    /// the second half of the log, each row's segment served the version a model of
    /// the first half picked.
    pub best_single_version: f64,
    /// True value per impression of serving `best_versions[s]` (the full model's
    /// picks) in every segment `s`.
    pub best_versions_value: f64,
    /// Logged rows that served their segment's best single version.
    pub best_version_rows: u64,
    /// Their mean reward, unweighted: above `best_version_true_mean` by more than
    /// noise when the versions were picked for their luck on this same log.
    pub best_version_logged_mean: f64,
    /// Their mean true expected value.
    pub best_version_true_mean: f64,
}

/// The true counterparts of [`tla_core::report::Lift`]: `best_versions` are the lift's
/// best single version per segment, `chosen_on_first_half` the picks its estimate
/// scores on the second half ([`tla_core::report::best_versions_on_first_half`]).
pub fn lift_truth(
    world: &World,
    truths: &[SegmentTruth],
    rows: &[LoggedRow],
    best_versions: &[u64],
    chosen_on_first_half: &[u64],
) -> LiftTruth {
    let segments = world.segments();
    let mut count = vec![0u64; segments];
    let mut realized = 0.0;
    let mut options = vec![0u32; world.space.components()];
    let (mut best_rows, mut best_reward, mut best_true) = (0u64, 0.0, 0.0);
    let (mut chosen, mut second_half) = (0.0, 0usize);
    for row in &rows[rows.len() / 2..] {
        if let Some(&v) = chosen_on_first_half.get(row.segment) {
            world.space.decode_into(v, &mut options);
            chosen += world.expected_value(row.segment, &options);
        }
        second_half += 1;
    }
    for row in rows {
        count[row.segment] += 1;
        world.space.decode_into(row.action, &mut options);
        let ev = world.expected_value(row.segment, &options);
        realized += ev;
        if best_versions.get(row.segment) == Some(&row.action) {
            best_rows += 1;
            best_reward += row.reward;
            best_true += ev;
        }
    }
    let n = rows.len().max(1) as f64;
    let (mut even, mut best) = (0.0, 0.0);
    for s in 0..segments {
        let share = count[s] as f64 / n;
        even += share * truths[s].even_value;
        if let Some(&v) = best_versions.get(s) {
            world.space.decode_into(v, &mut options);
            best += share * world.expected_value(s, &options);
        }
    }
    LiftTruth {
        realized_expected: realized / n,
        even_split: even,
        best_single_version: chosen / second_half.max(1) as f64,
        best_versions_value: best,
        best_version_rows: best_rows,
        best_version_logged_mean: best_reward / best_rows.max(1) as f64,
        best_version_true_mean: best_true / best_rows.max(1) as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{option_truths, segment_truths, world_for};
    use rand::SeedableRng;
    use rand_pcg::Pcg64Mcg;
    use tla_core::report::{self, ReportSettings};
    use tla_core::spec::CampaignSpec;

    const SPEC: &str = include_str!("../../../examples/small.toml");

    fn campaign() -> Campaign {
        CampaignSpec::from_toml_str(SPEC)
            .unwrap()
            .validate()
            .unwrap()
    }

    #[test]
    fn option_truths_average_the_allowed_versions() {
        let campaign = campaign();
        let world = world_for(campaign.design(), campaign.segment_shares(), 3);
        let truths = option_truths(&world);
        let space = &world.space;
        // By brute force for the first component's options.
        let mut options = vec![0u32; space.components()];
        for o in 0..space.option_count(0) {
            let (mut value, mut rate, mut average) = (0.0, 0.0, 0.0);
            for s in 0..world.segments() {
                let (mut v_sum, mut r_sum, mut logit_sum, mut n) = (0.0, 0.0, 0.0, 0u64);
                for v in 0..space.total() {
                    space.decode_into(v, &mut options);
                    if options[0] != o || !space.is_allowed(v) {
                        continue;
                    }
                    v_sum += world.expected_value(s, &options);
                    r_sum += world.conversion_probability(s, &options);
                    logit_sum += world.logit(s, &options);
                    n += 1;
                }
                let share = world.segment_probs[s] / world.segment_probs.iter().sum::<f64>();
                value += share * v_sum / n as f64;
                rate += share * r_sum / n as f64;
                // The first component is not the ask: the mean donation over the asks.
                let asks = space.option_count(world.value_component);
                let mean_amount = (0..asks)
                    .map(|a| world.log_mean_amount(s, a).exp())
                    .sum::<f64>()
                    / f64::from(asks);
                average += share * tla_core::stats::logistic(logit_sum / n as f64) * mean_amount;
                assert_eq!(truths[0][o as usize].versions, n);
            }
            let t = truths[0][o as usize];
            assert!((t.value - value).abs() < 1e-12, "{t:?} vs {value}");
            assert!((t.rate - rate).abs() < 1e-12, "{t:?} vs {rate}");
            assert!(
                (t.average_version_value - average).abs() < 1e-12,
                "{t:?} vs {average}"
            );
        }
        // The oracles by value and by rate, by brute force, for the first component.
        let total_share: f64 = world.segment_probs.iter().sum();
        let (mut by_value, mut by_rate) = (vec![0.0; truths[0].len()], vec![0.0; truths[0].len()]);
        for s in 0..world.segments() {
            let (mut best_v, mut best_r) = ((f64::NEG_INFINITY, 0), (f64::NEG_INFINITY, 0));
            for v in (0..space.total()).filter(|&v| space.is_allowed(v)) {
                space.decode_into(v, &mut options);
                let (value, rate) = (
                    world.expected_value(s, &options),
                    world.conversion_probability(s, &options),
                );
                if value > best_v.0 {
                    best_v = (value, options[0] as usize);
                }
                if rate > best_r.0 {
                    best_r = (rate, options[0] as usize);
                }
            }
            by_value[best_v.1] += world.segment_probs[s] / total_share;
            by_rate[best_r.1] += world.segment_probs[s] / total_share;
        }
        for (o, t) in truths[0].iter().enumerate() {
            assert!((t.oracle_share - by_value[o]).abs() < 1e-12, "{t:?}");
            assert!((t.oracle_share_rate - by_rate[o]).abs() < 1e-12, "{t:?}");
        }
        // The even split of the whole space is the versions-weighted mean of any
        // component's options.
        let even: f64 = segment_truths(&world)
            .iter()
            .zip(&world.segment_probs)
            .map(|(t, p)| p * t.even_value)
            .sum::<f64>()
            / world.segment_probs.iter().sum::<f64>();
        for truths in &truths {
            let total: u64 = truths.iter().map(|t| t.versions).sum();
            let mixed: f64 = truths
                .iter()
                .map(|t| t.value * t.versions as f64)
                .sum::<f64>()
                / total as f64;
            // Exact only without exclusions (shares per segment differ otherwise).
            if !space.has_exclusions() {
                assert!((mixed - even).abs() < 1e-9 * even.max(1.0));
            }
            assert_eq!(total, space.allowed_count());
        }
    }

    #[test]
    fn a_seeded_run_is_reproducible_and_logs_exact_propensities() {
        let campaign = campaign();
        let world = world_for(campaign.design(), campaign.segment_shares(), 5);
        let truths = segment_truths(&world);
        let config = CampaignRunConfig::new(3_000, 9);
        let a = run_campaign(&campaign, &world, &truths, &config, |_| {});
        let b = run_campaign(&campaign, &world, &truths, &config, |_| {});
        assert_eq!(a.rows, b.rows);
        assert_eq!(a.engine.snapshot(), b.engine.snapshot());
        assert_eq!(a.rows.len(), 3_000);
        assert!(
            a.rows
                .iter()
                .all(|r| r.propensity > 0.0 && r.propensity <= 1.0)
        );
        assert_eq!(
            a.totals.donors,
            a.rows.iter().filter(|r| r.reward > 0.0).count() as u64
        );
        assert!((a.totals.spend - 3_000.0 * 0.008).abs() < 1e-9);
        assert!(a.totals.expected_value <= a.totals.oracle_value);
        let other = run_campaign(
            &campaign,
            &world,
            &truths,
            &CampaignRunConfig::new(3_000, 10),
            |_| {},
        );
        assert_ne!(a.rows, other.rows);
    }

    #[test]
    fn leader_check_finds_a_wrong_leader() {
        let campaign = campaign();
        let world = world_for(campaign.design(), campaign.segment_shares(), 5);
        let truths = option_truths(&world);
        let engine = Engine::new(&campaign, &mut Pcg64Mcg::seed_from_u64(1));
        let mut report = report::build(
            &campaign,
            &engine,
            &ReportSettings::default(),
            &mut Pcg64Mcg::seed_from_u64(2),
        );
        let crown = |report: &mut Report, k: usize, winner: usize| {
            for (o, row) in report.components[k].options.iter_mut().enumerate() {
                row.p_best = if o == winner { 0.9 } else { 0.0 };
            }
        };
        // Crown the option no segment's best version carries, and the even-split worst.
        let k = (0..truths.len())
            .find(|&k| truths[k].iter().any(|t| t.oracle_share == 0.0))
            .expect("some option is in no best version");
        let unused = (0..truths[k].len())
            .find(|&o| truths[k][o].oracle_share == 0.0)
            .unwrap();
        crown(&mut report, k, unused);
        let check = leader_check(&report, &truths, Objective::Value);
        assert!(!check.components[k].matched);
        assert_eq!(check.components[k].leader_oracle_share, 0.0);
        assert!(!check.all_matched());
        let worst = (0..truths[k].len())
            .min_by(|&a, &b| truths[k][a].value.total_cmp(&truths[k][b].value))
            .unwrap();
        crown(&mut report, k, worst);
        let check = leader_check(&report, &truths, Objective::Value);
        assert_eq!(check.components[k].even_rank, truths[k].len());
        assert!(check.components[k].even_shortfall > 0.0);
        // Crown the oracle's option of every component.
        for (k, truths) in truths.iter().enumerate() {
            let oracle = (0..truths.len())
                .max_by(|&a, &b| truths[a].oracle_share.total_cmp(&truths[b].oracle_share))
                .unwrap();
            crown(&mut report, k, oracle);
        }
        let check = leader_check(&report, &truths, Objective::Value);
        assert!(check.all_matched(), "{check:?}");
        let shares: f64 = truths[0].iter().map(|t| t.oracle_share).sum();
        assert!((shares - 1.0).abs() < 1e-12);
    }
}
