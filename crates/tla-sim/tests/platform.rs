//! The simulated ad platform (`--mode plan`): spend within the budget, exact
//! propensities, and plans that move the traffic toward better versions.

use tla_core::design::{Interactions, Objective};
use tla_sim::online::{self, Flow, Impression, Observer, PacingRun, RunConfig, Skip, Streams};
use tla_sim::platform::{PlatformLearner, PlatformRun};
use tla_sim::sim::{SimConfig, Truth, simulate_platform};
use tla_sim::world::World;
use tla_sim::{PolicyChoice, build_policy, default_settings};

fn load(name: &str) -> World {
    let path = format!("{}/../../worlds/{name}.json", env!("CARGO_MANIFEST_DIR"));
    World::from_json(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Per day of the flight: impressions bought, their true expected value and spend; the
/// propensities seen.
#[derive(Default)]
struct Days {
    bought: Vec<u64>,
    value: Vec<f64>,
    spend: Vec<f64>,
    propensities_ok: bool,
    skips: u64,
}

impl<L> Observer<L> for Days {
    fn begin(&mut self) {
        self.propensities_ok = true;
    }
    fn impression(&mut self, impression: &Impression) -> Flow {
        let day = (impression.flight_fraction.unwrap() * self.bought.len() as f64) as usize;
        self.bought[day] += 1;
        self.value[day] += impression.answer.expected_value;
        self.spend[day] += impression.answer.cost;
        let p = impression.decision.propensity;
        self.propensities_ok &= p > 0.0 && p <= 1.0;
        Flow::Continue
    }
    fn skip(&mut self, skip: &Skip) -> Flow {
        self.skips += 1;
        self.propensities_ok &= skip.propensity > 0.0 && skip.propensity <= 1.0;
        Flow::Continue
    }
}

#[test]
fn a_plan_mode_run_keeps_to_the_budget_and_moves_traffic_to_better_versions() {
    let world = load("flight-small");
    let flight = world.flight.as_ref().unwrap();
    let impressions = 60_000;
    let budget = flight.budget(impressions, &world.segment_probs);
    let design = world.design(
        Interactions::segment_only(world.space.components()),
        Objective::Value,
    );
    let policy = build_policy(PolicyChoice::FactorizedTs, &design, &default_settings(), 3);
    let mut platform = PlatformLearner::new(
        policy,
        &world,
        impressions,
        budget,
        PlatformRun::new(24.0, 6),
        3,
    );
    let config = RunConfig {
        pacing: Some(PacingRun {
            mode: PlatformLearner::PACING,
            budget,
            daily_cap: None,
            min_roas: None,
        }),
        ..RunConfig::new(impressions)
    };
    let days = flight.days;
    let mut observed = Days {
        bought: vec![0; days],
        value: vec![0.0; days],
        spend: vec![0.0; days],
        ..Days::default()
    };
    let mut streams = Streams::new(3, &world.segment_probs);
    online::run(&world, &mut streams, &mut platform, &config, &mut observed);
    assert!(observed.propensities_ok);
    assert_eq!(platform.plans(), days as u64, "one plan a day");
    let spend: f64 = observed.spend.iter().sum();
    assert!(spend <= budget * 1.001, "{spend} of {budget}");
    assert!(spend >= budget * 0.95, "{spend} of {budget}");
    assert!(
        observed.skips > 0,
        "the platform skips what the budget cannot buy"
    );
    // Every plan's shares sum to 1 with at most K ads, budgets to the period's.
    let plan = platform.plan().unwrap();
    for set in &plan.ad_sets {
        assert!(set.ads.len() <= 6);
        let sum: f64 = set.ads.iter().map(|a| a.share).sum();
        assert!((sum - 1.0).abs() < 1e-9);
    }
    // The first day runs the prior's plan; the last days the learned ones.
    let per_impression = |d: std::ops::Range<usize>| {
        d.clone().map(|i| observed.value[i]).sum::<f64>()
            / d.map(|i| observed.bought[i] as f64).sum::<f64>()
    };
    let first = per_impression(0..1);
    let last = per_impression(days - 3..days);
    assert!(
        last > 1.3 * first,
        "value per impression: day 1 {first}, last 3 days {last}"
    );
}

#[test]
fn the_platform_run_is_scored_like_any_run_and_is_repeatable() {
    let world = load("flight-small");
    let truth = Truth::new(&world);
    let impressions = 20_000;
    let budget = world
        .flight
        .as_ref()
        .unwrap()
        .budget(impressions, &world.segment_probs);
    let design = world.design(
        Interactions::segment_only(world.space.components()),
        Objective::Value,
    );
    let run = |seed: u64| {
        let policy = build_policy(
            PolicyChoice::FactorizedTs,
            &design,
            &default_settings(),
            seed,
        );
        let mut platform = PlatformLearner::new(
            policy,
            &world,
            impressions,
            budget,
            PlatformRun::new(4.0, 3),
            seed,
        );
        let config = SimConfig {
            pacing: Some(PacingRun {
                mode: PlatformLearner::PACING,
                budget,
                daily_cap: None,
                min_roas: None,
            }),
            ..SimConfig::new(impressions, seed)
        };
        let report = simulate_platform(&world, &truth, &mut platform, &config, |_| {});
        (report, platform.plans())
    };
    let (a, plans) = run(5);
    let (b, _) = run(5);
    let (sa, sb) = (a.budget.as_ref().unwrap(), b.budget.as_ref().unwrap());
    assert_eq!(
        sa.pct_of_budget_oracle, sb.pct_of_budget_oracle,
        "same seed, same run"
    );
    assert_eq!(plans, 6 * world.flight.as_ref().unwrap().days as u64);
    assert!(sa.pct_of_budget_oracle > 0.0 && sa.pct_of_budget_oracle < 100.0);
    assert_eq!(sa.pacing, "platform");
    assert!(sa.overspend_pct < 0.1, "{}", sa.overspend_pct);
}
