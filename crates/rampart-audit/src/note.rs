//! Checkpoints in the C2SP `tlog-checkpoint` format, signed as C2SP
//! `signed-note`s with Ed25519.
//!
//! A checkpoint body is three lines (<https://c2sp.org/tlog-checkpoint>):
//!
//! ```text
//! <origin>
//! <tree size, decimal>
//! <root hash, base64>
//! ```
//!
//! and the signed note (<https://c2sp.org/signed-note>) appends a blank
//! line and one line per signature:
//!
//! ```text
//! — <key name> <base64(key id ‖ Ed25519 signature)>
//! ```
//!
//! where the key id is the first four bytes of
//! `SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ public key)`. A verifier key is
//! written `<name>+<key id, 8 hex>+<base64(0x01 ‖ public key)>`.
//!
//! Parsing is strict: anything that is not exactly this grammar is
//! rejected, and a note that carries a signature by the trusted key that
//! does not verify is rejected even if another line would.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::merkle::Hash;

/// Largest signed note accepted, in bytes.
pub const MAX_NOTE_BYTES: usize = 16 * 1024;

/// Most signature lines accepted in one note.
pub const MAX_SIGNATURES: usize = 100;

/// The signature type byte of Ed25519 in key ids and verifier keys.
const ALG_ED25519: u8 = 0x01;

/// Length of a key id.
pub const KEY_ID_LEN: usize = 4;

/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// The signature line prefix: U+2014 EM DASH and a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// Why a note or key could not be produced, parsed or verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The note is longer than [`MAX_NOTE_BYTES`].
    #[error("the note is longer than {MAX_NOTE_BYTES} bytes")]
    TooLong,
    /// The note does not follow the signed-note grammar.
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    /// The checkpoint body does not follow the tlog-checkpoint grammar.
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(&'static str),
    /// A key name is empty or holds a space or `+`.
    #[error("invalid key name `{0}`")]
    InvalidKeyName(String),
    /// A verifier key text is malformed or inconsistent.
    #[error("invalid verifier key: {0}")]
    InvalidKey(&'static str),
    /// No signature line is by the trusted key.
    #[error("the note carries no signature by key `{0}`")]
    Unverified(String),
    /// A signature line by the trusted key does not verify.
    #[error("the signature by key `{0}` does not verify")]
    BadSignature(String),
    /// The signer failed.
    #[error("signing failed: {0}")]
    Signer(String),
}

/// A signed checkpoint's content: the state of a log at one size.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Checkpoint {
    /// The log's origin line (its unique name).
    pub origin: String,
    /// The number of entries.
    pub size: u64,
    /// The RFC 9162 root hash of the first `size` entries.
    pub root: Hash,
}

impl Checkpoint {
    /// The checkpoint body: origin, size and base64 root, each ending in
    /// a newline.
    ///
    /// # Errors
    ///
    /// [`NoteError::MalformedCheckpoint`] if the origin is empty or holds
    /// a control character.
    pub fn body(&self) -> Result<String, NoteError> {
        check_origin(&self.origin)?;
        Ok(format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        ))
    }

    /// Parses a checkpoint body (the text of a note, before the blank
    /// line). Extension lines after the root are allowed by the
    /// specification and ignored.
    ///
    /// # Errors
    ///
    /// [`NoteError::MalformedCheckpoint`] if the body does not follow the
    /// grammar: a missing line, a size with a sign, leading zeros or more
    /// than 64 bits, a root that is not canonical base64 of 32 bytes, or
    /// an empty extension line.
    pub fn parse_body(body: &str) -> Result<Self, NoteError> {
        let rest = body
            .strip_suffix('\n')
            .ok_or(NoteError::MalformedCheckpoint(
                "the body does not end in a newline",
            ))?;
        let mut lines = rest.split('\n');
        let origin = lines
            .next()
            .ok_or(NoteError::MalformedCheckpoint("missing origin"))?;
        check_origin(origin)?;
        let size = parse_decimal(
            lines
                .next()
                .ok_or(NoteError::MalformedCheckpoint("missing tree size"))?,
        )
        .ok_or(NoteError::MalformedCheckpoint(
            "the tree size is not a canonical decimal",
        ))?;
        let root = decode_hash(
            lines
                .next()
                .ok_or(NoteError::MalformedCheckpoint("missing root hash"))?,
        )
        .ok_or(NoteError::MalformedCheckpoint(
            "the root hash is not base64 of 32 bytes",
        ))?;
        for ext in lines {
            if ext.is_empty() {
                return Err(NoteError::MalformedCheckpoint("empty extension line"));
            }
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

fn check_origin(origin: &str) -> Result<(), NoteError> {
    if origin.is_empty() {
        return Err(NoteError::MalformedCheckpoint("empty origin"));
    }
    if origin.chars().any(char::is_control) {
        return Err(NoteError::MalformedCheckpoint(
            "the origin holds a control character",
        ));
    }
    Ok(())
}

/// Parses a canonical unsigned decimal: ASCII digits only, no leading
/// zero unless the number is zero, fits in `u64`.
#[must_use]
pub fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    s.parse().ok()
}

/// Decodes canonical standard base64 of exactly 32 bytes.
#[must_use]
pub fn decode_hash(s: &str) -> Option<Hash> {
    if s.len() != 44 {
        return None;
    }
    let bytes = B64.decode(s).ok()?;
    let hash: Hash = bytes.as_slice().try_into().ok()?;
    // The standard engine rejects non-zero trailing bits, so decoding is
    // canonical; check anyway.
    (B64.encode(hash) == s).then_some(hash)
}

/// Encodes a hash in standard base64 (as in checkpoints and proofs).
#[must_use]
pub fn encode_hash(hash: &Hash) -> String {
    B64.encode(hash)
}

/// Whether `name` is a valid key name: non-empty, no Unicode whitespace,
/// no `+`.
#[must_use]
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// The key id of an Ed25519 key: the first four bytes of
/// `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)`.
#[must_use]
pub fn key_id(name: &str, public_key: &[u8; 32]) -> [u8; KEY_ID_LEN] {
    let mut input = Vec::with_capacity(name.len() + 2 + public_key.len());
    input.extend_from_slice(name.as_bytes());
    input.push(b'\n');
    input.push(ALG_ED25519);
    input.extend_from_slice(public_key);
    let d = digest(&SHA256, &input);
    let mut id = [0u8; KEY_ID_LEN];
    for (o, b) in id.iter_mut().zip(d.as_ref()) {
        *o = *b;
    }
    id
}

/// A trusted Ed25519 note verifier key.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct VerifierKey {
    name: String,
    id: [u8; KEY_ID_LEN],
    public_key: [u8; 32],
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

impl VerifierKey {
    /// The verifier key of `public_key` under `name`.
    ///
    /// # Errors
    ///
    /// [`NoteError::InvalidKeyName`] if the name is not a valid key name.
    pub fn new(name: &str, public_key: [u8; 32]) -> Result<Self, NoteError> {
        if !is_valid_key_name(name) {
            return Err(NoteError::InvalidKeyName(name.to_owned()));
        }
        Ok(Self {
            name: name.to_owned(),
            id: key_id(name, &public_key),
            public_key,
        })
    }

    /// Parses `<name>+<8 hex key id>+<base64(0x01 ‖ public key)>`.
    ///
    /// # Errors
    ///
    /// [`NoteError::InvalidKey`] or [`NoteError::InvalidKeyName`] if the
    /// text is malformed, the key type is not Ed25519, or the key id does
    /// not match the name and key.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let text = text.trim_end_matches(['\n', '\r']);
        // The name holds no `+`; the base64 key may.
        let mut parts = text.splitn(3, '+');
        let name = parts.next().ok_or(NoteError::InvalidKey("missing name"))?;
        let hex = parts
            .next()
            .ok_or(NoteError::InvalidKey("missing key id"))?;
        let b64 = parts.next().ok_or(NoteError::InvalidKey("missing key"))?;
        if !is_valid_key_name(name) {
            return Err(NoteError::InvalidKeyName(name.to_owned()));
        }
        if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(NoteError::InvalidKey("the key id is not 8 hex digits"));
        }
        let id = u32::from_str_radix(hex, 16)
            .map_err(|_| NoteError::InvalidKey("the key id is not 8 hex digits"))?
            .to_be_bytes();
        let raw = B64
            .decode(b64)
            .map_err(|_| NoteError::InvalidKey("the key is not base64"))?;
        let (alg, key) = raw
            .split_first()
            .ok_or(NoteError::InvalidKey("the key is empty"))?;
        if *alg != ALG_ED25519 {
            return Err(NoteError::InvalidKey("the key type is not Ed25519"));
        }
        let public_key: [u8; 32] = key
            .try_into()
            .map_err(|_| NoteError::InvalidKey("an Ed25519 key is 32 bytes"))?;
        let vk = Self::new(name, public_key)?;
        if vk.id != id {
            return Err(NoteError::InvalidKey(
                "the key id does not match the name and key",
            ));
        }
        Ok(vk)
    }

    /// The key name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    #[must_use]
    pub fn key_id(&self) -> [u8; KEY_ID_LEN] {
        self.id
    }

    /// The Ed25519 public key.
    #[must_use]
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// Whether `signature` is this key's signature of `msg`.
    #[must_use]
    pub fn verify(&self, msg: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.public_key)
            .verify(msg, signature)
            .is_ok()
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = Vec::with_capacity(33);
        raw.push(ALG_ED25519);
        raw.extend_from_slice(&self.public_key);
        write!(
            f,
            "{}+{:08x}+{}",
            self.name,
            u32::from_be_bytes(self.id),
            B64.encode(raw)
        )
    }
}

impl FromStr for VerifierKey {
    type Err = NoteError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Signs checkpoints. Implemented over the key provider (HSM or local
/// key); [`Ed25519Signer`] is an in-process implementation.
pub trait CheckpointSigner: Send + Sync + fmt::Debug {
    /// The key name (for the log, usually its origin).
    fn key_name(&self) -> &str;
    /// The Ed25519 public key.
    fn public_key(&self) -> [u8; 32];
    /// An Ed25519 signature of `msg`.
    ///
    /// # Errors
    ///
    /// A human-readable reason, never key material.
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], String>;
}

/// The verifier key of a signer.
///
/// # Errors
///
/// [`NoteError::InvalidKeyName`] if the signer's key name is invalid.
pub fn signer_verifier_key(signer: &dyn CheckpointSigner) -> Result<VerifierKey, NoteError> {
    VerifierKey::new(signer.key_name(), signer.public_key())
}

/// An in-process Ed25519 signer (tests, benchmarks, and deployments
/// without a key provider).
pub struct Ed25519Signer {
    name: String,
    pair: Ed25519KeyPair,
    public_key: [u8; 32],
}

impl fmt::Debug for Ed25519Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ed25519Signer")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Ed25519Signer {
    /// A signer over an existing key pair.
    ///
    /// # Errors
    ///
    /// [`NoteError::InvalidKeyName`] if the name is invalid.
    pub fn new(name: &str, pair: Ed25519KeyPair) -> Result<Self, NoteError> {
        if !is_valid_key_name(name) {
            return Err(NoteError::InvalidKeyName(name.to_owned()));
        }
        let public_key: [u8; 32] = pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| NoteError::InvalidKey("an Ed25519 key is 32 bytes"))?;
        Ok(Self {
            name: name.to_owned(),
            pair,
            public_key,
        })
    }

    /// A signer with a fresh random key.
    ///
    /// # Errors
    ///
    /// [`NoteError::InvalidKeyName`] if the name is invalid,
    /// [`NoteError::Signer`] if no key could be generated.
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        let pair = Ed25519KeyPair::generate()
            .map_err(|_| NoteError::Signer("key generation failed".to_owned()))?;
        Self::new(name, pair)
    }

    /// A signer from a 32-byte Ed25519 seed (the private key).
    ///
    /// # Errors
    ///
    /// [`NoteError::InvalidKeyName`] if the name is invalid,
    /// [`NoteError::InvalidKey`] if the seed is rejected.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, NoteError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|_| NoteError::InvalidKey("the seed was rejected"))?;
        Self::new(name, pair)
    }

    /// The verifier key.
    #[must_use]
    pub fn verifier_key(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            id: key_id(&self.name, &self.public_key),
            public_key: self.public_key,
        }
    }
}

impl CheckpointSigner for Ed25519Signer {
    fn key_name(&self) -> &str {
        &self.name
    }
    fn public_key(&self) -> [u8; 32] {
        self.public_key
    }
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], String> {
        self.pair
            .sign(msg)
            .as_ref()
            .try_into()
            .map_err(|_| "unexpected signature length".to_owned())
    }
}

/// Checks that `text` is acceptable note text: UTF-8 (guaranteed by
/// `&str`) without control characters other than newline.
fn check_text(text: &str) -> Result<(), NoteError> {
    if text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::Malformed("control character in note"));
    }
    Ok(())
}

/// Signs `body` (note text ending in a newline, with no blank line) as a
/// signed note with one signature.
///
/// # Errors
///
/// [`NoteError::Malformed`] if the body is not valid note text,
/// [`NoteError::Signer`] if the signer fails, [`NoteError::TooLong`] if
/// the note would be longer than [`MAX_NOTE_BYTES`].
pub fn sign_note(body: &str, signer: &dyn CheckpointSigner) -> Result<String, NoteError> {
    if body.is_empty() || !body.ends_with('\n') {
        return Err(NoteError::Malformed("the text does not end in a newline"));
    }
    if body.starts_with('\n') || body.contains("\n\n") {
        return Err(NoteError::Malformed("the text holds a blank line"));
    }
    check_text(body)?;
    let name = signer.key_name();
    if !is_valid_key_name(name) {
        return Err(NoteError::InvalidKeyName(name.to_owned()));
    }
    let id = key_id(name, &signer.public_key());
    let sig = signer.sign(body.as_bytes()).map_err(NoteError::Signer)?;
    let mut blob = Vec::with_capacity(KEY_ID_LEN + SIGNATURE_LEN);
    blob.extend_from_slice(&id);
    blob.extend_from_slice(&sig);
    let note = format!("{body}\n{SIG_PREFIX}{name} {}\n", B64.encode(blob));
    if note.len() > MAX_NOTE_BYTES {
        return Err(NoteError::TooLong);
    }
    Ok(note)
}

/// One parsed signature line.
struct SigLine<'a> {
    name: &'a str,
    id: [u8; KEY_ID_LEN],
    sig: Vec<u8>,
}

/// Splits a note into its text and parsed signature lines, checking the
/// grammar only.
fn split_note(note: &str) -> Result<(&str, Vec<SigLine<'_>>), NoteError> {
    if note.len() > MAX_NOTE_BYTES {
        return Err(NoteError::TooLong);
    }
    check_text(note)?;
    let split = note
        .rfind("\n\n")
        .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
    let text = note
        .get(..=split)
        .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
    let sigs = note
        .get(split + 2..)
        .ok_or(NoteError::Malformed("no signatures"))?;
    if text.starts_with('\n') {
        return Err(NoteError::Malformed("the text starts with a blank line"));
    }
    let sigs = sigs.strip_suffix('\n').ok_or(NoteError::Malformed(
        "the signatures do not end in a newline",
    ))?;
    let mut out = Vec::new();
    for line in sigs.split('\n') {
        if out.len() >= MAX_SIGNATURES {
            return Err(NoteError::Malformed("too many signatures"));
        }
        let rest = line.strip_prefix(SIG_PREFIX).ok_or(NoteError::Malformed(
            "a signature line does not start with an em dash",
        ))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or(NoteError::Malformed("a signature line has no signature"))?;
        if !is_valid_key_name(name) {
            return Err(NoteError::Malformed("invalid key name in a signature line"));
        }
        let blob = B64
            .decode(b64)
            .map_err(|_| NoteError::Malformed("a signature is not base64"))?;
        if blob.len() <= KEY_ID_LEN {
            return Err(NoteError::Malformed("a signature is too short"));
        }
        let (id, sig) = blob.split_at(KEY_ID_LEN);
        let id: [u8; KEY_ID_LEN] = id
            .try_into()
            .map_err(|_| NoteError::Malformed("a signature is too short"))?;
        out.push(SigLine {
            name,
            id,
            sig: sig.to_vec(),
        });
    }
    Ok((text, out))
}

/// Verifies a signed note against trusted keys and returns its text and
/// the key that verified it.
///
/// Signatures by unknown keys are ignored; a signature by a trusted key
/// (same name and key id) that does not verify rejects the note.
///
/// # Errors
///
/// [`NoteError::TooLong`], [`NoteError::Malformed`],
/// [`NoteError::BadSignature`], or [`NoteError::Unverified`] if no
/// signature is by a trusted key.
pub fn open_note<'n, 'k>(
    note: &'n str,
    keys: &'k [VerifierKey],
) -> Result<(&'n str, &'k VerifierKey), NoteError> {
    let (text, sigs) = split_note(note)?;
    let mut verified: Option<&VerifierKey> = None;
    for line in &sigs {
        let Some(key) = keys.iter().find(|k| k.name == line.name && k.id == line.id) else {
            continue;
        };
        if line.sig.len() != SIGNATURE_LEN || !key.verify(text.as_bytes(), &line.sig) {
            return Err(NoteError::BadSignature(key.name.clone()));
        }
        verified.get_or_insert(key);
    }
    match verified {
        Some(key) => Ok((text, key)),
        None => Err(NoteError::Unverified(
            keys.first().map(|k| k.name.clone()).unwrap_or_default(),
        )),
    }
}

/// Signs a checkpoint, and checks the signature before returning it (a
/// signer whose key does not match its public key is caught here).
///
/// # Errors
///
/// [`NoteError::MalformedCheckpoint`] for an invalid origin,
/// [`NoteError::Signer`] if the signer fails or its signature does not
/// verify, [`NoteError::InvalidKeyName`] for an invalid key name.
pub fn sign_checkpoint(
    checkpoint: &Checkpoint,
    signer: &dyn CheckpointSigner,
) -> Result<String, NoteError> {
    let note = sign_note(&checkpoint.body()?, signer)?;
    let key = signer_verifier_key(signer)?;
    match open_checkpoint(&note, &key) {
        Ok(_) => Ok(note),
        Err(e) => Err(NoteError::Signer(format!(
            "the signer's signature does not verify under its own key: {e}"
        ))),
    }
}

/// Verifies a signed checkpoint with `key` and parses it.
///
/// # Errors
///
/// Any [`NoteError`] of [`open_note`] or [`Checkpoint::parse_body`].
pub fn open_checkpoint(note: &str, key: &VerifierKey) -> Result<Checkpoint, NoteError> {
    open_checkpoint_any(note, std::slice::from_ref(key))
}

/// Verifies a signed checkpoint with any of `keys` and parses it.
///
/// # Errors
///
/// Any [`NoteError`] of [`open_note`] or [`Checkpoint::parse_body`].
pub fn open_checkpoint_any(note: &str, keys: &[VerifierKey]) -> Result<Checkpoint, NoteError> {
    let (text, _) = open_note(note, keys)?;
    Checkpoint::parse_body(text)
}

/// Parses a signed checkpoint without checking any signature (the
/// grammar of the note and the body is still checked). Use only where the
/// signature is checked later or does not matter.
///
/// # Errors
///
/// [`NoteError::TooLong`], [`NoteError::Malformed`] or
/// [`NoteError::MalformedCheckpoint`].
pub fn parse_checkpoint_unverified(note: &str) -> Result<Checkpoint, NoteError> {
    let (text, _) = split_note(note)?;
    Checkpoint::parse_body(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_is_canonical() {
        assert_eq!(parse_decimal("0"), Some(0));
        assert_eq!(parse_decimal("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            "00",
            "01",
            "+1",
            "-1",
            " 1",
            "1 ",
            "18446744073709551616",
            "1e3",
        ] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn hash_base64_is_canonical() {
        let h = [7u8; 32];
        let s = encode_hash(&h);
        assert_eq!(decode_hash(&s), Some(h));
        // Non-zero trailing bits in the last character.
        let mut bad = s.clone();
        bad.replace_range(42..43, "d");
        assert_eq!(decode_hash(&bad), None);
        assert_eq!(decode_hash(&s[..43]), None);
    }
}
