//! Estimators that hold when the log was written by an adaptive policy.
//!
//! Under adaptive logging (Thompson sampling that settles on some versions and reaches
//! the others only through its exploration floor) the importance weights of a target's
//! rows change by orders of magnitude over the log, and the plain estimators' normal
//! intervals are too narrow (`docs/evaluation.md`). Two remedies, both built on the
//! augmented IPW terms of an **online** direct model:
//!
//! ```text
//! Γ_t = DM_{t-1}(s_t) + pi(a_t | s_t) / p_t · (r_t - q_{t-1}(s_t, a_t))
//! ```
//!
//! where `q_{t-1}` and `DM_{t-1}(s) = sum_a pi(a | s) q_{t-1}(s, a)` come from a model
//! fitted only on the rows before `t` ([`OnlineModel`]; not cross-fitted: under adaptive
//! logging a fold's rows steer the propensities of the other folds' rows). Whatever the
//! logging policy did, `E[Γ_t | rows before t] = V`, the target's value, so the `Γ_t`
//! minus `V` form a martingale difference sequence.
//!
//! - [`aw_aipw`]: the adaptively weighted AIPW of Hadad, Hirshberg, Zhan, Wager and
//!   Athey (PNAS 2021), with contexts as in Zhan, Hadad, Hirshberg and Athey (KDD 2021):
//!   per context `s`, `Q_s = sum h_t Γ_t / sum h_t` over its rows with predictable
//!   variance-stabilizing weights `h_t = 1 / sqrt(m_t)`, `m_t = E[w_t^2 | rows before t,
//!   s_t] = sum_a pi(a | s_t)^2 / e_t(a | s_t)` (the logging policy's probabilities
//!   `e_t` at row `t`), then `Q = sum_s (n_s / n) Q_s`. Rows logged while the logger
//!   rarely chose the target's versions in their context (huge, rarely realised
//!   weights) weigh little there; [`Stabilizer`] says where `m_t` comes from, and
//!   [`AdaptiveAipw`] gives the variance.
//! - [`SequenceInterval`]: the doubly robust confidence sequence of Waudby-Smith,
//!   Pekelis and Ramdas (2022): the running mean of the unweighted `Γ_t` with the radius
//!   of [`Sequence`], valid at every look at once.
//!
//! [`AdaptiveAipw`] is the incremental form of both (one row at a time, read at any
//! look); [`aw_aipw`] and [`adaptive_estimates`] run it over a whole log. Both read
//! each term's variance as at least a plug-in from `m_t`, the rewards and the model
//! ([`AdaptiveAipw::push`]).

use super::sequence::{RunningMean, Sequence};
use super::{DirectModel, Estimate, Estimator, LoggedRow, OpeError, weight};

/// A direct model that learns row by row: the rows before `t` score row `t`.
pub trait OnlineModel: DirectModel {
    /// Learns one row (after it has been scored).
    fn learn(&mut self, row: &LoggedRow);
}

/// Where the stabilizing weights `h_t = 1 / sqrt(m_t)` come from; `m_t` is the second
/// moment of the importance weight of row `t` in its own context `s_t`, given the rows
/// before it: `m_t = sum_a pi(a | s_t)^2 / e_t(a | s_t)`.
#[derive(Debug, Clone, Copy)]
pub enum Stabilizer<'a> {
    /// `m_t` given per row by a caller who knows the logging policy (the simulator):
    /// `e_t` are the logging policy's probabilities in the row's context before its
    /// decision. Each must lie in (0, inf]; infinite gives the row weight 0 (the logger
    /// could not choose the target's versions).
    Known(&'a [f64]),
    /// Estimated from the log's earlier rows only: per context, the overlap `o_s` = an
    /// exponentially weighted mean of `pi(a_u | s)` over the context's earlier rows
    /// (half-life `half_life` rows of the context; the plain mean while it has fewer),
    /// whose expectation is `sum_a e(a | s) pi(a | s)`; then
    /// `m_t = square_mass[s] / o_s` with `square_mass[s] = sum_a pi(a | s)^2`. Exact
    /// for a deterministic target (`1 / e(a* | s)`) and for the even split under
    /// uniform logging (1). A row whose context has no overlap yet weighs 0.
    FromLog {
        /// `sum_a pi(a | s)^2` per context.
        square_mass: &'a [f64],
        /// Half-life of the overlap, in rows of a context.
        half_life: f64,
    },
    /// `h_t = 1`: the online AIPW, unweighted.
    Equal,
}

/// The smallest half-life of [`default_half_life`], in rows of a context.
pub const MIN_HALF_LIFE: f64 = 500.0;

/// The half-life of the overlap of [`Stabilizer::FromLog`] for a log of `rows` rows over
/// `contexts` contexts: a tenth of a context's expected rows, at least
/// [`MIN_HALF_LIFE`]. Long enough to see a target action logged with probability
/// `1 / 1000` a few times, short enough to follow a logger that moves away.
pub fn default_half_life(rows: usize, contexts: usize) -> f64 {
    (rows as f64 / (10.0 * contexts.max(1) as f64)).max(MIN_HALF_LIFE)
}

/// The running state of [`Stabilizer::FromLog`] (and of the others): the weight of the
/// next row, from the rows before it.
#[derive(Debug, Clone)]
pub struct StabilizerState<'a> {
    stabilizer: Stabilizer<'a>,
    /// Per context: (rows so far, overlap).
    overlap: Vec<(f64, f64)>,
    rows: f64,
}

impl<'a> StabilizerState<'a> {
    /// The state before the first row.
    pub fn new(stabilizer: Stabilizer<'a>) -> Self {
        let contexts = match stabilizer {
            Stabilizer::FromLog { square_mass, .. } => square_mass.len(),
            _ => 0,
        };
        Self {
            stabilizer,
            overlap: vec![(0.0, 0.0); contexts],
            rows: 0.0,
        }
    }

    /// `m_t` of row `index` (0-based) in its context `segment`, from the rows before
    /// it: `None` with [`Stabilizer::Equal`]; otherwise in (0, inf] (infinite: weight 0).
    pub fn moment(&self, index: usize, segment: usize) -> Result<Option<f64>, OpeError> {
        match self.stabilizer {
            Stabilizer::Equal => Ok(None),
            Stabilizer::Known(m) => {
                let Some(&m) = m.get(index) else {
                    return Err(OpeError::LengthMismatch {
                        column: "stabilizer",
                        expected: index + 1,
                        got: m.len(),
                    });
                };
                if m.is_nan() || m <= 0.0 {
                    return Err(OpeError::BadStabilizer {
                        row: index,
                        value: m,
                    });
                }
                Ok(Some(m))
            }
            Stabilizer::FromLog { square_mass, .. } => {
                let Some(&(n, o)) = self.overlap.get(segment) else {
                    return Ok(Some(f64::INFINITY));
                };
                Ok(Some(if n > 0.0 && o > 0.0 {
                    square_mass[segment] / o
                } else {
                    f64::INFINITY
                }))
            }
        }
    }

    /// `h_t` of row `index` (0-based) in context `segment`: [`stabilizing_weight`] of
    /// its [`StabilizerState::moment`].
    pub fn weight(&self, index: usize, segment: usize) -> Result<f64, OpeError> {
        Ok(stabilizing_weight(self.moment(index, segment)?))
    }

    /// Learns row `row`'s context and its target probability `pi(a | s)`.
    ///
    /// # Panics
    /// With [`Stabilizer::FromLog`], if the context is not below `square_mass.len()`.
    pub fn learn(&mut self, segment: usize, pi: f64) {
        if let Stabilizer::FromLog { half_life, .. } = self.stabilizer {
            self.rows += 1.0;
            let (n, o) = &mut self.overlap[segment];
            *n += 1.0;
            // The plain mean for the first rows, then the rate whose weights halve
            // every `half_life` rows: 1 - 2^(-1 / half_life).
            let rate = (1.0 / *n).max(1.0 - (-1.0 / half_life).exp2());
            *o += rate * (pi - *o);
        }
    }
}

/// `h = 1 / sqrt(m)` (0 when `m` is infinite; 1 without a moment, [`Stabilizer::Equal`]).
pub fn stabilizing_weight(moment: Option<f64>) -> f64 {
    moment.map_or(1.0, |m| 1.0 / m.sqrt())
}

/// The doubly robust confidence sequence at one look: the mean of the unweighted online
/// AIPW terms with a radius valid at every look at once ([`Sequence::radius`]).
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SequenceInterval {
    /// Mean of the terms `Γ_t`.
    pub value: f64,
    /// Fixed-horizon standard error of that mean (sample sd / sqrt(rows)).
    pub std_error: f64,
    /// Lower end; the sequence holds at every look with probability `1 - alpha`.
    pub lower: f64,
    /// Upper end.
    pub upper: f64,
    /// Rows so far.
    pub rows: usize,
    /// Miss probability over every look together.
    pub alpha: f64,
}

impl SequenceInterval {
    /// Whether `truth` lies inside.
    pub fn covers(&self, truth: f64) -> bool {
        self.lower <= truth && truth <= self.upper
    }

    /// Width.
    pub fn width(&self) -> f64 {
        self.upper - self.lower
    }
}

/// One context's weighted sums in [`AdaptiveAipw`].
#[derive(Debug, Clone, Copy, Default)]
struct Stratum {
    rows: usize,
    /// `sum h`, `sum h Γ`, `sum h^2`, `sum h^2 Γ`, `sum h^2 Γ^2`, rows with `h > 0`.
    sum_h: f64,
    sum_h_gamma: f64,
    sum_h2: f64,
    sum_h2_gamma: f64,
    sum_h2_gamma2: f64,
    weighted_rows: usize,
    /// The plain mean of its terms (a context whose rows all weigh 0).
    plain: RunningMean,
    /// `sum h^2 m κ DM`: the plug-in variance of the weighted sum.
    floor: f64,
}

impl Stratum {
    /// `Q_s` and its standard error: `sum h Γ / sum h`, `sqrt(max(sum h^2 (Γ - Q)^2,
    /// floor)) / sum h` (infinite with fewer than two weighted rows); the plain mean
    /// with an infinite standard error when every weight is 0.
    fn estimate(&self) -> (f64, f64) {
        if self.sum_h <= 0.0 {
            return (self.plain.mean(), f64::INFINITY);
        }
        let value = self.sum_h_gamma / self.sum_h;
        if self.weighted_rows < 2 {
            return (value, f64::INFINITY);
        }
        let ss = self.sum_h2_gamma2 - 2.0 * value * self.sum_h2_gamma + value * value * self.sum_h2;
        (value, ss.max(self.floor).max(0.0).sqrt() / self.sum_h)
    }
}

/// Adaptively weighted AIPW and the doubly robust sequence, one row at a time: push the
/// rows in time order ([`AdaptiveAipw::push`]), read [`AdaptiveAipw::estimate`] and
/// [`AdaptiveAipw::sequence`] at any look.
///
/// The weights are per context (Zhan et al., 2021, with discrete contexts): within
/// context `s`, `Q_s = sum h_t Γ_t / sum h_t` over its rows, `h_t = 1 / sqrt(m_t)` with
/// `m_t = sum_a pi(a | s)^2 / e_t(a | s)` (the row's own context, known before its
/// decision), so the rows logged while the logger rarely chose the target's versions
/// *in that context* weigh little there and nowhere else; then `Q = sum_s (n_s / n) Q_s`
/// with the contexts' shares of the rows, and
/// `se^2 = sum_s (n_s / n)^2 se_s^2 + (1/n) sum_s (n_s / n) (Q_s - Q)^2` (the second
/// part: the shares' own noise).
#[derive(Debug, Clone)]
pub struct AdaptiveAipw<M> {
    model: M,
    rows: usize,
    strata: Vec<Stratum>,
    /// The unweighted terms.
    plain: RunningMean,
    /// `sum w`, `sum w^2` (effective sample size).
    sum_w: f64,
    sum_w2: f64,
    /// `sum r^2` and `sum |r|` over the rows so far (every action): `κ`, a reward's
    /// second moment per unit of mean, for the plug-in variance.
    sum_r2: f64,
    sum_r: f64,
    /// `sum m_t κ_{t-1} DM_{t-1}(s_t)`: the plug-in variance of the plain sum.
    floor_plain: f64,
}

impl<M: OnlineModel> AdaptiveAipw<M> {
    /// Before the first row, with an online model that has learned nothing (or only
    /// rows from before the log).
    pub fn new(model: M) -> Self {
        Self {
            model,
            rows: 0,
            strata: Vec::new(),
            plain: RunningMean::default(),
            sum_w: 0.0,
            sum_w2: 0.0,
            sum_r2: 0.0,
            sum_r: 0.0,
            floor_plain: 0.0,
        }
    }

    /// Scores row `row` (the next in time order; `index` names it in errors) with the
    /// model of the rows before it, `Γ = DM(s) + w (r - q(s, a))` with
    /// `w = target_prob / p`, adds `Γ` to its context with the stabilizing weight of
    /// `moment` (`m_t` of the row's context from the rows before it,
    /// [`StabilizerState::moment`]; `None`: weight 1), then learns the row. Returns `Γ`.
    ///
    /// With a moment, each term's variance is read as at least its plug-in
    /// `m_t · κ · DM(s_t)`: the reward's second moment taken proportional to its mean,
    /// `E[r^2 | s, a] = κ E[r | s, a]` with `κ = sum r^2 / sum |r|` over the earlier rows
    /// (exact when the reward is a conversion times an amount whose distribution does
    /// not depend on the version), and the target's mean reward in the context from the
    /// model. A look taken before any of the target's rarely logged rows has paid out is
    /// then not read as certainty (see `docs/evaluation.md`).
    pub fn push(
        &mut self,
        index: usize,
        row: &LoggedRow,
        target_prob: f64,
        moment: Option<f64>,
    ) -> Result<f64, OpeError> {
        let w = weight(index, row, target_prob)?;
        let dm = self.model.target_value(row.segment);
        let q = self.model.q_hat(row.segment, row.action);
        let gamma = dm + w * (row.reward - q);
        if !gamma.is_finite() {
            return Err(OpeError::BadDirectModel {
                row: index,
                value: if dm.is_finite() { q } else { dm },
            });
        }
        if let Some(m) = moment
            && (m.is_nan() || m <= 0.0)
        {
            return Err(OpeError::BadStabilizer {
                row: index,
                value: m,
            });
        }
        let h = stabilizing_weight(moment);
        if self.strata.len() <= row.segment {
            self.strata.resize(row.segment + 1, Stratum::default());
        }
        let stratum = &mut self.strata[row.segment];
        stratum.rows += 1;
        stratum.sum_h += h;
        stratum.sum_h_gamma += h * gamma;
        stratum.sum_h2 += h * h;
        stratum.sum_h2_gamma += h * h * gamma;
        stratum.sum_h2_gamma2 += h * h * gamma * gamma;
        stratum.weighted_rows += usize::from(h > 0.0);
        stratum.plain.push(gamma);
        if let Some(m) = moment.filter(|m| m.is_finite())
            && self.sum_r > 0.0
        {
            let v = m * self.sum_r2 / self.sum_r * dm.max(0.0);
            stratum.floor += h * h * v;
            self.floor_plain += v;
        }
        self.rows += 1;
        self.plain.push(gamma);
        self.sum_w += w;
        self.sum_w2 += w * w;
        self.sum_r2 += row.reward * row.reward;
        self.sum_r += row.reward.abs();
        self.model.learn(row);
        Ok(gamma)
    }

    /// Rows pushed.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The online model as it stands.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// Per context with rows: its share of the rows `n_s / n`, `Q_s` and its standard
    /// error (see [`AdaptiveAipw`]); contexts without rows are left out.
    pub fn strata(&self) -> Vec<(usize, f64, f64, f64)> {
        let n = self.rows.max(1) as f64;
        self.strata
            .iter()
            .enumerate()
            .filter(|(_, st)| st.rows > 0)
            .map(|(s, st)| {
                let (q, se) = st.estimate();
                (s, st.rows as f64 / n, q, se)
            })
            .collect()
    }

    /// The adaptively weighted estimate `Q = sum_s (n_s / n) Q_s` with its standard
    /// error (see [`AdaptiveAipw`]; infinite while a context has fewer than two weighted
    /// rows; a context whose rows all weigh 0, e.g. one where the log has not yet shown
    /// the logger choosing the target's versions, counts at the plain mean of its terms
    /// with an infinite standard error, so the interval then claims nothing) and its 95%
    /// normal interval; [`OpeError::EmptyLog`] before the first row.
    pub fn estimate(&self) -> Result<Estimate, OpeError> {
        if self.rows == 0 {
            return Err(OpeError::EmptyLog);
        }
        let n = self.rows as f64;
        let strata = self.strata();
        let value: f64 = strata.iter().map(|&(_, p, q, _)| p * q).sum();
        let within: f64 = strata.iter().map(|&(_, p, _, se)| p * p * se * se).sum();
        let shares: f64 = strata
            .iter()
            .map(|&(_, p, q, _)| p * (q - value) * (q - value))
            .sum::<f64>()
            / n;
        let ess = if self.sum_w2 > 0.0 {
            self.sum_w * self.sum_w / self.sum_w2
        } else {
            0.0
        };
        Ok(Estimate::new(
            Estimator::AwAipw,
            value,
            (within + shares).sqrt(),
            ess,
            self.rows,
        ))
    }

    /// The mean of the unweighted terms and its fixed-horizon standard error (the
    /// sample standard error, at least the plug-in `sqrt(sum m κ DM) / n`).
    pub fn plain_mean(&self) -> (f64, f64) {
        let floor = self.floor_plain.sqrt() / self.plain.count().max(1.0);
        (self.plain.mean(), self.plain.std_error().max(floor))
    }

    /// The adaptively weighted confidence sequence after the rows so far: the AW-AIPW
    /// estimate with the radius of `sequence` around its standard error,
    /// `Sequence::radius(n, se)`. With stabilizing weights every weighted term has about
    /// the same conditional variance, so the weighted martingale's intrinsic time grows
    /// like the row count and the normal-mixture boundary applies as to a plain mean
    /// (Howard et al., 2021); it is about 1.55 times AW-AIPW's fixed interval at the
    /// planned rows. [`OpeError::EmptyLog`] before the first row.
    pub fn weighted_sequence(&self, sequence: &Sequence) -> Result<SequenceInterval, OpeError> {
        let e = self.estimate()?;
        let radius = sequence.radius(self.rows as f64, e.std_error);
        Ok(SequenceInterval {
            value: e.value,
            std_error: e.std_error,
            lower: e.value - radius,
            upper: e.value + radius,
            rows: self.rows,
            alpha: sequence.alpha,
        })
    }

    /// The doubly robust confidence sequence after the rows so far: the mean of the
    /// unweighted terms with the radius of `sequence` around [`AdaptiveAipw::plain_mean`].
    pub fn sequence(&self, sequence: &Sequence) -> SequenceInterval {
        let (value, std_error) = self.plain_mean();
        let radius = sequence.radius(self.plain.count(), std_error);
        SequenceInterval {
            value,
            std_error,
            lower: value - radius,
            upper: value + radius,
            rows: self.rows,
            alpha: sequence.alpha,
        }
    }
}

/// Runs [`AdaptiveAipw`] over `rows` in order, each row's stabilizing weight from
/// `stabilizer` and the rows before it; returns the state after the last row.
pub fn run_adaptive<M: OnlineModel>(
    rows: &[LoggedRow],
    target_prob: impl Fn(usize, u64) -> f64,
    model: M,
    stabilizer: Stabilizer<'_>,
) -> Result<AdaptiveAipw<M>, OpeError> {
    if rows.is_empty() {
        return Err(OpeError::EmptyLog);
    }
    if let Stabilizer::Known(m) = stabilizer
        && m.len() != rows.len()
    {
        return Err(OpeError::LengthMismatch {
            column: "stabilizer",
            expected: rows.len(),
            got: m.len(),
        });
    }
    let mut state = StabilizerState::new(stabilizer);
    let mut aipw = AdaptiveAipw::new(model);
    for (i, row) in rows.iter().enumerate() {
        let pi = target_prob(row.segment, row.action);
        let moment = state.moment(i, row.segment)?;
        aipw.push(i, row, pi, moment)?;
        state.learn(row.segment, pi);
    }
    Ok(aipw)
}

/// The adaptively weighted AIPW estimate of the target on `rows` (in time order).
pub fn aw_aipw<M: OnlineModel>(
    rows: &[LoggedRow],
    target_prob: impl Fn(usize, u64) -> f64,
    model: M,
    stabilizer: Stabilizer<'_>,
) -> Result<Estimate, OpeError> {
    run_adaptive(rows, target_prob, model, stabilizer)?.estimate()
}

/// [`aw_aipw`] and the doubly robust confidence sequence on `rows`, the sequence
/// tuned for `rows.len()` rows at miss probability `alpha` (in (0, 1)).
pub fn adaptive_estimates<M: OnlineModel>(
    rows: &[LoggedRow],
    target_prob: impl Fn(usize, u64) -> f64,
    model: M,
    stabilizer: Stabilizer<'_>,
    alpha: f64,
) -> Result<(Estimate, SequenceInterval), OpeError> {
    let aipw = run_adaptive(rows, target_prob, model, stabilizer)?;
    let sequence = Sequence::tuned(alpha, rows.len() as f64);
    Ok((aipw.estimate()?, aipw.sequence(&sequence)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ope::{FnModel, Z95};

    /// A model that predicts the mean reward of the rows it learned, for every action,
    /// and gives the target that value too.
    #[derive(Debug, Clone, Default)]
    struct MeanModel {
        sum: f64,
        n: f64,
    }

    impl DirectModel for MeanModel {
        fn q_hat(&self, _: usize, _: u64) -> f64 {
            if self.n > 0.0 { self.sum / self.n } else { 0.0 }
        }
        fn target_value(&self, s: usize) -> f64 {
            self.q_hat(s, 0)
        }
    }

    impl OnlineModel for MeanModel {
        fn learn(&mut self, row: &LoggedRow) {
            self.sum += row.reward;
            self.n += 1.0;
        }
    }

    fn row(action: u64, propensity: f64, reward: f64) -> LoggedRow {
        LoggedRow {
            segment: 0,
            action,
            propensity,
            reward,
        }
    }

    /// (action, propensity, reward): (0, 0.5, 4), (1, 0.5, 0), (0, 0.25, 2), (0, 0.8, 0).
    fn log() -> Vec<LoggedRow> {
        vec![
            row(0, 0.5, 4.0),
            row(1, 0.5, 0.0),
            row(0, 0.25, 2.0),
            row(0, 0.8, 0.0),
        ]
    }

    fn always_zero(_: usize, a: u64) -> f64 {
        if a == 0 { 1.0 } else { 0.0 }
    }

    /// The terms by hand, the model being the mean of the earlier rows:
    /// row 0: q = 0 (nothing learned): Γ = 0 + 2 (4 - 0) = 8; then mean 4.
    /// row 1: q = 4, w = 0: Γ = 4; then mean (4 + 0) / 2 = 2.
    /// row 2: q = 2, w = 4: Γ = 2 + 4 (2 - 2) = 2; then mean 6 / 3 = 2.
    /// row 3: q = 2, w = 1.25: Γ = 2 + 1.25 (0 - 2) = -0.5.
    #[test]
    fn online_terms_by_hand() {
        let mut aipw = AdaptiveAipw::new(MeanModel::default());
        let log = log();
        let terms: Vec<f64> = log
            .iter()
            .enumerate()
            .map(|(i, r)| aipw.push(i, r, always_zero(0, r.action), None).unwrap())
            .collect();
        assert_eq!(terms, vec![8.0, 4.0, 2.0, -0.5]);
        // Equal weights: Q = 13.5 / 4 = 3.375; deviations 4.625, 0.625, -1.375, -3.875;
        // squares 21.390625 + 0.390625 + 1.890625 + 15.015625 = 38.6875;
        // se = sqrt(38.6875) / 4 = 1.554984...
        let e = aipw.estimate().unwrap();
        assert_eq!(e.estimator, Estimator::AwAipw);
        assert!((e.value - 3.375).abs() < 1e-12);
        assert!((e.std_error - 38.6875f64.sqrt() / 4.0).abs() < 1e-12);
        assert!((e.lower - (3.375 - Z95 * e.std_error)).abs() < 1e-12);
        // Weights w = 2, 0, 4, 1.25: ESS = 7.25^2 / (4 + 16 + 1.5625) = 52.5625 / 21.5625.
        assert!((e.ess - 52.5625 / 21.5625).abs() < 1e-12);
        assert_eq!(e.rows, 4);
        // The plain mean and its standard error (divisor n - 1): var = 38.6875 / 3.
        let (mean, se) = aipw.plain_mean();
        assert!((mean - 3.375).abs() < 1e-12);
        assert!((se - (38.6875f64 / 3.0 / 4.0).sqrt()).abs() < 1e-12);
    }

    /// Known second moments m = 1, 4, 4, 1 give h = 1, 0.5, 0.5, 1 on the same terms
    /// 8, 4, 2, -0.5: sum h = 3; sum h Γ = 8 + 2 + 1 - 0.5 = 10.5; Q = 3.5.
    /// sum h^2 (Γ - Q)^2 = 20.25 + 0.25 · 0.25 + 0.25 · 2.25 + 16 = 36.875.
    /// The plug-in floor is smaller here: κ = sum r^2 / sum r = 16 / 4 before rows 1
    /// and 2 and 20 / 6 before row 3, DM = 4, 2, 2, so with h^2 m = 1 the rows add
    /// 4 · 4 + 4 · 2 + (10/3) · 2 = 30.67 < 36.875: se = sqrt(36.875) / 3.
    #[test]
    fn known_stabilizer_by_hand() {
        let m = [1.0, 4.0, 4.0, 1.0];
        let e = aw_aipw(
            &log(),
            always_zero,
            MeanModel::default(),
            Stabilizer::Known(&m),
        )
        .unwrap();
        assert!((e.value - 3.5).abs() < 1e-12);
        assert!((e.std_error - 36.875f64.sqrt() / 3.0).abs() < 1e-12);
        // A row the logger could not choose the target for weighs nothing.
        let m = [1.0, f64::INFINITY, f64::INFINITY, 1.0];
        let e = aw_aipw(
            &log(),
            always_zero,
            MeanModel::default(),
            Stabilizer::Known(&m),
        )
        .unwrap();
        // (8 - 0.5) / 2 = 3.75; deviations 4.25, -4.25: se = sqrt(2 · 18.0625) / 2 (the
        // floor, from row 3 only, is 20/3, smaller).
        assert!((e.value - 3.75).abs() < 1e-12);
        assert!((e.std_error - (36.125f64).sqrt() / 2.0).abs() < 1e-12);
        for bad in [0.0, -1.0, f64::NAN] {
            let m = [1.0, bad, 1.0, 1.0];
            assert!(
                matches!(
                    aw_aipw(
                        &log(),
                        always_zero,
                        MeanModel::default(),
                        Stabilizer::Known(&m)
                    ),
                    Err(OpeError::BadStabilizer { row: 1, .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            aw_aipw(
                &log(),
                always_zero,
                MeanModel::default(),
                Stabilizer::Known(&[1.0])
            ),
            Err(OpeError::LengthMismatch {
                column: "stabilizer",
                ..
            })
        ));
    }

    /// The weights from the log: one context, the target's action 0. Overlaps after
    /// each row (plain means while under the half-life): row 0 has none (h = 0); after
    /// row 0, o = 1 (pi = 1), so h_1 = sqrt(1 / 1) = 1; after row 1 (pi = 0), o = 1/2,
    /// h_2 = sqrt(1/2); after row 2 (pi = 1), o = 2/3, h_3 = sqrt(2/3).
    #[test]
    fn weights_from_the_log_by_hand() {
        let square_mass = [1.0];
        let stabilizer = Stabilizer::FromLog {
            square_mass: &square_mass,
            half_life: 1000.0,
        };
        let mut state = StabilizerState::new(stabilizer);
        let mut hs = Vec::new();
        for (i, r) in log().iter().enumerate() {
            hs.push(state.weight(i, 0).unwrap());
            state.learn(r.segment, always_zero(0, r.action));
        }
        let want = [0.0, 1.0, 0.5f64.sqrt(), (2.0f64 / 3.0).sqrt()];
        for (h, w) in hs.iter().zip(want) {
            assert!((h - w).abs() < 1e-12, "{hs:?}");
        }
        // Terms 8, 4, 2, -0.5 with those weights.
        let e = aw_aipw(&log(), always_zero, MeanModel::default(), stabilizer).unwrap();
        let sum_h: f64 = want.iter().sum();
        let q = (4.0 * want[1] + 2.0 * want[2] - 0.5 * want[3]) / sum_h;
        assert!((e.value - q).abs() < 1e-12);
        // A half-life of one row forgets at rate 1/2 once the plain mean's 1/n is
        // smaller: o = 1 after row 0, 1/2 after row 1 (rate 1/2), and after row 2
        // (n = 3, 1/3 < 1/2) 1/2 + 1/2 · (1 - 1/2) = 3/4.
        let fast = Stabilizer::FromLog {
            square_mass: &square_mass,
            half_life: 1.0,
        };
        let mut state = StabilizerState::new(fast);
        for r in &log()[..3] {
            state.learn(r.segment, always_zero(0, r.action));
        }
        let o = 0.75f64;
        assert!((state.weight(3, 0).unwrap() - o.sqrt()).abs() < 1e-12);
    }

    /// A constant model, fixed in advance: the online terms equal the DR terms of that
    /// model, and with equal weights the estimate is their mean.
    #[test]
    fn equal_weights_and_a_constant_model_give_the_dr_mean() {
        #[derive(Clone)]
        struct Constant;
        impl DirectModel for Constant {
            fn q_hat(&self, _: usize, _: u64) -> f64 {
                1.0
            }
            fn target_value(&self, _: usize) -> f64 {
                1.0
            }
        }
        impl OnlineModel for Constant {
            fn learn(&mut self, _: &LoggedRow) {}
        }
        let fixed = FnModel {
            q_hat: |_: usize, _: u64| 1.0,
            target_value: |_: usize| 1.0,
        };
        let dr = crate::ope::doubly_robust_with(&log(), always_zero, &fixed).unwrap();
        let (aw, seq) =
            adaptive_estimates(&log(), always_zero, Constant, Stabilizer::Equal, 0.05).unwrap();
        assert!((aw.value - dr.value).abs() < 1e-12);
        assert!((seq.value - dr.value).abs() < 1e-12);
        assert!((seq.std_error - dr.std_error).abs() < 1e-12);
    }

    /// The sequence is wider than the fixed interval of the same terms at every number
    /// of rows, and covers what the fixed interval covers.
    #[test]
    fn the_sequence_is_wider_than_the_fixed_interval() {
        let mut aipw = AdaptiveAipw::new(MeanModel::default());
        let sequence = Sequence::tuned(0.05, 500.0);
        for i in 0..2000usize {
            // A deterministic pseudo-random pattern of rewards and propensities.
            let propensity = 0.1 + 0.8 * ((i * 37 % 101) as f64 / 101.0);
            let reward = if i % 7 == 0 {
                3.0 + (i % 5) as f64
            } else {
                0.0
            };
            let r = row((i % 3) as u64, propensity, reward);
            aipw.push(i, &r, always_zero(0, r.action), None).unwrap();
            if i >= 2 {
                let (mean, se) = aipw.plain_mean();
                let s = aipw.sequence(&sequence);
                assert_eq!(s.value, mean);
                assert!(
                    s.lower < mean - Z95 * se && s.upper > mean + Z95 * se,
                    "{i}"
                );
            }
        }
    }

    /// Terms without spread (a target the log never chose, a constant model q = DM = 1:
    /// every Γ = 1) still get the plug-in variance `m_t κ DM`: every reward is 3, so
    /// κ = sum r^2 / sum r = 3, and `m_t = 4`: rows 1..3 each add
    /// `h^2 m κ DM = 0.25 · 4 · 3 · 1 = 3` to the weighted sum (se `sqrt(9) / sum h`,
    /// sum h = 4 · 0.5) and `m κ DM = 12` to the plain sum (se `sqrt(36) / 4`); row 0
    /// has no earlier reward.
    #[test]
    fn the_plug_in_variance_is_a_floor() {
        #[derive(Clone)]
        struct Constant;
        impl DirectModel for Constant {
            fn q_hat(&self, _: usize, _: u64) -> f64 {
                1.0
            }
            fn target_value(&self, _: usize) -> f64 {
                1.0
            }
        }
        impl OnlineModel for Constant {
            fn learn(&mut self, _: &LoggedRow) {}
        }
        let rows = vec![row(1, 0.5, 3.0); 4];
        let m = [4.0; 4];
        let aipw = run_adaptive(&rows, |_, _| 0.0, Constant, Stabilizer::Known(&m)).unwrap();
        let e = aipw.estimate().unwrap();
        assert_eq!(e.value, 1.0);
        assert!((e.std_error - 1.5).abs() < 1e-12, "{e:?}");
        let (mean, se) = aipw.plain_mean();
        assert_eq!(mean, 1.0);
        assert!((se - 1.5).abs() < 1e-12);
        // Equal weights know no moment: no floor.
        let equal = run_adaptive(&rows, |_, _| 0.0, Constant, Stabilizer::Equal).unwrap();
        assert_eq!(equal.estimate().unwrap().std_error, 0.0);
    }

    /// The weighted sequence is the AW-AIPW estimate with the boundary's radius: wider
    /// than its fixed interval, by about 1.55 at the planned rows.
    #[test]
    fn the_weighted_sequence_is_wider_than_the_aw_interval() {
        let m: Vec<f64> = (0..2000).map(|i| 1.0 + (i % 13) as f64).collect();
        let rows: Vec<LoggedRow> = (0..2000usize)
            .map(|i| {
                let propensity = 0.1 + 0.8 * ((i * 37 % 101) as f64 / 101.0);
                let reward = if i % 7 == 0 {
                    3.0 + (i % 5) as f64
                } else {
                    0.0
                };
                row((i % 3) as u64, propensity, reward)
            })
            .collect();
        let aipw = run_adaptive(
            &rows,
            always_zero,
            MeanModel::default(),
            Stabilizer::Known(&m),
        )
        .unwrap();
        let e = aipw.estimate().unwrap();
        let s = aipw
            .weighted_sequence(&Sequence::tuned(0.05, 2000.0))
            .unwrap();
        assert_eq!(s.value, e.value);
        let ratio = s.width() / e.width();
        assert!(ratio > 1.5 && ratio < 1.6, "{ratio}");
    }

    #[test]
    fn refuses_bad_rows() {
        assert_eq!(
            aw_aipw(&[], always_zero, MeanModel::default(), Stabilizer::Equal).unwrap_err(),
            OpeError::EmptyLog
        );
        let mut rows = log();
        rows[2].propensity = 0.0;
        assert!(matches!(
            aw_aipw(&rows, always_zero, MeanModel::default(), Stabilizer::Equal),
            Err(OpeError::BadPropensity { row: 2, .. })
        ));
        // Every weight 0 (the log's overlap is 0 for every row): the plain mean of the
        // terms, and an interval that claims nothing.
        let square_mass = [1.0];
        let none = Stabilizer::FromLog {
            square_mass: &square_mass,
            half_life: 10.0,
        };
        let e = aw_aipw(&log(), |_, _| 0.0, MeanModel::default(), none).unwrap();
        assert!(e.value.is_finite());
        assert_eq!(e.std_error, f64::INFINITY);
        assert!(!e.lower.is_finite() && !e.upper.is_finite());
    }
}
