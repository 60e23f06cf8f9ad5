//! Launches: in a world whose options launch during its flight, the learner learns of
//! an option when it launches, through the same revision path a running campaign takes
//! ([`tla_core::revision`]).
//!
//! A [`LaunchView`] is what the learner knows at a flight fraction: a design holding
//! only the options launched by then, each component's options in the world's order
//! (a learner option is named by its world option's position, so the two are matched by
//! name, whatever the world's order), with the world's exclusions between them and the
//! learner's own interactions. When options launch, [`LaunchView::advance`] gives the
//! next view and the [`Revision`] from the current one; the policy is revised through
//! it (new options at their prior, every learned belief carried) and its decision
//! distributions are drawn anew at once. The view translates versions both ways: the
//! learner decides in its own indices, the world answers in its own.
//!
//! Every version a learner of the view can serve exists at the flight fraction, so its
//! propensities are exact as they stand: nothing is rejected and redrawn.

use crate::world::World;
use std::cell::RefCell;
use tla_core::design::{AskComponent, Design};
use tla_core::revision::Revision;
use tla_core::space::VersionSpace;

/// The options a learner knows at a flight fraction, and the translation of its
/// versions to the world's (see the module documentation).
#[derive(Debug, Clone)]
pub struct LaunchView {
    /// The learner's design: the launched options only.
    design: Design,
    /// Per component, the learner's option names: each its world option's position.
    names: Vec<Vec<String>>,
    /// Per component, the world option of each learner option.
    to_world: Vec<Vec<u32>>,
    /// Per component, the learner option of each world option (`None`: not launched).
    to_learner: Vec<Vec<Option<u32>>>,
    /// The world's version space.
    world_space: VersionSpace,
    /// The next flight fraction at which an option launches (`None`: every option has).
    next_launch: Option<f64>,
    /// Options of a version, for the translations.
    scratch: RefCell<(Vec<u32>, Vec<u32>)>,
}

/// Every option of `design`, named by position: the names of the world's own design.
pub fn positional_names(space: &VersionSpace) -> Vec<Vec<String>> {
    space
        .option_counts()
        .iter()
        .map(|&n| (0..n).map(|o| o.to_string()).collect())
        .collect()
}

impl LaunchView {
    /// What a learner of `full` (the world's design, every option, with the learner's
    /// interactions and objective) knows at flight fraction `f`; `None` when the world
    /// has no flight or every option exists from the start.
    ///
    /// # Panics
    /// If the world's exclusions leave no version among the options launched at `f`.
    pub fn at(world: &World, full: &Design, f: f64) -> Option<Self> {
        let flight = world.flight.as_ref()?;
        if flight.launch.iter().flatten().all(|&at| at <= 0.0) {
            return None;
        }
        let space = &world.space;
        let to_world: Vec<Vec<u32>> = (0..space.components())
            .map(|k| {
                (0..space.option_count(k))
                    .filter(|&o| flight.launched(k, o, f))
                    .collect()
            })
            .collect();
        let mut to_learner: Vec<Vec<Option<u32>>> = space
            .option_counts()
            .iter()
            .map(|&n| vec![None; n as usize])
            .collect();
        for (k, options) in to_world.iter().enumerate() {
            for (learner, &world_option) in options.iter().enumerate() {
                to_learner[k][world_option as usize] = Some(learner as u32);
            }
        }
        let launched: Vec<Vec<bool>> = to_learner
            .iter()
            .map(|options| options.iter().map(Option::is_some).collect())
            .collect();
        let learner_space = space.keeping(&launched).unwrap_or_else(|error| {
            panic!("the options launched at flight fraction {f} make no version space: {error}")
        });
        let ask = full.ask.as_ref().map(|ask| AskComponent {
            component: ask.component,
            amounts: to_world[ask.component]
                .iter()
                .map(|&o| ask.amounts[o as usize])
                .collect(),
        });
        let design = Design {
            component_names: full.component_names.clone(),
            segment_names: full.segment_names.clone(),
            space: learner_space,
            ask,
            objective: full.objective,
            interactions: full.interactions.clone(),
        };
        let names = to_world
            .iter()
            .map(|options| options.iter().map(|o| o.to_string()).collect())
            .collect();
        let next_launch = flight
            .launch
            .iter()
            .flatten()
            .copied()
            .filter(|&at| at > f)
            .min_by(f64::total_cmp);
        let components = space.components();
        Some(Self {
            design,
            names,
            to_world,
            to_learner,
            world_space: space.clone(),
            next_launch,
            scratch: RefCell::new((vec![0; components], vec![0; components])),
        })
    }

    /// The first view of a run at flight fraction `f` and the revision from `full`
    /// (every option, in the world's order) to it; `None` as for [`LaunchView::at`].
    pub fn start(world: &World, full: &Design, f: f64) -> Option<(Self, Revision)> {
        let view = Self::at(world, full, f)?;
        let revision = Revision::between_designs(
            full,
            &positional_names(&full.space),
            &view.design,
            &view.names,
        )
        .expect("a view keeps the learner's components, objective and asks");
        Some((view, revision))
    }

    /// Whether an option launches at or before `f` that the view does not hold.
    pub fn is_due(&self, f: f64) -> bool {
        self.next_launch.is_some_and(|at| at <= f)
    }

    /// The view at `f` (when [`LaunchView::is_due`]) and the revision from this one.
    pub fn advance(&self, world: &World, full: &Design, f: f64) -> (Self, Revision) {
        let next = Self::at(world, full, f).expect("a world with launches");
        let revision =
            Revision::between_designs(&self.design, &self.names, &next.design, &next.names)
                .expect("a view keeps the learner's components, objective and asks");
        (next, revision)
    }

    /// The revision from this view back to `full` (every option in the world's order,
    /// those not launched at their prior), for a learner handed back after a run.
    pub fn to_full(&self, full: &Design) -> Revision {
        Revision::between_designs(
            &self.design,
            &self.names,
            full,
            &positional_names(&full.space),
        )
        .expect("a view keeps the learner's components, objective and asks")
    }

    /// The learner's design.
    pub fn design(&self) -> &Design {
        &self.design
    }

    /// The world's version of learner version `version`.
    pub fn to_world(&self, version: u64) -> u64 {
        let mut scratch = self.scratch.borrow_mut();
        let (learner, world) = &mut *scratch;
        self.design.space.decode_into(version, learner);
        for (k, (slot, &o)) in world.iter_mut().zip(learner.iter()).enumerate() {
            *slot = self.to_world[k][o as usize];
        }
        self.world_space.encode(world)
    }

    /// The learner's version of world version `version`, or `None` when it holds an
    /// option the learner does not know (not launched).
    pub fn to_learner(&self, version: u64) -> Option<u64> {
        if version >= self.world_space.total() {
            return None;
        }
        let mut scratch = self.scratch.borrow_mut();
        let (learner, world) = &mut *scratch;
        self.world_space.decode_into(version, world);
        for (k, (slot, &o)) in learner.iter_mut().zip(world.iter()).enumerate() {
            *slot = self.to_learner[k][o as usize]?;
        }
        Some(self.design.space.encode(learner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::online::{self, Flow, Impression, Observer, RunConfig, Streams};
    use crate::{AnyPolicy, PolicyChoice, build_policy};
    use tla_core::design::{Interactions, Objective};
    use tla_core::policy::Policy;

    fn world(name: &str) -> World {
        let text = std::fs::read_to_string(format!(
            "{}/../../worlds/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        World::from_json(&text).unwrap()
    }

    #[test]
    fn a_view_holds_exactly_the_versions_that_exist() {
        let world = world("flight-full");
        let full = world.design(Interactions::segment_only(4), Objective::Value);
        let mut options = vec![0u32; world.space.components()];
        // 4 of 24 headlines launch at 0.25 and 0.6.
        for (f, headlines) in [(0.1, 20), (0.3, 22), (0.7, 24)] {
            let view = LaunchView::at(&world, &full, f).unwrap();
            let space = &view.design().space;
            assert_eq!(space.option_count(0), headlines);
            let available = (0..world.space.total())
                .filter(|&v| {
                    world.space.decode_into(v, &mut options);
                    world.available_at(&options, f)
                })
                .count() as u64;
            assert_eq!(space.allowed_count(), available);
            for version in (0..space.total()).step_by(97) {
                let in_world = view.to_world(version);
                world.space.decode_into(in_world, &mut options);
                assert!(world.available_at(&options, f));
                assert_eq!(view.to_learner(in_world), Some(version));
            }
            assert_eq!(view.is_due(0.6), f < 0.6);
        }
        let late = world.space.encode(&[23, 0, 0, 0]);
        assert_eq!(
            LaunchView::at(&world, &full, 0.3).unwrap().to_learner(late),
            None
        );
        // A world whose options all exist from the start needs no view.
        let small = world_without_launches();
        let design = small.design(Interactions::segment_only(4), Objective::Value);
        assert!(LaunchView::at(&small, &design, 0.0).is_none());
    }

    fn world_without_launches() -> World {
        world("small")
    }

    /// Checks every impression of a flight run against the world and the learner.
    struct Launched {
        /// Impressions of the option that launches at 0.5 (headline 3), before and after.
        late_option: [u64; 2],
        /// Impressions from 0.5 on.
        after: u64,
        /// The most revisions the learner had taken.
        revisions: u32,
    }

    impl Observer<AnyPolicy> for Launched {
        fn before_decision(&mut self, learner: &AnyPolicy, segment: usize) {
            // Propensities over the world's versions sum to 1, and none goes to a
            // version that does not exist yet.
            let total: f64 = (0..256).map(|v| learner.propensity(segment, v)).sum();
            assert!((total - 1.0).abs() < 1e-9, "{total}");
            self.revisions = self.revisions.max(learner.revisions());
        }

        fn impression(&mut self, impression: &Impression) -> Flow {
            let f = impression.flight_fraction.unwrap();
            let late = impression.decision.version / 64 == 3;
            if f >= 0.5 {
                self.after += 1;
            }
            self.late_option[usize::from(f >= 0.5)] += u64::from(late);
            Flow::Continue
        }
    }

    #[test]
    fn a_learner_learns_of_an_option_when_it_launches() {
        let world = world("flight-small");
        let design = world.design(Interactions::segment_only(4), Objective::Value);
        for choice in [
            PolicyChoice::FactorizedTs,
            PolicyChoice::IndependentTs,
            PolicyChoice::Uniform,
        ] {
            let mut policy = build_policy(choice, &design, &crate::default_settings(), 3);
            let mut seen = Launched {
                late_option: [0, 0],
                after: 0,
                revisions: 0,
            };
            let served = online::run(
                &world,
                &mut Streams::new(3, &world.segment_probs),
                &mut policy,
                &RunConfig::new(4_000),
                &mut seen,
            );
            assert_eq!(served, 4_000);
            assert_eq!(
                seen.late_option[0], 0,
                "{choice:?}: served before its launch"
            );
            assert!(
                seen.late_option[1] > seen.after / 20,
                "{choice:?}: the new headline got {} of {} impressions",
                seen.late_option[1],
                seen.after
            );
            // The first view, then the launch at 0.5; after the run the policy is back
            // over every option, in the world's order, and has learned what it served.
            assert_eq!(seen.revisions, 2, "{choice:?}");
            assert_eq!(policy.revisions(), 0);
            let late = world.space.encode(&[3, 0, 0, 0]);
            assert!(policy.propensity(0, late) > 0.0);
        }
    }
}
