//! Evaluating a target on an imported logged-bandit log whose actions and contexts are
//! labels (`tla evaluate --log`): the even split over its action space, one action by
//! its label, or the best logged action picked on the first half and evaluated on the
//! second.
//!
//! The caller reads the file and numbers the labels ([`LabelledLog`]); this module only
//! computes.

use super::LoggedRow;
use super::choice::{EvaluationInput, EvaluationTarget};
use super::targets::{
    Evaluation, EvaluationError, TargetProbabilities, best_action_by_snips, estimate_target,
    halves, mean_reward, rows_needed_for_halves,
};

/// An imported log: rows in evaluation order (by timestamp when the file has one, else
/// file order), with contexts and actions numbered in order of first appearance.
#[derive(Debug, Clone)]
pub struct LabelledLog {
    /// The rows; `segment` is the context number, `action` the index of its label.
    pub rows: Vec<LoggedRow>,
    /// Action labels, indexed by `LoggedRow::action`.
    pub actions: Vec<String>,
    /// Number of distinct contexts.
    pub contexts: usize,
    /// Whether the rows were sorted by a timestamp column.
    pub sorted_by_time: bool,
}

/// Evaluates `target` (`uniform`, `fixed:ACTION` or `best-logged`) on `log` with
/// `folds` cross-fitting folds. `actions` sets the uniform target's action space
/// (default: the distinct actions of the log; refused when smaller).
pub fn evaluate_labelled_log(
    log: &LabelledLog,
    target: &EvaluationTarget,
    actions: Option<usize>,
    folds: usize,
) -> Result<Evaluation, EvaluationError> {
    target.check_input(EvaluationInput::Log)?;
    let seen = log.actions.len();
    let action_space = match actions {
        Some(given) if given < seen => {
            return Err(EvaluationError::ActionSpaceTooSmall { given, seen });
        }
        Some(given) => given,
        None => seen,
    };
    let order = if log.sorted_by_time {
        "rows ordered by timestamp"
    } else {
        "rows in file order"
    };
    match target {
        EvaluationTarget::Fixed(label) => {
            let Some(action) = log.actions.iter().position(|l| l == label) else {
                return Err(EvaluationError::UnknownAction {
                    label: label.clone(),
                });
            };
            let estimates = estimate_target(
                &log.rows,
                log.contexts,
                TargetProbabilities::Fixed(action as u64),
                folds,
            )?;
            Ok(Evaluation {
                target: format!("always action {label:?}; all {} rows", log.rows.len()),
                action_space,
                logged_mean: mean_reward(&log.rows),
                estimates,
            })
        }
        EvaluationTarget::BestLogged => {
            let Some((first, second)) = halves(&log.rows, folds) else {
                return Err(EvaluationError::TooFewForHalves {
                    target: "best-logged",
                    needed: rows_needed_for_halves(folds),
                    folds,
                    rows: log.rows.len(),
                    rows_name: "rows",
                    log_name: "log",
                });
            };
            let (best, first_value) =
                best_action_by_snips(first).expect("the first half holds at least two rows");
            let estimates = estimate_target(
                second,
                log.contexts,
                TargetProbabilities::Fixed(best),
                folds,
            )?;
            Ok(Evaluation {
                target: format!(
                    "best-logged: action {:?} had the highest SNIPS value ({first_value:.4}) on the first half ({} {order}); it is evaluated on the second half ({} rows), not on the rows that chose it",
                    log.actions[best as usize],
                    first.len(),
                    second.len()
                ),
                action_space,
                logged_mean: mean_reward(second),
                estimates,
            })
        }
        // `check_input` admits only uniform besides the two above.
        _ => {
            let estimates = estimate_target(
                &log.rows,
                log.contexts,
                TargetProbabilities::Uniform(action_space),
                folds,
            )?;
            let space = match actions {
                Some(n) => format!("{n} actions (--actions)"),
                None => format!(
                    "the {seen} distinct actions seen in the log (set --actions N for another action space)"
                ),
            };
            Ok(Evaluation {
                target: format!("uniform over {space}; all {} rows", log.rows.len()),
                action_space,
                logged_mean: mean_reward(&log.rows),
                estimates,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(segment: usize, action: u64, reward: f64) -> LoggedRow {
        LoggedRow {
            segment,
            action,
            propensity: 0.5,
            reward,
        }
    }

    /// Actions a = 0 and b = 1, in time order; the first half has a earning 1/2 and b 2/2.
    fn log() -> LabelledLog {
        let rewards = [
            (0, 1.0),
            (1, 0.0),
            (0, 0.0),
            (1, 2.0),
            (0, 0.0),
            (1, 2.0),
            (0, 4.0),
            (1, 0.0),
        ];
        LabelledLog {
            rows: rewards.iter().map(|&(a, r)| row(0, a, r)).collect(),
            actions: vec!["a".into(), "b".into()],
            contexts: 1,
            sorted_by_time: true,
        }
    }

    #[test]
    fn best_logged_picks_on_the_first_half_and_evaluates_on_the_second() {
        let e = evaluate_labelled_log(&log(), &EvaluationTarget::BestLogged, None, 2).unwrap();
        assert!(e.target.contains("action \"b\""), "{}", e.target);
        assert!(
            e.target.contains("rows ordered by timestamp"),
            "{}",
            e.target
        );
        assert_eq!(e.estimates[1].rows, 4);
        // b's rows of the second half earn 2 and 0: SNIPS 1; IPS (1/4)(2/0.5) = 1.
        assert!((e.estimates[1].value - 1.0).abs() < 1e-12);
        assert!((e.estimates[0].value - 1.0).abs() < 1e-12);
        assert!((e.logged_mean - 1.5).abs() < 1e-12);
        let error = evaluate_labelled_log(&log(), &EvaluationTarget::BestLogged, None, 5)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "best-logged needs at least 10 rows (two halves, 5 folds each); the log has 8"
        );
    }

    #[test]
    fn uniform_spans_the_action_space_and_fixed_finds_the_label() {
        let e = evaluate_labelled_log(&log(), &EvaluationTarget::Uniform, Some(4), 2).unwrap();
        assert_eq!(e.action_space, 4);
        // IPS: weights (1/4)/(1/2) = 1/2; mean reward 9/8; IPS 9/16.
        assert!((e.estimates[0].value - 9.0 / 16.0).abs() < 1e-12);
        assert!(
            e.target
                .starts_with("uniform over 4 actions (--actions); all 8 rows")
        );
        let e =
            evaluate_labelled_log(&log(), &EvaluationTarget::Fixed("a".into()), None, 2).unwrap();
        // a's rows earn 1, 0, 0, 4: SNIPS 5/4.
        assert!((e.estimates[1].value - 1.25).abs() < 1e-12);
        assert_eq!(e.target, "always action \"a\"; all 8 rows");
    }

    #[test]
    fn refusals_name_the_action_the_action_space_and_the_input() {
        let error = evaluate_labelled_log(&log(), &EvaluationTarget::Fixed("c".into()), None, 2)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "--target fixed:c: action \"c\" never appears in the log"
        );
        let error = evaluate_labelled_log(&log(), &EvaluationTarget::Uniform, Some(1), 2)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "--actions 1: the log already holds 2 distinct actions"
        );
        let error = evaluate_labelled_log(&log(), &EvaluationTarget::Version(1), None, 2)
            .unwrap_err()
            .to_string();
        assert!(error.contains("does not apply to --log"), "{error}");
    }
}
