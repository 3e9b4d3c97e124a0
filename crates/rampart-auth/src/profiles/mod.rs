//! Exchange-compatible signing profiles: Binance-style ([`binance`]),
//! Kraken-style ([`kraken`]) and Coinbase-style JWT ([`coinbase`]), each
//! with the same shape:
//!
//! - `claims(req, now_ms) -> Result<Option<Claims>, AuthError>`: `Ok(None)`
//!   when the profile's credentials are absent;
//! - `verify(req, claims, key) -> Result<(), AuthError>`;
//! - `sign(..)`: what a client adds (headers, query or body changes).
//!
//! [`detect`] tries every profile, [`verify`] dispatches on the claims'
//! scheme. [`deribit`] holds Deribit's `client_signature` as pure functions.
//!
//! Every parser here is fuzzed (`fuzz/fuzz_targets/profile_binance.rs`,
//! `profile_kraken.rs`, `jwt.rs`) through [`binance::parse_signed_params`],
//! [`kraken::extract_nonce`] and [`jwt::parse`].

pub mod binance;
pub mod coinbase;
mod common;

pub use common::form_decode;
pub mod deribit;
pub mod jwt;
pub mod kraken;

use crate::{AuthError, Claims, KeyMaterial, RequestView, Scheme};

/// The claims of whichever profile's credentials the request carries;
/// `Ok(None)` when it carries none of them.
///
/// # Errors
///
/// The first profile's error (Binance, then Kraken, then Coinbase), or
/// [`AuthError::Malformed`] when the request carries the credentials of more
/// than one profile (ambiguous: rejected rather than guessed).
pub fn detect(req: &RequestView<'_>, now_ms: i64) -> Result<Option<Claims>, AuthError> {
    let found = [
        binance::claims(req, now_ms)?,
        kraken::claims(req, now_ms)?,
        coinbase::claims(req, now_ms)?,
    ];
    let mut found = found.into_iter().flatten();
    let first = found.next();
    if found.next().is_some() {
        return Err(AuthError::Malformed(
            "credentials of more than one signing profile".to_owned(),
        ));
    }
    Ok(first)
}

/// Verifies a request with the profile its claims' scheme names.
///
/// # Errors
///
/// The profile's error; [`AuthError::AlgorithmMismatch`] when the scheme is
/// not a profile's.
pub fn verify(req: &RequestView<'_>, claims: &Claims, key: &KeyMaterial) -> Result<(), AuthError> {
    match claims.scheme {
        Scheme::BinanceHmac | Scheme::BinanceEd25519 => binance::verify(req, claims, key),
        Scheme::KrakenHmac => kraken::verify(req, claims, key),
        Scheme::CoinbaseJwtEs256 | Scheme::CoinbaseJwtEdDsa => coinbase::verify(req, claims, key),
        _ => Err(AuthError::AlgorithmMismatch(
            "not an exchange-profile scheme",
        )),
    }
}
