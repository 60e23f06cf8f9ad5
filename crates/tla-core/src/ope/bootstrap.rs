//! Percentile bootstrap intervals of the estimators, from their per-row terms.
//!
//! Each resample draws `n` rows with replacement (uniformly, from the caller's seeded
//! random number generator; drawn as the multinomial counts of the distinct rows, which
//! is the same distribution at a fraction of the cost) and recomputes every statistic on
//! the same draw:
//!
//! - a mean of per-row terms (IPS: `w_i r_i`; doubly robust: `DM(s_i) + w_i (r_i -
//!   q(s_i, a_i))`, with the cross-fitted direct model held fixed as fitted once on the
//!   whole log);
//! - a ratio of two sums (SNIPS: `sum w_i r_i / sum w_i`; a resample whose weights sum
//!   to 0 is skipped and counted).
//!
//! The interval at level `1 - alpha` is the `alpha/2` and `1 - alpha/2` quantiles of
//! the resampled values (linear interpolation between order statistics, the "type 7"
//! quantile). Resampling rows treats them as exchangeable: a log written by an adaptive
//! policy, whose rows depend on the rows before them, breaks that assumption, as it
//! breaks the normal interval's.
//!
//! Pure: the random number generator is passed in, so the same seed gives the same
//! intervals.

use rand::Rng;
use rand_distr::{Binomial, Distribution};

/// A statistic recomputed on every resample.
#[derive(Debug, Clone, Copy)]
pub enum Statistic<'a> {
    /// `(1/n) sum x_i`.
    Mean(&'a [f64]),
    /// `sum x_i / sum y_i` (numerators, denominators).
    Ratio(&'a [f64], &'a [f64]),
}

impl Statistic<'_> {
    fn len(&self) -> usize {
        match self {
            Statistic::Mean(x) => x.len(),
            Statistic::Ratio(x, _) => x.len(),
        }
    }
}

/// A percentile interval and what it rests on.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct BootstrapInterval {
    /// Lower end (the `alpha/2` quantile of the resampled values).
    pub lower: f64,
    /// Upper end (the `1 - alpha/2` quantile).
    pub upper: f64,
    /// Resamples that gave a value (a ratio whose denominator summed to 0 gives none).
    pub resamples: usize,
}

/// Why no bootstrap interval can be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BootstrapError {
    /// Fewer than two resamples asked for.
    #[error("the bootstrap needs at least 2 resamples, got {0}")]
    TooFewResamples(usize),
    /// `alpha` outside (0, 1).
    #[error("alpha {0} is not in (0, 1)")]
    BadAlpha(f64),
    /// The statistics' columns differ in length, or are empty.
    #[error("the bootstrap's columns must be non-empty and of one length")]
    BadColumns,
}

/// Percentile intervals at level `1 - alpha` of every statistic in `statistics` (all
/// over the same `n` rows), from `resamples` resamples drawn with `rng`. One row draw
/// serves every statistic, so the intervals of one resample are of the same rows.
pub fn percentile_intervals<R: Rng + ?Sized>(
    statistics: &[Statistic<'_>],
    resamples: usize,
    alpha: f64,
    rng: &mut R,
) -> Result<Vec<BootstrapInterval>, BootstrapError> {
    if resamples < 2 {
        return Err(BootstrapError::TooFewResamples(resamples));
    }
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(BootstrapError::BadAlpha(alpha));
    }
    let n = statistics.first().map_or(0, Statistic::len);
    let lengths_agree = statistics.iter().all(|s| match s {
        Statistic::Mean(x) => x.len() == n,
        Statistic::Ratio(x, y) => x.len() == n && y.len() == n,
    });
    if n == 0 || !lengths_agree {
        return Err(BootstrapError::BadColumns);
    }
    // Each row's numerator and denominator of every statistic side by side.
    let width = 2 * statistics.len();
    let mut packed = vec![0.0; n * width];
    for (k, statistic) in statistics.iter().enumerate() {
        for i in 0..n {
            let (x, y) = match statistic {
                Statistic::Mean(x) => (x[i], 1.0),
                Statistic::Ratio(x, y) => (x[i], y[i]),
            };
            packed[i * width + 2 * k] = x;
            packed[i * width + 2 * k + 1] = y;
        }
    }
    let groups = Groups::of(&packed, width);
    let mut values: Vec<Vec<f64>> = vec![Vec::with_capacity(resamples); statistics.len()];
    let mut sums = vec![0.0; width];
    for _ in 0..resamples {
        sums.iter_mut().for_each(|s| *s = 0.0);
        groups.resample(n as u64, rng, |g, k| {
            let k = k as f64;
            for (s, v) in sums.iter_mut().zip(groups.terms(g)) {
                *s += k * v;
            }
        });
        for (k, out) in values.iter_mut().enumerate() {
            let (x, y) = (sums[2 * k], sums[2 * k + 1]);
            if y != 0.0 {
                out.push(x / y);
            }
        }
    }
    Ok(values
        .into_iter()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            BootstrapInterval {
                lower: quantile(&v, alpha / 2.0),
                upper: quantile(&v, 1.0 - alpha / 2.0),
                resamples: v.len(),
            }
        })
        .collect())
}

/// The distinct rows of a log (rows whose terms are equal bit for bit), with their
/// counts. A log's terms repeat a lot (one value per context, action, reward and fold
/// for most rows), so a resample is drawn as the multinomial counts of the distinct
/// rows, by conditional binomials, instead of `n` row indices: the same distribution of
/// resamples (each row drawn with probability `1/n`, `n` times), at a cost of one draw
/// per distinct row.
struct Groups {
    width: usize,
    /// The terms of each distinct row, `width` at a time, largest count first.
    terms: Vec<f64>,
    /// How many rows share them.
    counts: Vec<u64>,
}

impl Groups {
    fn of(packed: &[f64], width: usize) -> Groups {
        let n = packed.len() / width;
        let row = |i: usize| &packed[i * width..(i + 1) * width];
        let bits = |i: usize| row(i).iter().map(|v| v.to_bits());
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_unstable_by(|&a, &b| bits(a).cmp(bits(b)).then(a.cmp(&b)));
        let mut runs: Vec<(usize, u64)> = Vec::new();
        for &i in &order {
            match runs.last_mut() {
                Some((first, count)) if bits(*first).eq(bits(i)) => *count += 1,
                _ => runs.push((i, 1)),
            }
        }
        // Largest groups first (then by first row, so the order is fixed): most of the
        // draws are settled early.
        runs.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        Groups {
            width,
            terms: runs
                .iter()
                .flat_map(|&(i, _)| row(i).iter().copied())
                .collect(),
            counts: runs.iter().map(|&(_, c)| c).collect(),
        }
    }

    fn terms(&self, g: usize) -> &[f64] {
        &self.terms[g * self.width..(g + 1) * self.width]
    }

    /// Draws one resample of `n` rows: calls `add(group, times drawn)` for each group
    /// drawn at least once. Multinomial(n, count_g / total) by conditional binomials.
    fn resample<R: Rng + ?Sized>(&self, n: u64, rng: &mut R, mut add: impl FnMut(usize, u64)) {
        let mut remaining = n;
        let mut population: u64 = self.counts.iter().sum();
        for (g, &count) in self.counts.iter().enumerate() {
            if remaining == 0 {
                return;
            }
            let k = if count == population {
                remaining
            } else {
                Binomial::new(remaining, count as f64 / population as f64)
                    .expect("a share of the rows left is a probability")
                    .sample(rng)
            };
            population -= count;
            remaining -= k;
            if k > 0 {
                add(g, k);
            }
        }
    }
}

/// The `p` quantile of sorted values by linear interpolation between order statistics
/// (`h = (m - 1) p`); NaN when there are none.
pub fn quantile(sorted: &[f64], p: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        m => {
            let h = (m - 1) as f64 * p;
            let below = h.floor() as usize;
            let above = (below + 1).min(m - 1);
            sorted[below] + (h - below as f64) * (sorted[above] - sorted[below])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_pcg::Pcg64Mcg;

    #[test]
    fn quantiles_interpolate_between_order_statistics() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 1.0), 5.0);
        assert_eq!(quantile(&v, 0.5), 3.0);
        // h = 4 * 0.1 = 0.4: 1 + 0.4 * (2 - 1).
        assert!((quantile(&v, 0.1) - 1.4).abs() < 1e-12);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn same_seed_same_interval_and_it_holds_the_estimate() {
        let x: Vec<f64> = (0..500)
            .map(|i| if i % 7 == 0 { 3.0 } else { 0.0 })
            .collect();
        let w: Vec<f64> = (0..500).map(|i| 0.5 + (i % 3) as f64 * 0.5).collect();
        let xw: Vec<f64> = x.iter().zip(&w).map(|(a, b)| a * b).collect();
        let run = |seed| {
            percentile_intervals(
                &[Statistic::Mean(&x), Statistic::Ratio(&xw, &w)],
                400,
                0.05,
                &mut Pcg64Mcg::seed_from_u64(seed),
            )
            .unwrap()
        };
        let a = run(1);
        assert_eq!(a, run(1));
        assert_ne!(a, run(2));
        let mean = x.iter().sum::<f64>() / 500.0;
        assert!(a[0].lower < mean && mean < a[0].upper, "{a:?} {mean}");
        let ratio = xw.iter().sum::<f64>() / w.iter().sum::<f64>();
        assert!(a[1].lower < ratio && ratio < a[1].upper);
        assert_eq!(a[0].resamples, 400);
        // The normal interval of the mean: sd / sqrt(n) with p = 72/500 of 3s.
        let p = 72.0 / 500.0;
        let se = 3.0 * (p * (1.0 - p) / 500.0f64).sqrt();
        let width = a[0].upper - a[0].lower;
        assert!(
            (width / (2.0 * 1.96 * se) - 1.0).abs() < 0.2,
            "width {width} vs {}",
            2.0 * 1.96 * se
        );
    }

    /// The grouped draw is the row bootstrap: over many resamples, the mean of a
    /// resampled mean is the mean, and its variance is `var / n` (divisor n).
    #[test]
    fn grouped_resamples_have_the_moments_of_row_resamples() {
        // 40 rows, 3 distinct values: 0 (x23), 1 (x12), 5 (x5).
        let x: Vec<f64> = (0..40)
            .map(|i| match i % 8 {
                0 | 1 => 1.0,
                2 => 5.0,
                3 if i < 16 => 1.0,
                _ => 0.0,
            })
            .collect();
        let n = x.len() as f64;
        let mean = x.iter().sum::<f64>() / n;
        let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        let mut packed = Vec::new();
        for v in &x {
            packed.extend([*v, 1.0]);
        }
        let groups = Groups::of(&packed, 2);
        assert_eq!(groups.counts.iter().sum::<u64>(), 40);
        assert_eq!(groups.counts.len(), 3);
        let mut rng = Pcg64Mcg::seed_from_u64(5);
        let (mut s1, mut s2, draws) = (0.0, 0.0, 20_000);
        for _ in 0..draws {
            let (mut sum, mut rows) = (0.0, 0);
            groups.resample(40, &mut rng, |g, k| {
                sum += k as f64 * groups.terms(g)[0];
                rows += k;
            });
            assert_eq!(rows, 40);
            let m = sum / n;
            s1 += m;
            s2 += m * m;
        }
        let m1 = s1 / draws as f64;
        let v = s2 / draws as f64 - m1 * m1;
        // Standard error of the mean of 20,000 resampled means: sqrt(var / n / 20,000).
        assert!(
            (m1 - mean).abs() < 4.0 * (var / n / draws as f64).sqrt(),
            "{m1} vs {mean}"
        );
        assert!((v / (var / n) - 1.0).abs() < 0.05, "{v} vs {}", var / n);
    }

    #[test]
    fn refuses_bad_settings() {
        let x = [1.0, 2.0];
        let mut rng = Pcg64Mcg::seed_from_u64(1);
        assert_eq!(
            percentile_intervals(&[Statistic::Mean(&x)], 1, 0.05, &mut rng),
            Err(BootstrapError::TooFewResamples(1))
        );
        assert_eq!(
            percentile_intervals(&[Statistic::Mean(&x)], 10, 0.0, &mut rng),
            Err(BootstrapError::BadAlpha(0.0))
        );
        assert_eq!(
            percentile_intervals(
                &[Statistic::Mean(&x), Statistic::Mean(&[1.0])],
                10,
                0.05,
                &mut rng
            ),
            Err(BootstrapError::BadColumns)
        );
    }
}
