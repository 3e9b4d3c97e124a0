//! The `local` key provider: a root key in a file under the data directory,
//! optionally sealed with a passphrase.
//!
//! Root key file `root.key` (mode 0600, in a data directory without world
//! permission bits):
//!
//! ```text
//! "RMPK" ‖ format 1 ‖ kind ‖ root key version (u32 BE) ‖ body
//! kind 0 (plain):  body = root key (32 bytes)
//! kind 1 (sealed): body = argon2id m_cost KiB ‖ t_cost ‖ p_cost (u32 BE each)
//!                         ‖ salt (16) ‖ nonce (12) ‖ AES-256-GCM(KEK, root key) ‖ tag
//! ```
//!
//! For a sealed file the KEK is `argon2id(passphrase, salt)` with the stored
//! parameters, and the associated data is every byte before the nonce, so
//! the parameters cannot be downgraded without failing authentication.
//!
//! Wrapped data keys: `format 1 ‖ root key version (u32 BE) ‖ nonce (12) ‖
//! AES-256-GCM(root key, DEK) ‖ tag`, with associated data
//! [`dek_aad`] (`"rampart-dek" ‖ purpose ‖ version`).

use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::aead::{self, Aes256GcmKey, KEY_LEN, NONCE_LEN, TAG_LEN};
use crate::error::{CryptoError, Result};
use crate::provider::{dek_aad, DataKey, KeyProvider, ProviderHealth};
use crate::purpose::Purpose;

/// File name of the root key inside the data directory.
pub const ROOT_KEY_FILE: &str = "root.key";

const FILE_MAGIC: [u8; 4] = *b"RMPK";
const FILE_FORMAT_V1: u8 = 1;
const KIND_PLAIN: u8 = 0;
const KIND_SEALED: u8 = 1;
const FILE_HEADER_LEN: usize = 4 + 1 + 1 + 4;
const SALT_LEN: usize = 16;
const PLAIN_FILE_LEN: usize = FILE_HEADER_LEN + KEY_LEN;
const SEALED_AAD_LEN: usize = FILE_HEADER_LEN + 12 + SALT_LEN;
const SEALED_FILE_LEN: usize = SEALED_AAD_LEN + NONCE_LEN + KEY_LEN + TAG_LEN;
/// Largest file this provider will read; anything bigger is not a root key.
const MAX_FILE_LEN: u64 = 4096;

const WRAP_FORMAT_V1: u8 = 1;
/// Length of a wrapped data key produced by this provider.
pub const WRAPPED_LEN: usize = 1 + 4 + NONCE_LEN + KEY_LEN + TAG_LEN;

/// Version of the root key this build creates. `rotate-root` will add more.
const ROOT_KEY_VERSION: u32 = 1;

/// argon2id cost parameters for sealing the root key with a passphrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory cost in KiB.
    pub m_cost_kib: u32,
    /// Number of passes.
    pub t_cost: u32,
    /// Degree of parallelism (lanes).
    pub p_cost: u32,
}

impl KdfParams {
    /// Upper bounds accepted when reading a file, so a crafted file cannot
    /// make startup allocate unbounded memory or spin for hours.
    const MAX_M_COST_KIB: u32 = 4 * 1024 * 1024;
    const MAX_T_COST: u32 = 64;
    const MAX_P_COST: u32 = 64;

    fn check_bounds(self) -> Result<Self> {
        if self.m_cost_kib > Self::MAX_M_COST_KIB
            || self.t_cost > Self::MAX_T_COST
            || self.p_cost > Self::MAX_P_COST
        {
            return Err(CryptoError::Kdf(
                "argon2id parameters exceed the accepted maximum".to_owned(),
            ));
        }
        Ok(self)
    }

    fn derive_kek(
        self,
        passphrase: &SecretString,
        salt: &[u8],
    ) -> Result<Zeroizing<[u8; KEY_LEN]>> {
        let params = argon2::Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(KEY_LEN))
            .map_err(|e| CryptoError::Kdf(e.to_string()))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut kek = Zeroizing::new([0u8; KEY_LEN]);
        argon
            .hash_password_into(
                passphrase.expose_secret().as_bytes(),
                salt,
                kek.as_mut_slice(),
            )
            .map_err(|e| CryptoError::Kdf(e.to_string()))?;
        Ok(kek)
    }
}

impl Default for KdfParams {
    /// RFC 9106 second recommended option: 64 MiB, 3 passes, 4 lanes.
    fn default() -> Self {
        Self {
            m_cost_kib: 64 * 1024,
            t_cost: 3,
            p_cost: 4,
        }
    }
}

/// Root key held in a file under the data directory.
pub struct LocalKeyProvider {
    root: Aes256GcmKey,
    path: PathBuf,
    sealed: bool,
}

impl fmt::Debug for LocalKeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKeyProvider")
            .field("path", &self.path)
            .field("sealed", &self.sealed)
            .field("root", &"**REDACTED**")
            .finish()
    }
}

/// Path of the root key file for `data_dir`.
#[must_use]
pub fn root_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(ROOT_KEY_FILE)
}

impl LocalKeyProvider {
    /// Creates a new root key file in `data_dir` (created with mode 0700 if
    /// missing), sealed with `passphrase` if one is given.
    ///
    /// # Errors
    /// [`CryptoError::RootKeyExists`] if a root key file is already there;
    /// [`CryptoError::InsecurePermissions`] if the data directory has world
    /// permission bits; I/O, RNG and KDF errors.
    pub fn create(
        data_dir: &Path,
        passphrase: Option<&SecretString>,
        kdf: KdfParams,
    ) -> Result<Self> {
        ensure_data_dir(data_dir)?;
        let path = root_key_path(data_dir);
        let root_bytes = aead::random_key()?;
        let file = match passphrase {
            None => {
                let mut file = Zeroizing::new(Vec::with_capacity(PLAIN_FILE_LEN));
                file.extend_from_slice(&file_header(KIND_PLAIN));
                file.extend_from_slice(root_bytes.as_slice());
                file
            }
            Some(pass) => seal_root_key(&root_bytes, pass, kdf.check_bounds()?)?,
        };
        write_new_private_file(&path, &file)?;
        Ok(Self {
            root: Aes256GcmKey::new(root_bytes.as_slice())?,
            path,
            sealed: passphrase.is_some(),
        })
    }

    /// Opens the existing root key file in `data_dir`.
    ///
    /// # Errors
    /// [`CryptoError::MissingRootKey`], [`CryptoError::InsecurePermissions`],
    /// [`CryptoError::PassphraseRequired`], [`CryptoError::NotSealed`],
    /// [`CryptoError::WrongPassphrase`], [`CryptoError::MalformedRootKey`].
    pub fn open(data_dir: &Path, passphrase: Option<&SecretString>) -> Result<Self> {
        check_data_dir(data_dir)?;
        let path = root_key_path(data_dir);
        let bytes = read_private_file(&path)?;
        let (kind, body) = parse_file_header(&path, &bytes)?;
        let root = match (kind, passphrase) {
            (KIND_PLAIN, None) => {
                if bytes.len() != PLAIN_FILE_LEN {
                    return Err(malformed(&path, "wrong length for a plain root key"));
                }
                Aes256GcmKey::new(body)?
            }
            (KIND_PLAIN, Some(_)) => return Err(CryptoError::NotSealed { path }),
            (KIND_SEALED, None) => return Err(CryptoError::PassphraseRequired { path }),
            (KIND_SEALED, Some(pass)) => {
                let root_bytes = unseal_root_key(&path, &bytes, pass)?;
                Aes256GcmKey::new(root_bytes.as_slice())?
            }
            _ => return Err(malformed(&path, "unknown key file kind")),
        };
        Ok(Self {
            root,
            sealed: kind == KIND_SEALED,
            path,
        })
    }

    /// Opens the root key file, creating it first if the data directory has none.
    ///
    /// # Errors
    /// As [`LocalKeyProvider::open`] and [`LocalKeyProvider::create`].
    pub fn open_or_create(
        data_dir: &Path,
        passphrase: Option<&SecretString>,
        kdf: KdfParams,
    ) -> Result<Self> {
        match Self::open(data_dir, passphrase) {
            Err(CryptoError::MissingRootKey { .. }) => Self::create(data_dir, passphrase, kdf),
            other => other,
        }
    }

    /// Path of the root key file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the root key file is sealed with a passphrase.
    #[must_use]
    pub fn is_sealed(&self) -> bool {
        self.sealed
    }
}

impl KeyProvider for LocalKeyProvider {
    fn wrap_data_key(&self, purpose: Purpose, version: u32, dek: &DataKey) -> Result<Vec<u8>> {
        let nonce = aead::random_nonce()?;
        let mut out = Vec::with_capacity(WRAPPED_LEN);
        out.push(WRAP_FORMAT_V1);
        out.extend_from_slice(&ROOT_KEY_VERSION.to_be_bytes());
        out.extend_from_slice(&nonce);
        self.root
            .seal_append(&nonce, &dek_aad(purpose, version), dek.expose(), &mut out)?;
        Ok(out)
    }

    fn unwrap_data_key(&self, purpose: Purpose, version: u32, wrapped: &[u8]) -> Result<DataKey> {
        let fail = CryptoError::Unwrap { purpose, version };
        let Some((&WRAP_FORMAT_V1, rest)) = wrapped.split_first() else {
            return Err(fail);
        };
        let Some((root_version, rest)) = rest.split_first_chunk::<4>() else {
            return Err(fail);
        };
        if u32::from_be_bytes(*root_version) != ROOT_KEY_VERSION {
            return Err(fail);
        }
        let Some((nonce, ct)) = rest.split_first_chunk::<NONCE_LEN>() else {
            return Err(fail);
        };
        let plain = self
            .root
            .open(nonce, &dek_aad(purpose, version), ct)
            .map_err(|_| CryptoError::Unwrap { purpose, version })?;
        DataKey::from_slice(&plain).map_err(|_| CryptoError::Unwrap { purpose, version })
    }

    fn root_key_version(&self) -> u32 {
        ROOT_KEY_VERSION
    }

    fn health(&self) -> ProviderHealth {
        let probe = DataKey::from_slice(&[0u8; KEY_LEN]).and_then(|probe| {
            let wrapped = self.wrap_data_key(Purpose::AuditFields, 0, &probe)?;
            self.unwrap_data_key(Purpose::AuditFields, 0, &wrapped)
        });
        let (healthy, detail) = match probe {
            Ok(_) => (true, format!("root key file `{}`", self.path.display())),
            Err(e) => (false, e.to_string()),
        };
        ProviderHealth {
            kind: "local",
            root_key_version: ROOT_KEY_VERSION,
            healthy,
            detail,
        }
    }
}

fn malformed(path: &Path, reason: &'static str) -> CryptoError {
    CryptoError::MalformedRootKey {
        path: path.to_path_buf(),
        reason,
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CryptoError + '_ {
    move |source| CryptoError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn file_header(kind: u8) -> [u8; FILE_HEADER_LEN] {
    let [m0, m1, m2, m3] = FILE_MAGIC;
    let [v0, v1, v2, v3] = ROOT_KEY_VERSION.to_be_bytes();
    [m0, m1, m2, m3, FILE_FORMAT_V1, kind, v0, v1, v2, v3]
}

/// Returns the kind byte and the body after the header.
fn parse_file_header<'a>(path: &Path, bytes: &'a [u8]) -> Result<(u8, &'a [u8])> {
    let Some((magic, rest)) = bytes.split_first_chunk::<4>() else {
        return Err(malformed(path, "too short"));
    };
    if *magic != FILE_MAGIC {
        return Err(malformed(path, "not a rampart root key file"));
    }
    let Some((&format, rest)) = rest.split_first() else {
        return Err(malformed(path, "too short"));
    };
    if format != FILE_FORMAT_V1 {
        return Err(malformed(path, "unsupported file format version"));
    }
    let Some((&kind, rest)) = rest.split_first() else {
        return Err(malformed(path, "too short"));
    };
    let Some((version, body)) = rest.split_first_chunk::<4>() else {
        return Err(malformed(path, "too short"));
    };
    if u32::from_be_bytes(*version) != ROOT_KEY_VERSION {
        return Err(malformed(path, "unsupported root key version"));
    }
    Ok((kind, body))
}

fn seal_root_key(
    root: &[u8; KEY_LEN],
    passphrase: &SecretString,
    kdf: KdfParams,
) -> Result<Zeroizing<Vec<u8>>> {
    let mut salt = [0u8; SALT_LEN];
    aead::fill_random(&mut salt)?;
    let mut file = Zeroizing::new(Vec::with_capacity(SEALED_FILE_LEN));
    file.extend_from_slice(&file_header(KIND_SEALED));
    file.extend_from_slice(&kdf.m_cost_kib.to_be_bytes());
    file.extend_from_slice(&kdf.t_cost.to_be_bytes());
    file.extend_from_slice(&kdf.p_cost.to_be_bytes());
    file.extend_from_slice(&salt);
    let aad = file.clone();
    let kek = Aes256GcmKey::new(kdf.derive_kek(passphrase, &salt)?.as_slice())?;
    let nonce = aead::random_nonce()?;
    file.extend_from_slice(&nonce);
    kek.seal_append(&nonce, &aad, root, &mut file)?;
    Ok(file)
}

fn unseal_root_key(
    path: &Path,
    bytes: &[u8],
    passphrase: &SecretString,
) -> Result<Zeroizing<Vec<u8>>> {
    if bytes.len() != SEALED_FILE_LEN {
        return Err(malformed(path, "wrong length for a sealed root key"));
    }
    let Some((aad, rest)) = bytes.split_first_chunk::<SEALED_AAD_LEN>() else {
        return Err(malformed(path, "too short"));
    };
    let Some((_, params)) = aad.split_first_chunk::<FILE_HEADER_LEN>() else {
        return Err(malformed(path, "too short"));
    };
    let Some((m, params)) = params.split_first_chunk::<4>() else {
        return Err(malformed(path, "too short"));
    };
    let Some((t, params)) = params.split_first_chunk::<4>() else {
        return Err(malformed(path, "too short"));
    };
    let Some((p, salt)) = params.split_first_chunk::<4>() else {
        return Err(malformed(path, "too short"));
    };
    let kdf = KdfParams {
        m_cost_kib: u32::from_be_bytes(*m),
        t_cost: u32::from_be_bytes(*t),
        p_cost: u32::from_be_bytes(*p),
    }
    .check_bounds()?;
    let Some((nonce, ct)) = rest.split_first_chunk::<NONCE_LEN>() else {
        return Err(malformed(path, "too short"));
    };
    let kek = Aes256GcmKey::new(kdf.derive_kek(passphrase, salt)?.as_slice())?;
    kek.open(nonce, aad, ct)
        .map_err(|_| CryptoError::WrongPassphrase {
            path: path.to_path_buf(),
        })
}

/// Creates `dir` with mode 0700 if missing, then checks it.
fn ensure_data_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(dir))?;
    }
    check_data_dir(dir)
}

/// The data directory must be a directory with no world permission bits.
fn check_data_dir(dir: &Path) -> Result<()> {
    let meta = fs::metadata(dir).map_err(io_err(dir))?;
    if !meta.is_dir() {
        return Err(CryptoError::WrongFileType {
            path: dir.to_path_buf(),
            expected: "directory",
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o007 != 0 {
        return Err(CryptoError::InsecurePermissions {
            path: dir.to_path_buf(),
            mode,
            fix: "700",
        });
    }
    Ok(())
}

fn write_new_private_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                CryptoError::RootKeyExists {
                    path: path.to_path_buf(),
                }
            } else {
                io_err(path)(source)
            }
        })?;
    file.write_all(bytes).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))?;
    Ok(())
}

/// Reads a key file after checking it is a regular file (not a symlink) with
/// no group or world permission bits.
fn read_private_file(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CryptoError::MissingRootKey {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(io_err(path)(e)),
    };
    if !meta.file_type().is_file() {
        return Err(CryptoError::WrongFileType {
            path: path.to_path_buf(),
            expected: "regular file",
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(CryptoError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
            fix: "600",
        });
    }
    if meta.len() > MAX_FILE_LEN {
        return Err(malformed(path, "too large"));
    }
    let mut buf = Zeroizing::new(Vec::with_capacity(PLAIN_FILE_LEN.max(SEALED_FILE_LEN)));
    fs::File::open(path)
        .map_err(io_err(path))?
        .take(MAX_FILE_LEN)
        .read_to_end(&mut buf)
        .map_err(io_err(path))?;
    Ok(buf)
}
