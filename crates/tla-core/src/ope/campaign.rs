//! Evaluating a target on a stored campaign's own log (`tla evaluate --data`): its
//! decisions, each with the exact propensity it was served with, and the reward of
//! each (the sum of its conversion values).
//!
//! Actions are version indices and contexts the campaign's segments. A target is
//! checked against the campaign (version range, components, option names, exclusions)
//! and against the log (a fixed version must have been served), then reduced to the
//! probabilities the estimators and the direct model sum ([`TargetProbabilities`]):
//!
//! - `uniform`: the even split over the campaign's **allowed** versions;
//! - `version:INDEX`, `fixed-options:O1,O2,...`: one version everywhere;
//! - `best-logged`: the version with the highest SNIPS value on the first half of the
//!   decisions, evaluated on the second half;
//! - `factorized-ts`: the campaign's own model trained from its prior on the first half
//!   ([`TrainedTarget::train`] with [`TrainedTargetSettings::for_campaign`]), evaluated on
//!   the second half.
//!
//! The caller reads the store; this module only computes.

use std::collections::HashSet;

use rand::Rng;

use super::LoggedRow;
use super::choice::{EvaluationInput, EvaluationTarget, OptionChoice};
use super::targets::{
    Evaluation, EvaluationError, TargetProbabilities, best_action_by_snips, halves,
    rows_needed_for_halves,
};
use crate::spec::Campaign;
use crate::target::{TrainedTarget, TrainedTargetSettings};

/// Why a campaign's log does not fit the campaign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CampaignLogError {
    /// A decision's segment is not one of the campaign's.
    #[error(
        "decision {position} of the log has segment index {segment}, but the campaign has {segments} segments"
    )]
    SegmentOutOfRange {
        /// 1-based position of the decision in the log.
        position: usize,
        /// The segment index.
        segment: usize,
        /// The campaign's segments.
        segments: usize,
    },
    /// A decision served a version the campaign does not allow.
    #[error(
        "decision {position} of the log served version {version}, which the campaign does not allow (versions 0 to {last}, exclusions removed)"
    )]
    VersionNotAllowed {
        /// 1-based position of the decision in the log.
        position: usize,
        /// The version served.
        version: u64,
        /// The campaign's last version index.
        last: u64,
    },
}

/// Checks the rows against the campaign: every segment is one of the campaign's and
/// every version one it allows (the server only serves those). Returns the number of
/// distinct versions served.
pub fn check_campaign_rows(
    campaign: &Campaign,
    rows: &[LoggedRow],
) -> Result<usize, CampaignLogError> {
    let segments = campaign.design().segments();
    let mut distinct = HashSet::new();
    for (i, row) in rows.iter().enumerate() {
        if row.segment >= segments {
            return Err(CampaignLogError::SegmentOutOfRange {
                position: i + 1,
                segment: row.segment,
                segments,
            });
        }
        if !campaign.is_allowed(row.action) {
            return Err(CampaignLogError::VersionNotAllowed {
                position: i + 1,
                version: row.action,
                last: campaign.total_versions() - 1,
            });
        }
        distinct.insert(row.action);
    }
    Ok(distinct.len())
}

/// Evaluates `target` on `rows` (the campaign's decisions in log order, checked by
/// [`check_campaign_rows`]) with `folds` cross-fitting folds. `target_floor` replaces
/// the floor of `factorized-ts` (default: the campaign's exploration floor); `rng` draws
/// that target's Thompson tables (the same seed gives the same target).
pub fn evaluate_campaign<R: Rng + ?Sized>(
    campaign: &Campaign,
    rows: &[LoggedRow],
    target: &EvaluationTarget,
    folds: usize,
    target_floor: Option<f64>,
    rng: &mut R,
) -> Result<Evaluation, EvaluationError> {
    target.check_input(EvaluationInput::Campaign)?;
    let segments = campaign.design().segments();
    let allowed = campaign.allowed_versions();
    let action_space = usize::try_from(allowed).unwrap_or(usize::MAX);
    let too_few = |name: &'static str| EvaluationError::TooFewForHalves {
        target: name,
        needed: rows_needed_for_halves(folds),
        folds,
        rows: rows.len(),
        rows_name: "decisions",
        log_name: "campaign",
    };
    match target {
        EvaluationTarget::Version(_) | EvaluationTarget::FixedOptions(_) => {
            let version = fixed_version(campaign, target)?;
            served(rows, version, campaign)?;
            Evaluation::of(
                format!(
                    "always version {version} ({}); all {} decisions",
                    describe(campaign, version),
                    rows.len()
                ),
                action_space,
                rows,
                segments,
                TargetProbabilities::Fixed(version),
                folds,
                0,
                0,
            )
        }
        EvaluationTarget::FactorizedTs => {
            let (first, second) = halves(rows, folds).ok_or_else(|| too_few("factorized-ts"))?;
            let mut settings = TrainedTargetSettings::for_campaign(campaign);
            if let Some(floor) = target_floor {
                settings.floor = floor;
            }
            let trained = TrainedTarget::train(campaign.design(), &settings, first, rng)
                .map_err(EvaluationError::Training)?;
            Evaluation::of(
                format!(
                    "factorized-ts: the campaign's model trained from its prior on the first half ({} decisions in log order), {} Thompson draws per segment, floor {}; evaluated on the second half ({} decisions), not on the decisions it learned",
                    first.len(),
                    settings.draws,
                    settings.floor,
                    second.len()
                ),
                action_space,
                second,
                segments,
                TargetProbabilities::Trained {
                    target: &trained,
                    allowed: action_space,
                },
                folds,
                first.len(),
                first.len(),
            )
        }
        EvaluationTarget::BestLogged => {
            let (first, second) = halves(rows, folds).ok_or_else(|| too_few("best-logged"))?;
            let (best, first_value) =
                best_action_by_snips(first).expect("the first half holds at least two rows");
            served(second, best, campaign).map_err(|error| {
                EvaluationError::FixedVersion(format!(
                    "best-logged picked version {best} on the first half ({} decisions): {error}",
                    first.len()
                ))
            })?;
            Evaluation::of(
                format!(
                    "best-logged: version {best} ({}) had the highest SNIPS value ({first_value:.4}) on the first half ({} decisions in log order); it is evaluated on the second half ({} decisions), not on the decisions that chose it",
                    describe(campaign, best),
                    first.len(),
                    second.len()
                ),
                action_space,
                second,
                segments,
                TargetProbabilities::Fixed(best),
                folds,
                first.len(),
                first.len(),
            )
        }
        // `check_input` admits only uniform besides the three above.
        _ => Evaluation::of(
            format!(
                "uniform over the campaign's {allowed} allowed versions ({} defined, exclusions removed); all {} decisions",
                campaign.total_versions(),
                rows.len()
            ),
            action_space,
            rows,
            segments,
            TargetProbabilities::Uniform(action_space),
            folds,
            0,
            0,
        ),
    }
}

/// The version of a `version:` or `fixed-options:` target, checked: in range, one
/// known option per component, allowed by the exclusions.
pub fn fixed_version(
    campaign: &Campaign,
    target: &EvaluationTarget,
) -> Result<u64, EvaluationError> {
    let refuse = |message: String| Err(EvaluationError::FixedVersion(message));
    let spec = campaign.spec();
    let total = campaign.total_versions();
    let version = match target {
        EvaluationTarget::Version(version) => {
            if *version >= total {
                return refuse(format!(
                    "--target version:{version}: the campaign's versions are 0 to {} ({total} versions)",
                    total - 1
                ));
            }
            *version
        }
        EvaluationTarget::FixedOptions(choices) => {
            let components = &spec.components;
            if choices.len() != components.len() {
                let names: Vec<&str> = components.iter().map(|c| c.name.as_str()).collect();
                return refuse(format!(
                    "--target fixed-options: expected {} options, one per component ({}), got {}",
                    components.len(),
                    names.join(", "),
                    choices.len()
                ));
            }
            let mut options = Vec::with_capacity(choices.len());
            for (component, choice) in components.iter().zip(choices) {
                let names: Vec<&str> = component.options.iter().map(|o| o.name.as_str()).collect();
                let option = match choice {
                    OptionChoice::Index(index) => {
                        if *index as usize >= names.len() {
                            return refuse(format!(
                                "--target fixed-options: component {} has options 0 to {} ({}); {index} is out of range",
                                component.name,
                                names.len() - 1,
                                names.join(", ")
                            ));
                        }
                        *index
                    }
                    OptionChoice::Name(name) => match names.iter().position(|n| n == name) {
                        Some(index) => index as u32,
                        None => {
                            return refuse(format!(
                                "--target fixed-options: component {} has no option {name:?} (options: {})",
                                component.name,
                                names.join(", ")
                            ));
                        }
                    },
                };
                options.push(option);
            }
            match campaign.design().space.try_encode(&options) {
                Ok(version) => version,
                Err(error) => return refuse(format!("--target fixed-options: {error}")),
            }
        }
        other => {
            return refuse(format!(
                "--target {other}: names no single version; give version:INDEX or fixed-options:O1,O2,..."
            ));
        }
    };
    if !campaign.is_allowed(version) {
        let exclusions: Vec<String> = campaign
            .violated_exclusions(version)
            .into_iter()
            .map(|i| {
                let e = &spec.exclusions[i];
                format!("{} with {}", e.a, e.b)
            })
            .collect();
        return refuse(format!(
            "--target: version {version} ({}) is excluded by the campaign's exclusions ({}); pick an allowed version",
            describe(campaign, version),
            exclusions.join("; ")
        ));
    }
    Ok(version)
}

/// `component=option, ...` of a version.
pub fn describe(campaign: &Campaign, version: u64) -> String {
    campaign
        .options_of(version)
        .into_iter()
        .map(|(component, option)| format!("{component}={option}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Refuses a fixed target whose version no decision served: no row would carry weight.
fn served(rows: &[LoggedRow], version: u64, campaign: &Campaign) -> Result<(), EvaluationError> {
    if rows.iter().any(|r| r.action == version) {
        return Ok(());
    }
    Err(EvaluationError::FixedVersion(format!(
        "version {version} ({}) was never served in the {} decisions evaluated, so the log says nothing about it \
         (every weight would be 0); pick a version the campaign served",
        describe(campaign, version),
        rows.len()
    )))
}

#[cfg(all(test, feature = "text"))]
mod tests {
    use super::*;
    use crate::spec::CampaignSpec;
    use rand::SeedableRng;
    use rand_pcg::Pcg64Mcg;

    fn small() -> Campaign {
        CampaignSpec::from_toml_str(include_str!("../../../../examples/small.toml"))
            .unwrap()
            .validate()
            .unwrap()
    }

    fn evaluate(
        campaign: &Campaign,
        rows: &[LoggedRow],
        target: &str,
    ) -> Result<Evaluation, EvaluationError> {
        let mut rng = Pcg64Mcg::seed_from_u64(1);
        evaluate_campaign(campaign, rows, &target.parse().unwrap(), 2, None, &mut rng)
    }

    #[test]
    fn fixed_targets_resolve_by_index_or_name_and_refuse_range_and_exclusions() {
        let campaign = small();
        // headline x image x cta = 3 x 2 x 3; strides 6, 3, 1.
        let version = |text: &str| fixed_version(&campaign, &text.parse().unwrap());
        assert_eq!(version("version:5").unwrap(), 5);
        assert_eq!(version("fixed-options:1,1,2").unwrap(), 6 + 3 + 2);
        assert_eq!(
            version("fixed-options:fish_back,heron,learn_more").unwrap(),
            11
        );
        let error = version("version:18").unwrap_err().to_string();
        assert!(
            error.contains("versions are 0 to 17 (18 versions)"),
            "{error}"
        );
        let error = version("fixed-options:0,1").unwrap_err().to_string();
        assert!(
            error.contains("expected 3 options, one per component (headline, image, cta), got 2"),
            "{error}"
        );
        let error = version("fixed-options:0,2,0").unwrap_err().to_string();
        assert!(
            error.contains("component image has options 0 to 1 (canoe, heron); 2 is out of range"),
            "{error}"
        );
        let error = version("fixed-options:0,otter,0").unwrap_err().to_string();
        assert!(
            error.contains("component image has no option \"otter\""),
            "{error}"
        );
        // first_gift (2) with learn_more (2) is excluded: versions 12 + 0 + 2 and 12 + 3 + 2.
        let error = version("version:14").unwrap_err().to_string();
        assert!(
            error.contains("excluded") && error.contains("headline.first_gift with cta.learn_more"),
            "{error}"
        );
        let error = version("fixed-options:first_gift,heron,learn_more")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("version 17") && error.contains("excluded"),
            "{error}"
        );
        assert!(version("uniform").is_err());
    }

    /// A log of a policy that only ever served versions 0 and 1, each with propensity
    /// 1/2, paying 8 then 0.
    fn two_version_rows() -> Vec<LoggedRow> {
        (0..8)
            .map(|i| LoggedRow {
                segment: i % 3,
                action: (i % 2) as u64,
                propensity: 0.5,
                reward: if i % 4 < 2 { 8.0 } else { 0.0 },
            })
            .collect()
    }

    #[test]
    fn uniform_uses_the_allowed_count_not_the_versions_seen() {
        let campaign = small();
        let rows = two_version_rows();
        assert_eq!(check_campaign_rows(&campaign, &rows).unwrap(), 2);
        let evaluation = evaluate(&campaign, &rows, "uniform").unwrap();
        assert_eq!(evaluation.action_space, 16);
        // IPS: weights (1/16) / (1/2) = 1/8; (1/8) * mean reward 4 = 0.5.
        assert!((evaluation.estimates[0].value - 0.5).abs() < 1e-12);
        // SNIPS: sum w r / sum w = mean reward 4.
        assert!((evaluation.estimates[1].value - 4.0).abs() < 1e-12);
        assert!(
            evaluation
                .target
                .contains("16 allowed versions (18 defined")
        );
    }

    #[test]
    fn fixed_versions_must_have_been_served_and_targets_must_apply() {
        let campaign = small();
        let rows = two_version_rows();
        let error = evaluate(&campaign, &rows, "version:5")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("version 5") && error.contains("never served"),
            "{error}"
        );
        let evaluation = evaluate(&campaign, &rows, "version:1").unwrap();
        // Version 1's rows (i odd) pay 8 at i = 1, 5 and 0 at i = 3, 7: SNIPS 4.
        assert!((evaluation.estimates[1].value - 4.0).abs() < 1e-12);
        let error = evaluate(&campaign, &rows, "oracle")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("\"oracle\" does not apply to --data"),
            "{error}"
        );
        let error = evaluate(&campaign, &rows[..3], "best-logged")
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "best-logged needs at least 4 decisions (two halves, 2 folds each); the campaign has 3"
        );
    }

    #[test]
    fn the_trained_target_is_the_same_for_the_same_seed() {
        let campaign = small();
        let rows: Vec<LoggedRow> = (0..200)
            .map(|i| LoggedRow {
                segment: i % 3,
                action: [0, 1, 4, 9][i % 4],
                propensity: 0.25,
                reward: if i % 7 == 0 { 5.0 } else { 0.0 },
            })
            .collect();
        let a = evaluate(&campaign, &rows, "factorized-ts").unwrap();
        let b = evaluate(&campaign, &rows, "factorized-ts").unwrap();
        assert_eq!(a.estimates, b.estimates);
        assert!(a.target.contains("floor 0.02"), "{}", a.target);
        assert_eq!(a.estimates[0].rows, 100);
    }

    #[test]
    fn rows_outside_the_campaign_are_refused() {
        let campaign = small();
        let row = |segment, action| LoggedRow {
            segment,
            action,
            propensity: 0.5,
            reward: 0.0,
        };
        let error = check_campaign_rows(&campaign, &[row(0, 1), row(3, 1)])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("decision 2") && error.contains("3 segments"),
            "{error}"
        );
        let error = check_campaign_rows(&campaign, &[row(0, 14)])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("version 14, which the campaign does not allow"),
            "{error}"
        );
    }
}
