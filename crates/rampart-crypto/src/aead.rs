//! The single AES-256-GCM code path: every envelope, wrapped data key and
//! sealed root key goes through [`Aes256GcmKey`], and so do the Wycheproof
//! tests.

use std::fmt;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use zeroize::Zeroizing;

use crate::error::{CryptoError, Result};

/// Key length of AES-256 in bytes.
pub const KEY_LEN: usize = 32;
/// Nonce length in bytes (96 bits).
pub const NONCE_LEN: usize = 12;
/// Authentication tag length in bytes (128 bits).
pub const TAG_LEN: usize = 16;

/// Fills `buf` from the system CSPRNG.
///
/// # Errors
/// [`CryptoError::Rng`] if the generator fails.
pub fn fill_random(buf: &mut [u8]) -> Result<()> {
    aws_lc_rs::rand::fill(buf).map_err(|_| CryptoError::Rng)
}

/// A fresh random 96-bit nonce.
///
/// # Errors
/// [`CryptoError::Rng`] if the generator fails.
pub fn random_nonce() -> Result<[u8; NONCE_LEN]> {
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce)?;
    Ok(nonce)
}

/// 32 fresh random bytes suitable as an AES-256 key.
///
/// # Errors
/// [`CryptoError::Rng`] if the generator fails.
pub fn random_key() -> Result<Zeroizing<[u8; KEY_LEN]>> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    fill_random(key.as_mut_slice())?;
    Ok(key)
}

/// An AES-256-GCM key ready for use. aws-lc cleanses the expanded key when it
/// is dropped; Debug never shows it.
pub struct Aes256GcmKey {
    key: LessSafeKey,
}

impl fmt::Debug for Aes256GcmKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Aes256GcmKey(**REDACTED**)")
    }
}

impl Aes256GcmKey {
    /// Builds a key from exactly 32 bytes.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKeyLength`] for any other length.
    pub fn new(key: &[u8]) -> Result<Self> {
        let unbound = UnboundKey::new(&AES_256_GCM, key)
            .map_err(|_| CryptoError::InvalidKeyLength(key.len()))?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
        })
    }

    /// Encrypts `plaintext` under `nonce` and `aad`, appending
    /// `ciphertext ‖ tag` to `out`.
    ///
    /// The caller guarantees the nonce is never reused with this key; inside
    /// Rampart it always comes from [`random_nonce`].
    ///
    /// # Errors
    /// [`CryptoError::Unreachable`] if the primitive refuses (input too long).
    pub fn seal_append(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let start = out.len();
        out.reserve(plaintext.len() + TAG_LEN);
        out.extend_from_slice(plaintext);
        let body = out.get_mut(start..).ok_or(CryptoError::Unreachable(
            "seal buffer shorter than its start",
        ))?;
        let tag = self
            .key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), body)
            .map_err(|_| CryptoError::Unreachable("aes-gcm seal refused its input"))?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Decrypts `ciphertext ‖ tag` under `nonce` and `aad`.
    ///
    /// # Errors
    /// [`CryptoError::Decrypt`] if the input is shorter than a tag or does
    /// not authenticate.
    pub fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        ciphertext_and_tag: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        if ciphertext_and_tag.len() < TAG_LEN {
            return Err(CryptoError::Decrypt);
        }
        let mut buf = Zeroizing::new(ciphertext_and_tag.to_vec());
        let len = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                buf.as_mut_slice(),
            )
            .map_err(|_| CryptoError::Decrypt)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}
