//! A software WebAuthn authenticator for tests (feature `test-util`): real
//! P-256 and Ed25519 keys, authenticator data, `none` attestation objects,
//! client data and the JSON a browser's `PublicKeyCredential.toJSON()`
//! produces, built as an authenticator and a browser would. Shared by the
//! verifier's tests and the admin listener's operator sign-in tests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::missing_panics_doc,
    reason = "test support: fixed-size keys, panics are test failures"
)]

use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

/// A minimal CBOR writer (definite lengths only).
pub mod cbor {
    /// A head: major type and argument.
    pub fn head(major: u8, n: u64) -> Vec<u8> {
        let m = major << 5;
        match n {
            0..=23 => vec![m | n as u8],
            24..=0xff => vec![m | 24, n as u8],
            0x100..=0xffff => {
                let mut v = vec![m | 25];
                v.extend_from_slice(&(n as u16).to_be_bytes());
                v
            }
            _ => {
                let mut v = vec![m | 26];
                v.extend_from_slice(&(n as u32).to_be_bytes());
                v
            }
        }
    }

    /// An integer.
    pub fn int(i: i64) -> Vec<u8> {
        if i >= 0 {
            head(0, i.unsigned_abs())
        } else {
            head(1, (-1 - i).unsigned_abs())
        }
    }

    /// A byte string.
    pub fn bytes(b: &[u8]) -> Vec<u8> {
        let mut v = head(2, b.len() as u64);
        v.extend_from_slice(b);
        v
    }

    /// A text string.
    pub fn text(s: &str) -> Vec<u8> {
        let mut v = head(3, s.len() as u64);
        v.extend_from_slice(s.as_bytes());
        v
    }

    /// A map of already-encoded keys and values.
    pub fn map(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        let mut v = head(5, entries.len() as u64);
        for (k, val) in entries {
            v.extend_from_slice(k);
            v.extend_from_slice(val);
        }
        v
    }
}

use cbor::{bytes, int, map, text};

enum Key {
    P256(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A software authenticator bound to an RP id and the origin its "browser"
/// reports (both public, so a test can point them elsewhere).
pub struct SoftAuthenticator {
    key: Arc<Key>,
    /// Credential id.
    pub id: Vec<u8>,
    /// Signature counter (as last used).
    pub count: u32,
    /// The RP id whose hash goes into the authenticator data.
    pub rp: String,
    /// The origin written into the client data.
    pub origin: String,
}

impl SoftAuthenticator {
    /// A new P-256 (ES256) authenticator.
    pub fn p256(id: Vec<u8>, rp: &str, origin: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let k = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
        Self::new(Key::P256(k), id, rp, origin)
    }

    /// A new Ed25519 (EdDSA) authenticator.
    pub fn ed25519(id: Vec<u8>, rp: &str, origin: &str) -> Self {
        Self::new(Key::Ed(Ed25519KeyPair::generate().unwrap()), id, rp, origin)
    }

    fn new(key: Key, id: Vec<u8>, rp: &str, origin: &str) -> Self {
        Self {
            key: Arc::new(key),
            id,
            count: 0,
            rp: rp.to_owned(),
            origin: origin.to_owned(),
        }
    }

    /// The same key, id and counter, as a cloned device would have.
    pub fn clone_device(&self) -> Self {
        Self {
            key: self.key.clone(),
            id: self.id.clone(),
            count: self.count,
            rp: self.rp.clone(),
            origin: self.origin.clone(),
        }
    }

    /// The COSE algorithm: -7 (ES256) or -8 (EdDSA).
    pub fn algorithm(&self) -> i64 {
        match &*self.key {
            Key::P256(_) => -7,
            Key::Ed(_) => -8,
        }
    }

    /// The public key as a COSE key.
    pub fn cose(&self) -> Vec<u8> {
        match &*self.key {
            Key::P256(k) => {
                let p = k.public_key().as_ref();
                map(&[
                    (int(1), int(2)),
                    (int(3), int(-7)),
                    (int(-1), int(1)),
                    (int(-2), bytes(&p[1..33])),
                    (int(-3), bytes(&p[33..65])),
                ])
            }
            Key::Ed(k) => map(&[
                (int(1), int(1)),
                (int(3), int(-8)),
                (int(-1), int(6)),
                (int(-2), bytes(k.public_key().as_ref())),
            ]),
        }
    }

    /// Authenticator data for RP id `rp` with `flags` (UP 0x01, UV 0x04),
    /// with the attested credential when `with_cred` (AT 0x40 is added).
    pub fn auth_data(&self, rp: &str, flags: u8, with_cred: bool) -> Vec<u8> {
        let mut ad = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, rp.as_bytes())
            .as_ref()
            .to_vec();
        ad.push(flags | if with_cred { 0x40 } else { 0 });
        ad.extend_from_slice(&self.count.to_be_bytes());
        if with_cred {
            ad.extend_from_slice(&[0u8; 16]);
            ad.extend_from_slice(&(self.id.len() as u16).to_be_bytes());
            ad.extend_from_slice(&self.id);
            ad.extend_from_slice(&self.cose());
        }
        ad
    }

    /// Signs `msg` with the credential's key.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        match &*self.key {
            Key::P256(k) => k.sign(&SystemRandom::new(), msg).unwrap().as_ref().to_vec(),
            Key::Ed(k) => k.sign(msg).as_ref().to_vec(),
        }
    }

    /// `navigator.credentials.create()` → `toJSON()`, for creation options
    /// carrying `publicKey.challenge` (UP and UV set).
    pub fn create(&self, options: &Value) -> Value {
        let ch = options["publicKey"]["challenge"].as_str().unwrap();
        let att = attestation(&self.auth_data(&self.rp, 0x05, true), "none");
        let id = URL_SAFE_NO_PAD.encode(&self.id);
        json!({
            "id": id, "rawId": id, "type": "public-key",
            "response": {
                "clientDataJSON": URL_SAFE_NO_PAD.encode(client_data_b64("webauthn.create", ch, &self.origin)),
                "attestationObject": URL_SAFE_NO_PAD.encode(att),
                "transports": ["usb"],
            },
            "authenticatorAttachment": "cross-platform",
            "clientExtensionResults": {},
        })
    }

    /// `navigator.credentials.get()` → `toJSON()`; the counter grows first.
    pub fn get(&mut self, options: &Value) -> Value {
        self.count += 1;
        let ch = options["publicKey"]["challenge"].as_str().unwrap();
        let cd = client_data_b64("webauthn.get", ch, &self.origin);
        let ad = self.auth_data(&self.rp, 0x05, false);
        let mut msg = ad.clone();
        msg.extend_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &cd).as_ref());
        let id = URL_SAFE_NO_PAD.encode(&self.id);
        json!({
            "id": id, "rawId": id, "type": "public-key",
            "response": {
                "clientDataJSON": URL_SAFE_NO_PAD.encode(&cd),
                "authenticatorData": URL_SAFE_NO_PAD.encode(&ad),
                "signature": URL_SAFE_NO_PAD.encode(self.sign(&msg)),
                "userHandle": null,
            },
            "clientExtensionResults": {},
        })
    }
}

/// Client data JSON as a browser writes it.
pub fn client_data(ty: &str, challenge: &[u8], origin: &str) -> Vec<u8> {
    client_data_b64(ty, &URL_SAFE_NO_PAD.encode(challenge), origin)
}

fn client_data_b64(ty: &str, challenge_b64: &str, origin: &str) -> Vec<u8> {
    format!(
        r#"{{"type":"{ty}","challenge":"{challenge_b64}","origin":"{origin}","crossOrigin":false}}"#
    )
    .into_bytes()
}

/// An attestation object with format `fmt` and an empty statement.
pub fn attestation(auth_data: &[u8], fmt: &str) -> Vec<u8> {
    map(&[
        (text("fmt"), text(fmt)),
        (text("attStmt"), map(&[])),
        (text("authData"), bytes(auth_data)),
    ])
}
