//! Decision distributions: what the server samples from for each impression.
//!
//! A learner periodically rebuilds, per segment, a distribution over versions from `M`
//! Thompson draws: version `v` gets probability `count(v) / M`. Sampling it must be O(1)
//! and its propensities exact, so the weights stay integers: [`AliasTable`] is Vose's
//! alias method over integer weights, and every probability it realises is exactly
//! `weight / total`, with no floating-point rounding in the sampling itself.
//!
//! A table also keeps each draw's sampled objective (the value per impression the draw
//! expected of the version it chose), so a decision may *skip* an opportunity priced
//! above what it is worth: under a threshold `τ`, draw `k` skips when its sampled value
//! is at most `τ`, and the skip and every version keep exact probabilities (counts of
//! draws over `M`, see [`DecisionTable::sample_above`]).

use rand::Rng;

/// Vose's alias table over integer weights: O(n) to build, O(1) to sample, exact.
///
/// With `n` entries and total weight `W`, each of the `n` columns holds capacity `W`
/// (weights are scaled by `n`); column `i` keeps `threshold[i]` units for entry `i` and
/// the rest for `alias[i]`. Sampling draws a column uniformly and an integer in
/// `0..W`, so entry `i` is drawn with probability exactly `weight[i] / W`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasTable {
    /// Units of each column kept by the column's own entry.
    threshold: Vec<u64>,
    /// The entry that receives the rest of each column.
    alias: Vec<u32>,
    /// Sum of the weights: the capacity of each column.
    total: u64,
}

impl AliasTable {
    /// Builds a table from positive integer weights.
    ///
    /// # Panics
    /// If `weights` is empty, holds a zero, or `n * sum` overflows u64 (a caller bug).
    pub fn new(weights: &[u64]) -> Self {
        assert!(
            !weights.is_empty(),
            "an alias table needs at least one weight"
        );
        assert!(
            weights.iter().all(|&w| w > 0),
            "alias weights must be positive"
        );
        let n = weights.len() as u64;
        let total: u64 = weights.iter().sum();
        let mut scaled: Vec<u64> = weights
            .iter()
            .map(|&w| w.checked_mul(n).expect("alias weight overflow"))
            .collect();
        let mut threshold = vec![total; weights.len()];
        let mut alias: Vec<u32> = (0..weights.len() as u32).collect();
        let mut small: Vec<usize> = Vec::new();
        let mut large: Vec<usize> = Vec::new();
        for (i, &w) in scaled.iter().enumerate() {
            if w < total {
                small.push(i);
            } else {
                large.push(i);
            }
        }
        while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
            small.pop();
            threshold[s] = scaled[s];
            alias[s] = l as u32;
            scaled[l] -= total - scaled[s];
            if scaled[l] < total {
                large.pop();
                small.push(l);
            }
        }
        // Whatever is left holds exactly `total` (integer arithmetic: no residue).
        for i in small.into_iter().chain(large) {
            threshold[i] = total;
        }
        Self {
            threshold,
            alias,
            total,
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.threshold.len()
    }

    /// Whether the table is empty (never, once built).
    pub fn is_empty(&self) -> bool {
        self.threshold.is_empty()
    }

    /// Draws an entry index with probability `weight / total`.
    #[inline]
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        let column = rng.random_range(0..self.threshold.len());
        let unit = rng.random_range(0..self.total);
        if unit < self.threshold[column] {
            column
        } else {
            self.alias[column] as usize
        }
    }
}

/// The decision distribution of one segment, rebuilt from Thompson draws.
#[derive(Debug, Clone)]
pub struct DecisionTable {
    /// Distinct versions drawn, ascending.
    versions: Vec<u64>,
    /// How many of the draws chose each version.
    counts: Vec<u64>,
    /// Total number of draws.
    draws: u64,
    /// Sampler over `versions` with weights `counts`.
    alias: AliasTable,
    /// The model version (events learned) this table was built from.
    model_version: u64,
    /// Every draw's sampled value, ascending (`+inf` for draws without one).
    values: Vec<f64>,
    /// Per draw in the order of `values`, the index in `versions` of the version it
    /// chose.
    value_versions: Vec<u32>,
    /// Per version, the sampled values of its draws, ascending: version `i`'s are
    /// `version_values[starts[i]..starts[i + 1]]`.
    version_values: Vec<f64>,
    /// Where each version's values start in `version_values` (one more entry than
    /// versions).
    starts: Vec<u32>,
}

impl DecisionTable {
    /// Builds a table from the versions chosen by each draw (order does not matter).
    ///
    /// # Panics
    /// If `chosen` is empty.
    pub fn from_draws(chosen: Vec<u64>, model_version: u64) -> Self {
        Self::from_valued_draws(
            chosen.into_iter().map(|v| (v, f64::INFINITY)).collect(),
            model_version,
        )
    }

    /// Builds a table from each draw's chosen version and the value per impression the
    /// draw sampled for it (order does not matter). A NaN value counts as `+inf` (the
    /// draw never skips).
    ///
    /// # Panics
    /// If `draws` is empty.
    pub fn from_valued_draws(mut draws: Vec<(u64, f64)>, model_version: u64) -> Self {
        assert!(
            !draws.is_empty(),
            "a decision table needs at least one draw"
        );
        for draw in &mut draws {
            if draw.1.is_nan() {
                draw.1 = f64::INFINITY;
            }
        }
        draws.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let total = draws.len() as u64;
        let mut versions = Vec::new();
        let mut counts: Vec<u64> = Vec::new();
        let mut starts = Vec::new();
        for (i, &(v, _)) in draws.iter().enumerate() {
            if versions.last() == Some(&v) {
                *counts.last_mut().expect("non-empty") += 1;
            } else {
                versions.push(v);
                counts.push(1);
                starts.push(i as u32);
            }
        }
        starts.push(draws.len() as u32);
        let version_values: Vec<f64> = draws.iter().map(|d| d.1).collect();
        let mut order: Vec<(f64, u32)> = Vec::with_capacity(draws.len());
        for (i, window) in starts.windows(2).enumerate() {
            for k in window[0]..window[1] {
                order.push((version_values[k as usize], i as u32));
            }
        }
        order.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let alias = AliasTable::new(&counts);
        Self {
            versions,
            counts,
            draws: total,
            alias,
            model_version,
            values: order.iter().map(|o| o.0).collect(),
            value_versions: order.iter().map(|o| o.1).collect(),
            version_values,
            starts,
        }
    }

    /// A version drawn from the table.
    #[inline]
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        self.versions[self.alias.sample(rng)]
    }

    /// The exact probability that [`DecisionTable::sample`] returns `version`.
    pub fn probability(&self, version: u64) -> f64 {
        match self.versions.binary_search(&version) {
            Ok(i) => self.counts[i] as f64 / self.draws as f64,
            Err(_) => 0.0,
        }
    }

    /// How many draws skip under `threshold`: those whose sampled value is at most
    /// `threshold`.
    #[inline]
    pub fn draws_at_or_below(&self, threshold: f64) -> u64 {
        self.values.partition_point(|&v| v <= threshold) as u64
    }

    /// One draw of the table under `threshold`: a draw is picked uniformly; it skips
    /// (`None`) when its sampled value is at most `threshold`, else its version is
    /// chosen. So the skip has probability [`DecisionTable::draws_at_or_below`] `/ M`
    /// and version `v` [`DecisionTable::probability_above`], exactly. With a threshold
    /// of `-inf` nothing skips and each version has its [`DecisionTable::probability`]
    /// (the draws differ from [`DecisionTable::sample`]'s, which uses the alias table).
    #[inline]
    pub fn sample_above<R: Rng + ?Sized>(&self, threshold: f64, rng: &mut R) -> Option<u64> {
        let k = rng.random_range(0..self.values.len());
        (self.values[k] > threshold).then(|| self.versions[self.value_versions[k] as usize])
    }

    /// The exact probability that [`DecisionTable::sample_above`] chooses `version`
    /// under `threshold`: its draws whose value exceeds the threshold, over `M`.
    pub fn probability_above(&self, version: u64, threshold: f64) -> f64 {
        match self.versions.binary_search(&version) {
            Ok(i) => self.count_above(i, threshold) as f64 / self.draws as f64,
            Err(_) => 0.0,
        }
    }

    /// Draws of the `i`-th version whose value exceeds `threshold`.
    fn count_above(&self, i: usize, threshold: f64) -> u64 {
        let own = &self.version_values[self.starts[i] as usize..self.starts[i + 1] as usize];
        (own.len() - own.partition_point(|&v| v <= threshold)) as u64
    }

    /// The probability that [`DecisionTable::sample_above`] chooses a version for which
    /// `pick` holds, under `threshold` (O(distinct versions)).
    pub fn mass_above(&self, threshold: f64, mut pick: impl FnMut(u64) -> bool) -> f64 {
        let above: u64 = (0..self.versions.len())
            .filter(|&i| pick(self.versions[i]))
            .map(|i| self.count_above(i, threshold))
            .sum();
        above as f64 / self.draws as f64
    }

    /// The distinct versions with their probabilities.
    pub fn entries(&self) -> impl Iterator<Item = (u64, f64)> + '_ {
        let draws = self.draws as f64;
        self.versions
            .iter()
            .zip(&self.counts)
            .map(move |(&v, &c)| (v, c as f64 / draws))
    }

    /// Number of distinct versions.
    pub fn len(&self) -> usize {
        self.versions.len()
    }

    /// Whether the table has no entry (never, once built).
    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }

    /// Number of Thompson draws behind the table.
    pub fn draws(&self) -> u64 {
        self.draws
    }

    /// The model version the table was built from.
    pub fn model_version(&self) -> u64 {
        self.model_version
    }

    /// Approximate heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.versions.capacity() * 8
            + self.counts.capacity() * 8
            + self.alias.threshold.capacity() * 8
            + self.alias.alias.capacity() * 4
            + (self.values.capacity() + self.version_values.capacity()) * 8
            + (self.value_versions.capacity() + self.starts.capacity()) * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    /// Exact probability of each entry, computed from the table's columns.
    fn realised(table: &AliasTable) -> Vec<f64> {
        let n = table.len() as f64;
        let mut p = vec![0.0; table.len()];
        for c in 0..table.len() {
            let own = table.threshold[c] as f64 / table.total as f64;
            p[c] += own / n;
            p[table.alias[c] as usize] += (1.0 - own) / n;
        }
        p
    }

    proptest! {
        #[test]
        fn alias_table_realises_the_weights_exactly(weights in prop::collection::vec(1u64..1000, 1..40)) {
            let table = AliasTable::new(&weights);
            let total: u64 = weights.iter().sum();
            for (p, &w) in realised(&table).iter().zip(&weights) {
                prop_assert!((p - w as f64 / total as f64).abs() < 1e-12);
            }
        }
    }

    proptest! {
        /// Under any threshold, the skip and the versions of `sample_above` have the
        /// probabilities the table states, and they sum to 1.
        #[test]
        fn priced_probabilities_are_exact_and_sum_to_one(
            draws in prop::collection::vec((0u64..6, -3.0f64..3.0), 1..50),
            threshold in -4.0f64..4.0,
        ) {
            let table = DecisionTable::from_valued_draws(draws.clone(), 1);
            let m = draws.len() as f64;
            let skip = table.draws_at_or_below(threshold) as f64 / m;
            prop_assert_eq!(skip, draws.iter().filter(|d| d.1 <= threshold).count() as f64 / m);
            let mut total = skip;
            for v in 0..6 {
                let want = draws.iter().filter(|d| d.0 == v && d.1 > threshold).count() as f64 / m;
                prop_assert_eq!(table.probability_above(v, threshold), want);
                total += want;
            }
            prop_assert!((total - 1.0).abs() < 1e-12);
            prop_assert!((table.mass_above(threshold, |v| v % 2 == 0)
                - (0..6).filter(|v| v % 2 == 0).map(|v| table.probability_above(v, threshold)).sum::<f64>()).abs() < 1e-12);
            // Without a threshold the priced probabilities are the plain ones.
            for v in 0..6 {
                prop_assert_eq!(table.probability_above(v, f64::NEG_INFINITY), table.probability(v));
            }
        }
    }

    #[test]
    fn sample_above_skips_the_draws_at_or_below_the_threshold() {
        let table =
            DecisionTable::from_valued_draws(vec![(7, 1.0), (3, 0.2), (7, 0.5), (9, f64::NAN)], 1);
        assert_eq!(table.draws_at_or_below(0.5), 2);
        assert_eq!(table.probability_above(7, 0.5), 0.25);
        assert_eq!(table.probability_above(9, 1e300), 0.25, "NaN never skips");
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let (mut skips, mut sevens) = (0, 0);
        for _ in 0..20_000 {
            match table.sample_above(0.5, &mut rng) {
                None => skips += 1,
                Some(7) => sevens += 1,
                Some(v) => assert_eq!(v, 9),
            }
        }
        assert!((9_600..10_400).contains(&skips), "{skips}");
        assert!((4_700..5_300).contains(&sevens), "{sevens}");
    }

    #[test]
    fn table_counts_duplicates_and_reports_zero_for_unseen() {
        let table = DecisionTable::from_draws(vec![7, 3, 7, 7, 9], 42);
        assert_eq!(table.len(), 3);
        assert_eq!(table.probability(7), 0.6);
        assert_eq!(table.probability(3), 0.2);
        assert_eq!(table.probability(4), 0.0);
        assert_eq!(table.model_version(), 42);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut seven = 0;
        for _ in 0..10_000 {
            let v = table.sample(&mut rng);
            assert!([3, 7, 9].contains(&v));
            seven += usize::from(v == 7);
        }
        assert!((5_800..6_200).contains(&seven), "{seven}");
    }
}
