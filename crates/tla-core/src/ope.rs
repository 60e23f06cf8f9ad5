//! Off-policy evaluation: what a candidate policy would have earned on logged traffic.
//!
//! The log is a list of [`LoggedRow`]s: the segment of the impression, the version the
//! logging policy chose, the exact probability with which it chose it (the logged
//! propensity `p_i`) and the reward (donation value, 0 when nobody gave). The target
//! policy is given as a function `target_prob(segment, version)`, the probability that
//! it picks that version for that segment. With `w_i = target_prob(s_i, a_i) / p_i`:
//!
//! - [`ips`]: `V = (1/n) sum w_i r_i`;
//! - [`snips`]: `V = sum w_i r_i / sum w_i`;
//! - [`doubly_robust`]: `V = (1/n) sum [DM(s_i) + w_i (r_i - q(s_i, a_i))]`, where the
//!   direct model `q` and the target's direct value `DM(s) = sum_a pi(a|s) q(s, a)`
//!   come from a [`DirectModel`] fitted by the caller on the *other* folds (cross-fitting),
//!   so no row is scored by a model that saw it.
//!
//! Every estimate carries a 95% normal interval from its per-row influence terms and the
//! effective sample size `(sum w)^2 / sum w^2`. Pure: no I/O, no clock, no randomness
//! (folds are assigned by row index, `i mod K`).
//!
//! The targets evaluated on a log and the direct model live in submodules:
//!
//! - [`choice`]: the grammar of a target's text (`--target`), one parser for every kind
//!   of log, and which targets apply to which;
//! - [`targets`]: a target's probabilities in summable forms, its three estimates on a
//!   log, and the best logged action by SNIPS;
//! - [`direct`]: the direct model, per-(context, action) means shrunk to the context's;
//! - [`labelled`]: targets on an imported log whose actions are labels;
//! - [`campaign`]: targets on a stored campaign's own decisions and conversions;
//! - [`diagnostics`]: the caution rules and warnings read from the weights;
//! - [`bootstrap`]: percentile bootstrap intervals from per-row terms;
//! - [`sequence`]: confidence sequences, intervals valid at every look;
//! - [`adaptive`]: estimators that hold under adaptive logging: adaptively weighted
//!   AIPW with an online direct model, and the doubly robust confidence sequence.

pub mod adaptive;
pub mod bootstrap;
pub mod campaign;
pub mod choice;
pub mod diagnostics;
pub mod direct;
pub mod labelled;
pub mod sequence;
pub mod targets;

use thiserror::Error;

/// The two-sided 95% normal quantile.
pub const Z95: f64 = 1.959_963_984_540_054;

/// Default number of cross-fitting folds.
pub const DEFAULT_FOLDS: usize = 2;

/// One logged decision and what it earned.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct LoggedRow {
    /// Segment (context) of the impression.
    pub segment: usize,
    /// Version (action) the logging policy chose.
    pub action: u64,
    /// Probability with which the logging policy chose it, in (0, 1].
    pub propensity: f64,
    /// Reward observed (donation value; 0 when none).
    pub reward: f64,
}

impl LoggedRow {
    /// Builds rows from columns, refusing mismatched lengths and missing propensities.
    /// The propensities' and rewards' values are checked by the estimators.
    pub fn from_columns(
        segments: &[usize],
        actions: &[u64],
        propensities: &[Option<f64>],
        rewards: &[f64],
    ) -> Result<Vec<LoggedRow>, OpeError> {
        let n = segments.len();
        for (column, len) in [
            ("actions", actions.len()),
            ("propensities", propensities.len()),
            ("rewards", rewards.len()),
        ] {
            if len != n {
                return Err(OpeError::LengthMismatch {
                    column,
                    expected: n,
                    got: len,
                });
            }
        }
        (0..n)
            .map(|i| {
                let propensity = propensities[i].ok_or(OpeError::MissingPropensity { row: i })?;
                Ok(LoggedRow {
                    segment: segments[i],
                    action: actions[i],
                    propensity,
                    reward: rewards[i],
                })
            })
            .collect()
    }
}

/// Why a log cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum OpeError {
    /// No rows.
    #[error("the log is empty")]
    EmptyLog,
    /// A column's length differs from the segments column's.
    #[error("column {column} has {got} rows, expected {expected}")]
    LengthMismatch {
        /// Name of the column.
        column: &'static str,
        /// Rows in the segments column.
        expected: usize,
        /// Rows in this column.
        got: usize,
    },
    /// A row has no propensity.
    #[error("row {row}: the propensity is missing")]
    MissingPropensity {
        /// Row index (0-based).
        row: usize,
    },
    /// A propensity is not a number in (0, 1].
    #[error("row {row}: the propensity {value} is not in (0, 1]")]
    BadPropensity {
        /// Row index (0-based).
        row: usize,
        /// The offending value.
        value: f64,
    },
    /// A reward is not finite.
    #[error("row {row}: the reward {value} is not a finite number")]
    BadReward {
        /// Row index (0-based).
        row: usize,
        /// The offending value.
        value: f64,
    },
    /// The target policy returned something that is not a probability.
    #[error("row {row}: the target probability {value} is not in [0, 1]")]
    BadTargetProbability {
        /// Row index (0-based).
        row: usize,
        /// The offending value.
        value: f64,
    },
    /// The direct model returned a non-finite value.
    #[error("row {row}: the direct model returned {value}")]
    BadDirectModel {
        /// Row index (0-based).
        row: usize,
        /// The offending value.
        value: f64,
    },
    /// The target gives probability 0 to every logged action (SNIPS undefined).
    #[error("the target policy gives probability 0 to every logged decision")]
    NoOverlap,
    /// Rewards so large that their sums leave the range of numbers (a log written before
    /// amounts were bounded), so the estimate is not a number.
    #[error(
        "the rewards are too large to sum (up to {largest:e}); the estimate would not be a finite number"
    )]
    RewardsTooLarge {
        /// The largest reward of the log.
        largest: f64,
    },
    /// A stabilizing weight's conditional second moment is not a number in (0, inf]
    /// ([`adaptive::Stabilizer::Known`]).
    #[error(
        "row {row}: the second moment of the importance weight {value} is not a positive number"
    )]
    BadStabilizer {
        /// Row index (0-based).
        row: usize,
        /// The offending value.
        value: f64,
    },
    /// Cross-fitting needs 2 <= folds <= rows.
    #[error("cross-fitting needs between 2 and {rows} folds, got {folds}")]
    BadFolds {
        /// Folds asked for.
        folds: usize,
        /// Rows in the log.
        rows: usize,
    },
}

/// Which estimator produced an estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Estimator {
    /// Inverse propensity scoring.
    Ips,
    /// Self-normalized inverse propensity scoring.
    Snips,
    /// Doubly robust with a cross-fitted direct model.
    DoublyRobust,
    /// Adaptively weighted AIPW with an online direct model ([`adaptive`]).
    AwAipw,
}

impl Estimator {
    /// Short name: `ips`, `snips`, `dr`, `aw_aipw`.
    pub fn name(self) -> &'static str {
        match self {
            Estimator::Ips => "ips",
            Estimator::Snips => "snips",
            Estimator::DoublyRobust => "dr",
            Estimator::AwAipw => "aw_aipw",
        }
    }
}

/// The value of a target policy per impression, estimated from a log.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Estimate {
    /// Which estimator.
    pub estimator: Estimator,
    /// Estimated value per impression.
    pub value: f64,
    /// Standard error (normal approximation; delta method for SNIPS); infinite with
    /// fewer than two rows (null in JSON).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>, required))]
    pub std_error: f64,
    /// Lower end of the 95% interval; null in JSON when the standard error is infinite.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>, required))]
    pub lower: f64,
    /// Upper end of the 95% interval; null in JSON when the standard error is infinite.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>, required))]
    pub upper: f64,
    /// Effective sample size `(sum w)^2 / sum w^2` (0 when every weight is 0).
    pub ess: f64,
    /// Rows used.
    pub rows: usize,
}

impl Estimate {
    pub(crate) fn new(
        estimator: Estimator,
        value: f64,
        std_error: f64,
        ess: f64,
        rows: usize,
    ) -> Self {
        Self {
            estimator,
            value,
            std_error,
            lower: value - Z95 * std_error,
            upper: value + Z95 * std_error,
            ess,
            rows,
        }
    }

    /// The same estimate with its normal interval at level `1 - alpha` instead of 95%:
    /// `value ± z_{1 - alpha/2} · std_error`.
    ///
    /// # Panics
    /// If `alpha` is not in (0, 1) (the callers check the flag).
    pub fn at_level(self, alpha: f64) -> Self {
        let z = crate::stats::normal_quantile(1.0 - alpha / 2.0);
        Self {
            lower: self.value - z * self.std_error,
            upper: self.value + z * self.std_error,
            ..self
        }
    }

    /// Whether `truth` lies inside the interval.
    pub fn covers(&self, truth: f64) -> bool {
        self.lower <= truth && truth <= self.upper
    }

    /// Width of the interval.
    pub fn width(&self) -> f64 {
        self.upper - self.lower
    }
}

/// A direct model of the reward, fitted on some rows: `q(s, a)` and the target's
/// expected direct value per segment `sum_a pi(a|s) q(s, a)` (the caller computes it,
/// since the action space can hold millions of versions).
pub trait DirectModel {
    /// Predicted reward of action `action` in segment `segment`.
    fn q_hat(&self, segment: usize, action: u64) -> f64;
    /// `sum_a target_prob(segment, a) q_hat(segment, a)`.
    fn target_value(&self, segment: usize) -> f64;
}

/// A direct model made of two closures.
#[derive(Debug, Clone, Copy)]
pub struct FnModel<Q, V> {
    /// `q_hat(segment, action)`.
    pub q_hat: Q,
    /// `target_direct_value(segment)`.
    pub target_value: V,
}

impl<Q: Fn(usize, u64) -> f64, V: Fn(usize) -> f64> DirectModel for FnModel<Q, V> {
    fn q_hat(&self, segment: usize, action: u64) -> f64 {
        (self.q_hat)(segment, action)
    }
    fn target_value(&self, segment: usize) -> f64 {
        (self.target_value)(segment)
    }
}

/// Checks every row and computes the importance weights `pi(a_i|s_i) / p_i`.
pub fn weights(
    rows: &[LoggedRow],
    target_prob: impl Fn(usize, u64) -> f64,
) -> Result<Vec<f64>, OpeError> {
    if rows.is_empty() {
        return Err(OpeError::EmptyLog);
    }
    rows.iter()
        .enumerate()
        .map(|(i, row)| weight(i, row, target_prob(row.segment, row.action)))
        .collect()
}

/// Checks row `i` (its propensity in (0, 1], a finite reward, the target probability
/// `pi` in [0, 1]) and returns its importance weight `pi / p_i`.
pub fn weight(i: usize, row: &LoggedRow, pi: f64) -> Result<f64, OpeError> {
    // `!(p > 0)` also refuses NaN.
    if !(row.propensity > 0.0 && row.propensity <= 1.0) {
        return Err(OpeError::BadPropensity {
            row: i,
            value: row.propensity,
        });
    }
    if !row.reward.is_finite() {
        return Err(OpeError::BadReward {
            row: i,
            value: row.reward,
        });
    }
    if !(0.0..=1.0).contains(&pi) {
        return Err(OpeError::BadTargetProbability { row: i, value: pi });
    }
    Ok(pi / row.propensity)
}

/// `(sum w)^2 / sum w^2`, 0 when every weight is 0.
pub fn effective_sample_size(weights: &[f64]) -> f64 {
    let (sum, sum_sq) = weights
        .iter()
        .fold((0.0, 0.0), |(s, q), &w| (s + w, q + w * w));
    if sum_sq > 0.0 {
        sum * sum / sum_sq
    } else {
        0.0
    }
}

/// How a log's importance weights spread: what tells a heavy tail apart, reported
/// beside the estimates.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct WeightDiagnostics {
    /// Rows.
    pub rows: usize,
    /// Rows with a positive weight (the target could have chosen the logged version).
    pub rows_with_weight: usize,
    /// Rows with a positive weight and a positive reward.
    pub rewarded_with_weight: usize,
    /// The effective number of rewarded rows behind the estimate: `(sum w)^2 / sum w^2`
    /// over the rows with a positive reward (their count when their weights are equal;
    /// rows of tiny weight count for little).
    pub effective_rewarded: f64,
    /// `(1/n) sum w_i`. Its expectation is exactly 1 when the logging policy can choose
    /// every version the target can (each `p_i > 0` where `pi > 0`), also under
    /// adaptive logging; a mean well below 1 says target mass sits on rows too rare to
    /// have been drawn, whose weights are larger than any seen.
    pub mean_weight: f64,
    /// Standard error of `mean_weight` (sample sd of the weights, divisor `n - 1`, over
    /// `sqrt(n)`; infinite for one row), to test it against 1.
    pub mean_weight_std_error: f64,
    /// Largest weight.
    pub max_weight: f64,
    /// `max w / sum w`: the share of the target's traffic the heaviest row stands for
    /// (`1 / ESS` when every positive weight is equal); 0 when every weight is 0.
    pub max_weight_share: f64,
    /// Effective sample size `(sum w)^2 / sum w^2`.
    pub ess: f64,
    /// Share of `sum w_i r_i` coming from the top 1% (at least one) of the rows with a
    /// positive weight, ranked by weight; 0 when the sum is 0.
    pub top_weight_share: f64,
}

/// [`WeightDiagnostics`] of `rows` under `weights` (from [`weights`]).
///
/// # Panics
/// If the two slices differ in length (a caller bug).
pub fn weight_diagnostics(rows: &[LoggedRow], weights: &[f64]) -> WeightDiagnostics {
    assert_eq!(rows.len(), weights.len(), "one weight per row");
    let mut positive: Vec<(f64, f64)> = rows
        .iter()
        .zip(weights)
        .filter(|(_, w)| **w > 0.0)
        .map(|(row, &w)| (w, w * row.reward))
        .collect();
    positive.sort_by(|a, b| b.0.total_cmp(&a.0));
    let total: f64 = positive.iter().map(|(_, wr)| wr).sum();
    let top = positive.len().div_ceil(100);
    let top_sum: f64 = positive[..top].iter().map(|(_, wr)| wr).sum();
    let max_weight = weights.iter().copied().fold(0.0, f64::max);
    let sum_w: f64 = weights.iter().sum();
    let (mean_weight, mean_weight_std_error) = if weights.is_empty() {
        (0.0, f64::INFINITY)
    } else {
        mean_and_se(weights)
    };
    WeightDiagnostics {
        rows: rows.len(),
        rows_with_weight: positive.len(),
        rewarded_with_weight: positive.iter().filter(|(_, wr)| *wr > 0.0).count(),
        effective_rewarded: effective_sample_size(
            &rows
                .iter()
                .zip(weights)
                .filter(|(row, _)| row.reward > 0.0)
                .map(|(_, &w)| w)
                .collect::<Vec<f64>>(),
        ),
        mean_weight,
        mean_weight_std_error,
        max_weight,
        max_weight_share: if sum_w > 0.0 { max_weight / sum_w } else { 0.0 },
        ess: effective_sample_size(weights),
        top_weight_share: if total > 0.0 { top_sum / total } else { 0.0 },
    }
}

/// Mean and standard error of the mean (sample variance with divisor `n - 1`; the
/// standard error is infinite for one row).
fn mean_and_se(terms: &[f64]) -> (f64, f64) {
    let n = terms.len() as f64;
    let mean = terms.iter().sum::<f64>() / n;
    if terms.len() < 2 {
        return (mean, f64::INFINITY);
    }
    let var = terms.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

/// Inverse propensity scoring: `(1/n) sum w_i r_i`, interval from the terms `w_i r_i`.
pub fn ips(
    rows: &[LoggedRow],
    target_prob: impl Fn(usize, u64) -> f64,
) -> Result<Estimate, OpeError> {
    let w = weights(rows, target_prob)?;
    Ok(ips_from_weights(rows, &w))
}

fn ips_from_weights(rows: &[LoggedRow], w: &[f64]) -> Estimate {
    let terms: Vec<f64> = rows.iter().zip(w).map(|(r, w)| w * r.reward).collect();
    let (value, se) = mean_and_se(&terms);
    Estimate::new(
        Estimator::Ips,
        value,
        se,
        effective_sample_size(w),
        rows.len(),
    )
}

/// Self-normalized IPS: `sum w_i r_i / sum w_i`. Delta-method standard error:
/// `sqrt( var(w_i (r_i - V)) / mean(w)^2 / n )`, the variance with divisor `n - 1`.
pub fn snips(
    rows: &[LoggedRow],
    target_prob: impl Fn(usize, u64) -> f64,
) -> Result<Estimate, OpeError> {
    let w = weights(rows, target_prob)?;
    snips_from_weights(rows, &w)
}

fn snips_from_weights(rows: &[LoggedRow], w: &[f64]) -> Result<Estimate, OpeError> {
    let n = rows.len() as f64;
    let sum_w: f64 = w.iter().sum();
    if sum_w <= 0.0 {
        return Err(OpeError::NoOverlap);
    }
    let value = rows.iter().zip(w).map(|(r, w)| w * r.reward).sum::<f64>() / sum_w;
    let se = if rows.len() < 2 {
        f64::INFINITY
    } else {
        let mean_w = sum_w / n;
        let var = rows
            .iter()
            .zip(w)
            .map(|(r, w)| {
                let d = w * (r.reward - value);
                d * d
            })
            .sum::<f64>()
            / (n - 1.0);
        (var / (mean_w * mean_w) / n).sqrt()
    };
    Ok(Estimate::new(
        Estimator::Snips,
        value,
        se,
        effective_sample_size(w),
        rows.len(),
    ))
}

/// Doubly robust with a model fitted elsewhere (no cross-fitting):
/// `(1/n) sum [DM(s_i) + w_i (r_i - q(s_i, a_i))]`, interval from those terms.
pub fn doubly_robust_with(
    rows: &[LoggedRow],
    target_prob: impl Fn(usize, u64) -> f64,
    model: &impl DirectModel,
) -> Result<Estimate, OpeError> {
    let w = weights(rows, target_prob)?;
    let terms = rows
        .iter()
        .zip(&w)
        .enumerate()
        .map(|(i, (row, w))| dr_term(i, row, *w, model))
        .collect::<Result<Vec<f64>, _>>()?;
    let (value, se) = mean_and_se(&terms);
    Ok(Estimate::new(
        Estimator::DoublyRobust,
        value,
        se,
        effective_sample_size(&w),
        rows.len(),
    ))
}

fn dr_term(i: usize, row: &LoggedRow, w: f64, model: &impl DirectModel) -> Result<f64, OpeError> {
    let dm = model.target_value(row.segment);
    let q = model.q_hat(row.segment, row.action);
    let term = dm + w * (row.reward - q);
    if term.is_finite() {
        Ok(term)
    } else {
        Err(OpeError::BadDirectModel {
            row: i,
            value: if dm.is_finite() { q } else { dm },
        })
    }
}

/// The fold of row `i` among `folds`: rows are dealt out in turn (`i mod folds`).
pub fn fold_of(i: usize, folds: usize) -> usize {
    i % folds
}

/// Doubly robust with a cross-fitted direct model: for each fold `k` of `folds`
/// (row `i` is in fold `i mod folds`), `fit` is called with the rows of the other folds
/// and the model it returns scores the rows of fold `k`. The interval comes from the
/// per-row terms `DM(s_i) + w_i (r_i - q(s_i, a_i))`.
pub fn doubly_robust<M: DirectModel>(
    rows: &[LoggedRow],
    target_prob: impl Fn(usize, u64) -> f64,
    folds: usize,
    fit: impl FnMut(&[LoggedRow]) -> M,
) -> Result<Estimate, OpeError> {
    let w = weights(rows, target_prob)?;
    let terms = doubly_robust_terms(rows, &w, folds, fit)?;
    let (value, se) = mean_and_se(&terms);
    Ok(Estimate::new(
        Estimator::DoublyRobust,
        value,
        se,
        effective_sample_size(&w),
        rows.len(),
    ))
}

/// The per-row terms `DM(s_i) + w_i (r_i - q(s_i, a_i))` of [`doubly_robust`], with
/// the weights `w` of [`weights`] and the same cross-fitting: their mean is the
/// estimate (the bootstrap resamples them, [`bootstrap`]).
pub fn doubly_robust_terms<M: DirectModel>(
    rows: &[LoggedRow],
    w: &[f64],
    folds: usize,
    mut fit: impl FnMut(&[LoggedRow]) -> M,
) -> Result<Vec<f64>, OpeError> {
    if folds < 2 || folds > rows.len() {
        return Err(OpeError::BadFolds {
            folds,
            rows: rows.len(),
        });
    }
    let mut terms = vec![0.0; rows.len()];
    let mut training = Vec::with_capacity(rows.len());
    for k in 0..folds {
        training.clear();
        training.extend(
            rows.iter()
                .enumerate()
                .filter(|(i, _)| fold_of(*i, folds) != k)
                .map(|(_, r)| *r),
        );
        let model = fit(&training);
        for i in (k..rows.len()).step_by(folds) {
            terms[i] = dr_term(i, &rows[i], w[i], &model)?;
        }
    }
    Ok(terms)
}

/// IPS, SNIPS, cross-fitted DR and adaptively weighted AIPW on one log, in that order,
/// sharing the weights' validation. `online` is the direct model of the adaptive
/// estimator, empty at the start and updated row by row
/// ([`adaptive::OnlineModel`]); `stabilizer` says how its weights are chosen.
pub fn evaluate_all<M: DirectModel, O: adaptive::OnlineModel>(
    rows: &[LoggedRow],
    target_prob: impl Fn(usize, u64) -> f64 + Copy,
    folds: usize,
    fit: impl FnMut(&[LoggedRow]) -> M,
    online: O,
    stabilizer: adaptive::Stabilizer<'_>,
) -> Result<Vec<Estimate>, OpeError> {
    let w = weights(rows, target_prob)?;
    let ips = ips_from_weights(rows, &w);
    let snips = snips_from_weights(rows, &w)?;
    let dr = doubly_robust(rows, target_prob, folds, fit)?;
    let aw = adaptive::aw_aipw(rows, target_prob, online, stabilizer)?;
    Ok(vec![ips, snips, dr, aw])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    /// (segment, action, propensity, reward):
    /// row 0: (0, 0, 0.50, 10); row 1: (0, 1, 0.50, 0);
    /// row 2: (1, 0, 0.25,  4); row 3: (1, 1, 0.75, 0).
    fn log() -> Vec<LoggedRow> {
        [
            (0, 0, 0.5, 10.0),
            (0, 1, 0.5, 0.0),
            (1, 0, 0.25, 4.0),
            (1, 1, 0.75, 0.0),
        ]
        .into_iter()
        .map(|(segment, action, propensity, reward)| LoggedRow {
            segment,
            action,
            propensity,
            reward,
        })
        .collect()
    }

    /// The target always picks action 0.
    fn always_zero(_: usize, a: u64) -> f64 {
        if a == 0 { 1.0 } else { 0.0 }
    }

    #[test]
    fn ips_by_hand() {
        // w = [1/0.5, 0, 1/0.25, 0] = [2, 0, 4, 0]; w r = [20, 0, 16, 0].
        // IPS = 36 / 4 = 9.
        // deviations from 9: 11, -9, 7, -9; squares 121 + 81 + 49 + 81 = 332;
        // var = 332 / 3; se = sqrt(332 / 3 / 4) = sqrt(27.666...) = 5.259911...
        // ESS = (2 + 4)^2 / (4 + 16) = 36 / 20 = 1.8.
        let e = ips(&log(), always_zero).unwrap();
        close(e.value, 9.0);
        close(e.std_error, (332.0f64 / 12.0).sqrt());
        close(e.std_error, 5.259_911_279_353_167);
        close(e.ess, 1.8);
        close(e.lower, 9.0 - Z95 * e.std_error);
        close(e.upper, 9.0 + Z95 * e.std_error);
        assert_eq!(e.rows, 4);
        assert!(e.covers(9.0) && !e.covers(30.0));
        // The quantile is accurate to about 1e-7 relative.
        let e90 = e.at_level(0.10);
        let z90 = 1.644_853_626_951_472_2;
        assert!((e90.lower - (9.0 - z90 * e.std_error)).abs() < 1e-5);
        assert!((e90.upper - (9.0 + z90 * e.std_error)).abs() < 1e-5);
        assert!((e.at_level(0.05).lower - e.lower).abs() < 1e-5);
    }

    #[test]
    fn snips_by_hand() {
        // SNIPS = (20 + 16) / (2 + 4) = 6.
        // d = w (r - 6) = [2 * 4, 0, 4 * (-2), 0] = [8, 0, -8, 0]; sum d^2 = 128;
        // var = 128 / 3; mean w = 6 / 4 = 1.5;
        // se^2 = (128 / 3) / 1.5^2 / 4 = 128 / 27 = 4.7407...; se = 2.177324...
        let e = snips(&log(), always_zero).unwrap();
        close(e.value, 6.0);
        close(e.std_error, (128.0f64 / 27.0).sqrt());
        close(e.ess, 1.8);
    }

    #[test]
    fn dr_by_hand_with_a_fixed_model() {
        // q(s, 0) = 5, q(s, 1) = 1; the target picks 0, so DM(s) = 5.
        // terms: row 0: 5 + 2 (10 - 5) = 15; row 1: 5 + 0 = 5;
        //        row 2: 5 + 4 (4 - 5) = 1;   row 3: 5 + 0 = 5.
        // DR = 26 / 4 = 6.5; deviations 8.5, -1.5, -5.5, -1.5;
        // squares 72.25 + 2.25 + 30.25 + 2.25 = 107; se = sqrt(107 / 3 / 4) = 2.986079...
        let model = FnModel {
            q_hat: |_: usize, a: u64| if a == 0 { 5.0 } else { 1.0 },
            target_value: |_: usize| 5.0,
        };
        let e = doubly_robust_with(&log(), always_zero, &model).unwrap();
        close(e.value, 6.5);
        close(e.std_error, (107.0f64 / 12.0).sqrt());
    }

    #[test]
    fn dr_cross_fitted_by_hand() {
        // Two folds: fold 0 = rows {0, 2}, fold 1 = rows {1, 3}.
        // The model is the mean reward of its training rows, for every (s, a).
        // Fold 0 is scored by a model fitted on rows {1, 3}: mean(0, 0) = 0:
        //   row 0: 0 + 2 (10 - 0) = 20; row 2: 0 + 4 (4 - 0) = 16.
        // Fold 1 is scored by a model fitted on rows {0, 2}: mean(10, 4) = 7:
        //   row 1: 7 + 0 = 7; row 3: 7 + 0 = 7.
        // DR = (20 + 7 + 16 + 7) / 4 = 12.5; deviations 7.5, -5.5, 3.5, -5.5;
        // squares 56.25 + 30.25 + 12.25 + 30.25 = 129; se = sqrt(129 / 3 / 4) = 3.278719...
        let mut seen = Vec::new();
        let e = doubly_robust(&log(), always_zero, 2, |train| {
            seen.push(train.iter().map(|r| r.reward).collect::<Vec<_>>());
            let m = train.iter().map(|r| r.reward).sum::<f64>() / train.len() as f64;
            FnModel {
                q_hat: move |_: usize, _: u64| m,
                target_value: move |_: usize| m,
            }
        })
        .unwrap();
        assert_eq!(seen, vec![vec![0.0, 0.0], vec![10.0, 4.0]]);
        close(e.value, 12.5);
        close(e.std_error, (129.0f64 / 12.0).sqrt());
        close(e.ess, 1.8);
    }

    #[test]
    fn evaluate_all_matches_the_parts() {
        let fit = |train: &[LoggedRow]| {
            let m = train.iter().map(|r| r.reward).sum::<f64>() / train.len() as f64;
            FnModel {
                q_hat: move |_: usize, _: u64| m,
                target_value: move |_: usize| m,
            }
        };
        // AW-AIPW with equal weights and the shrunk-mean model learned row by row
        // (K = 10 pseudo-rows), the target always action 0:
        // row 0 (s 0, a 0, p 0.5, r 10): nothing learned, DM = q = 0, w = 2: Γ = 20.
        // row 1 (s 0, a 1): w = 0; DM(0) = q(0, 0) = (10 + 10 · 10) / 11 = 10: Γ = 10.
        // row 2 (s 1, a 0, p 0.25, r 4): context 1 unseen, so its mean is the global
        //   mean 10 / 2 = 5 and q = DM = 5; w = 4: Γ = 5 + 4 (4 - 5) = 1.
        // row 3 (s 1, a 1): w = 0; DM(1) = q(1, 0) = (4 + 10 · 4) / 11 = 4: Γ = 4.
        // Mean (20 + 10 + 1 + 4) / 4 = 8.75.
        let online = direct::ShrunkMeanModel::online(2, targets::TargetProbabilities::Fixed(0));
        let all = evaluate_all(
            &log(),
            always_zero,
            2,
            fit,
            online,
            adaptive::Stabilizer::Equal,
        )
        .unwrap();
        let [i, s, d, a] = all[..] else {
            panic!("four estimates: {all:?}")
        };
        close(i.value, 9.0);
        close(s.value, 6.0);
        close(d.value, 12.5);
        close(a.value, 8.75);
        assert_eq!(
            [i.estimator, s.estimator, d.estimator, a.estimator],
            [
                Estimator::Ips,
                Estimator::Snips,
                Estimator::DoublyRobust,
                Estimator::AwAipw
            ]
        );
        assert_eq!(Estimator::AwAipw.name(), "aw_aipw");
    }

    #[test]
    fn weight_diagnostics_by_hand() {
        // Target: action 0. Weights 2, 0, 4, 0; w r = 20, 0, 16, 0.
        // mean w = 6 / 4; ESS = 36 / 20; the top 1% of the 2 positive rows is one row,
        // the one of weight 4: share 16 / 36.
        let rows = log();
        let w = weights(&rows, always_zero).unwrap();
        let d = weight_diagnostics(&rows, &w);
        assert_eq!(
            (d.rows, d.rows_with_weight, d.rewarded_with_weight),
            (4, 2, 2)
        );
        // Rewarded rows: weights 2 and 4, (2 + 4)^2 / (4 + 16) = 1.8.
        close(d.effective_rewarded, 1.8);
        close(d.mean_weight, 1.5);
        // Deviations from 1.5: 0.5, -1.5, 2.5, -1.5; squares sum to 11; var 11 / 3;
        // se = sqrt(11 / 3 / 4).
        close(d.mean_weight_std_error, (11.0f64 / 12.0).sqrt());
        close(d.max_weight, 4.0);
        close(d.max_weight_share, 4.0 / 6.0);
        close(d.ess, 1.8);
        close(d.top_weight_share, 16.0 / 36.0);
        let none = weight_diagnostics(&rows, &[0.0; 4]);
        assert_eq!(
            (none.rows_with_weight, none.ess, none.top_weight_share),
            (0, 0.0, 0.0)
        );
    }

    #[test]
    fn uniform_logging_and_target_give_the_mean() {
        // Target = logging policy: every w = 1, IPS = SNIPS = mean reward = 14 / 4 = 3.5,
        // ESS = 16 / 4 = 4.
        let mut rows = log();
        rows[2].propensity = 0.5;
        rows[3].propensity = 0.5;
        let i = ips(&rows, |_, _| 0.5).unwrap();
        let s = snips(&rows, |_, _| 0.5).unwrap();
        close(i.value, 3.5);
        close(s.value, 3.5);
        close(i.ess, 4.0);
    }

    #[test]
    fn refuses_bad_input() {
        assert_eq!(ips(&[], always_zero), Err(OpeError::EmptyLog));
        for bad in [0.0, -0.1, 1.5, f64::NAN] {
            let mut rows = log();
            rows[2].propensity = bad;
            match snips(&rows, always_zero) {
                Err(OpeError::BadPropensity { row: 2, .. }) => {}
                other => panic!("{bad}: {other:?}"),
            }
        }
        let mut rows = log();
        rows[1].reward = f64::INFINITY;
        assert!(matches!(
            ips(&rows, always_zero),
            Err(OpeError::BadReward { row: 1, .. })
        ));
        assert!(matches!(
            ips(&log(), |_, _| 1.5),
            Err(OpeError::BadTargetProbability { row: 0, .. })
        ));
        assert_eq!(snips(&log(), |_, _| 0.0), Err(OpeError::NoOverlap));
        let fit = |_: &[LoggedRow]| FnModel {
            q_hat: |_: usize, _: u64| 0.0,
            target_value: |_: usize| 0.0,
        };
        assert_eq!(
            doubly_robust(&log(), always_zero, 1, fit).unwrap_err(),
            OpeError::BadFolds { folds: 1, rows: 4 }
        );
        assert_eq!(
            doubly_robust(&log(), always_zero, 5, fit).unwrap_err(),
            OpeError::BadFolds { folds: 5, rows: 4 }
        );
        assert_eq!(
            LoggedRow::from_columns(&[0, 1], &[0], &[Some(0.5), Some(0.5)], &[0.0, 0.0]),
            Err(OpeError::LengthMismatch {
                column: "actions",
                expected: 2,
                got: 1
            })
        );
        assert_eq!(
            LoggedRow::from_columns(&[0, 1], &[0, 1], &[Some(0.5), None], &[0.0, 0.0]),
            Err(OpeError::MissingPropensity { row: 1 })
        );
        let rows = LoggedRow::from_columns(&[0, 1], &[0, 1], &[Some(0.5), Some(1.0)], &[1.0, 0.0])
            .unwrap();
        assert_eq!(rows[1].propensity, 1.0);
        let err = OpeError::BadPropensity {
            row: 7,
            value: f64::NAN,
        };
        assert_eq!(
            err.to_string(),
            "row 7: the propensity NaN is not in (0, 1]"
        );
    }
}
