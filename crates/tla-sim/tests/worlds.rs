//! World files are read exactly, and the simulator is deterministic and scores what it
//! claims to score.

use tla_core::design::{DEFAULT_EXACT_LIMIT, Interactions, Objective};
use tla_sim::sim::{SimConfig, Truth, simulate};
use tla_sim::world::World;
use tla_sim::{PolicyChoice, build_policy};

fn load(name: &str) -> World {
    let path = format!("{}/../../worlds/{name}.json", env!("CARGO_MANIFEST_DIR"));
    World::from_json(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn every_world_reproduces_its_checks_to_1e_9() {
    for name in ["small", "medium", "full"] {
        let world = load(name);
        assert_eq!(world.checks.len(), 16, "{name}");
        let worst = world.verify_checks().unwrap();
        assert!(worst < 1e-9, "{name}: worst relative error {worst:e}");
    }
}

#[test]
fn every_flight_world_reproduces_its_checks_and_checks_v2_to_1e_9() {
    for name in ["flight-small", "flight-full"] {
        let world = load(name);
        assert!(world.flight.is_some(), "{name}");
        assert_eq!(world.checks.len(), 16, "{name}");
        let checks = world.checks_v2.as_ref().expect("checks_v2");
        assert_eq!(
            (
                checks.times.len(),
                checks.truth.len(),
                checks.costs.len(),
                checks.budget.len()
            ),
            (16, 16, 8, 2),
            "{name}"
        );
        assert!(
            checks.truth.iter().any(|r| !r.available),
            "{name}: a row before a launch"
        );
        let worst = world.verify_checks().unwrap();
        assert!(
            worst < 1e-9,
            "{name}: checks, worst relative error {worst:e}"
        );
        let worst_v2 = world.verify_checks_v2().unwrap();
        println!("{name}: checks {worst:e}, checks_v2 {worst_v2:e} (worst relative error)");
        assert!(
            worst_v2 < 1e-9,
            "{name}: checks_v2, worst relative error {worst_v2:e}"
        );
    }
}

#[test]
fn a_flight_check_that_is_off_is_caught() {
    let text = std::fs::read_to_string(format!(
        "{}/../../worlds/flight-small.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let p = json["checks_v2"]["truth"][3]["p"].as_f64().unwrap();
    json["checks_v2"]["truth"][3]["p"] = serde_json::json!(p * (1.0 + 1e-6));
    let world = World::from_json(&json.to_string()).unwrap();
    assert!(world.verify_checks_v2().unwrap() > 1e-7);
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["checks_v2"]["times"][0]["hour"] = serde_json::json!(0);
    let world = World::from_json(&json.to_string()).unwrap();
    assert!(world.verify_checks_v2().is_err());
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["flight"]["drift"][0]["target"] = serde_json::json!("colour");
    let error = World::from_json(&json.to_string()).unwrap_err().to_string();
    assert!(error.contains("flight.drift[0].target"), "{error}");
    let v1 = text.replacen("tla-creative-world/v2", "tla-creative-world/v1", 1);
    let error = World::from_json(&v1).unwrap_err().to_string();
    assert!(error.contains("needs a flight object"), "{error}");
}

#[test]
fn the_even_split_matches_the_world_summary() {
    // worlds/README.md: the even split reaches 31.8% of the oracle on small.
    let world = load("small");
    let truth = Truth::new(&world);
    let oracle: f64 = truth
        .oracle
        .iter()
        .zip(&world.segment_probs)
        .map(|(o, p)| o * p)
        .sum();
    let uniform: f64 = truth
        .uniform
        .iter()
        .zip(&world.segment_probs)
        .map(|(u, p)| u * p)
        .sum();
    assert!((100.0 * uniform / oracle - 31.807_967_012_025_678).abs() < 1e-6);
}

#[test]
fn refuses_a_world_of_another_format_or_with_bad_lengths() {
    let text = std::fs::read_to_string(format!(
        "{}/../../worlds/small.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let other = text.replacen("tla-creative-world/v1", "tla-creative-world/v9", 1);
    let error = World::from_json(&other).unwrap_err().to_string();
    assert!(
        error.contains("accepts \"tla-creative-world/v1\""),
        "{error}"
    );
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["conversion"]["main_effects"]["image"] = serde_json::json!([0.1]);
    let error = World::from_json(&json.to_string()).unwrap_err().to_string();
    assert!(
        error.contains("main_effects.image has 1 values for 4 options"),
        "{error}"
    );
    assert!(World::from_json("{").is_err());
}

#[test]
fn simulation_is_deterministic_and_learns() {
    let world = load("small");
    let truth = Truth::new(&world);
    let design = world.design(
        Interactions::auto(&world.space, DEFAULT_EXACT_LIMIT),
        Objective::Value,
    );
    let run = |choice, seed| {
        let mut policy = build_policy(choice, &design, &tla_sim::default_settings(), seed);
        simulate(
            &world,
            &truth,
            &mut policy,
            &SimConfig::new(60_000, seed),
            |_| {},
        )
    };
    let a = run(PolicyChoice::FactorizedTs, 3);
    let b = run(PolicyChoice::FactorizedTs, 3);
    assert_eq!(a.expected_value.to_bits(), b.expected_value.to_bits());
    assert_eq!(a.conversions, b.conversions);
    let uniform = run(PolicyChoice::Uniform, 3);
    assert!(
        (uniform.pct_of_oracle_expected - 31.8).abs() < 1.0,
        "{}",
        uniform.pct_of_oracle_expected
    );
    // Same audience and luck: the oracle's value is identical across policies.
    assert_eq!(
        uniform.oracle_expected_value.to_bits(),
        a.oracle_expected_value.to_bits()
    );
    let last = a.learning_curve.last().unwrap();
    assert!(
        last.window_pct_of_oracle_expected > 70.0,
        "factorized TS should be well past the even split late in the run: {:?}",
        a.learning_curve
    );
    assert!(a.min_propensity > 0.0 && a.min_propensity <= 1.0);
}

#[test]
fn the_flight_oracle_is_the_best_version_that_exists_at_each_fraction() {
    let world = load("flight-small");
    let truth = Truth::new(&world);
    let flight = world.flight.as_ref().unwrap();
    let mut options = vec![0u32; world.space.components()];
    for f in [0.0, 0.3, 0.49, 0.5, 0.51, 0.7, 0.8, 0.999] {
        for s in 0..world.segments() {
            let mut best = f64::NEG_INFINITY;
            for version in 0..world.space.total() {
                world.space.decode_into(version, &mut options);
                if flight.available(&options, f) {
                    best = best.max(world.expected_value_at(s, &options, f));
                }
            }
            let got = truth.oracle_at(s, Some(f));
            assert!(
                (got - best).abs() <= 1e-12 * best,
                "f {f} segment {s}: {got} vs {best}"
            );
        }
    }
}

#[test]
fn before_its_launch_an_option_is_never_served_and_propensities_stay_exact() {
    use tla_sim::online::{Impression, Observer, RunConfig, Streams, run};
    struct Seen<'w>(&'w World, u64, u64, f64);
    impl<L> Observer<L> for Seen<'_> {
        fn impression(&mut self, i: &Impression) -> tla_sim::online::Flow {
            let f = i.flight_fraction.unwrap();
            let options = self.0.space.decode(i.decision.version);
            assert!(
                self.0.available_at(&options, f),
                "served {options:?} at {f}"
            );
            assert!(i.decision.propensity > 0.0 && i.decision.propensity <= 1.0 + 1e-12);
            if options[0] == 3 {
                self.1 += 1;
            } else {
                self.2 += 1;
            }
            self.3 = f;
            tla_sim::online::Flow::Continue
        }
    }
    let world = load("flight-small");
    let design = world.design(Interactions::segment_only(4), Objective::Value);
    assert_eq!(world.component_names[0], "headline");
    assert_eq!(
        world.flight.as_ref().unwrap().launch[0],
        [0.0, 0.0, 0.0, 0.5]
    );
    let mut policy = build_policy(
        PolicyChoice::FactorizedTs,
        &design,
        &tla_sim::default_settings(),
        1,
    );
    let mut seen = Seen(&world, 0, 0, 0.0);
    let served = run(
        &world,
        &mut Streams::new(3, &world.segment_probs),
        &mut policy,
        &RunConfig::new(4_000),
        &mut seen,
    );
    assert_eq!(served, 4_000);
    // Headline 3 launches at mid-flight; it is served after, never before.
    assert!(seen.1 > 0 && seen.2 > 0);
    assert!((seen.3 - 3_999.5 / 4_000.0).abs() < 1e-15);
}

#[test]
fn the_even_split_before_a_launch_draws_evenly_among_the_versions_that_exist() {
    use tla_sim::online::{Flow, Impression, Observer, RunConfig, Streams, run};
    struct Propensities(Vec<(f64, f64)>);
    impl<L> Observer<L> for Propensities {
        fn impression(&mut self, i: &Impression) -> Flow {
            self.0
                .push((i.flight_fraction.unwrap(), i.decision.propensity));
            Flow::Continue
        }
    }
    let world = load("flight-small");
    let design = world.design(Interactions::segment_only(4), Objective::Value);
    let mut policy = build_policy(
        PolicyChoice::Uniform,
        &design,
        &tla_sim::default_settings(),
        1,
    );
    let mut seen = Propensities(Vec::new());
    run(
        &world,
        &mut Streams::new(5, &world.segment_probs),
        &mut policy,
        &RunConfig::new(1_000),
        &mut seen,
    );
    // 256 versions, 64 of which hold headline 3 (launched at 0.5).
    for (f, p) in seen.0 {
        let want = if f < 0.5 { 1.0 / 192.0 } else { 1.0 / 256.0 };
        assert!(
            (p - want).abs() < 1e-12,
            "f {f}: propensity {p}, want {want}"
        );
    }
}

/// A budgeted run on a flight world: spend stays within the budget and every day's cap,
/// what is bought exists, every purchase and skip logs a propensity in (0, 1], and the
/// same seed gives the same run.
#[test]
fn a_budgeted_run_keeps_to_its_budget_and_its_daily_cap() {
    use tla_core::pacing::PacingMode;
    use tla_sim::online::{Flow, Impression, Observer, PacingRun, Skip};
    struct Check<'w>(&'w World, u64, u64);
    impl<L> Observer<L> for Check<'_> {
        fn impression(&mut self, i: &Impression) -> Flow {
            let f = i.flight_fraction.unwrap();
            let options = self.0.space.decode(i.decision.version);
            assert!(
                self.0.available_at(&options, f),
                "bought {options:?} at {f}"
            );
            assert!(i.decision.propensity > 0.0 && i.decision.propensity <= 1.0 + 1e-12);
            assert!(i.answer.cost > 0.0);
            self.1 += 1;
            Flow::Continue
        }
        fn skip(&mut self, s: &Skip) -> Flow {
            assert!(s.propensity > 0.0 && s.propensity <= 1.0 + 1e-12, "{s:?}");
            self.2 += 1;
            Flow::Continue
        }
    }
    let world = load("flight-small");
    let design = world.design(Interactions::segment_only(4), Objective::Value);
    let flight = world.flight.as_ref().unwrap();
    let impressions = 8_000;
    let budget = flight.budget(impressions, &world.segment_probs);
    let truth = Truth::new(&world);
    let run = |mode: PacingMode, daily_cap: Option<f64>| {
        let mut policy = build_policy(
            PolicyChoice::FactorizedTs,
            &design,
            &tla_sim::default_settings(),
            3,
        );
        let pacing = PacingRun {
            mode,
            budget,
            daily_cap,
            min_roas: None,
        };
        let config = SimConfig {
            pacing: Some(pacing),
            ..SimConfig::new(impressions, 3)
        };
        simulate(&world, &truth, &mut policy, &config, |_| {})
    };
    let mut value = None;
    for mode in PacingMode::ALL {
        let report = run(mode, None);
        if mode == PacingMode::Value {
            value = report.budget.clone();
        }
        if mode == PacingMode::None {
            let days = &report.budget.as_ref().unwrap().daily_spend;
            assert_eq!(
                days[13], 0.0,
                "none is out of money before the end: {days:?}"
            );
        }
        let score = report.budget.clone().expect("a budget score");
        assert_eq!(score.pacing, mode.as_str());
        assert!(
            score.spend <= budget,
            "{mode:?}: spent {} of {budget}",
            score.spend
        );
        assert_eq!(score.overspend_pct, 0.0);
        assert!(score.pct_of_budget_oracle > 0.0 && score.pct_of_budget_oracle < 100.0);
        assert_eq!(
            score.bought + score.skipped.values().sum::<u64>(),
            impressions
        );
        assert_eq!(
            report.learning_curve.last().unwrap().spend,
            Some(score.spend)
        );
    }
    // The price-of-money rule spends nearly all of it, and not all at once.
    let value = value.unwrap();
    assert!(value.underspend_pct < 5.0, "{}", value.underspend_pct);
    assert!(value.pacing_rmse_pct < 25.0, "{:?}", value.daily_spend);
    // A daily cap of a tenth of the budget holds every day.
    let capped = run(PacingMode::Value, Some(budget / 10.0)).budget.unwrap();
    for day in &capped.daily_spend {
        assert!(*day <= budget / 10.0, "{:?}", capped.daily_spend);
    }
    // Determinism.
    let again = run(PacingMode::Value, None).budget.unwrap();
    assert_eq!(again.spend, value.spend);
    assert_eq!(again.pct_of_budget_oracle, value.pct_of_budget_oracle);

    // Each purchase and skip of the loop itself.
    let mut policy = build_policy(
        PolicyChoice::FactorizedTs,
        &design,
        &tla_sim::default_settings(),
        4,
    );
    let mut check = Check(&world, 0, 0);
    let config = tla_sim::online::RunConfig {
        pacing: Some(PacingRun {
            mode: PacingMode::Value,
            budget,
            daily_cap: None,
            min_roas: Some(0.5),
        }),
        ..tla_sim::online::RunConfig::new(impressions)
    };
    tla_sim::online::run(
        &world,
        &mut tla_sim::online::Streams::new(4, &world.segment_probs),
        &mut policy,
        &config,
        &mut check,
    );
    assert!(
        check.1 > 500 && check.2 > 500,
        "bought {} skipped {}",
        check.1,
        check.2
    );
}
