//! Special functions the models need, written out so the core carries no maths
//! dependency: the standard normal density and distribution, the truncated-Gaussian
//! moment functions of assumed-density filtering, and the logistic function.
//!
//! `erfc` uses the Chebyshev fit of W. H. Press et al. (Numerical Recipes, 2nd ed.,
//! §6.2), whose fractional error is below 1.2e-7 everywhere. It is written in the
//! scaled form `erfc(z) = exp(-z^2) * E(z)`, so [`normal_cdf_ratio`] never underflows,
//! however far into the tail the argument lies.

use std::f64::consts::{FRAC_1_SQRT_2, PI};

/// `E(z) = exp(z^2) * erfc(z)` for `z >= 0`.
fn erfc_scaled_nonnegative(z: f64) -> f64 {
    debug_assert!(z >= 0.0);
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    t * poly.exp()
}

/// The complementary error function.
pub fn erfc(z: f64) -> f64 {
    if z >= 0.0 {
        erfc_scaled_nonnegative(z) * (-z * z).exp()
    } else {
        2.0 - erfc_scaled_nonnegative(-z) * (-z * z).exp()
    }
}

/// Standard normal density.
pub fn normal_pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * PI).sqrt()
}

/// Standard normal distribution function.
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x * FRAC_1_SQRT_2)
}

/// `pdf(x) / cdf(x)`, the inverse Mills ratio, accurate deep in the lower tail.
pub fn normal_cdf_ratio(x: f64) -> f64 {
    let z = -x * FRAC_1_SQRT_2;
    if z >= 0.0 {
        // pdf(x) = exp(-z^2) / sqrt(2 pi); cdf(x) = exp(-z^2) E(z) / 2.
        2.0 / ((2.0 * PI).sqrt() * erfc_scaled_nonnegative(z))
    } else {
        normal_pdf(x) / normal_cdf(x)
    }
}

/// The two moment functions of a probit factor in assumed-density filtering:
/// `v(t) = pdf(t) / cdf(t)` and `w(t) = v(t) (v(t) + t)`, with `0 < w < 1`.
pub fn probit_moments(t: f64) -> (f64, f64) {
    let v = normal_cdf_ratio(t);
    let w = (v * (v + t)).clamp(f64::MIN_POSITIVE, 1.0 - f64::EPSILON);
    (v, w)
}

/// Inverse of the standard normal distribution function: Acklam's rational
/// approximation refined by one Halley step against [`normal_cdf`], so as accurate
/// as that function (about 1e-7 relative).
pub fn normal_quantile(p: f64) -> f64 {
    assert!(
        p > 0.0 && p < 1.0,
        "normal_quantile needs p in (0, 1), got {p}"
    );
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let low = 0.024_25;
    let x = if p < low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    // One Halley step on cdf(x) - p.
    let e = normal_cdf(x) - p;
    let u = e * (2.0 * PI).sqrt() * (0.5 * x * x).exp();
    x - u / (1.0 + 0.5 * x * u)
}

/// The logistic function `1 / (1 + exp(-x))`.
pub fn logistic(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdf_matches_known_values() {
        let cases = [
            (0.0, 0.5),
            (1.0, 0.841_344_746_068_542_9),
            (-1.959_963_984_540_054, 0.025),
            (-3.0, 0.001_349_898_031_630_094_6),
            (-6.0, 9.865_876_450_377e-10),
        ];
        for (x, expected) in cases {
            let got = normal_cdf(x);
            assert!(
                ((got - expected) / expected).abs() < 2e-7,
                "cdf({x}) = {got}, expected {expected}"
            );
        }
    }

    #[test]
    fn mills_ratio_is_finite_and_tends_to_minus_x_in_the_tail() {
        for x in [-40.0, -20.0, -8.0] {
            let v = normal_cdf_ratio(x);
            assert!(v.is_finite());
            assert!((v / -x - 1.0).abs() < 0.02, "v({x}) = {v}");
        }
        let (_, w) = probit_moments(-30.0);
        assert!(w > 0.0 && w < 1.0);
        let (v, w) = probit_moments(30.0);
        assert!((0.0..1e-100).contains(&v) && w > 0.0);
    }

    #[test]
    fn quantile_inverts_cdf() {
        for p in [1e-8, 0.001, 0.02, 0.3, 0.5, 0.77, 0.999] {
            let x = normal_quantile(p);
            assert!(((normal_cdf(x) - p) / p).abs() < 1e-6, "p = {p}");
        }
    }
}
