//! The flight of a `tla-creative-world/v2` world: time, money and change.
//!
//! A v2 world is a v1 world ([`crate::world`]) plus a `flight` (reference
//! implementation: `worlds/flight.py`, whose opening comment defines every number):
//!
//! * opportunity `t` of a run of `T` happens at flight fraction `f = (t + 0.5) / T`;
//!   `day(f) = min(floor(f * D), D - 1)`, `u = f * D - day(f)`, and `hour(f)` is the
//!   smallest `h` with `u < W[h + 1]` (23 if none), `W` the cumulative normalized
//!   `hourly_traffic`;
//! * drift terms add a piecewise-linear `delta(f)` to the log-odds of the versions
//!   holding one option (or of one segment);
//! * `launch[component][option]` is the flight fraction from which an option exists;
//! * `expected_cost(s, h) = per_impression[s] * hourly_multiplier[h]`, and a realized
//!   cost is that times `exp(sigma * z - sigma^2 / 2)`;
//! * `budget(T) = budget_share * T * sum_s probs[s] * sum_h w[h] * expected_cost(s, h)`.
//!
//! Everything here is a pure function of the file.

use serde::Deserialize;

/// Hours in a day of the flight.
pub const HOURS: usize = 24;

/// What a drift term moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftTarget {
    /// Every version whose component `component` takes option `option`.
    Option {
        /// Component position.
        component: usize,
        /// Option of that component.
        option: u32,
    },
    /// Every version shown to this segment.
    Segment(usize),
}

/// One drift term: `delta(f)` added to the log-odds of what `target` names.
#[derive(Debug, Clone, PartialEq)]
pub struct Drift {
    /// What it moves.
    pub target: DriftTarget,
    /// `[(f0, x0), (f1, x1), ...]` with increasing `f`.
    pub points: Vec<(f64, f64)>,
}

impl Drift {
    /// The piecewise-linear interpolation of the points at `f`: the first value before
    /// the first point, the last after the last.
    pub fn delta(&self, f: f64) -> f64 {
        let first = self.points[0];
        if f <= first.0 {
            return first.1;
        }
        for pair in self.points.windows(2) {
            let ((f0, x0), (f1, x1)) = (pair[0], pair[1]);
            if f <= f1 {
                return x0 + (x1 - x0) * (f - f0) / (f1 - f0);
            }
        }
        self.points[self.points.len() - 1].1
    }

    /// Whether the term applies to `segment` shown the version with `options`.
    #[inline]
    pub fn applies(&self, segment: usize, options: &[u32]) -> bool {
        match self.target {
            DriftTarget::Option { component, option } => options[component] == option,
            DriftTarget::Segment(s) => s == segment,
        }
    }
}

/// The flight of a v2 world, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct Flight {
    /// Days of the flight.
    pub days: usize,
    /// Share of a day's traffic per hour (sums to 1).
    pub hour_weights: Vec<f64>,
    /// `W[h]`: share of a day's traffic before hour `h` (`W[0] = 0`, 25 entries).
    cumulative: Vec<f64>,
    /// Expected cost of an impression per segment, before the hourly multiplier.
    pub cost_per_impression: Vec<f64>,
    /// Multiplier of the cost per hour.
    pub hourly_cost: Vec<f64>,
    /// Log-normal shape of a realized cost.
    pub cost_sigma: f64,
    /// Share of what buying every opportunity would cost that the budget buys.
    pub budget_share: f64,
    /// Drift terms.
    pub drift: Vec<Drift>,
    /// `launch[k][o]`: the flight fraction from which option `o` of component `k`
    /// exists.
    pub launch: Vec<Vec<f64>>,
}

/// The `flight` object as written in a file.
#[derive(Debug, Deserialize)]
pub(crate) struct RawFlight {
    days: usize,
    hourly_traffic: Vec<f64>,
    cost: RawCost,
    budget_share: f64,
    #[serde(default)]
    drift: Vec<RawDrift>,
    #[serde(default)]
    launch: std::collections::BTreeMap<String, Vec<f64>>,
}

#[derive(Debug, Deserialize)]
struct RawCost {
    per_impression: Vec<f64>,
    hourly_multiplier: Vec<f64>,
    sigma: f64,
}

#[derive(Debug, Deserialize)]
struct RawDrift {
    target: String,
    index: usize,
    points: Vec<(f64, f64)>,
}

impl Flight {
    /// Compiles a file's flight for a world with these component names, option counts
    /// and number of segments; the error says which field is wrong and what is accepted.
    pub(crate) fn compile(
        raw: RawFlight,
        component_names: &[String],
        option_counts: &[usize],
        segments: usize,
    ) -> Result<Self, String> {
        if raw.days == 0 {
            return Err("flight.days is 0; a flight has at least 1 day".into());
        }
        let finite_nonneg = |x: &f64| x.is_finite() && *x >= 0.0;
        if raw.hourly_traffic.len() != HOURS || !raw.hourly_traffic.iter().all(finite_nonneg) {
            return Err(format!(
                "flight.hourly_traffic needs {HOURS} finite non-negative values"
            ));
        }
        let total: f64 = raw.hourly_traffic.iter().sum();
        if total <= 0.0 {
            return Err("flight.hourly_traffic needs a positive sum".into());
        }
        let hour_weights: Vec<f64> = raw.hourly_traffic.iter().map(|x| x / total).collect();
        let mut cumulative = Vec::with_capacity(HOURS + 1);
        cumulative.push(0.0);
        let mut acc = 0.0;
        for x in &raw.hourly_traffic {
            acc += x;
            cumulative.push(acc / total);
        }
        if raw.cost.per_impression.len() != segments
            || !raw.cost.per_impression.iter().all(finite_nonneg)
        {
            return Err(format!(
                "flight.cost.per_impression needs {segments} finite non-negative values (one per segment)"
            ));
        }
        if raw.cost.hourly_multiplier.len() != HOURS
            || !raw.cost.hourly_multiplier.iter().all(finite_nonneg)
        {
            return Err(format!(
                "flight.cost.hourly_multiplier needs {HOURS} finite non-negative values"
            ));
        }
        if !finite_nonneg(&raw.cost.sigma) {
            return Err("flight.cost.sigma must be finite and non-negative".into());
        }
        if !(raw.budget_share.is_finite() && raw.budget_share > 0.0) {
            return Err("flight.budget_share must be finite and positive".into());
        }
        let mut drift = Vec::with_capacity(raw.drift.len());
        for (i, d) in raw.drift.into_iter().enumerate() {
            let target = if d.target == "segment" {
                if d.index >= segments {
                    return Err(format!(
                        "flight.drift[{i}].index is {} but there are {segments} segments",
                        d.index
                    ));
                }
                DriftTarget::Segment(d.index)
            } else {
                let k = component_names
                    .iter()
                    .position(|n| *n == d.target)
                    .ok_or_else(|| {
                        format!(
                            "flight.drift[{i}].target {:?} is neither \"segment\" nor a component",
                            d.target
                        )
                    })?;
                if d.index >= option_counts[k] {
                    return Err(format!(
                        "flight.drift[{i}].index is {} but {} has {} options",
                        d.index, d.target, option_counts[k]
                    ));
                }
                DriftTarget::Option {
                    component: k,
                    option: d.index as u32,
                }
            };
            let increasing = d.points.windows(2).all(|p| p[0].0 < p[1].0);
            if d.points.is_empty()
                || !increasing
                || d.points
                    .iter()
                    .any(|p| !p.0.is_finite() || !p.1.is_finite())
            {
                return Err(format!(
                    "flight.drift[{i}].points needs at least one finite [f, x] pair, f increasing"
                ));
            }
            drift.push(Drift {
                target,
                points: d.points,
            });
        }
        let mut launch = Vec::with_capacity(component_names.len());
        for (k, name) in component_names.iter().enumerate() {
            let at = match raw.launch.get(name) {
                Some(at) => at.clone(),
                None => vec![0.0; option_counts[k]],
            };
            if at.len() != option_counts[k] || at.iter().any(|f| !(0.0..=1.0).contains(f)) {
                return Err(format!(
                    "flight.launch.{name} needs {} flight fractions in [0, 1]",
                    option_counts[k]
                ));
            }
            launch.push(at);
        }
        if let Some(name) = raw.launch.keys().find(|n| !component_names.contains(n)) {
            return Err(format!("flight.launch names unknown component {name:?}"));
        }
        Ok(Self {
            days: raw.days,
            hour_weights,
            cumulative,
            cost_per_impression: raw.cost.per_impression,
            hourly_cost: raw.cost.hourly_multiplier,
            cost_sigma: raw.cost.sigma,
            budget_share: raw.budget_share,
            drift,
            launch,
        })
    }

    /// The flight fraction of opportunity `t` (from 0) of a run of `total`:
    /// `(t + 0.5) / total`.
    #[inline]
    pub fn fraction(t: u64, total: u64) -> f64 {
        (t as f64 + 0.5) / total as f64
    }

    /// `(day, hour)` of flight fraction `f`.
    pub fn day_hour(&self, f: f64) -> (usize, usize) {
        let scaled = f * self.days as f64;
        let day = (scaled.floor().max(0.0) as usize).min(self.days - 1);
        let u = scaled - day as f64;
        let mut hour = 0;
        while hour < HOURS - 1 && u >= self.cumulative[hour + 1] {
            hour += 1;
        }
        (day, hour)
    }

    /// `(day, hour, milliseconds since the flight's start)` of flight fraction `f`: the
    /// time runs through each hour of the day at the speed its traffic weight gives it,
    /// so the hour of the time ([`tla_core::pacing::hour_of`]) is the hour of `f`, and
    /// a pacer sees the hourly traffic of the world.
    pub fn clock(&self, f: f64) -> (usize, usize, i64) {
        let (day, hour) = self.day_hour(f);
        let u = f * self.days as f64 - day as f64;
        let (lo, hi) = (self.cumulative[hour], self.cumulative[hour + 1]);
        let within = if hi > lo {
            ((u - lo) / (hi - lo)).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let hour_ms = tla_core::pacing::HOUR_MS;
        let into = ((within * hour_ms as f64) as i64).min(hour_ms - 1);
        (day, hour, (day as i64 * 24 + hour as i64) * hour_ms + into)
    }

    /// The flight's length in milliseconds (`days` days).
    pub fn length_ms(&self) -> i64 {
        self.days as i64 * tla_core::pacing::DAY_MS
    }

    /// The sum of the drift terms that apply to `segment` shown `options` at `f`.
    pub fn drift_logit(&self, segment: usize, options: &[u32], f: f64) -> f64 {
        self.drift
            .iter()
            .filter(|d| d.applies(segment, options))
            .map(|d| d.delta(f))
            .sum()
    }

    /// Whether option `option` of component `component` exists at `f`.
    #[inline]
    pub fn launched(&self, component: usize, option: u32, f: f64) -> bool {
        self.launch[component][option as usize] <= f
    }

    /// Whether every option of a version exists at `f` (only then can it be served).
    pub fn available(&self, options: &[u32], f: f64) -> bool {
        options
            .iter()
            .enumerate()
            .all(|(k, &o)| self.launched(k, o, f))
    }

    /// The last launch of any option: from this fraction on, every version exists.
    pub fn last_launch(&self) -> f64 {
        self.launch.iter().flatten().copied().fold(0.0, f64::max)
    }

    /// Expected cost of one impression of `segment` at `hour`.
    #[inline]
    pub fn expected_cost(&self, segment: usize, hour: usize) -> f64 {
        self.cost_per_impression[segment] * self.hourly_cost[hour]
    }

    /// The flight budget of a run of `total` opportunities, for segments arriving with
    /// `segment_probs` (normalized).
    pub fn budget(&self, total: u64, segment_probs: &[f64]) -> f64 {
        let per_segment: f64 = segment_probs
            .iter()
            .zip(&self.cost_per_impression)
            .map(|(p, c)| p * c)
            .sum();
        let per_hour: f64 = self
            .hour_weights
            .iter()
            .zip(&self.hourly_cost)
            .map(|(w, c)| w * c)
            .sum();
        self.budget_share * total as f64 * per_segment * per_hour
    }
}

/// The hindsight optimum of a fractional knapsack: items taken by `value / weight`,
/// highest first (ties in input order), until the weights reach `capacity`, the last
/// one fractionally. Items of zero weight and positive value are taken first.
///
/// # Panics
/// If `values` and `weights` differ in length.
pub fn fractional_knapsack(values: &[f64], weights: &[f64], capacity: f64) -> f64 {
    assert_eq!(values.len(), weights.len(), "one weight per value");
    let mut order: Vec<usize> = (0..values.len()).collect();
    let ratio = |i: usize| values[i] / weights[i];
    order.sort_by(|&a, &b| ratio(b).total_cmp(&ratio(a)));
    let mut used = 0.0;
    let mut total = 0.0;
    for i in order {
        if used + weights[i] <= capacity {
            used += weights[i];
            total += values[i];
        } else {
            let room = capacity - used;
            if room > 0.0 {
                total += values[i] * room / weights[i];
            }
            break;
        }
    }
    total
}

/// `checks_v2` of a v2 file: reference values of its time mapping, truth, costs,
/// budget and knapsack.
#[derive(Debug, Clone, Deserialize)]
pub struct ChecksV2 {
    /// Flight fractions with their day and hour.
    pub times: Vec<TimeCheck>,
    /// Truth of a version for a segment at a flight fraction.
    pub truth: Vec<TruthCheck>,
    /// Expected costs.
    pub costs: Vec<CostCheck>,
    /// Budgets of runs.
    pub budget: Vec<BudgetCheck>,
    /// One fractional knapsack.
    pub knapsack: KnapsackCheck,
}

/// A reference `(day, hour)` of a flight fraction.
#[derive(Debug, Clone, Deserialize)]
pub struct TimeCheck {
    /// Flight fraction.
    pub f: f64,
    /// Its day.
    pub day: usize,
    /// Its hour.
    pub hour: usize,
}

/// The truth of a version for a segment at a flight fraction.
#[derive(Debug, Clone, Deserialize)]
pub struct TruthCheck {
    /// Segment index.
    pub segment: usize,
    /// Version index.
    pub creative: u64,
    /// Options of the version.
    pub options: Vec<u32>,
    /// Flight fraction.
    pub f: f64,
    /// Whether the version exists at `f`.
    pub available: bool,
    /// Conversion probability at `f`.
    pub p: f64,
    /// Mean donation given conversion.
    pub mean_value: f64,
    /// Expected value per impression at `f`.
    pub ev: f64,
}

/// A reference expected cost.
#[derive(Debug, Clone, Deserialize)]
pub struct CostCheck {
    /// Segment index.
    pub segment: usize,
    /// Hour.
    pub hour: usize,
    /// `expected_cost(segment, hour)`.
    pub expected_cost: f64,
}

/// A reference budget.
#[derive(Debug, Clone, Deserialize)]
pub struct BudgetCheck {
    /// Opportunities of the run.
    #[serde(rename = "T")]
    pub total: u64,
    /// `budget(T)`.
    pub budget: f64,
}

/// A reference fractional knapsack.
#[derive(Debug, Clone, Deserialize)]
pub struct KnapsackCheck {
    /// Item values.
    pub values: Vec<f64>,
    /// Item weights.
    pub weights: Vec<f64>,
    /// Capacity.
    pub capacity: f64,
    /// The optimum.
    pub optimum: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drift(points: Vec<(f64, f64)>) -> Drift {
        Drift {
            target: DriftTarget::Segment(0),
            points,
        }
    }

    #[test]
    fn drift_is_held_before_the_first_point_and_after_the_last() {
        let d = drift(vec![(0.2, 1.0), (0.6, 3.0)]);
        assert_eq!(d.delta(0.0), 1.0);
        assert_eq!(d.delta(0.4), 2.0);
        assert_eq!(d.delta(0.9), 3.0);
    }

    #[test]
    fn knapsack_takes_the_best_ratio_first_and_the_last_item_fractionally() {
        // Ratios 1, 3, 2: takes item 1 (w 1), item 2 (w 2), half of item 0 (w 2).
        let got = fractional_knapsack(&[2.0, 3.0, 4.0], &[2.0, 1.0, 2.0], 4.0);
        assert!((got - (3.0 + 4.0 + 1.0)).abs() < 1e-12);
        assert_eq!(fractional_knapsack(&[1.0], &[1.0], 5.0), 1.0);
    }
}
