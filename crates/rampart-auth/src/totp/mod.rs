//! Multi-factor authentication primitives: TOTP (RFC 6238) over HOTP
//! (RFC 4226), the `otpauth://` enrolment URI with its QR code, and
//! single-use recovery codes ([`recovery`]).
//!
//! Like the rest of this crate these are pure functions: no clock, no
//! storage, no I/O. The caller passes the current Unix time and the last
//! step it accepted for the enrolment, and persists the step [`verify`]
//! returns, so that a code is accepted at most once (RFC 6238 §5.2).
//!
//! Defaults ([`TotpParams::default`]) are what every authenticator app
//! understands: HMAC-SHA1, 6 digits, 30 s steps, one step of clock skew
//! either way. SHA-1 is fine here: HOTP relies on HMAC's pseudo-randomness,
//! which collisions in SHA-1 do not affect; SHA-256 and SHA-512 are offered
//! for the apps that support them.
//!
//! It must never: panic on any input (a zero period, huge times, odd
//! digit counts); compare a code in variable time; put a secret or a code
//! into an error or `Debug` output.

mod base32;
mod qr;
pub mod recovery;
mod uri;

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::hmac;
use subtle::{ConditionallySelectable as _, ConstantTimeEq as _};
use zeroize::Zeroizing;

pub use base32::{base32_decode, base32_encode};
pub use qr::{qr_png, qr_terminal, QR_PNG_SCALE, QR_QUIET_ZONE};
pub use uri::otpauth_uri;

/// The shortest secret [`verify`] accepts, in bytes (128 bits, RFC 4226 §4
/// R6; 160 bits are recommended and [`generate_secret`] gives more).
pub const MIN_SECRET_LEN: usize = 16;

/// The largest clock skew, in steps either way, [`TotpParams::validate`]
/// accepts; each step of skew widens the window an attacker can guess in.
pub const MAX_SKEW_STEPS: u64 = 10;

/// The longest period [`TotpParams::validate`] accepts, in seconds.
pub const MAX_PERIOD_SECS: u64 = 3600;

/// The HMAC behind HOTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TotpAlgorithm {
    /// HMAC-SHA1, the RFC 4226 original and what every app supports.
    #[default]
    Sha1,
    /// HMAC-SHA-256 (RFC 6238).
    Sha256,
    /// HMAC-SHA-512 (RFC 6238).
    Sha512,
}

impl TotpAlgorithm {
    /// The name in an `otpauth://` URI: `SHA1`, `SHA256` or `SHA512`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            TotpAlgorithm::Sha1 => "SHA1",
            TotpAlgorithm::Sha256 => "SHA256",
            TotpAlgorithm::Sha512 => "SHA512",
        }
    }

    /// The algorithm named `name` (`SHA1`, `SHA256`, `SHA512`, ASCII case
    /// ignored), if there is one.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Sha1, Self::Sha256, Self::Sha512]
            .into_iter()
            .find(|alg| alg.as_str().eq_ignore_ascii_case(name))
    }

    /// The length of a fresh secret for this algorithm: the HMAC's output
    /// length (20, 32 or 64 bytes), as RFC 6238's test vectors use.
    #[must_use]
    pub const fn secret_len(self) -> usize {
        match self {
            TotpAlgorithm::Sha1 => 20,
            TotpAlgorithm::Sha256 => 32,
            TotpAlgorithm::Sha512 => 64,
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            TotpAlgorithm::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            TotpAlgorithm::Sha256 => hmac::HMAC_SHA256,
            TotpAlgorithm::Sha512 => hmac::HMAC_SHA512,
        }
    }
}

impl fmt::Display for TotpAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TotpAlgorithm {
    type Err = TotpError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or(TotpError::BadParams("unknown totp algorithm"))
    }
}

/// How codes are made and checked for one enrolment.
///
/// The fields are public so they can be stored with the enrolment; check
/// values that come from configuration or storage with
/// [`TotpParams::validate`] ([`verify`] refuses invalid ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TotpParams {
    /// The HMAC.
    pub algorithm: TotpAlgorithm,
    /// Digits in a code, 6 to 10.
    pub digits: u32,
    /// Length of a time step in seconds (`X` in RFC 6238), 1 to
    /// [`MAX_PERIOD_SECS`]. The epoch `T0` is always 0.
    pub period_secs: u64,
    /// Steps of clock skew tolerated either way, 0 to [`MAX_SKEW_STEPS`].
    pub skew_steps: u64,
}

impl Default for TotpParams {
    /// SHA1, 6 digits, 30 s, ±1 step.
    fn default() -> Self {
        Self {
            algorithm: TotpAlgorithm::Sha1,
            digits: 6,
            period_secs: 30,
            skew_steps: 1,
        }
    }
}

impl TotpParams {
    /// Checks the parameters are ones [`verify`] will use: 6 to 10 digits
    /// (RFC 4226 asks for at least 6; a 31-bit HOTP value has at most 10),
    /// a period of 1 s to [`MAX_PERIOD_SECS`], at most [`MAX_SKEW_STEPS`]
    /// of skew.
    ///
    /// # Errors
    ///
    /// [`TotpError::BadParams`] naming the first bad field.
    pub fn validate(&self) -> Result<(), TotpError> {
        if !(6..=10).contains(&self.digits) {
            return Err(TotpError::BadParams("totp digits must be 6 to 10"));
        }
        if !(1..=MAX_PERIOD_SECS).contains(&self.period_secs) {
            return Err(TotpError::BadParams(
                "totp period must be 1 to 3600 seconds",
            ));
        }
        if self.skew_steps > MAX_SKEW_STEPS {
            return Err(TotpError::BadParams("totp skew must be at most 10 steps"));
        }
        Ok(())
    }
}

/// Why a TOTP code was refused.
///
/// None of the variants carries the code or the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TotpError {
    /// The code is not exactly `digits` ASCII digits.
    #[error("code must be exactly the expected number of ascii digits")]
    Malformed,
    /// The code matches no step in the window.
    #[error("code is not valid")]
    Invalid,
    /// The code matches only steps at or before the last one accepted for
    /// this enrolment: a replay.
    #[error("code was already used")]
    Reused,
    /// The parameters or the secret are unusable (a server-side problem,
    /// not the user's): the message names which.
    #[error("bad totp parameters: {0}")]
    BadParams(&'static str),
}

/// Why making enrolment material (a secret, recovery codes, a QR code)
/// failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrolError {
    /// The operating system's random source failed.
    #[error("the system random source failed")]
    Random,
    /// The data does not fit in the largest QR code.
    #[error("data too long for a qr code")]
    QrTooLong,
    /// The QR encoder refused the data for another reason.
    #[error("qr encoding failed: {0}")]
    Qr(String),
    /// The PNG encoder failed.
    #[error("png encoding failed: {0}")]
    Png(String),
}

/// The HOTP value (RFC 4226 §5.3) of `secret` at `counter`: HMAC, dynamic
/// truncation to 31 bits, modulo `10^digits`, zero-padded to `digits`.
///
/// `digits` outside 1 to 10 is clamped into that range (so this never
/// panics or allocates without bound); [`TotpParams::validate`] keeps real
/// parameters within 6 to 10.
#[must_use]
pub fn hotp(secret: &[u8], algorithm: TotpAlgorithm, digits: u32, counter: u64) -> String {
    let digits = digits.clamp(1, 10);
    let key = hmac::Key::new(algorithm.hmac(), secret);
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let tag = tag.as_ref();
    // Dynamic truncation: the low nibble of the last byte picks 4 bytes.
    // Every HMAC here is at least 20 bytes, so the offset (at most 15)
    // leaves 4 bytes to read.
    let offset = usize::from(tag.last().copied().unwrap_or(0) & 0x0f);
    let word = tag
        .iter()
        .skip(offset)
        .take(4)
        .fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
    let value = u64::from(word & 0x7fff_ffff);
    let value = match 10u64.checked_pow(digits) {
        Some(modulus) => value % modulus,
        None => value,
    };
    let width = usize::try_from(digits).unwrap_or(10);
    format!("{value:0width$}")
}

/// The time step (`T` in RFC 6238) that `unix_secs` falls in:
/// `unix_secs / period_secs`, with `T0 = 0`. A zero period counts as 1 s.
#[must_use]
pub fn step_of(params: &TotpParams, unix_secs: u64) -> u64 {
    unix_secs / params.period_secs.max(1)
}

/// The TOTP code of `secret` at `unix_secs`, zero-padded to
/// `params.digits` (clamped to 1 to 10 as in [`hotp`]).
#[must_use]
pub fn code_at(secret: &[u8], params: &TotpParams, unix_secs: u64) -> String {
    hotp(
        secret,
        params.algorithm,
        params.digits,
        step_of(params, unix_secs),
    )
}

/// Verifies `code` at `unix_secs` within ±`skew_steps` steps; refuses any
/// step <= `last_used_step` (a code is accepted once per enrolment);
/// returns the matched step for the caller to persist.
///
/// Every step of the window is computed and compared in constant time,
/// whichever matches. When a code matches more than one step (a 10^-digits
/// coincidence) the latest step after `last_used_step` wins. The window is
/// clipped at step 0 and at `u64::MAX`, never wrapped.
///
/// # Errors
///
/// - [`TotpError::Malformed`]: `code` is not exactly `digits` ASCII digits;
/// - [`TotpError::Invalid`]: no step in the window matches;
/// - [`TotpError::Reused`]: only steps <= `last_used_step` match;
/// - [`TotpError::BadParams`]: `params` fail [`TotpParams::validate`] or
///   the secret is shorter than [`MIN_SECRET_LEN`].
pub fn verify(
    secret: &[u8],
    params: &TotpParams,
    code: &str,
    unix_secs: u64,
    last_used_step: Option<u64>,
) -> Result<u64, TotpError> {
    params.validate()?;
    if secret.len() < MIN_SECRET_LEN {
        return Err(TotpError::BadParams("totp secret shorter than 128 bits"));
    }
    let digits = usize::try_from(params.digits).map_err(|_| TotpError::Malformed)?;
    if code.len() != digits || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TotpError::Malformed);
    }

    let now = step_of(params, unix_secs);
    let first = now.saturating_sub(params.skew_steps);
    let last = now.saturating_add(params.skew_steps);

    // Latest fresh match and whether any (possibly stale) step matched,
    // kept in constant-time selects so that no branch depends on a match.
    let mut fresh_step = 0u64;
    let mut fresh = subtle::Choice::from(0);
    let mut any = subtle::Choice::from(0);
    for step in first..=last {
        let expected = Zeroizing::new(hotp(secret, params.algorithm, params.digits, step));
        let matches = expected.as_bytes().ct_eq(code.as_bytes());
        let is_fresh =
            subtle::Choice::from(u8::from(last_used_step.is_none_or(|used| step > used)));
        let take = matches & is_fresh;
        fresh_step.conditional_assign(&step, take);
        fresh |= take;
        any |= matches;
    }

    if bool::from(fresh) {
        Ok(fresh_step)
    } else if bool::from(any) {
        Err(TotpError::Reused)
    } else {
        Err(TotpError::Invalid)
    }
}

/// A fresh secret for `algorithm` ([`TotpAlgorithm::secret_len`] bytes:
/// 20, 32 or 64) from the operating system's random source.
///
/// # Errors
///
/// [`EnrolError::Random`] if the random source fails.
pub fn generate_secret(algorithm: TotpAlgorithm) -> Result<Zeroizing<Vec<u8>>, EnrolError> {
    let mut secret = Zeroizing::new(vec![0u8; algorithm.secret_len()]);
    aws_lc_rs::rand::fill(&mut secret).map_err(|_| EnrolError::Random)?;
    Ok(secret)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test")]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn hotp_clamps_odd_digit_counts() {
        assert_eq!(hotp(SECRET, TotpAlgorithm::Sha1, 0, 0).len(), 1);
        assert_eq!(hotp(SECRET, TotpAlgorithm::Sha1, u32::MAX, 0).len(), 10);
        // RFC 4226 appendix D, counter 0: truncated value 0x4c93cf18.
        assert_eq!(hotp(SECRET, TotpAlgorithm::Sha1, 10, 0), "1284755224");
    }

    #[test]
    fn zero_period_does_not_divide_by_zero() {
        let params = TotpParams {
            period_secs: 0,
            ..TotpParams::default()
        };
        assert_eq!(step_of(&params, 42), 42);
        assert_eq!(
            verify(SECRET, &params, "000000", 42, None),
            Err(TotpError::BadParams(
                "totp period must be 1 to 3600 seconds"
            ))
        );
    }

    #[test]
    fn window_is_clipped_at_both_ends() {
        let params = TotpParams {
            period_secs: 1,
            ..TotpParams::default()
        };
        let code = code_at(SECRET, &params, u64::MAX);
        assert_eq!(verify(SECRET, &params, &code, u64::MAX, None), Ok(u64::MAX));
        let code = code_at(SECRET, &params, 0);
        assert_eq!(verify(SECRET, &params, &code, 0, None), Ok(0));
    }

    #[test]
    fn algorithm_names_round_trip() {
        for alg in [
            TotpAlgorithm::Sha1,
            TotpAlgorithm::Sha256,
            TotpAlgorithm::Sha512,
        ] {
            assert_eq!(TotpAlgorithm::parse(alg.as_str()), Some(alg));
            assert_eq!(alg.to_string().parse::<TotpAlgorithm>().unwrap(), alg);
        }
        assert_eq!(TotpAlgorithm::parse("sha256"), Some(TotpAlgorithm::Sha256));
        assert_eq!(TotpAlgorithm::parse("MD5"), None);
        assert_eq!(TotpAlgorithm::parse(""), None);
    }
}
