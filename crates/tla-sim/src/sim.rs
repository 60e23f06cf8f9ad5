//! The online loop: a segment arrives, the policy decides, the world answers, the
//! policy learns.
//!
//! Randomness is split into independent streams seeded from one seed: the segment of
//! each impression, the uniform draw of its conversion and the normal draw of its
//! donation come from three world streams that consume exactly one value per
//! impression, so every policy run with the same seed meets the same audience and the
//! same luck (common random numbers); the policy has a stream of its own.

use crate::world::World;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_pcg::Pcg64Mcg;
use std::time::Instant;
use tla_core::policy::{Outcome, Policy};

/// How to run a simulation.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Impressions to simulate.
    pub impressions: u64,
    /// Seed of every random stream.
    pub seed: u64,
    /// Impression counts at which the learning curve is recorded (the last impression
    /// is always recorded).
    pub checkpoints: Vec<u64>,
}

impl SimConfig {
    /// A run of `impressions` with the default checkpoints (1k, 10k, 50k, 100k, 200k,
    /// 500k, 1M, 2M, 5M, 10M, ... below `impressions`).
    pub fn new(impressions: u64, seed: u64) -> Self {
        let mut checkpoints = Vec::new();
        let mut decade = 1_000u64;
        while decade < impressions {
            for m in [1, 2, 5] {
                let c = decade * m;
                if c < impressions && !(decade == 1_000 && m != 1) && !(decade == 10_000 && m == 2)
                {
                    checkpoints.push(c);
                }
            }
            decade = decade.saturating_mul(10);
        }
        checkpoints.push(impressions);
        checkpoints.dedup();
        Self {
            impressions,
            seed,
            checkpoints,
        }
    }
}

/// One point of the learning curve.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Checkpoint {
    /// Impressions so far.
    pub impressions: u64,
    /// Cumulative % of oracle (expected) from the first impression.
    pub pct_of_oracle_expected: f64,
    /// % of oracle (expected) over the impressions since the previous checkpoint.
    pub window_pct_of_oracle_expected: f64,
}

/// What a simulation measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SimReport {
    /// World name.
    pub world: String,
    /// Policy name.
    pub policy: String,
    /// Impressions simulated.
    pub impressions: u64,
    /// Seed.
    pub seed: u64,
    /// `100 * sum EV(chosen) / sum EV(oracle)` over the same impressions.
    pub pct_of_oracle_expected: f64,
    /// `100 * sum donations drawn / sum EV(oracle)`.
    pub pct_of_oracle_realized: f64,
    /// The even split's expected value as % of oracle on the same impressions.
    pub uniform_pct_of_oracle_expected: f64,
    /// Conversions drawn.
    pub conversions: u64,
    /// Donations drawn, summed.
    pub value: f64,
    /// Expected value of the chosen versions, summed.
    pub expected_value: f64,
    /// Oracle's expected value on the same impressions, summed.
    pub oracle_expected_value: f64,
    /// Distinct versions served.
    pub versions_served: u64,
    /// Decision distributions rebuilt.
    pub refreshes: u64,
    /// Mean logged propensity.
    pub mean_propensity: f64,
    /// Smallest logged propensity.
    pub min_propensity: f64,
    /// Wall time of the loop, seconds (excludes oracle precomputation).
    pub seconds: f64,
    /// Impressions per second of the loop (decide + outcome + learn + refresh), one thread.
    pub impressions_per_second: f64,
    /// Bytes of model state at the end.
    pub model_bytes: usize,
    /// Learning curve.
    pub learning_curve: Vec<Checkpoint>,
}

/// Precomputed ground-truth summaries a run needs.
#[derive(Debug, Clone)]
pub struct Truth {
    /// Oracle expected value per segment.
    pub oracle: Vec<f64>,
    /// Even split expected value per segment.
    pub uniform: Vec<f64>,
    /// Cumulative segment probabilities.
    cumulative: Vec<f64>,
}

impl Truth {
    /// Enumerates the world once (O(versions x segments)).
    pub fn new(world: &World) -> Self {
        let mut acc = 0.0;
        let cumulative = world
            .segment_probs
            .iter()
            .map(|p| {
                acc += p;
                acc
            })
            .collect();
        Self {
            oracle: world.oracle().into_iter().map(|(_, ev)| ev).collect(),
            uniform: world.uniform_expected_value(),
            cumulative,
        }
    }

    #[inline]
    fn draw_segment(&self, u: f64) -> usize {
        let i = self.cumulative.partition_point(|&c| c <= u);
        i.min(self.cumulative.len() - 1)
    }
}

/// Runs `policy` online against `world`; `progress` is called with the impressions done
/// every 65,536 impressions.
pub fn simulate<P: Policy>(
    world: &World,
    truth: &Truth,
    policy: &mut P,
    config: &SimConfig,
    mut progress: impl FnMut(u64),
) -> SimReport {
    let mut segment_rng = Pcg64Mcg::seed_from_u64(config.seed);
    let mut conversion_rng = Pcg64Mcg::seed_from_u64(config.seed ^ 0x9E37_79B9_7F4A_7C15);
    let mut donation_rng = Pcg64Mcg::seed_from_u64(config.seed ^ 0xD1B5_4A32_D192_ED03);
    let mut policy_rng = Pcg64Mcg::seed_from_u64(config.seed ^ 0x94D0_49BB_1331_11EB);
    let sigma = world.sigma();
    let half_sigma2 = 0.5 * sigma * sigma;
    let mut options = vec![0u32; world.space.components()];
    let mut served = std::collections::HashSet::new();

    let (mut expected, mut oracle, mut uniform, mut value) = (0.0, 0.0, 0.0, 0.0);
    let (mut conversions, mut refreshes) = (0u64, 0u64);
    let (mut propensity_sum, mut min_propensity) = (0.0, f64::INFINITY);
    let mut curve = Vec::with_capacity(config.checkpoints.len());
    let (mut last_expected, mut last_oracle) = (0.0, 0.0);
    let mut next_checkpoint = config.checkpoints.iter().copied().peekable();

    let start = Instant::now();
    for t in 1..=config.impressions {
        let segment = truth.draw_segment(segment_rng.random::<f64>());
        let u: f64 = conversion_rng.random();
        let z: f64 = donation_rng.sample(StandardNormal);

        let decision = policy.decide(segment, &mut policy_rng);
        propensity_sum += decision.propensity;
        min_propensity = min_propensity.min(decision.propensity);
        served.insert(decision.version);

        world.space.decode_into(decision.version, &mut options);
        let p = world.conversion_probability(segment, &options);
        let log_mean = world.log_mean_amount(segment, options[world.value_component]);
        expected += p * log_mean.exp();
        oracle += truth.oracle[segment];
        uniform += truth.uniform[segment];
        let converted = u < p;
        let amount = if converted {
            conversions += 1;
            let amount = (log_mean - half_sigma2 + sigma * z).exp();
            value += amount;
            amount
        } else {
            0.0
        };
        policy.observe(&Outcome {
            segment,
            version: decision.version,
            clicked: converted,
            converted,
            value: amount,
        });
        refreshes += policy.refresh_due(&mut policy_rng, None) as u64;

        if next_checkpoint.peek() == Some(&t) {
            next_checkpoint.next();
            curve.push(Checkpoint {
                impressions: t,
                pct_of_oracle_expected: 100.0 * expected / oracle,
                window_pct_of_oracle_expected: 100.0 * (expected - last_expected)
                    / (oracle - last_oracle),
            });
            last_expected = expected;
            last_oracle = oracle;
        }
        if t % 65_536 == 0 {
            progress(t);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    progress(config.impressions);
    let n = config.impressions.max(1) as f64;
    SimReport {
        world: world.name.clone(),
        policy: policy.name().to_string(),
        impressions: config.impressions,
        seed: config.seed,
        pct_of_oracle_expected: 100.0 * expected / oracle,
        pct_of_oracle_realized: 100.0 * value / oracle,
        uniform_pct_of_oracle_expected: 100.0 * uniform / oracle,
        conversions,
        value,
        expected_value: expected,
        oracle_expected_value: oracle,
        versions_served: served.len() as u64,
        refreshes,
        mean_propensity: propensity_sum / n,
        min_propensity,
        seconds,
        impressions_per_second: config.impressions as f64 / seconds,
        model_bytes: policy.model_bytes(),
        learning_curve: curve,
    }
}
