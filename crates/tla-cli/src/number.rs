//! Numbers in tables: one rule for every table of `tla evaluate`, so a rate of 0.003812
//! is not printed as 0.0038 and a value of 2770.4 not as 2770.4000.

/// Significant digits of the numbers in `tla evaluate`'s tables.
pub const TABLE_DIGITS: usize = 4;

/// `x` with [`TABLE_DIGITS`] significant digits ([`significant_digits`]).
pub fn significant(x: f64) -> String {
    significant_digits(x, TABLE_DIGITS)
}

/// `x` rounded to `digits` significant digits, written without an exponent: as many
/// decimals as the digits need (`0.003812`, `2.770`, `1234`), none for numbers with
/// more integer digits than `digits` (`123457`); at most 15 decimals. `0` for zero;
/// `NaN`, `inf`, `-inf` as such.
pub fn significant_digits(x: f64, digits: usize) -> String {
    if x.is_nan() {
        return "NaN".to_string();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    if x == 0.0 {
        return "0".to_string();
    }
    let digits = digits.max(1) as i32;
    let magnitude = x.abs().log10().floor() as i32;
    let decimals = (digits - 1 - magnitude).clamp(0, 15) as usize;
    let text = format!("{x:.decimals$}");
    // Rounding may carry into a new digit (9.9996 -> 10.000): one decimal fewer then.
    let rounded: f64 = text.parse().unwrap_or(x);
    if decimals > 0 && rounded.abs() >= 10f64.powi(magnitude + 1) {
        let decimals = decimals - 1;
        return format!("{x:.decimals$}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_significant_digits_whatever_the_magnitude() {
        for (x, text) in [
            (0.0038123, "0.003812"),
            (0.0038, "0.003800"),
            (2.7696, "2.770"),
            (-0.41577, "-0.4158"),
            (1234.56, "1235"),
            (123456.7, "123457"),
            (9.99996, "10.00"),
            (0.099999, "0.1000"),
            (1e-9, "0.000000001000"),
            (0.0, "0"),
            (f64::INFINITY, "inf"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(significant(x), text, "{x}");
        }
        assert_eq!(significant_digits(0.0038123, 2), "0.0038");
    }
}
