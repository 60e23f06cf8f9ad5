//! Donation amount given a conversion: log-normal, with a Bayesian linear model of the
//! log amount.
//!
//! `log(amount) = b + seg_s + ask_a + seg_ask_{s,a} + slope * x_a + noise`, where `a` is
//! the option of the ask-carrying component, `x_a = log(ask_a / reference_ask)`
//! (the asks are known before any data, so gifts can be related across asks from the
//! first donation), and `noise ~ N(0, sigma^2)`. Every weight has an independent
//! Gaussian belief. The Gaussian likelihood makes each update a Kalman step, projected
//! back onto independent beliefs (assumed-density filtering):
//! `S = sigma^2 + sum_i x_i^2 s_i^2`, `r = y - sum_i x_i mu_i`,
//! `mu_i += x_i s_i^2 r / S`, `s_i^2 -= (x_i s_i^2)^2 / S`.
//! The segment and (segment, ask) weights start at zero with a small variance, so each
//! (segment, ask) cell is shrunk toward the campaign-wide estimate until its own
//! donations outweigh the prior. `sigma^2` has an inverse-gamma belief `IG(a, b)`
//! updated with the standardized residual: `a += 1/2`, `b += r^2 sigma^2 / (2 S)`.
//!
//! # Heavy tails: a Huber-type step
//!
//! Donations have heavy tails, and one amount typed wrong (an order number pasted as a
//! value) must not decide a campaign. So the step above is taken with the residual
//! clipped at `c` predictive standard deviations:
//! `r_c = clamp(r, -c sqrt(S), c sqrt(S))`, and `r_c` replaces `r` in the mean and in the
//! noise update (`b += r_c^2 sigma^2 / (2 S)`); the variances shrink as in the Gaussian
//! step. This is the Kalman step on the winsorized log amount `y_c = prediction + r_c`,
//! i.e. the ADF step of a Huber likelihood (Gaussian within `c sqrt(S)`, Laplace-like
//! beyond). The cap is learned, not fixed: `S` holds the noise variance learned from the
//! campaign's own amounts and the weights' uncertainty, and the prediction starts at the
//! asks' geometric mean. One amount moves a weight by at most
//! `x_i s_i^2 c / sqrt(S)`, and the noise belief by at most `c^2 sigma^2 / 2`, however
//! large it is. [`DEFAULT_RESIDUAL_CUTOFF`] is `c = 3`: a log-normal amount lies beyond
//! it 0.27% of the time, where clipping costs little; with honest data the step is the
//! Gaussian one almost always. `exp(y_c)`, what the model learned from, is
//! [`ValueModel::learned_amount`]; an infinite cutoff gives back the plain Gaussian step.
//!
//! `E[amount | conversion] = exp(mean + sigma^2 / 2)`.

use super::Belief;
use super::forgetting::ForgettingClock;
use crate::design::Design;

/// Default Huber cutoff of the value model, in predictive standard deviations of the
/// log amount (see the module documentation).
pub const DEFAULT_RESIDUAL_CUTOFF: f64 = 3.0;

/// Prior settings of the value model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValuePrior {
    /// Prior mean of the log amount when no ask is known.
    pub log_amount_mean: f64,
    /// Prior variance of the bias.
    pub bias_variance: f64,
    /// Prior variance of each segment weight.
    pub segment_variance: f64,
    /// Prior variance of each ask option's own weight.
    pub ask_variance: f64,
    /// Prior variance of each (segment, ask option) weight.
    pub segment_ask_variance: f64,
    /// Prior variance of the slope on the log ask (prior mean 0).
    pub slope_variance: f64,
    /// Prior guess of the log-amount noise variance.
    pub noise_variance: f64,
    /// Weight of that guess, in pseudo-observations.
    pub noise_pseudo_count: f64,
    /// Huber cutoff `c`: a log-amount residual is clipped at `c` predictive standard
    /// deviations before it is learned ([`DEFAULT_RESIDUAL_CUTOFF`]; positive;
    /// `f64::INFINITY` gives the plain Gaussian step).
    pub residual_cutoff: f64,
}

impl Default for ValuePrior {
    fn default() -> Self {
        Self {
            log_amount_mean: 25f64.ln(),
            bias_variance: 1.0,
            segment_variance: 0.09,
            ask_variance: 0.04,
            segment_ask_variance: 0.02,
            slope_variance: 1.0,
            noise_variance: 1.0,
            noise_pseudo_count: 4.0,
            residual_cutoff: DEFAULT_RESIDUAL_CUTOFF,
        }
    }
}

/// The donation model of one campaign.
#[derive(Debug, Clone)]
pub struct ValueModel {
    segments: usize,
    /// Options of the ask component (0 when there is none).
    ask_options: usize,
    /// `log(ask / reference)` per ask option.
    log_ask: Vec<f64>,
    /// Layout: bias, slope, segments, ask options, (segment, ask) segment-major.
    weights: Vec<Belief>,
    /// Each weight's prior, what forgetting pulls it back toward.
    priors: std::sync::Arc<[Belief]>,
    /// Forgetting: the half-life and each weight's last-update time. The noise belief
    /// does not forget.
    clock: ForgettingClock,
    /// The latest time the model has seen, ms.
    now_millis: u64,
    /// Inverse-gamma shape of the noise variance.
    noise_shape: f64,
    /// Inverse-gamma scale of the noise variance.
    noise_scale: f64,
    /// Donations learned.
    observations: u64,
    /// Huber cutoff in predictive standard deviations.
    residual_cutoff: f64,
}

const BIAS: usize = 0;
const SLOPE: usize = 1;
const FIRST_SEGMENT: usize = 2;

impl ValueModel {
    /// A model at its prior. The bias starts at the log of the geometric mean ask when
    /// the campaign declares asks, otherwise at `prior.log_amount_mean`.
    pub fn new(design: &Design, prior: ValuePrior) -> Self {
        let segments = design.segments();
        let (ask_options, log_ask, bias_mean) = match &design.ask {
            Some(ask) => {
                let logs: Vec<f64> = ask.amounts.iter().map(|a| a.ln()).collect();
                let reference = logs.iter().sum::<f64>() / logs.len() as f64;
                (
                    ask.amounts.len(),
                    logs.iter().map(|l| l - reference).collect(),
                    reference,
                )
            }
            None => (0, Vec::new(), prior.log_amount_mean),
        };
        let len = FIRST_SEGMENT + segments + ask_options + segments * ask_options;
        let mut weights = vec![Belief::new(0.0, prior.segment_ask_variance); len];
        weights[BIAS] = Belief::new(bias_mean, prior.bias_variance);
        weights[SLOPE] = Belief::new(0.0, prior.slope_variance);
        for s in 0..segments {
            weights[FIRST_SEGMENT + s].variance = prior.segment_variance;
        }
        for a in 0..ask_options {
            weights[FIRST_SEGMENT + segments + a].variance = prior.ask_variance;
        }
        let noise_shape = 1.0 + prior.noise_pseudo_count / 2.0;
        Self {
            segments,
            ask_options,
            log_ask,
            clock: ForgettingClock::new(len, None),
            priors: weights.clone().into(),
            now_millis: 0,
            weights,
            noise_shape,
            noise_scale: prior.noise_variance * (noise_shape - 1.0),
            observations: 0,
            residual_cutoff: prior.residual_cutoff,
        }
    }

    /// Active (index, value) features of (segment, ask option).
    fn features(&self, segment: usize, ask_option: Option<usize>) -> ([(usize, f64); 5], usize) {
        let mut out = [(0, 0.0); 5];
        out[0] = (BIAS, 1.0);
        out[1] = (FIRST_SEGMENT + segment, 1.0);
        let Some(a) = ask_option.filter(|_| self.ask_options > 0) else {
            return (out, 2);
        };
        out[2] = (SLOPE, self.log_ask[a]);
        out[3] = (FIRST_SEGMENT + self.segments + a, 1.0);
        out[4] = (
            FIRST_SEGMENT + self.segments + self.ask_options + segment * self.ask_options + a,
            1.0,
        );
        (out, 5)
    }

    /// Sets the forgetting half-life (`None`: never forget, see
    /// [`super::forgetting`]). Weights keep their update times when the model already
    /// forgot; otherwise they count as up to date at the model's time.
    pub fn set_half_life(&mut self, half_life_millis: Option<u64>) {
        if half_life_millis == self.clock.half_life_millis() {
            return;
        }
        let times = if self.clock.is_on() {
            self.clock.touched().to_vec()
        } else {
            vec![self.now_millis; self.weights.len()]
        };
        self.clock = ForgettingClock::new(self.weights.len(), half_life_millis);
        self.clock.set_touched(times);
    }

    /// The forgetting half-life, ms (`None`: no forgetting).
    pub fn half_life_millis(&self) -> Option<u64> {
        self.clock.half_life_millis()
    }

    /// Brings every weight up to time `now` (forgetting), so reads see the beliefs
    /// forgotten up to then.
    pub fn bring_up_to_date(&mut self, now_millis: u64) {
        self.now_millis = self.now_millis.max(now_millis);
        self.clock
            .bring_all_up_to_date(self.now_millis, &mut self.weights, &self.priors);
    }

    /// Point estimate of the log-amount noise variance (posterior mean).
    pub fn noise_variance(&self) -> f64 {
        self.noise_scale / (self.noise_shape - 1.0)
    }

    /// Donations learned so far.
    pub fn observations(&self) -> u64 {
        self.observations
    }

    /// Number of options of the ask component (0 without one).
    pub fn ask_options(&self) -> usize {
        self.ask_options
    }

    /// The predictive mean and variance `S` of the log amount of (segment, ask option)
    /// under the current beliefs, noise included.
    fn predictive(&self, segment: usize, ask_option: Option<usize>) -> (f64, f64) {
        let (features, n) = self.features(segment, ask_option);
        let mut predicted = 0.0;
        let mut total = self.noise_variance();
        for &(i, x) in &features[..n] {
            predicted += x * self.weights[i].mean;
            total += x * x * self.weights[i].variance;
        }
        (predicted, total)
    }

    /// The residual of log amount `y` against `predicted`, clipped at the cutoff times
    /// the predictive standard deviation `sqrt(total)`.
    fn clipped_residual(&self, y: f64, predicted: f64, total: f64) -> f64 {
        let bound = self.residual_cutoff * total.sqrt();
        (y - predicted).clamp(-bound, bound)
    }

    /// The amount the model would learn from if `amount` (positive, finite) arrived now
    /// for (segment, ask option): `exp` of the winsorized log amount, equal to `amount`
    /// unless it lies beyond the cutoff.
    pub fn learned_amount(&self, segment: usize, ask_option: Option<usize>, amount: f64) -> f64 {
        let (predicted, total) = self.predictive(segment, ask_option);
        let residual = self.clipped_residual(amount.ln(), predicted, total);
        if residual == amount.ln() - predicted {
            amount
        } else {
            (predicted + residual).exp()
        }
    }

    /// Learns one donation amount (must be positive and finite) with the Huber-type
    /// step of the module documentation.
    pub fn observe(&mut self, segment: usize, ask_option: Option<usize>, amount: f64) {
        self.observe_at(segment, ask_option, amount, self.now_millis);
    }

    /// [`Self::observe`] of a donation made at `at_millis`: the weights it touches are
    /// first brought up to that time (forgetting).
    pub fn observe_at(
        &mut self,
        segment: usize,
        ask_option: Option<usize>,
        amount: f64,
        at_millis: u64,
    ) {
        debug_assert!(amount > 0.0 && amount.is_finite());
        self.now_millis = self.now_millis.max(at_millis);
        if self.clock.is_on() {
            let (features, n) = self.features(segment, ask_option);
            for &(i, _) in &features[..n] {
                self.clock
                    .bring_up_to_date(i, at_millis, &mut self.weights[i], self.priors[i]);
            }
        }
        let (predicted, total) = self.predictive(segment, ask_option);
        let residual = self.clipped_residual(amount.ln(), predicted, total);
        let noise = self.noise_variance();
        let (features, n) = self.features(segment, ask_option);
        for &(i, x) in &features[..n] {
            let belief = &mut self.weights[i];
            let gain = x * belief.variance / total;
            belief.mean += gain * residual;
            belief.variance -= gain * x * belief.variance;
        }
        self.noise_shape += 0.5;
        self.noise_scale += 0.5 * residual * residual * noise / total;
        self.observations += 1;
    }

    /// Learns the mean `mean_amount` (positive, finite) of `count` donations of
    /// (segment, ask option) made at `at_millis`, whose single amounts are not known:
    /// what an ad platform reports (`docs/platform.md`, *learning from aggregates*).
    ///
    /// One donation (`count` 1) is [`Self::observe_at`]. The mean of `c > 1` log-normal
    /// amounts of log-mean `μ` and spread `σ` is taken as log-normal (Fenton-Wilkinson:
    /// the same mean and variance) with spread `s_c² = ln(1 + (e^{σ²} − 1) / c)` and
    /// log-mean `μ + σ²/2 − s_c²/2`; so `ln(mean) − σ²/2 + s_c²/2` is one observation of
    /// `μ` with noise variance `s_c²` (about `σ²/c`; exactly `σ²` at `c = 1`), learned by
    /// one step of the module's Huber-type Kalman step with `S = s_c² + Σ x_i² s_i²`.
    /// `σ²` is the model's current estimate: the spread between single gifts is not in
    /// a mean, so the noise belief is left as it is (one donation teaches it, as ever).
    pub fn observe_mean_at(
        &mut self,
        segment: usize,
        ask_option: Option<usize>,
        mean_amount: f64,
        count: u64,
        at_millis: u64,
    ) {
        debug_assert!(mean_amount > 0.0 && mean_amount.is_finite() && count > 0);
        if count <= 1 {
            self.observe_at(segment, ask_option, mean_amount, at_millis);
            return;
        }
        self.now_millis = self.now_millis.max(at_millis);
        let (features, n) = self.features(segment, ask_option);
        if self.clock.is_on() {
            for &(i, _) in &features[..n] {
                self.clock
                    .bring_up_to_date(i, at_millis, &mut self.weights[i], self.priors[i]);
            }
        }
        let noise = self.noise_variance();
        let mean_noise = mean_log_variance(noise, count);
        let (predicted, total) = self.predictive(segment, ask_option);
        let total = total - noise + mean_noise;
        let y = mean_amount.ln() - 0.5 * noise + 0.5 * mean_noise;
        let residual = self.clipped_residual(y, predicted, total);
        for &(i, x) in &features[..n] {
            let belief = &mut self.weights[i];
            let gain = x * belief.variance / total;
            belief.mean += gain * residual;
            belief.variance -= gain * x * belief.variance;
        }
        self.observations += count;
    }

    /// Posterior mean of `E[amount | conversion]` for (segment, ask option).
    pub fn expected_amount(&self, segment: usize, ask_option: Option<usize>) -> f64 {
        let (features, n) = self.features(segment, ask_option);
        let (mut mean, mut variance) = (0.0, 0.0);
        for &(i, x) in &features[..n] {
            mean += x * self.weights[i].mean;
            variance += x * x * self.weights[i].variance;
        }
        (mean + 0.5 * (variance + self.noise_variance())).exp()
    }

    /// One Thompson draw of `E[amount | conversion]` for every ask option of a segment,
    /// written into `out` (length `max(1, ask_options)`). `normals` yields standard
    /// normal draws.
    pub fn draw_expected_amounts(
        &self,
        segment: usize,
        mut normals: impl FnMut() -> f64,
        out: &mut [f64],
    ) {
        let half_noise = 0.5 * self.noise_variance();
        let base = self.weights[BIAS].draw(normals())
            + self.weights[FIRST_SEGMENT + segment].draw(normals());
        if self.ask_options == 0 {
            out[0] = (base + half_noise).exp();
            return;
        }
        let slope = self.weights[SLOPE].draw(normals());
        for a in 0..self.ask_options {
            let (features, _) = self.features(segment, Some(a));
            let log_mean = base
                + slope * self.log_ask[a]
                + self.weights[features[3].0].draw(normals())
                + self.weights[features[4].0].draw(normals());
            out[a] = (log_mean + half_noise).exp();
        }
    }

    /// Carries the learned state of `old` (the model of a campaign's previous
    /// revision) into this model at its prior: the bias, the slope, the noise belief
    /// and the event count; each segment's weight from `old_segment(segment)`, each ask
    /// option's from `old_ask(option)`, each (segment, ask) weight from both, when they
    /// exist; new segments and asks keep their prior. The log asks are re-centred on
    /// `old`'s reference ask (from an ask option both revisions hold, whose amount a
    /// revision keeps), so the learned bias and slope mean what they meant.
    pub fn carry_from(
        &mut self,
        old: &ValueModel,
        old_segment: impl Fn(usize) -> Option<usize>,
        old_ask: impl Fn(usize) -> Option<usize>,
    ) {
        // Forgetting is lazy: bring the old beliefs up to the old model's time first, so
        // every carried weight (and every new one) counts as updated then.
        let mut old = old.clone();
        old.bring_up_to_date(old.now_millis);
        self.now_millis = old.now_millis;
        self.set_half_life(old.half_life_millis());
        self.clock
            .set_touched(vec![self.now_millis; self.weights.len()]);
        self.weights[BIAS] = old.weights[BIAS];
        self.weights[SLOPE] = old.weights[SLOPE];
        let carried_ask = (0..self.ask_options)
            .find_map(|a| old_ask(a).filter(|&o| o < old.ask_options).map(|o| (a, o)));
        if let Some((a, o)) = carried_ask {
            let shift = self.log_ask[a] - old.log_ask[o];
            for log_ask in &mut self.log_ask {
                *log_ask -= shift;
            }
        }
        for segment in 0..self.segments {
            let Some(from) = old_segment(segment).filter(|&s| s < old.segments) else {
                continue;
            };
            self.weights[FIRST_SEGMENT + segment] = old.weights[FIRST_SEGMENT + from];
        }
        for a in 0..self.ask_options {
            let Some(o) = old_ask(a).filter(|&o| o < old.ask_options) else {
                continue;
            };
            self.weights[FIRST_SEGMENT + self.segments + a] =
                old.weights[FIRST_SEGMENT + old.segments + o];
            for segment in 0..self.segments {
                let Some(from) = old_segment(segment).filter(|&s| s < old.segments) else {
                    continue;
                };
                self.weights[FIRST_SEGMENT
                    + self.segments
                    + self.ask_options
                    + segment * self.ask_options
                    + a] = old.weights
                    [FIRST_SEGMENT + old.segments + old.ask_options + from * old.ask_options + o];
            }
        }
        self.noise_shape = old.noise_shape;
        self.noise_scale = old.noise_scale;
        self.observations = old.observations;
    }

    /// Approximate heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.weights.capacity() * std::mem::size_of::<Belief>() + self.log_ask.capacity() * 8
    }

    /// Writes the learned state to a snapshot.
    pub fn write_state(&self, writer: &mut crate::snapshot::Writer) {
        writer.u64(self.observations);
        writer.f64(self.noise_shape);
        writer.f64(self.noise_scale);
        writer.beliefs(&self.weights);
        if writer.format() >= 3 {
            writer.u64(self.now_millis);
            writer.u64(self.clock.half_life_millis().unwrap_or(0));
            writer.u64(self.clock.touched().len() as u64);
            for &t in self.clock.touched() {
                writer.u64(t);
            }
        }
    }

    /// Restores the learned state from a snapshot written by [`Self::write_state`]
    /// for a model of the same shape.
    pub fn read_state(
        &mut self,
        reader: &mut crate::snapshot::Reader<'_>,
    ) -> Result<(), crate::snapshot::SnapshotError> {
        let observations = reader.u64()?;
        let noise_shape = reader.f64()?;
        let noise_scale = reader.f64()?;
        if !(noise_shape > 1.0 && noise_scale > 0.0 && noise_scale.is_finite()) {
            return Err(crate::snapshot::SnapshotError::Format(format!(
                "the value model's noise belief IG({noise_shape}, {noise_scale}) is invalid"
            )));
        }
        let mut weights = self.weights.clone();
        reader.beliefs("the value model", &mut weights)?;
        let mut clock = self.clock.clone();
        let mut now_millis = 0;
        if reader.format() >= 3 {
            now_millis = reader.u64()?;
            let half_life = reader.u64()?;
            let count = reader.u64()?;
            let on = half_life > 0;
            if count != if on { weights.len() as u64 } else { 0 } {
                return Err(crate::snapshot::SnapshotError::Format(format!(
                    "the value model keeps {count} update times for {} weights",
                    weights.len()
                )));
            }
            let mut times = Vec::with_capacity(count as usize);
            for _ in 0..count {
                times.push(reader.u64()?);
            }
            clock = ForgettingClock::new(weights.len(), on.then_some(half_life));
            clock.set_touched(times);
        } else {
            clock.forget_times();
        }
        self.clock = clock;
        self.now_millis = now_millis;
        self.weights = weights;
        self.observations = observations;
        self.noise_shape = noise_shape;
        self.noise_scale = noise_scale;
        Ok(())
    }
}

/// The log-variance of the mean of `count` independent log-normal amounts of log-variance
/// `noise`, by matching the mean's mean and variance (Fenton-Wilkinson):
/// `ln(1 + (e^noise − 1) / count)`; `noise` itself at `count` 1.
pub fn mean_log_variance(noise: f64, count: u64) -> f64 {
    (noise.exp_m1() / count.max(1) as f64).ln_1p()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::design::{AskComponent, Interactions, Objective};
    use crate::space::VersionSpace;

    fn design() -> Design {
        Design {
            component_names: vec!["cta".into()],
            segment_names: vec!["everyone".into()],
            space: VersionSpace::product(vec![3]).unwrap(),
            ask: Some(AskComponent {
                component: 0,
                amounts: vec![10.0, 25.0, 50.0],
            }),
            objective: Objective::Value,
            interactions: Interactions::segment_only(1),
        }
    }

    /// Honest amounts near the ask, then one amount of `outlier` on ask 0.
    fn trained(prior: ValuePrior, outlier: f64) -> ValueModel {
        let mut model = ValueModel::new(&design(), prior);
        for i in 0..300 {
            let amount = 25.0 * (((i % 7) as f64 - 3.0) * 0.2).exp();
            model.observe(0, Some(i % 3), amount);
        }
        model.observe(0, Some(0), outlier);
        model
    }

    #[test]
    fn the_mean_of_one_donation_is_that_donation() {
        let mut single = ValueModel::new(&design(), ValuePrior::default());
        let mut mean = single.clone();
        single.observe_at(0, Some(1), 30.0, 5);
        mean.observe_mean_at(0, Some(1), 30.0, 1, 5);
        assert_eq!(single.weights, mean.weights);
        assert_eq!(single.noise_scale, mean.noise_scale);
        assert_eq!(mean_log_variance(0.81, 1), 0.81);
        // The mean of many amounts varies about 1/c as much on the log scale.
        let v = mean_log_variance(0.36, 100);
        assert!((v / 0.0036 - 1.0).abs() < 0.25, "{v}");
    }

    /// Means of `c` amounts, learned once each, against the same means learned `c`
    /// times as if every gift had been the mean: the expected amount lands on the truth
    /// either way, but only the honest step keeps the posterior as wide as `n` means of
    /// `c` gifts justify and the noise belief where it was.
    #[test]
    fn a_mean_of_many_amounts_is_one_observation_not_many_copies() {
        use rand::SeedableRng;
        use rand_distr::{Distribution, StandardNormal};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let prior = ValuePrior::default();
        let mut honest = ValueModel::new(&design(), prior);
        let mut copies = honest.clone();
        let noise_before = honest.noise_variance();
        let (sigma, c) = (0.9f64, 20u64);
        // Every ask's true expected amount is 25.
        let mu = 25f64.ln() - sigma * sigma / 2.0;
        for i in 0..60 {
            let ask = i % 3;
            let total: f64 = (0..c)
                .map(|_| {
                    let z: f64 = StandardNormal.sample(&mut rng);
                    (mu + sigma * z).exp()
                })
                .sum();
            let mean = total / c as f64;
            honest.observe_mean_at(0, Some(ask), mean, c, 0);
            for _ in 0..c {
                copies.observe_at(0, Some(ask), mean, 0);
            }
        }
        assert_eq!(honest.noise_variance(), noise_before);
        assert!(copies.noise_variance() < 0.25 * noise_before);
        for ask in 0..3 {
            let amount = honest.expected_amount(0, Some(ask));
            assert!((amount / 25.0 - 1.0).abs() < 0.15, "ask {ask}: {amount}");
        }
        let spread = |m: &ValueModel| m.predictive(0, Some(0)).1 - m.noise_variance();
        assert!(
            spread(&honest) > 2.0 * spread(&copies),
            "{} against {}",
            spread(&honest),
            spread(&copies)
        );
        assert_eq!(honest.observations(), copies.observations());
    }

    #[test]
    fn amounts_within_the_cutoff_are_learned_as_the_gaussian_step_learns_them() {
        let plain = ValuePrior {
            residual_cutoff: f64::INFINITY,
            ..ValuePrior::default()
        };
        let robust = trained(ValuePrior::default(), 30.0);
        let gaussian = trained(plain, 30.0);
        assert_eq!(robust.weights, gaussian.weights);
        assert_eq!(robust.noise_scale, gaussian.noise_scale);
        assert_eq!(robust.learned_amount(0, Some(1), 30.0), 30.0);
    }

    #[test]
    fn one_huge_amount_moves_the_expected_amount_by_a_bounded_step() {
        let before = trained(ValuePrior::default(), 25.0).expected_amount(0, Some(0));
        let robust = trained(ValuePrior::default(), 1e12);
        let plain = trained(
            ValuePrior {
                residual_cutoff: f64::INFINITY,
                ..ValuePrior::default()
            },
            1e12,
        );
        let robust_after = robust.expected_amount(0, Some(0));
        let plain_after = plain.expected_amount(0, Some(0));
        assert!(
            robust_after < 1.5 * before,
            "robust: {before} -> {robust_after}"
        );
        assert!(
            plain_after > 3.0 * before,
            "plain: {before} -> {plain_after}"
        );
        assert!(robust.noise_variance() < 0.5 * plain.noise_variance());
        // What the model learned from: far below the amount raised, at most e^(3 sqrt(S))
        // times the prediction.
        let learned = trained(ValuePrior::default(), 25.0).learned_amount(0, Some(0), 1e12);
        assert!(learned > 25.0 && learned < 2_000.0, "{learned}");
    }
}
