//! The Bayesian models a campaign learns.
//!
//! - [`conversion::ConversionModel`]: probability of a conversion (or a click) for a
//!   segment and a version, a probit regression over factorized features with an
//!   independent Gaussian belief per weight, updated online by assumed-density filtering
//!   (the AdPredictor model).
//! - [`value::ValueModel`]: the donation amount given a conversion, log-normal, a
//!   Bayesian linear model of the log amount on the segment and the ask.
//!
//! Both update in O(active features) per event and keep no per-version state. Both can
//! forget ([`forgetting`]): each weight drifts back toward its prior with a half-life,
//! lazily, when it is next read or updated. The maths is written out in
//! `docs/models.md`.

pub mod conversion;
pub mod forgetting;
pub mod value;

/// An independent Gaussian belief about one weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Belief {
    /// Posterior mean.
    pub mean: f64,
    /// Posterior variance (positive).
    pub variance: f64,
}

impl Belief {
    /// A belief with the given mean and variance.
    pub const fn new(mean: f64, variance: f64) -> Self {
        Self { mean, variance }
    }

    /// A draw from the belief, given a standard normal draw.
    #[inline]
    pub fn draw(&self, standard_normal: f64) -> f64 {
        self.mean + self.variance.sqrt() * standard_normal
    }
}
