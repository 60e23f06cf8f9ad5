//! Decision distributions: what the server samples from for each impression.
//!
//! A learner periodically rebuilds, per segment, a distribution over versions from `M`
//! Thompson draws: version `v` gets probability `count(v) / M`. Sampling it must be O(1)
//! and its propensities exact, so the weights stay integers: [`AliasTable`] is Vose's
//! alias method over integer weights, and every probability it realises is exactly
//! `weight / total`, with no floating-point rounding in the sampling itself.

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
}

impl DecisionTable {
    /// Builds a table from the versions chosen by each draw (order does not matter).
    ///
    /// # Panics
    /// If `chosen` is empty.
    pub fn from_draws(mut chosen: Vec<u64>, model_version: u64) -> Self {
        assert!(
            !chosen.is_empty(),
            "a decision table needs at least one draw"
        );
        chosen.sort_unstable();
        let draws = chosen.len() as u64;
        let mut versions = Vec::new();
        let mut counts: Vec<u64> = Vec::new();
        for v in chosen {
            if versions.last() == Some(&v) {
                *counts.last_mut().expect("non-empty") += 1;
            } else {
                versions.push(v);
                counts.push(1);
            }
        }
        let alias = AliasTable::new(&counts);
        Self {
            versions,
            counts,
            draws,
            alias,
            model_version,
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
