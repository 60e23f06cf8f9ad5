//! Text cells of the CSV files `tla` writes, made safe to open in a spreadsheet.
//!
//! A spreadsheet reads a cell that begins with `=`, `+`, `-` or `@` (or a tab or a
//! carriage return before one) as a formula, so a campaign text such as
//! `=HYPERLINK(...)` would run when the file is opened. Every text cell goes through
//! [`spreadsheet_safe`], which puts a `'` before such a cell, as spreadsheet tools
//! expect; numbers are written as numbers and never changed. Parquet files hold typed
//! values and are written as they are.

use std::borrow::Cow;

/// `text` as a CSV text cell: with a leading `'` when a spreadsheet would read it as a
/// formula, unchanged otherwise.
pub fn spreadsheet_safe(text: &str) -> Cow<'_, str> {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{text}"))
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_a_spreadsheet_would_run_get_a_quote_and_others_stay() {
        for formula in [
            "=HYPERLINK(\"x\")",
            "+1+1",
            "-2+3",
            "@SUM(A1)",
            "\t=1",
            "\r=1",
        ] {
            assert_eq!(spreadsheet_safe(formula), format!("'{formula}"));
        }
        for plain in ["river-city/50-64/new", "Donate $10", "a=b", "", "'quoted"] {
            assert!(
                matches!(spreadsheet_safe(plain), Cow::Borrowed(_)),
                "{plain}"
            );
        }
    }
}
