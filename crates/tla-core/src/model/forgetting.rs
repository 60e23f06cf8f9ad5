//! Forgetting: beliefs that drift back toward their prior as time passes, so that a
//! vote from three weeks ago weighs less than one from this morning.
//!
//! # The dynamics step
//!
//! Each weight keeps the time it was last brought up to date. Before it is read or
//! updated at time `t`, it takes the dynamics step of AdPredictor toward its prior
//! `N(mu_0, s_0^2)`, with `eps = 1 - 2^(-(t - t_last) / half_life)`: in natural
//! parameters (precision `1/s^2` and precision-weighted mean `mu/s^2`) the belief
//! becomes `(1 - eps)` of itself plus `eps` of the prior. Two steps over `dt_1` and
//! `dt_2` equal one over `dt_1 + dt_2` (the factors `2^(-dt/h)` multiply), so the
//! step can be taken lazily, only for the weights an event touches, and a weight never
//! touched for one half-life has lost half of what it learned. A weight at its prior
//! stays there. Time that runs backwards (an event older than the weight's last
//! update) moves nothing. The cost is one `exp2` per active weight per update.
//!
//! # Choosing the rate: `auto`
//!
//! [`Forgetting::Auto`] runs a few candidate half-lives ([`AUTO_HALF_LIVES`]) side by
//! side as shadow copies of the conversion model. Every event is
//! first predicted by each candidate, which is charged its log-loss `-ln P(y)`, then
//! learned by each. The losses are discounted by [`SCORE_DISCOUNT`] per event (a
//! window of about [`SCORE_WINDOW`] events), and decisions draw from the candidate in
//! force: the one with the lowest discounted loss, replaced only when another beats it
//! by more than [`SWITCH_MARGIN`] nats, so that candidates that predict alike (on
//! stationary data every half-life longer than the data) do not take turns. The
//! longest half-life is in force at the start. `auto` never turns forgetting off: an
//! ADF posterior that never forgets grows ever surer of the options it stopped showing,
//! and a slow rate keeps their uncertainty, and so their exploration, alive (measured
//! in `docs/models.md`); `"off"` is the spec's to ask for. The maths is in
//! `docs/models.md`.

use super::Belief;
use super::conversion::ConversionModel;

/// Half-lives `auto` tries, in milliseconds: 4 days and 14 days (the longest is in
/// force at the start).
pub const AUTO_HALF_LIVES: [u64; 2] = [4 * DAY_MS, 14 * DAY_MS];
/// The discount of the candidates' log-loss per event: `1 - 1 / SCORE_WINDOW`.
pub const SCORE_DISCOUNT: f64 = 1.0 - 1.0 / SCORE_WINDOW;
/// Events over which a candidate's log-loss is averaged, roughly (see
/// [`SCORE_DISCOUNT`]).
pub const SCORE_WINDOW: f64 = 20_000.0;
/// Nats of discounted log-loss by which a candidate must beat the one in force to
/// replace it.
pub const SWITCH_MARGIN: f64 = 3.0;
/// A weight's last-update time when it is unknown (a model restored from a snapshot
/// written before times were kept): the first touch sets it without forgetting.
pub const UNKNOWN_TIME: u64 = u64::MAX;

const MINUTE_MS: u64 = 60_000;
const HOUR_MS: u64 = 60 * MINUTE_MS;
const DAY_MS: u64 = 24 * HOUR_MS;

/// How a campaign's model forgets (the spec's `forgetting`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Forgetting {
    /// The rate is chosen from the data among [`AUTO_HALF_LIVES`].
    #[default]
    Auto,
    /// Never forgets: every event weighs the same, however old.
    Off,
    /// Forgets with this half-life, in milliseconds (positive).
    HalfLife(u64),
}

/// Why a `forgetting` setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "forgetting {0:?} is not understood: give \"auto\", \"off\", or a half-life: a positive \
     whole number followed by m (minutes), h (hours) or d (days), such as \"36h\" or \"3d\""
)]
pub struct ForgettingError(pub String);

impl Forgetting {
    /// Parses `"auto"`, `"off"`, or a half-life `"<n>m"`, `"<n>h"`, `"<n>d"` (`n` a
    /// positive whole number).
    pub fn parse(text: &str) -> Result<Self, ForgettingError> {
        let refuse = || ForgettingError(text.to_string());
        match text.trim() {
            "auto" => return Ok(Self::Auto),
            "off" => return Ok(Self::Off),
            _ => {}
        }
        let trimmed = text.trim();
        let unit = match trimmed.chars().last().ok_or_else(refuse)? {
            'm' => MINUTE_MS,
            'h' => HOUR_MS,
            'd' => DAY_MS,
            _ => return Err(refuse()),
        };
        let count: u64 = trimmed[..trimmed.len() - 1].parse().map_err(|_| refuse())?;
        if count == 0 {
            return Err(refuse());
        }
        count
            .checked_mul(unit)
            .map(Self::HalfLife)
            .ok_or_else(refuse)
    }

    /// The half-lives this setting runs, in milliseconds (`None`: no forgetting), the
    /// first in force at the start.
    pub fn candidates(&self) -> Vec<Option<u64>> {
        match *self {
            Self::Off => vec![None],
            Self::HalfLife(ms) => vec![Some(ms)],
            Self::Auto => AUTO_HALF_LIVES.iter().rev().map(|&ms| Some(ms)).collect(),
        }
    }
}

impl std::fmt::Display for Forgetting {
    /// `auto`, `off`, or the half-life in the largest unit that divides it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::Auto => f.write_str("auto"),
            Self::Off => f.write_str("off"),
            Self::HalfLife(ms) => f.write_str(&half_life_text(Some(ms))),
        }
    }
}

/// A half-life in words: `off` for none, else the largest of days, hours, minutes
/// that divides it (`36h`, `3d`), else milliseconds (`1500ms`).
pub fn half_life_text(half_life_millis: Option<u64>) -> String {
    match half_life_millis {
        None => "off".to_string(),
        Some(ms) if ms % DAY_MS == 0 => format!("{}d", ms / DAY_MS),
        Some(ms) if ms % HOUR_MS == 0 => format!("{}h", ms / HOUR_MS),
        Some(ms) if ms % MINUTE_MS == 0 => format!("{}m", ms / MINUTE_MS),
        Some(ms) => format!("{ms}ms"),
    }
}

/// Per-weight last-update times and the dynamics step toward each weight's prior.
#[derive(Debug, Clone, PartialEq)]
pub struct ForgettingClock {
    /// Half-life in milliseconds; `None`: never forgets (and keeps no times).
    half_life_millis: Option<u64>,
    /// `-1 / half_life` (per ms), for `2^(-dt / half_life)`.
    rate: f64,
    /// When each weight was last brought up to date (ms); empty without forgetting.
    touched: Vec<u64>,
}

impl ForgettingClock {
    /// The clock of `weights` weights forgetting with `half_life_millis` (`None`:
    /// never), every weight up to date at time 0.
    pub fn new(weights: usize, half_life_millis: Option<u64>) -> Self {
        let half_life_millis = half_life_millis.filter(|&ms| ms > 0);
        Self {
            half_life_millis,
            rate: half_life_millis.map_or(0.0, |ms| -1.0 / ms as f64),
            touched: if half_life_millis.is_some() {
                vec![0; weights]
            } else {
                Vec::new()
            },
        }
    }

    /// The half-life, in milliseconds (`None`: no forgetting).
    pub fn half_life_millis(&self) -> Option<u64> {
        self.half_life_millis
    }

    /// Whether the clock forgets at all.
    #[inline]
    pub fn is_on(&self) -> bool {
        self.half_life_millis.is_some()
    }

    /// The last-update time of every weight (empty without forgetting).
    pub fn touched(&self) -> &[u64] {
        &self.touched
    }

    /// Replaces the last-update times (a restore); `times` must hold one per weight
    /// when the clock forgets.
    pub fn set_touched(&mut self, times: Vec<u64>) {
        if self.is_on() {
            self.touched = times;
        }
    }

    /// Marks every weight's time unknown ([`UNKNOWN_TIME`]): each first touch sets it.
    pub fn forget_times(&mut self) {
        self.touched.fill(UNKNOWN_TIME);
    }

    /// Brings weight `i` up to time `now`: the dynamics step toward `prior` over the
    /// time since its last update.
    #[inline]
    pub fn bring_up_to_date(&mut self, i: usize, now: u64, belief: &mut Belief, prior: Belief) {
        if !self.is_on() {
            return;
        }
        let last = self.touched[i];
        if last == UNKNOWN_TIME {
            self.touched[i] = now;
            return;
        }
        if now <= last {
            return;
        }
        self.touched[i] = now;
        let keep = ((now - last) as f64 * self.rate).exp2();
        step_toward_prior(belief, prior, keep);
    }

    /// Weight `i`'s belief as it will be at time `now`, without bringing it there.
    #[inline]
    pub fn forgotten(&self, i: usize, now: u64, belief: Belief, prior: Belief) -> Belief {
        let mut belief = belief;
        if let Some(&last) = self.touched.get(i) {
            if last != UNKNOWN_TIME && now > last {
                let keep = ((now - last) as f64 * self.rate).exp2();
                step_toward_prior(&mut belief, prior, keep);
            }
        }
        belief
    }

    /// Brings every weight up to time `now`.
    pub fn bring_all_up_to_date(&mut self, now: u64, beliefs: &mut [Belief], priors: &[Belief]) {
        if !self.is_on() {
            return;
        }
        for i in 0..beliefs.len() {
            self.bring_up_to_date(i, now, &mut beliefs[i], priors[i]);
        }
    }
}

/// The dynamics step: `belief` keeps `keep = 1 - eps` of its natural parameters and
/// takes `eps` of the prior's.
#[inline]
pub fn step_toward_prior(belief: &mut Belief, prior: Belief, keep: f64) {
    let take = 1.0 - keep;
    let precision = keep / belief.variance + take / prior.variance;
    let weighted = keep * belief.mean / belief.variance + take * prior.mean / prior.variance;
    belief.variance = 1.0 / precision;
    belief.mean = weighted / precision;
}

/// Discounted prequential log-loss of a set of candidates, and which is in force.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidateScores {
    /// Discounted log-loss per candidate.
    losses: Vec<f64>,
    /// The candidate in force.
    in_force: usize,
    /// Times the candidate in force changed.
    switches: u64,
}

impl CandidateScores {
    /// Scores of `candidates` candidates, the first in force.
    pub fn new(candidates: usize) -> Self {
        Self {
            losses: vec![0.0; candidates],
            in_force: 0,
            switches: 0,
        }
    }

    /// The candidate in force.
    pub fn in_force(&self) -> usize {
        self.in_force
    }

    /// Discounted log-loss of every candidate.
    pub fn losses(&self) -> &[f64] {
        &self.losses
    }

    /// Times the candidate in force changed.
    pub fn switches(&self) -> u64 {
        self.switches
    }

    /// Charges every candidate the loss it was given for one event (after discounting
    /// what they had), then puts the best in force if it beats the one in force by
    /// more than [`SWITCH_MARGIN`].
    pub fn charge(&mut self, losses: impl Iterator<Item = f64>) {
        let mut best = self.in_force;
        for (i, loss) in losses.enumerate() {
            self.losses[i] = self.losses[i] * SCORE_DISCOUNT + loss;
        }
        for i in 0..self.losses.len() {
            if self.losses[i] < self.losses[best] {
                best = i;
            }
        }
        if best != self.in_force && self.losses[best] + SWITCH_MARGIN < self.losses[self.in_force] {
            self.in_force = best;
            self.switches += 1;
        }
    }

    /// Restores losses, the candidate in force and the switch count.
    pub fn set(&mut self, losses: Vec<f64>, in_force: usize, switches: u64) {
        self.losses = losses;
        self.in_force = in_force;
        self.switches = switches;
    }
}

/// The conversion model under a [`Forgetting`] setting: one model per candidate
/// half-life (one for `off` or a set half-life; [`AUTO_HALF_LIVES`] for `auto`), each predicting then learning every event, and the one in force that
/// decisions draw from.
#[derive(Debug, Clone)]
pub struct ConversionCandidates {
    /// The setting.
    setting: Forgetting,
    /// One model per candidate, in [`Forgetting::candidates`] order.
    models: Vec<ConversionModel>,
    /// Their discounted log-loss and the one in force.
    scores: CandidateScores,
}

impl ConversionCandidates {
    /// The candidates of `setting`, each a copy of `model` (at its prior) with its
    /// half-life.
    pub fn new(model: ConversionModel, setting: Forgetting) -> Self {
        let models: Vec<ConversionModel> = setting
            .candidates()
            .into_iter()
            .map(|half_life| model.clone().with_half_life(half_life))
            .collect();
        let scores = CandidateScores::new(models.len());
        Self {
            setting,
            models,
            scores,
        }
    }

    /// The setting.
    pub fn setting(&self) -> Forgetting {
        self.setting
    }

    /// The model decisions draw from.
    #[inline]
    pub fn in_force(&self) -> &ConversionModel {
        &self.models[self.scores.in_force()]
    }

    /// The model decisions draw from, mutably.
    pub fn in_force_mut(&mut self) -> &mut ConversionModel {
        &mut self.models[self.scores.in_force()]
    }

    /// Which candidate is in force (its index in [`Self::models`]).
    pub fn in_force_index(&self) -> usize {
        self.scores.in_force()
    }

    /// The half-life in force, ms (`None`: no forgetting).
    pub fn half_life_in_force(&self) -> Option<u64> {
        self.in_force().half_life_millis()
    }

    /// Every candidate's half-life (`None`: off) and discounted log-loss.
    pub fn candidates(&self) -> Vec<(Option<u64>, f64)> {
        self.models
            .iter()
            .zip(self.scores.losses())
            .map(|(m, &loss)| (m.half_life_millis(), loss))
            .collect()
    }

    /// Times the candidate in force changed.
    pub fn switches(&self) -> u64 {
        self.scores.switches()
    }

    /// Every candidate's model, in [`Forgetting::candidates`] order.
    pub fn models(&self) -> &[ConversionModel] {
        &self.models
    }

    /// Learns one outcome at `at_millis` in every candidate, charging each its
    /// prequential log-loss times `score_weight` (in `[0, 1]`: how much the outcome
    /// speaks for the even split, see the module documentation); returns whether the
    /// candidate in force changed.
    pub fn observe_at(
        &mut self,
        segment: usize,
        options: &[u32],
        positive: bool,
        at_millis: u64,
        score_weight: f64,
    ) -> bool {
        if self.models.len() == 1 {
            self.models[0].observe_at(segment, options, positive, at_millis);
            return false;
        }
        let before = self.scores.in_force();
        let mut losses = [0.0; 8];
        for (model, loss) in self.models.iter_mut().zip(losses.iter_mut()) {
            *loss = model.observe_at(segment, options, positive, at_millis);
        }
        self.scores
            .charge(losses[..self.models.len()].iter().map(|l| l * score_weight));
        self.scores.in_force() != before
    }

    /// Carries the learned state of `old`, the candidates of a campaign's previous
    /// revision, into these (at their prior) through the revision's weight map
    /// ([`ConversionModel::carry_from`]): candidate by candidate, with their scores,
    /// when both revisions forget alike; otherwise (the revision changed `forgetting`)
    /// every candidate starts from the model that was in force, scores anew.
    pub fn carry_from(&mut self, old: &ConversionCandidates, map: &[Option<usize>]) {
        if old.setting == self.setting && old.models.len() == self.models.len() {
            for (model, old_model) in self.models.iter_mut().zip(&old.models) {
                model.carry_from(old_model, map);
            }
            self.scores = old.scores.clone();
        } else {
            for model in &mut self.models {
                model.carry_from(old.in_force(), map);
            }
            self.scores = CandidateScores::new(self.models.len());
        }
    }

    /// Approximate heap bytes held (every candidate).
    pub fn heap_bytes(&self) -> usize {
        self.models.iter().map(ConversionModel::heap_bytes).sum()
    }

    /// Writes the candidates to a snapshot (format 3 on: each candidate's half-life and
    /// state, then the scores; before: the model in force alone).
    pub fn write_state(&self, writer: &mut crate::snapshot::Writer) {
        if writer.format() < 3 {
            self.in_force().write_state(writer);
            return;
        }
        writer.u64(self.models.len() as u64);
        for model in &self.models {
            writer.u64(model.half_life_millis().unwrap_or(0));
            model.write_state(writer);
        }
        for &loss in self.scores.losses() {
            writer.f64(loss);
        }
        writer.u64(self.scores.in_force() as u64);
        writer.u64(self.scores.switches());
    }

    /// Restores what [`Self::write_state`] wrote, for a model of the same shape. A
    /// snapshot of format 1 or 2 holds one model: every candidate starts from it, with
    /// its weights' update times unknown (set by their next touch). A snapshot whose
    /// candidates differ from this setting's (the setting changed) gives every
    /// candidate the model that was in force.
    pub fn read_state(
        &mut self,
        reader: &mut crate::snapshot::Reader<'_>,
    ) -> Result<(), crate::snapshot::SnapshotError> {
        use crate::snapshot::SnapshotError;
        let template = self.models[0].clone().with_half_life(None);
        if reader.format() < 3 {
            let mut restored = template;
            restored.read_state(reader)?;
            self.respawn(&restored, true);
            return Ok(());
        }
        let count = reader.u64()?;
        if count == 0 || count > 8 {
            return Err(SnapshotError::Format(format!(
                "{count} forgetting candidates (1 to 8 are written)"
            )));
        }
        let mut models = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let half_life = reader.u64()?;
            let mut model = template
                .clone()
                .with_half_life((half_life > 0).then_some(half_life));
            model.read_state(reader)?;
            models.push(model);
        }
        let mut losses = Vec::with_capacity(models.len());
        for _ in 0..count {
            losses.push(reader.f64()?);
        }
        let in_force = reader.u64()? as usize;
        let switches = reader.u64()?;
        if in_force >= models.len() {
            return Err(SnapshotError::Format(format!(
                "forgetting candidate {in_force} in force of {count}"
            )));
        }
        let half_lives: Vec<Option<u64>> = models.iter().map(|m| m.half_life_millis()).collect();
        if half_lives == self.setting.candidates() {
            self.models = models;
            self.scores.set(losses, in_force, switches);
        } else {
            let restored = models.swap_remove(in_force);
            self.respawn(&restored, false);
        }
        Ok(())
    }

    /// Every candidate becomes `model` with its own half-life; scores start over with
    /// the first in force. `times_unknown`: the weights' update times are unknown.
    fn respawn(&mut self, model: &ConversionModel, times_unknown: bool) {
        let setting = self.setting;
        for (slot, half_life) in self.models.iter_mut().zip(setting.candidates()) {
            let mut copy = model.clone().with_half_life(half_life);
            if times_unknown {
                copy.forget_update_times();
            } else if let (Some(_), Some(_)) = (half_life, model.half_life_millis()) {
                copy.set_update_times(model.update_times().to_vec());
            }
            *slot = copy;
        }
        self.scores = CandidateScores::new(self.models.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_refuses_the_rest() {
        assert_eq!(Forgetting::parse("auto"), Ok(Forgetting::Auto));
        assert_eq!(Forgetting::parse("off"), Ok(Forgetting::Off));
        assert_eq!(
            Forgetting::parse("36h"),
            Ok(Forgetting::HalfLife(36 * HOUR_MS))
        );
        assert_eq!(
            Forgetting::parse("3d"),
            Ok(Forgetting::HalfLife(3 * DAY_MS))
        );
        assert_eq!(
            Forgetting::parse("90m"),
            Ok(Forgetting::HalfLife(90 * MINUTE_MS))
        );
        for bad in ["", "0h", "3", "h", "3w", "-3d", "1.5d", "on"] {
            let error = Forgetting::parse(bad).unwrap_err().to_string();
            assert!(error.contains("\"auto\", \"off\""), "{bad}: {error}");
        }
        for text in ["auto", "off", "36h", "3d", "90m"] {
            assert_eq!(Forgetting::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn an_untouched_weight_loses_half_its_evidence_per_half_life() {
        let prior = Belief::new(0.0, 0.04);
        let learned = Belief::new(0.3, 0.0004);
        let mut clock = ForgettingClock::new(1, Some(1000));
        let mut belief = learned;
        clock.bring_up_to_date(0, 1000, &mut belief, prior);
        // Precision: half the learned, half the prior's; mean accordingly.
        let precision = 0.5 / learned.variance + 0.5 / prior.variance;
        assert!((1.0 / belief.variance - precision).abs() < 1e-9 * precision);
        let mean = (0.5 * learned.mean / learned.variance) / precision;
        assert!((belief.mean - mean).abs() < 1e-12);
        // Two lazy steps equal one step over the whole time.
        let mut twice = learned;
        let mut clock = ForgettingClock::new(1, Some(1000));
        clock.bring_up_to_date(0, 400, &mut twice, prior);
        clock.bring_up_to_date(0, 3000, &mut twice, prior);
        let mut once = learned;
        let mut clock = ForgettingClock::new(1, Some(1000));
        clock.bring_up_to_date(0, 3000, &mut once, prior);
        assert!((twice.mean - once.mean).abs() < 1e-12);
        assert!((twice.variance - once.variance).abs() < 1e-15);
        // Long after, the belief is the prior; time running back moves nothing.
        clock.bring_up_to_date(0, 1_000_000, &mut once, prior);
        assert!((once.variance - prior.variance).abs() < 1e-12 && once.mean.abs() < 1e-12);
        let before = once;
        clock.bring_up_to_date(0, 5, &mut once, prior);
        assert_eq!(once, before);
    }

    #[test]
    fn off_keeps_no_times_and_moves_nothing() {
        let mut clock = ForgettingClock::new(10, None);
        assert!(clock.touched().is_empty());
        let mut belief = Belief::new(1.0, 0.001);
        clock.bring_up_to_date(3, u64::MAX - 1, &mut belief, Belief::new(0.0, 1.0));
        assert_eq!(belief, Belief::new(1.0, 0.001));
    }

    #[test]
    fn an_unknown_time_is_set_by_the_first_touch() {
        let mut clock = ForgettingClock::new(1, Some(1000));
        clock.forget_times();
        let mut belief = Belief::new(1.0, 0.001);
        clock.bring_up_to_date(0, 50_000, &mut belief, Belief::new(0.0, 1.0));
        assert_eq!(belief, Belief::new(1.0, 0.001));
        assert_eq!(clock.touched(), &[50_000]);
    }

    use crate::design::{Design, Interactions, Objective};
    use crate::model::conversion::ConversionPrior;
    use crate::space::VersionSpace;
    use rand::{Rng, SeedableRng};

    /// Learns `events` events, one a minute, of a 2-option campaign under `auto`:
    /// option 1 converts at `rates(i).1`, option 0 at `rates(i).0`, each shown half
    /// the time. Returns the half-life in force at the end.
    fn auto_after(events: u64, rates: impl Fn(u64) -> (f64, f64)) -> Option<u64> {
        let design = Design {
            component_names: vec!["headline".into()],
            segment_names: vec!["everyone".into()],
            space: VersionSpace::product(vec![2]).unwrap(),
            ask: None,
            objective: Objective::Conversions,
            interactions: Interactions::segment_only(1),
        };
        let model = ConversionModel::new(&design, ConversionPrior::default());
        let mut candidates = ConversionCandidates::new(model, Forgetting::Auto);
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for i in 0..events {
            let option = (i % 2) as u32;
            let (r0, r1) = rates(i);
            let rate = if option == 0 { r0 } else { r1 };
            let positive = rng.random::<f64>() < rate;
            candidates.observe_at(0, &[option], positive, i * MINUTE_MS, 1.0);
        }
        candidates.half_life_in_force()
    }

    #[test]
    fn auto_keeps_its_slowest_rate_on_stationary_data() {
        assert_eq!(
            Forgetting::Auto.candidates()[0],
            AUTO_HALF_LIVES.iter().max().copied()
        );
        assert_eq!(
            auto_after(60_000, |_| (0.08, 0.04)),
            AUTO_HALF_LIVES.iter().max().copied()
        );
    }

    #[test]
    fn auto_forgets_on_a_switched_stream() {
        // Three weeks of one truth, then the options swap and stay swapped for weeks.
        let switch = 30_000;
        let chosen = auto_after(90_000, |i| {
            if i < switch {
                (0.15, 0.03)
            } else {
                (0.03, 0.15)
            }
        });
        let half_life = chosen.expect("a switched stream is forgotten");
        assert!(half_life <= 4 * DAY_MS, "half-life {half_life} ms");
    }

    #[test]
    fn a_candidate_replaces_the_one_in_force_only_by_the_margin() {
        let mut scores = CandidateScores::new(2);
        scores.charge([1.0, 1.0 - SWITCH_MARGIN / 2.0].into_iter());
        assert_eq!(scores.in_force(), 0);
        for _ in 0..10 {
            scores.charge([1.0, 0.0].into_iter());
        }
        assert_eq!(scores.in_force(), 1);
        assert_eq!(scores.switches(), 1);
    }
}
