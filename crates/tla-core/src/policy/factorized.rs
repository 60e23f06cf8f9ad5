//! Factorized Thompson sampling: one posterior draw of the campaign model, then the
//! version with the highest sampled objective for the segment.
//!
//! A draw samples every weight the segment can touch: the bias, the segment weight, each
//! option's main effect and (option, segment) interaction, each declared pair
//! interaction, and, when the objective is value, the expected donation per ask option.
//! The sampled conversion probability of a version is `Phi(score / beta)`, with `score`
//! the sum of its active sampled weights.
//!
//! Finding the best version does not enumerate the space. Components are grouped into
//! *blocks*: two components share a block when a declared pair interaction or an
//! exclusion links them. Blocks are independent, so the score is maximized block by
//! block: a single-component block by a scan of its options; a larger block exactly by
//! enumerating its combinations when there are at most `exact_limit` of them, otherwise
//! by coordinate ascent with random restarts. With the value objective, the block
//! holding the ask component is maximized once per ask option, and the ask that
//! maximizes `Phi((rest + block score) / beta) x E[amount | ask]` wins. With only
//! (component, segment) interactions every block is a single component and the argmax
//! is exact in O(sum of option counts).
//!
//! Under an [`Availability`] rule ([`FactorizedSampler::set_availability`]) an option
//! a segment may not be served (retired, or ruled out by the segment's pins) is scored
//! `-inf` in that segment's draws, after its weights are drawn as usual (so the random
//! numbers drawn do not depend on the rule). Every search keeps to finite scores: a
//! scan's argmax, the exact enumeration and the combination scans never prefer a
//! `-inf` score, coordinate ascent moves off it, and the per-ask loop of the value
//! objective skips an ask whose block has no finite score. So a draw returns a version
//! available to the segment whenever the segment has one, which the rule guarantees.

use super::Outcome;
use super::thompson::PosteriorSampler;
use crate::availability::Availability;
use crate::design::{Design, Objective};
use crate::model::Belief;
use crate::model::conversion::{ConversionModel, ConversionPrior};
use crate::model::forgetting::{ConversionCandidates, Forgetting};
use crate::model::value::{ValueModel, ValuePrior};
use crate::space::{OptionRef, VersionSpace};
use crate::stats;
use rand::Rng;
use rand_distr::StandardNormal;

/// Model kind written in snapshots of this sampler.
const SNAPSHOT_KIND: u8 = 1;

/// How a multi-component block is maximized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockSearch {
    /// Enumerate every combination of the block.
    Exact,
    /// Coordinate ascent from the separable optimum and `restarts` random starts.
    CoordinateAscent {
        /// Random starting points besides the separable one.
        restarts: usize,
    },
}

/// Settings of the factorized sampler.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FactorizedSettings {
    /// Conversion model prior.
    pub conversion: ConversionPrior,
    /// Value model prior.
    pub value: ValuePrior,
    /// Largest number of combinations a block may have to be searched exactly.
    pub exact_limit: u64,
    /// Random restarts of coordinate ascent on larger blocks.
    pub restarts: usize,
    /// Scale of the posterior spread in each draw: 1 is Thompson sampling; below 1
    /// draws closer to the posterior mean (less exploration).
    pub draw_scale: f64,
    /// How the model forgets (the spec's `forgetting`, see
    /// [`crate::model::forgetting`]).
    pub forgetting: Forgetting,
}

impl Default for FactorizedSettings {
    fn default() -> Self {
        Self {
            conversion: ConversionPrior::default(),
            value: ValuePrior::default(),
            exact_limit: crate::design::DEFAULT_EXACT_LIMIT,
            restarts: 4,
            draw_scale: 0.6,
            forgetting: Forgetting::default(),
        }
    }
}

/// Components linked by pair interactions or exclusions.
#[derive(Debug, Clone)]
struct Block {
    /// Components of the block, ascending.
    components: Vec<usize>,
    /// Indices into the layout's pairs that fall inside the block.
    pairs: Vec<usize>,
    /// Whether any exclusion links two of its components.
    has_exclusions: bool,
    /// How the block is maximized.
    search: BlockSearch,
    /// For exactly searched multi-component blocks: every allowed combination, one
    /// option per block component (in `components` order), flattened.
    combinations: Vec<u32>,
    /// For each pair in `pairs`: (pair index, position of `a` and of `b` in
    /// `components`, option count of `b`).
    pair_slots: Vec<(usize, usize, usize, usize)>,
    /// For exactly searched blocks, the score of a combination is split in a prefix
    /// (terms not involving the block's last component, shared by the consecutive
    /// combinations that differ only in that component) and a tail (the last
    /// component's option and the pairs involving it). Each prefix: positions of its
    /// terms in the flat score buffer, `terms_per_prefix` each.
    prefix_terms: Vec<u32>,
    /// Per prefix, the end (exclusive) of its run of combinations.
    prefix_ends: Vec<u32>,
    /// Terms per prefix.
    terms_per_prefix: usize,
    /// Per combination, positions of its tail terms, `terms_per_tail` each.
    tail_terms: Vec<u32>,
    /// Terms per tail.
    terms_per_tail: usize,
}

/// The factorized campaign model as a Thompson sampler.
#[derive(Debug, Clone)]
pub struct FactorizedSampler {
    space: VersionSpace,
    objective: Objective,
    /// Ask component, when the objective is value and the campaign has asks.
    ask_component: Option<usize>,
    /// The conversion model: one per forgetting candidate, one in force.
    conversion: ConversionCandidates,
    value: Option<ValueModel>,
    blocks: Vec<Block>,
    /// Index of the block holding the ask component.
    ask_block: Option<usize>,
    draw_scale: f64,
    /// Per segment, the options its draws may not choose (empty: every option; no
    /// entry: no rule set).
    unavailable: Vec<Vec<OptionRef>>,
    /// The caller's latest clock, ms ([`PosteriorSampler::advance_clock`]): draws read
    /// beliefs forgotten up to then (or to the latest event, if later). Not learned
    /// state: a refresh leaves the model, and its snapshot, unchanged.
    draw_millis: u64,
    /// The in-force conversion weights forgotten up to the draw time, when it forgets.
    forgotten: Vec<Belief>,
    /// What `forgotten` was computed for: (time, events learned, candidate in force).
    forgotten_key: Option<(u64, u64, usize)>,
    scratch: Scratch,
}

/// Sampled weights of one draw, and search state.
#[derive(Debug, Clone, Default)]
struct Scratch {
    /// Sampled score of each option, per component (main effect + segment interaction).
    option_scores: Vec<Vec<f64>>,
    /// Sampled pair matrices, per layout pair, `o_a * n_b + o_b`.
    pair_scores: Vec<Vec<f64>>,
    /// Sampled expected amount per ask option.
    amounts: Vec<f64>,
    /// Option scores then pair scores, concatenated (see `flat_offsets`), for the
    /// scans of exactly searched blocks.
    flat: Vec<f64>,
    /// Where each component's option scores, then each pair's scores, start in `flat`.
    flat_offsets: Vec<usize>,
    /// Options under construction.
    options: Vec<u32>,
    /// Options of the best configuration found in a block.
    best: Vec<u32>,
    /// Options of the current configuration in a search.
    current: Vec<u32>,
}

impl FactorizedSampler {
    /// A sampler at its prior.
    pub fn new(design: &Design, settings: FactorizedSettings) -> Self {
        let conversion = ConversionModel::new(design, settings.conversion);
        let ask_component = match (design.objective, &design.ask) {
            (Objective::Value, Some(ask)) => Some(ask.component),
            _ => None,
        };
        let value =
            (design.objective == Objective::Value).then(|| ValueModel::new(design, settings.value));
        let blocks = build_blocks(
            &design.space,
            &conversion,
            settings.exact_limit,
            settings.restarts,
        );
        let ask_block = ask_component.map(|k| {
            blocks
                .iter()
                .position(|b| b.components.contains(&k))
                .expect("every component has a block")
        });
        let layout = conversion.layout();
        let (flat_offsets, flat_len) = flat_layout(layout);
        let scratch = Scratch {
            flat: vec![0.0; flat_len],
            flat_offsets,
            option_scores: layout.option_counts.iter().map(|&n| vec![0.0; n]).collect(),
            pair_scores: layout
                .pairs
                .iter()
                .map(|&(a, b, _)| vec![0.0; layout.option_counts[a] * layout.option_counts[b]])
                .collect(),
            amounts: vec![0.0; value.as_ref().map_or(1, |v| v.ask_options().max(1))],
            options: vec![0; layout.option_counts.len()],
            best: vec![0; layout.option_counts.len()],
            current: vec![0; layout.option_counts.len()],
        };
        let conversion = ConversionCandidates::new(conversion, settings.forgetting);
        let mut value = value;
        if let Some(value) = &mut value {
            value.set_half_life(conversion.half_life_in_force());
        }
        Self {
            space: design.space.clone(),
            objective: design.objective,
            ask_component,
            conversion,
            value,
            blocks,
            ask_block,
            draw_scale: settings.draw_scale,
            unavailable: Vec::new(),
            draw_millis: 0,
            forgotten: Vec::new(),
            forgotten_key: None,
            scratch,
        }
    }

    /// Keeps every draw of a segment to the versions `availability` leaves it (see the
    /// module documentation); the rule must have one entry per segment.
    pub fn set_availability(&mut self, availability: &Availability) {
        self.unavailable = if availability.is_everything() {
            Vec::new()
        } else {
            (0..availability.segments())
                .map(|segment| availability.unavailable(segment).to_vec())
                .collect()
        };
    }

    /// Carries the learned state of `old`, the sampler of the campaign's previous
    /// revision, into this sampler at its prior: every weight of the conversion model
    /// and of the value model whose options and segment exist in both revisions, by
    /// name ([`crate::revision::Revision`]); new options and segments keep their prior.
    pub fn carry_from(&mut self, old: &FactorizedSampler, revision: &crate::revision::Revision) {
        let map = revision.conversion_feature_map(
            old.conversion.in_force().layout(),
            self.conversion.in_force().layout(),
        );
        self.conversion.carry_from(&old.conversion, &map);
        if let (Some(value), Some(old_value)) = (&mut self.value, &old.value) {
            let ask = self.ask_component;
            value.carry_from(
                old_value,
                |segment| revision.old_segment(segment),
                |option| {
                    ask.and_then(|k| revision.old_option(k, option as u32))
                        .map(|o| o as usize)
                },
            );
        }
    }

    /// The conversion (or click) model in force (the forgetting candidate decisions
    /// draw from).
    pub fn conversion(&self) -> &ConversionModel {
        self.conversion.in_force()
    }

    /// The forgetting candidates of the conversion model, and the one in force.
    pub fn forgetting(&self) -> &ConversionCandidates {
        &self.conversion
    }

    /// Computes the in-force conversion weights forgotten up to the draw time, when
    /// the model in force forgets and they are not current. The value model's weights
    /// are drawn as last updated (forgotten up to their latest donation).
    fn prepare_draw_weights(&mut self) {
        let model = self.conversion.in_force();
        if model.half_life_millis().is_none() {
            return;
        }
        let now = self.draw_millis.max(model.now_millis());
        let key = (now, model.observations(), self.conversion.in_force_index());
        if self.forgotten_key == Some(key) {
            return;
        }
        model.forgotten_weights_into(now, &mut self.forgotten);
        self.forgotten_key = Some(key);
    }

    /// The value model, when the objective is value.
    pub fn value(&self) -> Option<&ValueModel> {
        self.value.as_ref()
    }

    /// The amount the value model would learn from if a conversion of `amount` on
    /// `version` in `segment` arrived now ([`ValueModel::learned_amount`]); `None`
    /// without a value model or for an amount it does not learn (not positive).
    pub fn learned_amount(&self, segment: usize, version: u64, amount: f64) -> Option<f64> {
        let value = self.value.as_ref()?;
        if !(amount > 0.0 && amount.is_finite()) {
            return None;
        }
        let ask = self
            .ask_component
            .map(|k| self.space.option_of(version, k) as usize);
        Some(value.learned_amount(segment, ask, amount))
    }

    /// Learns the mean amount of `count` conversions of `version` in `segment` at
    /// `at_millis`, their single amounts unknown ([`ValueModel::observe_mean_at`]);
    /// nothing without a value model or for a mean it does not learn (not positive and
    /// finite, or no conversions). The conversions themselves are learned as outcomes.
    pub fn observe_mean_amount_at(
        &mut self,
        segment: usize,
        version: u64,
        mean_amount: f64,
        count: u64,
        at_millis: u64,
    ) {
        let Some(value) = self.value.as_mut() else {
            return;
        };
        if !(mean_amount > 0.0 && mean_amount.is_finite() && count > 0) {
            return;
        }
        let ask = self
            .ask_component
            .map(|k| self.space.option_of(version, k) as usize);
        value.observe_mean_at(segment, ask, mean_amount, count, at_millis);
    }

    /// How each block of components is searched, with its components.
    pub fn block_searches(&self) -> Vec<(Vec<usize>, BlockSearch)> {
        self.blocks
            .iter()
            .map(|b| (b.components.clone(), b.search))
            .collect()
    }

    /// Samples every weight segment `segment` can touch into the scratch space; returns
    /// the sampled constant (bias + segment weight).
    fn sample_weights<R: Rng + ?Sized>(&mut self, segment: usize, rng: &mut R) -> f64 {
        self.prepare_draw_weights();
        let model = self.conversion.in_force();
        let layout = model.layout();
        let weights = if model.half_life_millis().is_some() {
            &self.forgotten[..]
        } else {
            model.weights()
        };
        let scale = self.draw_scale;
        let mut normal = || scale * rng.sample::<f64, _>(StandardNormal);
        let constant =
            weights[0].draw(normal()) + weights[layout.segment_offset + segment].draw(normal());
        for (k, scores) in self.scratch.option_scores.iter_mut().enumerate() {
            let main = &weights[layout.option_offset[k]..][..scores.len()];
            match layout.segment_interaction_offset[k] {
                Some(offset) => {
                    let crossed = &weights[offset + segment * scores.len()..][..scores.len()];
                    for ((score, m), c) in scores.iter_mut().zip(main).zip(crossed) {
                        *score = m.draw(normal()) + c.draw(normal());
                    }
                }
                None => {
                    for (score, m) in scores.iter_mut().zip(main) {
                        *score = m.draw(normal());
                    }
                }
            }
        }
        for (p, scores) in self.scratch.pair_scores.iter_mut().enumerate() {
            let offset = layout.pairs[p].2;
            for (score, w) in scores.iter_mut().zip(&weights[offset..]) {
                *score = w.draw(normal());
            }
        }
        if let Some(value) = &self.value {
            value.draw_expected_amounts(segment, normal, &mut self.scratch.amounts);
        }
        if let Some(unavailable) = self.unavailable.get(segment) {
            for option in unavailable {
                self.scratch.option_scores[option.component][option.option as usize] =
                    f64::NEG_INFINITY;
            }
        }
        constant
    }

    /// Maximizes the sampled objective given the weights in scratch; writes the chosen
    /// options into `scratch.options` and returns the sampled objective.
    fn maximize<R: Rng + ?Sized>(&mut self, constant: f64, exact: bool, rng: &mut R) -> f64 {
        let beta = self.conversion.in_force().prior().beta;
        let mut rest = constant;
        for b in 0..self.blocks.len() {
            if Some(b) == self.ask_block {
                continue;
            }
            let score = self.maximize_block(b, None, exact, rng);
            rest += score;
            for &k in &self.blocks[b].components {
                self.scratch.options[k] = self.scratch.best[k];
            }
        }
        let (Some(b), Some(ask)) = (self.ask_block, self.ask_component) else {
            return match self.objective {
                Objective::Value => stats::normal_cdf(rest / beta) * self.scratch.amounts[0],
                _ => stats::normal_cdf(rest / beta),
            };
        };
        if !exact && !self.blocks[b].combinations.is_empty() && !self.blocks[b].pairs.is_empty() {
            return self.maximize_ask_block_by_combinations(b, ask, rest, beta);
        }
        let mut best_objective = f64::NEG_INFINITY;
        let mut chosen = vec![0u32; self.blocks[b].components.len()];
        for a in 0..self.space.option_count(ask) {
            let score = self.maximize_block(b, Some((ask, a)), exact, rng);
            if score == f64::NEG_INFINITY {
                continue; // this ask admits no allowed combination in its block
            }
            let objective =
                stats::normal_cdf((rest + score) / beta) * self.scratch.amounts[a as usize];
            if objective > best_objective {
                best_objective = objective;
                for (slot, &k) in chosen.iter_mut().zip(&self.blocks[b].components) {
                    *slot = self.scratch.best[k];
                }
            }
        }
        for (&o, &k) in chosen.iter().zip(&self.blocks[b].components) {
            self.scratch.options[k] = o;
        }
        best_objective
    }

    /// Copies the sampled scores into the flat buffer the combination scans read.
    fn flatten_scores(&mut self) {
        let scratch = &mut self.scratch;
        let components = scratch.option_scores.len();
        for (k, scores) in scratch.option_scores.iter().enumerate() {
            let offset = scratch.flat_offsets[k];
            scratch.flat[offset..offset + scores.len()].copy_from_slice(scores);
        }
        for (p, scores) in scratch.pair_scores.iter().enumerate() {
            let offset = scratch.flat_offsets[components + p];
            scratch.flat[offset..offset + scores.len()].copy_from_slice(scores);
        }
    }

    /// Calls `visit(combination, score)` for every combination of an exactly searched
    /// block, in order, given the flat buffer.
    #[inline]
    fn for_each_combination_score(flat: &[f64], block: &Block, mut visit: impl FnMut(usize, f64)) {
        let sum = |terms: &[u32]| terms.iter().map(|&t| flat[t as usize]).sum::<f64>();
        let mut combination = 0usize;
        for (prefix, &end) in block
            .prefix_terms
            .chunks_exact(block.terms_per_prefix)
            .zip(&block.prefix_ends)
        {
            // A multi-component block has at least one prefix term.
            let prefix_score = sum(prefix);
            let end = end as usize;
            for tail in block.tail_terms
                [combination * block.terms_per_tail..end * block.terms_per_tail]
                .chunks_exact(block.terms_per_tail)
            {
                visit(combination, prefix_score + sum(tail));
                combination += 1;
            }
        }
    }

    /// Best combination of an exactly searched block, scanning its precomputed list;
    /// the options go to `scratch.best`.
    fn maximize_block_by_combinations(&mut self, b: usize) -> f64 {
        self.flatten_scores();
        let block = &self.blocks[b];
        let width = block.components.len();
        let mut best = (0, f64::NEG_INFINITY);
        Self::for_each_combination_score(&self.scratch.flat, block, |c, score| {
            if score > best.1 {
                best = (c, score);
            }
        });
        for (i, &k) in block.components.iter().enumerate() {
            self.scratch.best[k] = block.combinations[best.0 * width + i];
        }
        best.1
    }

    /// The ask block searched through its precomputed combinations in one pass: the
    /// best score per ask option, then the ask with the best sampled objective.
    fn maximize_ask_block_by_combinations(
        &mut self,
        b: usize,
        ask: usize,
        rest: f64,
        beta: f64,
    ) -> f64 {
        self.flatten_scores();
        let block = &self.blocks[b];
        let width = block.components.len();
        let ask_slot = block
            .components
            .iter()
            .position(|&k| k == ask)
            .expect("ask in its block");
        let asks = self.space.option_count(ask) as usize;
        let mut best_per_ask = [(usize::MAX, f64::NEG_INFINITY); 64];
        let mut best_per_ask_heap;
        let best_per_ask: &mut [(usize, f64)] = if asks <= 64 {
            &mut best_per_ask[..asks]
        } else {
            best_per_ask_heap = vec![(usize::MAX, f64::NEG_INFINITY); asks];
            &mut best_per_ask_heap
        };
        Self::for_each_combination_score(&self.scratch.flat, block, |c, score| {
            let a = block.combinations[c * width + ask_slot] as usize;
            if score > best_per_ask[a].1 {
                best_per_ask[a] = (c, score);
            }
        });
        let mut best = (usize::MAX, f64::NEG_INFINITY);
        for (a, &(c, score)) in best_per_ask.iter().enumerate() {
            if c == usize::MAX {
                continue;
            }
            let objective = stats::normal_cdf((rest + score) / beta) * self.scratch.amounts[a];
            if objective > best.1 {
                best = (c, objective);
            }
        }
        for (i, &k) in block.components.iter().enumerate() {
            self.scratch.options[k] = block.combinations[best.0 * width + i];
        }
        best.1
    }

    /// Best block score with an optional component pinned; the options go to
    /// `scratch.best`. Returns `-inf` when no allowed combination exists.
    fn maximize_block<R: Rng + ?Sized>(
        &mut self,
        b: usize,
        pinned: Option<(usize, u32)>,
        exact: bool,
        rng: &mut R,
    ) -> f64 {
        let block = &self.blocks[b];
        if block.components.len() == 1 {
            let k = block.components[0];
            if let Some((_, o)) = pinned {
                self.scratch.best[k] = o;
                return self.scratch.option_scores[k][o as usize];
            }
            let (o, score) = argmax(&self.scratch.option_scores[k]);
            self.scratch.best[k] = o as u32;
            return score;
        }
        if block.pairs.is_empty() {
            // Linked by exclusions only: the score is separable, so the best option of
            // each component is optimal whenever that combination is allowed, which
            // with a few exclusions is nearly always.
            let components = block.components.len();
            for i in 0..components {
                let k = self.blocks[b].components[i];
                self.scratch.current[k] = match pinned {
                    Some((p, o)) if p == k => o,
                    _ => argmax(&self.scratch.option_scores[k]).0 as u32,
                };
            }
            if self.block_allowed(b) {
                let score = self.block_score(b);
                for i in 0..components {
                    let k = self.blocks[b].components[i];
                    self.scratch.best[k] = self.scratch.current[k];
                }
                return score;
            }
        }
        let block = &self.blocks[b];
        if pinned.is_none() && !block.combinations.is_empty() {
            return self.maximize_block_by_combinations(b);
        }
        match (exact, block.search) {
            (true, _) | (false, BlockSearch::Exact) => self.enumerate_block(b, pinned),
            (false, BlockSearch::CoordinateAscent { restarts }) => {
                self.ascend_block(b, pinned, restarts, rng)
            }
        }
    }

    /// Score of the configuration in `scratch.current` over a block's components.
    fn block_score(&self, b: usize) -> f64 {
        let block = &self.blocks[b];
        let current = &self.scratch.current;
        let layout = self.conversion.in_force().layout();
        let mut score = 0.0;
        for &k in &block.components {
            score += self.scratch.option_scores[k][current[k] as usize];
        }
        for &p in &block.pairs {
            let (a, bb, _) = layout.pairs[p];
            score += self.scratch.pair_scores[p]
                [current[a] as usize * layout.option_counts[bb] + current[bb] as usize];
        }
        score
    }

    /// Whether `scratch.current` respects every exclusion inside a block.
    fn block_allowed(&self, b: usize) -> bool {
        let block = &self.blocks[b];
        if !block.has_exclusions {
            return true;
        }
        block.components.iter().all(|&k| {
            self.space
                .excluded_with(k, self.scratch.current[k])
                .iter()
                .all(|other| self.scratch.current[other.component] != other.option)
        })
    }

    fn enumerate_block(&mut self, b: usize, pinned: Option<(usize, u32)>) -> f64 {
        let components = self.blocks[b].components.clone();
        for &k in &components {
            self.scratch.current[k] = 0;
        }
        if let Some((k, o)) = pinned {
            self.scratch.current[k] = o;
        }
        let mut best = f64::NEG_INFINITY;
        loop {
            if self.block_allowed(b) {
                let score = self.block_score(b);
                if score > best {
                    best = score;
                    for &k in &components {
                        self.scratch.best[k] = self.scratch.current[k];
                    }
                }
            }
            // Odometer over the unpinned components, last fastest.
            let mut advanced = false;
            for &k in components.iter().rev() {
                if pinned.is_some_and(|(p, _)| p == k) {
                    continue;
                }
                self.scratch.current[k] += 1;
                if self.scratch.current[k] < self.space.option_count(k) {
                    advanced = true;
                    break;
                }
                self.scratch.current[k] = 0;
            }
            if !advanced {
                return best;
            }
        }
    }

    /// Local score of option `o` of component `k` given the other components of the block
    /// in `scratch.current`.
    fn local_score(&self, b: usize, k: usize, o: u32) -> f64 {
        let layout = self.conversion.in_force().layout();
        let current = &self.scratch.current;
        let mut score = self.scratch.option_scores[k][o as usize];
        for &p in &self.blocks[b].pairs {
            let (a, bb, _) = layout.pairs[p];
            if a == k {
                score += self.scratch.pair_scores[p]
                    [o as usize * layout.option_counts[bb] + current[bb] as usize];
            } else if bb == k {
                score += self.scratch.pair_scores[p]
                    [current[a] as usize * layout.option_counts[bb] + o as usize];
            }
        }
        score
    }

    fn ascend_block<R: Rng + ?Sized>(
        &mut self,
        b: usize,
        pinned: Option<(usize, u32)>,
        restarts: usize,
        rng: &mut R,
    ) -> f64 {
        const MAX_SWEEPS: usize = 32;
        let components = self.blocks[b].components.clone();
        let mut best = f64::NEG_INFINITY;
        for start in 0..=restarts {
            for &k in &components {
                self.scratch.current[k] = if start == 0 {
                    argmax(&self.scratch.option_scores[k]).0 as u32
                } else {
                    rng.random_range(0..self.space.option_count(k))
                };
            }
            if let Some((k, o)) = pinned {
                self.scratch.current[k] = o;
            }
            for _ in 0..MAX_SWEEPS {
                let mut changed = false;
                for &k in &components {
                    if pinned.is_some_and(|(p, _)| p == k) {
                        continue;
                    }
                    let mut best_option = self.scratch.current[k];
                    let mut best_local = f64::NEG_INFINITY;
                    for o in 0..self.space.option_count(k) {
                        if self.blocks[b].has_exclusions && !self.compatible_with_current(b, k, o) {
                            continue;
                        }
                        let local = self.local_score(b, k, o);
                        if local > best_local {
                            best_local = local;
                            best_option = o;
                        }
                    }
                    if best_option != self.scratch.current[k] {
                        self.scratch.current[k] = best_option;
                        changed = true;
                    }
                }
                if !changed {
                    break;
                }
            }
            if self.block_allowed(b) {
                let score = self.block_score(b);
                if score > best {
                    best = score;
                    for &k in &components {
                        self.scratch.best[k] = self.scratch.current[k];
                    }
                }
            }
        }
        if best == f64::NEG_INFINITY {
            // No start reached an allowed combination: fall back to the exact search.
            return self.enumerate_block(b, pinned);
        }
        best
    }

    fn compatible_with_current(&self, b: usize, k: usize, o: u32) -> bool {
        let block = &self.blocks[b];
        self.space.excluded_with(k, o).iter().all(|other| {
            !block.components.contains(&other.component)
                || other.component == k
                || self.scratch.current[other.component] != other.option
        })
    }

    /// One draw, maximized both by the configured search and exactly, with the time
    /// each search took as read from the caller's `seconds` clock (the core has no
    /// clock of its own). Used to measure the gap of coordinate ascent; the exact
    /// search may be slow on large blocks.
    pub fn compare_with_exact<R: Rng + ?Sized>(
        &mut self,
        segment: usize,
        rng: &mut R,
        mut seconds: impl FnMut() -> f64,
    ) -> ArgmaxComparison {
        let constant = self.sample_weights(segment, rng);
        let start = seconds();
        let configured = self.maximize(constant, false, rng);
        let middle = seconds();
        let exact = self.maximize(constant, true, rng);
        let end = seconds();
        ArgmaxComparison {
            configured,
            exact,
            configured_seconds: middle - start,
            exact_seconds: end - middle,
        }
    }

    /// Sets the scale of the posterior spread in each draw: a plan draws from a copy of
    /// the sampler at its own scale ([`crate::plan::PlanSettings::draw_scale`]).
    pub fn set_draw_scale(&mut self, scale: f64) {
        self.draw_scale = scale;
    }

    /// The scale of the posterior spread the decision tables draw at.
    pub fn draw_scale(&self) -> f64 {
        self.draw_scale
    }

    /// The version with the highest posterior-mean objective for a segment: the argmax
    /// of a draw with no spread (`rng` only feeds random restarts of coordinate ascent).
    pub fn posterior_mean_best<R: Rng + ?Sized>(&mut self, segment: usize, rng: &mut R) -> u64 {
        let scale = std::mem::replace(&mut self.draw_scale, 0.0);
        let version = self.draw_best(segment, rng);
        self.draw_scale = scale;
        version
    }

    /// The learned state as snapshot bytes (see [`crate::snapshot`]).
    pub fn snapshot(&self) -> Vec<u8> {
        self.snapshot_in_format(crate::snapshot::FORMAT)
    }

    /// [`Self::snapshot`] in an older `format` (tests check older snapshots are read).
    pub(crate) fn snapshot_in_format(&self, format: u32) -> Vec<u8> {
        let mut writer = crate::snapshot::Writer::with_format(SNAPSHOT_KIND, format);
        self.conversion.write_state(&mut writer);
        writer.u64(u64::from(self.value.is_some()));
        if let Some(value) = &self.value {
            value.write_state(&mut writer);
        }
        writer.finish()
    }

    /// Restores the learned state from [`Self::snapshot`] bytes of a sampler built from
    /// the same design. On error the sampler is left unchanged.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), crate::snapshot::SnapshotError> {
        let mut reader = crate::snapshot::Reader::new(bytes, SNAPSHOT_KIND)?;
        let mut conversion = self.conversion.clone();
        conversion.read_state(&mut reader)?;
        let has_value = reader.u64()? == 1;
        let mut value = self.value.clone();
        match (&mut value, has_value) {
            (Some(value), true) => value.read_state(&mut reader)?,
            (None, false) => {}
            _ => {
                return Err(crate::snapshot::SnapshotError::Mismatch(
                    "the snapshot and the campaign disagree on whether donations are modelled"
                        .into(),
                ));
            }
        }
        reader.finish()?;
        if let Some(value) = &mut value {
            value.set_half_life(conversion.half_life_in_force());
        }
        self.conversion = conversion;
        self.value = value;
        Ok(())
    }

    /// Posterior mean objective of a version for a segment (no sampling).
    pub fn expected_objective(&self, segment: usize, version: u64) -> f64 {
        let options = self.space.decode(version);
        let p = self.conversion.in_force().predict(segment, &options);
        match &self.value {
            Some(value) => {
                let ask = self.ask_component.map(|k| options[k] as usize);
                p * value.expected_amount(segment, ask)
            }
            None => p,
        }
    }
}

/// The configured and the exact argmax of one posterior draw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArgmaxComparison {
    /// Sampled objective of the version the configured search chose.
    pub configured: f64,
    /// Sampled objective of the exact best version.
    pub exact: f64,
    /// Time of the configured search.
    pub configured_seconds: f64,
    /// Time of the exact search.
    pub exact_seconds: f64,
}

/// Index and value of the largest element (first on ties).
fn argmax(values: &[f64]) -> (usize, f64) {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, &v) in values.iter().enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best
}

/// Groups components linked by pair interactions or exclusions (union-find).
fn build_blocks(
    space: &VersionSpace,
    conversion: &ConversionModel,
    exact_limit: u64,
    restarts: usize,
) -> Vec<Block> {
    let n = space.components();
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    let union = |parent: &mut Vec<usize>, a: usize, b: usize| {
        let (ra, rb) = (find(parent, a), find(parent, b));
        if ra != rb {
            parent[ra.max(rb)] = ra.min(rb);
        }
    };
    let layout = conversion.layout();
    for &(a, b, _) in &layout.pairs {
        union(&mut parent, a, b);
    }
    for e in space.exclusions() {
        union(&mut parent, e.first.component, e.second.component);
    }
    let mut blocks: Vec<Block> = Vec::new();
    let mut block_of_root = vec![usize::MAX; n];
    for k in 0..n {
        let root = find(&mut parent, k);
        if block_of_root[root] == usize::MAX {
            block_of_root[root] = blocks.len();
            blocks.push(Block {
                components: Vec::new(),
                pairs: Vec::new(),
                has_exclusions: false,
                search: BlockSearch::Exact,
                combinations: Vec::new(),
                pair_slots: Vec::new(),
                prefix_terms: Vec::new(),
                prefix_ends: Vec::new(),
                terms_per_prefix: 0,
                tail_terms: Vec::new(),
                terms_per_tail: 0,
            });
        }
        blocks[block_of_root[root]].components.push(k);
    }
    for (p, &(a, _, _)) in layout.pairs.iter().enumerate() {
        let root = find(&mut parent, a);
        blocks[block_of_root[root]].pairs.push(p);
    }
    for e in space.exclusions() {
        let OptionRef { component, .. } = e.first;
        let root = find(&mut parent, component);
        blocks[block_of_root[root]].has_exclusions = true;
    }
    for block in &mut blocks {
        let combinations = block
            .components
            .iter()
            .map(|&k| u64::from(space.option_count(k)))
            .fold(1u64, |acc, n| acc.saturating_mul(n));
        block.search = if combinations <= exact_limit {
            BlockSearch::Exact
        } else {
            BlockSearch::CoordinateAscent { restarts }
        };
        block.pair_slots = block
            .pairs
            .iter()
            .map(|&p| {
                let (a, b, _) = layout.pairs[p];
                let slot = |k| {
                    block
                        .components
                        .iter()
                        .position(|&c| c == k)
                        .expect("pair inside block")
                };
                (p, slot(a), slot(b), layout.option_counts[b])
            })
            .collect();
        if block.search == BlockSearch::Exact && block.components.len() > 1 {
            block.combinations = allowed_combinations(space, &block.components);
            let (offsets, _) = flat_layout(layout);
            let components = layout.option_counts.len();
            let width = block.components.len();
            let last = width - 1;
            let in_tail = |&(_, ia, ib, _): &(usize, usize, usize, usize)| ia == last || ib == last;
            block.terms_per_prefix = last
                + block
                    .pair_slots
                    .iter()
                    .filter(|slot| !in_tail(slot))
                    .count();
            block.terms_per_tail = 1 + block.pair_slots.iter().filter(|slot| in_tail(slot)).count();
            let position = |k: usize, o: u32| (offsets[k] + o as usize) as u32;
            let cell = |combination: &[u32], &(p, ia, ib, nb): &(usize, usize, usize, usize)| {
                (offsets[components + p] + combination[ia] as usize * nb + combination[ib] as usize)
                    as u32
            };
            let mut previous: Option<&[u32]> = None;
            for (c, combination) in block.combinations.chunks_exact(width).enumerate() {
                if previous.is_none_or(|p| p[..last] != combination[..last]) {
                    if previous.is_some() {
                        block.prefix_ends.push(c as u32);
                    }
                    for i in 0..last {
                        block
                            .prefix_terms
                            .push(position(block.components[i], combination[i]));
                    }
                    for slot in block.pair_slots.iter().filter(|slot| !in_tail(slot)) {
                        block.prefix_terms.push(cell(combination, slot));
                    }
                }
                block
                    .tail_terms
                    .push(position(block.components[last], combination[last]));
                for slot in block.pair_slots.iter().filter(|slot| in_tail(slot)) {
                    block.tail_terms.push(cell(combination, slot));
                }
                previous = Some(combination);
            }
            block
                .prefix_ends
                .push((block.combinations.len() / width) as u32);
        }
    }
    blocks
}

/// Where each component's option scores, then each pair's cells, start in the flat
/// score buffer, and the buffer's length: options first, in component order, then the
/// pairs in layout order.
fn flat_layout(layout: &crate::model::conversion::FeatureLayout) -> (Vec<usize>, usize) {
    let mut offsets = Vec::with_capacity(layout.option_counts.len() + layout.pairs.len());
    let mut next = 0;
    for &n in &layout.option_counts {
        offsets.push(next);
        next += n;
    }
    for &(a, b, _) in &layout.pairs {
        offsets.push(next);
        next += layout.option_counts[a] * layout.option_counts[b];
    }
    (offsets, next)
}

/// Every allowed combination of options of `components` (odometer order), flattened.
fn allowed_combinations(space: &VersionSpace, components: &[usize]) -> Vec<u32> {
    let mut current = vec![0u32; components.len()];
    let mut out = Vec::new();
    loop {
        let allowed = components.iter().enumerate().all(|(i, &k)| {
            space.excluded_with(k, current[i]).iter().all(|other| {
                components
                    .iter()
                    .position(|&c| c == other.component)
                    .is_none_or(|j| current[j] != other.option)
            })
        });
        if allowed {
            out.extend_from_slice(&current);
        }
        let mut i = components.len();
        loop {
            if i == 0 {
                return out;
            }
            i -= 1;
            current[i] += 1;
            if current[i] < space.option_count(components[i]) {
                break;
            }
            current[i] = 0;
        }
    }
}

impl PosteriorSampler for FactorizedSampler {
    fn name(&self) -> &'static str {
        "factorized-ts"
    }

    fn segments(&self) -> usize {
        self.conversion.in_force().layout().segments
    }

    fn draw_best_valued<R: Rng + ?Sized>(&mut self, segment: usize, rng: &mut R) -> (u64, f64) {
        let constant = self.sample_weights(segment, rng);
        let objective = self.maximize(constant, false, rng);
        (self.space.encode(&self.scratch.options), objective)
    }

    fn observe(&mut self, outcome: &Outcome) {
        let now = self.conversion.in_force().now_millis();
        self.observe_at(outcome, now);
    }

    fn observe_at(&mut self, outcome: &Outcome, at_millis: u64) {
        self.observe_scored(outcome, at_millis, 1.0);
    }

    fn observe_scored(&mut self, outcome: &Outcome, at_millis: u64, score_weight: f64) {
        let options = &mut self.scratch.options;
        self.space.decode_into(outcome.version, options);
        let positive = match self.objective {
            Objective::Clicks => outcome.clicked,
            Objective::Value | Objective::Conversions => outcome.converted,
        };
        let switched =
            self.conversion
                .observe_at(outcome.segment, options, positive, at_millis, score_weight);
        if let Some(value) = &mut self.value {
            if switched {
                value.set_half_life(self.conversion.half_life_in_force());
            }
            if outcome.converted && outcome.value > 0.0 && outcome.value.is_finite() {
                let ask = self.ask_component.map(|k| options[k] as usize);
                value.observe_at(outcome.segment, ask, outcome.value, at_millis);
            }
        }
    }

    fn advance_clock(&mut self, now_millis: u64) {
        self.draw_millis = self.draw_millis.max(now_millis);
    }

    fn observations(&self) -> u64 {
        self.conversion.in_force().observations()
    }

    fn heap_bytes(&self) -> usize {
        self.conversion.heap_bytes()
            + self.value.as_ref().map_or(0, ValueModel::heap_bytes)
            + self
                .scratch
                .option_scores
                .iter()
                .map(|v| v.capacity() * 8)
                .sum::<usize>()
            + self
                .scratch
                .pair_scores
                .iter()
                .map(|v| v.capacity() * 8)
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::design::{AskComponent, Interactions};
    use crate::space::Exclusion;
    use rand::SeedableRng;

    fn design(exclusions: Vec<Exclusion>) -> Design {
        Design {
            component_names: vec!["a".into(), "b".into(), "c".into()],
            segment_names: vec!["s0".into(), "s1".into()],
            space: VersionSpace::new(vec![4, 5, 3], exclusions).unwrap(),
            ask: Some(AskComponent {
                component: 1,
                amounts: vec![5.0, 10.0, 25.0, 50.0, 100.0],
            }),
            objective: Objective::Value,
            interactions: Interactions::all(3),
        }
    }

    fn exclusion(a: (usize, u32), b: (usize, u32)) -> Exclusion {
        Exclusion {
            first: OptionRef {
                component: a.0,
                option: a.1,
            },
            second: OptionRef {
                component: b.0,
                option: b.1,
            },
        }
    }

    /// A sampler that forgets (`auto`), taught events at `time(i)`.
    fn taught_at(design: &Design, time: impl Fn(u64) -> u64) -> FactorizedSampler {
        let settings = FactorizedSettings {
            forgetting: Forgetting::Auto,
            ..FactorizedSettings::default()
        };
        let mut sampler = FactorizedSampler::new(design, settings);
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        for i in 0..2_000u64 {
            let version = design.space.sample_uniform(&mut rng);
            let converted = rng.random::<f64>() < 0.1;
            let outcome = Outcome {
                segment: (i % 2) as usize,
                version,
                clicked: false,
                converted,
                value: if converted { 25.0 } else { 0.0 },
            };
            sampler.observe_at(&outcome, time(i));
        }
        sampler
    }

    #[test]
    fn snapshot_keeps_forgetting_times_and_reads_older_formats() {
        let design = design(vec![]);
        let sampler = taught_at(&design, |i| 1_000_000 + i * 60_000);
        let bytes = sampler.snapshot();
        let mut restored = FactorizedSampler::new(
            &design,
            FactorizedSettings {
                forgetting: Forgetting::Auto,
                ..FactorizedSettings::default()
            },
        );
        restored.restore(&bytes).unwrap();
        assert_eq!(restored.snapshot(), bytes, "a round trip is bit for bit");
        let times = |s: &FactorizedSampler| -> Vec<Vec<u64>> {
            s.forgetting()
                .models()
                .iter()
                .map(|m| m.update_times().to_vec())
                .collect()
        };
        assert_eq!(times(&restored), times(&sampler));
        assert!(times(&sampler)[1].iter().any(|&t| t > 1_000_000));
        // Both learn the next event alike.
        let mut original = sampler.clone();
        let next = Outcome {
            segment: 0,
            version: 3,
            clicked: false,
            converted: true,
            value: 10.0,
        };
        original.observe_at(&next, 500_000_000);
        restored.observe_at(&next, 500_000_000);
        assert_eq!(original.snapshot(), restored.snapshot());

        // A format 2 snapshot holds one model and no times: every candidate starts
        // from it, nothing forgotten for the time before the restore.
        let old = sampler.snapshot_in_format(2);
        let mut from_old = FactorizedSampler::new(
            &design,
            FactorizedSettings {
                forgetting: Forgetting::Auto,
                ..FactorizedSettings::default()
            },
        );
        from_old.restore(&old).unwrap();
        let in_force = sampler.conversion().weights().to_vec();
        for model in from_old.forgetting().models() {
            assert_eq!(model.weights(), &in_force[..]);
            assert!(
                model
                    .update_times()
                    .iter()
                    .all(|&t| t == crate::model::forgetting::UNKNOWN_TIME)
            );
        }
        from_old.observe_at(&next, u64::MAX / 2);
        let bias = from_old.forgetting().models()[1].weights()[0];
        assert!(
            (bias.mean - in_force[0].mean).abs() < 0.1,
            "the first touch after an old restore forgets nothing"
        );
    }

    #[test]
    fn same_events_at_the_same_times_give_the_same_model() {
        let design = design(vec![]);
        let a = taught_at(&design, |i| i * 30_000);
        let b = taught_at(&design, |i| i * 30_000);
        assert_eq!(a.snapshot(), b.snapshot());
        let c = taught_at(&design, |i| i * 90_000);
        assert_ne!(a.snapshot(), c.snapshot(), "time changes what is forgotten");
    }

    /// Gives the sampler a posterior with real differences between options.
    fn trained(design: &Design, settings: FactorizedSettings) -> FactorizedSampler {
        let mut sampler = FactorizedSampler::new(design, settings);
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        for i in 0..3_000u64 {
            let version = design.space.sample_uniform(&mut rng);
            let options = design.space.decode(version);
            let converted = rng.random::<f64>() < 0.02 + 0.03 * f64::from(options[0] == options[2]);
            sampler.observe(&Outcome {
                segment: (i % 2) as usize,
                version,
                clicked: converted,
                converted,
                value: if converted {
                    5.0 + 10.0 * f64::from(options[1])
                } else {
                    0.0
                },
            });
        }
        sampler
    }

    #[test]
    fn snapshot_restores_the_model_bit_for_bit_and_refuses_other_shapes() {
        let design = design(Vec::new());
        let trained = trained(&design, FactorizedSettings::default());
        let bytes = trained.snapshot();
        let mut restored = FactorizedSampler::new(&design, FactorizedSettings::default());
        restored.restore(&bytes).unwrap();
        assert_eq!(restored.snapshot(), bytes);
        assert_eq!(restored.conversion().observations(), 3_000);

        let mut other_design = design.clone();
        other_design.interactions = Interactions::segment_only(3);
        let mut other = FactorizedSampler::new(&other_design, FactorizedSettings::default());
        let before = other.snapshot();
        assert!(matches!(
            other.restore(&bytes),
            Err(crate::snapshot::SnapshotError::Mismatch(_))
        ));
        assert_eq!(
            other.snapshot(),
            before,
            "a refused snapshot changes nothing"
        );
        assert!(restored.restore(&bytes[..bytes.len() - 3]).is_err());
        assert!(restored.restore(b"nonsense").is_err());
    }

    #[test]
    fn precomputed_scan_agrees_with_enumeration_under_exclusions() {
        let design = design(vec![exclusion((0, 1), (1, 4)), exclusion((1, 0), (2, 2))]);
        let mut sampler = trained(&design, FactorizedSettings::default());
        assert_eq!(
            sampler.block_searches(),
            vec![(vec![0, 1, 2], BlockSearch::Exact)]
        );
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        for i in 0..300 {
            let c = sampler.compare_with_exact(i % 2, &mut rng, || 0.0);
            assert!(
                (c.configured - c.exact).abs() <= 1e-12 * c.exact.abs(),
                "{c:?}"
            );
            let version = sampler.draw_best(i % 2, &mut rng);
            assert!(design.space.is_allowed(version));
        }
    }

    #[test]
    fn coordinate_ascent_never_beats_the_exact_optimum() {
        let design = design(vec![exclusion((0, 1), (1, 4))]);
        let settings = FactorizedSettings {
            exact_limit: 1,
            ..FactorizedSettings::default()
        };
        let mut sampler = trained(&design, settings);
        assert!(matches!(
            sampler.block_searches()[0].1,
            BlockSearch::CoordinateAscent { .. }
        ));
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let mut hits = 0;
        for i in 0..300 {
            let c = sampler.compare_with_exact(i % 2, &mut rng, || 0.0);
            assert!(c.configured <= c.exact * (1.0 + 1e-12), "{c:?}");
            hits += usize::from(c.configured >= c.exact * (1.0 - 1e-12));
            assert!(design.space.is_allowed(sampler.draw_best(i % 2, &mut rng)));
        }
        assert!(
            hits > 250,
            "coordinate ascent found the optimum in {hits} of 300 draws"
        );
    }
}
