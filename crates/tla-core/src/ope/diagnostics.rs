//! When not to trust an estimate: the rules that read a log's importance weights and
//! intervals, one place for every input (`tla evaluate --world`, `--log`, `--data`).
//!
//! [`caution`] holds the three signs of a heavy right tail of `w_i r_i` that a normal
//! interval does not represent (measured on simulator logs in `docs/evaluation.md`);
//! the validation of `tla_sim::ope` flags seeds with it. [`WeightReport`] adds, for one
//! log, where the heaviest weight comes from (its row and its logged propensity) and the
//! share of the total weight held by the top 1% of rows; [`warnings`] turns the report
//! and the estimates into sentences, the caution rules first.
//!
//! Pure: the caller names the rows (a file's data-row number, a decision's position).

use super::{Estimate, LoggedRow, WeightDiagnostics, weight_diagnostics};

/// Caution rule 1: the heaviest row holds more than this share of the total weight.
pub const CAUTION_MAX_WEIGHT_SHARE: f64 = 0.01;
/// Caution rule 2: the mean weight lies more than this many standard errors below 1.
pub const CAUTION_MEAN_WEIGHT_Z: f64 = 3.0;
/// Caution rule 3: the rewards behind the estimate count as fewer effective rows.
pub const CAUTION_MIN_REWARDED: f64 = 10.0;
/// A mean weight more than this many standard errors *above* 1 is warned about too
/// (imported logs and campaigns only; see [`warnings`]).
pub const MEAN_WEIGHT_ABOVE_Z: f64 = 3.0;
/// The top 1% of the rows with a positive weight holding more than this share of the
/// total weight is warned about.
pub const TOP_ROWS_WEIGHT_SHARE: f64 = 0.5;

/// Why an estimate's normal interval may not be trusted, from its weights; `None` when
/// nothing is flagged. Three signs of a heavy right tail of `w_i r_i` that the sample
/// variance does not represent (measured in `docs/evaluation.md`):
///
/// - the heaviest row holds more than [`CAUTION_MAX_WEIGHT_SHARE`] of the total weight
///   (`max w / sum w`; with equal weights this is `1 / ESS`, i.e. an ESS below 100). Such
///   a row stands for that share of the target's traffic, but with conversion rates of
///   a few percent it almost never carries a donation: that part of the value is
///   realised as 0 or as a jump of many standard errors, and the estimate is typically
///   low with an interval too narrow;
/// - `(1/n) sum w_i` lies more than [`CAUTION_MEAN_WEIGHT_Z`] standard errors below 1.
///   Its expectation is exactly 1 whenever the logging policy can choose every version
///   the target can, adaptive or not, so a mean weight clearly below 1 says part of the
///   target's mass sits on rows too rare to have been drawn (versions the logging
///   policy chose only through its exploration floor);
/// - the donations carry fewer than [`CAUTION_MIN_REWARDED`] effective rows
///   ([`WeightDiagnostics::effective_rewarded`]): the estimate is then a sum of a
///   handful of log-normal donations (small world,
///   uniform logging, oracle target, 600 seeds: coverage 0.61 below 5 such rows, 0.84
///   from 5 to 9, 0.90 from 10 to 14).
pub fn caution(weights: &WeightDiagnostics) -> Option<String> {
    let reasons = caution_reasons(weights, None);
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

/// The reasons of [`caution`], one sentence each; `heaviest` names the heaviest row
/// (e.g. `data row 17, propensity 1e-6`) when the caller knows it.
fn caution_reasons(weights: &WeightDiagnostics, heaviest: Option<&str>) -> Vec<String> {
    let mut reasons = Vec::new();
    if weights.max_weight_share > CAUTION_MAX_WEIGHT_SHARE {
        reasons.push(format!(
            "one row{} holds {:.1}% of the total importance weight (weight {:.1})",
            heaviest.map(|h| format!(" ({h})")).unwrap_or_default(),
            100.0 * weights.max_weight_share,
            weights.max_weight
        ));
    }
    let shortfall = (1.0 - weights.mean_weight) / weights.mean_weight_std_error;
    if shortfall > CAUTION_MEAN_WEIGHT_Z {
        reasons.push(format!(
            "the mean importance weight is {:.3} (s.e. {:.3}) where 1 is expected: part of the \
             target's probability sits on rows logged too rarely to be seen",
            weights.mean_weight, weights.mean_weight_std_error
        ));
    }
    if weights.effective_rewarded < CAUTION_MIN_REWARDED {
        reasons.push(format!(
            "the rewards (donations) behind the estimate count as {:.1} rows (fewer than {CAUTION_MIN_REWARDED})",
            weights.effective_rewarded
        ));
    }
    reasons
}

/// The importance weights of one evaluated log: [`WeightDiagnostics`], plus where the
/// heaviest weight comes from and how much of the total weight the top rows hold.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct WeightReport {
    /// The diagnostics the caution rules read.
    pub diagnostics: WeightDiagnostics,
    /// Index (in the evaluated rows, 0-based) of the row with the largest weight; `None`
    /// when every weight is 0.
    pub heaviest_row: Option<usize>,
    /// Logged propensity of that row (NaN when there is none).
    pub heaviest_propensity: f64,
    /// Smallest logged propensity among the rows with a positive weight (NaN when none).
    pub min_propensity: f64,
    /// Share of `sum w_i` held by the top 1% (at least one) of the rows with a positive
    /// weight, ranked by weight; 0 when every weight is 0.
    pub top_rows_weight_share: f64,
}

impl WeightReport {
    /// The report of `rows` under `weights` (one weight per row, from
    /// [`super::weights`]).
    ///
    /// # Panics
    /// If the two slices differ in length (a caller bug).
    pub fn new(rows: &[LoggedRow], weights: &[f64]) -> WeightReport {
        let diagnostics = weight_diagnostics(rows, weights);
        let mut heaviest: Option<usize> = None;
        let mut min_propensity = f64::NAN;
        let mut positive: Vec<f64> = Vec::new();
        for (i, (row, &w)) in rows.iter().zip(weights).enumerate() {
            if w > 0.0 {
                positive.push(w);
                if heaviest.is_none_or(|h| w > weights[h]) {
                    heaviest = Some(i);
                }
                if min_propensity.is_nan() || row.propensity < min_propensity {
                    min_propensity = row.propensity;
                }
            }
        }
        let total: f64 = positive.iter().sum();
        let top = positive.len().div_ceil(100);
        // The `top` largest weights, without sorting them all.
        let top_sum: f64 = if top == 0 {
            0.0
        } else {
            positive.select_nth_unstable_by(top - 1, |a, b| b.total_cmp(a));
            positive[..top].iter().sum()
        };
        WeightReport {
            diagnostics,
            heaviest_row: heaviest,
            heaviest_propensity: heaviest.map_or(f64::NAN, |h| rows[h].propensity),
            min_propensity,
            top_rows_weight_share: if total > 0.0 { top_sum / total } else { 0.0 },
        }
    }
}

/// Every warning about one evaluation, one sentence each: the caution rules of
/// [`caution`] (the heaviest row named by `row_name` with its propensity), a mean
/// weight more than [`MEAN_WEIGHT_ABOVE_Z`] standard errors above 1 (the logged
/// propensities are then smaller than the logging policy's, or the target's
/// probabilities do not sum to 1), the top 1% of the weighted rows holding more than
/// [`TOP_ROWS_WEIGHT_SHARE`] of the weight, and, when the intervals are normal
/// (`normal_intervals`), every interval that reaches below 0 although no reward is
/// negative (`min_reward >= 0`): the normal approximation then does not hold (the
/// bootstrap, `--interval bootstrap`, is the answer; nothing is clipped).
pub fn warnings(
    report: &WeightReport,
    estimates: &[Estimate],
    min_reward: f64,
    normal_intervals: bool,
    row_name: impl Fn(usize) -> String,
) -> Vec<String> {
    let d = &report.diagnostics;
    let heaviest = report
        .heaviest_row
        .map(|h| format!("{}, propensity {}", row_name(h), report.heaviest_propensity));
    let mut out = caution_reasons(d, heaviest.as_deref());
    let excess = (d.mean_weight - 1.0) / d.mean_weight_std_error;
    if excess > MEAN_WEIGHT_ABOVE_Z {
        out.push(format!(
            "the mean importance weight is {:.3} (s.e. {:.3}), more than {MEAN_WEIGHT_ABOVE_Z} \
             standard errors above the 1 expected: the logged propensities may be smaller than \
             the logging policy's, or the target's probabilities may not sum to 1",
            d.mean_weight, d.mean_weight_std_error
        ));
    }
    if d.rows_with_weight >= 100 && report.top_rows_weight_share > TOP_ROWS_WEIGHT_SHARE {
        out.push(format!(
            "the top 1% of the rows with a positive weight hold {:.1}% of the total weight \
             (smallest propensity among the weighted rows {})",
            100.0 * report.top_rows_weight_share,
            report.min_propensity
        ));
    }
    if normal_intervals && min_reward >= 0.0 {
        let below: Vec<&str> = estimates
            .iter()
            .filter(|e| e.lower < 0.0)
            .map(|e| e.estimator.name())
            .collect();
        if !below.is_empty() {
            out.push(format!(
                "the interval of {} reaches below 0 although no reward is negative: the normal \
                 approximation does not hold for this sample (shown as computed, not clipped; \
                 --interval bootstrap gives percentile intervals)",
                below.join(", ")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ope::weights;

    fn fine() -> WeightDiagnostics {
        WeightDiagnostics {
            rows: 100_000,
            rows_with_weight: 100_000,
            rewarded_with_weight: 1_800,
            effective_rewarded: 40.0,
            mean_weight: 1.0,
            mean_weight_std_error: 0.03,
            max_weight: 250.0,
            max_weight_share: 0.0025,
            ess: 1_100.0,
            top_weight_share: 0.8,
        }
    }

    #[test]
    fn caution_flags_heavy_tails() {
        assert_eq!(caution(&fine()), None);
        // One row at the logging floor holds 6% of the weight.
        let floor_hit = WeightDiagnostics {
            max_weight: 12_800.0,
            max_weight_share: 0.06,
            ..fine()
        };
        assert!(caution(&floor_hit).unwrap().contains("6.0% of the total"));
        // Mass missing: mean weight 0.96 with s.e. 0.004 (10 s.e. below 1).
        let missing = WeightDiagnostics {
            mean_weight: 0.96,
            mean_weight_std_error: 0.004,
            ..fine()
        };
        assert!(caution(&missing).unwrap().contains("0.960"));
        let few = WeightDiagnostics {
            effective_rewarded: 9.0,
            ..fine()
        };
        assert!(caution(&few).unwrap().contains("count as 9.0 rows"));
    }

    /// 1,000 rows logged with propensity 0.5, one with 1e-6; the target is the even
    /// split over two actions (probability 0.5): weights 1, and 500,000 for the rare row,
    /// which holds 500,000 / (999 + 500,000) = 99.8% of the weight.
    #[test]
    fn a_tiny_propensity_holding_the_weight_is_named() {
        let mut rows: Vec<LoggedRow> = (0..1000)
            .map(|i| LoggedRow {
                segment: 0,
                action: (i % 2) as u64,
                propensity: 0.5,
                reward: if i % 10 == 0 { 1.0 } else { 0.0 },
            })
            .collect();
        rows[17].propensity = 1e-6;
        let w = weights(&rows, |_, _| 0.5).unwrap();
        let report = WeightReport::new(&rows, &w);
        assert_eq!(report.heaviest_row, Some(17));
        assert_eq!(report.heaviest_propensity, 1e-6);
        assert_eq!(report.min_propensity, 1e-6);
        let share = 500_000.0 / (999.0 + 500_000.0);
        assert!((report.diagnostics.max_weight_share - share).abs() < 1e-12);
        // Top 1% of 1,000 weighted rows = 10 rows: 500,000 + 9 of weight 1.
        assert!((report.top_rows_weight_share - 500_009.0 / 500_999.0).abs() < 1e-12);
        let out = warnings(&report, &[], 0.0, true, |i| format!("data row {}", i + 1));
        assert!(
            out[0].starts_with(
                "one row (data row 18, propensity 0.000001) holds 99.8% of the total importance weight"
            ),
            "{out:?}"
        );
        assert!(out.iter().any(|w| w.contains("top 1%")), "{out:?}");
        // The mean weight (999 + 500,000) / 1,000 = 501 is far from 1 but its s.e. is
        // huge: sd ~ 500,000 / sqrt(1000) / sqrt(1000) ~ 15,800, so no excess warning.
        assert!(!out.iter().any(|w| w.contains("above the 1 expected")));
    }

    #[test]
    fn a_mean_weight_above_one_and_intervals_below_zero_are_warned() {
        let report = WeightReport {
            diagnostics: WeightDiagnostics {
                mean_weight: 1.2,
                mean_weight_std_error: 0.01,
                ..fine()
            },
            heaviest_row: Some(0),
            heaviest_propensity: 0.5,
            min_propensity: 0.5,
            top_rows_weight_share: 0.02,
        };
        let mut estimate = crate::ope::ips(
            &[LoggedRow {
                segment: 0,
                action: 0,
                propensity: 0.5,
                reward: 1.0,
            }; 3],
            |_, _| 0.5,
        )
        .unwrap();
        estimate.lower = -0.1;
        let out = warnings(&report, &[estimate], 0.0, true, |i| format!("row {i}"));
        assert!(out[0].contains("above the 1 expected"), "{out:?}");
        assert!(
            out[1].contains("interval of ips reaches below 0"),
            "{out:?}"
        );
        // Negative rewards: an interval below 0 is no sign of anything.
        let out = warnings(&report, &[estimate], -1.0, true, |i| format!("row {i}"));
        assert_eq!(out.len(), 1);
        // Nor is a bootstrap interval below 0: percentiles of terms that may be
        // negative, as DR's are.
        let out = warnings(&report, &[estimate], 0.0, false, |i| format!("row {i}"));
        assert_eq!(out.len(), 1);
    }
}
