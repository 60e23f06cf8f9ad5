//! Evaluating a target policy on a stored campaign's own log: its decisions (each with
//! the exact propensity it was served with) joined with its conversions, as the
//! report's lift reads them (`tla_server::report::logged_rows`), then IPS, SNIPS and
//! cross-fitted DR as for an imported log.
//!
//! Targets are parsed in two steps: [`CampaignTarget::parse`] checks the syntax of
//! `--target` alone; [`CampaignTarget::resolve`] checks it against the campaign (version
//! range, exclusions, option names) and the log, and gives the probabilities the
//! estimators use. A new kind of target adds a variant to [`CampaignTarget`], its form
//! to [`TARGET_FORMS`], and its resolution (a [`TargetProb`] the direct model can sum).

use std::collections::HashSet;

use anyhow::{Context, bail};
use rand::SeedableRng;
use tla_core::ope::LoggedRow;
use tla_core::spec::Campaign;
use tla_core::target::{TrainedTarget, TrainedTargetSettings};

/// Seed of the factorized-ts target's Thompson draws: the same log gives the same
/// target.
const TRAINED_TARGET_SEED: u64 = 0x7A26_E7ED;

use super::import::{Evaluation, TargetProb, best_by_snips, estimate};

/// The forms `--target` takes with `--data`, for error messages and help.
pub const TARGET_FORMS: &str = "uniform, version:INDEX, fixed-options:O1,O2,... (one option per component, \
by index or name), best-logged, factorized-ts";

/// One option of a `fixed-options:` list, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionChoice {
    /// The option's position in its component (0-based).
    Index(u32),
    /// The option's name in the spec.
    Name(String),
}

/// A target policy for a campaign's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CampaignTarget {
    /// The even split over the campaign's allowed versions (the exclusions removed).
    Uniform,
    /// One fixed version in every segment.
    Version(u64),
    /// One option per component, in declared order: one fixed version everywhere.
    FixedOptions(Vec<OptionChoice>),
    /// The version with the highest SNIPS value on the first half of the decisions,
    /// evaluated on the second half.
    BestLogged,
    /// Factorized Thompson sampling trained on the first half of the decisions (the
    /// campaign's own model and settings, from its prior), evaluated on the second half.
    FactorizedTs,
}

impl CampaignTarget {
    /// Parses `--target` (syntax only; [`CampaignTarget::resolve`] checks it against
    /// the campaign).
    pub fn parse(text: &str) -> anyhow::Result<CampaignTarget> {
        let text = text.trim();
        match text {
            "uniform" => return Ok(CampaignTarget::Uniform),
            "best-logged" => return Ok(CampaignTarget::BestLogged),
            "factorized-ts" => return Ok(CampaignTarget::FactorizedTs),
            _ => {}
        }
        if let Some(index) = text.strip_prefix("version:") {
            let index = index.trim().parse::<u64>().with_context(|| {
                format!("--target {text}: the version index must be a whole number, e.g. version:0")
            })?;
            return Ok(CampaignTarget::Version(index));
        }
        if let Some(list) = text.strip_prefix("fixed-options:") {
            let options: Vec<OptionChoice> = list
                .split(',')
                .map(str::trim)
                .map(|o| match o.parse::<u32>() {
                    Ok(index) => OptionChoice::Index(index),
                    Err(_) => OptionChoice::Name(o.to_string()),
                })
                .collect();
            if options
                .iter()
                .any(|o| matches!(o, OptionChoice::Name(n) if n.is_empty()))
            {
                bail!(
                    "--target {text}: an option is empty; give one option per component, e.g. fixed-options:0,1,2"
                );
            }
            return Ok(CampaignTarget::FixedOptions(options));
        }
        bail!("--target: {text:?} is not a target; accepted with --data: {TARGET_FORMS}")
    }

    /// Checks the target against the campaign and evaluates it on `rows` (the
    /// campaign's decisions in log order; segments index the campaign's segments).
    pub fn evaluate(
        &self,
        campaign: &Campaign,
        rows: &[LoggedRow],
        folds: usize,
        target_floor: Option<f64>,
    ) -> anyhow::Result<Evaluation> {
        let segments = campaign.design().segments();
        let allowed = campaign.allowed_versions();
        let mean =
            |rows: &[LoggedRow]| rows.iter().map(|r| r.reward).sum::<f64>() / rows.len() as f64;
        let action_space = usize::try_from(allowed).unwrap_or(usize::MAX);
        match self {
            CampaignTarget::Uniform => {
                let estimates = estimate(rows, segments, TargetProb::Uniform(action_space), folds)?;
                Ok(Evaluation {
                    target: format!(
                        "uniform over the campaign's {allowed} allowed versions ({} defined, exclusions removed); all {} decisions",
                        campaign.total_versions(),
                        rows.len()
                    ),
                    action_space,
                    logged_mean: mean(rows),
                    estimates,
                })
            }
            CampaignTarget::Version(_) | CampaignTarget::FixedOptions(_) => {
                let version = self.fixed_version(campaign)?;
                served(rows, version, campaign)?;
                let estimates = estimate(rows, segments, TargetProb::Fixed(version), folds)?;
                Ok(Evaluation {
                    target: format!(
                        "always version {version} ({}); all {} decisions",
                        describe(campaign, version),
                        rows.len()
                    ),
                    action_space,
                    logged_mean: mean(rows),
                    estimates,
                })
            }
            CampaignTarget::FactorizedTs => {
                let (first, second) = halves(rows, folds, "factorized-ts")?;
                let mut settings = TrainedTargetSettings::for_campaign(campaign);
                if let Some(floor) = target_floor {
                    settings.floor = floor;
                }
                let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(TRAINED_TARGET_SEED);
                let trained = TrainedTarget::train(campaign.design(), &settings, first, &mut rng)
                    .context("cannot train the factorized-ts target on the first half")?;
                let estimates = estimate(
                    second,
                    segments,
                    TargetProb::Trained {
                        target: &trained,
                        allowed: action_space,
                    },
                    folds,
                )?;
                Ok(Evaluation {
                    target: format!(
                        "factorized-ts: the campaign's model trained from its prior on the first half ({} decisions in log order), {} Thompson draws per segment, floor {}; evaluated on the second half ({} decisions), not on the decisions it learned",
                        first.len(),
                        settings.draws,
                        settings.floor,
                        second.len()
                    ),
                    action_space,
                    logged_mean: mean(second),
                    estimates,
                })
            }
            CampaignTarget::BestLogged => {
                let (first, second) = halves(rows, folds, "best-logged")?;
                let (best, first_value) = best_by_snips(first);
                served(second, best, campaign).with_context(|| {
                    format!(
                        "best-logged picked version {best} on the first half ({} decisions)",
                        first.len()
                    )
                })?;
                let estimates = estimate(second, segments, TargetProb::Fixed(best), folds)?;
                Ok(Evaluation {
                    target: format!(
                        "best-logged: version {best} ({}) had the highest SNIPS value ({first_value:.4}) on the first half ({} decisions in log order); it is evaluated on the second half ({} decisions), not on the decisions that chose it",
                        describe(campaign, best),
                        first.len(),
                        second.len()
                    ),
                    action_space,
                    logged_mean: mean(second),
                    estimates,
                })
            }
        }
    }

    /// The version of a `version:` or `fixed-options:` target, checked: in range and
    /// allowed by the exclusions.
    fn fixed_version(&self, campaign: &Campaign) -> anyhow::Result<u64> {
        let spec = campaign.spec();
        let total = campaign.total_versions();
        let version = match self {
            CampaignTarget::Version(version) => {
                if *version >= total {
                    bail!(
                        "--target version:{version}: the campaign's versions are 0 to {} ({total} versions)",
                        total - 1
                    );
                }
                *version
            }
            CampaignTarget::FixedOptions(choices) => {
                let components = &spec.components;
                if choices.len() != components.len() {
                    let names: Vec<&str> = components.iter().map(|c| c.name.as_str()).collect();
                    bail!(
                        "--target fixed-options: expected {} options, one per component ({}), got {}",
                        components.len(),
                        names.join(", "),
                        choices.len()
                    );
                }
                let mut options = Vec::with_capacity(choices.len());
                for (component, choice) in components.iter().zip(choices) {
                    let names: Vec<&str> =
                        component.options.iter().map(|o| o.name.as_str()).collect();
                    let option = match choice {
                        OptionChoice::Index(index) => {
                            if *index as usize >= names.len() {
                                bail!(
                                    "--target fixed-options: component {} has options 0 to {} ({}); {index} is out of range",
                                    component.name,
                                    names.len() - 1,
                                    names.join(", ")
                                );
                            }
                            *index
                        }
                        OptionChoice::Name(name) => {
                            names.iter().position(|n| n == name).with_context(|| {
                                format!(
                                    "--target fixed-options: component {} has no option {name:?} (options: {})",
                                    component.name,
                                    names.join(", ")
                                )
                            })? as u32
                        }
                    };
                    options.push(option);
                }
                campaign
                    .design()
                    .space
                    .try_encode(&options)
                    .map_err(|e| anyhow::anyhow!("--target fixed-options: {e}"))?
            }
            CampaignTarget::Uniform | CampaignTarget::BestLogged | CampaignTarget::FactorizedTs => {
                unreachable!("only version and fixed-options targets name one version")
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
            bail!(
                "--target: version {version} ({}) is excluded by the campaign's exclusions ({}); pick an allowed version",
                describe(campaign, version),
                exclusions.join("; ")
            );
        }
        Ok(version)
    }
}

/// The first and second halves of `rows` in log order, refused (naming `target`) when
/// either half is too short for `folds` folds.
fn halves<'a>(
    rows: &'a [LoggedRow],
    folds: usize,
    target: &str,
) -> anyhow::Result<(&'a [LoggedRow], &'a [LoggedRow])> {
    let n = rows.len();
    let needed = 2 * folds.max(2);
    if n < needed {
        bail!(
            "{target} needs at least {needed} decisions (two halves, {folds} folds each); the campaign has {n}"
        );
    }
    Ok(rows.split_at(n / 2))
}

/// `component=option, ...` of a version.
fn describe(campaign: &Campaign, version: u64) -> String {
    campaign
        .options_of(version)
        .into_iter()
        .map(|(component, option)| format!("{component}={option}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Refuses a fixed target whose version no decision served: no row would carry weight.
fn served(rows: &[LoggedRow], version: u64, campaign: &Campaign) -> anyhow::Result<()> {
    if rows.iter().any(|r| r.action == version) {
        return Ok(());
    }
    bail!(
        "version {version} ({}) was never served in the {} decisions evaluated, so the log says nothing about it \
         (every weight would be 0); pick a version the campaign served",
        describe(campaign, version),
        rows.len()
    )
}

/// Checks the rows against the campaign: every segment is one of the campaign's and
/// every version one it allows (the server only serves those). Returns the number of
/// distinct versions served.
pub fn check_rows(campaign: &Campaign, rows: &[LoggedRow]) -> anyhow::Result<usize> {
    let segments = campaign.design().segments();
    let mut distinct = HashSet::new();
    for (i, row) in rows.iter().enumerate() {
        if row.segment >= segments {
            bail!(
                "decision {} of the log has segment index {}, but the campaign has {segments} segments",
                i + 1,
                row.segment
            );
        }
        if !campaign.is_allowed(row.action) {
            bail!(
                "decision {} of the log served version {}, which the campaign does not allow (versions 0 to {}, exclusions removed)",
                i + 1,
                row.action,
                campaign.total_versions() - 1
            );
        }
        distinct.insert(row.action);
    }
    Ok(distinct.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tla_core::spec::CampaignSpec;

    fn small() -> Campaign {
        CampaignSpec::from_toml_str(include_str!("../../../../examples/small.toml"))
            .unwrap()
            .validate()
            .unwrap()
    }

    #[test]
    fn targets_parse_and_bad_ones_name_the_accepted_forms() {
        assert_eq!(
            CampaignTarget::parse("uniform").unwrap(),
            CampaignTarget::Uniform
        );
        assert_eq!(
            CampaignTarget::parse("version:7").unwrap(),
            CampaignTarget::Version(7)
        );
        assert_eq!(
            CampaignTarget::parse("fixed-options:0,heron,2").unwrap(),
            CampaignTarget::FixedOptions(vec![
                OptionChoice::Index(0),
                OptionChoice::Name("heron".into()),
                OptionChoice::Index(2)
            ])
        );
        let error = CampaignTarget::parse("oracle").unwrap_err().to_string();
        assert!(
            error.contains("accepted with --data: uniform, version:INDEX"),
            "{error}"
        );
        let error = CampaignTarget::parse("version:x").unwrap_err().to_string();
        assert!(error.contains("whole number"), "{error}");
        let error = CampaignTarget::parse("fixed-options:0,,1")
            .unwrap_err()
            .to_string();
        assert!(error.contains("an option is empty"), "{error}");
    }

    #[test]
    fn fixed_targets_resolve_by_index_or_name_and_refuse_range_and_exclusions() {
        let campaign = small();
        // headline x image x cta = 3 x 2 x 3; strides 6, 3, 1.
        let version = |text: &str| {
            CampaignTarget::parse(text)
                .unwrap()
                .fixed_version(&campaign)
        };
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
    }

    #[test]
    fn uniform_uses_the_allowed_count_not_the_versions_seen() {
        // Two versions logged, each with propensity 1/2, both paying 8 then 0: a log of
        // a policy that only ever served versions 0 and 1.
        let campaign = small();
        let rows: Vec<LoggedRow> = (0..8)
            .map(|i| LoggedRow {
                segment: i % 3,
                action: (i % 2) as u64,
                propensity: 0.5,
                reward: if i % 4 < 2 { 8.0 } else { 0.0 },
            })
            .collect();
        assert_eq!(check_rows(&campaign, &rows).unwrap(), 2);
        let evaluation = CampaignTarget::Uniform
            .evaluate(&campaign, &rows, 2, None)
            .unwrap();
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
    fn rows_outside_the_campaign_are_refused() {
        let campaign = small();
        let row = |segment, action| LoggedRow {
            segment,
            action,
            propensity: 0.5,
            reward: 0.0,
        };
        let error = check_rows(&campaign, &[row(0, 1), row(3, 1)])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("decision 2") && error.contains("3 segments"),
            "{error}"
        );
        let error = check_rows(&campaign, &[row(0, 14)])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("version 14, which the campaign does not allow"),
            "{error}"
        );
    }
}
