//! Single-use recovery codes, for when the authenticator is lost.
//!
//! A code is 80 random bits as 16 lower-case base32 symbols in groups of
//! four (`abcd-efgh-ijkl-mnop`). Only [`hash`]es are stored; the caller
//! removes a hash once [`find`] has matched it, so each code works once.
//!
//! Why a fast hash (one SHA-256) and not a password hash: a password hash's
//! work factor exists to slow a guesser down against the low entropy of
//! human-chosen passwords. These codes are 80 uniformly random bits, so
//! even a stolen hash table leaves 2^80 SHA-256 evaluations per code, far
//! beyond any offline search (and a guesser online is rate-limited by the
//! gateway). A work factor would only add login cost, not security.

use aws_lc_rs::digest;
use subtle::{ConditionallySelectable as _, ConstantTimeEq as _};
use zeroize::Zeroizing;

use super::{base32_encode, EnrolError};

/// Random bytes in a code: 10 bytes, 80 bits, exactly 16 base32 symbols.
const CODE_BYTES: usize = 10;

/// `n` fresh, distinct recovery codes (`xxxx-xxxx-xxxx-xxxx`, lower-case
/// base32, 80 random bits each), zeroized on drop. Show them to the user
/// once and store only their [`hash`]es.
///
/// # Errors
///
/// [`EnrolError::Random`] if the operating system's random source fails.
pub fn generate(n: usize) -> Result<Vec<Zeroizing<String>>, EnrolError> {
    let mut codes: Vec<Zeroizing<String>> = Vec::with_capacity(n);
    while codes.len() < n {
        let mut bytes = Zeroizing::new([0u8; CODE_BYTES]);
        aws_lc_rs::rand::fill(bytes.as_mut()).map_err(|_| EnrolError::Random)?;
        let symbols = Zeroizing::new(base32_encode(bytes.as_ref()).to_ascii_lowercase());
        let mut code = Zeroizing::new(String::with_capacity(19));
        for (i, c) in symbols.chars().enumerate() {
            if i > 0 && i % 4 == 0 {
                code.push('-');
            }
            code.push(c);
        }
        // A repeat is a 2^-80 event, but distinctness is promised.
        if !codes.iter().any(|c| c.as_str() == code.as_str()) {
            codes.push(code);
        }
    }
    Ok(codes)
}

/// The code as typed, normalised: lower case, without spaces (any ASCII
/// whitespace) and `-`.
fn normalise(code: &str) -> Zeroizing<String> {
    Zeroizing::new(
        code.chars()
            .filter(|c| !c.is_ascii_whitespace() && *c != '-')
            .map(|c| c.to_ascii_lowercase())
            .collect(),
    )
}

/// The stored form of a recovery code: normalise (lower case, strip spaces
/// and `-`), then SHA-256, as 64 lower-case hex digits. See the module
/// documentation for why a fast hash suffices.
#[must_use]
pub fn hash(code: &str) -> String {
    let normal = normalise(code);
    let digest = digest::digest(&digest::SHA256, normal.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest.as_ref() {
        for nibble in [byte >> 4, byte & 0x0f] {
            hex.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
        }
    }
    hex
}

/// The index in `hashes` of the stored hash of `code`, if any.
///
/// Every stored hash is compared in constant time, with no early exit, so
/// the time taken does not depend on whether or where `code` matched. A
/// code that is empty once normalised matches nothing.
#[must_use]
pub fn find(code: &str, hashes: &[String]) -> Option<usize> {
    if normalise(code).is_empty() {
        return None;
    }
    let wanted = hash(code);
    let mut found = subtle::Choice::from(0);
    let mut index = 0u64;
    for (i, stored) in hashes.iter().enumerate() {
        let i = u64::try_from(i).unwrap_or(u64::MAX);
        let matches = stored.as_bytes().ct_eq(wanted.as_bytes());
        // Keep the first match; later ones (duplicates) do not move it.
        let take = matches & !found;
        index.conditional_assign(&i, take);
        found |= matches;
    }
    if bool::from(found) {
        usize::try_from(index).ok()
    } else {
        None
    }
}
