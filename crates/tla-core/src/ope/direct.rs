//! The direct model of the evaluated logs: the mean reward of each (context, action)
//! cell, shrunk toward its context's mean.
//!
//! `q(s, a) = (sum of r over the cell + K · mean(s)) / (n(s, a) + K)` with
//! `K` = [`SHRINKAGE`] pseudo-observations; an action never seen in a context is
//! predicted at the context's mean, and a context never seen at the global mean. The
//! target's direct value `DM(s) = sum_a pi(a | s) q(s, a)` is summed in closed form for
//! each form of [`TargetProbabilities`], so an action space of millions of versions
//! costs no more than the cells seen: the even split over `k` actions is
//! `(sum over the cells seen in s of q(s, a) + (k - seen) · mean(s)) / k`.
//!
//! [`crate::ope::doubly_robust`] fits one such model per fold, on the other folds.

use std::collections::HashMap;

use super::DirectModel;
use super::LoggedRow;
use super::targets::TargetProbabilities;

/// Pseudo-observations of the per-context mean in the per-(context, action) mean:
/// `q(s, a) = (sum r + K · mean(s)) / (n(s, a) + K)`.
pub const SHRINKAGE: f64 = 10.0;

/// Per-(context, action) mean reward shrunk toward the per-context mean, with the
/// target's direct value per context.
#[derive(Debug, Clone)]
pub struct ShrunkMeanModel {
    /// `q(s, a)` of every (context, action) cell seen in the training rows.
    cell_means: HashMap<(usize, u64), f64>,
    /// Mean reward per context (the global mean for a context without training rows).
    context_means: Vec<f64>,
    /// `DM(s)`: the target's direct value per context.
    target_values: Vec<f64>,
}

impl ShrunkMeanModel {
    /// Fits the model on `training` (contexts numbered `0..contexts`; every row's
    /// segment must be below `contexts`) and sums the direct value of `target`.
    pub fn fit(
        training: &[LoggedRow],
        contexts: usize,
        target: TargetProbabilities<'_>,
    ) -> ShrunkMeanModel {
        let global = training.iter().map(|r| r.reward).sum::<f64>() / training.len().max(1) as f64;
        let mut per_context = vec![(0.0, 0.0); contexts];
        let mut cells: HashMap<(usize, u64), (f64, f64)> = HashMap::new();
        for row in training {
            let context = &mut per_context[row.segment];
            context.0 += row.reward;
            context.1 += 1.0;
            let cell = cells.entry((row.segment, row.action)).or_insert((0.0, 0.0));
            cell.0 += row.reward;
            cell.1 += 1.0;
        }
        let context_means: Vec<f64> = per_context
            .iter()
            .map(|&(sum, n)| if n > 0.0 { sum / n } else { global })
            .collect();
        let cell_means: HashMap<(usize, u64), f64> = cells
            .into_iter()
            .map(|((s, a), (sum, n))| {
                (
                    (s, a),
                    (sum + SHRINKAGE * context_means[s]) / (n + SHRINKAGE),
                )
            })
            .collect();
        // The direct value of the even split over k actions in each context:
        // (1/k) [sum over actions seen in s of q(s, a) + (k - seen) * mean(s)].
        // Summed in the order of the cells, not of the hash map, so the same rows give
        // the same value to the last bit in every run.
        let mut ordered: Vec<(&(usize, u64), &f64)> = cell_means.iter().collect();
        ordered.sort_unstable_by_key(|(cell, _)| **cell);
        let even = |k: usize| -> Vec<f64> {
            let mut sums = vec![(0.0, 0usize); contexts];
            for &(&(s, _), &v) in &ordered {
                sums[s].0 += v;
                sums[s].1 += 1;
            }
            sums.iter()
                .enumerate()
                .map(|(s, &(sum, seen))| {
                    (sum + (k.saturating_sub(seen)) as f64 * context_means[s]) / k as f64
                })
                .collect()
        };
        let q = |s: usize, a: u64| cell_means.get(&(s, a)).copied().unwrap_or(context_means[s]);
        let target_values = match target {
            TargetProbabilities::Uniform(k) => even(k),
            TargetProbabilities::Fixed(a) => (0..contexts).map(|s| q(s, a)).collect(),
            TargetProbabilities::Trained { target, allowed } => even(allowed)
                .into_iter()
                .enumerate()
                .map(|(s, even_mean)| target.expectation(s, even_mean, |v| q(s, v)))
                .collect(),
            TargetProbabilities::Table(table) => (0..contexts)
                .map(|s| table.expectation(s, context_means[s], |a| q(s, a)))
                .collect(),
        };
        ShrunkMeanModel {
            cell_means,
            context_means,
            target_values,
        }
    }
}

impl DirectModel for ShrunkMeanModel {
    fn q_hat(&self, segment: usize, action: u64) -> f64 {
        self.cell_means
            .get(&(segment, action))
            .copied()
            .unwrap_or(self.context_means[segment])
    }
    fn target_value(&self, segment: usize) -> f64 {
        self.target_values[segment]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn uniform_direct_value_counts_unseen_actions_at_the_context_mean() {
        // Context 0: action 0 earns 2 (n = 10), action 1 earns 0 (n = 10); mean 1.
        let rows: Vec<LoggedRow> = (0..20)
            .map(|i| LoggedRow {
                segment: 0,
                action: (i % 2) as u64,
                propensity: 0.5,
                reward: if i % 2 == 0 { 2.0 } else { 0.0 },
            })
            .collect();
        let model = ShrunkMeanModel::fit(&rows, 1, TargetProbabilities::Uniform(4));
        // q(0) = (20 + 10) / 20 = 1.5, q(1) = (0 + 10) / 20 = 0.5; two unseen at 1.
        assert!((model.q_hat(0, 0) - 1.5).abs() < 1e-12);
        assert!((model.q_hat(0, 1) - 0.5).abs() < 1e-12);
        assert!((model.q_hat(0, 7) - 1.0).abs() < 1e-12);
        assert!((model.target_value(0) - (1.5 + 0.5 + 1.0 + 1.0) / 4.0).abs() < 1e-12);
        let fixed = ShrunkMeanModel::fit(&rows, 1, TargetProbabilities::Fixed(0));
        assert!((fixed.target_value(0) - 1.5).abs() < 1e-12);
    }

    #[test]
    fn a_context_without_rows_is_predicted_at_the_global_mean() {
        let rows = [LoggedRow {
            segment: 1,
            action: 3,
            propensity: 0.5,
            reward: 4.0,
        }];
        let model = ShrunkMeanModel::fit(&rows, 2, TargetProbabilities::Fixed(3));
        assert_eq!(model.q_hat(0, 3), 4.0);
        assert_eq!(model.target_value(0), 4.0);
        assert_eq!(model.q_hat(1, 3), 4.0);
    }

    proptest! {
        /// The closed-form direct values equal the sums `sum_a pi(a | s) q(s, a)` taken
        /// action by action, for the even split and for a fixed action.
        #[test]
        fn direct_values_equal_the_sum_over_actions(
            cells in proptest::collection::vec((0usize..3, 0u64..6, 0.0f64..20.0), 1..60),
            extra_actions in 0usize..5,
            fixed in 0u64..6,
        ) {
            let rows: Vec<LoggedRow> = cells
                .iter()
                .map(|&(segment, action, reward)| LoggedRow { segment, action, propensity: 0.5, reward })
                .collect();
            let k = 6 + extra_actions;
            let uniform = ShrunkMeanModel::fit(&rows, 3, TargetProbabilities::Uniform(k));
            let one = ShrunkMeanModel::fit(&rows, 3, TargetProbabilities::Fixed(fixed));
            for s in 0..3 {
                let by_action: f64 = (0..k as u64)
                    .map(|a| TargetProbabilities::Uniform(k).probability(s, a) * uniform.q_hat(s, a))
                    .sum();
                prop_assert!((uniform.target_value(s) - by_action).abs() < 1e-9);
                let by_action: f64 = (0..k as u64)
                    .map(|a| TargetProbabilities::Fixed(fixed).probability(s, a) * one.q_hat(s, a))
                    .sum();
                prop_assert!((one.target_value(s) - by_action).abs() < 1e-9);
            }
        }
    }
}
