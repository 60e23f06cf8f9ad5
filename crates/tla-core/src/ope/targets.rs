//! Target policies in the forms the estimators and the direct model can sum over, the
//! four estimates of one target on one log, and the greedy pick of the best logged
//! action.
//!
//! A target policy is evaluated through its probabilities `pi(a | s)`
//! ([`TargetProbabilities`]): the even split over an action space, one fixed action, one
//! action per context, a [`TrainedTarget`] (factorized Thompson sampling trained on
//! other rows of the log), or a table given per (context, action) ([`TargetTable`]).
//! [`estimate_target`] runs IPS, SNIPS, cross-fitted doubly robust and adaptively
//! weighted AIPW ([`crate::ope::evaluate_all`]) with the [`ShrunkMeanModel`] as the
//! direct model; [`Evaluation::of`] adds the weights' report and the per-row terms the
//! bootstrap resamples ([`Evaluation::set_intervals`]).
//!
//! A new kind of target adds a variant to [`TargetProbabilities`], its probability in
//! [`TargetProbabilities::probability`], its `sum_a pi^2` in
//! [`TargetProbabilities::square_mass`] and its direct value in [`ShrunkMeanModel`].

use std::collections::HashMap;

use thiserror::Error;

use rand::Rng;

use super::adaptive::{Stabilizer, default_half_life};
use super::bootstrap::{BootstrapError, Statistic, percentile_intervals};
use super::diagnostics::{WeightReport, warnings};
use super::direct::ShrunkMeanModel;
use super::labelled::TargetTable;
use super::{Estimate, Estimator, LoggedRow, OpeError, doubly_robust_terms, evaluate_all, weights};
use crate::target::{TargetError, TrainedTarget};

/// A target's probabilities `pi(a | s)`, in the forms the direct model can sum over.
#[derive(Debug, Clone, Copy)]
pub enum TargetProbabilities<'a> {
    /// Every action of an action space of this size equally likely.
    Uniform(usize),
    /// In context `c`, every action of an action space of `sizes[c]` equally likely (the
    /// even split over the versions that exist in a context, when options launch).
    UniformPerContext(&'a [usize]),
    /// Always this action.
    Fixed(u64),
    /// Always the action of the context: `actions[s]` in context `s` (the oracle's best
    /// version per segment, the best single version per segment of a report).
    PerContext(&'a [u64]),
    /// Factorized Thompson sampling trained on other rows of the log; actions are
    /// version indices and `allowed` is the campaign's number of allowed versions (the
    /// floor's even split spans them).
    Trained {
        /// The trained target.
        target: &'a TrainedTarget,
        /// Allowed versions.
        allowed: usize,
    },
    /// Probabilities given per (context, action), e.g. read from a file.
    Table(&'a TargetTable),
}

impl TargetProbabilities<'_> {
    /// `pi(action | segment)`.
    pub fn probability(self, segment: usize, action: u64) -> f64 {
        match self {
            TargetProbabilities::Uniform(k) => 1.0 / k as f64,
            TargetProbabilities::UniformPerContext(sizes) => 1.0 / sizes[segment] as f64,
            TargetProbabilities::Fixed(a) => {
                if action == a {
                    1.0
                } else {
                    0.0
                }
            }
            TargetProbabilities::PerContext(actions) => {
                if actions[segment] == action {
                    1.0
                } else {
                    0.0
                }
            }
            TargetProbabilities::Trained { target, .. } => target.probability(segment, action),
            TargetProbabilities::Table(table) => table.probability(segment, action),
        }
    }

    /// `sum_a pi(a | segment)^2`: 1 for a deterministic target, `1/k` for the even split
    /// over `k` actions (the stabilizing weights of [`crate::ope::adaptive`] read it).
    pub fn square_mass(self, segment: usize) -> f64 {
        match self {
            TargetProbabilities::Uniform(k) => 1.0 / k as f64,
            TargetProbabilities::UniformPerContext(sizes) => 1.0 / sizes[segment] as f64,
            TargetProbabilities::Fixed(_) | TargetProbabilities::PerContext(_) => 1.0,
            TargetProbabilities::Trained { target, allowed } => {
                // sum_v pi(v)^2 = sum_v pi(v) f(v) with f = pi, whose mean over the
                // allowed versions is 1 / allowed.
                target.expectation(segment, 1.0 / allowed as f64, |v| {
                    target.probability(segment, v)
                })
            }
            TargetProbabilities::Table(table) => table.square_mass(segment),
        }
    }
}

/// What was evaluated: the target, the rows, the estimates with their intervals, the
/// importance weights and what they warn of.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// A sentence saying what the target is and on which rows it was evaluated.
    pub target: String,
    /// Size of the action space (the uniform target's: the distinct actions of an
    /// imported log or the number given; a campaign's allowed versions).
    pub action_space: usize,
    /// Mean logged reward over the evaluated rows.
    pub logged_mean: f64,
    /// IPS, SNIPS, doubly robust and adaptively weighted AIPW, in that order (the
    /// estimators that need the target's direct value are left out when it cannot be
    /// computed; `notes` says why).
    pub estimates: Vec<Estimate>,
    /// Rows the target was trained on or picked from, before the evaluated rows (0 when
    /// the target learns nothing from the log).
    pub training_rows: usize,
    /// Rows evaluated.
    pub evaluated_rows: usize,
    /// Position in the log (0-based) of the first evaluated row.
    pub first_evaluated: usize,
    /// The importance weights of the evaluated rows.
    pub weights: WeightReport,
    /// Smallest reward of the evaluated rows (an interval below 0 is warned about when it
    /// is not negative).
    pub min_reward: f64,
    /// The intervals' level `1 - alpha` and method.
    pub interval: IntervalSettings,
    /// What the reader should know about how the target was evaluated (e.g. why an
    /// estimator is missing), one sentence each.
    pub notes: Vec<String>,
    /// The per-row terms the bootstrap resamples.
    terms: Terms,
}

/// Per-row terms of the estimators: `w_i`, `w_i r_i` and the doubly robust terms.
#[derive(Debug, Clone, Default)]
struct Terms {
    weights: Vec<f64>,
    weighted_rewards: Vec<f64>,
    doubly_robust: Option<Vec<f64>>,
}

/// How intervals are computed: level `1 - alpha`, normal or percentile bootstrap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntervalSettings {
    /// `1 - alpha` is the level, `alpha` in (0, 0.5].
    pub alpha: f64,
    /// Normal, or bootstrap with this many resamples.
    pub method: IntervalMethod,
}

impl Default for IntervalSettings {
    /// 95% normal intervals.
    fn default() -> Self {
        Self {
            alpha: DEFAULT_ALPHA,
            method: IntervalMethod::Normal,
        }
    }
}

pub use super::sequence::DEFAULT_ALPHA;

/// The default number of bootstrap resamples.
pub const DEFAULT_RESAMPLES: usize = 1000;

/// How an interval is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntervalMethod {
    /// `value ± z_{1 - alpha/2} · std_error` ([`Estimate::at_level`]).
    Normal,
    /// Percentile bootstrap of the rows ([`crate::ope::bootstrap`]).
    Bootstrap {
        /// Resamples (at least 2).
        resamples: usize,
    },
}

impl IntervalSettings {
    /// Refuses an `alpha` outside (0, 0.5] and fewer than 2 resamples.
    pub fn check(&self) -> Result<(), EvaluationError> {
        if !(self.alpha > 0.0 && self.alpha <= 0.5) {
            return Err(EvaluationError::BadAlpha { value: self.alpha });
        }
        if let IntervalMethod::Bootstrap { resamples } = self.method
            && resamples < 2
        {
            return Err(EvaluationError::Bootstrap(BootstrapError::TooFewResamples(
                resamples,
            )));
        }
        Ok(())
    }

    /// A phrase for tables: `95% normal` or `95% bootstrap (1000 resamples)`.
    pub fn describe(&self) -> String {
        let level = 100.0 * (1.0 - self.alpha);
        let level = if (level - level.round()).abs() < 1e-9 {
            format!("{level:.0}%")
        } else {
            format!("{level}%")
        };
        match self.method {
            IntervalMethod::Normal => format!("{level} normal"),
            IntervalMethod::Bootstrap { resamples } => {
                format!("{level} bootstrap ({resamples} resamples of rows)")
            }
        }
    }
}

impl Evaluation {
    /// Evaluates `target` on `rows` (contexts numbered `0..contexts`, the rows at
    /// `first_evaluated..` of the log, after `training_rows` rows the target learned or
    /// was picked from): IPS, SNIPS and cross-fitted doubly robust ([`estimate_target`])
    /// with 95% normal intervals, the weights' report and the per-row terms.
    #[allow(clippy::too_many_arguments)]
    pub fn of(
        target_text: String,
        action_space: usize,
        rows: &[LoggedRow],
        contexts: usize,
        target: TargetProbabilities<'_>,
        folds: usize,
        training_rows: usize,
        first_evaluated: usize,
    ) -> Result<Evaluation, EvaluationError> {
        let estimates = estimate_target(rows, contexts, target, folds)?;
        let w = weights(rows, move |s, a| target.probability(s, a))?;
        let dr = doubly_robust_terms(rows, &w, folds, |training| {
            ShrunkMeanModel::fit(training, contexts, target)
        })?;
        Ok(Self::assemble(
            target_text,
            action_space,
            rows,
            estimates,
            w,
            Some(dr),
            training_rows,
            first_evaluated,
        ))
    }

    /// IPS and SNIPS of a target given only by its probability of each row's logged
    /// action (`probabilities[i]` for `rows[i]`). Doubly robust is left out: its direct
    /// value `DM(s) = sum_a pi(a | s) q(s, a)` needs the target's whole distribution in
    /// each context, which one probability per row does not give.
    pub fn of_row_probabilities(
        target_text: String,
        action_space: usize,
        rows: &[LoggedRow],
        probabilities: &[f64],
        training_rows: usize,
        first_evaluated: usize,
    ) -> Result<Evaluation, EvaluationError> {
        assert_eq!(rows.len(), probabilities.len(), "one probability per row");
        // Each row's own index as its context, so the estimators look its probability up.
        let by_row: Vec<LoggedRow> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| LoggedRow { segment: i, ..*r })
            .collect();
        let probability = |i: usize, _: u64| probabilities[i];
        let w = weights(&by_row, probability)?;
        let estimates = vec![
            super::ips(&by_row, probability)?,
            super::snips(&by_row, probability)?,
        ];
        let mut evaluation = Self::assemble(
            target_text,
            action_space,
            rows,
            estimates,
            w,
            None,
            training_rows,
            first_evaluated,
        );
        evaluation.notes.push(
            "doubly robust is not computed: a column gives the target's probability of each \
             row's logged action only, and the direct value DM(s) = sum_a pi(a|s) q(s,a) needs \
             the target's whole distribution in each context (give it as a file: --target \
             file:PATH)"
                .to_string(),
        );
        Ok(evaluation)
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        target: String,
        action_space: usize,
        rows: &[LoggedRow],
        estimates: Vec<Estimate>,
        w: Vec<f64>,
        doubly_robust: Option<Vec<f64>>,
        training_rows: usize,
        first_evaluated: usize,
    ) -> Evaluation {
        let weighted_rewards = rows.iter().zip(&w).map(|(r, w)| w * r.reward).collect();
        Evaluation {
            target,
            action_space,
            logged_mean: mean_reward(rows),
            estimates,
            training_rows,
            evaluated_rows: rows.len(),
            first_evaluated,
            weights: WeightReport::new(rows, &w),
            min_reward: rows.iter().map(|r| r.reward).fold(f64::INFINITY, f64::min),
            interval: IntervalSettings::default(),
            notes: Vec::new(),
            terms: Terms {
                weights: w,
                weighted_rewards,
                doubly_robust,
            },
        }
    }

    /// Recomputes every interval at level `1 - alpha` ([`Estimate::at_level`]) and, for
    /// [`IntervalMethod::Bootstrap`], replaces the intervals of IPS, SNIPS and doubly
    /// robust by percentile intervals of `resamples` resamples of the rows drawn with
    /// `rng` ([`crate::ope::bootstrap`]; the standard errors stay the normal ones). An
    /// estimator without per-row terms here keeps its normal interval, and a note says
    /// so.
    pub fn set_intervals<R: Rng + ?Sized>(
        &mut self,
        settings: IntervalSettings,
        rng: &mut R,
    ) -> Result<(), EvaluationError> {
        settings.check()?;
        for e in &mut self.estimates {
            *e = e.at_level(settings.alpha);
        }
        self.interval = settings;
        let IntervalMethod::Bootstrap { resamples } = settings.method else {
            return Ok(());
        };
        let terms = &self.terms;
        let mut statistics = Vec::new();
        let mut which = Vec::new();
        for (k, e) in self.estimates.iter().enumerate() {
            let statistic = match e.estimator {
                Estimator::Ips => Some(Statistic::Mean(&terms.weighted_rewards)),
                Estimator::Snips => Some(Statistic::Ratio(&terms.weighted_rewards, &terms.weights)),
                Estimator::DoublyRobust => terms.doubly_robust.as_deref().map(Statistic::Mean),
                Estimator::AwAipw => None,
            };
            match statistic {
                Some(s) => {
                    statistics.push(s);
                    which.push(k);
                }
                None => self.notes.push(format!(
                    "{}: no per-row terms for the bootstrap; its interval is the normal one",
                    e.estimator.name()
                )),
            }
        }
        let intervals = percentile_intervals(&statistics, resamples, settings.alpha, rng)
            .map_err(EvaluationError::Bootstrap)?;
        for (k, interval) in which.into_iter().zip(intervals) {
            let e = &mut self.estimates[k];
            e.lower = interval.lower;
            e.upper = interval.upper;
            if interval.resamples < resamples {
                self.notes.push(format!(
                    "{}: {} of {resamples} resamples drew no row of positive weight and give no value",
                    e.estimator.name(),
                    resamples - interval.resamples
                ));
            }
        }
        self.notes.push(
            "the bootstrap resamples rows as exchangeable; a log written by an adaptive policy \
             (rows depending on earlier rows) breaks that assumption, as it breaks the normal \
             interval's"
                .to_string(),
        );
        Ok(())
    }

    /// The warnings of [`crate::ope::diagnostics::warnings`] on this evaluation, the
    /// heaviest row named by `row_name` (given its position in the log, 0-based).
    pub fn warnings(&self, row_name: impl Fn(usize) -> String) -> Vec<String> {
        warnings(
            &self.weights,
            &self.estimates,
            self.min_reward,
            self.interval.method == IntervalMethod::Normal,
            |i| row_name(self.first_evaluated + i),
        )
    }
}

/// Why a target cannot be evaluated on a log. The messages name the `--target` value
/// the grammar of [`crate::ope::choice`] accepts.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum EvaluationError {
    /// The target gives probability 0 to every logged row.
    #[error(
        "the target gives probability 0 to every logged row: the action it picks never appears in these rows"
    )]
    NoOverlap,
    /// An estimator refused the log.
    #[error(transparent)]
    Estimator(OpeError),
    /// The target does not apply to this kind of log.
    #[error(transparent)]
    NotForThisLog(#[from] super::choice::TargetParseError),
    /// A target that splits the log in halves has too few rows for the folds.
    #[error(
        "{target} needs at least {needed} {rows_name} (two halves, {folds} folds each); the {log_name} has {rows}"
    )]
    TooFewForHalves {
        /// The target (`best-logged`, `factorized-ts`).
        target: &'static str,
        /// Rows needed.
        needed: usize,
        /// Folds of the doubly robust estimator.
        folds: usize,
        /// Rows of the log.
        rows: usize,
        /// What a row is called (`rows`, `decisions`).
        rows_name: &'static str,
        /// What the log is called (`log`, `campaign`).
        log_name: &'static str,
    },
    /// The `--actions` action space is smaller than the distinct actions of the log.
    #[error("--actions {given}: the log already holds {seen} distinct actions")]
    ActionSpaceTooSmall {
        /// The action space given.
        given: usize,
        /// Distinct actions of the log.
        seen: usize,
    },
    /// A `fixed:ACTION` target names an action the log never holds.
    #[error("--target fixed:{label}: action {label:?} never appears in the log")]
    UnknownAction {
        /// The action label.
        label: String,
    },
    /// A fixed version target is refused by the campaign (range, components, options,
    /// exclusions) or by the log (never served); the message says which.
    #[error("{0}")]
    FixedVersion(String),
    /// The trained target could not be trained on the first half.
    #[error("cannot train the factorized-ts target on the training rows")]
    Training(#[source] TargetError),
    /// `alpha` outside (0, 0.5].
    #[error(
        "--alpha {value} is not in (0, 0.5]; accepted: e.g. 0.05 for 95% intervals, 0.1 for 90%"
    )]
    BadAlpha {
        /// The value given.
        value: f64,
    },
    /// The bootstrap refused its settings.
    #[error("bootstrap: {0}")]
    Bootstrap(BootstrapError),
    /// A target file, a column of target probabilities or a setting (the training
    /// share) is refused; the message says which and why.
    #[error("{0}")]
    Refused(String),
}

impl From<OpeError> for EvaluationError {
    fn from(error: OpeError) -> Self {
        match error {
            OpeError::NoOverlap => EvaluationError::NoOverlap,
            other => EvaluationError::Estimator(other),
        }
    }
}

/// IPS, SNIPS, cross-fitted DR and adaptively weighted AIPW of `target` on `rows` (in
/// log order; contexts numbered `0..contexts`), the direct model being a
/// [`ShrunkMeanModel`], fitted per fold for DR and learned row by row for AW-AIPW. A log
/// does not say what the logging policy would have done, so AW-AIPW's stabilizing
/// weights come from the log's earlier rows ([`Stabilizer::FromLog`], half-life
/// [`default_half_life`]).
pub fn estimate_target(
    rows: &[LoggedRow],
    contexts: usize,
    target: TargetProbabilities<'_>,
    folds: usize,
) -> Result<Vec<Estimate>, EvaluationError> {
    let square_mass: Vec<f64> = (0..contexts).map(|s| target.square_mass(s)).collect();
    Ok(evaluate_all(
        rows,
        move |s, a| target.probability(s, a),
        folds,
        |training| ShrunkMeanModel::fit(training, contexts, target),
        ShrunkMeanModel::online(contexts, target),
        Stabilizer::FromLog {
            square_mass: &square_mass,
            half_life: default_half_life(rows.len(), contexts),
        },
    )?)
}

/// The action with the highest SNIPS value of "always this action" on `rows`,
/// `sum_{a_i = a} r_i / p_i / sum_{a_i = a} 1 / p_i`, with that value; ties go to the
/// lowest action. `None` when `rows` is empty.
pub fn best_action_by_snips(rows: &[LoggedRow]) -> Option<(u64, f64)> {
    let mut sums: HashMap<u64, (f64, f64)> = HashMap::new();
    for r in rows {
        let s = sums.entry(r.action).or_insert((0.0, 0.0));
        s.0 += r.reward / r.propensity;
        s.1 += 1.0 / r.propensity;
    }
    sums.into_iter()
        .map(|(a, (num, den))| (a, num / den))
        .min_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)))
}

/// The first and second halves of `rows` in log order, or `None` when either half
/// would be too short for `folds` folds (fewer than `2 · max(folds, 2)` rows); the
/// number of rows needed is [`rows_needed_for_halves`].
pub fn halves(rows: &[LoggedRow], folds: usize) -> Option<(&[LoggedRow], &[LoggedRow])> {
    if rows.len() < rows_needed_for_halves(folds) {
        return None;
    }
    Some(rows.split_at(rows.len() / 2))
}

/// Rows a target evaluated on the second half needs: two halves of `max(folds, 2)`.
pub fn rows_needed_for_halves(folds: usize) -> usize {
    2 * folds.max(2)
}

/// Mean reward of `rows` (NaN when empty).
pub fn mean_reward(rows: &[LoggedRow]) -> f64 {
    rows.iter().map(|r| r.reward).sum::<f64>() / rows.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use rand_pcg::Pcg64Mcg;

    proptest! {
        /// Every form of target is a distribution over its actions: the uniform split
        /// and a fixed action over any action space holding them.
        #[test]
        fn uniform_and_fixed_probabilities_sum_to_one(
            actions in 1usize..200,
            fixed in 0u64..200,
            segment in 0usize..5,
        ) {
            let uniform: f64 = (0..actions as u64)
                .map(|a| TargetProbabilities::Uniform(actions).probability(segment, a))
                .sum();
            prop_assert!((uniform - 1.0).abs() < 1e-9);
            let space = actions.max(fixed as usize + 1) as u64;
            let one: Vec<f64> = (0..space)
                .map(|a| TargetProbabilities::Fixed(fixed).probability(segment, a))
                .collect();
            prop_assert_eq!(one.iter().sum::<f64>(), 1.0);
            prop_assert!(one.iter().all(|&p| p == 0.0 || p == 1.0));
        }

        /// The best action by SNIPS is the one a brute-force scan finds.
        #[test]
        fn best_action_by_snips_is_the_argmax(
            rows in proptest::collection::vec((0u64..5, 0.05f64..1.0, 0.0f64..10.0), 1..40),
        ) {
            let rows: Vec<LoggedRow> = rows
                .into_iter()
                .map(|(action, propensity, reward)| LoggedRow { segment: 0, action, propensity, reward })
                .collect();
            let (best, value) = best_action_by_snips(&rows).unwrap();
            for a in 0..5u64 {
                let (num, den) = rows
                    .iter()
                    .filter(|r| r.action == a)
                    .fold((0.0, 0.0), |(n, d), r| (n + r.reward / r.propensity, d + 1.0 / r.propensity));
                if den > 0.0 {
                    prop_assert!(num / den <= value + 1e-12, "action {a}: {} > {value}", num / den);
                    if (num / den - value).abs() < 1e-15 {
                        prop_assert!(best <= a);
                    }
                }
            }
        }
    }

    #[cfg(feature = "text")]
    #[test]
    fn a_trained_targets_probabilities_sum_to_one_over_the_versions() {
        use crate::spec::CampaignSpec;
        use crate::target::TrainedTargetSettings;
        let campaign = CampaignSpec::from_toml_str(include_str!("../../../../examples/small.toml"))
            .unwrap()
            .validate()
            .unwrap();
        let design = campaign.design();
        let mut rng = Pcg64Mcg::seed_from_u64(3);
        let rows: Vec<LoggedRow> = (0..400)
            .map(|i| LoggedRow {
                segment: i % design.segments(),
                action: (i as u64 * 7) % 16,
                propensity: 1.0 / 16.0,
                reward: if i % 5 == 0 { 3.0 } else { 0.0 },
            })
            .filter(|r| campaign.is_allowed(r.action))
            .collect();
        let target = TrainedTarget::train(
            design,
            &TrainedTargetSettings::for_campaign(&campaign),
            &rows,
            &mut rng,
        )
        .unwrap();
        let probabilities = TargetProbabilities::Trained {
            target: &target,
            allowed: campaign.allowed_versions() as usize,
        };
        for segment in 0..design.segments() {
            let sum: f64 = (0..campaign.total_versions())
                .map(|v| probabilities.probability(segment, v))
                .sum();
            assert!((sum - 1.0).abs() < 1e-12, "segment {segment}: {sum}");
        }
    }

    /// A simulated log with a known truth: 3 contexts, 8 actions, logging by a skewed
    /// but known policy, Bernoulli rewards of 5 with a rate per (context, action). The
    /// value of "always action 2" and of the even split are known exactly; each
    /// estimator must recover them within 4 standard errors on each of 20 seeds, and
    /// their mean over the seeds must lie within 4 standard errors of the mean.
    #[test]
    fn every_estimator_recovers_a_known_value_on_a_simulated_log() {
        let (contexts, actions) = (3usize, 8u64);
        let rate = |s: usize, a: u64| 0.05 + 0.04 * ((s as u64 * 3 + a) % 5) as f64;
        // Logging: action s (the context's favourite) with 0.44, the others 0.08 each.
        let logging = |s: usize, a: u64| if a == s as u64 { 0.44 } else { 0.08 };
        let truth_fixed: f64 =
            (0..contexts).map(|s| 5.0 * rate(s, 2)).sum::<f64>() / contexts as f64;
        let truth_uniform: f64 = (0..contexts)
            .map(|s| (0..actions).map(|a| 5.0 * rate(s, a)).sum::<f64>() / actions as f64)
            .sum::<f64>()
            / contexts as f64;
        for (target, truth) in [
            (TargetProbabilities::Fixed(2), truth_fixed),
            (
                TargetProbabilities::Uniform(actions as usize),
                truth_uniform,
            ),
        ] {
            let mut sums = [0.0; 4];
            let mut squared_errors = [0.0; 4];
            let seeds = 20u64;
            for seed in 0..seeds {
                let mut rng = Pcg64Mcg::seed_from_u64(seed);
                let rows: Vec<LoggedRow> = (0..6000)
                    .map(|_| {
                        let segment = rng.random_range(0..contexts);
                        let mut u: f64 = rng.random();
                        let mut action = 0;
                        while u >= logging(segment, action) {
                            u -= logging(segment, action);
                            action += 1;
                        }
                        let converted = rng.random::<f64>() < rate(segment, action);
                        LoggedRow {
                            segment,
                            action,
                            propensity: logging(segment, action),
                            reward: if converted { 5.0 } else { 0.0 },
                        }
                    })
                    .collect();
                let estimates = estimate_target(&rows, contexts, target, 2).unwrap();
                for (i, e) in estimates.iter().enumerate() {
                    assert!(
                        (e.value - truth).abs() < 4.0 * e.std_error,
                        "{target:?} seed {seed} {}: {} vs {truth} (s.e. {})",
                        e.estimator.name(),
                        e.value,
                        e.std_error
                    );
                    sums[i] += e.value;
                    squared_errors[i] += e.std_error * e.std_error;
                }
            }
            for i in 0..4 {
                let mean = sums[i] / seeds as f64;
                let se_of_mean = squared_errors[i].sqrt() / seeds as f64;
                assert!(
                    (mean - truth).abs() < 4.0 * se_of_mean,
                    "{target:?} estimator {i}: mean {mean} vs {truth} (s.e. {se_of_mean})"
                );
            }
        }
    }

    #[test]
    fn no_overlap_names_the_target_and_halves_need_two_folds_each() {
        let rows = [LoggedRow {
            segment: 0,
            action: 1,
            propensity: 0.5,
            reward: 1.0,
        }; 4];
        let error = estimate_target(&rows, 1, TargetProbabilities::Fixed(0), 2).unwrap_err();
        assert_eq!(error, EvaluationError::NoOverlap);
        assert!(
            error
                .to_string()
                .contains("probability 0 to every logged row")
        );
        assert!(halves(&rows[..3], 2).is_none());
        assert_eq!(
            halves(&rows, 2).map(|(a, b)| (a.len(), b.len())),
            Some((2, 2))
        );
        assert!(halves(&rows, 3).is_none());
        assert_eq!(best_action_by_snips(&[]), None);
    }
}
