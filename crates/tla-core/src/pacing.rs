//! Pacing: spending a flight's budget where a dollar buys the most value.
//!
//! Each opportunity (an impression the campaign could buy) gets a [`Bid`] from the
//! [`Pacer`]: a [`Gate`] the policy decides under ([`crate::policy::decide_gated`]),
//! the expected cost of the opportunity and, if it is skipped, why. Under the default
//! [`PacingMode::Value`] rule a Thompson draw buys the opportunity when its sampled
//! value per impression exceeds `λ · ĉ(s, h)`: `ĉ` is the [`CostModel`]'s expected
//! cost for the segment and hour, and `λ`, the *price of money*, is what a dollar must
//! buy to be spent now. Skipping is one of the policy's outcomes, with its exact
//! propensity, so a log of skips and purchases can be evaluated off-policy like any
//! other.
//!
//! `λ` comes from two parts (docs/pacing.md has the derivation):
//!
//! - a **planner** that matches the remaining budget to the forecast remaining traffic:
//!   the [`Traffic`] forecast gives the opportunities left in each hour of the day, the
//!   policy's decision tables say which share of each segment's draws is worth more
//!   than `λ ĉ`, and `λ_plan` solves `expected spend(λ) = remaining budget` by
//!   bisection;
//! - a **feedback** correction against a spend plan shaped like the traffic (the
//!   budget spread over the flight in proportion to its opportunities):
//!   `λ = λ_plan · exp(κ e)`, where `e` is the spend ahead of plan in days of budget.
//!
//! Hard limits come first: before serving, the pacer reserves a high quantile of the
//! opportunity's cost, and an opportunity whose reservation would take spend past the
//! flight budget or the day's cap is skipped ([`SkipReason::Budget`],
//! [`SkipReason::DailyCap`]). A minimum return (`min_roas`: value at least `r` times
//! spend) raises the price to `max(λ, r) · ĉ`.
//!
//! The other [`PacingMode`]s are the comparisons `tla simulate --pacing` runs: `ratio`
//! (budgeted Thompson sampling's ratio rule: buy when the sampled value per expected
//! dollar is at least 1, until the budget is gone), `even` (buy at random at the rate
//! that spends the budget evenly over the traffic) and `none` (buy everything until the
//! budget is gone).
//!
//! Time is passed in as milliseconds since the Unix epoch (or since any origin the
//! caller keeps to); hours of the day are counted from that origin (UTC for epoch
//! times). The pacer holds no clock and draws no random number.

use crate::policy::Gate;

/// Hours in a day: the cost model and the traffic forecast are per hour of the day.
pub const HOURS: usize = 24;
pub use crate::timestamp::DAY_MS;
/// Milliseconds in an hour.
pub const HOUR_MS: i64 = DAY_MS / HOURS as i64;
/// The planner solves for `λ` again after this many opportunities...
pub const REPLAN_OPPORTUNITIES: u64 = 1_000;
/// ... or after this many milliseconds, whichever comes first.
pub const REPLAN_MS: i64 = 60_000;
/// Gain of the feedback correction: `λ` is multiplied by `exp(FEEDBACK_GAIN · e)` when
/// spend is `e` days of budget ahead of plan (`e` clamped to ±[`FEEDBACK_LIMIT`]).
pub const FEEDBACK_GAIN: f64 = 2.0;
/// Bisection steps of the planner's solve for `log λ` (after bracketing): the
/// bracket shrinks by `2^-PLAN_ITERATIONS`.
pub const PLAN_ITERATIONS: usize = 24;
/// The planner looks for `log λ` within ±this.
const LOG_PRICE_LIMIT: f64 = 40.0;
/// Bound on the feedback error, in days of budget.
pub const FEEDBACK_LIMIT: f64 = 2.0;
/// A reservation covers the cost's mean times `exp(RESERVE_SDS · σ)`: with log-normal
/// costs, the cost of one impression exceeds it with probability below 0.2%.
pub const RESERVE_SDS: f64 = 3.0;

/// How a budget is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PacingMode {
    /// The price-of-money rule: skip when the sampled value is at most `λ ĉ`.
    #[default]
    Value,
    /// Budgeted Thompson sampling's ratio rule: buy when the sampled value per expected
    /// dollar is at least 1, until the budget is gone.
    Ratio,
    /// Buy at random at the rate that spends the budget evenly over the traffic.
    Even,
    /// Buy every opportunity until the budget is gone.
    None,
    /// An ad platform buys (`docs/platform.md`): the pacer keeps only the hard limits
    /// (flight budget, daily cap); the platform's delivery decides the rest, a skip of
    /// it counted as [`SkipReason::Throttle`]. Not a `--pacing` choice (not in
    /// [`PacingMode::ALL`]): `tla simulate --mode plan` runs it.
    Platform,
}

impl PacingMode {
    /// Every mode, in the order `--pacing` lists them.
    pub const ALL: [PacingMode; 4] = [
        PacingMode::Value,
        PacingMode::Ratio,
        PacingMode::Even,
        PacingMode::None,
    ];

    /// The mode's name: `value`, `ratio`, `even` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            PacingMode::Value => "value",
            PacingMode::Ratio => "ratio",
            PacingMode::Even => "even",
            PacingMode::None => "none",
            PacingMode::Platform => "platform",
        }
    }

    /// The mode of a name ([`PacingMode::as_str`]).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

/// Why an opportunity was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The draw's sampled value was at most the price of money times the expected cost.
    Price,
    /// The draw's sampled value was below `min_roas` times the expected cost.
    MinRoas,
    /// Not bought by the random throttle of even pacing.
    Throttle,
    /// The flight budget (with what is reserved) cannot pay for it.
    Budget,
    /// The day's cap (with what is reserved) cannot pay for it.
    DailyCap,
    /// The flight has not started.
    BeforeFlight,
    /// The flight has ended.
    AfterFlight,
}

impl SkipReason {
    /// The reason's code, as the decide response gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Price => "price",
            SkipReason::MinRoas => "min_roas",
            SkipReason::Throttle => "throttle",
            SkipReason::Budget => "budget",
            SkipReason::DailyCap => "daily_cap",
            SkipReason::BeforeFlight => "before_flight",
            SkipReason::AfterFlight => "after_flight",
        }
    }

    /// The reason in words, for people (the ad server does not bid).
    pub fn describe(self) -> &'static str {
        match self {
            SkipReason::Price => {
                "the opportunity is worth less than the price of money times its expected cost; do not bid"
            }
            SkipReason::MinRoas => {
                "the opportunity is not expected to return min_roas times its cost; do not bid"
            }
            SkipReason::Throttle => {
                "even pacing buys this share of opportunities at random; do not bid"
            }
            SkipReason::Budget => {
                "the flight budget, with the spend reserved, cannot pay for it; do not bid"
            }
            SkipReason::DailyCap => {
                "today's cap, with the spend reserved, cannot pay for it; do not bid"
            }
            SkipReason::BeforeFlight => "the flight has not started; do not bid",
            SkipReason::AfterFlight => "the flight has ended; do not bid",
        }
    }
}

/// The price of money in words, for reports: what the next dollar buys.
pub fn price_in_words(price_of_money: f64) -> String {
    if price_of_money > 0.0 && price_of_money.is_finite() {
        format!("the next $1 buys about ${price_of_money:.2} of donations")
    } else {
        "the budget reaches further than what is worth buying: every opportunity worth anything is bought".to_string()
    }
}

/// A flight's money: what the pacer keeps to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PacingConfig {
    /// How the budget is spent.
    pub mode: PacingMode,
    /// The flight budget (positive).
    pub budget: f64,
    /// The most spent in one day (UTC days: from a multiple of [`DAY_MS`]).
    pub daily_cap: Option<f64>,
    /// Start of the flight, in milliseconds.
    pub start_ms: i64,
    /// End of the flight (exclusive), in milliseconds; after `start_ms`.
    pub end_ms: i64,
    /// Minimum return: an opportunity is bought only if its sampled value is at least
    /// this many times its expected cost.
    pub min_roas: Option<f64>,
    /// The traffic's shape over the hours of the day, as the campaign team expects it
    /// (relative weights; `None`: flat). The forecast scales it to the traffic seen and
    /// lets each hour's own count take over as it is watched.
    pub hourly_traffic: Option<[f64; HOURS]>,
}

impl PacingConfig {
    /// The two arms of a flight with a holdout of `share` (in (0, 1), `docs/pacing.md`):
    /// the policy's arm keeps this config with `1 - share` of the budget and of the daily
    /// cap; the holdout's arm spends `share` of them evenly over its own traffic
    /// ([`PacingMode::Even`], buying at random at the even plan's rate) with no minimum
    /// return, so no price of money gates what the holdout sees. Each arm's [`Pacer`]
    /// sees only its own opportunities.
    pub fn split_holdout(&self, share: f64) -> (PacingConfig, PacingConfig) {
        let part = |k: f64| PacingConfig {
            budget: self.budget * k,
            daily_cap: self.daily_cap.map(|cap| cap * k),
            ..*self
        };
        (
            part(1.0 - share),
            PacingConfig {
                mode: PacingMode::Even,
                min_roas: None,
                ..part(share)
            },
        )
    }
}

/// Log-normal costs per segment and hour of the day: `log c = m + a_s + b_h + ε`,
/// `ε ~ N(0, σ²)`, with Gaussian priors shrinking `a_s` and `b_h` to 0 (a segment or
/// hour seen little costs about what the others cost), fitted by weighted alternating
/// least squares on the sufficient statistics of each (segment, hour) cell.
#[derive(Debug, Clone)]
pub struct CostModel {
    segments: usize,
    /// Per cell `s * 24 + h`: observations (impressions).
    n: Vec<f64>,
    /// Per cell: sum of log costs.
    sum: Vec<f64>,
    /// Per cell: sum of squared log costs (individual costs only).
    sum2: Vec<f64>,
    /// Per cell: individual costs (the within-cell spread is learned from them).
    singles: Vec<f64>,
    fit: Option<CostFit>,
    dirty: bool,
}

/// Prior weight, in observations, pulling a segment's or an hour's effect to 0.
const COST_PRIOR_WEIGHT: f64 = 4.0;
/// Prior log-scale spread of one cost around its cell's mean, and its weight in
/// observations.
const COST_PRIOR_SIGMA: f64 = 0.5;
const COST_PRIOR_SIGMA_WEIGHT: f64 = 10.0;

#[derive(Debug, Clone)]
struct CostFit {
    m: f64,
    a: Vec<f64>,
    b: [f64; HOURS],
    var_a: Vec<f64>,
    var_b: [f64; HOURS],
    var_m: f64,
    sigma2: f64,
}

impl CostModel {
    /// A model of `segments` segments that has seen no cost.
    pub fn new(segments: usize) -> Self {
        let cells = segments * HOURS;
        Self {
            segments,
            n: vec![0.0; cells],
            sum: vec![0.0; cells],
            sum2: vec![0.0; cells],
            singles: vec![0.0; cells],
            fit: None,
            dirty: false,
        }
    }

    /// Learns the cost of one impression of `segment` at `hour` (0-23). A cost that is
    /// not positive and finite teaches nothing (the log model has no place for it).
    pub fn observe(&mut self, segment: usize, hour: usize, amount: f64) {
        if !(amount > 0.0 && amount.is_finite()) || segment >= self.segments {
            return;
        }
        let cell = segment * HOURS + hour % HOURS;
        let y = amount.ln();
        self.n[cell] += 1.0;
        self.sum[cell] += y;
        self.sum2[cell] += y * y;
        self.singles[cell] += 1.0;
        self.dirty = true;
    }

    /// Learns a total: `impressions` impressions of `segment` at `hour` cost `spend`
    /// together (a spend report). Their mean cost stands for each of them.
    pub fn observe_total(&mut self, segment: usize, hour: usize, impressions: u64, spend: f64) {
        if impressions == 0 || !(spend > 0.0 && spend.is_finite()) || segment >= self.segments {
            return;
        }
        let cell = segment * HOURS + hour % HOURS;
        let n = impressions as f64;
        let sigma2 = self
            .fit
            .as_ref()
            .map_or(COST_PRIOR_SIGMA.powi(2), |f| f.sigma2);
        // The log of a mean of log-normal costs is about their mean log plus σ²/2.
        let y = (spend / n).ln() - sigma2 / 2.0;
        self.n[cell] += n;
        self.sum[cell] += n * y;
        self.dirty = true;
    }

    /// Impressions whose cost was learned.
    pub fn observations(&self) -> f64 {
        self.n.iter().sum()
    }

    /// Fits the model to what it has learned (cheap: a few sweeps over 24 × segments
    /// cells); the estimates below use the last fit.
    pub fn refit(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        let total: f64 = self.n.iter().sum();
        if total <= 0.0 {
            self.fit = None;
            return;
        }
        let s_count = self.segments;
        let mut m = self.sum.iter().sum::<f64>() / total;
        let mut a = vec![0.0; s_count];
        let mut b = [0.0; HOURS];
        let k = COST_PRIOR_WEIGHT;
        for _ in 0..6 {
            for (s, a_s) in a.iter_mut().enumerate() {
                let (mut num, mut den) = (0.0, k);
                for (h, b_h) in b.iter().enumerate() {
                    let c = s * HOURS + h;
                    num += self.sum[c] - self.n[c] * (m + b_h);
                    den += self.n[c];
                }
                *a_s = num / den;
            }
            for (h, b_h) in b.iter_mut().enumerate() {
                let (mut num, mut den) = (0.0, k);
                for (s, a_s) in a.iter().enumerate() {
                    let c = s * HOURS + h;
                    num += self.sum[c] - self.n[c] * (m + a_s);
                    den += self.n[c];
                }
                *b_h = num / den;
            }
            let mut num = 0.0;
            for (s, a_s) in a.iter().enumerate() {
                for (h, b_h) in b.iter().enumerate() {
                    let c = s * HOURS + h;
                    num += self.sum[c] - self.n[c] * (a_s + b_h);
                }
            }
            m = num / total;
        }
        // Within-cell spread, from individual costs only (a total has none).
        let (mut ss, mut dof) = (0.0, 0.0);
        for c in 0..self.n.len() {
            let singles = self.singles[c];
            if singles >= 2.0 {
                let mean = self.sum[c] / self.n[c];
                ss += (self.sum2[c] - singles * mean * mean).max(0.0);
                dof += singles - 1.0;
            }
        }
        let sigma2 = (ss + COST_PRIOR_SIGMA_WEIGHT * COST_PRIOR_SIGMA.powi(2))
            / (dof + COST_PRIOR_SIGMA_WEIGHT);
        let var_a = (0..s_count)
            .map(|s| sigma2 / (k + (0..HOURS).map(|h| self.n[s * HOURS + h]).sum::<f64>()))
            .collect();
        let mut var_b = [0.0; HOURS];
        for (h, v) in var_b.iter_mut().enumerate() {
            *v = sigma2 / (k + (0..s_count).map(|s| self.n[s * HOURS + h]).sum::<f64>());
        }
        self.fit = Some(CostFit {
            m,
            a,
            b,
            var_a,
            var_b,
            var_m: sigma2 / total,
            sigma2,
        });
    }

    /// The posterior mean and variance of the mean log cost of `segment` at `hour`, if
    /// any cost was learned (as of the last [`CostModel::refit`]).
    fn log_mean(&self, segment: usize, hour: usize) -> Option<(f64, f64)> {
        let fit = self.fit.as_ref()?;
        let h = hour % HOURS;
        Some((
            fit.m + fit.a[segment] + fit.b[h],
            fit.var_m + fit.var_a[segment] + fit.var_b[h],
        ))
    }

    /// The expected cost of one impression of `segment` at `hour`: the log-normal mean
    /// `exp(μ + σ²/2)` with the uncertainty of `μ` added to its variance. `None` before
    /// any cost was learned.
    pub fn expected(&self, segment: usize, hour: usize) -> Option<f64> {
        let (mu, var) = self.log_mean(segment, hour)?;
        let sigma2 = self.fit.as_ref().map_or(0.0, |f| f.sigma2);
        Some((mu + 0.5 * (sigma2 + var)).exp())
    }

    /// A 90% interval of the expected cost of `segment` at `hour` (the uncertainty of
    /// the model, not the spread of single costs).
    pub fn interval(&self, segment: usize, hour: usize) -> Option<(f64, f64)> {
        let (_, var) = self.log_mean(segment, hour)?;
        let mean = self.expected(segment, hour)?;
        let half = 1.645 * var.sqrt();
        Some((mean * (-half).exp(), mean * half.exp()))
    }

    /// The spread of single costs around their cell's mean, on the log scale.
    pub fn sigma(&self) -> f64 {
        self.fit
            .as_ref()
            .map_or(COST_PRIOR_SIGMA, |f| f.sigma2.sqrt())
    }
}

/// Hour of the day (0-23) of a time in milliseconds.
pub fn hour_of(ms: i64) -> usize {
    ms.div_euclid(HOUR_MS).rem_euclid(HOURS as i64) as usize
}

/// The opportunities a campaign sees, by hour of the day and by segment, and a forecast
/// of those still to come.
#[derive(Debug, Clone)]
pub struct Traffic {
    /// Expected relative traffic of each hour of the day (mean 1).
    shape: [f64; HOURS],
    /// Opportunities seen in each hour of the day.
    counts: [f64; HOURS],
    /// Milliseconds observed in each hour of the day.
    exposure_ms: [f64; HOURS],
    /// Opportunities seen per segment.
    segments: Vec<f64>,
    /// Time of the last opportunity (exposure is counted up to it).
    last_ms: Option<i64>,
}

impl Traffic {
    /// No traffic seen, for `segments` segments, expected to follow `shape` over the
    /// hours of the day (relative weights; flat when `None` or not positive).
    pub fn new(segments: usize, shape: Option<[f64; HOURS]>) -> Self {
        let mut weights = shape.unwrap_or([1.0; HOURS]);
        let total: f64 = weights.iter().sum();
        if !(total.is_finite() && total > 0.0 && weights.iter().all(|w| *w >= 0.0)) {
            weights = [1.0; HOURS];
        }
        let mean = weights.iter().sum::<f64>() / HOURS as f64;
        weights.iter_mut().for_each(|w| *w /= mean);
        Self {
            shape: weights,
            counts: [0.0; HOURS],
            exposure_ms: [0.0; HOURS],
            segments: vec![0.0; segments],
            last_ms: None,
        }
    }

    /// Counts an opportunity of `segment` at `now_ms` (times arrive in order; an earlier
    /// time adds no exposure).
    pub fn observe(&mut self, segment: usize, now_ms: i64) {
        if let Some(last) = self.last_ms {
            add_hours(&mut self.exposure_ms, last, now_ms, 1.0);
        }
        self.last_ms = Some(self.last_ms.map_or(now_ms, |l| l.max(now_ms)));
        self.counts[hour_of(now_ms)] += 1.0;
        if let Some(s) = self.segments.get_mut(segment) {
            *s += 1.0;
        }
    }

    /// Opportunities seen.
    pub fn seen(&self) -> f64 {
        self.counts.iter().sum()
    }

    /// Opportunities per millisecond in each hour of the day: the shape scaled to the
    /// traffic seen (`R · shape[h]`, `R` its maximum-likelihood scale) where an hour has
    /// not been watched, the hour's own rate as it is (shrunk toward the scaled shape by
    /// five minutes' exposure).
    pub fn rates(&self) -> [f64; HOURS] {
        let weighted: f64 = self
            .exposure_ms
            .iter()
            .zip(&self.shape)
            .map(|(e, w)| e * w)
            .sum();
        let scale = if weighted > 0.0 {
            self.seen() / weighted
        } else {
            0.0
        };
        let prior_ms = HOUR_MS as f64 / 12.0;
        let mut rates = [0.0; HOURS];
        for (h, r) in rates.iter_mut().enumerate() {
            let prior = scale * self.shape[h];
            *r = (self.counts[h] + prior * prior_ms) / (self.exposure_ms[h] + prior_ms);
        }
        rates
    }

    /// The share of opportunities each segment had so far (even before any).
    pub fn segment_shares(&self) -> Vec<f64> {
        let total: f64 = self.segments.iter().sum();
        let n = self.segments.len().max(1) as f64;
        self.segments
            .iter()
            .map(|&c| if total > 0.0 { c / total } else { 1.0 / n })
            .collect()
    }

    /// Forecast opportunities in each hour of the day between `from_ms` and `to_ms`.
    pub fn forecast(&self, from_ms: i64, to_ms: i64) -> [f64; HOURS] {
        let mut hours = [0.0; HOURS];
        add_hours(&mut hours, from_ms, to_ms, 1.0);
        let rates = self.rates();
        let mut out = [0.0; HOURS];
        for h in 0..HOURS {
            out[h] = hours[h] * rates[h];
        }
        out
    }
}

/// Adds `weight` times the milliseconds of `[from, to)` falling in each hour of the
/// day to `into` (in O(24): whole days are added at once).
fn add_hours(into: &mut [f64; HOURS], from: i64, to: i64, weight: f64) {
    if to <= from {
        return;
    }
    let days = (to - from) / DAY_MS;
    if days > 0 {
        for v in into.iter_mut() {
            *v += weight * (days * HOUR_MS) as f64;
        }
    }
    let mut t = from + days * DAY_MS;
    while t < to {
        let next = (t.div_euclid(HOUR_MS) + 1) * HOUR_MS;
        let end = next.min(to);
        into[hour_of(t)] += weight * (end - t) as f64;
        t = end;
    }
}

/// A (segment, hour of the day) cell of the traffic still to come: what the money rule
/// prices (`docs/pacing.md`, the planner).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpendCell {
    /// The segment.
    pub segment: usize,
    /// The hour of the day (0-23).
    pub hour: usize,
    /// Forecast opportunities of the segment in that hour of the day, over the window.
    pub opportunities: f64,
    /// The expected cost of one of them ([`CostModel::expected`]).
    pub cost: f64,
}

/// The cells of the traffic forecast between `from_ms` and `to_ms`: per hour of the day
/// the forecast opportunities ([`Traffic::forecast`]) split by the segments' shares so
/// far, each with its expected cost (as of the cost model's last [`CostModel::refit`]).
/// Cells without traffic, or whose cost is not known yet, are left out.
pub fn spend_cells(
    traffic: &Traffic,
    costs: &CostModel,
    from_ms: i64,
    to_ms: i64,
) -> Vec<SpendCell> {
    let forecast = traffic.forecast(from_ms, to_ms);
    let shares = traffic.segment_shares();
    let mut cells = Vec::with_capacity(HOURS * shares.len());
    for (hour, &n) in forecast.iter().enumerate() {
        if n <= 0.0 {
            continue;
        }
        for (segment, &p) in shares.iter().enumerate() {
            if p <= 0.0 {
                continue;
            }
            if let Some(cost) = costs.expected(segment, hour) {
                cells.push(SpendCell {
                    segment,
                    hour,
                    opportunities: n * p,
                    cost,
                });
            }
        }
    }
    cells
}

/// The money rule's expected spend at price of money `lambda`:
/// `S(λ) = Σ_cells n · ĉ · P(buy | price λ ĉ)`, with `buy_probability(s, price)` the
/// policy's probability of buying an opportunity of segment `s` at that price.
pub fn expected_spend(
    cells: &[SpendCell],
    lambda: f64,
    buy_probability: &dyn Fn(usize, f64) -> f64,
) -> f64 {
    cells
        .iter()
        .map(|c| c.opportunities * c.cost * buy_probability(c.segment, lambda * c.cost))
        .sum()
}

/// **The money rule's price of money**: the `λ` at which the expected spend over
/// `cells` ([`expected_spend`]) matches `budget`, by bisection on `log λ` bracketed
/// around `previous` (the last solution, or 0); 0 when even buying everything worth
/// anything would not spend the budget. The pacer's planner ([`Pacer::replan`]) and
/// the plans of a period on an ad platform ([`crate::plan`]) both price with it.
pub fn solve_price(
    cells: &[SpendCell],
    budget: f64,
    previous: f64,
    buy_probability: &dyn Fn(usize, f64) -> f64,
) -> f64 {
    let spend_at = |lambda: f64| expected_spend(cells, lambda, buy_probability);
    if cells.is_empty() || spend_at(0.0) <= budget {
        return 0.0;
    }
    // spend_at falls as λ rises: bracket log λ around the last solution, widening
    // until it holds the answer, then bisect.
    let centre = if previous > 0.0 { previous.ln() } else { 0.0 };
    let (mut lo, mut hi) = (centre - 0.5, centre + 0.5);
    let mut width = 0.5;
    while spend_at(lo.exp()) <= budget && lo > -LOG_PRICE_LIMIT {
        width *= 2.0;
        lo -= width;
    }
    while spend_at(hi.exp()) > budget && hi < LOG_PRICE_LIMIT {
        width *= 2.0;
        hi += width;
    }
    for _ in 0..PLAN_ITERATIONS {
        let mid = 0.5 * (lo + hi);
        if spend_at(mid.exp()) > budget {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi.exp()
}

/// What the pacer says of one opportunity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bid {
    /// The gate the policy decides under.
    pub gate: Gate,
    /// Why the opportunity is skipped if the decision skips: the gate's own reason when
    /// it is closed, else what its price or throttle stands for.
    pub skip_reason: SkipReason,
    /// The opportunity's expected cost (`None` before any cost was learned).
    pub expected_cost: Option<f64>,
    /// What to reserve if it is bought ([`Pacer::reserve`]).
    pub reserve: f64,
    /// Hour of the day of the opportunity.
    pub hour: usize,
}

/// Where a flight's spend stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PacingStatus {
    /// The mode.
    pub mode: PacingMode,
    /// The flight budget in force.
    pub budget: f64,
    /// The daily cap in force.
    pub daily_cap: Option<f64>,
    /// Spent so far.
    pub spent: f64,
    /// Reserved for opportunities bought whose cost has not arrived.
    pub reserved: f64,
    /// Spent today (the flight's current day).
    pub spent_today: f64,
    /// What the spend plan (shaped like the traffic) says should be spent by now.
    pub planned: f64,
    /// The price of money: the value a dollar must buy to be spent now (also, about,
    /// the value the next dollar buys).
    pub price_of_money: f64,
    /// The planner's part of the price of money (before the feedback correction).
    pub planned_price: f64,
    /// The share of opportunities even pacing buys.
    pub throttle: f64,
    /// Opportunities seen.
    pub opportunities: u64,
}

/// The pacing rule of one flight: reservations, spend, the cost model, the traffic
/// forecast and the price of money.
#[derive(Debug, Clone)]
pub struct Pacer {
    config: PacingConfig,
    costs: CostModel,
    traffic: Traffic,
    spent: f64,
    reserved: f64,
    /// Day of the flight `spent_today` and `reserved_today` belong to.
    day: i64,
    spent_today: f64,
    reserved_today: f64,
    /// The plan starts from here: (time, spend then). Moved by a budget change.
    anchor: (i64, f64),
    lambda: f64,
    lambda_plan: f64,
    throttle: f64,
    since_plan: u64,
    planned_at: Option<i64>,
    planned: f64,
    /// Whether a plan was made since any cost was learned.
    planned_with_costs: bool,
    opportunities: u64,
}

impl Pacer {
    /// A pacer for a flight of `segments` segments that has spent nothing.
    pub fn new(config: PacingConfig, segments: usize) -> Self {
        Self {
            anchor: (config.start_ms, 0.0),
            config,
            costs: CostModel::new(segments),
            traffic: Traffic::new(segments, config.hourly_traffic),
            spent: 0.0,
            reserved: 0.0,
            day: 0,
            spent_today: 0.0,
            reserved_today: 0.0,
            lambda: 0.0,
            lambda_plan: 0.0,
            throttle: 1.0,
            since_plan: 0,
            planned_at: None,
            planned: 0.0,
            planned_with_costs: false,
            opportunities: 0,
        }
    }

    /// The flight's money as configured now.
    pub fn config(&self) -> &PacingConfig {
        &self.config
    }

    /// The cost model.
    pub fn costs(&self) -> &CostModel {
        &self.costs
    }

    /// The traffic seen.
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// The cost model fitted to everything it has learned (a plan prices with it).
    pub fn fitted_costs(&mut self) -> &CostModel {
        self.costs.refit();
        &self.costs
    }

    /// Learns that `impressions` impressions of `segment` at `hour` cost `amount`
    /// together, without counting it as spent: for spend the caller counts from its
    /// store ([`Pacer::set_spent`]), such as a platform's results.
    pub fn learn_costs(&mut self, segment: usize, hour: usize, impressions: u64, amount: f64) {
        self.costs.observe_total(segment, hour, impressions, amount);
    }

    /// Whether the planner should solve for the price of money again at `now_ms`:
    /// every [`REPLAN_OPPORTUNITIES`] opportunities or [`REPLAN_MS`] milliseconds, and
    /// once the first costs are learned. The caller runs [`Pacer::replan`] then, off
    /// the decision path where it can (the service does it in its learner step).
    pub fn replan_due(&self, now_ms: i64) -> bool {
        let first_costs = !self.planned_with_costs && self.costs.observations() > 0.0;
        first_costs
            || self.since_plan >= REPLAN_OPPORTUNITIES
            || self
                .planned_at
                .is_none_or(|at| now_ms.saturating_sub(at) >= REPLAN_MS)
    }

    /// Whether no plan was made yet.
    pub fn planned_never(&self) -> bool {
        self.planned_at.is_none()
    }

    /// The bid for an opportunity of `segment` at `now_ms`, under the price of money of
    /// the last plan ([`Pacer::replan`]).
    pub fn bid(&mut self, segment: usize, now_ms: i64) -> Bid {
        self.opportunities += 1;
        self.traffic.observe(segment, now_ms);
        let hour = hour_of(now_ms);
        let closed = |reason| Bid {
            gate: Gate::Closed,
            skip_reason: reason,
            expected_cost: None,
            reserve: 0.0,
            hour,
        };
        if now_ms < self.config.start_ms {
            return closed(SkipReason::BeforeFlight);
        }
        if now_ms >= self.config.end_ms {
            return closed(SkipReason::AfterFlight);
        }
        self.roll_day(now_ms);
        self.since_plan += 1;
        let expected_cost = self.costs.expected(segment, hour);
        let reserve = expected_cost.map_or(0.0, |c| c * (RESERVE_SDS * self.costs.sigma()).exp());
        let mut bid = Bid {
            gate: Gate::Open,
            skip_reason: SkipReason::Price,
            expected_cost,
            reserve,
            hour,
        };
        if self.spent + self.reserved + reserve > self.config.budget
            || self.spent + self.reserved >= self.config.budget
        {
            return Bid {
                gate: Gate::Closed,
                skip_reason: SkipReason::Budget,
                ..bid
            };
        }
        if let Some(cap) = self.config.daily_cap {
            if self.spent_today + self.reserved_today + reserve > cap
                || self.spent_today + self.reserved_today >= cap
            {
                return Bid {
                    gate: Gate::Closed,
                    skip_reason: SkipReason::DailyCap,
                    ..bid
                };
            }
        }
        let Some(cost) = expected_cost else {
            // Nothing is known of costs yet: buy, and learn what things cost.
            return bid;
        };
        let roas = self.config.min_roas.unwrap_or(0.0);
        let priced = |lambda: f64| {
            if roas > lambda {
                (Gate::Price(roas * cost), SkipReason::MinRoas)
            } else {
                (Gate::Price(lambda * cost), SkipReason::Price)
            }
        };
        (bid.gate, bid.skip_reason) = match self.config.mode {
            PacingMode::Value => priced(self.lambda),
            PacingMode::Ratio => priced(1.0),
            PacingMode::Even if roas > 0.0 && self.throttle >= 1.0 => priced(0.0),
            PacingMode::Even => (Gate::Throttle(self.throttle), SkipReason::Throttle),
            PacingMode::None if roas > 0.0 => priced(0.0),
            PacingMode::None => (Gate::Open, SkipReason::Price),
            PacingMode::Platform => (Gate::Open, SkipReason::Throttle),
        };
        bid
    }

    /// Reserves `amount` for an opportunity bought at `now_ms` whose cost has not
    /// arrived; [`Pacer::settle`] or [`Pacer::release`] gives it back.
    pub fn reserve(&mut self, amount: f64, now_ms: i64) {
        self.roll_day(now_ms);
        self.reserved += amount;
        self.reserved_today += amount;
    }

    /// The cost of an opportunity bought for `segment` at `hour` arrived at `now_ms`:
    /// its reservation `reserved` is given back and `cost` spent (and learned).
    pub fn settle(&mut self, reserved: f64, segment: usize, hour: usize, cost: f64, now_ms: i64) {
        self.release(reserved, now_ms);
        self.spend(cost, now_ms);
        self.costs.observe(segment, hour, cost);
    }

    /// Gives back a reservation whose cost will not arrive.
    pub fn release(&mut self, reserved: f64, now_ms: i64) {
        self.roll_day(now_ms);
        self.reserved = (self.reserved - reserved).max(0.0);
        self.reserved_today = (self.reserved_today - reserved).max(0.0);
    }

    /// Spend not tied to an opportunity bought here (a spend report): counted against
    /// the budget and the day of `now_ms`, and, with its impressions, learned as costs
    /// of `segment` at `hour`.
    pub fn report_spend(
        &mut self,
        segment: usize,
        hour: usize,
        impressions: u64,
        amount: f64,
        now_ms: i64,
    ) {
        self.spend(amount, now_ms);
        self.costs.observe_total(segment, hour, impressions, amount);
    }

    fn spend(&mut self, amount: f64, now_ms: i64) {
        if !(amount.is_finite() && amount > 0.0) {
            return;
        }
        self.roll_day(now_ms);
        self.spent += amount;
        self.spent_today += amount;
    }

    /// Sets what was spent so far, and today (the UTC day of `now_ms`), after a
    /// restart or a correction: the store's totals of cost events and spend reports.
    pub fn set_spent(&mut self, spent: f64, spent_today: f64, now_ms: i64) {
        self.roll_day(now_ms);
        if spent.is_finite() && spent >= 0.0 {
            self.spent = spent;
        }
        if spent_today.is_finite() && spent_today >= 0.0 {
            self.spent_today = spent_today;
        }
    }

    /// A new budget or daily cap from `now_ms`: what was spent stays spent; the plan
    /// spreads the rest over the traffic still to come.
    pub fn set_budget(&mut self, budget: f64, daily_cap: Option<f64>, now_ms: i64) {
        self.config.budget = budget;
        self.config.daily_cap = daily_cap;
        self.anchor = (now_ms.max(self.config.start_ms), self.spent + self.reserved);
        self.planned_at = None;
    }

    fn roll_day(&mut self, now_ms: i64) {
        let day = now_ms.div_euclid(DAY_MS);
        if day != self.day {
            self.day = day;
            self.spent_today = 0.0;
            self.reserved_today = 0.0;
        }
    }

    /// What the spend plan says should be spent by `now_ms`: from the anchor, the rest
    /// of the budget in proportion to the traffic forecast.
    fn plan_at(&self, now_ms: i64) -> f64 {
        let (at, spent_then) = self.anchor;
        let total: f64 = self.traffic.forecast(at, self.config.end_ms).iter().sum();
        let done: f64 = self
            .traffic
            .forecast(at, now_ms.min(self.config.end_ms))
            .iter()
            .sum();
        let share = if total > 0.0 { done / total } else { 0.0 };
        spent_then + (self.config.budget - spent_then).max(0.0) * share
    }

    /// Solves for the price of money (or the throttle) at `now_ms`, with
    /// `buy_probability(s, price)` the policy's probability of buying an opportunity of
    /// segment `s` at that price (1 minus
    /// [`crate::policy::PricedPolicy::skip_probability`]); when [`Pacer::replan_due`].
    pub fn replan(&mut self, now_ms: i64, buy_probability: &dyn Fn(usize, f64) -> f64) {
        self.since_plan = 0;
        self.planned_at = Some(now_ms);
        self.planned_with_costs = self.costs.observations() > 0.0;
        self.costs.refit();
        let flight_days =
            ((self.config.end_ms - self.config.start_ms) as f64 / DAY_MS as f64).max(1e-9);
        let mut remaining = (self.config.budget - self.spent - self.reserved).max(0.0);
        if let Some(cap) = self.config.daily_cap {
            // What the caps still allow: today's rest, then a cap for each day left.
            let day_end = (self.day + 1) * DAY_MS;
            let later_days = ((self.config.end_ms - day_end).max(0) as f64) / DAY_MS as f64;
            let today = (cap - self.spent_today - self.reserved_today).max(0.0);
            remaining = remaining.min(today + cap * later_days.ceil());
        }
        self.planned = self.plan_at(now_ms);
        let ahead =
            (self.spent + self.reserved - self.planned) / (self.config.budget / flight_days);
        let correction = (FEEDBACK_GAIN * ahead.clamp(-FEEDBACK_LIMIT, FEEDBACK_LIMIT)).exp();
        let cells = spend_cells(&self.traffic, &self.costs, now_ms, self.config.end_ms);
        match self.config.mode {
            PacingMode::Value => {
                self.lambda_plan =
                    solve_price(&cells, remaining, self.lambda_plan, buy_probability);
                self.lambda = self.lambda_plan * correction;
            }
            PacingMode::Even => {
                let all: f64 = cells.iter().map(|c| c.opportunities * c.cost).sum();
                self.throttle = if all > 0.0 {
                    (remaining / all / correction).clamp(0.0, 1.0)
                } else {
                    1.0
                };
            }
            PacingMode::Ratio | PacingMode::None | PacingMode::Platform => {}
        }
    }

    /// The price of money now.
    pub fn price_of_money(&self) -> f64 {
        self.lambda
    }

    /// Where the flight's spend stands at `now_ms`.
    pub fn status(&self, now_ms: i64) -> PacingStatus {
        let today = now_ms.div_euclid(DAY_MS) == self.day;
        PacingStatus {
            mode: self.config.mode,
            budget: self.config.budget,
            daily_cap: self.config.daily_cap,
            spent: self.spent,
            reserved: self.reserved,
            spent_today: if today { self.spent_today } else { 0.0 },
            planned: self.plan_at(now_ms.clamp(self.config.start_ms, self.config.end_ms)),
            price_of_money: self.lambda,
            planned_price: self.lambda_plan,
            throttle: self.throttle,
            opportunities: self.opportunities,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};

    #[test]
    fn the_cost_model_learns_segment_and_hour_effects() {
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(1);
        let per_segment = [0.5, 2.0, 1.0];
        let per_hour: Vec<f64> = (0..HOURS).map(|h| 0.6 + 0.03 * h as f64).collect();
        let sigma = 0.25f64;
        let mut model = CostModel::new(3);
        assert_eq!(model.expected(0, 0), None);
        for i in 0..60_000 {
            let (s, h) = (i % 3, (i / 3) % HOURS);
            let z: f64 = StandardNormal.sample(&mut rng);
            let cost = per_segment[s] * per_hour[h] * (sigma * z - sigma * sigma / 2.0).exp();
            model.observe(s, h, cost);
        }
        model.refit();
        for s in 0..3 {
            for h in [0, 7, 23] {
                let want = per_segment[s] * per_hour[h];
                let got = model.expected(s, h).unwrap();
                assert!(
                    (got / want - 1.0).abs() < 0.03,
                    "s {s} h {h}: {got} vs {want}"
                );
                let (lo, hi) = model.interval(s, h).unwrap();
                assert!(lo < got && got < hi && hi / lo < 1.2);
            }
        }
        assert!((model.sigma() - sigma).abs() < 0.01, "{}", model.sigma());
        // A segment seen only through a spend report is learned from it.
        let mut reported = CostModel::new(2);
        reported.observe(0, 5, 1.0);
        reported.observe_total(1, 5, 1_000, 3_000.0);
        reported.refit();
        let c = reported.expected(1, 5).unwrap();
        assert!((c / 3.0 - 1.0).abs() < 0.1, "{c}");
    }

    #[test]
    fn the_traffic_forecast_follows_the_hours_seen() {
        let mut traffic = Traffic::new(2, None);
        // Two opportunities a minute by day (hours 6-21), one by night, for two days.
        let mut t = 0i64;
        while t < 2 * DAY_MS {
            let h = hour_of(t);
            traffic.observe((t / 60_000 % 2) as usize, t);
            t += if (6..22).contains(&h) { 30_000 } else { 60_000 };
        }
        let next_day = traffic.forecast(2 * DAY_MS, 3 * DAY_MS);
        // Within 5%: each hour is shrunk a little toward the overall rate.
        assert!((next_day[12] - 120.0).abs() < 6.0, "{}", next_day[12]);
        assert!((next_day[2] - 60.0).abs() < 3.0, "{}", next_day[2]);
        let shares = traffic.segment_shares();
        assert!((shares[0] - 0.5).abs() < 0.01);
        // Half an hour is half an hour's traffic.
        let half = traffic.forecast(
            2 * DAY_MS + 12 * HOUR_MS,
            2 * DAY_MS + 12 * HOUR_MS + HOUR_MS / 2,
        );
        assert!((half.iter().sum::<f64>() - 60.0).abs() < 1.0);

        // With the shape known, one quiet hour forecasts the busy ones.
        let mut shape = [1.0; HOURS];
        shape[6..22].iter_mut().for_each(|w| *w = 2.0);
        let mut shaped = Traffic::new(1, Some(shape));
        for i in 0..60 {
            shaped.observe(0, i * 60_000);
        }
        let day = shaped.forecast(HOUR_MS, DAY_MS);
        assert!((day[12] - 120.0).abs() < 6.0, "{}", day[12]);
        assert!((day[2] - 60.0).abs() < 3.0, "{}", day[2]);
    }

    fn config(mode: PacingMode) -> PacingConfig {
        PacingConfig {
            mode,
            budget: 100.0,
            daily_cap: None,
            start_ms: 0,
            end_ms: 10 * DAY_MS,
            min_roas: None,
            hourly_traffic: None,
        }
    }

    /// Drives a pacer over a flight where an opportunity of segment 0 is worth 2 per
    /// dollar and of segment 1 worth 0.5 per dollar, each costing 0.01, one a minute.
    /// Returns the spend per day and the pacer.
    fn fly(config: PacingConfig) -> (Vec<f64>, Pacer) {
        let mut pacer = Pacer::new(config, 2);
        let days = ((config.end_ms - config.start_ms) / DAY_MS) as usize;
        let mut per_day = vec![0.0; days];
        // A policy whose draws for segment s are all worth `worth[s]` per impression.
        let worth = [0.02, 0.005];
        let buys = |s: usize, price: f64| if worth[s] > price { 1.0 } else { 0.0 };
        let mut t = config.start_ms;
        let mut i = 0usize;
        while t < config.end_ms {
            let s = i % 2;
            if pacer.replan_due(t) {
                pacer.replan(t, &buys);
            }
            let bid = pacer.bid(s, t);
            let bought = match bid.gate {
                Gate::Open => true,
                Gate::Price(p) => worth[s] > p,
                Gate::Throttle(q) => (i as f64 * 0.618_033_988_7).fract() < q,
                Gate::Closed => false,
            };
            if bought {
                pacer.reserve(bid.reserve, t);
                pacer.settle(bid.reserve, s, bid.hour, 0.01, t);
                per_day[((t - config.start_ms) / DAY_MS) as usize] += 0.01;
            }
            t += 60_000;
            i += 1;
        }
        (per_day, pacer)
    }

    #[test]
    fn value_pacing_buys_the_better_dollars_and_spends_the_budget_evenly() {
        // 14,400 opportunities at 0.01: 144 on offer, 72 of them in segment 0.
        let (per_day, pacer) = fly(config(PacingMode::Value));
        let spent: f64 = per_day.iter().sum();
        assert!(spent <= 100.0 + 1e-9, "never past the budget: {spent}");
        assert!(spent >= 98.0, "the budget is spent: {spent}");
        for d in &per_day {
            assert!((d - 10.0).abs() < 1.5, "daily spend {per_day:?}");
        }
        // Segment 0 alone (72 on offer) cannot take the budget: the price settles where
        // segment 1's dollars (0.5 each) are bought in part.
        let lambda = pacer.price_of_money();
        assert!((0.4..=0.6).contains(&lambda), "{lambda}");
    }

    #[test]
    fn the_budget_and_the_daily_cap_are_never_exceeded() {
        let (per_day, _) = fly(PacingConfig {
            daily_cap: Some(4.0),
            ..config(PacingMode::None)
        });
        assert!(per_day.iter().all(|&d| d <= 4.0 + 1e-9), "{per_day:?}");
        let (per_day, _) = fly(config(PacingMode::None));
        let spent: f64 = per_day.iter().sum();
        assert!(spent <= 100.0 + 1e-9 && spent > 99.0, "{spent}");
        // 1,440 opportunities a day at 0.01: none buys them all until the budget is gone.
        assert!((per_day[0] - 14.4).abs() < 1e-6, "{per_day:?}");
        assert_eq!(per_day[9], 0.0, "{per_day:?}");
    }

    #[test]
    fn even_pacing_spreads_the_budget() {
        let (per_day, _) = fly(config(PacingMode::Even));
        let spent: f64 = per_day.iter().sum();
        assert!(spent > 97.0 && spent <= 100.0 + 1e-9, "{spent}");
        for d in &per_day {
            assert!((d - 10.0).abs() < 1.5, "{per_day:?}");
        }
    }

    #[test]
    fn min_roas_and_the_ratio_rule_skip_what_returns_too_little() {
        let (per_day, _) = fly(PacingConfig {
            min_roas: Some(1.0),
            budget: 1_000.0,
            ..config(PacingMode::Value)
        });
        // Only segment 0 returns its cost: 72 of the 144 on offer.
        let spent: f64 = per_day.iter().sum();
        assert!((spent - 72.0).abs() < 0.5, "{spent}");
        let (per_day, _) = fly(PacingConfig {
            budget: 1_000.0,
            ..config(PacingMode::Ratio)
        });
        let spent: f64 = per_day.iter().sum();
        assert!((spent - 72.0).abs() < 0.5, "{spent}");
    }

    #[test]
    fn a_budget_change_keeps_what_was_spent_and_plans_the_rest() {
        let mut pacer = Pacer::new(config(PacingMode::Value), 1);
        let buys = |_: usize, _: f64| 1.0;
        for i in 0..100 {
            if pacer.replan_due(i * 60_000) {
                pacer.replan(i * 60_000, &buys);
            }
            let bid = pacer.bid(0, i * 60_000);
            pacer.reserve(bid.reserve, i * 60_000);
            pacer.settle(bid.reserve, 0, bid.hour, 0.5, i * 60_000);
        }
        let before = pacer.status(100 * 60_000);
        pacer.set_budget(60.0, Some(5.0), 100 * 60_000);
        let after = pacer.status(100 * 60_000);
        assert_eq!(after.spent, before.spent);
        assert_eq!(after.budget, 60.0);
        assert!(
            (after.planned - after.spent).abs() < 1e-9,
            "the plan starts from the change"
        );
        let bid = pacer.bid(0, 101 * 60_000);
        assert_eq!(bid.gate, Gate::Closed, "today's cap of 5 is spent");
        assert_eq!(bid.skip_reason, SkipReason::DailyCap);
        let outside = pacer.bid(0, 11 * DAY_MS);
        assert_eq!(outside.skip_reason, SkipReason::AfterFlight);
    }

    #[test]
    fn hours_of_a_span_add_up() {
        let mut hours = [0.0; HOURS];
        add_hours(
            &mut hours,
            5 * HOUR_MS + 1_000,
            3 * DAY_MS + 2 * HOUR_MS,
            1.0,
        );
        let total: f64 = hours.iter().sum();
        assert_eq!(
            total,
            (3 * DAY_MS + 2 * HOUR_MS - 5 * HOUR_MS - 1_000) as f64
        );
        // Two whole days, then 05:00:01 of the third to 02:00 of the fourth.
        assert_eq!(hours[3], (2 * HOUR_MS) as f64);
        assert_eq!(hours[1], (3 * HOUR_MS) as f64);
        assert_eq!(hours[5], (3 * HOUR_MS - 1_000) as f64);
        assert_eq!(hour_of(-1), 23);
    }
}
