//! A small, strict JWS compact-serialization JWT codec (ES256, EdDSA) on
//! aws-lc-rs, for the Coinbase-style profile.
//!
//! Parsing is strict: exactly three base64url parts without padding (and
//! without non-zero trailing bits), a JSON object header of at most
//! [`MAX_HEADER_BYTES`] and payload of at most [`MAX_PAYLOAD_BYTES`]
//! (decoded), duplicate JSON keys rejected at any depth, `alg` one of
//! `ES256` / `EdDSA` (`none` and every other value rejected), `crit`
//! rejected (no extension is understood), `typ` if present `JWT`, `kid` a
//! non-empty string, the signature exactly 64 bytes (ES256 is the raw
//! `r ‖ s` form of RFC 7518 §3.4, not DER).

use std::fmt;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING, ED25519,
};
use base64::Engine as _;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::common::{self, b64};
use crate::{AuthError, KeyMaterial};

/// Largest decoded JOSE header, bytes.
pub const MAX_HEADER_BYTES: usize = 1024;
/// Largest decoded payload, bytes.
pub const MAX_PAYLOAD_BYTES: usize = 4096;
/// Length of an ES256 (raw `r ‖ s`) or Ed25519 signature, bytes.
pub const SIGNATURE_BYTES: usize = 64;

/// Largest base64url text for `n` decoded bytes.
const fn encoded_len(n: usize) -> usize {
    n.div_ceil(3).saturating_mul(4)
}

/// A supported JWS algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// ECDSA P-256 with SHA-256, raw `r ‖ s` signature.
    Es256,
    /// Ed25519.
    EdDsa,
}

impl Alg {
    /// The `alg` header value.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::EdDsa => "EdDSA",
        }
    }
}

/// The validated JOSE header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `alg`.
    pub alg: Alg,
    /// `kid` (non-empty).
    pub kid: String,
    /// `nonce`, when present (a string).
    pub nonce: Option<String>,
    /// `typ`, when present (always `JWT`, any case).
    pub typ: Option<String>,
}

/// A token split and decoded, header and payload parsed as JSON objects,
/// the header not yet validated (see [`Decoded::header`]).
#[derive(Clone, PartialEq)]
pub struct Decoded<'a> {
    /// The JOSE header object.
    pub header: Map<String, Value>,
    /// The claims object.
    pub payload: Map<String, Value>,
    /// `base64url(header) "." base64url(payload)`: the signed bytes.
    pub signing_input: &'a str,
    /// The decoded signature.
    pub signature: Vec<u8>,
}

impl fmt::Debug for Decoded<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoded")
            .field("header", &self.header)
            .field("payload", &self.payload)
            .finish_non_exhaustive()
    }
}

fn malformed(detail: &str) -> AuthError {
    AuthError::Malformed(detail.to_owned())
}

fn decode_part(part: &str, max: usize, what: &str) -> Result<Vec<u8>, AuthError> {
    if part.len() > encoded_len(max) {
        return Err(AuthError::Malformed(format!(
            "jwt {what} longer than {max} bytes"
        )));
    }
    let bytes = b64::URL_SAFE_NO_PAD.decode(part).map_err(|_| {
        AuthError::Malformed(format!("jwt {what} is not base64url without padding"))
    })?;
    if bytes.len() > max {
        return Err(AuthError::Malformed(format!(
            "jwt {what} longer than {max} bytes"
        )));
    }
    Ok(bytes)
}

/// Splits and decodes a compact JWT: three base64url parts, JSON objects
/// within the size limits, no duplicate keys. Does not validate the header
/// (see [`Decoded::header`]) nor any claim, and verifies nothing.
///
/// # Errors
///
/// [`AuthError::Malformed`] with the reason.
pub fn decode(token: &str) -> Result<Decoded<'_>, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("jwt must have exactly three dot-separated parts"));
    };
    let signing_input = token
        .get(..header.len().saturating_add(1).saturating_add(payload.len()))
        .ok_or_else(|| malformed("jwt must have exactly three dot-separated parts"))?;
    let header_bytes = decode_part(header, MAX_HEADER_BYTES, "header")?;
    let payload_bytes = decode_part(payload, MAX_PAYLOAD_BYTES, "payload")?;
    let signature = decode_part(signature, SIGNATURE_BYTES, "signature")?;
    let header = common::strict_json_object(&header_bytes, "jwt header")?;
    let payload = common::strict_json_object(&payload_bytes, "jwt payload")?;
    Ok(Decoded {
        header,
        payload,
        signing_input,
        signature,
    })
}

impl Decoded<'_> {
    /// Validates the JOSE header (see the module docs) and the signature's
    /// length for its `alg`.
    ///
    /// # Errors
    ///
    /// [`AuthError::Malformed`] with the reason.
    pub fn header(&self) -> Result<Header, AuthError> {
        let alg = match self.header.get("alg") {
            Some(Value::String(alg)) => match alg.as_str() {
                "ES256" => Alg::Es256,
                "EdDSA" => Alg::EdDsa,
                other if other.eq_ignore_ascii_case("none") => {
                    return Err(malformed("jwt alg none is rejected"))
                }
                _ => return Err(malformed("jwt alg must be ES256 or EdDSA")),
            },
            Some(_) => return Err(malformed("jwt alg must be a string")),
            None => return Err(malformed("jwt header has no alg")),
        };
        if self.header.contains_key("crit") {
            return Err(malformed("jwt crit header is not supported"));
        }
        let typ = match self.header.get("typ") {
            None => None,
            Some(Value::String(typ)) if typ.eq_ignore_ascii_case("JWT") => Some(typ.clone()),
            Some(_) => return Err(malformed("jwt typ must be JWT")),
        };
        let kid = match self.header.get("kid") {
            Some(Value::String(kid)) if !kid.is_empty() => kid.clone(),
            Some(_) => return Err(malformed("jwt kid must be a non-empty string")),
            None => return Err(malformed("jwt header has no kid")),
        };
        let nonce = match self.header.get("nonce") {
            None => None,
            Some(Value::String(nonce)) => Some(nonce.clone()),
            Some(_) => return Err(malformed("jwt nonce must be a string")),
        };
        if self.signature.len() != SIGNATURE_BYTES {
            return Err(malformed("jwt signature must be 64 bytes"));
        }
        Ok(Header {
            alg,
            kid,
            nonce,
            typ,
        })
    }
}

/// A decoded token with a validated header.
#[derive(Debug, Clone, PartialEq)]
pub struct Jwt<'a> {
    /// The validated header.
    pub header: Header,
    /// The rest of the token.
    pub decoded: Decoded<'a>,
}

/// [`decode`] then [`Decoded::header`]: the full structural parse (what the
/// `jwt` fuzz target drives).
///
/// # Errors
///
/// [`AuthError::Malformed`] with the reason.
pub fn parse(token: &str) -> Result<Jwt<'_>, AuthError> {
    let decoded = decode(token)?;
    let header = decoded.header()?;
    Ok(Jwt { header, decoded })
}

impl Jwt<'_> {
    /// Verifies the signature with `key`, which must fit `alg`.
    ///
    /// # Errors
    ///
    /// [`AuthError::AlgorithmMismatch`] when the key does not fit `alg`;
    /// [`AuthError::BadSignature`] when the signature does not verify.
    pub fn verify_signature(&self, key: &KeyMaterial) -> Result<(), AuthError> {
        let message = self.decoded.signing_input.as_bytes();
        let signature = self.decoded.signature.as_slice();
        let result = match (self.header.alg, key) {
            (Alg::Es256, KeyMaterial::EcdsaP256(public)) => {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public).verify(message, signature)
            }
            (Alg::EdDsa, KeyMaterial::Ed25519(public)) => {
                UnparsedPublicKey::new(&ED25519, public).verify(message, signature)
            }
            (Alg::Es256, _) => {
                return Err(AuthError::AlgorithmMismatch(
                    "jwt alg ES256 needs an ECDSA P-256 key",
                ))
            }
            (Alg::EdDsa, _) => {
                return Err(AuthError::AlgorithmMismatch(
                    "jwt alg EdDSA needs an Ed25519 key",
                ))
            }
        };
        result.map_err(|_| AuthError::BadSignature)
    }
}

/// A JWT signing key: ES256 (P-256) or EdDSA (Ed25519).
pub enum JwtSigner {
    /// ECDSA P-256.
    Es256(EcdsaKeyPair),
    /// Ed25519.
    EdDsa(Ed25519KeyPair),
}

impl fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtSigner::Es256(_) => f.write_str("JwtSigner::Es256(..)"),
            JwtSigner::EdDsa(_) => f.write_str("JwtSigner::EdDsa(..)"),
        }
    }
}

fn pem_decode(pem: &str) -> Result<(String, Zeroizing<Vec<u8>>), AuthError> {
    // Tolerate a PEM pasted with literal `\n` escapes (as in env variables).
    let pem = Zeroizing::new(pem.replace("\\n", "\n"));
    let bad = || malformed("not a PEM private key");
    let (_, rest) = pem.split_once("-----BEGIN ").ok_or_else(bad)?;
    let (label, rest) = rest.split_once("-----").ok_or_else(bad)?;
    let end_marker = format!("-----END {label}-----");
    let (body, _) = rest.split_once(end_marker.as_str()).ok_or_else(bad)?;
    let text: Zeroizing<String> =
        Zeroizing::new(body.chars().filter(|c| !c.is_ascii_whitespace()).collect());
    let der = Zeroizing::new(
        b64::STANDARD_LENIENT_PAD
            .decode(text.as_bytes())
            .map_err(|_| malformed("PEM body is not base64"))?,
    );
    Ok((label.to_owned(), der))
}

impl JwtSigner {
    /// Generates a fresh key.
    ///
    /// # Errors
    ///
    /// [`AuthError::Malformed`] if the system random source fails.
    pub fn generate(alg: Alg) -> Result<Self, AuthError> {
        match alg {
            Alg::Es256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .map(JwtSigner::Es256)
                .map_err(|_| malformed("key generation failed")),
            Alg::EdDsa => Ed25519KeyPair::generate()
                .map(JwtSigner::EdDsa)
                .map_err(|_| malformed("key generation failed")),
        }
    }

    /// Reads a private key from PEM: `EC PRIVATE KEY` (SEC1 / RFC 5915, as
    /// Coinbase hands out) or `PRIVATE KEY` (PKCS#8, P-256 or Ed25519).
    /// Literal `\n` sequences are read as newlines.
    ///
    /// # Errors
    ///
    /// [`AuthError::Malformed`] when it is not such a key (the error never
    /// contains key material).
    pub fn from_pem(pem: &str) -> Result<Self, AuthError> {
        let (label, der) = pem_decode(pem)?;
        match label.as_str() {
            "EC PRIVATE KEY" => {
                EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
                    .map(JwtSigner::Es256)
                    .map_err(|_| malformed("EC PRIVATE KEY is not a P-256 key"))
            }
            "PRIVATE KEY" => {
                if let Ok(pair) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der) {
                    return Ok(JwtSigner::Es256(pair));
                }
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
                    .map(JwtSigner::EdDsa)
                    .map_err(|_| malformed("PRIVATE KEY is neither P-256 nor Ed25519"))
            }
            _ => Err(malformed("PEM label must be EC PRIVATE KEY or PRIVATE KEY")),
        }
    }

    /// The key as PEM: `EC PRIVATE KEY` (SEC1) for P-256, as Coinbase
    /// hands it out; `PRIVATE KEY` (PKCS#8) for Ed25519.
    ///
    /// # Errors
    ///
    /// [`AuthError::Malformed`] if serialization fails.
    pub fn to_pem(&self) -> Result<Zeroizing<String>, AuthError> {
        let fail = |_| malformed("key serialization failed");
        let (label, der): (&str, Zeroizing<Vec<u8>>) = match self {
            JwtSigner::Es256(pair) => (
                "EC PRIVATE KEY",
                Zeroizing::new(pair.private_key().as_der().map_err(fail)?.as_ref().to_vec()),
            ),
            JwtSigner::EdDsa(pair) => (
                "PRIVATE KEY",
                Zeroizing::new(pair.to_pkcs8().map_err(fail)?.as_ref().to_vec()),
            ),
        };
        let body = Zeroizing::new(b64::STANDARD_LENIENT_PAD.encode(der.as_slice()));
        let mut pem = Zeroizing::new(format!("-----BEGIN {label}-----\n"));
        for line in body.as_bytes().chunks(64) {
            pem.push_str(
                std::str::from_utf8(line).map_err(|_| malformed("key serialization failed"))?,
            );
            pem.push('\n');
        }
        pem.push_str(&format!("-----END {label}-----\n"));
        Ok(pem)
    }

    /// The algorithm this key signs with.
    #[must_use]
    pub fn alg(&self) -> Alg {
        match self {
            JwtSigner::Es256(_) => Alg::Es256,
            JwtSigner::EdDsa(_) => Alg::EdDsa,
        }
    }

    /// The public key, as the gateway stores it.
    ///
    /// # Errors
    ///
    /// [`AuthError::Malformed`] if the public key has an unexpected length.
    pub fn public_key(&self) -> Result<KeyMaterial, AuthError> {
        match self {
            JwtSigner::Es256(pair) => {
                Ok(KeyMaterial::EcdsaP256(pair.public_key().as_ref().to_vec()))
            }
            JwtSigner::EdDsa(pair) => <[u8; 32]>::try_from(pair.public_key().as_ref())
                .map(KeyMaterial::Ed25519)
                .map_err(|_| malformed("unexpected Ed25519 public key length")),
        }
    }

    /// Signs `message`: raw `r ‖ s` (ES256) or Ed25519, 64 bytes.
    ///
    /// # Errors
    ///
    /// [`AuthError::Malformed`] if signing fails.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, AuthError> {
        match self {
            JwtSigner::Es256(pair) => pair
                .sign(&SystemRandom::new(), message)
                .map(|sig| sig.as_ref().to_vec())
                .map_err(|_| malformed("signing failed")),
            JwtSigner::EdDsa(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }
}

/// Encodes and signs a compact JWT. `header` gets `alg` set from the signer
/// (other members as given); both objects are serialized as compact JSON.
///
/// # Errors
///
/// [`AuthError::Malformed`] if serialization or signing fails.
pub fn encode(
    signer: &JwtSigner,
    header: &Map<String, Value>,
    payload: &Map<String, Value>,
) -> Result<String, AuthError> {
    let mut header = header.clone();
    header.insert(
        "alg".to_owned(),
        Value::String(signer.alg().as_str().to_owned()),
    );
    let header_json =
        serde_json::to_vec(&header).map_err(|_| malformed("jwt header serialization failed"))?;
    let payload_json =
        serde_json::to_vec(payload).map_err(|_| malformed("jwt payload serialization failed"))?;
    let mut token = b64::URL_SAFE_NO_PAD.encode(header_json);
    token.push('.');
    token.push_str(&b64::URL_SAFE_NO_PAD.encode(payload_json));
    let signature = signer.sign(token.as_bytes())?;
    token.push('.');
    token.push_str(&b64::URL_SAFE_NO_PAD.encode(signature));
    Ok(token)
}
