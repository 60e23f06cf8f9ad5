//! Evaluating a target on an imported logged-bandit log whose actions and contexts are
//! labels (`tla evaluate --log`): the even split over its action space, one action by
//! its label, the best logged action picked on the first half and evaluated on the
//! second, factorized Thompson sampling trained on the first part of the log and
//! evaluated on the rest, the target's probability of each row's logged action read
//! from a column, or any stochastic, contextual, per-position policy given as a table
//! of probabilities per (context, action) ([`TargetTable`]).
//!
//! The caller reads the file and numbers the labels ([`LabelledLog`]); this module only
//! computes.

use std::collections::{BTreeMap, HashMap};

use rand::Rng;

use super::LoggedRow;
use super::choice::{EvaluationInput, EvaluationTarget};
use super::targets::{
    Evaluation, EvaluationError, TargetProbabilities, best_action_by_snips, halves,
    rows_needed_for_halves,
};
use crate::design::{Design, Interactions, Objective};
use crate::space::VersionSpace;
use crate::target::{TrainedTarget, TrainedTargetSettings};

/// An imported log: rows in evaluation order (by timestamp when the file has one, else
/// file order), with contexts and actions numbered in order of first appearance.
#[derive(Debug, Clone, Default)]
pub struct LabelledLog {
    /// The rows; `segment` is the context number, `action` the index of its label.
    pub rows: Vec<LoggedRow>,
    /// Action labels, indexed by `LoggedRow::action`.
    pub actions: Vec<String>,
    /// The columns whose values make a row's context, in order.
    pub context_columns: Vec<String>,
    /// Each context's key ([`context_key`] of its values), indexed by context number.
    pub context_keys: Vec<String>,
    /// The 1-based data row of the file each row comes from.
    pub data_rows: Vec<usize>,
    /// With `--target column:NAME`: the target's probability of each row's logged
    /// action, one per row.
    pub target_column: Option<Vec<f64>>,
    /// Whether the rows were sorted by a timestamp column.
    pub sorted_by_time: bool,
}

/// Separator of the values in a context key (the ASCII unit separator).
const KEY_SEPARATOR: char = '\u{1f}';

/// The key of a context from its column values, in the order of the context columns:
/// one place, so a log's rows and a target file's rows match.
pub fn context_key<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
    let mut key = String::new();
    for value in values {
        key.push_str(value);
        key.push(KEY_SEPARATOR);
    }
    key
}

impl LabelledLog {
    /// Number of distinct contexts.
    pub fn contexts(&self) -> usize {
        self.context_keys.len()
    }

    /// A context's values as `column=value, ...` (`the single context` when no column
    /// makes it).
    pub fn describe_context(&self, key: &str) -> String {
        if self.context_columns.is_empty() {
            return "the single context (no context columns)".to_string();
        }
        let values = key
            .strip_suffix(KEY_SEPARATOR)
            .unwrap_or(key)
            .split(KEY_SEPARATOR);
        let parts: Vec<String> = self
            .context_columns
            .iter()
            .zip(values)
            .map(|(c, v)| format!("{c}={v}"))
            .collect();
        format!("({})", parts.join(", "))
    }

    /// The name of row `i` (0-based position in evaluation order): its data row.
    pub fn row_name(&self, i: usize) -> String {
        match self.data_rows.get(i) {
            Some(row) => format!("data row {row}"),
            None => format!("row {}", i + 1),
        }
    }
}

/// Tolerance of the check that a context's target probabilities sum to 1.
pub const SUM_TOLERANCE: f64 = 1e-6;

/// One row of a target file: in a context (its [`context_key`]), the target chooses
/// `action` with `probability`.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetEntry {
    /// 1-based data row of the target file.
    pub row: usize,
    /// The context's key.
    pub context: String,
    /// The action's label.
    pub action: String,
    /// The probability.
    pub probability: f64,
}

/// A target policy given by its probabilities per (context, action), over the contexts
/// of a [`LabelledLog`]: any stochastic, contextual or per-position policy.
#[derive(Debug, Clone)]
pub struct TargetTable {
    /// Per context of the log: the probability of each of the log's actions given one
    /// (ordered, so sums over it are the same in every run).
    probabilities: Vec<BTreeMap<u64, f64>>,
    /// Per context of the log: the probability of actions the log never holds.
    unseen_mass: Vec<f64>,
    /// Per context of the log: `sum_a pi(a | context)^2` over every action the file gives.
    square_mass: Vec<f64>,
    /// Rows of the file.
    pub entries: usize,
    /// Contexts of the file that the log never holds (ignored).
    pub contexts_not_in_log: usize,
}

impl TargetTable {
    /// Builds the table of `log` from a file's entries. Refuses a probability outside
    /// [0, 1], a (context, action) given twice, a context whose probabilities do not sum
    /// to 1 within [`SUM_TOLERANCE`] and a context of the log the file does not cover,
    /// naming the context. A logged action the file does not give in a context has
    /// probability 0 there.
    pub fn build(
        log: &LabelledLog,
        entries: impl IntoIterator<Item = TargetEntry>,
    ) -> Result<TargetTable, EvaluationError> {
        let refuse = |message: String| Err(EvaluationError::Refused(message));
        let context_index: HashMap<&str, usize> = log
            .context_keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.as_str(), i))
            .collect();
        let action_index: HashMap<&str, u64> = log
            .actions
            .iter()
            .enumerate()
            .map(|(i, a)| (a.as_str(), i as u64))
            .collect();
        let mut seen: HashMap<(String, String), usize> = HashMap::new();
        let mut sums: HashMap<String, (f64, usize)> = HashMap::new();
        let mut probabilities = vec![BTreeMap::new(); log.contexts()];
        let mut unseen_mass = vec![0.0; log.contexts()];
        let mut square_mass = vec![0.0; log.contexts()];
        let mut count = 0;
        for entry in entries {
            count += 1;
            if !(entry.probability.is_finite() && (0.0..=1.0).contains(&entry.probability)) {
                return refuse(format!(
                    "target file data row {}: the probability {} is not in [0, 1]",
                    entry.row, entry.probability
                ));
            }
            if let Some(first) =
                seen.insert((entry.context.clone(), entry.action.clone()), entry.row)
            {
                return refuse(format!(
                    "target file data row {}: context {} and action {:?} were already given at data row {first}",
                    entry.row,
                    log.describe_context(&entry.context),
                    entry.action
                ));
            }
            let sum = sums
                .entry(entry.context.clone())
                .or_insert((0.0, entry.row));
            sum.0 += entry.probability;
            if let Some(&c) = context_index.get(entry.context.as_str()) {
                square_mass[c] += entry.probability * entry.probability;
                match action_index.get(entry.action.as_str()) {
                    Some(&a) => {
                        probabilities[c].insert(a, entry.probability);
                    }
                    None => unseen_mass[c] += entry.probability,
                }
            }
        }
        let mut by_row: Vec<(&String, &(f64, usize))> = sums.iter().collect();
        by_row.sort_by_key(|(_, (_, row))| *row);
        for (context, (sum, row)) in by_row {
            if (sum - 1.0).abs() > SUM_TOLERANCE {
                return refuse(format!(
                    "the target's probabilities in context {} sum to {sum}, not 1 (within {SUM_TOLERANCE}; the context's first target file data row is {row})",
                    log.describe_context(context)
                ));
            }
        }
        for (c, key) in log.context_keys.iter().enumerate() {
            if !sums.contains_key(key) {
                let first = log.rows.iter().position(|r| r.segment == c).unwrap_or(0);
                return refuse(format!(
                    "the target file gives no probabilities in context {}, which the log holds (first at {}); give every context of the log its distribution over actions",
                    log.describe_context(key),
                    log.row_name(first)
                ));
            }
        }
        let contexts_not_in_log = sums
            .keys()
            .filter(|k| !context_index.contains_key(k.as_str()))
            .count();
        Ok(TargetTable {
            probabilities,
            unseen_mass,
            square_mass,
            entries: count,
            contexts_not_in_log,
        })
    }

    /// `pi(action | context)`: as the file gives it, 0 for an action it does not give.
    pub fn probability(&self, context: usize, action: u64) -> f64 {
        self.probabilities[context]
            .get(&action)
            .copied()
            .unwrap_or(0.0)
    }

    /// `sum_a pi(a | context) f(a)`, where `f` is `unseen` on every action the log never
    /// holds (a direct model predicts those at the context's mean).
    pub fn expectation(&self, context: usize, unseen: f64, mut f: impl FnMut(u64) -> f64) -> f64 {
        self.probabilities[context]
            .iter()
            .map(|(&a, &p)| p * f(a))
            .sum::<f64>()
            + self.unseen_mass[context] * unseen
    }

    /// `sum_a pi(a | context)^2` over every action the file gives in the context.
    pub fn square_mass(&self, context: usize) -> f64 {
        self.square_mass[context]
    }
}

/// How a target is evaluated on an imported log, besides the target itself.
#[derive(Debug, Clone, Copy)]
pub struct LogSettings<'a> {
    /// The uniform target's action space (default: the distinct actions of the log;
    /// refused when smaller); also the trained target's number of actions.
    pub actions: Option<usize>,
    /// Cross-fitting folds of the doubly robust estimator.
    pub folds: usize,
    /// Share of the rows, in time order, the factorized-ts target is trained on; it is
    /// evaluated on the rest. In (0, 1).
    pub train_share: f64,
    /// The factorized-ts target's floor (default [`crate::target::DEFAULT_TARGET_FLOOR`]).
    pub target_floor: Option<f64>,
    /// The target of `--target file:PATH`, read by the caller.
    pub table: Option<&'a TargetTable>,
}

/// The default `train_share`: half the log.
pub const DEFAULT_TRAIN_SHARE: f64 = 0.5;

impl Default for LogSettings<'_> {
    fn default() -> Self {
        Self {
            actions: None,
            folds: super::DEFAULT_FOLDS,
            train_share: DEFAULT_TRAIN_SHARE,
            target_floor: None,
            table: None,
        }
    }
}

/// The design of the factorized model trained on an imported log: one component whose
/// options are the `actions` action labels (numbered as in the log, then unseen ones),
/// one segment per context of the log, the value objective (the reward as the amount of
/// a conversion), no ask component, every component interacting with the segment.
pub fn log_design(log: &LabelledLog, actions: usize) -> Result<Design, EvaluationError> {
    let options = u32::try_from(actions.max(1)).map_err(|_| {
        EvaluationError::Refused(format!(
            "factorized-ts: {actions} actions are more than one component can hold"
        ))
    })?;
    let space = VersionSpace::product(vec![options])
        .map_err(|e| EvaluationError::Refused(format!("factorized-ts: {e}")))?;
    Ok(Design {
        component_names: vec!["action".to_string()],
        segment_names: log
            .context_keys
            .iter()
            .map(|k| log.describe_context(k))
            .collect(),
        space,
        ask: None,
        objective: Objective::Value,
        interactions: Interactions::segment_only(1),
    })
}

/// Evaluates `target` on `log` with `settings`; `rng` draws the factorized-ts target's
/// Thompson tables (the same seed gives the same target). Targets: `uniform`,
/// `fixed:ACTION`, `best-logged`, `factorized-ts`, `column:NAME` (the log's
/// `target_column`), `file:PATH` (`settings.table`).
pub fn evaluate_labelled_log<R: Rng + ?Sized>(
    log: &LabelledLog,
    target: &EvaluationTarget,
    settings: &LogSettings<'_>,
    rng: &mut R,
) -> Result<Evaluation, EvaluationError> {
    target.check_input(EvaluationInput::Log)?;
    let folds = settings.folds;
    let contexts = log.contexts();
    let seen = log.actions.len();
    let action_space = match settings.actions {
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
    let n = log.rows.len();
    match target {
        EvaluationTarget::Fixed(label) => {
            let Some(action) = log.actions.iter().position(|l| l == label) else {
                return Err(EvaluationError::UnknownAction {
                    label: label.clone(),
                });
            };
            Evaluation::of(
                format!("always action {label:?}; all {n} rows"),
                action_space,
                &log.rows,
                contexts,
                TargetProbabilities::Fixed(action as u64),
                folds,
                0,
                0,
            )
        }
        EvaluationTarget::BestLogged => {
            let Some((first, second)) = halves(&log.rows, folds) else {
                return Err(EvaluationError::TooFewForHalves {
                    target: "best-logged",
                    needed: rows_needed_for_halves(folds),
                    folds,
                    rows: n,
                    rows_name: "rows",
                    log_name: "log",
                });
            };
            let (best, first_value) =
                best_action_by_snips(first).expect("the first half holds at least two rows");
            Evaluation::of(
                format!(
                    "best-logged: action {:?} had the highest SNIPS value ({first_value:.4}) on the first half ({} {order}); it is evaluated on the second half ({} rows), not on the rows that chose it",
                    log.actions[best as usize],
                    first.len(),
                    second.len()
                ),
                action_space,
                second,
                contexts,
                TargetProbabilities::Fixed(best),
                folds,
                first.len(),
                first.len(),
            )
        }
        EvaluationTarget::FactorizedTs => {
            let share = settings.train_share;
            if !(share > 0.0 && share < 1.0) {
                return Err(EvaluationError::Refused(format!(
                    "--train-share {share} is not in (0, 1); accepted: e.g. 0.5 (train on the first half, evaluate on the second)"
                )));
            }
            let train = ((n as f64) * share).round() as usize;
            let evaluate = n.saturating_sub(train);
            if train == 0 || evaluate < folds.max(2) {
                return Err(EvaluationError::Refused(format!(
                    "factorized-ts: --train-share {share} of {n} rows trains on {train} and evaluates on {evaluate}; training needs at least 1 row and the doubly robust estimator's {folds} folds at least {} evaluated rows",
                    folds.max(2)
                )));
            }
            let (first, second) = log.rows.split_at(train);
            let mut trained_settings = TrainedTargetSettings::default();
            if let Some(floor) = settings.target_floor {
                trained_settings.floor = floor;
            }
            let design = log_design(log, action_space)?;
            let trained = TrainedTarget::train(&design, &trained_settings, first, rng)
                .map_err(EvaluationError::Training)?;
            Evaluation::of(
                format!(
                    "factorized-ts: the factorized model (one component of {action_space} actions, {contexts} contexts as segments, the reward as a conversion's amount) trained from its prior on the first {train} rows ({order}, --train-share {share}), {} Thompson draws per context, floor {}; evaluated on the last {evaluate} rows, not on the rows it learned",
                    trained_settings.draws, trained_settings.floor
                ),
                action_space,
                second,
                contexts,
                TargetProbabilities::Trained {
                    target: &trained,
                    allowed: action_space,
                },
                folds,
                train,
                train,
            )
        }
        EvaluationTarget::Column(name) => {
            let Some(probabilities) = &log.target_column else {
                return Err(EvaluationError::Refused(format!(
                    "--target column:{name}: the log was read without the column"
                )));
            };
            Evaluation::of_row_probabilities(
                format!(
                    "the probabilities of column {name:?} (the target's probability of each row's logged action); all {n} rows"
                ),
                action_space,
                &log.rows,
                probabilities,
                0,
                0,
            )
        }
        EvaluationTarget::File(path) => {
            let Some(table) = settings.table else {
                return Err(EvaluationError::Refused(format!(
                    "--target file:{path}: the target file was not read"
                )));
            };
            let mut evaluation = Evaluation::of(
                format!(
                    "the probabilities of {path} ({} rows{}); all {n} rows",
                    table.entries,
                    if table.contexts_not_in_log > 0 {
                        format!(
                            "; {} of its contexts never appear in the log and are ignored",
                            table.contexts_not_in_log
                        )
                    } else {
                        String::new()
                    }
                ),
                action_space,
                &log.rows,
                contexts,
                TargetProbabilities::Table(table),
                folds,
                0,
                0,
            )?;
            let zero = log
                .rows
                .iter()
                .filter(|r| table.probability(r.segment, r.action) == 0.0)
                .count();
            if zero > 0 {
                evaluation.notes.push(format!(
                    "{zero} of the {n} logged rows have an action the target file gives probability 0 (or none) in their context: they weigh 0"
                ));
            }
            Ok(evaluation)
        }
        // `check_input` admits only uniform besides the forms above.
        _ => {
            let space = match settings.actions {
                Some(k) => format!("{k} actions (--actions)"),
                None => format!(
                    "the {seen} distinct actions seen in the log (set --actions N for another action space)"
                ),
            };
            Evaluation::of(
                format!("uniform over {space}; all {n} rows"),
                action_space,
                &log.rows,
                contexts,
                TargetProbabilities::Uniform(action_space),
                folds,
                0,
                0,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_pcg::Pcg64Mcg;

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
            context_keys: vec![context_key([])],
            data_rows: (1..=8).collect(),
            sorted_by_time: true,
            ..Default::default()
        }
    }

    fn evaluate(
        log: &LabelledLog,
        target: &EvaluationTarget,
        settings: LogSettings<'_>,
    ) -> Result<Evaluation, EvaluationError> {
        evaluate_labelled_log(log, target, &settings, &mut Pcg64Mcg::seed_from_u64(1))
    }

    fn folds(folds: usize) -> LogSettings<'static> {
        LogSettings {
            folds,
            ..Default::default()
        }
    }

    #[test]
    fn best_logged_picks_on_the_first_half_and_evaluates_on_the_second() {
        let e = evaluate(&log(), &EvaluationTarget::BestLogged, folds(2)).unwrap();
        assert!(e.target.contains("action \"b\""), "{}", e.target);
        assert!(
            e.target.contains("rows ordered by timestamp"),
            "{}",
            e.target
        );
        assert_eq!(e.estimates[1].rows, 4);
        assert_eq!(
            (e.training_rows, e.evaluated_rows, e.first_evaluated),
            (4, 4, 4)
        );
        // b's rows of the second half earn 2 and 0: SNIPS 1; IPS (1/4)(2/0.5) = 1.
        assert!((e.estimates[1].value - 1.0).abs() < 1e-12);
        assert!((e.estimates[0].value - 1.0).abs() < 1e-12);
        assert!((e.logged_mean - 1.5).abs() < 1e-12);
        let error = evaluate(&log(), &EvaluationTarget::BestLogged, folds(5))
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "best-logged needs at least 10 rows (two halves, 5 folds each); the log has 8"
        );
    }

    #[test]
    fn uniform_spans_the_action_space_and_fixed_finds_the_label() {
        let settings = LogSettings {
            actions: Some(4),
            ..Default::default()
        };
        let e = evaluate(&log(), &EvaluationTarget::Uniform, settings).unwrap();
        assert_eq!(e.action_space, 4);
        // IPS: weights (1/4)/(1/2) = 1/2; mean reward 9/8; IPS 9/16.
        assert!((e.estimates[0].value - 9.0 / 16.0).abs() < 1e-12);
        assert!(
            e.target
                .starts_with("uniform over 4 actions (--actions); all 8 rows")
        );
        let e = evaluate(&log(), &EvaluationTarget::Fixed("a".into()), folds(2)).unwrap();
        // a's rows earn 1, 0, 0, 4: SNIPS 5/4.
        assert!((e.estimates[1].value - 1.25).abs() < 1e-12);
        assert_eq!(e.target, "always action \"a\"; all 8 rows");
    }

    #[test]
    fn refusals_name_the_action_the_action_space_and_the_input() {
        let error = evaluate(&log(), &EvaluationTarget::Fixed("c".into()), folds(2))
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "--target fixed:c: action \"c\" never appears in the log"
        );
        let settings = LogSettings {
            actions: Some(1),
            ..Default::default()
        };
        let error = evaluate(&log(), &EvaluationTarget::Uniform, settings)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "--actions 1: the log already holds 2 distinct actions"
        );
        let error = evaluate(&log(), &EvaluationTarget::Version(1), folds(2))
            .unwrap_err()
            .to_string();
        assert!(error.contains("does not apply to --log"), "{error}");
    }

    /// Two contexts (x, y), actions a and b; the target file gives x: a 0.25, b 0.75 and
    /// y: a 1.
    fn two_context_log() -> LabelledLog {
        let x = context_key(["x"]);
        let y = context_key(["y"]);
        LabelledLog {
            // (context, action, propensity, reward)
            rows: [
                (0, 0, 0.5, 2.0),
                (0, 1, 0.5, 0.0),
                (1, 0, 0.8, 1.0),
                (1, 1, 0.2, 5.0),
            ]
            .into_iter()
            .map(|(segment, action, propensity, reward)| LoggedRow {
                segment,
                action,
                propensity,
                reward,
            })
            .collect(),
            actions: vec!["a".into(), "b".into()],
            context_columns: vec!["ctx".into()],
            context_keys: vec![x, y],
            data_rows: (1..=4).collect(),
            ..Default::default()
        }
    }

    fn entry(row: usize, context: &str, action: &str, probability: f64) -> TargetEntry {
        TargetEntry {
            row,
            context: context_key([context]),
            action: action.into(),
            probability,
        }
    }

    #[test]
    fn a_target_file_gives_any_contextual_policy() {
        let log = two_context_log();
        let table = TargetTable::build(
            &log,
            [
                entry(1, "x", "a", 0.25),
                entry(2, "x", "b", 0.75),
                entry(3, "y", "a", 1.0),
                entry(4, "z", "a", 1.0),
            ],
        )
        .unwrap();
        assert_eq!(table.contexts_not_in_log, 1);
        assert_eq!(table.probability(1, 1), 0.0);
        let settings = LogSettings {
            table: Some(&table),
            ..Default::default()
        };
        let e = evaluate(&log, &EvaluationTarget::File("t.csv".into()), settings).unwrap();
        // Weights: 0.25/0.5 = 0.5, 0.75/0.5 = 1.5, 1/0.8 = 1.25, 0/0.2 = 0.
        // w r: 1, 0, 1.25, 0. IPS = 2.25 / 4 = 0.5625; SNIPS = 2.25 / 3.25.
        assert!((e.estimates[0].value - 0.5625).abs() < 1e-12);
        assert!((e.estimates[1].value - 2.25 / 3.25).abs() < 1e-12);
        let names: Vec<&str> = e.estimates.iter().map(|e| e.estimator.name()).collect();
        assert_eq!(names, ["ips", "snips", "dr", "aw_aipw"]);
        assert!(
            e.notes[0].starts_with("1 of the 4 logged rows"),
            "{:?}",
            e.notes
        );
        assert!(
            e.target.contains("1 of its contexts never appear"),
            "{}",
            e.target
        );
    }

    #[test]
    fn a_target_file_is_refused_when_a_context_does_not_sum_to_one() {
        let log = two_context_log();
        let error = TargetTable::build(
            &log,
            [
                entry(1, "x", "a", 0.25),
                entry(2, "x", "b", 0.70),
                entry(3, "y", "a", 1.0),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with("the target's probabilities in context (ctx=x) sum to 0.95"),
            "{error}"
        );
        let error = TargetTable::build(&log, [entry(1, "x", "a", 1.0)])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(
                "no probabilities in context (ctx=y), which the log holds (first at data row 3)"
            ),
            "{error}"
        );
        let error = TargetTable::build(
            &log,
            [
                entry(1, "x", "a", 0.5),
                entry(2, "x", "a", 0.5),
                entry(3, "y", "a", 1.0),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("already given at data row 1"), "{error}");
        let error = TargetTable::build(&log, [entry(7, "x", "a", 1.5)])
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "target file data row 7: the probability 1.5 is not in [0, 1]"
        );
    }

    #[test]
    fn a_column_gives_ips_and_snips_and_says_why_not_dr() {
        let mut log = two_context_log();
        log.target_column = Some(vec![0.25, 0.75, 1.0, 0.0]);
        let e = evaluate(&log, &EvaluationTarget::Column("pi".into()), folds(2)).unwrap();
        // The same weights as the file's: IPS 0.5625, SNIPS 2.25 / 3.25.
        assert_eq!(e.estimates.len(), 2);
        assert!((e.estimates[0].value - 0.5625).abs() < 1e-12);
        assert!((e.estimates[1].value - 2.25 / 3.25).abs() < 1e-12);
        assert!(e.notes[0].starts_with("doubly robust is not computed"));
    }

    #[test]
    fn the_trained_target_learns_the_first_part_and_is_evaluated_on_the_rest() {
        // 200 rows in one context: action b earns 1 on every other row, a never.
        let rows: Vec<LoggedRow> = (0..200)
            .map(|i| row(0, (i % 2) as u64, if i % 4 == 1 { 1.0 } else { 0.0 }))
            .collect();
        let log = LabelledLog {
            rows,
            actions: vec!["a".into(), "b".into()],
            context_keys: vec![context_key([])],
            data_rows: (1..=200).collect(),
            ..Default::default()
        };
        let settings = LogSettings {
            train_share: 0.7,
            ..Default::default()
        };
        let e = evaluate(&log, &EvaluationTarget::FactorizedTs, settings).unwrap();
        assert_eq!((e.training_rows, e.evaluated_rows), (140, 60));
        assert_eq!(e.estimates[2].rows, 60);
        // b earns 0.5 per impression, a 0: the trained target leans to b, so its value
        // is well above the even split's 0.25.
        assert!(e.estimates[1].value > 0.4, "{:?}", e.estimates[1]);
        let again = evaluate(&log, &EvaluationTarget::FactorizedTs, settings).unwrap();
        assert_eq!(again.estimates, e.estimates);
        let settings = LogSettings {
            train_share: 1.0,
            ..Default::default()
        };
        let error = evaluate(&log, &EvaluationTarget::FactorizedTs, settings)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--train-share 1 is not in (0, 1)"),
            "{error}"
        );
    }
}
