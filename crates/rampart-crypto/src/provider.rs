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
/// a wrapped key cannot be replayed under another purpose or version, and
/// must record in the wrapped bytes which root-key version wrapped them, so
/// that during a root rotation both the old and the new root key unwrap.
///
/// A provider also holds one Ed25519 signing key (audit checkpoints), which
/// never leaves it either.
pub trait KeyProvider: Send + Sync + fmt::Debug {
    /// Provider kind, e.g. `local` or `pkcs11`.
    fn kind(&self) -> &'static str;

    /// Wraps (encrypts) `dek` for `purpose` version `version` with the
    /// current root key version.
    ///
    /// # Errors
    /// Provider-specific; never includes key material.
    fn wrap_data_key(&self, purpose: Purpose, version: u32, dek: &DataKey) -> Result<Vec<u8>>;

    /// Unwraps a key produced by [`KeyProvider::wrap_data_key`] with the same
    /// `purpose` and `version`, with whichever held root key version wrapped it.
    ///
    /// # Errors
    /// [`CryptoError::Unwrap`] on a wrong or destroyed root key, a tampered
    /// blob or a mismatched purpose or version.
    fn unwrap_data_key(&self, purpose: Purpose, version: u32, wrapped: &[u8]) -> Result<DataKey>;

    /// Root key version that wrapped `wrapped` (read from its header), without
    /// unwrapping it.
    ///
    /// # Errors
    /// [`CryptoError::Malformed`] if the blob is not this provider's format.
    fn wrapped_root_version(&self, wrapped: &[u8]) -> Result<u32>;

    /// Version of the root key new wraps use.
    fn root_key_version(&self) -> u32;

    /// Every root key version the provider holds, ascending.
    fn root_key_versions(&self) -> Vec<u32>;

    /// Creates a new root key version (current + 1) and makes it the one new
    /// wraps use. Earlier versions keep unwrapping until
    /// [`KeyProvider::destroy_root_versions_below`]. Durable before it
    /// returns (a crash afterwards leaves both versions usable).
    ///
    /// # Errors
    /// Provider-specific.
    fn rotate_root(&self) -> Result<u32>;

    /// Destroys every root key version below `version` (irreversible: data
    /// keys still wrapped by them become unrecoverable). Returns how many
    /// versions were destroyed. `version` must not exceed the current one.
    ///
    /// # Errors
    /// Provider-specific; [`CryptoError::InvalidRootVersion`] if `version`
    /// is above the current version.
    fn destroy_root_versions_below(&self, version: u32) -> Result<usize>;

    /// The Ed25519 public key of the provider's signing key (32 bytes).
    ///
    /// # Errors
    /// Provider-specific.
    fn signing_public_key(&self) -> Result<[u8; 32]>;

    /// Signs `message` with the provider's Ed25519 signing key (pure
    /// Ed25519, RFC 8032).
    ///
    /// # Errors
    /// Provider-specific.
    fn sign(&self, message: &[u8]) -> Result<[u8; 64]>;

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
