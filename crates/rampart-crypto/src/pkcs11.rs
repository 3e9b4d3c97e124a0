//! The `pkcs11` key provider: the root key and the signing key live inside a
//! PKCS#11 token (an HSM, or SoftHSM2 in tests) and never leave it.
//!
//! Token objects, found by label on every open and generated on the first:
//!
//! ```text
//! {key_label}-root     AES-256 secret key, one per root key version,
//!                      CKA_ID = version (u32 BE); sensitive, never extractable,
//!                      encrypt/decrypt only (no wrap/unwrap/sign/derive)
//! {key_label}-signing  Ed25519 key pair (CKM_EC_EDWARDS_KEY_PAIR_GEN); the
//!                      private half sensitive and never extractable
//! ```
//!
//! Wrapped data keys use the same layout as the `local` provider:
//! `format 1 ‖ root key version (u32 BE) ‖ iv (12) ‖ ciphertext ‖ tag (16)`,
//! produced by `CKM_AES_GCM` (C_Encrypt) inside the token under a fresh random
//! IV, with associated data [`dek_aad`] (`"rampart-dek" ‖ purpose ‖ version`).
//!
//! A cryptoki session is not `Sync`, so the provider keeps one session behind
//! a mutex; every token call is serialised on it. If the token drops the
//! session or the login (network HSM restart, another part of the process
//! logging out), the provider opens a new session, logs in again, finds its
//! objects again and retries the call once.

use std::collections::BTreeMap;
use std::ffi::c_ulong;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as Pkcs11Error, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use parking_lot::Mutex;
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::aead::{self, KEY_LEN, NONCE_LEN, TAG_LEN};
use crate::error::{CryptoError, Result};
use crate::provider::{dek_aad, DataKey, KeyProvider, ProviderHealth};
use crate::purpose::Purpose;

/// Provider kind, as reported by [`KeyProvider::kind`] and in errors.
const KIND: &str = "pkcs11";

/// Default prefix of the token object labels.
pub const DEFAULT_KEY_LABEL: &str = "rampart";

const WRAP_FORMAT_V1: u8 = 1;
/// Length of a wrapped data key produced by this provider (same as `local`).
pub const WRAPPED_LEN: usize = 1 + 4 + NONCE_LEN + KEY_LEN + TAG_LEN;

/// Version of the first root key.
const FIRST_ROOT_KEY_VERSION: u32 = 1;

/// AES-GCM tag length in bits, as a `CK_ULONG`.
const GCM_TAG_BITS: c_ulong = 128;
/// AES root key length in bytes, as a `CK_ULONG`.
const ROOT_KEY_LEN: c_ulong = 32;

/// `CKA_EC_PARAMS` for Ed25519: DER OBJECT IDENTIFIER 1.3.101.112 (RFC 8410).
const ED25519_OID: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];
/// `CKA_EC_PARAMS` for Ed25519 as a PrintableString `"edwards25519"`, the
/// form PKCS#11 3.0 names and some tokens insist on.
const ED25519_PRINTABLE: [u8; 14] = [
    0x13, 0x0c, b'e', b'd', b'w', b'a', b'r', b'd', b's', b'2', b'5', b'5', b'1', b'9',
];

/// Where the token is and how to log in to it.
#[derive(Clone)]
pub struct Pkcs11Config {
    /// Path of the PKCS#11 module (shared library), e.g.
    /// `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// Label of the token holding the keys.
    pub token_label: String,
    /// User PIN of the token. Never printed.
    pub pin: SecretString,
    /// Prefix of the object labels: `{key_label}-root` and
    /// `{key_label}-signing`. Defaults to [`DEFAULT_KEY_LABEL`].
    pub key_label: String,
}

impl Pkcs11Config {
    /// A configuration with the default key label prefix.
    #[must_use]
    pub fn new(
        module: impl Into<PathBuf>,
        token_label: impl Into<String>,
        pin: SecretString,
    ) -> Self {
        Self {
            module: module.into(),
            token_label: token_label.into(),
            pin,
            key_label: DEFAULT_KEY_LABEL.to_owned(),
        }
    }

    fn root_label(&self) -> String {
        format!("{}-root", self.key_label)
    }

    fn signing_label(&self) -> String {
        format!("{}-signing", self.key_label)
    }
}

impl fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("pin", &"**REDACTED**")
            .field("key_label", &self.key_label)
            .finish()
    }
}

/// The session and the handles of the objects found through it.
struct Token {
    session: Session,
    roots: BTreeMap<u32, ObjectHandle>,
    signing_private: ObjectHandle,
}

impl Token {
    fn current_root(&self) -> Option<(u32, ObjectHandle)> {
        self.roots.iter().next_back().map(|(v, h)| (*v, *h))
    }
}

/// Root key and signing key held in a PKCS#11 token.
pub struct Pkcs11KeyProvider {
    ctx: Pkcs11,
    slot: Slot,
    cfg: Pkcs11Config,
    public_key: [u8; 32],
    /// Set once the token rejected the PIN on a re-login: from then on the
    /// provider does not try again, so a PIN changed under a running
    /// gateway cannot lock the token by repeated attempts.
    pin_rejected: AtomicBool,
    token: Mutex<Token>,
}

impl fmt::Debug for Pkcs11KeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11KeyProvider")
            .field("module", &self.cfg.module)
            .field("token_label", &self.cfg.token_label)
            .field("slot", &self.slot.id())
            .field("key_label", &self.cfg.key_label)
            .field("root_versions", &self.root_key_versions())
            .field("pin", &"**REDACTED**")
            .finish()
    }
}

/// A failure inside a token operation: from the token (retried once after a
/// reconnect if the session was lost) or from Rampart's own checks.
enum OpError {
    Token(Pkcs11Error),
    Rampart(CryptoError),
}

impl From<Pkcs11Error> for OpError {
    fn from(e: Pkcs11Error) -> Self {
        Self::Token(e)
    }
}

impl OpError {
    fn into_crypto(self, op: &str) -> CryptoError {
        match self {
            Self::Token(e) => token_err(op, &e),
            Self::Rampart(e) => e,
        }
    }
}

/// Whether a failure means the session or login is gone (rather than the
/// request being wrong), so reconnecting and retrying once may help.
fn session_lost(e: &Pkcs11Error) -> bool {
    matches!(
        e,
        Pkcs11Error::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::UserNotLoggedIn
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::KeyHandleInvalid
                | RvError::ObjectHandleInvalid,
            _
        )
    )
}

/// Whether a failure is about the token being unavailable rather than
/// about the wrapped bytes: reported as a provider error, not an unwrap error.
/// (`CKR_GENERAL_ERROR` is not on this list: SoftHSM2 returns it from
/// C_Decrypt when an AES-GCM tag does not verify.)
fn token_unavailable(e: &Pkcs11Error) -> bool {
    match e {
        Pkcs11Error::Pkcs11(rv, _) => matches!(
            rv,
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::UserNotLoggedIn
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::DeviceError
                | RvError::DeviceMemory
                | RvError::HostMemory
                | RvError::CryptokiNotInitialized
                | RvError::SessionCount
                | RvError::OperationActive
        ),
        Pkcs11Error::LibraryLoading(_)
        | Pkcs11Error::NullFunctionPointer
        | Pkcs11Error::MissingSymbol(_) => true,
        _ => false,
    }
}

/// `RvError::PinIncorrect` → `CKR_PIN_INCORRECT`.
fn ckr_name(rv: RvError) -> String {
    let debug = format!("{rv:?}");
    let mut out = String::from("CKR");
    for c in debug.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
        }
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_uppercase());
        }
    }
    out
}

/// A short, secret-free description of a cryptoki failure.
fn describe(e: &Pkcs11Error) -> String {
    match e {
        Pkcs11Error::Pkcs11(rv, function) => format!("C_{function:?} returned {}", ckr_name(*rv)),
        other => other.to_string(),
    }
}

fn provider_err(message: String) -> CryptoError {
    CryptoError::Provider {
        provider: KIND,
        message,
    }
}

fn token_err(op: &str, e: &Pkcs11Error) -> CryptoError {
    provider_err(format!("{op}: {}", describe(e)))
}

/// Loads the module and initialises it (once per process: a second
/// `C_Initialize` from another context reports "already initialised", which
/// is fine because the library state is shared).
fn load_module(cfg: &Pkcs11Config) -> Result<Pkcs11> {
    let ctx = Pkcs11::new(&cfg.module).map_err(|e| {
        provider_err(format!(
            "cannot load PKCS#11 module `{}`: {e}",
            cfg.module.display()
        ))
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(Pkcs11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(ctx),
        Err(e) => Err(token_err(
            &format!(
                "cannot initialise PKCS#11 module `{}`",
                cfg.module.display()
            ),
            &e,
        )),
    }
}

/// The slot whose token carries `cfg.token_label`.
fn find_slot(ctx: &Pkcs11, cfg: &Pkcs11Config) -> Result<Slot> {
    let slots = ctx
        .get_slots_with_token()
        .map_err(|e| token_err("cannot list token slots", &e))?;
    let mut found = Vec::new();
    let mut labels = Vec::new();
    for slot in slots {
        let info = ctx
            .get_token_info(slot)
            .map_err(|e| token_err(&format!("cannot read token info of slot {}", slot.id()), &e))?;
        if !info.token_initialized() {
            continue;
        }
        if info.label() == cfg.token_label {
            found.push(slot);
        }
        labels.push(format!("`{}`", info.label()));
    }
    match found.as_slice() {
        [slot] => Ok(*slot),
        [] => Err(provider_err(format!(
            "no token labelled `{}` in module `{}`; available tokens: {}",
            cfg.token_label,
            cfg.module.display(),
            if labels.is_empty() {
                "none (initialise one first)".to_owned()
            } else {
                labels.join(", ")
            }
        ))),
        _ => Err(provider_err(format!(
            "{} tokens are labelled `{}` in module `{}`; give the Rampart token a unique label",
            found.len(),
            cfg.token_label,
            cfg.module.display()
        ))),
    }
}

/// Why logging in failed, and whether the token rejected the PIN itself (in
/// which case trying again with the same PIN only brings the lockout nearer).
struct LoginFailed {
    error: CryptoError,
    pin_rejected: bool,
}

/// Opens a R/W session on `slot` and logs the user in.
fn login(ctx: &Pkcs11, slot: Slot, cfg: &Pkcs11Config) -> Result<Session, LoginFailed> {
    let label = &cfg.token_label;
    let session = ctx.open_rw_session(slot).map_err(|e| LoginFailed {
        error: token_err(&format!("cannot open a session on token `{label}`"), &e),
        pin_rejected: false,
    })?;
    let pin_rejected = |error| LoginFailed {
        error,
        pin_rejected: true,
    };
    match session.login(UserType::User, Some(&cfg.pin)) {
        // Login state is per application: another session of this process
        // (another provider instance) has already logged the user in.
        Ok(()) | Err(Pkcs11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
        Err(Pkcs11Error::Pkcs11(RvError::PinIncorrect, _)) => {
            let final_try = ctx
                .get_token_info(slot)
                .map(|i| i.user_pin_final_try())
                .unwrap_or(false);
            Err(pin_rejected(provider_err(format!(
                "login to token `{label}` failed: wrong PIN (CKR_PIN_INCORRECT); check the configured PIN source{}",
                if final_try {
                    " (one attempt left before the token locks the PIN)"
                } else {
                    ""
                }
            ))))
        }
        Err(Pkcs11Error::Pkcs11(RvError::PinLocked, _)) => Err(pin_rejected(provider_err(format!(
            "login to token `{label}` failed: the user PIN is locked after too many wrong attempts (CKR_PIN_LOCKED); the token's security officer must reset it"
        )))),
        Err(Pkcs11Error::Pkcs11(RvError::PinExpired, _)) => Err(pin_rejected(provider_err(format!(
            "login to token `{label}` failed: the user PIN has expired (CKR_PIN_EXPIRED); change it with the token's tools"
        )))),
        Err(Pkcs11Error::Pkcs11(rv @ (RvError::PinLenRange | RvError::PinInvalid), _)) => {
            Err(pin_rejected(provider_err(format!(
                "login to token `{label}` failed: the PIN has an invalid length or characters ({}); check the configured PIN source",
                ckr_name(rv)
            ))))
        }
        Err(Pkcs11Error::Pkcs11(RvError::UserPinNotInitialized, _)) => Err(LoginFailed {
            error: provider_err(format!(
                "login to token `{label}` failed: the token's user PIN is not initialised (CKR_USER_PIN_NOT_INITIALIZED); initialise it with the token's tools"
            )),
            pin_rejected: false,
        }),
        Err(e) => Err(LoginFailed {
            error: token_err(&format!("login to token `{label}` failed"), &e),
            pin_rejected: false,
        }),
    }
}

fn root_template(label: &str, version: u32) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::ValueLen(ROOT_KEY_LEN.into()),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(version.to_be_bytes().to_vec()),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Sign(false),
        Attribute::Verify(false),
        Attribute::Derive(false),
        Attribute::Modifiable(false),
    ]
}

/// Generates root key `version` inside the token.
fn generate_root(
    session: &Session,
    label: &str,
    version: u32,
) -> Result<ObjectHandle, Pkcs11Error> {
    let template = root_template(label, version);
    match session.generate_key(&Mechanism::AesKeyGen, &template) {
        // A token that refuses CKA_MODIFIABLE=false at generation time still
        // gets every other protection.
        Err(Pkcs11Error::Pkcs11(
            RvError::AttributeReadOnly
            | RvError::AttributeValueInvalid
            | RvError::TemplateInconsistent,
            _,
        )) => {
            let relaxed: Vec<Attribute> = template
                .into_iter()
                .filter(|a| !matches!(a, Attribute::Modifiable(_)))
                .collect();
            session.generate_key(&Mechanism::AesKeyGen, &relaxed)
        }
        other => other,
    }
}

/// Every root key version in the token, by `CKA_ID`.
fn find_roots(session: &Session, label: &str) -> Result<BTreeMap<u32, ObjectHandle>, OpError> {
    let handles = session.find_objects(&[
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Label(label.as_bytes().to_vec()),
    ])?;
    let mut roots = BTreeMap::new();
    for handle in handles {
        let attrs = session.get_attributes(
            handle,
            &[
                AttributeType::Id,
                AttributeType::Extractable,
                AttributeType::Sensitive,
            ],
        )?;
        let mut id = None;
        for attr in attrs {
            match attr {
                Attribute::Id(bytes) => id = Some(bytes),
                Attribute::Extractable(true) | Attribute::Sensitive(false) => {
                    tracing::warn!(
                        label,
                        "a pkcs11 root key is extractable or not sensitive; its key material may leave the token"
                    );
                }
                _ => {}
            }
        }
        let version = id
            .as_deref()
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .ok_or_else(|| {
                OpError::Rampart(provider_err(format!(
                    "a secret key labelled `{label}` has no 4-byte CKA_ID (root key version); remove or relabel it"
                )))
            })?;
        if roots.insert(version, handle).is_some() {
            return Err(OpError::Rampart(provider_err(format!(
                "several secret keys labelled `{label}` carry root key version {version}; remove the duplicates"
            ))));
        }
    }
    Ok(roots)
}

/// Finds the Ed25519 key pair labelled `label`: (public, private).
fn find_signing(session: &Session, label: &str) -> Result<Option<(ObjectHandle, ObjectHandle)>> {
    let find = |class: ObjectClass| {
        session
            .find_objects(&[
                Attribute::Class(class),
                Attribute::KeyType(KeyType::EC_EDWARDS),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .map_err(|e| token_err("cannot search the token for the signing key", &e))
    };
    let public = find(ObjectClass::PUBLIC_KEY)?;
    let private = find(ObjectClass::PRIVATE_KEY)?;
    match (public.as_slice(), private.as_slice()) {
        ([], []) => Ok(None),
        ([public], [private]) => Ok(Some((*public, *private))),
        _ => Err(provider_err(format!(
            "the token holds {} public and {} private Ed25519 keys labelled `{label}`, expected one of each; remove the extras",
            public.len(),
            private.len()
        ))),
    }
}

/// Generates the Ed25519 signing key pair inside the token.
fn generate_signing(session: &Session, label: &str) -> Result<(ObjectHandle, ObjectHandle)> {
    let private = [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Derive(false),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    let mut last = None;
    for params in [ED25519_OID.as_slice(), ED25519_PRINTABLE.as_slice()] {
        let public = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::EcParams(params.to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        match session.generate_key_pair(&Mechanism::EccEdwardsKeyPairGen, &public, &private) {
            Ok(pair) => return Ok(pair),
            Err(
                e @ Pkcs11Error::Pkcs11(
                    RvError::CurveNotSupported
                    | RvError::DomainParamsInvalid
                    | RvError::AttributeValueInvalid
                    | RvError::TemplateInconsistent,
                    _,
                ),
            ) => last = Some(e),
            Err(e @ Pkcs11Error::Pkcs11(RvError::MechanismInvalid, _)) => return Err(token_err(
                "the token does not support Ed25519 key generation (CKM_EC_EDWARDS_KEY_PAIR_GEN)",
                &e,
            )),
            Err(e) => return Err(token_err("cannot generate the Ed25519 signing key", &e)),
        }
    }
    Err(match last {
        Some(e) => token_err(
            "the token refused Ed25519 curve parameters (both the RFC 8410 OID and \"edwards25519\")",
            &e,
        ),
        None => CryptoError::Unreachable("no Ed25519 parameter form was tried"),
    })
}

/// The 32-byte Ed25519 public key from `CKA_EC_POINT`: a DER OCTET STRING
/// (`04 20 ‖ key`, as PKCS#11 2.40 and SoftHSM2 write it) or the raw key.
fn parse_ec_point(point: &[u8]) -> Option<[u8; 32]> {
    match point {
        [0x04, 0x20, rest @ ..] if rest.len() == 32 => rest.try_into().ok(),
        raw => raw.try_into().ok(),
    }
}

fn read_public_key(session: &Session, public: ObjectHandle) -> Result<[u8; 32]> {
    let attrs = session
        .get_attributes(public, &[AttributeType::EcPoint])
        .map_err(|e| token_err("cannot read the signing public key", &e))?;
    attrs
        .into_iter()
        .find_map(|a| match a {
            Attribute::EcPoint(point) => parse_ec_point(&point),
            _ => None,
        })
        .ok_or_else(|| {
            provider_err(
                "the signing public key's CKA_EC_POINT is not a 32-byte Ed25519 point".to_owned(),
            )
        })
}

/// Finds (with `create`, generates when missing) the keys through a
/// logged-in `session`.
fn connect(session: Session, cfg: &Pkcs11Config, create: bool) -> Result<(Token, [u8; 32])> {
    let root_label = cfg.root_label();
    let signing_label = cfg.signing_label();
    let mut roots = find_roots(&session, &root_label)
        .map_err(|e| e.into_crypto("cannot search the token for root keys"))?;
    if roots.is_empty() {
        if !create {
            return Err(provider_err(format!(
                "no root key labelled `{root_label}` on token `{}` any more",
                cfg.token_label
            )));
        }
        let handle = generate_root(&session, &root_label, FIRST_ROOT_KEY_VERSION)
            .map_err(|e| token_err("cannot generate root key version 1", &e))?;
        tracing::info!(
            token = %cfg.token_label,
            version = FIRST_ROOT_KEY_VERSION,
            "generated the pkcs11 root key inside the token"
        );
        roots.insert(FIRST_ROOT_KEY_VERSION, handle);
    }
    let (public, private) = match find_signing(&session, &signing_label)? {
        Some(pair) => pair,
        None if create => {
            let pair = generate_signing(&session, &signing_label)?;
            tracing::info!(
                token = %cfg.token_label,
                "generated the pkcs11 Ed25519 signing key inside the token"
            );
            pair
        }
        None => {
            return Err(provider_err(format!(
                "no signing key labelled `{signing_label}` on token `{}` any more",
                cfg.token_label
            )))
        }
    };
    let public_key = read_public_key(&session, public)?;
    Ok((
        Token {
            session,
            roots,
            signing_private: private,
        },
        public_key,
    ))
}

impl Pkcs11KeyProvider {
    /// Loads the module, logs in to the token labelled `cfg.token_label` and
    /// finds its root keys and signing key, generating root key version 1
    /// and the signing key inside the token if they do not exist yet.
    ///
    /// # Errors
    /// [`CryptoError::Provider`] if the module cannot be loaded, no token
    /// carries the label, the PIN is wrong or locked, or the token refuses
    /// to find or generate the keys.
    pub fn open(cfg: &Pkcs11Config) -> Result<Self> {
        let ctx = load_module(cfg)?;
        let slot = find_slot(&ctx, cfg)?;
        let session = login(&ctx, slot, cfg).map_err(|f| f.error)?;
        let (token, public_key) = connect(session, cfg, true)?;
        Ok(Self {
            ctx,
            slot,
            cfg: cfg.clone(),
            public_key,
            pin_rejected: AtomicBool::new(false),
            token: Mutex::new(token),
        })
    }

    /// Label of the token holding the keys.
    #[must_use]
    pub fn token_label(&self) -> &str {
        &self.cfg.token_label
    }

    /// Runs `op` on the token; if the session or login was lost, reconnects
    /// (new session, login, objects found again) and runs it once more.
    /// The outer error is Rampart's (or the reconnect's), the inner one the
    /// token's answer to `op`.
    fn with_token<T>(
        &self,
        mut op: impl FnMut(&mut Token) -> Result<T, OpError>,
    ) -> Result<Result<T, Pkcs11Error>> {
        let mut token = self.token.lock();
        let lost = match op(&mut token) {
            Ok(value) => return Ok(Ok(value)),
            Err(OpError::Rampart(e)) => return Err(e),
            Err(OpError::Token(e)) if !session_lost(&e) => return Ok(Err(e)),
            Err(OpError::Token(e)) => e,
        };
        tracing::warn!(
            token = %self.cfg.token_label,
            error = %describe(&lost),
            "pkcs11 session lost; logging in again"
        );
        if self.pin_rejected.load(Ordering::Relaxed) {
            return Err(provider_err(format!(
                "token `{}` rejected the PIN on an earlier re-login; not trying again so the PIN does not lock; fix the PIN and restart",
                self.cfg.token_label
            )));
        }
        let session = login(&self.ctx, self.slot, &self.cfg).map_err(|f| {
            if f.pin_rejected {
                self.pin_rejected.store(true, Ordering::Relaxed);
            }
            f.error
        })?;
        let (fresh, public_key) = connect(session, &self.cfg, false)?;
        if public_key != self.public_key {
            return Err(provider_err(format!(
                "the signing key on token `{}` changed while Rampart was running; restart it",
                self.cfg.token_label
            )));
        }
        *token = fresh;
        match op(&mut token) {
            Ok(value) => Ok(Ok(value)),
            Err(OpError::Rampart(e)) => Err(e),
            Err(OpError::Token(e)) => Ok(Err(e)),
        }
    }

    fn encrypt(&self, purpose: Purpose, version: u32, dek: &DataKey) -> Result<Vec<u8>> {
        let aad = dek_aad(purpose, version);
        // A retry after a reconnect reuses this nonce; that is safe because
        // the failed attempt returned no ciphertext, so at most one
        // ciphertext under (root key, nonce) ever leaves the token.
        let nonce = aead::random_nonce()?;
        let (root_version, sealed) = self
            .with_token(|t| {
                let Some((root_version, root)) = t.current_root() else {
                    return Ok(None);
                };
                let mut iv = nonce;
                let params = GcmParams::new(&mut iv, &aad, GCM_TAG_BITS.into())?;
                let sealed = t
                    .session
                    .encrypt(&Mechanism::AesGcm(params), root, dek.expose())?;
                Ok(Some((root_version, sealed)))
            })?
            .map_err(|e| token_err("cannot wrap a data key (AES-GCM encrypt)", &e))?
            .ok_or(CryptoError::Unreachable(
                "pkcs11 provider holds no root key",
            ))?;
        if sealed.len() != KEY_LEN + TAG_LEN {
            return Err(provider_err(format!(
                "the token returned {} bytes for an AES-GCM wrapped key, expected {}",
                sealed.len(),
                KEY_LEN + TAG_LEN
            )));
        }
        let mut out = Vec::with_capacity(WRAPPED_LEN);
        out.push(WRAP_FORMAT_V1);
        out.extend_from_slice(&root_version.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }
}

impl KeyProvider for Pkcs11KeyProvider {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn wrap_data_key(&self, purpose: Purpose, version: u32, dek: &DataKey) -> Result<Vec<u8>> {
        self.encrypt(purpose, version, dek)
    }

    fn unwrap_data_key(&self, purpose: Purpose, version: u32, wrapped: &[u8]) -> Result<DataKey> {
        let fail = || CryptoError::Unwrap { purpose, version };
        if wrapped.len() != WRAPPED_LEN {
            return Err(fail());
        }
        let Some((&WRAP_FORMAT_V1, rest)) = wrapped.split_first() else {
            return Err(fail());
        };
        let Some((root_version, rest)) = rest.split_first_chunk::<4>() else {
            return Err(fail());
        };
        let Some((nonce, sealed)) = rest.split_first_chunk::<NONCE_LEN>() else {
            return Err(fail());
        };
        let root_version = u32::from_be_bytes(*root_version);
        let aad = dek_aad(purpose, version);
        let root_label = self.cfg.root_label();
        let outcome = self.with_token(|t| {
            if !t.roots.contains_key(&root_version)
                && t.roots
                    .keys()
                    .next_back()
                    .is_some_and(|v| root_version > *v)
            {
                // Another process sharing the token may have rotated.
                let found = find_roots(&t.session, &root_label)?;
                if !found.is_empty() {
                    t.roots = found;
                }
            }
            let Some(root) = t.roots.get(&root_version).copied() else {
                return Ok(None);
            };
            let mut iv = *nonce;
            let params = GcmParams::new(&mut iv, &aad, GCM_TAG_BITS.into())?;
            let plain = Zeroizing::new(t.session.decrypt(
                &Mechanism::AesGcm(params),
                root,
                sealed,
            )?);
            Ok(Some(plain))
        })?;
        match outcome {
            Ok(Some(plain)) => DataKey::from_slice(&plain).map_err(|_| fail()),
            Ok(None) => Err(fail()),
            Err(e) if token_unavailable(&e) => Err(token_err(
                "cannot unwrap a data key: the token is unavailable",
                &e,
            )),
            Err(_) => Err(fail()),
        }
    }

    fn wrapped_root_version(&self, wrapped: &[u8]) -> Result<u32> {
        match wrapped.split_first() {
            Some((&WRAP_FORMAT_V1, rest)) => rest
                .split_first_chunk::<4>()
                .map(|(v, _)| u32::from_be_bytes(*v))
                .ok_or(CryptoError::Malformed("wrapped data key too short")),
            _ => Err(CryptoError::Malformed("unknown wrapped data key format")),
        }
    }

    fn root_key_version(&self) -> u32 {
        self.token
            .lock()
            .roots
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
    }

    fn root_key_versions(&self) -> Vec<u32> {
        self.token.lock().roots.keys().copied().collect()
    }

    fn rotate_root(&self) -> Result<u32> {
        let root_label = self.cfg.root_label();
        let next = self
            .with_token(|t| {
                // Continue from what the token holds, not from what this
                // process saw at open: another process may have rotated.
                let found = find_roots(&t.session, &root_label)?;
                if !found.is_empty() {
                    t.roots = found;
                }
                let current = t.roots.keys().next_back().copied().unwrap_or(0);
                let next =
                    current
                        .checked_add(1)
                        .ok_or(OpError::Rampart(CryptoError::Unreachable(
                            "root key versions exhausted",
                        )))?;
                let handle = generate_root(&t.session, &root_label, next)?;
                t.roots.insert(next, handle);
                Ok(next)
            })?
            .map_err(|e| token_err("cannot generate the next root key version", &e))?;
        tracing::info!(
            token = %self.cfg.token_label,
            version = next,
            "generated a new pkcs11 root key version inside the token"
        );
        Ok(next)
    }

    fn destroy_root_versions_below(&self, version: u32) -> Result<usize> {
        let current = self.root_key_version();
        if version > current {
            return Err(CryptoError::InvalidRootVersion {
                requested: version,
                current,
            });
        }
        let destroyed = self
            .with_token(|t| {
                let doomed: Vec<(u32, ObjectHandle)> =
                    t.roots.range(..version).map(|(v, h)| (*v, *h)).collect();
                for (v, handle) in &doomed {
                    t.session.destroy_object(*handle)?;
                    t.roots.remove(v);
                }
                Ok(doomed.len())
            })?
            .map_err(|e| token_err("cannot destroy old root key versions", &e))?;
        if destroyed > 0 {
            tracing::info!(
                token = %self.cfg.token_label,
                below = version,
                destroyed,
                "destroyed old pkcs11 root key versions"
            );
        }
        Ok(destroyed)
    }

    fn signing_public_key(&self) -> Result<[u8; 32]> {
        Ok(self.public_key)
    }

    fn sign(&self, message: &[u8]) -> Result<[u8; 64]> {
        let signature = self
            .with_token(|t| {
                Ok(t.session.sign(
                    &Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
                    t.signing_private,
                    message,
                )?)
            })?
            .map_err(|e| token_err("cannot sign (CKM_EDDSA)", &e))?;
        <[u8; 64]>::try_from(signature.as_slice()).map_err(|_| {
            provider_err(format!(
                "the token returned a {}-byte Ed25519 signature, expected 64",
                signature.len()
            ))
        })
    }

    fn health(&self) -> ProviderHealth {
        let probe = DataKey::generate().and_then(|probe| {
            let wrapped = self.wrap_data_key(Purpose::AuditFields, 0, &probe)?;
            self.unwrap_data_key(Purpose::AuditFields, 0, &wrapped)
        });
        let (healthy, detail) = match probe {
            Ok(_) => (
                true,
                format!(
                    "token `{}` in slot {}",
                    self.cfg.token_label,
                    self.slot.id()
                ),
            ),
            Err(e) => (false, e.to_string()),
        };
        ProviderHealth {
            kind: KIND,
            root_key_version: self.root_key_version(),
            healthy,
            detail,
        }
    }
}
