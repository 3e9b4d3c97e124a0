//! The one error type of this crate.
//!
//! Messages are lowercase, carry no key material and no plaintext, and say
//! what to do where an operator can act.

use std::path::PathBuf;

use crate::purpose::Purpose;

/// Every failure of key management or envelope encryption.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The input is not a well-formed envelope (too short, bad magic, …).
    #[error("ciphertext is malformed: {0}")]
    Malformed(&'static str),
    /// The envelope declares a format version this build cannot read.
    #[error("unsupported ciphertext format version {0}")]
    UnsupportedVersion(u8),
    /// The envelope names a purpose id this build does not know.
    #[error("unknown key purpose id {0}")]
    UnknownPurpose(u8),
    /// The envelope was written for another purpose than the caller expects.
    #[error("ciphertext belongs to purpose `{found}`, expected `{expected}`")]
    WrongPurpose {
        /// Purpose the caller asked to decrypt under.
        expected: Purpose,
        /// Purpose recorded in the envelope header.
        found: Purpose,
    },
    /// No data key of this purpose exists yet.
    #[error("no data key for purpose `{0}`; create one with a rotation first")]
    NoDataKey(Purpose),
    /// The envelope names a data-key version the keyring does not hold.
    #[error("no data key for purpose `{purpose}` version {version}")]
    UnknownKeyVersion {
        /// Purpose of the missing key.
        purpose: Purpose,
        /// Version of the missing key.
        version: u32,
    },
    /// The envelope names a data-key version retired after a completed rewrap.
    #[error("data key `{purpose}` version {version} is retired (minimum version {min_version}); the record was not rewrapped")]
    RetiredKeyVersion {
        /// Purpose of the key.
        purpose: Purpose,
        /// Version named by the ciphertext.
        version: u32,
        /// Oldest version still accepted.
        min_version: u32,
    },
    /// Retiring would remove the current version, or go backwards.
    #[error("cannot set minimum version of `{purpose}` to {min_version}: it must be between the present minimum and the current version {current}")]
    InvalidRetirement {
        /// Purpose of the keys.
        purpose: Purpose,
        /// Requested minimum version.
        min_version: u32,
        /// Current (newest) version, 0 if none.
        current: u32,
    },
    /// Authentication failed: wrong key, tampered bytes or another record's context.
    #[error("decryption failed: ciphertext, key or record context do not match")]
    Decrypt,
    /// A data key reached its hard encryption limit and refuses further use.
    #[error("data key `{purpose}` version {version} reached its encryption limit; rotate it")]
    KeyExhausted {
        /// Purpose of the exhausted key.
        purpose: Purpose,
        /// Version of the exhausted key.
        version: u32,
    },
    /// A wrapped data key could not be unwrapped by the key provider.
    #[error("cannot unwrap data key `{purpose}` version {version}: wrong root key or corrupted wrapped key")]
    Unwrap {
        /// Purpose of the wrapped key.
        purpose: Purpose,
        /// Version of the wrapped key.
        version: u32,
    },
    /// The same purpose and version was loaded twice with different key bytes.
    #[error(
        "data key `{purpose}` version {version} is already loaded with different key material"
    )]
    ConflictingDataKey {
        /// Purpose of the key.
        purpose: Purpose,
        /// Version of the key.
        version: u32,
    },
    /// The passphrase does not open the sealed root key file.
    #[error("wrong passphrase for sealed root key file `{}`", path.display())]
    WrongPassphrase {
        /// Root key file.
        path: PathBuf,
    },
    /// The root key file is sealed but no passphrase was supplied.
    #[error("root key file `{}` is sealed with a passphrase; supply the passphrase", path.display())]
    PassphraseRequired {
        /// Root key file.
        path: PathBuf,
    },
    /// A passphrase was supplied but the root key file is not sealed.
    #[error("root key file `{}` is not sealed with a passphrase; remove the passphrase setting or re-seal the file", path.display())]
    NotSealed {
        /// Root key file.
        path: PathBuf,
    },
    /// A file or directory holding key material is readable by others.
    #[error("`{}` has insecure permissions {mode:04o}; run `chmod {fix} {}`", path.display(), path.display())]
    InsecurePermissions {
        /// Offending path.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// The mode to set, as for chmod.
        fix: &'static str,
    },
    /// The root key file does not exist.
    #[error("root key file `{}` is missing; restore it from backup, or initialise a new key hierarchy (existing encrypted data will be unreadable)", path.display())]
    MissingRootKey {
        /// Expected root key file.
        path: PathBuf,
    },
    /// Refusing to overwrite an existing root key file.
    #[error("root key file `{}` already exists; refusing to overwrite it", path.display())]
    RootKeyExists {
        /// Existing root key file.
        path: PathBuf,
    },
    /// The root key file exists but cannot be parsed.
    #[error("root key file `{}` is malformed: {reason}", path.display())]
    MalformedRootKey {
        /// Root key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The path exists but is not of the expected kind (file or directory).
    #[error("`{}` is not a {expected}", path.display())]
    WrongFileType {
        /// Offending path.
        path: PathBuf,
        /// "regular file" or "directory".
        expected: &'static str,
    },
    /// An I/O operation on a key file or the data directory failed.
    #[error("i/o error on `{}`: {source}", path.display())]
    Io {
        /// Path being accessed.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The passphrase key derivation failed or its parameters are invalid.
    #[error("passphrase key derivation failed: {0}")]
    Kdf(String),
    /// A key of the wrong length was supplied.
    #[error("invalid key length {0}, expected 32 bytes")]
    InvalidKeyLength(usize),
    /// The system random number generator failed.
    #[error("system random number generator failed")]
    Rng,
    /// A key provider (HSM, token) failed. `message` names the operation and
    /// the provider's reason, never key material.
    #[error("{provider} key provider: {message}")]
    Provider {
        /// Provider kind, e.g. `pkcs11`.
        provider: &'static str,
        /// What failed and what to do about it.
        message: String,
    },
    /// A root key version outside the held range was requested.
    #[error("root key version {requested} is invalid: the current root key version is {current}")]
    InvalidRootVersion {
        /// Requested version.
        requested: u32,
        /// Current version.
        current: u32,
    },
    /// The account's key was shredded: its encrypted fields are unrecoverable.
    #[error("the account's key was shredded; its encrypted fields are unrecoverable")]
    Shredded,
    /// An account-scoped ciphertext was opened without its account key, or a
    /// purpose-scoped one with an account key.
    #[error("ciphertext scope mismatch: {0}")]
    ScopeMismatch(&'static str),
    /// An internal invariant was violated; stands where others would panic.
    #[error("internal error: {0}")]
    Unreachable(&'static str),
}

/// Result alias for this crate.
pub type Result<T, E = CryptoError> = std::result::Result<T, E>;
