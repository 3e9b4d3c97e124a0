//! Decimal helpers: strict parsing of wire decimals and canonical serialization.
//!
//! Decimals travel as JSON strings. Parsing is deliberately strict: plain
//! unsigned digits with an optional fractional part (`"65000.25"`), no sign,
//! no exponent, no whitespace, at most [`MAX_INT_DIGITS`] integer digits and
//! [`MAX_FRAC_DIGITS`] fractional digits. Anything else is rejected, never
//! rounded. Serialization always emits the normalized form (`"1.50"` → `"1.5"`).

use rust_decimal::Decimal;
use serde::Serializer;

/// Maximum number of fractional digits accepted on the wire.
pub const MAX_FRAC_DIGITS: usize = 18;
/// Maximum number of integer digits accepted on the wire.
pub const MAX_INT_DIGITS: usize = 10;

/// Parse a wire decimal (`field` is only used in the error message).
///
/// Accepts only `DIGITS` or `DIGITS.DIGITS`; zero is accepted here (callers
/// check positivity where it matters).
pub fn parse_decimal(field: &str, s: &str) -> Result<Decimal, String> {
    let bad = || format!("{field}: invalid decimal {:?}", truncate(s));
    let (int_part, frac_part) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    if int_part.is_empty() || !int_part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    if int_part.len() > MAX_INT_DIGITS {
        return Err(format!(
            "{field}: too many integer digits (max {MAX_INT_DIGITS})"
        ));
    }
    if let Some(f) = frac_part {
        if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        if f.len() > MAX_FRAC_DIGITS {
            return Err(format!(
                "{field}: too many decimal places (max {MAX_FRAC_DIGITS})"
            ));
        }
    }
    Decimal::from_str_exact(s).map_err(|_| bad())
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Serialize a decimal as a normalized string.
pub fn ser<S: Serializer>(d: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&d.normalize())
}

/// Serialize an optional decimal as a normalized string or `null`.
pub fn ser_opt<S: Serializer>(d: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.collect_str(&d.normalize()),
        None => s.serialize_none(),
    }
}

/// Serialize an integer id as a string (ids are strings on the wire).
pub fn ser_id<S: Serializer>(id: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

/// Is `value` an exact multiple of `step`? (`step` must be positive.)
pub fn is_multiple_of(value: Decimal, step: Decimal) -> bool {
    if step <= Decimal::ZERO {
        return false;
    }
    value.checked_rem(step).is_some_and(|r| r.is_zero())
}

/// Round `value` down to a multiple of `step` (returns zero when `step` is not positive).
pub fn floor_to_step(value: Decimal, step: Decimal) -> Decimal {
    if step <= Decimal::ZERO || value <= Decimal::ZERO {
        return Decimal::ZERO;
    }
    value
        .checked_div(step)
        .map(|q| q.floor())
        .and_then(|q| q.checked_mul(step))
        .unwrap_or(Decimal::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn parses_plain_decimals() {
        assert_eq!(parse_decimal("qty", "0.5").unwrap(), d("0.5"));
        assert_eq!(parse_decimal("qty", "65000.00").unwrap(), d("65000"));
        assert_eq!(parse_decimal("qty", "0").unwrap(), Decimal::ZERO);
        assert_eq!(
            parse_decimal("qty", "1.000000000000000001").unwrap(),
            d("1.000000000000000001")
        );
    }

    #[test]
    fn rejects_absurd_strings() {
        for s in [
            "",
            " ",
            "1 ",
            "-1",
            "+1",
            "1e5",
            "NaN",
            "inf",
            ".5",
            "5.",
            "1.2.3",
            "0x10",
            "1,5",
            "١",
            "1.0000000000000000001",
            "99999999999",
            "--",
        ] {
            assert!(parse_decimal("qty", s).is_err(), "accepted {s:?}");
        }
    }

    #[test]
    fn multiples_and_floor() {
        assert!(is_multiple_of(d("65000.25"), d("0.01")));
        assert!(!is_multiple_of(d("65000.255"), d("0.01")));
        assert!(!is_multiple_of(d("1"), Decimal::ZERO));
        assert_eq!(floor_to_step(d("1.23456"), d("0.0001")), d("1.2345"));
        assert_eq!(floor_to_step(d("0.00001"), d("0.0001")), Decimal::ZERO);
    }
}
