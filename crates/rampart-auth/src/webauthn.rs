//! WebAuthn (Level 2) relying-party verification, the building block for
//! operator sign-in on the admin side: registration ceremonies with
//! `none` attestation and authentication assertions, for ES256 (P-256)
//! and EdDSA (Ed25519) credentials, verified with aws-lc-rs.
//!
//! Why not `webauthn-rs`: it depends on `openssl`, which `deny.toml` bans
//! (one crypto stack). This module implements only what a relying party
//! must check (W3C WebAuthn §7.1 and §7.2): the client data's type,
//! challenge and origin, the RP id hash, the user-present and (when
//! required) user-verified flags, the credential public key (COSE), the
//! assertion signature over `authenticatorData ‖ SHA-256(clientDataJSON)`,
//! and a signature counter that must grow (a cloned authenticator).
//! Attestation statements other than `none` are refused: the gateway does
//! not trust authenticator vendors, it trusts the operator who enrols.
//!
//! The CBOR reader accepts only what these structures use: definite
//! lengths, at most 8 levels, at most 16 KiB; anything else is an error,
//! never a panic.
//!
//! Not wired to the admin listener yet: operator accounts and sessions
//! are the next step.

use aws_lc_rs::digest;
use aws_lc_rs::signature::{self, UnparsedPublicKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use subtle::ConstantTimeEq;

/// Largest CBOR input read.
const MAX_CBOR: usize = 16 * 1024;
/// Deepest CBOR nesting read.
const MAX_DEPTH: usize = 8;

/// Why a ceremony failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebauthnError {
    /// A structure does not parse (CBOR, authenticator data, COSE key,
    /// client data JSON).
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// The client data is for another ceremony, challenge or origin.
    #[error("client data mismatch: {0}")]
    ClientData(&'static str),
    /// The authenticator data is for another RP id.
    #[error("the RP id hash does not match")]
    RpId,
    /// A required flag is not set (user present / user verified).
    #[error("flag not set: {0}")]
    Flags(&'static str),
    /// The key type or algorithm is not supported.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// The assertion signature does not verify.
    #[error("the assertion signature does not verify")]
    Signature,
    /// The signature counter did not grow: a cloned authenticator.
    #[error("the signature counter did not increase")]
    Counter,
}

/// A credential public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialKey {
    /// ES256: P-256, uncompressed SEC1 point (65 bytes).
    Es256(Vec<u8>),
    /// EdDSA: Ed25519 (32 bytes).
    Ed25519([u8; 32]),
}

/// A registered credential, as stored for an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// Credential id (from the authenticator).
    pub id: Vec<u8>,
    /// Its public key.
    pub key: CredentialKey,
    /// The last signature counter seen (0: the authenticator keeps none).
    pub sign_count: u32,
}

/// What the relying party expects of a ceremony.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// RP id (a domain, e.g. `admin.venue.example`).
    pub rp_id: &'a str,
    /// Origin of the page (`https://admin.venue.example`).
    pub origin: &'a str,
    /// The challenge the server issued (random, single use).
    pub challenge: &'a [u8],
    /// Require the user-verified flag (PIN or biometric).
    pub require_uv: bool,
}

// ------------------------------------------------------------------ CBOR

/// A decoded CBOR item (the subset WebAuthn uses).
#[derive(Debug, Clone, PartialEq)]
enum Cbor {
    Int(i128),
    Bytes(Vec<u8>),
    Text(String),
    Array(Vec<Cbor>),
    Map(Vec<(Cbor, Cbor)>),
    Bool(bool),
    Null,
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, WebauthnError> {
        let v = *self
            .b
            .get(self.pos)
            .ok_or(WebauthnError::Malformed("cbor"))?;
        self.pos += 1;
        Ok(v)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WebauthnError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(WebauthnError::Malformed("cbor"))?;
        let s = self
            .b
            .get(self.pos..end)
            .ok_or(WebauthnError::Malformed("cbor"))?;
        self.pos = end;
        Ok(s)
    }

    fn arg(&mut self, info: u8) -> Result<u64, WebauthnError> {
        let n = match info {
            0..=23 => return Ok(u64::from(info)),
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            _ => return Err(WebauthnError::Malformed("cbor (indefinite length)")),
        };
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |a, b| (a << 8) | u64::from(*b)))
    }

    fn len(&mut self, info: u8) -> Result<usize, WebauthnError> {
        let n = self.arg(info)?;
        let n = usize::try_from(n).map_err(|_| WebauthnError::Malformed("cbor"))?;
        // No item can be longer than what is left.
        if n > self.b.len().saturating_sub(self.pos) {
            return Err(WebauthnError::Malformed("cbor"));
        }
        Ok(n)
    }

    fn item(&mut self, depth: usize) -> Result<Cbor, WebauthnError> {
        if depth > MAX_DEPTH {
            return Err(WebauthnError::Malformed("cbor (too deep)"));
        }
        let first = self.byte()?;
        let (major, info) = (first >> 5, first & 0x1f);
        Ok(match major {
            0 => Cbor::Int(i128::from(self.arg(info)?)),
            1 => Cbor::Int(-1 - i128::from(self.arg(info)?)),
            2 => {
                let n = self.len(info)?;
                Cbor::Bytes(self.take(n)?.to_vec())
            }
            3 => {
                let n = self.len(info)?;
                let s = std::str::from_utf8(self.take(n)?)
                    .map_err(|_| WebauthnError::Malformed("cbor text"))?;
                Cbor::Text(s.to_owned())
            }
            4 => {
                let n = self.len(info)?;
                let mut v = Vec::with_capacity(n.min(64));
                for _ in 0..n {
                    v.push(self.item(depth + 1)?);
                }
                Cbor::Array(v)
            }
            5 => {
                let n = self.len(info)?;
                let mut v = Vec::with_capacity(n.min(64));
                for _ in 0..n {
                    let k = self.item(depth + 1)?;
                    let val = self.item(depth + 1)?;
                    if v.iter().any(|(pk, _)| *pk == k) {
                        return Err(WebauthnError::Malformed("cbor (duplicate map key)"));
                    }
                    v.push((k, val));
                }
                Cbor::Map(v)
            }
            7 => match info {
                20 => Cbor::Bool(false),
                21 => Cbor::Bool(true),
                22 => Cbor::Null,
                _ => return Err(WebauthnError::Malformed("cbor (simple value)")),
            },
            _ => return Err(WebauthnError::Malformed("cbor (tag)")),
        })
    }
}

/// One CBOR item from the front of `b`, and how many bytes it used.
fn cbor_prefix(b: &[u8]) -> Result<(Cbor, usize), WebauthnError> {
    if b.len() > MAX_CBOR {
        return Err(WebauthnError::Malformed("cbor (too large)"));
    }
    let mut r = Reader { b, pos: 0 };
    let v = r.item(0)?;
    Ok((v, r.pos))
}

/// Exactly one CBOR item.
fn cbor(b: &[u8]) -> Result<Cbor, WebauthnError> {
    let (v, used) = cbor_prefix(b)?;
    if used != b.len() {
        return Err(WebauthnError::Malformed("cbor (trailing bytes)"));
    }
    Ok(v)
}

fn get<'a>(map: &'a [(Cbor, Cbor)], key: &Cbor) -> Option<&'a Cbor> {
    map.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

// ------------------------------------------------------------ COSE keys

/// Parses a COSE_Key (RFC 9053): EC2 P-256 with ES256, or OKP Ed25519
/// with EdDSA.
fn cose_key(v: &Cbor) -> Result<CredentialKey, WebauthnError> {
    let Cbor::Map(m) = v else {
        return Err(WebauthnError::Malformed("COSE key"));
    };
    let int = |k: i128| get(m, &Cbor::Int(k));
    let bytes = |k: i128| match int(k) {
        Some(Cbor::Bytes(b)) => Some(b.as_slice()),
        _ => None,
    };
    match (int(1), int(3)) {
        // kty EC2, alg ES256
        (Some(Cbor::Int(2)), Some(Cbor::Int(-7))) => {
            if int(-1) != Some(&Cbor::Int(1)) {
                return Err(WebauthnError::Unsupported("EC2 curve other than P-256"));
            }
            let (Some(x), Some(y)) = (bytes(-2), bytes(-3)) else {
                return Err(WebauthnError::Malformed("COSE EC2 key"));
            };
            if x.len() != 32 || y.len() != 32 {
                return Err(WebauthnError::Malformed("COSE EC2 key"));
            }
            let mut point = Vec::with_capacity(65);
            point.push(4);
            point.extend_from_slice(x);
            point.extend_from_slice(y);
            Ok(CredentialKey::Es256(point))
        }
        // kty OKP, alg EdDSA
        (Some(Cbor::Int(1)), Some(Cbor::Int(-8))) => {
            if int(-1) != Some(&Cbor::Int(6)) {
                return Err(WebauthnError::Unsupported("OKP curve other than Ed25519"));
            }
            let x = bytes(-2).ok_or(WebauthnError::Malformed("COSE OKP key"))?;
            let key: [u8; 32] = x
                .try_into()
                .map_err(|_| WebauthnError::Malformed("COSE OKP key"))?;
            Ok(CredentialKey::Ed25519(key))
        }
        _ => Err(WebauthnError::Unsupported("key type or algorithm")),
    }
}

// ---------------------------------------------------- authenticator data

/// Flag bits of the authenticator data.
const UP: u8 = 0x01;
const UV: u8 = 0x04;
const AT: u8 = 0x40;

/// Parsed authenticator data.
#[derive(Debug)]
struct AuthData {
    rp_id_hash: [u8; 32],
    flags: u8,
    sign_count: u32,
    /// (credential id, public key) when the AT flag is set.
    attested: Option<(Vec<u8>, CredentialKey)>,
}

fn auth_data(b: &[u8]) -> Result<AuthData, WebauthnError> {
    let bad = || WebauthnError::Malformed("authenticator data");
    let rp_id_hash: [u8; 32] = b.get(..32).ok_or_else(bad)?.try_into().map_err(|_| bad())?;
    let flags = *b.get(32).ok_or_else(bad)?;
    let count: [u8; 4] = b
        .get(33..37)
        .ok_or_else(bad)?
        .try_into()
        .map_err(|_| bad())?;
    let rest = b.get(37..).ok_or_else(bad)?;
    let attested = if flags & AT != 0 {
        // aaguid (16) | credential id length (2) | id | COSE key
        let len_bytes = rest.get(16..18).ok_or_else(bad)?;
        let id_len = usize::from(u16::from_be_bytes([
            *len_bytes.first().ok_or_else(bad)?,
            *len_bytes.get(1).ok_or_else(bad)?,
        ]));
        let id = rest.get(18..18 + id_len).ok_or_else(bad)?.to_vec();
        let key_bytes = rest.get(18 + id_len..).ok_or_else(bad)?;
        let (key, used) = cbor_prefix(key_bytes)?;
        // Extensions (ED flag) would follow; they are not accepted.
        if used != key_bytes.len() {
            return Err(WebauthnError::Unsupported("authenticator extensions"));
        }
        Some((id, cose_key(&key)?))
    } else {
        if !rest.is_empty() {
            return Err(WebauthnError::Unsupported("authenticator extensions"));
        }
        None
    };
    Ok(AuthData {
        rp_id_hash,
        flags,
        sign_count: u32::from_be_bytes(count),
        attested,
    })
}

// ------------------------------------------------------------ ceremonies

/// Checks `clientDataJSON`: type, challenge (base64url, constant time)
/// and origin. Returns its SHA-256.
fn client_data(json: &[u8], ty: &'static str, e: &Expect<'_>) -> Result<[u8; 32], WebauthnError> {
    #[derive(serde::Deserialize)]
    struct ClientData {
        #[serde(rename = "type")]
        ty: String,
        challenge: String,
        origin: String,
        #[serde(rename = "crossOrigin", default)]
        cross_origin: bool,
    }
    if json.len() > MAX_CBOR {
        return Err(WebauthnError::Malformed("client data"));
    }
    let cd: ClientData =
        serde_json::from_slice(json).map_err(|_| WebauthnError::Malformed("client data"))?;
    if cd.ty != ty {
        return Err(WebauthnError::ClientData("type"));
    }
    let challenge = URL_SAFE_NO_PAD
        .decode(cd.challenge.trim_end_matches('='))
        .map_err(|_| WebauthnError::ClientData("challenge"))?;
    if !bool::from(challenge.ct_eq(e.challenge)) {
        return Err(WebauthnError::ClientData("challenge"));
    }
    if cd.origin != e.origin {
        return Err(WebauthnError::ClientData("origin"));
    }
    if cd.cross_origin {
        return Err(WebauthnError::ClientData("cross-origin"));
    }
    let d = digest::digest(&digest::SHA256, json);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    Ok(out)
}

fn check_common(ad: &AuthData, e: &Expect<'_>) -> Result<(), WebauthnError> {
    let want = digest::digest(&digest::SHA256, e.rp_id.as_bytes());
    if !bool::from(ad.rp_id_hash.ct_eq(want.as_ref())) {
        return Err(WebauthnError::RpId);
    }
    if ad.flags & UP == 0 {
        return Err(WebauthnError::Flags("user present"));
    }
    if e.require_uv && ad.flags & UV == 0 {
        return Err(WebauthnError::Flags("user verified"));
    }
    Ok(())
}

/// Verifies a registration (`navigator.credentials.create`) response:
/// `clientDataJSON` and the `attestationObject`, `none` attestation only.
///
/// # Errors
/// Any [`WebauthnError`].
pub fn register(
    e: &Expect<'_>,
    client_data_json: &[u8],
    attestation_object: &[u8],
) -> Result<Credential, WebauthnError> {
    client_data(client_data_json, "webauthn.create", e)?;
    let Cbor::Map(att) = cbor(attestation_object)? else {
        return Err(WebauthnError::Malformed("attestation object"));
    };
    match get(&att, &Cbor::Text("fmt".into())) {
        Some(Cbor::Text(f)) if f == "none" => {}
        Some(Cbor::Text(_)) => return Err(WebauthnError::Unsupported("attestation format")),
        _ => return Err(WebauthnError::Malformed("attestation object")),
    }
    match get(&att, &Cbor::Text("attStmt".into())) {
        Some(Cbor::Map(m)) if m.is_empty() => {}
        _ => return Err(WebauthnError::Malformed("attestation statement")),
    }
    let Some(Cbor::Bytes(ad)) = get(&att, &Cbor::Text("authData".into())) else {
        return Err(WebauthnError::Malformed("attestation object"));
    };
    let ad = auth_data(ad)?;
    check_common(&ad, e)?;
    let (id, key) = ad.attested.ok_or(WebauthnError::Malformed(
        "authenticator data (no credential)",
    ))?;
    if id.is_empty() || id.len() > 1023 {
        return Err(WebauthnError::Malformed("credential id"));
    }
    Ok(Credential {
        id,
        key,
        sign_count: ad.sign_count,
    })
}

/// Verifies an assertion (`navigator.credentials.get`) of `cred`; returns
/// the new signature counter to store.
///
/// # Errors
/// Any [`WebauthnError`]; [`WebauthnError::Counter`] for a counter that
/// did not grow (a cloned authenticator).
pub fn authenticate(
    e: &Expect<'_>,
    cred: &Credential,
    client_data_json: &[u8],
    authenticator_data: &[u8],
    sig: &[u8],
) -> Result<u32, WebauthnError> {
    let cd_hash = client_data(client_data_json, "webauthn.get", e)?;
    let ad = auth_data(authenticator_data)?;
    if ad.attested.is_some() {
        return Err(WebauthnError::Malformed(
            "authenticator data (unexpected credential)",
        ));
    }
    check_common(&ad, e)?;
    let mut signed = Vec::with_capacity(authenticator_data.len() + 32);
    signed.extend_from_slice(authenticator_data);
    signed.extend_from_slice(&cd_hash);
    let ok = match &cred.key {
        CredentialKey::Es256(point) => {
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, point).verify(&signed, sig)
        }
        CredentialKey::Ed25519(k) => {
            UnparsedPublicKey::new(&signature::ED25519, k).verify(&signed, sig)
        }
    };
    ok.map_err(|_| WebauthnError::Signature)?;
    // A counter of 0 on both sides means the authenticator keeps none.
    if (ad.sign_count != 0 || cred.sign_count != 0) && ad.sign_count <= cred.sign_count {
        return Err(WebauthnError::Counter);
    }
    Ok(ad.sign_count)
}
