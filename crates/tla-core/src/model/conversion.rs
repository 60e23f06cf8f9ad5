//! Probit regression with independent Gaussian weights, learned by assumed-density
//! filtering (ADF), over the factorized features of a campaign.
//!
//! Features of an impression of version `v = (o_1, ..., o_K)` in segment `s`, all
//! binary: the bias; the segment `s`; one per option `o_k` of each component; one per
//! (option, segment) for each component crossed with the segment; one per
//! (option of `a`, option of `b`) for each declared component pair `(a, b)`. So an
//! event touches `2 + K + |crossed with segment| + |pairs|` weights.
//!
//! With weights `w_i ~ N(mu_i, s_i^2)` and noise scale `beta`,
//! `P(y = +1 | x) = Phi(sum_i mu_i / S)` with `S^2 = beta^2 + sum_i s_i^2` over the
//! active features. Observing `y in {+1, -1}` with `t = y sum_i mu_i / S`:
//! `mu_i += y (s_i^2 / S) v(t)` and `s_i^2 *= 1 - (s_i^2 / S^2) w(t)`, with
//! `v = pdf / cdf` and `w = v (v + t)` (see [`crate::stats::probit_moments`]).

use super::Belief;
use super::forgetting::ForgettingClock;
use crate::design::Design;
use crate::stats;

/// Prior and noise settings of the conversion model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConversionPrior {
    /// Probit noise scale `beta`.
    pub beta: f64,
    /// Expected base rate before any data; sets the prior mean of the bias.
    pub base_rate: f64,
    /// Prior variance of the bias.
    pub bias_variance: f64,
    /// Prior variance of each segment weight.
    pub segment_variance: f64,
    /// Prior variance of each option's main effect.
    pub option_variance: f64,
    /// Prior variance of each (option, segment) interaction.
    pub segment_interaction_variance: f64,
    /// Prior variance of each (option, option) interaction.
    pub pair_interaction_variance: f64,
}

impl Default for ConversionPrior {
    fn default() -> Self {
        Self {
            beta: 1.0,
            base_rate: 0.02,
            bias_variance: 0.25,
            segment_variance: 0.04,
            option_variance: 0.04,
            segment_interaction_variance: 0.005,
            pair_interaction_variance: 0.005,
        }
    }
}

/// Where the weights of one kind start in the flat weight vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureLayout {
    /// Number of segments.
    pub segments: usize,
    /// Option count per component.
    pub option_counts: Vec<usize>,
    /// First segment weight.
    pub segment_offset: usize,
    /// First main-effect weight of each component.
    pub option_offset: Vec<usize>,
    /// First (option, segment) weight of each component, if crossed with the segment;
    /// laid out segment-major: `offset + s * n_k + o`.
    pub segment_interaction_offset: Vec<Option<usize>>,
    /// Declared pairs `(a, b)` with `a < b` and the first weight of each, laid out
    /// `offset + o_a * n_b + o_b`.
    pub pairs: Vec<(usize, usize, usize)>,
    /// Total number of weights.
    pub len: usize,
}

impl FeatureLayout {
    /// The layout for a design.
    pub fn new(design: &Design) -> Self {
        let segments = design.segments();
        let option_counts: Vec<usize> = design
            .space
            .option_counts()
            .iter()
            .map(|&n| n as usize)
            .collect();
        let mut next = 1; // bias at 0
        let segment_offset = next;
        next += segments;
        let mut option_offset = Vec::with_capacity(option_counts.len());
        for &n in &option_counts {
            option_offset.push(next);
            next += n;
        }
        let mut segment_interaction_offset = vec![None; option_counts.len()];
        for &k in &design.interactions.with_segment {
            segment_interaction_offset[k] = Some(next);
            next += segments * option_counts[k];
        }
        let mut pairs = Vec::new();
        for &(a, b) in &design.interactions.pairs {
            let (a, b) = (a.min(b), a.max(b));
            pairs.push((a, b, next));
            next += option_counts[a] * option_counts[b];
        }
        Self {
            segments,
            option_counts,
            segment_offset,
            option_offset,
            segment_interaction_offset,
            pairs,
            len: next,
        }
    }

    /// Writes the active feature indices of (segment, options) into `out`.
    pub fn active_features(&self, segment: usize, options: &[u32], out: &mut Vec<usize>) {
        out.clear();
        out.push(0);
        out.push(self.segment_offset + segment);
        for (k, &o) in options.iter().enumerate() {
            let o = o as usize;
            out.push(self.option_offset[k] + o);
            if let Some(offset) = self.segment_interaction_offset[k] {
                out.push(offset + segment * self.option_counts[k] + o);
            }
        }
        for &(a, b, offset) in &self.pairs {
            out.push(offset + options[a] as usize * self.option_counts[b] + options[b] as usize);
        }
    }
}

/// The conversion (or click) model of one campaign.
#[derive(Debug, Clone)]
pub struct ConversionModel {
    layout: FeatureLayout,
    prior: ConversionPrior,
    weights: Vec<Belief>,
    /// Each weight's prior, what forgetting pulls it back toward (shared by copies).
    priors: std::sync::Arc<[Belief]>,
    /// Forgetting: the half-life and each weight's last-update time.
    clock: ForgettingClock,
    /// The latest time the model has seen (an event's or a refresh's), ms.
    now_millis: u64,
    /// Whether every weight was brought up to `now_millis` since the last event.
    up_to_date: bool,
    /// Scratch for active feature indices (avoids allocating per event).
    active: Vec<usize>,
    /// Events learned.
    observations: u64,
}

impl ConversionModel {
    /// A model at its prior.
    pub fn new(design: &Design, prior: ConversionPrior) -> Self {
        let layout = FeatureLayout::new(design);
        let mut weights = vec![Belief::new(0.0, prior.option_variance); layout.len];
        // The bias starts at the probit of the expected base rate, so that the prior
        // predictive rate of an average version is close to it.
        weights[0] = Belief::new(
            stats::normal_quantile(prior.base_rate) * prior.beta,
            prior.bias_variance,
        );
        for s in 0..layout.segments {
            weights[layout.segment_offset + s].variance = prior.segment_variance;
        }
        for (k, offset) in layout.segment_interaction_offset.iter().enumerate() {
            if let Some(offset) = *offset {
                for i in 0..layout.segments * layout.option_counts[k] {
                    weights[offset + i].variance = prior.segment_interaction_variance;
                }
            }
        }
        for &(a, b, offset) in &layout.pairs {
            for i in 0..layout.option_counts[a] * layout.option_counts[b] {
                weights[offset + i].variance = prior.pair_interaction_variance;
            }
        }
        Self {
            clock: ForgettingClock::new(layout.len, None),
            priors: weights.clone().into(),
            layout,
            prior,
            weights,
            now_millis: 0,
            up_to_date: true,
            active: Vec::with_capacity(32),
            observations: 0,
        }
    }

    /// The same model forgetting with `half_life_millis` (`None`: never), see
    /// [`super::forgetting`]; every weight counts as up to date at the model's time.
    pub fn with_half_life(mut self, half_life_millis: Option<u64>) -> Self {
        let mut clock = ForgettingClock::new(self.layout.len, half_life_millis);
        if clock.is_on() {
            clock.set_touched(vec![self.now_millis; self.layout.len]);
        }
        self.clock = clock;
        self
    }

    /// The forgetting half-life, ms (`None`: no forgetting).
    pub fn half_life_millis(&self) -> Option<u64> {
        self.clock.half_life_millis()
    }

    /// The latest time the model has seen, ms.
    pub fn now_millis(&self) -> u64 {
        self.now_millis
    }

    /// Brings every weight up to time `now` (later than the model's time; earlier
    /// moves nothing), so that reads of [`Self::weights`] see the beliefs forgotten up
    /// to then.
    pub fn bring_up_to_date(&mut self, now_millis: u64) {
        if !self.clock.is_on() || (now_millis <= self.now_millis && self.up_to_date) {
            self.now_millis = self.now_millis.max(now_millis);
            return;
        }
        self.now_millis = self.now_millis.max(now_millis);
        self.clock
            .bring_all_up_to_date(self.now_millis, &mut self.weights, &self.priors);
        self.up_to_date = true;
    }

    /// Every weight as it will be at `now_millis` (forgotten up to then, or as it is
    /// when it was updated later), into `out`, leaving the model unchanged: what a
    /// draw at that time reads.
    pub fn forgotten_weights_into(&self, now_millis: u64, out: &mut Vec<Belief>) {
        out.clear();
        out.extend(
            self.weights
                .iter()
                .zip(self.priors.iter())
                .enumerate()
                .map(|(i, (&belief, &prior))| self.clock.forgotten(i, now_millis, belief, prior)),
        );
    }

    /// Each weight's last-update time, ms (empty without forgetting).
    pub fn update_times(&self) -> &[u64] {
        self.clock.touched()
    }

    /// Replaces each weight's last-update time (one per weight, when forgetting).
    pub(crate) fn set_update_times(&mut self, times: Vec<u64>) {
        self.clock.set_touched(times);
        self.up_to_date = false;
    }

    /// Marks every weight's last-update time unknown: each is set by its next touch,
    /// without forgetting (a model restored from a snapshot that kept no times).
    pub(crate) fn forget_update_times(&mut self) {
        self.clock.forget_times();
        self.up_to_date = false;
    }

    /// The feature layout.
    pub fn layout(&self) -> &FeatureLayout {
        &self.layout
    }

    /// The prior settings.
    pub fn prior(&self) -> &ConversionPrior {
        &self.prior
    }

    /// All weights, in layout order.
    pub fn weights(&self) -> &[Belief] {
        &self.weights
    }

    /// Events learned so far.
    pub fn observations(&self) -> u64 {
        self.observations
    }

    /// Learns one outcome: `positive` is whether the impression converted (or clicked),
    /// at the model's time ([`Self::now_millis`]).
    pub fn observe(&mut self, segment: usize, options: &[u32], positive: bool) {
        self.observe_at(segment, options, positive, self.now_millis);
    }

    /// Learns one outcome that happened at `at_millis`: the weights it touches are
    /// first brought up to that time (forgetting), then updated. Returns the
    /// prequential log-loss of the outcome, `-ln P(outcome)` under the beliefs before
    /// the update.
    pub fn observe_at(
        &mut self,
        segment: usize,
        options: &[u32],
        positive: bool,
        at_millis: u64,
    ) -> f64 {
        let mut active = std::mem::take(&mut self.active);
        self.layout.active_features(segment, options, &mut active);
        self.now_millis = self.now_millis.max(at_millis);
        self.up_to_date = false;
        let mut mean = 0.0;
        let mut variance = self.prior.beta * self.prior.beta;
        for &i in &active {
            if self.clock.is_on() {
                self.clock
                    .bring_up_to_date(i, at_millis, &mut self.weights[i], self.priors[i]);
            }
            mean += self.weights[i].mean;
            variance += self.weights[i].variance;
        }
        let sd = variance.sqrt();
        let y = if positive { 1.0 } else { -1.0 };
        let t = y * mean / sd;
        let log_loss = -stats::normal_cdf(t).max(f64::MIN_POSITIVE).ln();
        let (v, w) = stats::probit_moments(t);
        for &i in &active {
            let belief = &mut self.weights[i];
            let share = belief.variance / sd;
            belief.mean += y * share * v;
            belief.variance *= 1.0 - belief.variance / variance * w;
        }
        self.active = active;
        self.observations += 1;
        log_loss
    }

    /// Posterior predictive probability of a positive outcome.
    pub fn predict(&self, segment: usize, options: &[u32]) -> f64 {
        let mut active = Vec::with_capacity(16);
        self.layout.active_features(segment, options, &mut active);
        let (mut mean, mut variance) = (0.0, self.prior.beta * self.prior.beta);
        for &i in &active {
            mean += self.weights[i].mean;
            variance += self.weights[i].variance;
        }
        stats::normal_cdf(mean / variance.sqrt())
    }

    /// Carries the learned state of `old` (the model of a campaign's previous
    /// revision) into this model at its prior: weight `i` takes `old`'s weight
    /// `map[i]` when there is one ([`crate::revision::Revision::conversion_feature_map`])
    /// and keeps its prior otherwise; the event count carries over.
    pub fn carry_from(&mut self, old: &ConversionModel, map: &[Option<usize>]) {
        debug_assert_eq!(map.len(), self.weights.len());
        // Forgetting is lazy: bring the old beliefs up to the old model's time first, so
        // every carried weight (and every new one) counts as updated then.
        let mut old = old.clone();
        old.bring_up_to_date(old.now_millis);
        for (weight, from) in self.weights.iter_mut().zip(map) {
            if let Some(from) = *from {
                *weight = old.weights[from];
            }
        }
        self.observations = old.observations;
        self.now_millis = old.now_millis;
        if self.clock.is_on() {
            self.clock
                .set_touched(vec![self.now_millis; self.weights.len()]);
        }
        self.up_to_date = true;
    }

    /// Approximate heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.weights.capacity() * std::mem::size_of::<Belief>()
            + std::mem::size_of_val(self.clock.touched())
            + self.active.capacity() * std::mem::size_of::<usize>()
    }

    /// Writes the learned state (weights and event count; from format 3 the model's
    /// time and each weight's last-update time) to a snapshot.
    pub fn write_state(&self, writer: &mut crate::snapshot::Writer) {
        writer.u64(self.observations);
        writer.beliefs(&self.weights);
        if writer.format() >= 3 {
            writer.u64(self.now_millis);
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
        let mut weights = self.weights.clone();
        reader.beliefs("the conversion model", &mut weights)?;
        let mut clock = self.clock.clone();
        let mut now_millis = 0;
        if reader.format() >= 3 {
            now_millis = reader.u64()?;
            let count = reader.u64()?;
            let expected = clock.touched().len() as u64;
            if count != expected {
                return Err(crate::snapshot::SnapshotError::Mismatch(format!(
                    "the conversion model keeps {count} update times in the snapshot and \
                     {expected} in the model (is forgetting set the same?)"
                )));
            }
            let mut times = Vec::with_capacity(count as usize);
            for _ in 0..count {
                times.push(reader.u64()?);
            }
            clock.set_touched(times);
        } else {
            // Written before update times were kept: each weight's first touch sets it.
            clock.forget_times();
        }
        self.weights = weights;
        self.clock = clock;
        self.now_millis = now_millis;
        self.up_to_date = false;
        self.observations = observations;
        Ok(())
    }
}
