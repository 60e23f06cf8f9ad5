//! Confidence sequences: intervals that hold at every look at once.
//!
//! A fixed-horizon interval `mean ± z σ/√n` covers with probability `1 - α` at one
//! planned `n`. Read every morning of a month, it excludes a true zero far more often
//! than `α`, because the chance of a miss accumulates over the looks. A confidence
//! sequence `(C_n)` has `P(μ ∈ C_n for every n) >= 1 - α`, so it may be read at any
//! time, as often as wanted, and a campaign may stop as soon as it excludes zero.
//!
//! [`Sequence`] is the asymptotic confidence sequence of Waudby-Smith, Arbour,
//! Sinha, Kennedy and Ramdas ("Time-uniform central limit theory and asymptotic
//! confidence sequences", 2021), built on the two-sided normal-mixture boundary of
//! Howard, Ramdas, McAuliffe and Sekhon (Annals of Statistics, 2021). For the mean of
//! `n` terms with standard deviation `σ̂_n` (a running estimate), the radius is
//!
//! ```text
//! r_n = σ̂_n · sqrt( 2 (n ρ² + 1) / (n² ρ²) · ln( sqrt(n ρ² + 1) / α ) )
//! ```
//!
//! `ρ > 0` sets the `n` where the sequence is tightest; [`Sequence::tuned`] picks the
//! `ρ` that minimizes the radius at a planned number of terms `n*`:
//! `ρ² = (-2 ln α + ln(1 - 2 ln α)) / n*`. At `n*` the radius is about 1.55 times the
//! fixed-horizon `z σ̂/√n` for `α = 0.05`, and it grows like `sqrt(ln n / n)` rather than
//! `1/√n` far from it: the price of being valid at every look.
//!
//! The same radius serves any asymptotically linear estimate given its standard
//! error (`σ̂_n = se · √n`, [`Sequence::radius`]): a difference of two means (policy
//! against holdout), or the mean of doubly robust terms whose direct model is fitted
//! on earlier rows only (the doubly robust sequence of Waudby-Smith et al., 2022).

/// The default miss probability of every interval and sequence: 95% intervals, one
/// place for the holdout, the off-policy estimates and their validation.
pub const DEFAULT_ALPHA: f64 = 0.05;

/// The default planned number of terms of a live sequence when nothing better is known.
pub const DEFAULT_PLANNED_TERMS: f64 = 100_000.0;

/// An asymptotic confidence sequence at level `1 - alpha` (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Sequence {
    /// Miss probability over every look together, in (0, 1).
    pub alpha: f64,
    /// The mixture parameter `ρ²` (> 0).
    pub rho_squared: f64,
}

impl Sequence {
    /// The sequence tightest at `planned_terms` terms (`ρ² = (-2 ln α + ln(1 - 2 ln α)) / n*`).
    ///
    /// # Panics
    /// If `alpha` is not in (0, 1) or `planned_terms` is not positive and finite (the
    /// callers check their inputs).
    pub fn tuned(alpha: f64, planned_terms: f64) -> Self {
        assert!(alpha > 0.0 && alpha < 1.0, "alpha must lie in (0, 1)");
        assert!(
            planned_terms > 0.0 && planned_terms.is_finite(),
            "the planned number of terms must be positive"
        );
        let a = -2.0 * alpha.ln();
        Self {
            alpha,
            rho_squared: (a + (a + 1.0).ln()) / planned_terms,
        }
    }

    /// The boundary per unit standard deviation after `n` terms:
    /// `sqrt( 2 (n ρ² + 1) / (n² ρ²) · ln( sqrt(n ρ² + 1) / α ) )`; infinite before the
    /// first term.
    pub fn boundary(&self, n: f64) -> f64 {
        if n <= 0.0 {
            return f64::INFINITY;
        }
        let v = n * self.rho_squared + 1.0;
        (2.0 * v / (n * n * self.rho_squared) * (v.sqrt() / self.alpha).ln()).sqrt()
    }

    /// The radius around an estimate of `n` terms whose fixed-horizon standard error is
    /// `std_error` (so `σ̂ = std_error · √n`); infinite when the standard error is.
    pub fn radius(&self, n: f64, std_error: f64) -> f64 {
        if !std_error.is_finite() {
            return f64::INFINITY;
        }
        std_error * n.sqrt() * self.boundary(n)
    }
}

/// A running mean and variance of terms (Welford), what a live sequence needs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RunningMean {
    n: f64,
    mean: f64,
    m2: f64,
}

impl RunningMean {
    /// Adds one term.
    pub fn push(&mut self, x: f64) {
        self.n += 1.0;
        let d = x - self.mean;
        self.mean += d / self.n;
        self.m2 += d * (x - self.mean);
    }

    /// Terms pushed.
    pub fn count(&self) -> f64 {
        self.n
    }

    /// Mean of the terms (0 before the first).
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// Sample variance (divisor `n - 1`); infinite with fewer than two terms.
    pub fn variance(&self) -> f64 {
        if self.n < 2.0 {
            f64::INFINITY
        } else {
            self.m2 / (self.n - 1.0)
        }
    }

    /// Standard error of the mean; infinite with fewer than two terms.
    pub fn std_error(&self) -> f64 {
        (self.variance() / self.n).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ope::Z95;

    #[test]
    fn tuned_radius_is_about_one_and_a_half_fixed_intervals_at_the_planned_n() {
        let s = Sequence::tuned(0.05, 10_000.0);
        // a = -2 ln 0.05 = 5.9915; rho^2 n* = a + ln(a + 1) = 7.9361;
        // boundary * sqrt(n*) = sqrt(2 * 8.9361 / 7.9361 * ln(sqrt(8.9361) / 0.05)) = 3.0346.
        let ratio = s.boundary(10_000.0) * 100.0 / Z95;
        assert!((ratio - 3.0346 / Z95).abs() < 1e-3, "{ratio}");
        assert!(ratio < 1.6);
        // Tightest (relative to the fixed interval) near the planned n, wider elsewhere.
        for n in [100.0, 1_000.0, 100_000.0, 1e6] {
            assert!(
                s.boundary(n) * n.sqrt() > s.boundary(10_000.0) * 100.0,
                "{n}"
            );
        }
        // Wider than the fixed interval at every n, shrinking in absolute terms.
        let mut last = f64::INFINITY;
        for k in 1..1000 {
            let n = k as f64 * 50.0;
            let b = s.boundary(n);
            assert!(b * n.sqrt() > Z95);
            assert!(b < last);
            last = b;
        }
        assert_eq!(s.boundary(0.0), f64::INFINITY);
        assert_eq!(s.radius(10.0, f64::INFINITY), f64::INFINITY);
        assert!((s.radius(10_000.0, 0.01) - 0.01 * 100.0 * s.boundary(10_000.0)).abs() < 1e-12);
    }

    /// Gaussian terms under the null, looked at after every 100 terms up to 20,000: the
    /// fixed interval excludes the truth at some look in most runs, the sequence in
    /// few. Deterministic: a fixed generator seeded per run.
    #[test]
    fn sequence_holds_at_every_look_where_the_fixed_interval_does_not() {
        use rand::SeedableRng;
        use rand_distr::{Distribution, StandardNormal};
        let s = Sequence::tuned(0.05, 20_000.0);
        let runs = 200;
        let (mut fixed_misses, mut sequence_misses) = (0, 0);
        for run in 0..runs {
            let mut rng = rand::rngs::StdRng::seed_from_u64(run);
            let mut m = RunningMean::default();
            let (mut fixed_missed, mut sequence_missed) = (false, false);
            for i in 1..=20_000 {
                let x: f64 = StandardNormal.sample(&mut rng);
                m.push(x);
                if i % 100 == 0 {
                    let se = m.std_error();
                    fixed_missed |= m.mean().abs() > Z95 * se;
                    sequence_missed |= m.mean().abs() > s.radius(m.count(), se);
                }
            }
            fixed_misses += usize::from(fixed_missed);
            sequence_misses += usize::from(sequence_missed);
        }
        // 200 looks: a fixed interval misses somewhere in roughly half the runs.
        assert!(fixed_misses > runs as usize / 4, "{fixed_misses}");
        assert!(sequence_misses <= runs as usize / 20, "{sequence_misses}");
    }

    #[test]
    fn running_mean_matches_the_two_pass_formulas() {
        let xs = [3.0, -1.0, 4.0, 1.5, 9.0];
        let mut m = RunningMean::default();
        assert_eq!(m.variance(), f64::INFINITY);
        for x in xs {
            m.push(x);
        }
        let mean = xs.iter().sum::<f64>() / 5.0;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / 4.0;
        assert!((m.mean() - mean).abs() < 1e-12);
        assert!((m.variance() - var).abs() < 1e-12);
        assert!((m.std_error() - (var / 5.0).sqrt()).abs() < 1e-12);
        assert_eq!(m.count(), 5.0);
    }
}
