//! The key-provider abstraction: whatever holds the root key wraps and
//! unwraps data keys, and never hands the root key out.

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::aead::{self, KEY_LEN};
use crate::error::{CryptoError, Result};
use crate::purpose::Purpose;

/// A data-encryption key (DEK): 32 random bytes, zeroized on drop, never
/// printed.
pub struct DataKey(Zeroizing<[u8; KEY_LEN]>);

impl DataKey {
    /// A fresh random data key.
    ///
    /// # Errors
    /// [`CryptoError::Rng`] if the generator fails.
    pub fn generate() -> Result<Self> {
        Ok(Self(aead::random_key()?))
    }

    /// Wraps existing key bytes (e.g. just unwrapped by a provider).
    ///
    /// # Errors
    /// [`CryptoError::InvalidKeyLength`] unless `bytes` is 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let arr: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| CryptoError::InvalidKeyLength(bytes.len()))?;
        Ok(Self(Zeroizing::new(arr)))
    }

    /// The raw key bytes. Only key providers and the keyring should call this.
    #[must_use]
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl ConstantTimeEq for DataKey {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.0.as_slice().ct_eq(other.0.as_slice())
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(**REDACTED**)")
    }
}

/// What a provider reports about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderHealth {
    /// Provider kind, e.g. `local` or `pkcs11`.
    pub kind: &'static str,
    /// Version of the root key currently used for wrapping.
    pub root_key_version: u32,
    /// Whether the provider can wrap and unwrap right now.
    pub healthy: bool,
    /// Human-readable detail, never secret.
    pub detail: String,
}

/// Holds the root key (key-encryption key) and wraps data keys with it.
///
/// Implementations must bind the wrapped bytes to `purpose` and `version` so
/// a wrapped key cannot be replayed under another purpose or version.
pub trait KeyProvider: Send + Sync + fmt::Debug {
    /// Wraps (encrypts) `dek` for `purpose` version `version`.
    ///
    /// # Errors
    /// Provider-specific; never includes key material.
    fn wrap_data_key(&self, purpose: Purpose, version: u32, dek: &DataKey) -> Result<Vec<u8>>;

    /// Unwraps a key produced by [`KeyProvider::wrap_data_key`] with the same
    /// `purpose` and `version`.
    ///
    /// # Errors
    /// [`CryptoError::Unwrap`] on a wrong root key, a tampered blob or a
    /// mismatched purpose or version.
    fn unwrap_data_key(&self, purpose: Purpose, version: u32, wrapped: &[u8]) -> Result<DataKey>;

    /// Version of the root key new wraps use.
    fn root_key_version(&self) -> u32;

    /// Checks that the provider works (a wrap/unwrap round trip).
    fn health(&self) -> ProviderHealth;
}

/// Associated data for wrapping a data key: `"rampart-dek" ‖ purpose id ‖ version (u32 BE)`.
#[must_use]
pub fn dek_aad(purpose: Purpose, version: u32) -> [u8; 16] {
    let mut aad = [0u8; 16];
    let (label, rest) = aad.split_at_mut(11);
    label.copy_from_slice(b"rampart-dek");
    if let Some((p, v)) = rest.split_first_mut() {
        *p = purpose.id();
        v.copy_from_slice(&version.to_be_bytes());
    }
    aad
}
