//! The self-describing ciphertext format of an encrypted field, and the
//! associated data that binds it to its record.
//!
//! ```text
//! offset  size  field
//! 0       2     magic "RE"  (0x52 0x45)
//! 2       1     format: 1 = sealed with the purpose's data key,
//!                       2 = sealed with an account key derived from it
//! 3       1     purpose id (see Purpose::id)
//! 4       4     data-key version, u32 big-endian
//! 8       12    random nonce
//! 20      n+16  AES-256-GCM ciphertext ‖ 128-bit tag
//! ```
//!
//! The associated data is never stored; it is rebuilt from the caller's
//! [`AadContext`] and the header:
//!
//! ```text
//! "rampart-field-v1" ‖ header[0..8] ‖ len64 ‖ record type ‖ len64 ‖ record id ‖ len64 ‖ field
//! ```
//!
//! Lengths are u64 big-endian, so no two distinct contexts produce the same
//! bytes. A ciphertext moved to another record, field, purpose or key version
//! therefore fails authentication.

use crate::aead::{NONCE_LEN, TAG_LEN};
use crate::error::{CryptoError, Result};
use crate::purpose::Purpose;

/// Magic bytes that open every envelope.
pub const MAGIC: [u8; 2] = *b"RE";
/// Format byte of an envelope sealed directly with a purpose data key.
pub const FORMAT_V1: u8 = 1;
/// Format byte of an envelope sealed with an account-scoped key, derived
/// from the purpose data key and the account's shred handle (see
/// [`crate::account`]).
pub const FORMAT_ACCOUNT_V1: u8 = 2;

/// Which key sealed an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The purpose's data key itself (format 1).
    Purpose,
    /// A per-account key derived from the data key (format 2).
    Account,
}

impl Scope {
    const fn format(self) -> u8 {
        match self {
            Scope::Purpose => FORMAT_V1,
            Scope::Account => FORMAT_ACCOUNT_V1,
        }
    }
}
/// Bytes of the header before the nonce (magic, version, purpose, key version).
pub const PREFIX_LEN: usize = 8;
/// Total bytes before the ciphertext.
pub const HEADER_LEN: usize = PREFIX_LEN + NONCE_LEN;
/// Size of an envelope holding an empty plaintext.
pub const MIN_LEN: usize = HEADER_LEN + TAG_LEN;

const AAD_LABEL: &[u8] = b"rampart-field-v1";

/// Where an encrypted value lives. Every field is part of the associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AadContext<'a> {
    /// Kind of record, e.g. `api_key`.
    pub record_type: &'a str,
    /// Primary key of the record.
    pub record_id: &'a str,
    /// Column or field name inside the record, e.g. `secret`.
    pub field: &'a str,
}

impl<'a> AadContext<'a> {
    /// A context for `field` of record `record_id` of kind `record_type`.
    #[must_use]
    pub const fn new(record_type: &'a str, record_id: &'a str, field: &'a str) -> Self {
        Self {
            record_type,
            record_id,
            field,
        }
    }
}

/// The parsed, borrowed view of an envelope. Parsing checks structure only;
/// authenticity is checked on decryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// Which kind of key sealed it.
    pub scope: Scope,
    /// Purpose of the data key that sealed it.
    pub purpose: Purpose,
    /// Version of that data key.
    pub key_version: u32,
    /// The 96-bit nonce.
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the tag (at least [`TAG_LEN`] bytes).
    pub ciphertext_and_tag: &'a [u8],
}

impl<'a> Envelope<'a> {
    /// Parses an envelope. Never panics, whatever the input.
    ///
    /// # Errors
    /// [`CryptoError::Malformed`], [`CryptoError::UnsupportedVersion`] or
    /// [`CryptoError::UnknownPurpose`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let (magic, rest) = bytes
            .split_first_chunk::<2>()
            .ok_or(CryptoError::Malformed("shorter than its header"))?;
        if *magic != MAGIC {
            return Err(CryptoError::Malformed("bad magic bytes"));
        }
        let (&version, rest) = rest
            .split_first()
            .ok_or(CryptoError::Malformed("shorter than its header"))?;
        let scope = match version {
            FORMAT_V1 => Scope::Purpose,
            FORMAT_ACCOUNT_V1 => Scope::Account,
            other => return Err(CryptoError::UnsupportedVersion(other)),
        };
        let (&purpose_id, rest) = rest
            .split_first()
            .ok_or(CryptoError::Malformed("shorter than its header"))?;
        let purpose = Purpose::from_id(purpose_id)?;
        let (key_version, rest) = rest
            .split_first_chunk::<4>()
            .ok_or(CryptoError::Malformed("shorter than its header"))?;
        let (nonce, ciphertext_and_tag) = rest
            .split_first_chunk::<NONCE_LEN>()
            .ok_or(CryptoError::Malformed("shorter than its header"))?;
        if ciphertext_and_tag.len() < TAG_LEN {
            return Err(CryptoError::Malformed("shorter than an authentication tag"));
        }
        Ok(Self {
            scope,
            purpose,
            key_version: u32::from_be_bytes(*key_version),
            nonce: *nonce,
            ciphertext_and_tag,
        })
    }

    /// The associated data for this envelope in `ctx`.
    #[must_use]
    pub fn aad(&self, ctx: &AadContext<'_>) -> Vec<u8> {
        build_aad(self.scope, self.purpose, self.key_version, ctx)
    }
}

/// The 8-byte header prefix (magic, format, purpose, key version).
#[must_use]
pub fn header_prefix(scope: Scope, purpose: Purpose, key_version: u32) -> [u8; PREFIX_LEN] {
    let v = key_version.to_be_bytes();
    let [m0, m1] = MAGIC;
    let [v0, v1, v2, v3] = v;
    [m0, m1, scope.format(), purpose.id(), v0, v1, v2, v3]
}

/// The associated data binding a ciphertext to `ctx`, its purpose and key version.
#[must_use]
pub fn build_aad(
    scope: Scope,
    purpose: Purpose,
    key_version: u32,
    ctx: &AadContext<'_>,
) -> Vec<u8> {
    let mut aad = Vec::with_capacity(
        AAD_LABEL.len()
            + PREFIX_LEN
            + 24
            + ctx.record_type.len()
            + ctx.record_id.len()
            + ctx.field.len(),
    );
    aad.extend_from_slice(AAD_LABEL);
    aad.extend_from_slice(&header_prefix(scope, purpose, key_version));
    for part in [ctx.record_type, ctx.record_id, ctx.field] {
        push_len_prefixed(&mut aad, part.as_bytes());
    }
    aad
}

fn push_len_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    // usize is at most 64 bits on every supported target, so the prefix is exact.
    let len = bytes.len() as u64;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}
