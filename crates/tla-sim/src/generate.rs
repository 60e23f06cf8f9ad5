//! Ground truths drawn for any campaign design, and what they say about it.
//!
//! [`world_for`] draws a [`World`] shaped like the presets of `worlds/world.py` for a
//! design the simulator did not ship a world for (the demo campaign, a team's own spec):
//! base conversion rate 1.6%, segment effects, centred main effects per component, the
//! ask component trading conversions for larger gifts, sparse interactions, log-normal
//! donations. The same design, shares and seed always give the same world.
//!
//! [`segment_truths`] finds, per segment, the best allowed version and its expected
//! value, and the expected value of the even split over the allowed versions, exactly
//! and without evaluating every version the slow way: the world's log-odds are a sum of
//! per-option terms and pairwise terms, so components that share no interaction and no
//! exclusion with others are maximized on their own. It respects the design's
//! exclusions (which [`World::oracle`] does not see).

use crate::world::{FORMAT, World};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal, StandardNormal};
use rand_pcg::Pcg64Mcg;
use serde_json::{Value, json};
use tla_core::design::Design;

/// Conversion rate of an average version in an average segment.
pub const BASE_RATE: f64 = 0.016;
/// Standard deviation of the segment effects on the log-odds of conversion.
pub const SEGMENT_SCALE: f64 = 0.3;
/// Standard deviation of the main effects of the first two components.
pub const LEAD_MAIN_SCALE: f64 = 0.22;
/// Standard deviation of the main effects of the other components.
pub const MAIN_SCALE: f64 = 0.12;
/// The ask at which an ask has no effect of its own.
pub const ASK_REFERENCE: f64 = 20.0;
/// Log-odds of conversion lost per unit of `log(ask / 20)`.
pub const ASK_CONVERSION_ELASTICITY: f64 = 0.2;
/// Log mean donation gained per unit of `log(ask / 20)`.
pub const ASK_VALUE_ELASTICITY: f64 = 0.6;
/// Mean donation of an average donor at the reference ask.
pub const VALUE_MEAN_BASE: f64 = 30.0;
/// Log-normal shape of donations.
pub const VALUE_SIGMA: f64 = 0.9;
/// Standard deviation of the segment effects on the log mean donation.
pub const VALUE_SEGMENT_LOG_SCALE: f64 = 0.3;

/// A sparse interaction block: which pair, how dense, how strong.
#[derive(Debug, Clone, Copy)]
struct Block {
    density: f64,
    scale: f64,
}

/// The first two components with each other.
const LEAD_PAIR: Block = Block {
    density: 0.10,
    scale: 0.35,
};
/// The ask component with the segment.
const ASK_BY_SEGMENT: Block = Block {
    density: 0.25,
    scale: 0.3,
};
/// The first component with the segment.
const LEAD_BY_SEGMENT: Block = Block {
    density: 0.10,
    scale: 0.3,
};

/// The world drawn for a design, as a `tla-creative-world/v1` document (without
/// `checks`). `segment_shares` are the traffic shares of the design's segments (the
/// even split when their number does not match or they do not sum to a positive
/// number). Without an ask component, the first component stands as the value
/// component with a neutral ask of 20 on every option, so donations depend on the
/// segment only.
pub fn world_json_for(design: &Design, segment_shares: &[f64], seed: u64) -> Value {
    let mut rng = Pcg64Mcg::seed_from_u64(seed ^ 0x7E57_1EA2_2024_0001);
    let segments = design.segments();
    let counts: Vec<usize> = design
        .space
        .option_counts()
        .iter()
        .map(|&n| n as usize)
        .collect();
    let components = counts.len();
    // World files use "segment" for the pseudo-component; a component of that name is
    // renamed in the world (names there are only labels).
    let names: Vec<String> = design
        .component_names
        .iter()
        .enumerate()
        .map(|(k, name)| {
            if name == "segment" {
                format!("segment#{k}")
            } else {
                name.clone()
            }
        })
        .collect();
    let shares_ok = segment_shares.len() == segments
        && segment_shares.iter().all(|p| p.is_finite() && *p >= 0.0)
        && segment_shares.iter().sum::<f64>() > 0.0;
    let probs: Vec<f64> = if shares_ok {
        segment_shares.to_vec()
    } else {
        vec![1.0; segments]
    };

    let normal = |scale: f64| Normal::new(0.0, scale).expect("finite positive scale");
    let segment_effect: Vec<f64> = (0..segments)
        .map(|_| normal(SEGMENT_SCALE).sample(&mut rng))
        .collect();
    let mut main: Vec<Vec<f64>> = counts
        .iter()
        .enumerate()
        .map(|(k, &n)| {
            let scale = if k < 2 { LEAD_MAIN_SCALE } else { MAIN_SCALE };
            let effects: Vec<f64> = (0..n).map(|_| normal(scale).sample(&mut rng)).collect();
            let mean = effects.iter().sum::<f64>() / n as f64;
            effects.into_iter().map(|e| e - mean).collect()
        })
        .collect();

    let (value_component, asks) = match &design.ask {
        Some(ask) => (ask.component, ask.amounts.clone()),
        None => (0, vec![ASK_REFERENCE; counts[0]]),
    };
    let log_ask: Vec<f64> = asks.iter().map(|a| (a / ASK_REFERENCE).ln()).collect();
    for (effect, l) in main[value_component].iter_mut().zip(&log_ask) {
        *effect -= ASK_CONVERSION_ELASTICITY * l;
    }
    let option_log_effect: Vec<f64> = log_ask.iter().map(|l| ASK_VALUE_ELASTICITY * l).collect();

    let mut interactions = Vec::new();
    let mut block = |a: &str, na: usize, b: &str, nb: usize, spec: Block| {
        let scale = normal(spec.scale);
        let mut terms = Vec::new();
        for i in 0..na {
            for j in 0..nb {
                let hit = rng.random::<f64>() < spec.density;
                let w = scale.sample(&mut rng);
                if hit {
                    terms.push(json!([i, j, w]));
                }
            }
        }
        interactions.push(json!({"between": [a, b], "terms": terms}));
    };
    if components >= 2 {
        block(&names[0], counts[0], &names[1], counts[1], LEAD_PAIR);
    }
    if design.ask.is_some() {
        block(
            &names[value_component],
            counts[value_component],
            "segment",
            segments,
            ASK_BY_SEGMENT,
        );
    }
    block(&names[0], counts[0], "segment", segments, LEAD_BY_SEGMENT);

    let value_segment: Vec<f64> = (0..segments)
        .map(|_| normal(VALUE_SEGMENT_LOG_SCALE).sample(&mut rng))
        .collect();
    let main_effects: serde_json::Map<String, Value> = names
        .iter()
        .zip(&main)
        .map(|(name, effects)| (name.clone(), json!(effects)))
        .collect();
    json!({
        "format": FORMAT,
        "name": format!("generated for {} components, {segments} segments (seed {seed})", components),
        "segments": {"count": segments, "names": design.segment_names, "probs": probs},
        "components": names.iter().zip(&counts)
            .map(|(name, n)| json!({"name": name, "options": n}))
            .collect::<Vec<_>>(),
        "conversion": {
            "link": "logistic",
            "base": (BASE_RATE / (1.0 - BASE_RATE)).ln(),
            "segment_effect": segment_effect,
            "main_effects": main_effects,
            "interactions": interactions,
        },
        "value": {
            "distribution": "lognormal",
            "sigma": VALUE_SIGMA,
            "log_mean_base": VALUE_MEAN_BASE.ln(),
            "segment_log_effect": value_segment,
            "component": names[value_component],
            "asks": asks,
            "option_log_effect": option_log_effect,
        },
    })
}

/// A ground truth for any campaign design (see [`world_json_for`]); its version space
/// is the design's, exclusions included.
///
/// # Panics
/// If the design is inconsistent (a design from a validated spec never is).
pub fn world_for(design: &Design, segment_shares: &[f64], seed: u64) -> World {
    let text = world_json_for(design, segment_shares, seed).to_string();
    let mut world = World::from_json(&text).expect("a generated world compiles");
    world.space = design.space.clone();
    world
}

/// Draws what one impression leads to: `Some(donation)` when it converts.
pub fn draw_outcome<R: Rng + ?Sized>(
    world: &World,
    segment: usize,
    options: &[u32],
    rng: &mut R,
) -> Option<f64> {
    let p = world.conversion_probability(segment, options);
    if rng.random::<f64>() >= p {
        return None;
    }
    let sigma = world.sigma();
    let log_mean = world.log_mean_amount(segment, options[world.value_component]);
    let z: f64 = rng.sample(StandardNormal);
    Some((log_mean - 0.5 * sigma * sigma + sigma * z).exp())
}

/// What the truth says about one segment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentTruth {
    /// The allowed version with the highest expected value per impression.
    pub best_version: u64,
    /// Its expected value per impression (the oracle's).
    pub best_value: f64,
    /// Expected value per impression of the even split over the allowed versions.
    pub even_value: f64,
}

/// The oracle's and the even split's expected value per impression over a whole
/// audience: each segment's [`SegmentTruth`] weighted by its traffic share.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AudienceTruth {
    /// `sum_s share(s) · best_value(s)`: what the oracle earns per impression.
    pub oracle_value: f64,
    /// `sum_s share(s) · even_value(s)`: what the even split earns per impression.
    pub even_value: f64,
}

impl AudienceTruth {
    /// Weighs `truths` (one per segment, as [`segment_truths`] gives them) by
    /// `shares`, the segments' traffic shares in the same order (a campaign's
    /// `segment_shares`, which sum to 1). A segment without a share counts for nothing.
    pub fn weigh(truths: &[SegmentTruth], shares: &[f64]) -> Self {
        let weigh = |value: fn(&SegmentTruth) -> f64| -> f64 {
            truths
                .iter()
                .zip(shares)
                .map(|(truth, share)| value(truth) * share)
                .sum()
        };
        Self {
            oracle_value: weigh(|t| t.best_value),
            even_value: weigh(|t| t.even_value),
        }
    }
}

/// Sums over served impressions of the true expected value of the versions served, of
/// their segments' oracle and of their segments' even split: how close serving comes to
/// the oracle, and how far the even split stays from it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ValueTally {
    /// Impressions tallied.
    pub impressions: u64,
    /// Sum of the true expected value of each version served.
    pub served_value: f64,
    /// Sum of the segment oracle's expected value, one per impression.
    pub oracle_value: f64,
    /// Sum of the segment's even-split expected value, one per impression.
    pub even_value: f64,
}

impl ValueTally {
    /// Adds `impressions` impressions of the segment `truth` describes, the versions
    /// served to them worth `served_value` in all (the sum of their true expected
    /// values).
    pub fn add(&mut self, truth: &SegmentTruth, impressions: u64, served_value: f64) {
        self.impressions += impressions;
        self.served_value += served_value;
        self.oracle_value += impressions as f64 * truth.best_value;
        self.even_value += impressions as f64 * truth.even_value;
    }

    /// The served versions' share of the oracle's value; `None` before any impression
    /// or while the oracle's value is not positive.
    pub fn oracle_share(&self) -> Option<f64> {
        self.of_oracle(self.served_value)
    }

    /// The even split's share of the oracle's value, on the same impressions; `None`
    /// as for [`ValueTally::oracle_share`].
    pub fn even_share(&self) -> Option<f64> {
        self.of_oracle(self.even_value)
    }

    fn of_oracle(&self, value: f64) -> Option<f64> {
        (self.impressions > 0 && self.oracle_value > 0.0).then(|| value / self.oracle_value)
    }
}

/// The oracle and the even split of every segment, over the allowed versions of the
/// world's space, on every available core.
pub fn segment_truths(world: &World) -> Vec<SegmentTruth> {
    per_segment(world, |s| segment_truth(world, s))
}

/// `f(segment)` for every segment of `world`, in segment order, spread over every
/// available core.
fn per_segment<T: Send>(world: &World, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let segments = world.segments();
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, segments.max(1));
    let mut out: Vec<Option<T>> = (0..segments).map(|_| None).collect();
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (t..segments)
                        .step_by(threads)
                        .map(|s| (s, f(s)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for handle in handles {
            for (s, value) in handle.join().expect("a segment's thread panicked") {
                out[s] = Some(value);
            }
        }
    });
    out.into_iter()
        .map(|t| t.expect("every segment computed"))
        .collect()
}

/// One segment's truth. The log-odds are recovered from the world by probing: with
/// `c0` the log-odds of the all-zero version, `u_k(o)` the change from setting
/// component `k` alone to `o`, and `r_ab(i, j)` what setting `a` and `b` together adds
/// beyond that, `logit = c0 + sum_k u_k(o_k) + sum_{a<b} r_ab(o_a, o_b)` holds exactly
/// for the world format (per-option and pairwise terms only). Components in no pair
/// with a nonzero `r`, in no exclusion, and not carrying the value are "free": the
/// joint options of the others are enumerated, and the free ones are handled as the
/// list of their summed terms (even split) or their best terms (oracle).
fn segment_truth(world: &World, s: usize) -> SegmentTruth {
    let space = &world.space;
    let counts: Vec<usize> = space.option_counts().iter().map(|&n| n as usize).collect();
    let k_count = counts.len();
    let mut probe = vec![0u32; k_count];
    let c0 = world.logit(s, &probe);
    let unary: Vec<Vec<f64>> = (0..k_count)
        .map(|k| {
            (0..counts[k])
                .map(|o| {
                    probe[k] = o as u32;
                    let u = world.logit(s, &probe) - c0;
                    probe[k] = 0;
                    u
                })
                .collect()
        })
        .collect();
    let mut pairs: Vec<(usize, usize, Vec<f64>)> = Vec::new();
    for a in 0..k_count {
        for b in a + 1..k_count {
            let mut table = vec![0.0; counts[a] * counts[b]];
            let mut any = false;
            for i in 0..counts[a] {
                for j in 0..counts[b] {
                    probe[a] = i as u32;
                    probe[b] = j as u32;
                    let r = world.logit(s, &probe) - c0 - unary[a][i] - unary[b][j];
                    if r.abs() > 1e-12 {
                        any = true;
                    }
                    table[i * counts[b] + j] = r;
                }
            }
            probe[a] = 0;
            probe[b] = 0;
            if any {
                pairs.push((a, b, table));
            }
        }
    }

    let mut coupled = vec![false; k_count];
    coupled[world.value_component] = true;
    for (a, b, _) in &pairs {
        coupled[*a] = true;
        coupled[*b] = true;
    }
    for e in space.exclusions() {
        coupled[e.first.component] = true;
        coupled[e.second.component] = true;
    }
    let joint: Vec<usize> = (0..k_count).filter(|&k| coupled[k]).collect();
    let free: Vec<usize> = (0..k_count).filter(|&k| !coupled[k]).collect();

    // Free components: every sum of their terms (even split), and their best options.
    let mut free_sums = vec![0.0];
    for &k in &free {
        free_sums = free_sums
            .iter()
            .flat_map(|base| unary[k].iter().map(move |u| base + u))
            .collect();
    }
    let mut best_options = vec![0u32; k_count];
    let mut free_best = 0.0;
    for &k in &free {
        let (o, u) = unary[k]
            .iter()
            .enumerate()
            .fold(
                (0, f64::NEG_INFINITY),
                |acc, (o, &u)| {
                    if u > acc.1 { (o, u) } else { acc }
                },
            );
        best_options[k] = o as u32;
        free_best += u;
    }

    // Enumerate the joint options of the coupled components (odometer).
    let mut options = vec![0u32; k_count];
    let mut best_value = f64::NEG_INFINITY;
    let mut best_joint = options.clone();
    let (mut even_sum, mut allowed) = (0.0, 0u64);
    loop {
        if space.is_allowed_options(&options) {
            let mut logit = c0;
            for &k in &joint {
                logit += unary[k][options[k] as usize];
            }
            for (a, b, table) in &pairs {
                logit += table[options[*a] as usize * counts[*b] + options[*b] as usize];
            }
            let mean = world
                .log_mean_amount(s, options[world.value_component])
                .exp();
            let value = tla_core::stats::logistic(logit + free_best) * mean;
            if value > best_value {
                best_value = value;
                best_joint.clone_from(&options);
            }
            let p: f64 = free_sums
                .iter()
                .map(|f| tla_core::stats::logistic(logit + f))
                .sum();
            even_sum += p * mean;
            allowed += free_sums.len() as u64;
        }
        // Next joint combination; free components stay at option 0.
        let mut carry = true;
        for &k in joint.iter().rev() {
            options[k] += 1;
            if (options[k] as usize) < counts[k] {
                carry = false;
                break;
            }
            options[k] = 0;
        }
        if carry {
            break;
        }
    }
    for &k in &joint {
        best_options[k] = best_joint[k];
    }
    SegmentTruth {
        best_version: space.encode(&best_options),
        best_value,
        even_value: even_sum / allowed.max(1) as f64,
    }
}

/// What the truth says about one option of one component, under the even split of the
/// other components: the mean over the allowed versions carrying the option, averaged
/// over segments with the world's traffic shares.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct OptionTruth {
    /// Expected conversion rate.
    pub rate: f64,
    /// Expected value per impression (rate times the expected donation).
    pub value: f64,
    /// Allowed versions carrying the option.
    pub versions: u64,
    /// Share of traffic whose segment's best version by value (the oracle's) carries
    /// the option.
    pub oracle_share: f64,
    /// The same for the best version by conversion rate (the oracle of a campaign that
    /// maximizes conversions).
    pub oracle_share_rate: f64,
    /// Value per impression (rate when the design has no ask) at the segment-average
    /// version carrying the option: the logistic of the mean log-odds over the allowed
    /// versions carrying it, times the mean donation of its ask (the ask component) or
    /// the mean over asks (the others), traffic-weighted. The report's leaderboard
    /// estimates this quantity with its own model.
    pub average_version_value: f64,
    /// The conversion rate at the segment-average version carrying the option.
    pub average_version_rate: f64,
}

/// Per component, per option, the truth of each option ([`OptionTruth`]): what an even
/// split over the allowed versions that carry it would earn, traffic-weighted over the
/// segments. This is the yardstick of a report's option leaderboard: the leader of a
/// component should be the option with the highest true value (or rate, when the
/// objective is conversions).
///
/// Exact: every allowed version of every segment is evaluated once (the demo campaign's
/// 2.2M versions x 40 segments take about a second per core), on every available core.
pub fn option_truths(world: &World) -> Vec<Vec<OptionTruth>> {
    let counts: Vec<usize> = world
        .space
        .option_counts()
        .iter()
        .map(|&n| n as usize)
        .collect();
    // Per segment, per flat option: (sum of rates, sum of values, versions, sum of
    // log-odds).
    let per_segment_sums = per_segment(world, |s| segment_option_sums(world, s, &counts));
    let mut oracles = Vec::with_capacity(per_segment_sums.len());
    let value_k = world.value_component;
    let total_share: f64 = world.segment_probs.iter().sum();
    let mut out: Vec<Vec<OptionTruth>> = counts
        .iter()
        .map(|&n| vec![OptionTruth::default(); n])
        .collect();
    for (s, (sums, best_by_value, best_by_rate)) in per_segment_sums.into_iter().enumerate() {
        oracles.push((best_by_value, best_by_rate));
        let share = world.segment_probs[s] / total_share;
        let mut flat = 0;
        let amounts: Vec<f64> = (0..counts[value_k])
            .map(|o| world.log_mean_amount(s, o as u32).exp())
            .collect();
        let mean_amount = amounts.iter().sum::<f64>() / amounts.len() as f64;
        for (k, truths) in out.iter_mut().enumerate() {
            for (o, truth) in truths.iter_mut().enumerate() {
                let (rate, value, n, logit) = sums[flat];
                flat += 1;
                if n > 0 {
                    truth.rate += share * rate / n as f64;
                    truth.value += share * value / n as f64;
                    let amount = if k == value_k {
                        amounts[o]
                    } else {
                        mean_amount
                    };
                    let average_rate = tla_core::stats::logistic(logit / n as f64);
                    truth.average_version_rate += share * average_rate;
                    truth.average_version_value += share * average_rate * amount;
                }
                truth.versions = n;
            }
        }
    }
    for (s, (by_value, by_rate)) in oracles.iter().enumerate() {
        let share = world.segment_probs[s] / total_share;
        for (k, (&v, &r)) in by_value.iter().zip(by_rate).enumerate() {
            out[k][v as usize].oracle_share += share;
            out[k][r as usize].oracle_share_rate += share;
        }
    }
    out
}

/// One segment's sums of rate, value and log-odds per flat option over the allowed
/// versions, and their number.
/// Also the options of the segment's best allowed version by value and by rate (the
/// first in enumeration order on a tie).
#[allow(clippy::type_complexity)]
fn segment_option_sums(
    world: &World,
    s: usize,
    counts: &[usize],
) -> (Vec<(f64, f64, u64, f64)>, Vec<u32>, Vec<u32>) {
    let space = &world.space;
    let k_count = counts.len();
    let base: Vec<usize> = counts
        .iter()
        .scan(0, |acc, &n| {
            let start = *acc;
            *acc += n;
            Some(start)
        })
        .collect();
    let value_k = world.value_component;
    let means: Vec<f64> = (0..counts[value_k])
        .map(|o| world.log_mean_amount(s, o as u32).exp())
        .collect();
    let mut sums = vec![(0.0, 0.0, 0u64, 0.0); counts.iter().sum()];
    let (mut best_value, mut best_rate) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    let (mut by_value, mut by_rate) = (vec![0u32; k_count], vec![0u32; k_count]);
    let mut options = vec![0u32; k_count];
    let check = space.has_exclusions();
    loop {
        if !check || space.is_allowed_options(&options) {
            let logit = world.logit(s, &options);
            let p = tla_core::stats::logistic(logit);
            let v = p * means[options[value_k] as usize];
            if v > best_value {
                best_value = v;
                by_value.clone_from(&options);
            }
            if p > best_rate {
                best_rate = p;
                by_rate.clone_from(&options);
            }
            for (k, &o) in options.iter().enumerate() {
                let cell = &mut sums[base[k] + o as usize];
                cell.0 += p;
                cell.1 += v;
                cell.2 += 1;
                cell.3 += logit;
            }
        }
        let mut carry = true;
        for k in (0..k_count).rev() {
            options[k] += 1;
            if (options[k] as usize) < counts[k] {
                carry = false;
                break;
            }
            options[k] = 0;
        }
        if carry {
            break;
        }
    }
    (sums, by_value, by_rate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tla_core::design::{AskComponent, Interactions, Objective};
    use tla_core::space::{Exclusion, OptionRef, VersionSpace};

    fn design(ask: bool) -> Design {
        let exclusion = |a: (usize, u32), b: (usize, u32)| Exclusion {
            first: OptionRef {
                component: a.0,
                option: a.1,
            },
            second: OptionRef {
                component: b.0,
                option: b.1,
            },
        };
        let space = VersionSpace::new(
            vec![5, 4, 3, 3, 4, 3],
            vec![exclusion((0, 1), (3, 2)), exclusion((1, 0), (4, 3))],
        )
        .unwrap();
        Design {
            component_names: ["headline", "image", "body", "description", "cta", "footer"]
                .map(String::from)
                .to_vec(),
            segment_names: (0..6).map(|s| format!("s{s}")).collect(),
            space,
            ask: ask.then(|| AskComponent {
                component: 4,
                amounts: vec![5.0, 20.0, 50.0, 150.0],
            }),
            objective: Objective::Value,
            interactions: Interactions::segment_only(6),
        }
    }

    const SHARES: [f64; 6] = [0.3, 0.2, 0.2, 0.1, 0.1, 0.1];

    /// The audience's oracle and even split weigh each segment by its traffic share:
    /// by hand on two segments, and against the sum over every allowed version of a
    /// generated world.
    #[test]
    fn audience_truth_weighs_segments_by_their_share() {
        let truth = |best_value, even_value| SegmentTruth {
            best_version: 0,
            best_value,
            even_value,
        };
        let audience = AudienceTruth::weigh(&[truth(2.0, 1.0), truth(4.0, 3.0)], &[0.25, 0.75]);
        assert_eq!(audience.oracle_value, 0.25 * 2.0 + 0.75 * 4.0);
        assert_eq!(audience.even_value, 0.25 * 1.0 + 0.75 * 3.0);

        let world = world_for(&design(true), &SHARES, 7);
        let audience = AudienceTruth::weigh(&segment_truths(&world), &SHARES);
        let (mut oracle, mut even) = (0.0, 0.0);
        let mut options = vec![0u32; world.space.components()];
        for (s, share) in SHARES.iter().enumerate() {
            let values: Vec<f64> = (0..world.space.total())
                .filter(|&v| world.space.is_allowed(v))
                .map(|v| {
                    world.space.decode_into(v, &mut options);
                    world.expected_value(s, &options)
                })
                .collect();
            oracle += share * values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            even += share * values.iter().sum::<f64>() / values.len() as f64;
        }
        assert!(
            (audience.oracle_value - oracle).abs() < 1e-9 * oracle,
            "{audience:?} vs {oracle}"
        );
        assert!(
            (audience.even_value - even).abs() < 1e-9 * even,
            "{audience:?} vs {even}"
        );
        assert!(audience.even_value < audience.oracle_value);
    }

    /// The tally weighs each batch by its impressions and its segment's truth, and
    /// gives no share before an impression.
    #[test]
    fn value_tally_sums_served_oracle_and_even_values() {
        let mut tally = ValueTally::default();
        assert_eq!(tally.oracle_share(), None);
        assert_eq!(tally.even_share(), None);
        let truth = |best_value, even_value| SegmentTruth {
            best_version: 0,
            best_value,
            even_value,
        };
        // 3 impressions where the oracle earns 2 and the even split 1, served worth 4.5;
        // 1 impression where they earn 4 and 2, served worth 1.5.
        tally.add(&truth(2.0, 1.0), 3, 4.5);
        tally.add(&truth(4.0, 2.0), 1, 1.5);
        assert_eq!(
            tally,
            ValueTally {
                impressions: 4,
                served_value: 6.0,
                oracle_value: 10.0,
                even_value: 5.0,
            }
        );
        assert_eq!(tally.oracle_share(), Some(0.6));
        assert_eq!(tally.even_share(), Some(0.5));
        let nothing_to_earn = ValueTally {
            impressions: 2,
            ..ValueTally::default()
        };
        assert_eq!(nothing_to_earn.oracle_share(), None);
    }

    #[test]
    fn same_seed_same_world_other_seed_other_world() {
        let d = design(true);
        let a = world_json_for(&d, &SHARES, 7);
        assert_eq!(a, world_json_for(&d, &SHARES, 7));
        assert_ne!(a, world_json_for(&d, &SHARES, 8));
        let (w1, w2) = (world_for(&d, &SHARES, 7), world_for(&d, &SHARES, 7));
        let options = [3, 2, 1, 0, 2, 1];
        for s in 0..d.segments() {
            assert_eq!(
                w1.expected_value(s, &options),
                w2.expected_value(s, &options)
            );
        }
        assert_eq!(w1.space, d.space);
        assert_eq!(w1.segment_names, d.segment_names);
        assert!((w1.segment_probs[0] - 0.3).abs() < 1e-12);
    }

    #[test]
    fn probabilities_are_probabilities_near_the_base_rate() {
        let d = design(true);
        let world = world_for(&d, &SHARES, 3);
        let mut options = vec![0u32; 6];
        let mut sum = 0.0;
        for s in 0..d.segments() {
            for v in 0..d.space.total() {
                d.space.decode_into(v, &mut options);
                let p = world.conversion_probability(s, &options);
                assert!(p > 0.0 && p < 1.0, "{p}");
                sum += p;
            }
        }
        let mean = sum / (d.segments() as f64 * d.space.total() as f64);
        assert!(mean > 0.005 && mean < 0.05, "mean conversion rate {mean}");
    }

    #[test]
    fn asks_raise_the_mean_donation_and_lower_conversion() {
        let world = world_for(&design(true), &SHARES, 11);
        assert_eq!(world.value_component, 4);
        for s in 0..world.segments() {
            let means: Vec<f64> = (0..4)
                .map(|o| world.mean_amount(s, &[0, 0, 0, 0, o, 0]))
                .collect();
            assert!(means.windows(2).all(|w| w[0] < w[1]), "{means:?}");
        }
        // Without interactions the ask lowers conversion by 0.2 log(ask/20) on average.
        let mean_logit = |o: u32| {
            (0..world.segments())
                .map(|s| world.logit(s, &[0, 0, 0, 0, o, 0]))
                .sum::<f64>()
        };
        assert!(mean_logit(3) < mean_logit(0));
    }

    #[test]
    fn without_an_ask_donations_depend_on_the_segment_only() {
        let world = world_for(&design(false), &SHARES, 5);
        for s in 0..world.segments() {
            let first = world.mean_amount(s, &[0, 0, 0, 0, 0, 0]);
            for o in 0..5 {
                assert_eq!(world.mean_amount(s, &[o, 1, 2, 0, 3, 2]), first);
            }
        }
    }

    #[test]
    fn mismatched_shares_fall_back_to_the_even_split() {
        let world = world_for(&design(true), &[1.0, 2.0], 5);
        assert!(
            world
                .segment_probs
                .iter()
                .all(|p| (p - 1.0 / 6.0).abs() < 1e-12)
        );
    }

    #[test]
    fn draws_convert_at_the_world_rate_with_the_world_mean() {
        let world = world_for(&design(true), &SHARES, 9);
        let options = [2, 1, 0, 1, 1, 2];
        let (p, mean) = (
            world.conversion_probability(0, &options),
            world.mean_amount(0, &options),
        );
        let mut rng = Pcg64Mcg::seed_from_u64(1);
        let n = 400_000;
        let (mut hits, mut total) = (0u64, 0.0);
        for _ in 0..n {
            if let Some(amount) = draw_outcome(&world, 0, &options, &mut rng) {
                assert!(amount > 0.0);
                hits += 1;
                total += amount;
            }
        }
        let rate = hits as f64 / n as f64;
        assert!(
            (rate - p).abs() < 5.0 * (p / n as f64).sqrt(),
            "{rate} vs {p}"
        );
        let mean_drawn = total / hits as f64;
        assert!(
            (mean_drawn / mean - 1.0).abs() < 0.1,
            "{mean_drawn} vs {mean}"
        );
    }

    #[test]
    fn truths_match_brute_force_over_allowed_versions() {
        for ask in [true, false] {
            let d = design(ask);
            let world = world_for(&d, &SHARES, 21);
            let truths = segment_truths(&world);
            let mut options = vec![0u32; 6];
            for (s, truth) in truths.iter().enumerate() {
                let (mut best, mut best_version, mut sum, mut n) = (0.0, 0, 0.0, 0u64);
                for v in 0..d.space.total() {
                    if !d.space.is_allowed(v) {
                        continue;
                    }
                    d.space.decode_into(v, &mut options);
                    let ev = world.expected_value(s, &options);
                    if ev > best {
                        (best, best_version) = (ev, v);
                    }
                    sum += ev;
                    n += 1;
                }
                assert_eq!(n, d.space.allowed_count());
                assert_eq!(truth.best_version, best_version, "segment {s}");
                assert!((truth.best_value / best - 1.0).abs() < 1e-9);
                assert!((truth.even_value / (sum / n as f64) - 1.0).abs() < 1e-9);
                assert!(truth.even_value < truth.best_value);
            }
        }
    }

    #[test]
    fn the_demo_campaign_gets_a_world_and_its_oracle() {
        let campaign = tla_core::spec::CampaignSpec::from_toml_str(include_str!(
            "../../../examples/fundraising.toml"
        ))
        .unwrap()
        .validate()
        .unwrap();
        let world = world_for(campaign.design(), campaign.segment_shares(), 1);
        let clock = std::time::Instant::now();
        let truths = segment_truths(&world);
        eprintln!(
            "oracle of 2.2M versions x 40 segments: {:?}",
            clock.elapsed()
        );
        assert_eq!(truths.len(), 40);
        let mut options = vec![0u32; 5];
        for (s, truth) in truths.iter().enumerate() {
            assert!(campaign.is_allowed(truth.best_version));
            world.space.decode_into(truth.best_version, &mut options);
            let ev = world.expected_value(s, &options);
            assert!((ev / truth.best_value - 1.0).abs() < 1e-9);
            assert!(truth.even_value < 0.6 * truth.best_value, "{truth:?}");
        }
    }
}
