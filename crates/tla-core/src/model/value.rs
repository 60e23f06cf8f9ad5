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
//! `E[amount | conversion] = exp(mean + sigma^2 / 2)`.

use super::Belief;
use crate::design::Design;

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
    /// Inverse-gamma shape of the noise variance.
    noise_shape: f64,
    /// Inverse-gamma scale of the noise variance.
    noise_scale: f64,
    /// Donations learned.
    observations: u64,
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
            weights,
            noise_shape,
            noise_scale: prior.noise_variance * (noise_shape - 1.0),
            observations: 0,
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

    /// Learns one donation amount (must be positive and finite).
    pub fn observe(&mut self, segment: usize, ask_option: Option<usize>, amount: f64) {
        debug_assert!(amount > 0.0 && amount.is_finite());
        let y = amount.ln();
        let (features, n) = self.features(segment, ask_option);
        let noise = self.noise_variance();
        let mut predicted = 0.0;
        let mut total = noise;
        for &(i, x) in &features[..n] {
            predicted += x * self.weights[i].mean;
            total += x * x * self.weights[i].variance;
        }
        let residual = y - predicted;
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
        self.weights = weights;
        self.observations = observations;
        self.noise_shape = noise_shape;
        self.noise_scale = noise_scale;
        Ok(())
    }
}
