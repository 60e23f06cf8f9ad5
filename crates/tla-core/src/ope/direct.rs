//! The direct model of the evaluated logs: the mean reward of each (context, action)
//! cell, shrunk toward its context's mean.
//!
//! `q(s, a) = (sum of r over the cell + K · mean(s)) / (n(s, a) + K)` with
//! `K` = [`SHRINKAGE`] pseudo-observations; an action never seen in a context is
//! predicted at the context's mean, and a context never seen at the global mean (0
//! before any row). The target's direct value `DM(s) = sum_a pi(a | s) q(s, a)` is
//! summed in closed form for each form of [`TargetProbabilities`], so an action space of
//! millions of versions costs no more than the cells seen: the even split over `k`
//! actions is `(sum over the cells seen in s of q(s, a) + (k - seen) · mean(s)) / k`.
//!
//! One model, two uses: [`ShrunkMeanModel::fit`] fits it on a fold's training rows for
//! the cross-fitted [`crate::ope::doubly_robust`]; [`ShrunkMeanModel::online`] starts it
//! empty and [`OnlineModel::learn`] updates it row by row, for the adaptively weighted
//! estimator of [`crate::ope::adaptive`], which scores each row with the model of the
//! rows before it. The sums behind the even split are kept per context
//! (`sum_c r_c / (n_c + K)` and `sum_c K / (n_c + K)` over the cells seen), so a row
//! costs O(1) and the direct value of the even split stays closed-form.

use std::collections::HashMap;

use super::DirectModel;
use super::LoggedRow;
use super::adaptive::OnlineModel;
use super::targets::TargetProbabilities;

/// Pseudo-observations of the per-context mean in the per-(context, action) mean:
/// `q(s, a) = (sum r + K · mean(s)) / (n(s, a) + K)`.
pub const SHRINKAGE: f64 = 10.0;

/// Per-(context, action) mean reward shrunk toward the per-context mean, with the
/// target's direct value per context.
#[derive(Debug, Clone)]
pub struct ShrunkMeanModel<'a> {
    /// The target whose direct value `target_value` gives.
    target: TargetProbabilities<'a>,
    /// Per (context, action) cell seen: (sum of rewards, rows).
    cells: HashMap<(usize, u64), (f64, f64)>,
    /// Per context: (sum of rewards, rows).
    contexts: Vec<(f64, f64)>,
    /// Per context, over its cells seen: `sum_c sum_c / (n_c + K)`, `sum_c K / (n_c + K)`
    /// and how many cells.
    seen: Vec<(f64, f64, usize)>,
    /// Every row: (sum of rewards, rows).
    global: (f64, f64),
    /// The direct values per context, frozen by [`ShrunkMeanModel::fit`] (a fitted
    /// model is read many times and never updated); `None` while learning online.
    frozen: Option<Vec<f64>>,
}

impl<'a> ShrunkMeanModel<'a> {
    /// An empty model of `contexts` contexts (every prediction 0 until it learns), whose
    /// direct value is that of `target`.
    pub fn online(contexts: usize, target: TargetProbabilities<'a>) -> Self {
        Self {
            target,
            cells: HashMap::new(),
            contexts: vec![(0.0, 0.0); contexts],
            seen: vec![(0.0, 0.0, 0); contexts],
            global: (0.0, 0.0),
            frozen: None,
        }
    }

    /// Fits the model on `training` (contexts numbered `0..contexts`; every row's
    /// segment must be below `contexts`) and sums the direct value of `target`.
    pub fn fit(
        training: &[LoggedRow],
        contexts: usize,
        target: TargetProbabilities<'a>,
    ) -> ShrunkMeanModel<'a> {
        let mut model = Self::online(contexts, target);
        for row in training {
            model.learn(row);
        }
        let values = (0..contexts).map(|s| model.direct_value(s)).collect();
        model.frozen = Some(values);
        model
    }

    /// The mean reward of context `s` (the global mean for a context without rows, 0
    /// before any row).
    fn context_mean(&self, s: usize) -> f64 {
        let (sum, n) = self.contexts[s];
        if n > 0.0 {
            sum / n
        } else if self.global.1 > 0.0 {
            self.global.0 / self.global.1
        } else {
            0.0
        }
    }

    /// The even split's direct value over `k` actions in context `s`:
    /// `(1/k) [sum over actions seen in s of q(s, a) + (k - seen) · mean(s)]`.
    fn even(&self, s: usize, k: usize) -> f64 {
        let mean = self.context_mean(s);
        let (scaled_sums, shrink_weights, seen) = self.seen[s];
        (scaled_sums + mean * shrink_weights + k.saturating_sub(seen) as f64 * mean) / k as f64
    }

    /// `sum_a pi(a | s) q(s, a)` for the model as it stands.
    fn direct_value(&self, s: usize) -> f64 {
        match self.target {
            TargetProbabilities::Uniform(k) => self.even(s, k),
            TargetProbabilities::UniformPerContext(sizes) => self.even(s, sizes[s]),
            TargetProbabilities::Fixed(a) => self.q_hat(s, a),
            TargetProbabilities::PerContext(actions) => self.q_hat(s, actions[s]),
            TargetProbabilities::Trained { target, allowed } => {
                target.expectation(s, self.even(s, allowed), |v| self.q_hat(s, v))
            }
            TargetProbabilities::Table(table) => {
                table.expectation(s, self.context_mean(s), |a| self.q_hat(s, a))
            }
        }
    }
}

impl OnlineModel for ShrunkMeanModel<'_> {
    /// Adds one row: O(1).
    ///
    /// # Panics
    /// If the row's segment is not below the model's number of contexts.
    fn learn(&mut self, row: &LoggedRow) {
        self.frozen = None;
        self.global.0 += row.reward;
        self.global.1 += 1.0;
        let context = &mut self.contexts[row.segment];
        context.0 += row.reward;
        context.1 += 1.0;
        let seen = &mut self.seen[row.segment];
        let cell = self
            .cells
            .entry((row.segment, row.action))
            .or_insert((0.0, 0.0));
        if cell.1 > 0.0 {
            seen.0 -= cell.0 / (cell.1 + SHRINKAGE);
            seen.1 -= SHRINKAGE / (cell.1 + SHRINKAGE);
        } else {
            seen.2 += 1;
        }
        cell.0 += row.reward;
        cell.1 += 1.0;
        seen.0 += cell.0 / (cell.1 + SHRINKAGE);
        seen.1 += SHRINKAGE / (cell.1 + SHRINKAGE);
    }
}

impl DirectModel for ShrunkMeanModel<'_> {
    fn q_hat(&self, segment: usize, action: u64) -> f64 {
        let mean = self.context_mean(segment);
        match self.cells.get(&(segment, action)) {
            Some(&(sum, n)) => (sum + SHRINKAGE * mean) / (n + SHRINKAGE),
            None => mean,
        }
    }
    fn target_value(&self, segment: usize) -> f64 {
        match &self.frozen {
            Some(values) => values[segment],
            None => self.direct_value(segment),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ope::adaptive::OnlineModel;
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
        /// Learned row by row, the model predicts at every prefix what the model fitted
        /// on that prefix predicts: the same sums, kept up to date.
        #[test]
        fn online_learning_equals_fitting_on_the_prefix(
            cells in proptest::collection::vec((0usize..3, 0u64..6, 0.0f64..20.0), 1..40),
            k in 6usize..12,
        ) {
            let rows: Vec<LoggedRow> = cells
                .iter()
                .map(|&(segment, action, reward)| LoggedRow { segment, action, propensity: 0.5, reward })
                .collect();
            let per_context = [4u64, 0, 5];
            let sizes = [k, 7, 9];
            for target in [
                TargetProbabilities::UniformPerContext(&sizes),
                TargetProbabilities::Uniform(k),
                TargetProbabilities::Fixed(2),
                TargetProbabilities::PerContext(&per_context),
            ] {
                let mut online = ShrunkMeanModel::online(3, target);
                for n in 1..=rows.len() {
                    online.learn(&rows[n - 1]);
                    let fitted = ShrunkMeanModel::fit(&rows[..n], 3, target);
                    for s in 0..3 {
                        prop_assert!((online.target_value(s) - fitted.target_value(s)).abs() < 1e-9);
                        for a in 0..6 {
                            prop_assert!((online.q_hat(s, a) - fitted.q_hat(s, a)).abs() < 1e-12);
                        }
                    }
                }
            }
        }
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
