//! Data-key purposes: each purpose has its own line of data-key versions.

use std::fmt;

use crate::error::CryptoError;

/// What a data key protects. Each purpose has independent key versions, so
/// rotating or shredding one never touches another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Purpose {
    /// API key secrets (HMAC secrets, Ed25519 seeds of customers).
    ApiSecrets,
    /// TOTP / MFA seeds.
    MfaSeeds,
    /// Sensitive fields of audit records.
    AuditFields,
}

impl Purpose {
    /// Every purpose, in id order.
    pub const ALL: [Purpose; 3] = [Purpose::ApiSecrets, Purpose::MfaSeeds, Purpose::AuditFields];

    /// Stable one-byte id written into ciphertext headers. Never reuse an id.
    #[must_use]
    pub const fn id(self) -> u8 {
        match self {
            Purpose::ApiSecrets => 1,
            Purpose::MfaSeeds => 2,
            Purpose::AuditFields => 3,
        }
    }

    /// Stable name, as used in configuration and on the command line.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Purpose::ApiSecrets => "api-secrets",
            Purpose::MfaSeeds => "mfa-seeds",
            Purpose::AuditFields => "audit-fields",
        }
    }

    /// The purpose with this header id.
    ///
    /// # Errors
    /// [`CryptoError::UnknownPurpose`] for an id no purpose uses.
    pub fn from_id(id: u8) -> Result<Self, CryptoError> {
        Purpose::ALL
            .into_iter()
            .find(|p| p.id() == id)
            .ok_or(CryptoError::UnknownPurpose(id))
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Purpose {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Purpose::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown key purpose `{s}`, expected one of api-secrets, mfa-seeds, audit-fields"))
    }
}
