//! Target policies learned from a log, for off-policy evaluation.
//!
//! [`TrainedTarget`] answers "what would factorized Thompson sampling have earned had
//! it been trained on this log?". It trains a fresh factorized model (the sampler the
//! [`crate::engine::Engine`] wraps) on logged rows in order, with the engine's event
//! semantics ([`crate::engine::learned_outcome`]): every row is an impression, learned
//! as a miss, and a row whose reward is positive is also a conversion with that amount.
//! It then draws each segment's decision table from `M` Thompson draws (the engine's
//! usual `M`, [`crate::policy::campaign::DEFAULT_DRAWS`]) and serves them under a uniform floor:
//!
//! `pi(v | s) = floor / |allowed| + (1 - floor) · table_s(v)`, and 0 for a version
//! outside the allowed space,
//!
//! where `table_s(v)` is the share of the `M` draws that chose `v`. This is exactly the
//! propensity [`crate::policy::floor::ExplorationFloor`] gives a
//! [`crate::policy::thompson::ThompsonPolicy`], which is what the target is built from.
//!
//! **The default floor** is [`DEFAULT_TARGET_FLOOR`] = the engine's default exploration
//! floor (0.02): the target is then the very policy a campaign would serve after
//! learning the log, so its value answers the deployment question. A floor of 0 gives
//! the pure Thompson table, which puts probability 0 on every version no draw chose;
//! that is legitimate for IPS and doubly robust (such rows weigh 0) and only refused by
//! SNIPS when no logged row has positive weight.
//!
//! Pure: the Thompson draws take the caller's random number generator, so the same
//! rows, settings and seed give the same target.

use crate::decision::DecisionTable;
use crate::design::Design;
use crate::engine::{Feedback, learned_outcome};
use crate::ope::LoggedRow;
use crate::policy::campaign::{CampaignPolicy, CampaignPolicySettings};
use crate::policy::factorized::{FactorizedSampler, FactorizedSettings};
use crate::policy::thompson::PosteriorSampler;
use crate::policy::{Decision, Policy};
use crate::space::VersionSpace;
use crate::spec::Campaign;
use rand::Rng;
use thiserror::Error;

/// Default floor of a trained target: the engine's default exploration floor, so the
/// target is the policy a campaign would serve after learning the log.
pub const DEFAULT_TARGET_FLOOR: f64 = crate::spec::DEFAULT_EXPLORATION;

/// How a [`TrainedTarget`] is trained and drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainedTargetSettings {
    /// Settings of the factorized model (priors, argmax search, draw scale).
    pub factorized: FactorizedSettings,
    /// Thompson draws per segment's decision table (`M`, at least 1).
    pub draws: usize,
    /// Share of the target's probability spread evenly over the allowed versions, in
    /// `[0, 1)`.
    pub floor: f64,
}

impl Default for TrainedTargetSettings {
    /// The campaign policy's defaults ([`CampaignPolicySettings::default`]): its model
    /// settings, its draws and its floor ([`DEFAULT_TARGET_FLOOR`]).
    fn default() -> Self {
        Self::from_policy(&CampaignPolicySettings::default())
    }
}

impl TrainedTargetSettings {
    /// The settings an [`crate::engine::Engine`] of `campaign` runs with: its draws and
    /// its exploration floor as the target's floor.
    pub fn for_campaign(campaign: &Campaign) -> Self {
        Self::from_policy(&CampaignPolicySettings::for_campaign(campaign))
    }

    /// The target of a campaign policy with `policy`'s model, draws and floor.
    pub fn from_policy(policy: &CampaignPolicySettings) -> Self {
        Self {
            factorized: policy.factorized,
            draws: policy.draws,
            floor: policy.exploration,
        }
    }

    /// The campaign policy settings the target is drawn with: these draws and model,
    /// this floor, and no refresh (the target is frozen).
    pub fn policy_settings(&self) -> CampaignPolicySettings {
        CampaignPolicySettings {
            draws: self.draws,
            exploration: self.floor,
            factorized: self.factorized,
            ..CampaignPolicySettings::default()
        }
        .without_clock()
    }
}

/// Why a target cannot be trained.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum TargetError {
    /// The floor is not in `[0, 1)`.
    #[error("the target floor {value} is not in [0, 1); accepted: a share such as 0 or 0.02")]
    BadFloor {
        /// The offending value.
        value: f64,
    },
    /// A row's segment is not one of the design's.
    #[error("row {row}: segment {segment} is outside the design's {segments} segments")]
    SegmentOutOfRange {
        /// Row index (0-based).
        row: usize,
        /// The offending segment.
        segment: usize,
        /// Segments of the design.
        segments: usize,
    },
    /// A row's version is not in the design's version space.
    #[error("row {row}: version {version} is outside the design's {total} versions")]
    VersionOutOfRange {
        /// Row index (0-based).
        row: usize,
        /// The offending version.
        version: u64,
        /// Versions of the space.
        total: u64,
    },
    /// A row's reward is negative or not finite.
    #[error("row {row}: the reward {value} is not a finite number >= 0")]
    BadReward {
        /// Row index (0-based).
        row: usize,
        /// The offending value.
        value: f64,
    },
}

/// Teaches `sampler` (of `design`) the logged `rows` in order, as the engine learns
/// served traffic ([`learned_outcome`]): each row an impression, and a conversion with
/// its reward when the reward is positive. The rows must lie inside the design.
pub fn learn_rows(sampler: &mut FactorizedSampler, design: &Design, rows: &[LoggedRow]) {
    for row in rows {
        let mut learn = |feedback| {
            if let Some(outcome) =
                learned_outcome(design.objective, row.segment, row.action, feedback)
            {
                sampler.observe(&outcome);
            }
        };
        learn(Feedback::Impression);
        if row.reward > 0.0 {
            learn(Feedback::Conversion {
                amount: Some(row.reward),
            });
        }
    }
}

/// Factorized Thompson sampling trained on logged rows, frozen as a target policy.
#[derive(Debug, Clone)]
pub struct TrainedTarget {
    /// The trained model's decision tables under the floor.
    policy: CampaignPolicy,
    /// Rows the model learned.
    rows_learned: usize,
}

impl TrainedTarget {
    /// Trains a fresh factorized model of `design` on `rows` in order and draws every
    /// segment's decision table with `rng`. Refuses a floor outside `[0, 1)` and rows
    /// whose segment or version lies outside the design or whose reward is negative or
    /// not finite; on error nothing is drawn.
    pub fn train<R: Rng + ?Sized>(
        design: &Design,
        settings: &TrainedTargetSettings,
        rows: &[LoggedRow],
        rng: &mut R,
    ) -> Result<Self, TargetError> {
        if !(settings.floor.is_finite() && (0.0..1.0).contains(&settings.floor)) {
            return Err(TargetError::BadFloor {
                value: settings.floor,
            });
        }
        let (segments, total) = (design.segments(), design.space.total());
        for (row_index, row) in rows.iter().enumerate() {
            if row.segment >= segments {
                return Err(TargetError::SegmentOutOfRange {
                    row: row_index,
                    segment: row.segment,
                    segments,
                });
            }
            if row.action >= total {
                return Err(TargetError::VersionOutOfRange {
                    row: row_index,
                    version: row.action,
                    total,
                });
            }
            if !(row.reward.is_finite() && row.reward >= 0.0) {
                return Err(TargetError::BadReward {
                    row: row_index,
                    value: row.reward,
                });
            }
        }
        let mut sampler = FactorizedSampler::new(design, settings.factorized);
        learn_rows(&mut sampler, design, rows);
        // The tables drawn now are the target: it learns nothing more, so the cadence
        // never fires.
        let policy = settings
            .policy_settings()
            .wrap(sampler, design.space.clone(), rng);
        Ok(Self {
            policy,
            rows_learned: rows.len(),
        })
    }

    /// `pi(version | segment)`: `floor / |allowed| + (1 - floor) · table(version)`, 0
    /// for a version outside the allowed space.
    pub fn probability(&self, segment: usize, version: u64) -> f64 {
        self.policy.propensity(segment, version)
    }

    /// `sum_v pi(v | segment) f(v)`, given `even_mean` = the mean of `f` over the allowed
    /// versions: `floor · even_mean + (1 - floor) · sum over the table's entries of
    /// table(v) f(v)`. With `f` the true expected value this is the target's exact value
    /// in the segment; with a direct model's prediction, its direct value.
    pub fn expectation(
        &self,
        segment: usize,
        even_mean: f64,
        mut f: impl FnMut(u64) -> f64,
    ) -> f64 {
        let floor = self.floor();
        let table: f64 = self
            .table(segment)
            .entries()
            .map(|(version, probability)| probability * f(version))
            .sum();
        floor * even_mean + (1.0 - floor) * table
    }

    /// A version drawn from the target, with its probability.
    pub fn decide<R: Rng + ?Sized>(&self, segment: usize, rng: &mut R) -> Decision {
        self.policy.decide(segment, rng)
    }

    /// The decision table of a segment (before the floor).
    pub fn table(&self, segment: usize) -> &DecisionTable {
        self.policy.base().table(segment)
    }

    /// The floor: the share of probability spread evenly over the allowed versions.
    pub fn floor(&self) -> f64 {
        self.policy.epsilon()
    }

    /// The version space.
    pub fn space(&self) -> &VersionSpace {
        self.policy.space()
    }

    /// Number of segments.
    pub fn segments(&self) -> usize {
        self.policy.base().sampler().segments()
    }

    /// The trained model.
    pub fn sampler(&self) -> &FactorizedSampler {
        self.policy.base().sampler()
    }

    /// Rows the model learned.
    pub fn rows_learned(&self) -> usize {
        self.rows_learned
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::design::{Interactions, Objective};
    use rand::SeedableRng;
    use rand_pcg::Pcg64Mcg;

    fn design(space: VersionSpace) -> Design {
        let components = space.components();
        Design {
            component_names: (0..components).map(|k| format!("c{k}")).collect(),
            segment_names: vec!["a".into(), "b".into()],
            space,
            ask: None,
            objective: Objective::Conversions,
            interactions: Interactions::segment_only(components),
        }
    }

    /// A log where, in segment 0, versions with option 1 of component 0 convert every
    /// fourth impression and all others never; segment 1 sees only misses.
    fn log(space: &VersionSpace, n: usize) -> Vec<LoggedRow> {
        (0..n)
            .map(|i| {
                let segment = i % 2;
                let action = (i as u64 / 2) % space.total();
                let good = segment == 0 && space.option_of(action, 0) == 1;
                LoggedRow {
                    segment,
                    action,
                    propensity: 1.0 / space.total() as f64,
                    reward: if good && i % 8 == 0 { 1.0 } else { 0.0 },
                }
            })
            .collect()
    }

    #[test]
    fn probabilities_sum_to_one_over_the_allowed_versions() {
        let space = VersionSpace::product(vec![3, 4, 2]).unwrap();
        let design = design(space.clone());
        let rows = log(&space, 2_000);
        for floor in [0.0, 0.02, 0.5] {
            let settings = TrainedTargetSettings {
                floor,
                ..Default::default()
            };
            let mut rng = Pcg64Mcg::seed_from_u64(7);
            let target = TrainedTarget::train(&design, &settings, &rows, &mut rng).unwrap();
            assert_eq!(target.rows_learned(), 2_000);
            for segment in 0..2 {
                let sum: f64 = (0..space.total())
                    .map(|v| target.probability(segment, v))
                    .sum();
                assert!((sum - 1.0).abs() < 1e-12, "floor {floor}: sum {sum}");
                let minimum = (0..space.total())
                    .map(|v| target.probability(segment, v))
                    .fold(f64::INFINITY, f64::min);
                assert!(minimum >= floor / 24.0 - 1e-15);
                // The even-split identity: f = 1 everywhere gives 1.
                assert!((target.expectation(segment, 1.0, |_| 1.0) - 1.0).abs() < 1e-12);
            }
            // The model learned which option converts: most of segment 0's table has
            // option 1 of component 0.
            let good: f64 = target
                .table(0)
                .entries()
                .filter(|(v, _)| space.option_of(*v, 0) == 1)
                .map(|(_, p)| p)
                .sum();
            assert!(good > 0.6, "share of the good option {good}");
        }
    }

    #[test]
    fn excluded_versions_get_probability_zero() {
        use crate::space::{Exclusion, OptionRef};
        let space = VersionSpace::new(
            vec![3, 4],
            vec![Exclusion {
                first: OptionRef {
                    component: 0,
                    option: 0,
                },
                second: OptionRef {
                    component: 1,
                    option: 0,
                },
            }],
        )
        .unwrap();
        let design = design(space.clone());
        let rows: Vec<LoggedRow> = log(&space, 500)
            .into_iter()
            .filter(|r| space.is_allowed(r.action))
            .collect();
        let mut rng = Pcg64Mcg::seed_from_u64(1);
        let target =
            TrainedTarget::train(&design, &TrainedTargetSettings::default(), &rows, &mut rng)
                .unwrap();
        assert_eq!(target.probability(0, 0), 0.0);
        let sum: f64 = (0..space.total()).map(|v| target.probability(1, v)).sum();
        assert!((sum - 1.0).abs() < 1e-12);
    }

    #[test]
    fn same_seed_same_target_and_only_the_given_rows_are_learned() {
        let space = VersionSpace::product(vec![3, 4, 2]).unwrap();
        let design = design(space.clone());
        let rows = log(&space, 4_000);
        let settings = TrainedTargetSettings::default();
        let train = |rows: &[LoggedRow], seed| {
            let mut rng = Pcg64Mcg::seed_from_u64(seed);
            TrainedTarget::train(&design, &settings, rows, &mut rng).unwrap()
        };
        let tables = |t: &TrainedTarget| {
            (0..2)
                .map(|s| t.table(s).entries().collect::<Vec<_>>())
                .collect::<Vec<_>>()
        };
        let first = train(&rows[..2_000], 3);
        let again = train(&rows[..2_000], 3);
        assert_eq!(tables(&first), tables(&again));
        assert_eq!(first.sampler().snapshot(), again.sampler().snapshot());
        // The model is a function of exactly the given rows: the snapshot of a model
        // trained on the first half differs from one trained on everything, and equals
        // one trained on the first half with the second half's rewards changed.
        let all = train(&rows, 3);
        assert_ne!(first.sampler().snapshot(), all.sampler().snapshot());
        let mut altered = rows.clone();
        for row in &mut altered[2_000..] {
            row.reward = 50.0;
        }
        let first_of_altered = train(&altered[..2_000], 3);
        assert_eq!(
            first.sampler().snapshot(),
            first_of_altered.sampler().snapshot()
        );
        // Each row is an impression (a miss) plus, when rewarded, a conversion (a hit).
        let conversions = rows[..2_000].iter().filter(|r| r.reward > 0.0).count() as u64;
        assert_eq!(
            first.sampler().conversion().observations(),
            2_000 + conversions
        );
    }

    #[test]
    fn refuses_bad_floors_and_rows() {
        let space = VersionSpace::product(vec![3, 4]).unwrap();
        let design = design(space.clone());
        let mut rng = Pcg64Mcg::seed_from_u64(1);
        let row = LoggedRow {
            segment: 0,
            action: 0,
            propensity: 0.5,
            reward: 0.0,
        };
        let train = |rows: &[LoggedRow], floor: f64, rng: &mut Pcg64Mcg| {
            let settings = TrainedTargetSettings {
                floor,
                ..Default::default()
            };
            TrainedTarget::train(&design, &settings, rows, rng)
        };
        for floor in [1.0, -0.1, f64::NAN] {
            let error = train(&[row], floor, &mut rng).unwrap_err();
            assert!(matches!(error, TargetError::BadFloor { .. }));
            assert!(error.to_string().contains("[0, 1)"));
        }
        let bad = |r: LoggedRow| train(&[row, r], 0.02, &mut Pcg64Mcg::seed_from_u64(1));
        assert_eq!(
            bad(LoggedRow { segment: 2, ..row }).unwrap_err(),
            TargetError::SegmentOutOfRange {
                row: 1,
                segment: 2,
                segments: 2
            }
        );
        assert_eq!(
            bad(LoggedRow { action: 12, ..row }).unwrap_err(),
            TargetError::VersionOutOfRange {
                row: 1,
                version: 12,
                total: 12
            }
        );
        assert!(matches!(
            bad(LoggedRow {
                reward: f64::NAN,
                ..row
            }),
            Err(TargetError::BadReward { row: 1, .. })
        ));
        assert!(matches!(
            bad(LoggedRow {
                reward: -1.0,
                ..row
            }),
            Err(TargetError::BadReward { row: 1, .. })
        ));
        // No rows: the prior's target.
        assert!(train(&[], 0.02, &mut rng).is_ok());
    }

    /// The target learns exactly what an engine of the same campaign learns from the
    /// same rows sent as impression and conversion events.
    #[cfg(feature = "text")]
    #[test]
    fn learns_what_the_engine_learns() {
        use crate::engine::Engine;
        use crate::spec::CampaignSpec;
        let campaign = CampaignSpec::from_toml_str(include_str!("../../../examples/small.toml"))
            .unwrap()
            .validate()
            .unwrap();
        let design = campaign.design();
        let space = &design.space;
        let rows: Vec<LoggedRow> = (0..3_000u64)
            .map(|i| LoggedRow {
                segment: (i % design.segments() as u64) as usize,
                action: (i * 7_919) % space.total(),
                propensity: 1.0 / space.total() as f64,
                reward: if i % 37 == 0 {
                    10.0 + (i % 5) as f64
                } else {
                    0.0
                },
            })
            .filter(|r| space.is_allowed(r.action))
            .collect();
        let mut rng = Pcg64Mcg::seed_from_u64(5);
        let mut engine = Engine::new(&campaign, &mut rng);
        for row in &rows {
            engine.learn(row.segment, row.action, Feedback::Impression);
            if row.reward > 0.0 {
                engine.learn(
                    row.segment,
                    row.action,
                    Feedback::Conversion {
                        amount: Some(row.reward),
                    },
                );
            }
        }
        let settings = TrainedTargetSettings::for_campaign(&campaign);
        assert_eq!(settings.floor, campaign.spec().exploration);
        let target = TrainedTarget::train(design, &settings, &rows, &mut rng).unwrap();
        assert_eq!(target.sampler().snapshot(), engine.sampler().snapshot());
        assert_eq!(target.table(0).draws(), u64::from(campaign.spec().draws));
    }
}
