//! RFC 9530 `Content-Digest`.
//!
//! The field is an RFC 8941 Dictionary of byte sequences keyed by
//! algorithm (`sha-256=:…:, sha-512=:…:`). Rampart understands `sha-256`
//! and `sha-512`; other algorithms (including the deprecated `md5`, `sha`,
//! `unixsum`, …) are skipped as RFC 9530 §2 asks, but a request must carry
//! at least one digest Rampart understands, and every one it understands
//! must match the body.
//!
//! Strictness: the value is parsed by the same strict RFC 8941 parser as
//! `Signature-Input` (8 KiB limit, at most 16 members, duplicate keys
//! rejected); a known algorithm whose value is not a byte sequence is
//! malformed; parameters on members are ignored.

use aws_lc_rs::digest;
use base64::Engine as _;
use http::HeaderName;
use subtle::ConstantTimeEq as _;

use crate::rfc9421::sfv::{self, BareItem, MemberValue, BASE64};
use crate::AuthError;

/// The `Content-Digest` header name.
pub const CONTENT_DIGEST: HeaderName = HeaderName::from_static("content-digest");

/// A digest algorithm Rampart understands in `Content-Digest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlg {
    /// `sha-256`.
    Sha256,
    /// `sha-512`.
    Sha512,
}

impl DigestAlg {
    /// The algorithm's key in `Content-Digest` (`sha-256`, `sha-512`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            DigestAlg::Sha256 => "sha-256",
            DigestAlg::Sha512 => "sha-512",
        }
    }

    /// The algorithm with this `Content-Digest` key, if Rampart knows it.
    #[must_use]
    pub fn from_key(key: &str) -> Option<Self> {
        match key {
            "sha-256" => Some(DigestAlg::Sha256),
            "sha-512" => Some(DigestAlg::Sha512),
            _ => None,
        }
    }

    fn algorithm(self) -> &'static digest::Algorithm {
        match self {
            DigestAlg::Sha256 => &digest::SHA256,
            DigestAlg::Sha512 => &digest::SHA512,
        }
    }
}

const MALFORMED: AuthError = AuthError::Digest("malformed Content-Digest");
const MISSING: AuthError = AuthError::Digest("missing Content-Digest for a request body");
const MISMATCH: AuthError = AuthError::Digest("Content-Digest does not match the body");
const NONE_KNOWN: AuthError = AuthError::Digest("Content-Digest has no sha-256 or sha-512 digest");
const TOO_LONG: AuthError = AuthError::Digest("Content-Digest is too long");

/// Parses a `Content-Digest` value into the digests Rampart understands,
/// in order. Unknown algorithms are skipped; a malformed value is
/// [`AuthError::Digest`].
///
/// # Errors
///
/// [`AuthError::Digest`] when the value is not an RFC 8941 Dictionary, is
/// longer than 8 KiB, or a `sha-256` / `sha-512` member is not valid
/// base64 in a byte sequence.
pub fn parse_content_digest(value: &str) -> Result<Vec<(DigestAlg, Vec<u8>)>, AuthError> {
    let mut out = Vec::new();
    for_each_known(value, |alg, b64| {
        let bytes = BASE64.decode(b64).map_err(|_| MALFORMED)?;
        out.push((alg, bytes));
        Ok(())
    })?;
    Ok(out)
}

/// Calls `f` with each known algorithm and its base64 text.
fn for_each_known(
    value: &str,
    mut f: impl FnMut(DigestAlg, &str) -> Result<(), AuthError>,
) -> Result<(), AuthError> {
    if value.len() > sfv::MAX_FIELD_LEN {
        return Err(TOO_LONG);
    }
    let members = sfv::parse_dictionary(value).map_err(|_| MALFORMED)?;
    for m in &members {
        let Some(alg) = DigestAlg::from_key(m.key) else {
            continue;
        };
        match &m.value {
            MemberValue::Item(item) => match item.bare {
                BareItem::ByteSeq(b64) => f(alg, b64)?,
                _ => return Err(MALFORMED),
            },
            MemberValue::InnerList { .. } => return Err(MALFORMED),
        }
    }
    Ok(())
}

/// Checks `Content-Digest` against `body`: at least one `sha-256` or
/// `sha-512` digest must be present and every one present must match
/// (compared in constant time). Several header lines are combined as
/// RFC 9110 §5.3 says (joined with `, `).
///
/// # Errors
///
/// [`AuthError::Digest`]: the header is missing, malformed, has no digest
/// Rampart understands, or a digest does not match.
pub fn verify_content_digest(headers: &http::HeaderMap, body: &[u8]) -> Result<(), AuthError> {
    let value = combined(headers)?;
    let mut known = 0usize;
    // Largest digest is 64 bytes; room for a longer (wrong) value so that
    // it is a mismatch, not a decode error.
    let mut buf = [0u8; 96];
    for_each_known(&value, |alg, b64| {
        known += 1;
        let n = match BASE64.decode_slice(b64, &mut buf) {
            Ok(n) => n,
            Err(base64::DecodeSliceError::OutputSliceTooSmall) => return Err(MISMATCH),
            Err(base64::DecodeSliceError::DecodeError(_)) => return Err(MALFORMED),
        };
        let claimed = buf.get(..n).ok_or(MALFORMED)?;
        let actual = digest::digest(alg.algorithm(), body);
        if bool::from(claimed.ct_eq(actual.as_ref())) {
            Ok(())
        } else {
            Err(MISMATCH)
        }
    })?;
    if known == 0 {
        return Err(NONE_KNOWN);
    }
    Ok(())
}

/// The header's lines combined, borrowed when there is one line.
fn combined(headers: &http::HeaderMap) -> Result<std::borrow::Cow<'_, str>, AuthError> {
    let mut lines = headers.get_all(CONTENT_DIGEST).iter();
    let first = lines.next().ok_or(MISSING)?;
    let first = first.to_str().map_err(|_| MALFORMED)?;
    let Some(second) = lines.next() else {
        return Ok(std::borrow::Cow::Borrowed(first));
    };
    let mut all = String::with_capacity(first.len() * 2 + 2);
    all.push_str(first);
    for line in std::iter::once(second).chain(lines) {
        all.push_str(", ");
        all.push_str(line.to_str().map_err(|_| MALFORMED)?);
        if all.len() > sfv::MAX_FIELD_LEN {
            return Err(TOO_LONG);
        }
    }
    Ok(std::borrow::Cow::Owned(all))
}

/// The `Content-Digest` header value for `body` with one algorithm, e.g.
/// `sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:`.
#[must_use]
pub fn content_digest(alg: DigestAlg, body: &[u8]) -> String {
    let d = digest::digest(alg.algorithm(), body);
    let mut out = String::with_capacity(alg.as_str().len() + 3 + d.as_ref().len().div_ceil(3) * 4);
    out.push_str(alg.as_str());
    out.push_str("=:");
    BASE64.encode_string(d.as_ref(), &mut out);
    out.push(':');
    out
}
