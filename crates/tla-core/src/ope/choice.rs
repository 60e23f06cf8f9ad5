//! The grammar of a target policy to evaluate (`tla evaluate --target`): one parser for
//! every kind of log.
//!
//! A target is written as text and parsed with [`str::parse`] into an
//! [`EvaluationTarget`]; [`EvaluationTarget::check_input`] then says whether it applies to
//! the log at hand ([`EvaluationInput`]: a simulated world, an imported log, a stored
//! campaign). Every refusal quotes [`ACCEPTED_TARGETS`], which lists each form and the
//! logs it applies to:
//!
//! | form | world | imported log | campaign |
//! |---|---|---|---|
//! | `oracle` | yes (default) | | |
//! | `uniform` | yes | yes (default) | yes (default) |
//! | `factorized-ts` | yes | yes | yes |
//! | `fixed-options:O1,O2,...` | indices | | indices or names |
//! | `version:INDEX` | | | yes |
//! | `fixed:ACTION` | | yes | |
//! | `best-logged` | | yes | yes |
//! | `column:NAME` | | yes | |
//! | `file:PATH` | | yes | |
//!
//! `column:NAME` names a column of the imported log holding, on each row, the
//! probability the target gives to that row's logged action; `file:PATH` a file of the
//! target's probabilities per (context, action) (`crate::ope::labelled::TargetTable`).
//!
//! Leading and trailing blanks around the text are ignored, except that the `ACTION` of
//! `fixed:ACTION`, the `NAME` of `column:NAME` and the `PATH` of `file:PATH` are taken as
//! written after the colon (a label may end in a blank); the options of
//! `fixed-options:` and the index of `version:` are trimmed one by one.
//!
//! ```
//! use tla_core::ope::choice::{EvaluationInput, EvaluationTarget, OptionChoice};
//! let target: EvaluationTarget = "fixed-options:0,heron,2".parse().unwrap();
//! assert_eq!(
//!     target,
//!     EvaluationTarget::FixedOptions(vec![
//!         OptionChoice::Index(0),
//!         OptionChoice::Name("heron".into()),
//!         OptionChoice::Index(2),
//!     ])
//! );
//! assert!(target.check_input(EvaluationInput::Campaign).is_ok());
//! assert!(target.check_input(EvaluationInput::World).is_err());
//! ```

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// Every form of target, with the logs it applies to: the tail of every refusal.
pub const ACCEPTED_TARGETS: &str = "oracle (--world), uniform (--world, --log, --data), \
factorized-ts (--world, --log, --data), fixed-options:O1,O2,... (one option per component: \
indices with --world, indices or names with --data), version:INDEX (--data), fixed:ACTION \
(--log), best-logged (--log, --data), column:NAME (--log: the target's probability of each \
row's logged action), file:PATH (--log: the target's probabilities per context and action)";

/// The kind of log a target is evaluated on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvaluationInput {
    /// Logs simulated from a world file, where the truth is known (`--world`).
    World,
    /// An imported logged-bandit file (`--log`).
    Log,
    /// A stored campaign's own decisions and conversions (`--data`).
    Campaign,
}

impl EvaluationInput {
    /// The flag that selects this input.
    pub fn flag(self) -> &'static str {
        match self {
            EvaluationInput::World => "--world",
            EvaluationInput::Log => "--log",
            EvaluationInput::Campaign => "--data",
        }
    }

    /// The target evaluated when none is given: `oracle` on a world, `uniform` on a log
    /// or a campaign.
    pub fn default_target(self) -> EvaluationTarget {
        match self {
            EvaluationInput::World => EvaluationTarget::Oracle,
            EvaluationInput::Log | EvaluationInput::Campaign => EvaluationTarget::Uniform,
        }
    }
}

/// One option of a `fixed-options:` list, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionChoice {
    /// The option's position in its component (0-based).
    Index(u32),
    /// The option's name in the spec.
    Name(String),
}

impl fmt::Display for OptionChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionChoice::Index(index) => write!(f, "{index}"),
            OptionChoice::Name(name) => f.write_str(name),
        }
    }
}

/// A target policy to evaluate, as parsed from its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvaluationTarget {
    /// The best version per segment, known only in a simulated world.
    Oracle,
    /// The even split: over a world's allowed versions, over an imported log's action
    /// space, over a campaign's allowed versions.
    Uniform,
    /// Factorized Thompson sampling trained on the first half of the log, evaluated on
    /// the second half.
    FactorizedTs,
    /// One option per component, in declared order: one fixed version everywhere.
    FixedOptions(Vec<OptionChoice>),
    /// One fixed version (by its index) in every segment.
    Version(u64),
    /// Always this action (a label as it appears in an imported log).
    Fixed(String),
    /// The action with the highest SNIPS value on the first half of the log, evaluated
    /// on the second half.
    BestLogged,
    /// The probability the target gives each row's logged action, read from this column
    /// of an imported log.
    Column(String),
    /// The target's probabilities per (context, action), read from this file.
    File(String),
}

/// Why a `--target` text is refused.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum TargetParseError {
    /// The text is none of the forms.
    #[error("--target: {text:?} is not a target; accepted: {ACCEPTED_TARGETS}")]
    Unknown {
        /// The text given.
        text: String,
    },
    /// The form is known but does not apply to this input.
    #[error("--target: {text:?} does not apply to {flag}; accepted: {ACCEPTED_TARGETS}")]
    NotForInput {
        /// The target as written.
        text: String,
        /// The input's flag (`--world`, `--log`, `--data`).
        flag: &'static str,
    },
    /// `version:` is not followed by a whole number.
    #[error("--target {text}: the version index must be a whole number, e.g. version:0")]
    BadVersionIndex {
        /// The text given.
        text: String,
    },
    /// A `fixed-options:` list holds an empty option.
    #[error(
        "--target {text}: an option is empty; give one option per component, e.g. fixed-options:0,1,2"
    )]
    EmptyOption {
        /// The text given.
        text: String,
    },
    /// `fixed:` is not followed by an action.
    #[error("--target {text:?}: give the action after fixed:, e.g. fixed:a19")]
    EmptyAction {
        /// The text given.
        text: String,
    },
    /// `column:` or `file:` is not followed by a name.
    #[error("--target {text:?}: give the {what} after the colon, e.g. {example}")]
    EmptyName {
        /// The text given.
        text: String,
        /// `column name` or `file path`.
        what: &'static str,
        /// An example of the form.
        example: &'static str,
    },
    /// Option names in `fixed-options:` on a simulated world.
    #[error(
        "--target {text}: with --world, options are given by index (0-based), e.g. fixed-options:0,1,2,3; names apply to --data"
    )]
    OptionNamesOnWorld {
        /// The target as written.
        text: String,
    },
    /// `--target-floor` with a target that has no floor.
    #[error("--target-floor is the floor of --target factorized-ts; --target {target} has none")]
    FloorWithoutTrainedTarget {
        /// The target as written.
        target: String,
    },
    /// `--target-floor` outside `[0, 1)`.
    #[error(
        "--target-floor: the target floor {value} is not in [0, 1); accepted: a share such as 0 (the pure Thompson table) or 0.02"
    )]
    BadFloor {
        /// The floor given.
        value: f64,
    },
}

impl FromStr for EvaluationTarget {
    type Err = TargetParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim_start();
        if let Some(action) = text.strip_prefix("fixed:") {
            if action.is_empty() {
                return Err(TargetParseError::EmptyAction { text: text.into() });
            }
            return Ok(EvaluationTarget::Fixed(action.to_string()));
        }
        for (prefix, what, example) in [
            ("column:", "column name", "column:pi_new"),
            ("file:", "file path", "file:target.csv"),
        ] {
            if let Some(name) = text.strip_prefix(prefix) {
                if name.trim().is_empty() {
                    return Err(TargetParseError::EmptyName {
                        text: text.into(),
                        what,
                        example,
                    });
                }
                return Ok(if prefix == "column:" {
                    EvaluationTarget::Column(name.to_string())
                } else {
                    EvaluationTarget::File(name.to_string())
                });
            }
        }
        let text = text.trim_end();
        match text {
            "oracle" => return Ok(EvaluationTarget::Oracle),
            "uniform" => return Ok(EvaluationTarget::Uniform),
            "factorized-ts" => return Ok(EvaluationTarget::FactorizedTs),
            "best-logged" => return Ok(EvaluationTarget::BestLogged),
            _ => {}
        }
        if let Some(index) = text.strip_prefix("version:") {
            return index
                .trim()
                .parse::<u64>()
                .map(EvaluationTarget::Version)
                .map_err(|_| TargetParseError::BadVersionIndex { text: text.into() });
        }
        if let Some(list) = text.strip_prefix("fixed-options:") {
            let mut options = Vec::new();
            for option in list.split(',').map(str::trim) {
                if option.is_empty() {
                    return Err(TargetParseError::EmptyOption { text: text.into() });
                }
                options.push(match option.parse::<u32>() {
                    Ok(index) => OptionChoice::Index(index),
                    Err(_) => OptionChoice::Name(option.to_string()),
                });
            }
            return Ok(EvaluationTarget::FixedOptions(options));
        }
        Err(TargetParseError::Unknown { text: text.into() })
    }
}

impl fmt::Display for EvaluationTarget {
    /// The canonical text of the target, which parses back to it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvaluationTarget::Oracle => f.write_str("oracle"),
            EvaluationTarget::Uniform => f.write_str("uniform"),
            EvaluationTarget::FactorizedTs => f.write_str("factorized-ts"),
            EvaluationTarget::BestLogged => f.write_str("best-logged"),
            EvaluationTarget::Version(index) => write!(f, "version:{index}"),
            EvaluationTarget::Fixed(action) => write!(f, "fixed:{action}"),
            EvaluationTarget::Column(name) => write!(f, "column:{name}"),
            EvaluationTarget::File(path) => write!(f, "file:{path}"),
            EvaluationTarget::FixedOptions(options) => {
                f.write_str("fixed-options:")?;
                for (i, option) in options.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{option}")?;
                }
                Ok(())
            }
        }
    }
}

impl EvaluationTarget {
    /// Whether the target applies to `input` (see the table of the module).
    pub fn applies_to(&self, input: EvaluationInput) -> bool {
        use EvaluationInput::{Campaign, Log, World};
        match self {
            EvaluationTarget::Oracle => input == World,
            EvaluationTarget::Uniform => true,
            EvaluationTarget::FactorizedTs => true,
            EvaluationTarget::FixedOptions(_) => matches!(input, World | Campaign),
            EvaluationTarget::Version(_) => input == Campaign,
            EvaluationTarget::Fixed(_) => input == Log,
            EvaluationTarget::BestLogged => matches!(input, Log | Campaign),
            EvaluationTarget::Column(_) | EvaluationTarget::File(_) => input == Log,
        }
    }

    /// Refuses a target that does not apply to `input`, and option names in a
    /// `fixed-options:` list on a simulated world (whose options are given by index).
    pub fn check_input(&self, input: EvaluationInput) -> Result<(), TargetParseError> {
        if !self.applies_to(input) {
            return Err(TargetParseError::NotForInput {
                text: self.to_string(),
                flag: input.flag(),
            });
        }
        if let EvaluationTarget::FixedOptions(options) = self
            && input == EvaluationInput::World
            && options.iter().any(|o| matches!(o, OptionChoice::Name(_)))
        {
            return Err(TargetParseError::OptionNamesOnWorld {
                text: self.to_string(),
            });
        }
        Ok(())
    }

    /// Checks a `--target-floor`: only `factorized-ts` has a floor, and it lies in
    /// `[0, 1)`.
    pub fn check_floor(&self, floor: Option<f64>) -> Result<(), TargetParseError> {
        let Some(value) = floor else {
            return Ok(());
        };
        if *self != EvaluationTarget::FactorizedTs {
            return Err(TargetParseError::FloorWithoutTrainedTarget {
                target: self.to_string(),
            });
        }
        if !(value.is_finite() && (0.0..1.0).contains(&value)) {
            return Err(TargetParseError::BadFloor { value });
        }
        Ok(())
    }

    /// The option indices of a `fixed-options:` list given by index only, as a world
    /// takes them; `None` for another target or a list holding a name.
    pub fn option_indices(&self) -> Option<Vec<u32>> {
        let EvaluationTarget::FixedOptions(options) = self else {
            return None;
        };
        options
            .iter()
            .map(|o| match o {
                OptionChoice::Index(index) => Some(*index),
                OptionChoice::Name(_) => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const INPUTS: [EvaluationInput; 3] = [
        EvaluationInput::World,
        EvaluationInput::Log,
        EvaluationInput::Campaign,
    ];

    fn parse(text: &str) -> EvaluationTarget {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn every_form_accepted_before_parses_to_its_meaning() {
        use EvaluationTarget as T;
        use OptionChoice::{Index, Name};
        // --world: oracle, uniform, factorized-ts, fixed-options by index (trimmed).
        assert_eq!(parse("oracle"), T::Oracle);
        assert_eq!(parse("uniform"), T::Uniform);
        assert_eq!(parse("factorized-ts"), T::FactorizedTs);
        assert_eq!(
            parse("fixed-options: 3, 2,1 ,0"),
            T::FixedOptions(vec![Index(3), Index(2), Index(1), Index(0)])
        );
        assert_eq!(
            parse("fixed-options:0,1,2,3").option_indices(),
            Some(vec![0, 1, 2, 3])
        );
        // --log: fixed:ACTION keeps the label as written, blanks included.
        assert_eq!(parse("fixed:a19"), T::Fixed("a19".into()));
        assert_eq!(parse("fixed: a b "), T::Fixed(" a b ".into()));
        assert_eq!(parse("fixed:fixed:x"), T::Fixed("fixed:x".into()));
        assert_eq!(parse("best-logged"), T::BestLogged);
        assert_eq!(parse("column:pi new"), T::Column("pi new".into()));
        assert_eq!(parse(" file:dir/t.csv.gz"), T::File("dir/t.csv.gz".into()));
        // --data: the whole text trimmed; version:INDEX; options by index or name.
        assert_eq!(parse(" version: 7 "), T::Version(7));
        assert_eq!(
            parse(" fixed-options:fish_back,1,learn_more "),
            T::FixedOptions(vec![
                Name("fish_back".into()),
                Index(1),
                Name("learn_more".into())
            ])
        );
        assert_eq!(parse("fixed-options:+1").option_indices(), Some(vec![1]));
    }

    #[test]
    fn each_form_applies_to_the_inputs_of_the_table() {
        let table = [
            ("oracle", [true, false, false]),
            ("uniform", [true, true, true]),
            ("factorized-ts", [true, true, true]),
            ("fixed-options:0,1", [true, false, true]),
            ("version:3", [false, false, true]),
            ("fixed:a", [false, true, false]),
            ("best-logged", [false, true, true]),
            ("column:pi", [false, true, false]),
            ("file:t.csv", [false, true, false]),
        ];
        for (text, applies) in table {
            let target = parse(text);
            for (input, expected) in INPUTS.into_iter().zip(applies) {
                assert_eq!(
                    target.check_input(input).is_ok(),
                    expected,
                    "{text} {input:?}"
                );
                assert!(ACCEPTED_TARGETS.contains(text.split(':').next().unwrap()));
            }
        }
        for input in INPUTS {
            assert!(input.default_target().check_input(input).is_ok());
        }
    }

    #[test]
    fn refusals_say_what_is_accepted_and_where() {
        let error = "sometimes"
            .parse::<EvaluationTarget>()
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            format!("--target: \"sometimes\" is not a target; accepted: {ACCEPTED_TARGETS}")
        );
        let error = parse("oracle")
            .check_input(EvaluationInput::Campaign)
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("--target: \"oracle\" does not apply to --data; accepted: oracle (--world), uniform (--world, --log, --data)"), "{error}");
        let error = parse("fixed:a19")
            .check_input(EvaluationInput::World)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("does not apply to --world") && error.contains("fixed:ACTION (--log)"),
            "{error}"
        );
        let error = parse("fixed-options:0,heron")
            .check_input(EvaluationInput::World)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("with --world, options are given by index"),
            "{error}"
        );
        for (text, fragment) in [
            ("version:x", "the version index must be a whole number"),
            ("version:-1", "the version index must be a whole number"),
            ("fixed-options:0,,1", "an option is empty"),
            ("fixed-options:", "an option is empty"),
            ("fixed:", "give the action after fixed:"),
            ("column:", "give the column name after the colon"),
            ("file: ", "give the file path after the colon"),
        ] {
            let error = text.parse::<EvaluationTarget>().unwrap_err().to_string();
            assert!(error.contains(fragment), "{text}: {error}");
        }
    }

    #[test]
    fn only_the_trained_target_takes_a_floor_in_zero_to_one() {
        let trained = parse("factorized-ts");
        assert!(trained.check_floor(None).is_ok());
        assert!(trained.check_floor(Some(0.0)).is_ok());
        assert!(trained.check_floor(Some(0.5)).is_ok());
        for bad in [1.0, -0.1, f64::NAN, f64::INFINITY] {
            let error = trained.check_floor(Some(bad)).unwrap_err().to_string();
            assert!(error.contains("is not in [0, 1)"), "{bad}: {error}");
        }
        let error = parse("uniform")
            .check_floor(Some(0.1))
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "--target-floor is the floor of --target factorized-ts; --target uniform has none"
        );
        assert!(parse("uniform").check_floor(None).is_ok());
    }

    fn any_target() -> impl Strategy<Value = EvaluationTarget> {
        let option = prop_oneof![
            any::<u32>().prop_map(OptionChoice::Index),
            "[a-z_][a-z0-9_]{0,8}".prop_map(OptionChoice::Name),
        ];
        prop_oneof![
            Just(EvaluationTarget::Oracle),
            Just(EvaluationTarget::Uniform),
            Just(EvaluationTarget::FactorizedTs),
            Just(EvaluationTarget::BestLogged),
            any::<u64>().prop_map(EvaluationTarget::Version),
            "[ -~]{1,12}".prop_map(EvaluationTarget::Fixed),
            "[ -~]{0,11}[!-~]".prop_map(EvaluationTarget::Column),
            "[ -~]{0,11}[!-~]".prop_map(EvaluationTarget::File),
            proptest::collection::vec(option, 1..6).prop_map(EvaluationTarget::FixedOptions),
        ]
    }

    proptest! {
        /// The canonical text of every target parses back to it.
        #[test]
        fn display_parses_back(target in any_target()) {
            let text = target.to_string();
            prop_assert_eq!(text.parse::<EvaluationTarget>(), Ok(target));
        }

        /// Any text either parses or is refused with the list of accepted forms or a
        /// message naming the form's mistake; parsing never panics.
        #[test]
        fn any_text_parses_or_is_refused(text in "[ -~]{0,24}") {
            if let Err(error) = text.parse::<EvaluationTarget>() {
                let message = error.to_string();
                prop_assert!(message.starts_with("--target"), "{}", message);
            }
        }
    }
}
