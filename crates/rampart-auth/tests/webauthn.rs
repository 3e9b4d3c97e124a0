//! WebAuthn relying-party checks against a software authenticator (real
//! P-256 and Ed25519 keys, CBOR and client data built as a browser would).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs,
    reason = "test code"
)]

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use proptest::prelude::*;
use rampart_auth::webauthn::{authenticate, register, CredentialKey, Expect, WebauthnError};

const RP: &str = "admin.venue.example";
const ORIGIN: &str = "https://admin.venue.example";

// A minimal CBOR writer for the test authenticator.
fn head(major: u8, n: u64) -> Vec<u8> {
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
fn int(i: i64) -> Vec<u8> {
    if i >= 0 {
        head(0, i as u64)
    } else {
        head(1, (-1 - i) as u64)
    }
}
fn bytes(b: &[u8]) -> Vec<u8> {
    let mut v = head(2, b.len() as u64);
    v.extend_from_slice(b);
    v
}
fn text(s: &str) -> Vec<u8> {
    let mut v = head(3, s.len() as u64);
    v.extend_from_slice(s.as_bytes());
    v
}
fn map(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut v = head(5, entries.len() as u64);
    for (k, val) in entries {
        v.extend_from_slice(k);
        v.extend_from_slice(val);
    }
    v
}

enum Key {
    P256(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

struct Authenticator {
    key: Key,
    id: Vec<u8>,
    count: u32,
}

impl Authenticator {
    fn p256() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let k = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
        Self {
            key: Key::P256(k),
            id: vec![7; 16],
            count: 0,
        }
    }
    fn ed25519() -> Self {
        Self {
            key: Key::Ed(Ed25519KeyPair::generate().unwrap()),
            id: vec![9; 32],
            count: 0,
        }
    }
    fn cose(&self) -> Vec<u8> {
        match &self.key {
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
    fn auth_data(&self, rp: &str, flags: u8, with_cred: bool) -> Vec<u8> {
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
    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        match &self.key {
            Key::P256(k) => k.sign(&SystemRandom::new(), msg).unwrap().as_ref().to_vec(),
            Key::Ed(k) => k.sign(msg).as_ref().to_vec(),
        }
    }
}

fn client_data(ty: &str, challenge: &[u8], origin: &str) -> Vec<u8> {
    format!(
        r#"{{"type":"{ty}","challenge":"{}","origin":"{origin}","crossOrigin":false}}"#,
        URL_SAFE_NO_PAD.encode(challenge)
    )
    .into_bytes()
}

fn attestation(ad: &[u8], fmt: &str) -> Vec<u8> {
    map(&[
        (text("fmt"), text(fmt)),
        (text("attStmt"), map(&[])),
        (text("authData"), bytes(ad)),
    ])
}

fn expect(challenge: &[u8]) -> Expect<'_> {
    Expect {
        rp_id: RP,
        origin: ORIGIN,
        challenge,
        require_uv: true,
    }
}

fn assertion(a: &Authenticator, challenge: &[u8], flags: u8) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let cd = client_data("webauthn.get", challenge, ORIGIN);
    let ad = a.auth_data(RP, flags, false);
    let mut msg = ad.clone();
    msg.extend_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &cd).as_ref());
    let sig = a.sign(&msg);
    (cd, ad, sig)
}

#[test]
fn register_then_sign_in_with_p256_and_ed25519() {
    for mut a in [Authenticator::p256(), Authenticator::ed25519()] {
        let ch = [1u8; 32];
        let cred = register(
            &expect(&ch),
            &client_data("webauthn.create", &ch, ORIGIN),
            &attestation(&a.auth_data(RP, 0x05, true), "none"),
        )
        .unwrap();
        assert_eq!(cred.id, a.id);
        assert!(matches!(
            (&a.key, &cred.key),
            (Key::P256(_), CredentialKey::Es256(_)) | (Key::Ed(_), CredentialKey::Ed25519(_))
        ));
        a.count = 5;
        let ch2 = [2u8; 32];
        let (cd, ad, sig) = assertion(&a, &ch2, 0x05);
        assert_eq!(authenticate(&expect(&ch2), &cred, &cd, &ad, &sig), Ok(5));
    }
}

#[test]
fn every_relying_party_check_refuses() {
    let mut a = Authenticator::p256();
    let ch = [3u8; 32];
    let e = expect(&ch);
    let att = attestation(&a.auth_data(RP, 0x05, true), "none");
    let create = client_data("webauthn.create", &ch, ORIGIN);
    let cred = register(&e, &create, &att).unwrap();
    // Registration: wrong type, challenge, origin, RP id, flags, format.
    assert_eq!(
        register(&e, &client_data("webauthn.get", &ch, ORIGIN), &att),
        Err(WebauthnError::ClientData("type"))
    );
    assert_eq!(
        register(&e, &client_data("webauthn.create", &[4; 32], ORIGIN), &att),
        Err(WebauthnError::ClientData("challenge"))
    );
    assert_eq!(
        register(
            &e,
            &client_data("webauthn.create", &ch, "https://evil.example"),
            &att
        ),
        Err(WebauthnError::ClientData("origin"))
    );
    assert_eq!(
        register(
            &e,
            &create,
            &attestation(&a.auth_data("evil.example", 0x05, true), "none")
        ),
        Err(WebauthnError::RpId)
    );
    assert_eq!(
        register(
            &e,
            &create,
            &attestation(&a.auth_data(RP, 0x04, true), "none")
        ),
        Err(WebauthnError::Flags("user present"))
    );
    assert_eq!(
        register(
            &e,
            &create,
            &attestation(&a.auth_data(RP, 0x01, true), "none")
        ),
        Err(WebauthnError::Flags("user verified"))
    );
    assert_eq!(
        register(
            &e,
            &create,
            &attestation(&a.auth_data(RP, 0x05, true), "packed")
        ),
        Err(WebauthnError::Unsupported("attestation format"))
    );
    // Sign-in: a bad signature, a signature over another challenge, a counter that did not grow.
    a.count = 1;
    let (cd, ad, mut sig) = assertion(&a, &ch, 0x05);
    assert_eq!(authenticate(&e, &cred, &cd, &ad, &sig), Ok(1));
    let last = sig.len() - 1;
    sig[last] ^= 1;
    assert_eq!(
        authenticate(&e, &cred, &cd, &ad, &sig),
        Err(WebauthnError::Signature)
    );
    let (_, ad2, sig2) = assertion(&a, &[9; 32], 0x05);
    assert_eq!(
        authenticate(
            &e,
            &cred,
            &client_data("webauthn.get", &ch, ORIGIN),
            &ad2,
            &sig2
        ),
        Err(WebauthnError::Signature)
    );
    let mut seen = cred.clone();
    seen.sign_count = 1;
    let (cd, ad, sig) = assertion(&a, &ch, 0x05);
    assert_eq!(
        authenticate(&e, &seen, &cd, &ad, &sig),
        Err(WebauthnError::Counter)
    );
    // User verification required but absent.
    let (cd, ad, sig) = assertion(&a, &ch, 0x01);
    assert_eq!(
        authenticate(&e, &cred, &cd, &ad, &sig),
        Err(WebauthnError::Flags("user verified"))
    );
    let lax = Expect {
        require_uv: false,
        ..e
    };
    assert_eq!(authenticate(&lax, &cred, &cd, &ad, &sig), Ok(1));
}

#[test]
fn hostile_cbor_is_refused_without_panicking() {
    let ch = [5u8; 32];
    let e = expect(&ch);
    let create = client_data("webauthn.create", &ch, ORIGIN);
    // Nesting bomb, huge declared lengths, indefinite length, tags, trailing bytes.
    let mut deep = vec![0x81u8; 10_000];
    deep.push(0x00);
    for bad in [
        deep,
        vec![0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        vec![0xbf, 0xff],
        vec![0xc6, 0x00],
        vec![0xa0, 0x00],
        vec![0xa2, 0x61, 0x61, 0x00, 0x61, 0x61, 0x00],
    ] {
        assert!(
            matches!(
                register(&e, &create, &bad),
                Err(WebauthnError::Malformed(_))
            ),
            "{bad:02x?}"
        );
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(att in proptest::collection::vec(any::<u8>(), 0..512),
                                   ad in proptest::collection::vec(any::<u8>(), 0..256),
                                   cd in proptest::collection::vec(any::<u8>(), 0..256)) {
        let ch = [6u8; 32];
        let e = expect(&ch);
        let _ = register(&e, &cd, &att);
        let cred = rampart_auth::webauthn::Credential { id: vec![1], key: CredentialKey::Ed25519([0; 32]), sign_count: 0 };
        let _ = authenticate(&e, &cred, &cd, &ad, &att);
    }
}
