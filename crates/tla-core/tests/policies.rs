//! Properties every policy must keep: propensities in (0, 1] that sum to 1 over the
//! allowed space and match the empirical frequencies of its decisions, and the same
//! seed giving the same decisions.

use proptest::prelude::*;
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;
use tla_core::availability::Availability;
use tla_core::design::{AskComponent, Design, Interactions, Objective};
use tla_core::policy::campaign::CampaignPolicySettings;
use tla_core::policy::factorized::{FactorizedSampler, FactorizedSettings};
use tla_core::policy::floor::ExplorationFloor;
use tla_core::policy::independent::IndependentSampler;
use tla_core::policy::thompson::{RefreshCadence, ThompsonPolicy, ThompsonSettings};
use tla_core::policy::uniform::Uniform;
use tla_core::policy::{
    Gate, Outcome, Policy, PricedPolicy, decide_gated, gated_mass, gated_propensity,
};
use tla_core::space::{Exclusion, OptionRef, VersionSpace};
use tla_core::stats::normal_quantile;

fn design(counts: Vec<u32>, exclusions: Vec<Exclusion>, segments: usize, pairs: bool) -> Design {
    let components = counts.len();
    let asks = (0..counts[components - 1])
        .map(|o| 5.0 * (o + 1) as f64)
        .collect();
    let mut interactions = Interactions::segment_only(components);
    if pairs {
        interactions = Interactions::all(components);
    }
    Design {
        component_names: (0..components).map(|k| format!("c{k}")).collect(),
        segment_names: (0..segments).map(|s| format!("s{s}")).collect(),
        space: VersionSpace::new(counts, exclusions).unwrap(),
        ask: Some(AskComponent {
            component: components - 1,
            amounts: asks,
        }),
        objective: Objective::Value,
        interactions,
    }
}

fn exclusion(a: (usize, u32), b: (usize, u32)) -> Exclusion {
    Exclusion {
        first: OptionRef {
            component: a.0,
            option: a.1,
        },
        second: OptionRef {
            component: b.0,
            option: b.1,
        },
    }
}

fn settings(draws: usize) -> ThompsonSettings {
    ThompsonSettings {
        draws,
        cadence: RefreshCadence {
            every_events: 50,
            every_millis: None,
        },
    }
}

/// Feeds `n` outcomes where option 0 of every component converts more often.
fn teach<P: Policy>(
    policy: &mut P,
    space: &VersionSpace,
    segments: usize,
    n: usize,
    rng: &mut Pcg64Mcg,
) {
    use rand::Rng;
    for i in 0..n {
        let segment = i % segments;
        let decision = policy.decide(segment, rng);
        let options = space.decode(decision.version);
        let rate = 0.02 + 0.05 * options.iter().filter(|&&o| o == 0).count() as f64;
        let converted = rng.random::<f64>() < rate;
        policy.observe(&Outcome {
            segment,
            version: decision.version,
            clicked: converted,
            converted,
            value: if converted { 10.0 } else { 0.0 },
        });
        policy.refresh_due(rng, None);
    }
}

/// `floor`: the least propensity the policy promises every allowed version (`1 / allowed`
/// for the even split, `epsilon / allowed` under the exploration floor, 0 without one).
fn check_propensities<P: Policy>(
    policy: &P,
    space: &VersionSpace,
    segments: usize,
    floor: f64,
) -> Result<(), TestCaseError> {
    for segment in 0..segments {
        let mut sum = 0.0;
        for version in 0..space.total() {
            let p = policy.propensity(segment, version);
            if space.is_allowed(version) {
                prop_assert!(
                    p >= floor * (1.0 - 1e-12),
                    "allowed version {} has {} < floor {}",
                    version,
                    p,
                    floor
                );
                sum += p;
            } else {
                prop_assert_eq!(p, 0.0, "excluded version {} has a propensity", version);
            }
            prop_assert!((0.0..=1.0).contains(&p));
        }
        prop_assert!(
            (sum - 1.0).abs() < 1e-9,
            "segment {} propensities sum to {}",
            segment,
            sum
        );
        let mut rng = Pcg64Mcg::seed_from_u64(segment as u64);
        for _ in 0..200 {
            let d = policy.decide(segment, &mut rng);
            prop_assert!(d.propensity > 0.0 && d.propensity <= 1.0);
            prop_assert!((d.propensity - policy.propensity(segment, d.version)).abs() < 1e-15);
            prop_assert!(space.is_allowed(d.version));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn propensities_are_valid_for_every_policy(
        counts in prop::collection::vec(1u32..4, 2..4),
        segments in 1usize..3,
        seed in 0u64..1000,
        epsilon in prop::sample::select(vec![0.0, 0.05, 0.3]),
        pairs in any::<bool>(),
        exclude in any::<bool>(),
    ) {
        let mut exclusions = Vec::new();
        if exclude && counts[0] > 1 && counts[1] > 1 {
            exclusions.push(exclusion((0, 0), (1, 1)));
        }
        let design = design(counts, exclusions, segments, pairs);
        let space = design.space.clone();
        let mut rng = Pcg64Mcg::seed_from_u64(seed);

        let uniform = Uniform::new(space.clone());
        let allowed = space.allowed_count() as f64;
        check_propensities(&uniform, &space, segments, 1.0 / allowed)?;

        // The campaign policy through its one constructor, and the same stack around
        // the independent baseline's sampler.
        let campaign = CampaignPolicySettings {
            draws: 16,
            cadence: settings(16).cadence,
            exploration: epsilon,
            ..CampaignPolicySettings::default()
        };
        let mut factorized = campaign.build(&design, &mut rng);
        prop_assert_eq!(factorized.epsilon(), epsilon);
        teach(&mut factorized, &space, segments, 300, &mut rng);
        check_propensities(&factorized, &space, segments, epsilon / allowed)?;

        let sampler = IndependentSampler::new(&design, 0.05);
        let mut independent = campaign.wrap(sampler, space.clone(), &mut rng);
        teach(&mut independent, &space, segments, 300, &mut rng);
        check_propensities(&independent, &space, segments, epsilon / allowed)?;
    }
}

/// Under every kind of gate, the skip and the versions have propensities in [0, 1] that
/// sum to 1, every gated decision logs the propensity its outcome has, and the mass of
/// a set of versions is the sum of theirs.
fn check_gated<P: PricedPolicy>(
    policy: &P,
    space: &VersionSpace,
    segments: usize,
    gate: Gate,
) -> Result<(), TestCaseError> {
    for segment in 0..segments {
        let mut sum = gated_propensity(policy, segment, None, gate);
        let mut even = 0.0;
        for version in 0..space.total() {
            let p = gated_propensity(policy, segment, Some(version), gate);
            prop_assert!((0.0..=1.0).contains(&p));
            if !space.is_allowed(version) {
                prop_assert_eq!(p, 0.0);
            }
            if version % 2 == 0 {
                even += p;
            }
            sum += p;
        }
        prop_assert!(
            (sum - 1.0).abs() < 1e-9,
            "segment {} under {:?} sums to {}",
            segment,
            gate,
            sum
        );
        let even_allowed = (0..space.total())
            .filter(|v| v % 2 == 0 && space.is_allowed(*v))
            .count() as u64;
        let mass = gated_mass(policy, segment, gate, &|v| v % 2 == 0, even_allowed);
        prop_assert!((mass - even).abs() < 1e-9, "mass {} vs {}", mass, even);
        let mut rng = Pcg64Mcg::seed_from_u64(segment as u64 + 100);
        for _ in 0..200 {
            let c = decide_gated(policy, segment, gate, &mut rng);
            prop_assert!(c.propensity > 0.0 && c.propensity <= 1.0);
            let want = gated_propensity(policy, segment, c.version, gate);
            prop_assert!(
                (c.propensity - want).abs() < 1e-15,
                "{:?}: {} vs {}",
                c,
                c.propensity,
                want
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn gated_propensities_are_exact_for_every_gate(
        counts in prop::collection::vec(1u32..4, 2..4),
        segments in 1usize..3,
        seed in 0u64..1000,
        epsilon in prop::sample::select(vec![0.0, 0.05, 0.3]),
        price in prop::sample::select(vec![0.0, 0.2, 0.5, 1.0, 5.0]),
        buy in 0.0f64..1.0,
    ) {
        let design = design(counts, Vec::new(), segments, false);
        let space = design.space.clone();
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        let campaign = CampaignPolicySettings {
            draws: 16,
            cadence: settings(16).cadence,
            exploration: epsilon,
            ..CampaignPolicySettings::default()
        };
        let mut policy = campaign.build(&design, &mut rng);
        teach(&mut policy, &space, segments, 300, &mut rng);
        for gate in [Gate::Open, Gate::Price(price), Gate::Throttle(buy), Gate::Closed] {
            check_gated(&policy, &space, segments, gate)?;
        }
        check_gated(&Uniform::new(space.clone()), &space, segments, Gate::Price(price))?;
    }
}

/// Upper quantile of the chi-square distribution (Wilson-Hilferty).
fn chi_square_quantile(df: f64, p: f64) -> f64 {
    let z = normal_quantile(p);
    let h = 2.0 / (9.0 * df);
    df * (1.0 - h + z * h.sqrt()).powi(3)
}

#[test]
fn decision_frequencies_match_propensities() {
    let design = design(vec![3, 2, 4], vec![exclusion((0, 2), (2, 3))], 2, true);
    let space = design.space.clone();
    let mut rng = Pcg64Mcg::seed_from_u64(11);
    let sampler = FactorizedSampler::new(&design, FactorizedSettings::default());
    let mut policy = ExplorationFloor::new(
        ThompsonPolicy::new(sampler, settings(32), &mut rng),
        space.clone(),
        0.2,
    );
    teach(&mut policy, &space, 2, 2_000, &mut rng);
    let n = 200_000u64;
    for segment in 0..2 {
        let mut counts = vec![0u64; space.total() as usize];
        for _ in 0..n {
            counts[policy.decide(segment, &mut rng).version as usize] += 1;
        }
        let mut statistic = 0.0;
        let mut cells = 0;
        for version in 0..space.total() {
            let p = policy.propensity(segment, version);
            if p == 0.0 {
                assert_eq!(counts[version as usize], 0);
                continue;
            }
            let expected = p * n as f64;
            statistic += (counts[version as usize] as f64 - expected).powi(2) / expected;
            cells += 1;
        }
        let critical = chi_square_quantile((cells - 1) as f64, 0.999);
        assert!(
            statistic < critical,
            "segment {segment}: chi-square {statistic:.1} over {cells} cells exceeds {critical:.1}"
        );
    }
}

#[test]
fn priced_decision_frequencies_match_propensities() {
    let design = design(vec![3, 2, 4], vec![exclusion((0, 2), (2, 3))], 2, true);
    let space = design.space.clone();
    let mut rng = Pcg64Mcg::seed_from_u64(12);
    let sampler = FactorizedSampler::new(&design, FactorizedSettings::default());
    let mut policy = ExplorationFloor::new(
        ThompsonPolicy::new(sampler, settings(32), &mut rng),
        space.clone(),
        0.2,
    );
    teach(&mut policy, &space, 2, 2_000, &mut rng);
    let n = 200_000u64;
    for segment in 0..2 {
        // A price that skips some of the draws and keeps others.
        let skip_half = (1..200)
            .map(|i| i as f64 * 0.01)
            .min_by(|a, b| {
                let d = |p: f64| (policy.skip_probability(segment, p) - 0.5).abs();
                d(*a).total_cmp(&d(*b))
            })
            .unwrap();
        let gate = Gate::Price(skip_half);
        let skip = gated_propensity(&policy, segment, None, gate);
        assert!(skip > 0.1 && skip < 0.9, "{skip}");
        // Cell `total` is the skip.
        let mut counts = vec![0u64; space.total() as usize + 1];
        for _ in 0..n {
            let c = decide_gated(&policy, segment, gate, &mut rng);
            counts[c.version.map_or(space.total() as usize, |v| v as usize)] += 1;
        }
        let mut statistic = 0.0;
        let mut cells = 0;
        for cell in 0..=space.total() {
            let version = (cell < space.total()).then_some(cell);
            let p = gated_propensity(&policy, segment, version, gate);
            if p == 0.0 {
                assert_eq!(counts[cell as usize], 0);
                continue;
            }
            let expected = p * n as f64;
            statistic += (counts[cell as usize] as f64 - expected).powi(2) / expected;
            cells += 1;
        }
        let critical = chi_square_quantile((cells - 1) as f64, 0.999);
        assert!(
            statistic < critical,
            "segment {segment}: chi-square {statistic:.1} over {cells} cells exceeds {critical:.1}"
        );
    }
}

#[test]
fn the_same_seed_gives_the_same_decisions() {
    let run = |seed: u64| {
        let design = design(vec![4, 3, 5], Vec::new(), 3, false);
        let space = design.space.clone();
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        let sampler = FactorizedSampler::new(&design, FactorizedSettings::default());
        let mut policy = ExplorationFloor::new(
            ThompsonPolicy::new(sampler, settings(16), &mut rng),
            space.clone(),
            0.05,
        );
        teach(&mut policy, &space, 3, 1_000, &mut rng);
        (0..500)
            .map(|i| policy.decide(i % 3, &mut rng))
            .map(|d| (d.version, d.propensity.to_bits()))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));

    let run_independent = |seed: u64| {
        let design = design(vec![4, 3, 5], Vec::new(), 3, false);
        let space = design.space.clone();
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        let sampler = IndependentSampler::new(&design, 0.05);
        let mut policy = ExplorationFloor::new(
            ThompsonPolicy::new(sampler, settings(16), &mut rng),
            space.clone(),
            0.05,
        );
        teach(&mut policy, &space, 3, 1_000, &mut rng);
        (0..500)
            .map(|i| policy.decide(i % 3, &mut rng))
            .map(|d| (d.version, d.propensity.to_bits()))
            .collect::<Vec<_>>()
    };
    // Two instances in one process: a per-instance random hasher would break this.
    assert_eq!(run_independent(5), run_independent(5));
}

#[test]
fn factorized_sampler_learns_the_better_options() {
    let design = design(vec![3, 3, 2], Vec::new(), 2, false);
    let space = design.space.clone();
    let mut rng = Pcg64Mcg::seed_from_u64(3);
    let sampler = FactorizedSampler::new(&design, FactorizedSettings::default());
    let mut policy = ThompsonPolicy::new(sampler, settings(32), &mut rng);
    teach(&mut policy, &space, 2, 20_000, &mut rng);
    // Same ask (last component), option 0 elsewhere must beat the other options.
    let best = space.encode(&[0, 0, 1]);
    for segment in 0..2 {
        for o0 in 0..3 {
            for o1 in 0..3 {
                let other = space.encode(&[o0, o1, 1]);
                if other != best {
                    assert!(
                        policy.sampler().expected_objective(segment, best)
                            > policy.sampler().expected_objective(segment, other),
                        "segment {segment}: {best} should beat {other}"
                    );
                }
            }
        }
    }
    // And most traffic ends up on version `[0, 0, *]`.
    let mut on_best = 0;
    for _ in 0..1_000 {
        let v = policy.decide(0, &mut rng).version;
        on_best += usize::from(space.option_of(v, 0) == 0 && space.option_of(v, 1) == 0);
    }
    assert!(
        on_best > 700,
        "{on_best} of 1000 decisions on the best options"
    );
}

/// Propensities over the versions available to each segment: in (0, 1], at least the
/// floor's share, summing to 1 (with the skip, under a price); 0 for every other
/// version; and no decision, plain or gated, returns a version not available.
fn check_available<P: PricedPolicy>(
    policy: &P,
    space: &VersionSpace,
    availability: &Availability,
    epsilon: f64,
    price: f64,
) -> Result<(), TestCaseError> {
    for segment in 0..availability.segments() {
        let floor = epsilon / availability.count(segment) as f64;
        let mut sum = 0.0;
        let mut priced = policy.skip_probability(segment, price);
        for version in 0..space.total() {
            let p = policy.propensity(segment, version);
            let q = policy.propensity_priced(segment, version, price);
            if availability.is_available(space, segment, version) {
                prop_assert!(
                    p >= floor * (1.0 - 1e-12) && p <= 1.0,
                    "{} has {}",
                    version,
                    p
                );
            } else {
                prop_assert_eq!(p, 0.0, "unavailable version {} has a propensity", version);
                prop_assert_eq!(
                    q,
                    0.0,
                    "unavailable version {} has a priced propensity",
                    version
                );
            }
            sum += p;
            priced += q;
        }
        prop_assert!(
            (sum - 1.0).abs() < 1e-9,
            "segment {} sums to {}",
            segment,
            sum
        );
        prop_assert!(
            (priced - 1.0).abs() < 1e-9,
            "segment {} priced sums to {}",
            segment,
            priced
        );
        let mut rng = Pcg64Mcg::seed_from_u64(segment as u64 + 7);
        for _ in 0..300 {
            let d = policy.decide(segment, &mut rng);
            prop_assert!(availability.is_available(space, segment, d.version));
            prop_assert!((d.propensity - policy.propensity(segment, d.version)).abs() < 1e-15);
            let c = policy.decide_priced(segment, price, &mut rng);
            if let Some(v) = c.version {
                prop_assert!(availability.is_available(space, segment, v));
            }
            prop_assert!(
                (c.propensity - gated_propensity(policy, segment, c.version, Gate::Price(price)))
                    .abs()
                    < 1e-15
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn retired_options_and_pins_keep_propensities_exact(
        counts in prop::collection::vec(2u32..4, 2..4),
        segments in 1usize..3,
        seed in 0u64..1000,
        epsilon in prop::sample::select(vec![0.0, 0.05, 0.3]),
        price in prop::sample::select(vec![0.0, 0.2, 1.0]),
        pairs in any::<bool>(),
        exclude in any::<bool>(),
        ascent in any::<bool>(),
        pinned_option in 0u32..2,
    ) {
        let mut exclusions = Vec::new();
        if exclude {
            exclusions.push(exclusion((0, 0), (1, 1)));
        }
        let design = design(counts.clone(), exclusions, segments, pairs);
        let space = design.space.clone();
        // The last option of component 0 is retired everywhere; segment 0 pins component
        // 1 (and, with three components, the ask component too).
        let mut keep: Vec<Vec<Vec<bool>>> = (0..segments)
            .map(|_| counts.iter().map(|&n| vec![true; n as usize]).collect())
            .collect();
        for rule in &mut keep {
            rule[0][counts[0] as usize - 1] = false;
        }
        for (o, kept) in keep[0][1].iter_mut().enumerate() {
            *kept = o as u32 == pinned_option;
        }
        if counts.len() == 3 {
            for (o, kept) in keep[0][2].iter_mut().enumerate() {
                *kept = o == 1;
            }
        }
        let Ok(availability) = Availability::new(&space, keep) else {
            return Err(TestCaseError::reject("no version left"));
        };
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        let campaign = CampaignPolicySettings {
            draws: 16,
            cadence: settings(16).cadence,
            exploration: epsilon,
            factorized: FactorizedSettings {
                exact_limit: if ascent { 1 } else { FactorizedSettings::default().exact_limit },
                ..FactorizedSettings::default()
            },
        };
        let mut policy = campaign.build_available(&design, &availability, &mut rng);
        teach(&mut policy, &space, segments, 300, &mut rng);
        check_available(&policy, &space, &availability, epsilon, price)?;
    }
}
