//! World files: a complete ground truth for a simulated campaign.
//!
//! Format `tla-creative-world/v1` (reference implementation: `worlds/world.py`).
//!
//! The log-odds of a conversion for segment `s` and version `c` is
//! `base + segment_effect[s] + sum_k main_effects[k][o_k]` plus the interaction terms:
//! each block `{between: [A, B], terms: [[i, j, w], ...]}` adds `w` when A's level is
//! `i` and B's is `j` (A, B are component names or the pseudo-component `"segment"`).
//!
//! A donation given conversion is log-normal with mean
//! `exp(log_mean_base + segment_log_effect[s] + option_log_effect[o_v])` for the option
//! `o_v` of the value component, and `mu = log(mean) - sigma^2 / 2`.

use serde::Deserialize;
use std::collections::BTreeMap;
use tla_core::design::{AskComponent, Design, Interactions, Objective};
use tla_core::space::VersionSpace;

use crate::flight::{ChecksV2, Flight, RawFlight};

/// The format tag of a world without time.
pub const FORMAT: &str = "tla-creative-world/v1";

/// The format tag of a world with a flight ([`crate::flight`]): a v1 world plus time,
/// costs, drift and launches.
pub const FORMAT_V2: &str = "tla-creative-world/v2";

/// Errors reading a world.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    /// The text is not valid JSON for the format.
    #[error("world file is not valid {FORMAT} or {FORMAT_V2} JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The JSON parsed but is inconsistent.
    #[error("world file is inconsistent: {0}")]
    Invalid(String),
}

#[derive(Debug, Deserialize)]
struct RawWorld {
    format: String,
    name: String,
    segments: RawSegments,
    components: Vec<RawComponent>,
    conversion: RawConversion,
    value: RawValue,
    #[serde(default)]
    checks: Vec<Check>,
    #[serde(default)]
    flight: Option<RawFlight>,
    #[serde(default)]
    checks_v2: Option<ChecksV2>,
}

#[derive(Debug, Deserialize)]
struct RawSegments {
    count: usize,
    names: Vec<String>,
    probs: Vec<f64>,
}

#[derive(Debug, Deserialize)]
struct RawComponent {
    name: String,
    options: u32,
}

#[derive(Debug, Deserialize)]
struct RawConversion {
    link: String,
    base: f64,
    segment_effect: Vec<f64>,
    main_effects: BTreeMap<String, Vec<f64>>,
    interactions: Vec<RawInteraction>,
}

#[derive(Debug, Deserialize)]
struct RawInteraction {
    between: [String; 2],
    terms: Vec<(usize, usize, f64)>,
}

#[derive(Debug, Deserialize)]
struct RawValue {
    distribution: String,
    sigma: f64,
    log_mean_base: f64,
    segment_log_effect: Vec<f64>,
    component: String,
    asks: Vec<f64>,
    option_log_effect: Vec<f64>,
}

/// One reference row of a world file: exact probabilities for a (segment, version).
#[derive(Debug, Clone, Deserialize)]
pub struct Check {
    /// Segment index.
    pub segment: usize,
    /// Version index.
    pub creative: u64,
    /// Options of the version.
    pub options: Vec<u32>,
    /// Conversion probability.
    pub p: f64,
    /// Mean donation given conversion.
    pub mean_value: f64,
    /// Expected value per impression.
    pub ev: f64,
}

/// A world, compiled for fast evaluation.
#[derive(Debug, Clone)]
pub struct World {
    /// World name.
    pub name: String,
    /// Component names in order.
    pub component_names: Vec<String>,
    /// Segment names.
    pub segment_names: Vec<String>,
    /// Segment traffic shares (normalized).
    pub segment_probs: Vec<f64>,
    /// The version space.
    pub space: VersionSpace,
    /// Position of the value (ask) component.
    pub value_component: usize,
    /// Ask amount per option of the value component.
    pub asks: Vec<f64>,
    /// Reference rows.
    pub checks: Vec<Check>,
    /// The flight of a v2 world (`None` for v1: no time, every version always exists).
    pub flight: Option<Flight>,
    /// Reference values of the flight (v2 only).
    pub checks_v2: Option<ChecksV2>,
    option_counts: Vec<usize>,
    base: f64,
    segment_effect: Vec<f64>,
    main: Vec<Vec<f64>>,
    /// Per component, segment-major `s * n_k + o` interaction sums (empty when none).
    segment_terms: Vec<Vec<f64>>,
    /// Component pairs `(a, b)`, `a < b`, with dense `o_a * n_b + o_b` sums.
    pair_terms: Vec<(usize, usize, Vec<f64>)>,
    /// Segment-by-segment terms (diagonal only matters).
    segment_self: Vec<f64>,
    sigma: f64,
    /// `log(mean donation)` per (segment, value option), segment-major.
    log_mean: Vec<f64>,
}

impl World {
    /// Parses and compiles a world from JSON text.
    pub fn from_json(text: &str) -> Result<Self, WorldError> {
        let raw: RawWorld = serde_json::from_str(text)?;
        Self::compile(raw)
    }

    fn compile(raw: RawWorld) -> Result<Self, WorldError> {
        let invalid = |m: String| WorldError::Invalid(m);
        let v2 = raw.format == FORMAT_V2;
        if raw.format != FORMAT && !v2 {
            return Err(invalid(format!(
                "format is {:?}; this reader accepts {FORMAT:?} and {FORMAT_V2:?}",
                raw.format
            )));
        }
        if v2 != raw.flight.is_some() {
            return Err(invalid(format!(
                "a {FORMAT_V2:?} world needs a flight object and a {FORMAT:?} world has none"
            )));
        }
        if raw.conversion.link != "logistic" || raw.value.distribution != "lognormal" {
            return Err(invalid(
                "only conversion.link = \"logistic\" and value.distribution = \"lognormal\" are accepted".into(),
            ));
        }
        let segments = raw.segments.count;
        if segments == 0
            || raw.segments.names.len() != segments
            || raw.segments.probs.len() != segments
            || raw.conversion.segment_effect.len() != segments
            || raw.value.segment_log_effect.len() != segments
        {
            return Err(invalid(format!(
                "segments.count is {segments} but names, probs, segment_effect or segment_log_effect have another length"
            )));
        }
        let total: f64 = raw.segments.probs.iter().sum();
        if total.is_nan()
            || total <= 0.0
            || raw.segments.probs.iter().any(|p| p.is_nan() || *p < 0.0)
        {
            return Err(invalid(
                "segments.probs must be non-negative with a positive sum".into(),
            ));
        }
        let segment_probs: Vec<f64> = raw.segments.probs.iter().map(|p| p / total).collect();
        let component_names: Vec<String> = raw.components.iter().map(|c| c.name.clone()).collect();
        let counts: Vec<u32> = raw.components.iter().map(|c| c.options).collect();
        let space = VersionSpace::product(counts.clone())
            .map_err(|e| invalid(format!("components: {e}")))?;
        let option_counts: Vec<usize> = counts.iter().map(|&n| n as usize).collect();
        let position = |name: &str| component_names.iter().position(|n| n == name);
        let mut main = Vec::with_capacity(component_names.len());
        for (k, name) in component_names.iter().enumerate() {
            let effects = raw.conversion.main_effects.get(name).ok_or_else(|| {
                invalid(format!(
                    "conversion.main_effects has no entry for component {name:?}"
                ))
            })?;
            if effects.len() != option_counts[k] {
                return Err(invalid(format!(
                    "conversion.main_effects.{name} has {} values for {} options",
                    effects.len(),
                    option_counts[k]
                )));
            }
            main.push(effects.clone());
        }
        let mut segment_terms: Vec<Vec<f64>> = vec![Vec::new(); component_names.len()];
        let mut pair_terms: Vec<(usize, usize, Vec<f64>)> = Vec::new();
        let mut segment_self = vec![0.0; segments];
        let levels = |name: &str| -> Result<usize, WorldError> {
            if name == "segment" {
                return Ok(segments);
            }
            position(name)
                .map(|k| option_counts[k])
                .ok_or_else(|| invalid(format!("interaction names unknown component {name:?}")))
        };
        for block in &raw.conversion.interactions {
            let [a, b] = &block.between;
            let (na, nb) = (levels(a)?, levels(b)?);
            for &(i, j, w) in &block.terms {
                if i >= na || j >= nb {
                    return Err(invalid(format!(
                        "interaction {a} x {b} term ({i}, {j}) is out of range"
                    )));
                }
                match (a.as_str(), b.as_str()) {
                    ("segment", "segment") => {
                        if i == j {
                            segment_self[i] += w;
                        }
                    }
                    ("segment", comp) | (comp, "segment") => {
                        let k = position(comp).expect("checked by levels");
                        let (s, o) = if a == "segment" { (i, j) } else { (j, i) };
                        let terms = &mut segment_terms[k];
                        if terms.is_empty() {
                            terms.resize(segments * option_counts[k], 0.0);
                        }
                        terms[s * option_counts[k] + o] += w;
                    }
                    (ca, cb) => {
                        let (ka, kb) = (
                            position(ca).expect("checked"),
                            position(cb).expect("checked"),
                        );
                        if ka == kb {
                            return Err(invalid(format!(
                                "interaction {ca} x {cb} crosses a component with itself"
                            )));
                        }
                        let (lo, hi, oi, oj) = if ka < kb {
                            (ka, kb, i, j)
                        } else {
                            (kb, ka, j, i)
                        };
                        let index = match pair_terms.iter().position(|p| p.0 == lo && p.1 == hi) {
                            Some(index) => index,
                            None => {
                                pair_terms.push((
                                    lo,
                                    hi,
                                    vec![0.0; option_counts[lo] * option_counts[hi]],
                                ));
                                pair_terms.len() - 1
                            }
                        };
                        pair_terms[index].2[oi * option_counts[hi] + oj] += w;
                    }
                }
            }
        }
        let value_component = position(&raw.value.component).ok_or_else(|| {
            invalid(format!(
                "value.component {:?} is not a component",
                raw.value.component
            ))
        })?;
        let nv = option_counts[value_component];
        if raw.value.asks.len() != nv || raw.value.option_log_effect.len() != nv {
            return Err(invalid(format!(
                "value.asks and value.option_log_effect need {nv} entries"
            )));
        }
        if raw.value.asks.iter().any(|a| !(*a > 0.0 && a.is_finite())) {
            return Err(invalid("value.asks must be positive and finite".into()));
        }
        let mut log_mean = Vec::with_capacity(segments * nv);
        for s in 0..segments {
            for o in 0..nv {
                log_mean.push(
                    raw.value.log_mean_base
                        + raw.value.segment_log_effect[s]
                        + raw.value.option_log_effect[o],
                );
            }
        }
        let flight = match raw.flight {
            Some(f) => Some(
                Flight::compile(f, &component_names, &option_counts, segments).map_err(invalid)?,
            ),
            None => None,
        };
        Ok(Self {
            flight,
            checks_v2: raw.checks_v2,
            name: raw.name,
            component_names,
            segment_names: raw.segments.names,
            segment_probs,
            space,
            value_component,
            asks: raw.value.asks,
            checks: raw.checks,
            option_counts,
            base: raw.conversion.base,
            segment_effect: raw.conversion.segment_effect,
            main,
            segment_terms,
            pair_terms,
            segment_self,
            sigma: raw.value.sigma,
            log_mean,
        })
    }

    /// Number of segments.
    pub fn segments(&self) -> usize {
        self.segment_names.len()
    }

    /// Log-normal shape of donations.
    pub fn sigma(&self) -> f64 {
        self.sigma
    }

    /// `logit P(conversion)` for a segment and the options of a version.
    #[inline]
    pub fn logit(&self, segment: usize, options: &[u32]) -> f64 {
        let mut x = self.base + self.segment_effect[segment] + self.segment_self[segment];
        for (k, &o) in options.iter().enumerate() {
            let o = o as usize;
            x += self.main[k][o];
            let terms = &self.segment_terms[k];
            if !terms.is_empty() {
                x += terms[segment * self.option_counts[k] + o];
            }
        }
        for (a, b, terms) in &self.pair_terms {
            x += terms[options[*a] as usize * self.option_counts[*b] + options[*b] as usize];
        }
        x
    }

    /// `P(conversion)` for a segment and the options of a version.
    #[inline]
    pub fn conversion_probability(&self, segment: usize, options: &[u32]) -> f64 {
        tla_core::stats::logistic(self.logit(segment, options))
    }

    /// `log E[donation | conversion]` for a segment and an option of the value component.
    #[inline]
    pub fn log_mean_amount(&self, segment: usize, value_option: u32) -> f64 {
        self.log_mean[segment * self.option_counts[self.value_component] + value_option as usize]
    }

    /// `E[donation | conversion]`.
    pub fn mean_amount(&self, segment: usize, options: &[u32]) -> f64 {
        self.log_mean_amount(segment, options[self.value_component])
            .exp()
    }

    /// Expected value per impression: `P(conversion) x E[donation | conversion]`.
    pub fn expected_value(&self, segment: usize, options: &[u32]) -> f64 {
        self.conversion_probability(segment, options) * self.mean_amount(segment, options)
    }

    /// `logit P(conversion)` at flight fraction `f`: [`World::logit`] plus the drift
    /// terms that apply (a v1 world has none).
    #[inline]
    pub fn logit_at(&self, segment: usize, options: &[u32], f: f64) -> f64 {
        let x = self.logit(segment, options);
        match &self.flight {
            Some(flight) => x + flight.drift_logit(segment, options, f),
            None => x,
        }
    }

    /// `P(conversion)` at flight fraction `f`.
    #[inline]
    pub fn conversion_probability_at(&self, segment: usize, options: &[u32], f: f64) -> f64 {
        tla_core::stats::logistic(self.logit_at(segment, options, f))
    }

    /// Expected value per impression at flight fraction `f` (donations do not drift).
    pub fn expected_value_at(&self, segment: usize, options: &[u32], f: f64) -> f64 {
        self.conversion_probability_at(segment, options, f) * self.mean_amount(segment, options)
    }

    /// Whether a version exists at flight fraction `f` (always, in a v1 world).
    #[inline]
    pub fn available_at(&self, options: &[u32], f: f64) -> bool {
        self.flight
            .as_ref()
            .is_none_or(|flight| flight.available(options, f))
    }

    /// Largest relative error over the file's `checks_v2` (0 for a v1 world): day and
    /// hour must match exactly, and so must availability; probabilities, mean
    /// donations, expected values, costs, budgets and the knapsack optimum are compared
    /// relatively.
    pub fn verify_checks_v2(&self) -> Result<f64, WorldError> {
        let (Some(flight), Some(checks)) = (&self.flight, &self.checks_v2) else {
            return Ok(0.0);
        };
        let invalid = |m: String| WorldError::Invalid(m);
        let rel = |got: f64, want: f64| ((got - want) / want).abs();
        let mut worst: f64 = 0.0;
        for (i, t) in checks.times.iter().enumerate() {
            let got = flight.day_hour(t.f);
            if got != (t.day, t.hour) {
                return Err(invalid(format!(
                    "checks_v2.times[{i}]: f = {} is day {} hour {} here, day {} hour {} in the file",
                    t.f, got.0, got.1, t.day, t.hour
                )));
            }
        }
        for (i, r) in checks.truth.iter().enumerate() {
            if r.segment >= self.segments()
                || self.space.try_encode(&r.options).ok() != Some(r.creative)
            {
                return Err(invalid(format!(
                    "checks_v2.truth[{i}]: segment or creative index does not match its options"
                )));
            }
            if flight.available(&r.options, r.f) != r.available {
                return Err(invalid(format!(
                    "checks_v2.truth[{i}]: availability at f = {} differs from the file",
                    r.f
                )));
            }
            worst = worst
                .max(rel(
                    self.conversion_probability_at(r.segment, &r.options, r.f),
                    r.p,
                ))
                .max(rel(self.mean_amount(r.segment, &r.options), r.mean_value))
                .max(rel(
                    self.expected_value_at(r.segment, &r.options, r.f),
                    r.ev,
                ));
        }
        for (i, c) in checks.costs.iter().enumerate() {
            if c.segment >= self.segments() || c.hour >= crate::flight::HOURS {
                return Err(invalid(format!(
                    "checks_v2.costs[{i}]: segment or hour is out of range"
                )));
            }
            worst = worst.max(rel(
                flight.expected_cost(c.segment, c.hour),
                c.expected_cost,
            ));
        }
        for b in &checks.budget {
            worst = worst.max(rel(flight.budget(b.total, &self.segment_probs), b.budget));
        }
        let k = &checks.knapsack;
        if k.values.len() != k.weights.len() {
            return Err(invalid(
                "checks_v2.knapsack needs one weight per value".into(),
            ));
        }
        worst = worst.max(rel(
            crate::flight::fractional_knapsack(&k.values, &k.weights, k.capacity),
            k.optimum,
        ));
        Ok(worst)
    }

    /// Largest relative error over the file's `checks` (0 when there are none).
    pub fn verify_checks(&self) -> Result<f64, WorldError> {
        let mut worst: f64 = 0.0;
        for (i, check) in self.checks.iter().enumerate() {
            if check.segment >= self.segments()
                || self.space.try_encode(&check.options).ok() != Some(check.creative)
            {
                return Err(WorldError::Invalid(format!(
                    "checks[{i}]: segment or creative index does not match its options"
                )));
            }
            let rel = |got: f64, want: f64| ((got - want) / want).abs();
            worst = worst
                .max(rel(
                    self.conversion_probability(check.segment, &check.options),
                    check.p,
                ))
                .max(rel(
                    self.mean_amount(check.segment, &check.options),
                    check.mean_value,
                ))
                .max(rel(
                    self.expected_value(check.segment, &check.options),
                    check.ev,
                ));
        }
        Ok(worst)
    }

    /// The best version of each segment by expected value and that value, found by
    /// enumerating the space (the oracle of the score).
    pub fn oracle(&self) -> Vec<(u64, f64)> {
        let mut options = vec![0u32; self.space.components()];
        (0..self.segments())
            .map(|s| {
                let mut best = (0, f64::NEG_INFINITY);
                for version in 0..self.space.total() {
                    self.space.decode_into(version, &mut options);
                    let ev = self.expected_value(s, &options);
                    if ev > best.1 {
                        best = (version, ev);
                    }
                }
                best
            })
            .collect()
    }

    /// Expected value per impression of the even split, per segment.
    pub fn uniform_expected_value(&self) -> Vec<f64> {
        let mut options = vec![0u32; self.space.components()];
        (0..self.segments())
            .map(|s| {
                let mut sum = 0.0;
                for version in 0..self.space.total() {
                    self.space.decode_into(version, &mut options);
                    sum += self.expected_value(s, &options);
                }
                sum / self.space.total() as f64
            })
            .collect()
    }

    /// What a campaign team knows about this world: components, option counts,
    /// segments, the asks. Never the effects, never which interactions exist.
    pub fn design(&self, interactions: Interactions, objective: Objective) -> Design {
        Design {
            component_names: self.component_names.clone(),
            segment_names: self.segment_names.clone(),
            space: self.space.clone(),
            ask: Some(AskComponent {
                component: self.value_component,
                amounts: self.asks.clone(),
            }),
            objective,
            interactions,
        }
    }
}
