//! The holdout in the simulator: the arms are what they say, the lift is followed at
//! every look, an A/A run's sequence rarely excludes zero, and with a budget the
//! holdout spends its share evenly.

use tla_core::design::{Interactions, Objective};
use tla_core::pacing::PacingMode;
use tla_sim::online::{
    self, Flow, HoldoutRun, Impression, Observer, PacingRun, RunConfig, Streams,
};
use tla_sim::sim::{SimConfig, Truth, holdout_runs, simulate};
use tla_sim::world::World;
use tla_sim::{PolicyChoice, build_policy};

fn load(name: &str) -> World {
    let path = format!("{}/../../worlds/{name}.json", env!("CARGO_MANIFEST_DIR"));
    World::from_json(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Per arm: decisions, spend, and the held-out propensities seen.
#[derive(Default)]
struct Arms {
    served: [u64; 2],
    spend: [f64; 2],
    held_out_propensities: Vec<f64>,
}

impl<L> Observer<L> for Arms {
    fn impression(&mut self, impression: &Impression) -> Flow {
        let arm = usize::from(impression.held_out);
        self.served[arm] += 1;
        self.spend[arm] += impression.answer.cost;
        if impression.held_out {
            self.held_out_propensities
                .push(impression.decision.propensity);
        }
        Flow::Continue
    }
}

#[test]
fn the_holdout_is_its_share_of_units_served_the_even_split_and_the_lift_is_followed() {
    let world = load("small");
    let design = world.design(Interactions::segment_only(4), Objective::Value);
    let mut policy = build_policy(
        PolicyChoice::FactorizedTs,
        &design,
        &tla_sim::default_settings(),
        3,
    );
    let mut arms = Arms::default();
    let config = RunConfig {
        holdout: Some(HoldoutRun {
            share: 0.3,
            salt: 3,
        }),
        ..RunConfig::new(20_000)
    };
    online::run(
        &world,
        &mut Streams::new(3, &world.segment_probs),
        &mut policy,
        &config,
        &mut arms,
    );
    let share = arms.served[1] as f64 / 20_000.0;
    assert!((share - 0.3).abs() < 0.015, "{share}");
    let even = 1.0 / world.space.allowed_count() as f64;
    assert!(
        arms.held_out_propensities
            .iter()
            .all(|&p| (p - even).abs() < 1e-15)
    );

    // The scored run: 30 looks, the sequence wider than the fixed interval at each,
    // and the policy beats the even split here, truly and as measured.
    let truth = Truth::new(&world);
    let mut policy = build_policy(
        PolicyChoice::FactorizedTs,
        &design,
        &tla_sim::default_settings(),
        3,
    );
    let report = simulate(
        &world,
        &truth,
        &mut policy,
        &SimConfig {
            holdout: config.holdout,
            ..SimConfig::new(60_000, 3)
        },
        |_| {},
    );
    let h = report.holdout.unwrap();
    assert_eq!(h.series.len(), 30);
    assert_eq!(h.series.last().unwrap().opportunities, 60_000);
    for look in &h.series {
        if let Some(p) = &look.per_impression {
            let width = |b: &tla_core::holdout::Bounds| b.upper - b.lower;
            assert!(width(&p.sequence) > width(&p.fixed), "{look:?}");
        }
    }
    let truth_lift = h.true_lift_per_impression.unwrap();
    assert!(truth_lift > 0.0, "{truth_lift}");
    let p = h.lift.per_impression.unwrap();
    assert!(p.sequence.lower > 0.0, "{p:?}");
    assert!(p.sequence.lower <= truth_lift && truth_lift <= p.sequence.upper);
    let first = h.first_excluded_zero.sequence_per_impression.unwrap();
    let fixed = h.first_excluded_zero.fixed_per_impression.unwrap();
    assert!(fixed.look <= first.look, "{fixed:?} {first:?}");
}

/// A/A: the policy is the even split too. Over 200 runs of 30 looks, the sequence
/// excludes zero at some look in at most about alpha of them, the fixed interval in
/// several times more (deterministic: fixed seeds).
#[test]
fn an_a_a_run_rarely_excludes_zero_with_the_sequence() {
    let world = load("small");
    let design = world.design(Interactions::segment_only(4), Objective::Value);
    let truth = Truth::new(&world);
    let config = SimConfig {
        holdout: Some(HoldoutRun {
            share: 0.5,
            salt: 0,
        }),
        ..SimConfig::new(4_000, 1)
    };
    let runs = holdout_runs(
        &world,
        &truth,
        |seed| {
            build_policy(
                PolicyChoice::Uniform,
                &design,
                &tla_sim::default_settings(),
                seed,
            )
        },
        &config,
        200,
        |_| {},
    );
    assert_eq!(runs.runs, 200);
    assert!(runs.sequence_rate <= 0.07, "{runs:?}");
    assert!(
        runs.fixed_excluded_zero >= 2 * runs.sequence_excluded_zero.max(8),
        "{runs:?}"
    );
}

/// With a budget, the holdout's pacer spends its share of the budget evenly, apart
/// from the policy's.
#[test]
fn with_a_budget_the_holdout_spends_its_share() {
    let world = load("flight-small");
    let flight = world.flight.as_ref().unwrap();
    let impressions = 40_000;
    let budget = flight.budget(impressions, &world.segment_probs);
    let design = world.design(Interactions::segment_only(4), Objective::Value);
    let mut policy = build_policy(
        PolicyChoice::FactorizedTs,
        &design,
        &tla_sim::default_settings(),
        5,
    );
    let mut arms = Arms::default();
    let config = RunConfig {
        pacing: Some(PacingRun {
            mode: PacingMode::Value,
            budget,
            daily_cap: None,
            min_roas: None,
        }),
        holdout: Some(HoldoutRun {
            share: 0.2,
            salt: 5,
        }),
        ..RunConfig::new(impressions)
    };
    online::run(
        &world,
        &mut Streams::new(5, &world.segment_probs),
        &mut policy,
        &config,
        &mut arms,
    );
    let held = arms.spend[1] / budget;
    assert!(
        (0.15..=0.205).contains(&held),
        "holdout spent {held} of the budget"
    );
    assert!(arms.spend[0] + arms.spend[1] <= budget * 1.001);
    assert!(arms.served[1] > 0 && arms.served[0] > 3 * arms.served[1]);
}
