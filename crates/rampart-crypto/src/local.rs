//! The `local` key provider: a root key in a file under the data directory,
//! optionally sealed with a passphrase.
//!
//! Root key file `root.key` (mode 0600, in a data directory without world
//! permission bits); during a root rotation also `root.key.next` (the next
//! version, same format); and the Ed25519 signing key `signing.key` (same
//! format with magic `"RMSK"`, body = the 32-byte seed):
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
//!
//! Root rotation: [`KeyProvider::rotate_root`] writes `root.key.next`
//! (version + 1, sealed like the current file) and wraps with it from then
//! on; once every data key is re-wrapped,
//! [`KeyProvider::destroy_root_versions_below`] overwrites `root.key` with
//! zeros and renames `root.key.next` over it. A crash in between leaves both
//! files, and [`LocalKeyProvider::open`] loads both, so nothing is lost.

use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use parking_lot::{RwLock, RwLockReadGuard};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::aead::{self, Aes256GcmKey, KEY_LEN, NONCE_LEN, TAG_LEN};
use crate::error::{CryptoError, Result};
use crate::provider::{dek_aad, DataKey, KeyProvider, ProviderHealth};
use crate::purpose::Purpose;

/// File name of the root key inside the data directory.
pub const ROOT_KEY_FILE: &str = "root.key";
/// File name of the next root key while a root rotation is in progress.
pub const NEXT_ROOT_KEY_FILE: &str = "root.key.next";
/// File name of the Ed25519 signing key inside the data directory.
pub const SIGNING_KEY_FILE: &str = "signing.key";

const FILE_MAGIC: [u8; 4] = *b"RMPK";
const SIGNING_MAGIC: [u8; 4] = *b"RMSK";
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

/// Version of the first root key.
const FIRST_ROOT_KEY_VERSION: u32 = 1;

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
    roots: RwLock<BTreeMap<u32, Aes256GcmKey>>,
    signing: Ed25519KeyPair,
    data_dir: PathBuf,
    path: PathBuf,
    passphrase: Option<SecretString>,
    kdf: KdfParams,
}

impl fmt::Debug for LocalKeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKeyProvider")
            .field("path", &self.path)
            .field("sealed", &self.passphrase.is_some())
            .field("root_versions", &self.root_key_versions())
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
        let kdf = kdf.check_bounds()?;
        let path = root_key_path(data_dir);
        let root_bytes = aead::random_key()?;
        let file = encode_key_file(
            FILE_MAGIC,
            FIRST_ROOT_KEY_VERSION,
            &root_bytes,
            passphrase,
            kdf,
        )?;
        write_new_private_file(&path, &file)?;
        let mut roots = BTreeMap::new();
        roots.insert(
            FIRST_ROOT_KEY_VERSION,
            Aes256GcmKey::new(root_bytes.as_slice())?,
        );
        let signing = open_or_create_signing_key(data_dir, passphrase, kdf)?;
        Ok(Self {
            roots: RwLock::new(roots),
            signing,
            data_dir: data_dir.to_path_buf(),
            path,
            passphrase: passphrase.cloned(),
            kdf,
        })
    }

    /// Opens the existing root key file in `data_dir` (and `root.key.next`
    /// if a root rotation was interrupted), and the signing key (created on
    /// first use).
    ///
    /// # Errors
    /// [`CryptoError::MissingRootKey`], [`CryptoError::InsecurePermissions`],
    /// [`CryptoError::PassphraseRequired`], [`CryptoError::NotSealed`],
    /// [`CryptoError::WrongPassphrase`], [`CryptoError::MalformedRootKey`].
    pub fn open(data_dir: &Path, passphrase: Option<&SecretString>) -> Result<Self> {
        check_data_dir(data_dir)?;
        let path = root_key_path(data_dir);
        let mut roots = BTreeMap::new();
        let (version, root, kdf) = read_key_file(&path, FILE_MAGIC, passphrase)?;
        roots.insert(version, Aes256GcmKey::new(root.as_slice())?);
        let next_path = data_dir.join(NEXT_ROOT_KEY_FILE);
        match read_key_file(&next_path, FILE_MAGIC, passphrase) {
            Ok((next_version, next, _)) => {
                if next_version <= version {
                    return Err(malformed(
                        &next_path,
                        "next root key version is not above the current one",
                    ));
                }
                roots.insert(next_version, Aes256GcmKey::new(next.as_slice())?);
            }
            Err(CryptoError::MissingRootKey { .. }) => {}
            Err(e) => return Err(e),
        }
        let signing = open_or_create_signing_key(data_dir, passphrase, kdf)?;
        Ok(Self {
            roots: RwLock::new(roots),
            signing,
            data_dir: data_dir.to_path_buf(),
            path,
            passphrase: passphrase.cloned(),
            kdf,
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
        if !data_dir.exists() {
            return Self::create(data_dir, passphrase, kdf);
        }
        match Self::open(data_dir, passphrase) {
            Err(CryptoError::MissingRootKey { path }) if path == root_key_path(data_dir) => {
                Self::create(data_dir, passphrase, kdf)
            }
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
        self.passphrase.is_some()
    }

    fn current(&self) -> Result<(u32, parking_lot::MappedRwLockReadGuard<'_, Aes256GcmKey>)> {
        let roots = self.roots.read();
        let version = roots
            .keys()
            .next_back()
            .copied()
            .ok_or(CryptoError::Unreachable("local provider holds no root key"))?;
        let key = RwLockReadGuard::try_map(roots, |r| r.get(&version))
            .map_err(|_| CryptoError::Unreachable("local provider holds no root key"))?;
        Ok((version, key))
    }
}

impl KeyProvider for LocalKeyProvider {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn wrap_data_key(&self, purpose: Purpose, version: u32, dek: &DataKey) -> Result<Vec<u8>> {
        let (root_version, root) = self.current()?;
        let nonce = aead::random_nonce()?;
        let mut out = Vec::with_capacity(WRAPPED_LEN);
        out.push(WRAP_FORMAT_V1);
        out.extend_from_slice(&root_version.to_be_bytes());
        out.extend_from_slice(&nonce);
        root.seal_append(&nonce, &dek_aad(purpose, version), dek.expose(), &mut out)?;
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
        let Some((nonce, ct)) = rest.split_first_chunk::<NONCE_LEN>() else {
            return Err(fail);
        };
        let roots = self.roots.read();
        let Some(root) = roots.get(&u32::from_be_bytes(*root_version)) else {
            return Err(fail);
        };
        let plain = root
            .open(nonce, &dek_aad(purpose, version), ct)
            .map_err(|_| CryptoError::Unwrap { purpose, version })?;
        DataKey::from_slice(&plain).map_err(|_| CryptoError::Unwrap { purpose, version })
    }

    fn wrapped_root_version(&self, wrapped: &[u8]) -> Result<u32> {
        wrapped_root_version(wrapped)
    }

    fn root_key_version(&self) -> u32 {
        self.roots.read().keys().next_back().copied().unwrap_or(0)
    }

    fn root_key_versions(&self) -> Vec<u32> {
        self.roots.read().keys().copied().collect()
    }

    fn rotate_root(&self) -> Result<u32> {
        let mut roots = self.roots.write();
        let current = roots.keys().next_back().copied().unwrap_or(0);
        if roots.len() > 1 {
            // An earlier rotation has not finished: root.key.next already
            // holds the newest version; keep using it.
            return Ok(current);
        }
        let next = current
            .checked_add(1)
            .ok_or(CryptoError::Unreachable("root key versions exhausted"))?;
        let bytes = aead::random_key()?;
        let file = encode_key_file(FILE_MAGIC, next, &bytes, self.passphrase.as_ref(), self.kdf)?;
        let next_path = self.data_dir.join(NEXT_ROOT_KEY_FILE);
        write_new_private_file(&next_path, &file)?;
        sync_dir(&self.data_dir)?;
        roots.insert(next, Aes256GcmKey::new(bytes.as_slice())?);
        Ok(next)
    }

    fn destroy_root_versions_below(&self, version: u32) -> Result<usize> {
        let mut roots = self.roots.write();
        let current = roots.keys().next_back().copied().unwrap_or(0);
        if version > current {
            return Err(CryptoError::InvalidRootVersion {
                requested: version,
                current,
            });
        }
        let doomed = roots.range(..version).count();
        if doomed == 0 {
            return Ok(0);
        }
        let next_path = self.data_dir.join(NEXT_ROOT_KEY_FILE);
        if next_path.exists() {
            // Overwrite the old root key in place before replacing it, so its
            // bytes do not linger in a freed block of the same file.
            overwrite_with_zeros(&self.path)?;
            fs::rename(&next_path, &self.path).map_err(io_err(&self.path))?;
            sync_dir(&self.data_dir)?;
        }
        let kept = roots.split_off(&version);
        *roots = kept;
        Ok(doomed)
    }

    fn signing_public_key(&self) -> Result<[u8; 32]> {
        self.signing
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| CryptoError::Unreachable("Ed25519 public key is not 32 bytes"))
    }

    fn sign(&self, message: &[u8]) -> Result<[u8; 64]> {
        self.signing
            .sign(message)
            .as_ref()
            .try_into()
            .map_err(|_| CryptoError::Unreachable("Ed25519 signature is not 64 bytes"))
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
            root_key_version: self.root_key_version(),
            healthy,
            detail,
        }
    }
}

/// Root key version recorded in a wrapped data key of the `local` (and
/// `pkcs11`) blob layout: `format 1 ‖ root key version (u32 BE) ‖ …`.
///
/// # Errors
/// [`CryptoError::Malformed`] if the blob is too short or of another format.
pub fn wrapped_root_version(wrapped: &[u8]) -> Result<u32> {
    match wrapped.split_first() {
        Some((&WRAP_FORMAT_V1, rest)) => rest
            .split_first_chunk::<4>()
            .map(|(v, _)| u32::from_be_bytes(*v))
            .ok_or(CryptoError::Malformed("wrapped data key too short")),
        _ => Err(CryptoError::Malformed("unknown wrapped data key format")),
    }
}

fn open_or_create_signing_key(
    data_dir: &Path,
    passphrase: Option<&SecretString>,
    kdf: KdfParams,
) -> Result<Ed25519KeyPair> {
    let path = data_dir.join(SIGNING_KEY_FILE);
    let seed = match read_key_file(&path, SIGNING_MAGIC, passphrase) {
        Ok((_, seed, _)) => seed,
        Err(CryptoError::MissingRootKey { .. }) => {
            let seed = aead::random_key()?;
            let file = encode_key_file(SIGNING_MAGIC, 1, &seed, passphrase, kdf)?;
            write_new_private_file(&path, &file)?;
            Zeroizing::new(seed.to_vec())
        }
        Err(e) => return Err(e),
    };
    Ed25519KeyPair::from_seed_unchecked(&seed)
        .map_err(|_| malformed(&path, "not a valid Ed25519 seed"))
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

fn file_header(magic: [u8; 4], kind: u8, version: u32) -> [u8; FILE_HEADER_LEN] {
    let [m0, m1, m2, m3] = magic;
    let [v0, v1, v2, v3] = version.to_be_bytes();
    [m0, m1, m2, m3, FILE_FORMAT_V1, kind, v0, v1, v2, v3]
}

/// Returns the kind byte, the key version and the body after the header.
fn parse_file_header<'a>(
    path: &Path,
    magic: [u8; 4],
    bytes: &'a [u8],
) -> Result<(u8, u32, &'a [u8])> {
    let Some((found_magic, rest)) = bytes.split_first_chunk::<4>() else {
        return Err(malformed(path, "too short"));
    };
    if *found_magic != magic {
        return Err(malformed(path, "not a rampart key file of this kind"));
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
    Ok((kind, u32::from_be_bytes(*version), body))
}

/// Encodes a key file, plain or sealed with `passphrase`.
fn encode_key_file(
    magic: [u8; 4],
    version: u32,
    key: &[u8; KEY_LEN],
    passphrase: Option<&SecretString>,
    kdf: KdfParams,
) -> Result<Zeroizing<Vec<u8>>> {
    match passphrase {
        None => {
            let mut file = Zeroizing::new(Vec::with_capacity(PLAIN_FILE_LEN));
            file.extend_from_slice(&file_header(magic, KIND_PLAIN, version));
            file.extend_from_slice(key.as_slice());
            Ok(file)
        }
        Some(pass) => seal_root_key(
            file_header(magic, KIND_SEALED, version),
            key,
            pass,
            kdf.check_bounds()?,
        ),
    }
}

/// Reads a key file: returns its version, the 32 key bytes and the KDF
/// parameters it was sealed with (the defaults for a plain file).
fn read_key_file(
    path: &Path,
    magic: [u8; 4],
    passphrase: Option<&SecretString>,
) -> Result<(u32, Zeroizing<Vec<u8>>, KdfParams)> {
    let bytes = read_private_file(path)?;
    let (kind, version, body) = parse_file_header(path, magic, &bytes)?;
    match (kind, passphrase) {
        (KIND_PLAIN, None) => {
            if bytes.len() != PLAIN_FILE_LEN {
                return Err(malformed(path, "wrong length for a plain key file"));
            }
            Ok((version, Zeroizing::new(body.to_vec()), KdfParams::default()))
        }
        (KIND_PLAIN, Some(_)) => Err(CryptoError::NotSealed {
            path: path.to_path_buf(),
        }),
        (KIND_SEALED, None) => Err(CryptoError::PassphraseRequired {
            path: path.to_path_buf(),
        }),
        (KIND_SEALED, Some(pass)) => {
            let (key, kdf) = unseal_root_key(path, &bytes, pass)?;
            Ok((version, key, kdf))
        }
        _ => Err(malformed(path, "unknown key file kind")),
    }
}

fn seal_root_key(
    header: [u8; FILE_HEADER_LEN],
    root: &[u8; KEY_LEN],
    passphrase: &SecretString,
    kdf: KdfParams,
) -> Result<Zeroizing<Vec<u8>>> {
    let mut salt = [0u8; SALT_LEN];
    aead::fill_random(&mut salt)?;
    let mut file = Zeroizing::new(Vec::with_capacity(SEALED_FILE_LEN));
    file.extend_from_slice(&header);
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
) -> Result<(Zeroizing<Vec<u8>>, KdfParams)> {
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
    let key = kek
        .open(nonce, aad, ct)
        .map_err(|_| CryptoError::WrongPassphrase {
            path: path.to_path_buf(),
        })?;
    Ok((key, kdf))
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

/// Overwrites an existing file's bytes with zeros and syncs it.
fn overwrite_with_zeros(path: &Path) -> Result<()> {
    let len = fs::metadata(path).map_err(io_err(path))?.len();
    let zeros = vec![0u8; usize::try_from(len.min(MAX_FILE_LEN)).unwrap_or(0)];
    let mut file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    file.write_all(&zeros).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}

/// Makes renames and creations in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
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
