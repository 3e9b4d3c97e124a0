//! Account keys: the per-account "shred handle" that makes crypto-shredding
//! possible.
//!
//! Each account has a random 32-byte secret, kept by the store. Fields that
//! belong to an account are sealed with a key derived from the purpose's
//! data key *and* that secret:
//!
//! ```text
//! K(account, purpose, v) = HKDF-SHA256(salt = account secret, ikm = DEK(purpose, v),
//!                                      info = "rampart-account-key-v1" ‖ purpose id ‖ v (u32 BE) ‖ account id)
//! ```
//!
//! Rotating and rewrapping work exactly as for purpose-scoped fields (the
//! envelope names the data-key version), while deleting the account secret
//! (shredding) makes every field of that account unrecoverable, even with
//! the root key and every data key. The secret alone reveals nothing: it is
//! useless without the data key, which only the root key unwraps.

use std::fmt;

use aws_lc_rs::hkdf;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::aead::{self, KEY_LEN};
use crate::error::{CryptoError, Result};
use crate::purpose::Purpose;

const INFO_LABEL: &[u8] = b"rampart-account-key-v1";

/// An account's shred handle: its id and its 32-byte secret (zeroized on
/// drop, never printed).
#[derive(Clone)]
pub struct AccountKey {
    account_id: String,
    secret: Zeroizing<[u8; KEY_LEN]>,
}

impl AccountKey {
    /// A fresh random account key for `account_id`.
    ///
    /// # Errors
    /// [`CryptoError::Rng`] if the generator fails.
    pub fn generate(account_id: &str) -> Result<Self> {
        Ok(Self {
            account_id: account_id.to_owned(),
            secret: aead::random_key()?,
        })
    }

    /// An account key from stored bytes.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKeyLength`] unless `secret` is 32 bytes.
    pub fn from_bytes(account_id: &str, secret: &[u8]) -> Result<Self> {
        let arr: [u8; KEY_LEN] = secret
            .try_into()
            .map_err(|_| CryptoError::InvalidKeyLength(secret.len()))?;
        Ok(Self {
            account_id: account_id.to_owned(),
            secret: Zeroizing::new(arr),
        })
    }

    /// The account this key belongs to.
    #[must_use]
    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    /// The secret bytes, for persisting in the store only.
    #[must_use]
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.secret
    }

    /// Whether two keys have the same secret (constant time) and account.
    #[must_use]
    pub fn same_as(&self, other: &Self) -> bool {
        self.account_id == other.account_id
            && bool::from(self.secret.as_slice().ct_eq(other.secret.as_slice()))
    }

    /// Derives the field key of this account for `purpose` version `version`
    /// from that version's data key.
    pub(crate) fn derive(
        &self,
        purpose: Purpose,
        version: u32,
        dek: &[u8; KEY_LEN],
    ) -> Result<Zeroizing<[u8; KEY_LEN]>> {
        let version_be = version.to_be_bytes();
        let id_len = (self.account_id.len() as u64).to_be_bytes();
        let purpose_id = [purpose.id()];
        let info: [&[u8]; 5] = [
            INFO_LABEL,
            &purpose_id,
            &version_be,
            &id_len,
            self.account_id.as_bytes(),
        ];
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, self.secret.as_slice()).extract(dek);
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        prk.expand(&info, hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(out.as_mut_slice()))
            .map_err(|_| CryptoError::Unreachable("HKDF expand of 32 bytes failed"))?;
        Ok(out)
    }
}

impl fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountKey")
            .field("account_id", &self.account_id)
            .field("secret", &"**REDACTED**")
            .finish()
    }
}
