//! Strict parsing of the order-entry body.

use std::borrow::Cow;

use rust_decimal::Decimal;
use serde::Deserialize;

use super::types::Order;

/// Longest accepted client order id (the venue's bound).
pub const MAX_CLIENT_ORDER_ID_LEN: usize = 64;
/// Most integer digits of a wire decimal (the venue's bound).
pub const MAX_INT_DIGITS: usize = 10;
/// Most fractional digits of a wire decimal (the venue's bound).
pub const MAX_FRAC_DIGITS: usize = 18;

/// An order parsed from a request body; [`OwnedOrder::as_order`] borrows it
/// for [`super::Engine::check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedOrder {
    /// Instrument symbol.
    pub symbol: String,
    /// `buy` or `sell`.
    pub side: &'static str,
    /// `limit` or `market`.
    pub order_type: &'static str,
    /// Quantity, greater than 0.
    pub qty: Decimal,
    /// Price, greater than 0; present exactly for limit orders.
    pub price: Option<Decimal>,
    /// `gtc`, `ioc` or `fok`, if given.
    pub time_in_force: Option<&'static str>,
    /// Client order id, if given.
    pub client_order_id: Option<String>,
}

impl OwnedOrder {
    /// Borrows the order for a check.
    pub fn as_order(&self) -> Order<'_> {
        Order {
            symbol: &self.symbol,
            side: self.side,
            order_type: self.order_type,
            qty: self.qty,
            price: self.price,
            time_in_force: self.time_in_force,
            client_order_id: self.client_order_id.as_deref(),
        }
    }
}

/// The wire shape. Unknown fields are ignored, as the venue ignores them;
/// a duplicated field is an error (serde refuses it), so the gateway and the
/// venue can never read different values from one body. Strings borrow
/// from the body unless they hold escapes (the hot path allocates only the
/// symbol and client order id it keeps).
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    symbol: Cow<'a, str>,
    #[serde(borrow)]
    side: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    order_type: Cow<'a, str>,
    #[serde(borrow)]
    qty: Cow<'a, str>,
    #[serde(default, borrow)]
    price: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    client_order_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    time_in_force: Option<Cow<'a, str>>,
}

/// `value` as the one of `allowed` it equals (a `'static` copy, so the
/// parsed order borrows nothing), else the field's error naming `expected`.
fn one_of(
    field: &str,
    value: &str,
    allowed: &[&'static str],
    expected: &str,
) -> Result<&'static str, String> {
    allowed
        .iter()
        .copied()
        .find(|a| *a == value)
        .ok_or_else(|| format!("{field}: must be {expected} (got `{}`)", truncate(value)))
}

/// Parses a `POST /v1/orders` body:
/// `{"symbol":"BTC-USD","side":"buy","type":"limit","qty":"0.5","price":"65000.00","client_order_id":"abc-123","time_in_force":"gtc"}`.
///
/// Decimals must be JSON strings in the venue's strict form (`DIGITS` or
/// `DIGITS.DIGITS`, at most 10 integer and 18 fractional digits, no sign,
/// exponent or whitespace). JSON numbers are refused: the venue contract
/// says strings, the venue refuses numbers, and a number may pass through
/// binary floating point in some JSON stack on the way, so the value checked
/// here could differ from the value the venue executes. Checking exactly the
/// text the venue will parse is the only way the check means something.
///
/// The rules the venue applies to the shape are mirrored (side, type and
/// time in force values; a limit order needs a price, a market order must
/// not have one; quantity and price greater than 0; client order id of 1 to
/// 64 characters from `A-Z a-z 0-9 - _ . :`), so the gateway never checks
/// an order the venue would read differently.
pub fn parse_order(body: &[u8]) -> Result<OwnedOrder, String> {
    let w: Wire<'_> =
        serde_json::from_slice(body).map_err(|e| format!("invalid order body: {e}"))?;
    let side = one_of("side", &w.side, &["buy", "sell"], "`buy` or `sell`")?;
    let order_type = one_of(
        "type",
        &w.order_type,
        &["limit", "market"],
        "`limit` or `market`",
    )?;
    let time_in_force = w
        .time_in_force
        .as_deref()
        .map(|t| {
            one_of(
                "time_in_force",
                t,
                &["gtc", "ioc", "fok"],
                "`gtc`, `ioc` or `fok`",
            )
        })
        .transpose()?;
    if w.symbol.is_empty() {
        return Err("symbol: must not be empty".to_owned());
    }
    let qty = positive("qty", &w.qty)?;
    let price = w
        .price
        .as_deref()
        .map(|p| positive("price", p))
        .transpose()?;
    match (order_type, price) {
        ("limit", None) => return Err("price: required for limit orders".to_owned()),
        ("market", Some(_)) => return Err("price: not allowed for market orders".to_owned()),
        _ => {}
    }
    if let Some(cid) = &w.client_order_id {
        validate_client_order_id(cid)?;
    }
    Ok(OwnedOrder {
        symbol: w.symbol.into_owned(),
        side,
        order_type,
        qty,
        price,
        time_in_force,
        client_order_id: w.client_order_id.map(Cow::into_owned),
    })
}

fn positive(field: &str, s: &str) -> Result<Decimal, String> {
    let d = parse_decimal(field, s)?;
    if d <= Decimal::ZERO {
        return Err(format!("{field}: must be greater than 0"));
    }
    Ok(d)
}

/// Parses a wire decimal: `DIGITS` or `DIGITS.DIGITS`, bounded digit counts.
fn parse_decimal(field: &str, s: &str) -> Result<Decimal, String> {
    let bad = || format!("{field}: invalid decimal `{}`", truncate(s));
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

fn validate_client_order_id(cid: &str) -> Result<(), String> {
    if cid.is_empty() || cid.len() > MAX_CLIENT_ORDER_ID_LEN {
        return Err(format!(
            "client_order_id: must be 1 to {MAX_CLIENT_ORDER_ID_LEN} characters"
        ));
    }
    if !cid
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return Err(
            "client_order_id: may contain only ASCII letters, digits and `-` `_` `.` `:`"
                .to_owned(),
        );
    }
    Ok(())
}

/// At most 40 characters of user input in a message.
fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_contract_example() {
        let o = parse_order(br#"{"symbol":"BTC-USD","side":"buy","type":"limit","qty":"0.5","price":"65000.00","client_order_id":"abc-123","time_in_force":"gtc"}"#).unwrap();
        assert_eq!(o.qty, Decimal::new(5, 1));
        assert_eq!(o.price, Some(Decimal::new(6_500_000, 2)));
        let b = o.as_order();
        assert_eq!(b.client_order_id, Some("abc-123"));
        assert_eq!(b.time_in_force, Some("gtc"));
    }

    #[test]
    fn refuses_numbers_and_loose_decimals() {
        for body in [
            r#"{"symbol":"X","side":"buy","type":"market","qty":1}"#,
            r#"{"symbol":"X","side":"buy","type":"market","qty":"1e3"}"#,
            r#"{"symbol":"X","side":"buy","type":"market","qty":"-1"}"#,
            r#"{"symbol":"X","side":"buy","type":"market","qty":" 1"}"#,
            r#"{"symbol":"X","side":"buy","type":"market","qty":"1."}"#,
            r#"{"symbol":"X","side":"buy","type":"market","qty":".5"}"#,
            r#"{"symbol":"X","side":"buy","type":"market","qty":"0"}"#,
            r#"{"symbol":"X","side":"buy","type":"market","qty":"12345678901"}"#,
            r#"{"symbol":"X","side":"buy","type":"market","qty":"1","qty":"2"}"#,
            r#"{"symbol":"X","side":"buy","type":"limit","qty":"1"}"#,
            r#"{"symbol":"X","side":"buy","type":"market","qty":"1","price":"2"}"#,
            r#"{"symbol":"X","side":"BUY","type":"market","qty":"1"}"#,
            r#"{"symbol":"X","side":"buy","type":"stop","qty":"1"}"#,
            r#"{"symbol":"X","side":"buy","type":"market","qty":"1","time_in_force":"day"}"#,
            r#"{"symbol":"X","side":"buy","type":"market","qty":"1","client_order_id":"a b"}"#,
            r#"{"symbol":"","side":"buy","type":"market","qty":"1"}"#,
        ] {
            assert!(parse_order(body.as_bytes()).is_err(), "{body}");
        }
    }
}
