//! Thompson sampling served through per-segment decision distributions.
//!
//! Pure Thompson sampling draws from the posterior at every impression, which makes the
//! propensity of the chosen version an intractable integral and puts the draw on the
//! request path. Instead, for each segment, [`ThompsonPolicy`] rebuilds a
//! [`DecisionTable`] from `M` posterior draws on a cadence (off the decision path):
//! version `v` is chosen with probability `count(v) / M`, exactly, and sampled in O(1).
//! As `M` grows the table tends to the Thompson sampling distribution.
//!
//! A segment's table is rebuilt when any of these holds since its last rebuild:
//! `every_events` events of that segment arrived; `every_events x segments` events of
//! the campaign arrived (rare segments still see what common ones taught the shared
//! weights); `every_millis` milliseconds passed on the caller's clock and the campaign
//! learned something since.

use super::{Choice, Decision, Outcome, Policy, PricedPolicy};
use crate::decision::DecisionTable;
use rand::Rng;

/// A posterior the policy can draw the best version from.
pub trait PosteriorSampler {
    /// A short name for reports.
    fn name(&self) -> &'static str;
    /// Number of segments.
    fn segments(&self) -> usize;
    /// One Thompson draw: sample the model from its posterior and return the version
    /// with the highest sampled objective for `segment`.
    fn draw_best<R: Rng + ?Sized>(&mut self, segment: usize, rng: &mut R) -> u64 {
        self.draw_best_valued(segment, rng).0
    }
    /// One Thompson draw, as [`PosteriorSampler::draw_best`], with the sampled objective
    /// of the version returned (value per impression under a value objective), which a
    /// priced decision compares with the price of the opportunity.
    fn draw_best_valued<R: Rng + ?Sized>(&mut self, segment: usize, rng: &mut R) -> (u64, f64);
    /// Learns one outcome.
    fn observe(&mut self, outcome: &Outcome);
    /// Learns one outcome that happened at `at_millis` on the caller's clock (a model
    /// that forgets first brings what the outcome touches up to that time). The
    /// default ignores the time.
    fn observe_at(&mut self, outcome: &Outcome, at_millis: u64) {
        let _ = at_millis;
        self.observe(outcome);
    }
    /// [`PosteriorSampler::observe_at`] with the outcome's weight in scoring
    /// forgetting candidates ([`Policy::observe_scored`]). The default ignores it.
    fn observe_scored(&mut self, outcome: &Outcome, at_millis: u64, score_weight: f64) {
        let _ = score_weight;
        self.observe_at(outcome, at_millis);
    }
    /// Moves the model's clock to `now_millis`, so draws see beliefs forgotten up to
    /// then. The default does nothing.
    fn advance_clock(&mut self, now_millis: u64) {
        let _ = now_millis;
    }
    /// Events learned so far (the model version).
    fn observations(&self) -> u64;
    /// Approximate heap bytes held.
    fn heap_bytes(&self) -> usize;
}

/// When decision distributions are rebuilt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshCadence {
    /// Rebuild a segment after this many of its own events (at least 1).
    pub every_events: u64,
    /// Rebuild a segment after this many milliseconds, when the caller has a clock.
    pub every_millis: Option<u64>,
}

impl Default for RefreshCadence {
    /// The campaign defaults ([`super::campaign`]).
    fn default() -> Self {
        Self {
            every_events: super::campaign::DEFAULT_REFRESH_EVERY_EVENTS,
            every_millis: Some(super::campaign::DEFAULT_REFRESH_EVERY_MILLIS),
        }
    }
}

/// Thompson sampling settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThompsonSettings {
    /// Posterior draws per decision distribution (`M`, at least 1).
    pub draws: usize,
    /// When distributions are rebuilt.
    pub cadence: RefreshCadence,
}

impl Default for ThompsonSettings {
    /// The campaign defaults ([`super::campaign`]).
    fn default() -> Self {
        Self {
            draws: super::campaign::DEFAULT_DRAWS as usize,
            cadence: RefreshCadence::default(),
        }
    }
}

/// Refresh bookkeeping of one segment.
#[derive(Debug, Clone, Copy, Default)]
struct SegmentClock {
    /// Events of this segment since its last rebuild.
    own_events: u64,
    /// Campaign events counter at its last rebuild.
    campaign_events_at_build: u64,
    /// Caller's clock at its last rebuild.
    built_at_millis: Option<u64>,
}

/// Thompson sampling through per-segment decision distributions.
#[derive(Debug, Clone)]
pub struct ThompsonPolicy<S> {
    sampler: S,
    settings: ThompsonSettings,
    tables: Vec<DecisionTable>,
    clocks: Vec<SegmentClock>,
    campaign_events: u64,
    /// Segments that reached `every_events` own events since their rebuild.
    pending: Vec<usize>,
    /// Smallest campaign event count at which some segment is due by campaign events.
    next_campaign_due: u64,
}

impl<S: PosteriorSampler> ThompsonPolicy<S> {
    /// A policy whose first distributions are drawn from the sampler's current state.
    pub fn new<R: Rng + ?Sized>(sampler: S, settings: ThompsonSettings, rng: &mut R) -> Self {
        let segments = sampler.segments();
        let mut policy = Self {
            sampler,
            settings: ThompsonSettings {
                draws: settings.draws.max(1),
                cadence: RefreshCadence {
                    every_events: settings.cadence.every_events.max(1),
                    every_millis: settings.cadence.every_millis,
                },
            },
            tables: Vec::with_capacity(segments),
            clocks: vec![SegmentClock::default(); segments],
            campaign_events: 0,
            pending: Vec::new(),
            next_campaign_due: 0,
        };
        for segment in 0..segments {
            let table = policy.build_table(segment, rng);
            policy.tables.push(table);
        }
        policy.next_campaign_due = policy.campaign_window();
        policy
    }

    fn build_table<R: Rng + ?Sized>(&mut self, segment: usize, rng: &mut R) -> DecisionTable {
        Self::draw_table_of(&mut self.sampler, segment, self.settings.draws, rng)
    }

    /// Rebuilds the distribution of one segment now (from beliefs forgotten up to
    /// `now_millis`, when given).
    pub fn refresh_segment<R: Rng + ?Sized>(
        &mut self,
        segment: usize,
        rng: &mut R,
        now_millis: Option<u64>,
    ) {
        if let Some(now) = now_millis {
            self.sampler.advance_clock(now);
        }
        let table = self.build_table(segment, rng);
        self.install_table(segment, table, now_millis);
    }

    /// Segments whose distribution is due for a rebuild, in the order
    /// [`Policy::refresh_due`] rebuilds them. A caller that must not block decisions
    /// while drawing can build the tables from a copy of the sampler
    /// ([`ThompsonPolicy::draw_table`]) and install them afterwards.
    pub fn due_segments(&self, now_millis: Option<u64>) -> Vec<usize> {
        let scan_all = now_millis.is_some() || self.campaign_events >= self.next_campaign_due;
        if scan_all {
            (0..self.tables.len())
                .filter(|&segment| self.is_due(segment, now_millis))
                .collect()
        } else {
            self.pending.iter().rev().copied().collect()
        }
    }

    /// Draws a decision table for `segment` from `sampler` (this policy's sampler or a
    /// copy of it) with this policy's number of draws.
    pub fn draw_table<R: Rng + ?Sized>(
        &self,
        sampler: &mut S,
        segment: usize,
        rng: &mut R,
    ) -> DecisionTable {
        Self::draw_table_of(sampler, segment, self.settings.draws, rng)
    }

    /// Draws a decision table of `draws` posterior draws (at least 1) for `segment` from
    /// `sampler`: what [`ThompsonPolicy::draw_table`] does with the policy's number of
    /// draws, and a plan with its own ([`crate::plan::PlanSettings::draws`]).
    pub fn draw_table_of<R: Rng + ?Sized>(
        sampler: &mut S,
        segment: usize,
        draws: usize,
        rng: &mut R,
    ) -> DecisionTable {
        let chosen: Vec<(u64, f64)> = (0..draws.max(1))
            .map(|_| sampler.draw_best_valued(segment, rng))
            .collect();
        DecisionTable::from_valued_draws(chosen, sampler.observations())
    }

    /// Puts a table built from the current model in force for `segment`.
    pub fn install_table(&mut self, segment: usize, table: DecisionTable, now_millis: Option<u64>) {
        self.tables[segment] = table;
        self.clocks[segment] = SegmentClock {
            own_events: 0,
            campaign_events_at_build: self.campaign_events,
            built_at_millis: now_millis,
        };
        self.pending.retain(|&s| s != segment);
    }

    /// Stamps every segment's table as built at `now_millis` on the caller's clock (for
    /// tables [`ThompsonPolicy::new`] drew, which know no time), so the time cadence
    /// counts from then.
    pub fn mark_built_at(&mut self, now_millis: Option<u64>) {
        for clock in &mut self.clocks {
            clock.built_at_millis = now_millis;
        }
    }

    /// Recomputes when the campaign-wide cadence is next due (after installing tables).
    pub fn finish_refresh(&mut self) {
        let window = self.campaign_window();
        self.next_campaign_due = self
            .clocks
            .iter()
            .map(|c| c.campaign_events_at_build + window)
            .min()
            .unwrap_or(u64::MAX);
    }

    /// Campaign events after which every segment is rebuilt.
    fn campaign_window(&self) -> u64 {
        self.settings.cadence.every_events * self.tables.len() as u64
    }

    /// Posterior draws per decision table.
    pub fn draws(&self) -> usize {
        self.settings.draws
    }

    /// The sampler.
    pub fn sampler(&self) -> &S {
        &self.sampler
    }

    /// The sampler, mutably.
    pub fn sampler_mut(&mut self) -> &mut S {
        &mut self.sampler
    }

    /// The decision distribution in force for a segment.
    pub fn table(&self, segment: usize) -> &DecisionTable {
        &self.tables[segment]
    }

    fn is_due(&self, segment: usize, now_millis: Option<u64>) -> bool {
        let clock = &self.clocks[segment];
        let cadence = &self.settings.cadence;
        let campaign_since = self.campaign_events - clock.campaign_events_at_build;
        if clock.own_events >= cadence.every_events || campaign_since >= self.campaign_window() {
            return true;
        }
        match (cadence.every_millis, now_millis, clock.built_at_millis) {
            // Time alone rebuilds only a table that has something new to learn from.
            (Some(every), Some(now), Some(built)) => {
                campaign_since > 0 && now.saturating_sub(built) >= every
            }
            (Some(_), Some(_), None) => campaign_since > 0,
            _ => false,
        }
    }
}

impl<S: PosteriorSampler> Policy for ThompsonPolicy<S> {
    fn name(&self) -> &'static str {
        self.sampler.name()
    }

    #[inline]
    fn decide<R: Rng + ?Sized>(&self, segment: usize, rng: &mut R) -> Decision {
        let table = &self.tables[segment];
        let version = table.sample(rng);
        Decision {
            version,
            propensity: table.probability(version),
            model_version: table.model_version(),
        }
    }

    fn propensity(&self, segment: usize, version: u64) -> f64 {
        self.tables[segment].probability(version)
    }

    fn model_version(&self, segment: usize) -> u64 {
        self.tables[segment].model_version()
    }

    fn observe(&mut self, outcome: &Outcome) {
        self.sampler.observe(outcome);
        self.count_event(outcome.segment);
    }

    fn observe_at(&mut self, outcome: &Outcome, at_millis: u64) {
        self.sampler.observe_at(outcome, at_millis);
        self.count_event(outcome.segment);
    }

    fn observe_scored(&mut self, outcome: &Outcome, at_millis: u64, score_weight: f64) {
        self.sampler
            .observe_scored(outcome, at_millis, score_weight);
        self.count_event(outcome.segment);
    }

    fn refresh_due<R: Rng + ?Sized>(&mut self, rng: &mut R, now_millis: Option<u64>) -> usize {
        // Called after every event on the simulator's hot path: nothing to do is the
        // common case and must stay cheap.
        if self.pending.is_empty()
            && now_millis.is_none()
            && self.campaign_events < self.next_campaign_due
        {
            return 0;
        }
        let due = self.due_segments(now_millis);
        let rebuilt = due.len();
        if rebuilt > 0 {
            if let Some(now) = now_millis {
                self.sampler.advance_clock(now);
            }
        }
        for segment in due {
            let table = self.build_table(segment, rng);
            self.install_table(segment, table, now_millis);
        }
        self.finish_refresh();
        rebuilt
    }

    fn model_bytes(&self) -> usize {
        self.sampler.heap_bytes()
            + self
                .tables
                .iter()
                .map(DecisionTable::heap_bytes)
                .sum::<usize>()
            + self.clocks.capacity() * std::mem::size_of::<SegmentClock>()
    }
}

impl<S: PosteriorSampler> ThompsonPolicy<S> {
    /// Counts one event of `segment` toward the refresh cadence.
    fn count_event(&mut self, segment: usize) {
        let clock = &mut self.clocks[segment];
        clock.own_events += 1;
        if clock.own_events == self.settings.cadence.every_events {
            self.pending.push(segment);
        }
        self.campaign_events += 1;
    }
}

impl<S: PosteriorSampler> PricedPolicy for ThompsonPolicy<S> {
    fn skip_probability(&self, segment: usize, price: f64) -> f64 {
        let table = &self.tables[segment];
        table.draws_at_or_below(price) as f64 / table.draws() as f64
    }

    #[inline]
    fn decide_priced<R: Rng + ?Sized>(&self, segment: usize, price: f64, rng: &mut R) -> Choice {
        let table = &self.tables[segment];
        let version = table.sample_above(price, rng);
        let propensity = match version {
            Some(v) => table.probability_above(v, price),
            None => self.skip_probability(segment, price),
        };
        Choice {
            version,
            propensity,
            model_version: table.model_version(),
        }
    }

    fn propensity_priced(&self, segment: usize, version: u64, price: f64) -> f64 {
        self.tables[segment].probability_above(version, price)
    }

    fn mass_priced(
        &self,
        segment: usize,
        price: f64,
        pick: &dyn Fn(u64) -> bool,
        _picked_allowed: u64,
    ) -> f64 {
        self.tables[segment].mass_above(price, pick)
    }
}
