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

use proptest::prelude::*;
use rampart_auth::webauthn::{authenticate, register, CredentialKey, Expect, WebauthnError};
#[allow(unused_imports, reason = "the CBOR writer is used by some tests only")]
use rampart_auth::webauthn_soft::cbor::{bytes, head, int, map, text};
use rampart_auth::webauthn_soft::{attestation, client_data, SoftAuthenticator};

const RP: &str = "admin.venue.example";
const ORIGIN: &str = "https://admin.venue.example";

fn p256() -> SoftAuthenticator {
    SoftAuthenticator::p256(vec![7; 16], RP, ORIGIN)
}

fn ed25519() -> SoftAuthenticator {
    SoftAuthenticator::ed25519(vec![9; 32], RP, ORIGIN)
}

fn expect(challenge: &[u8]) -> Expect<'_> {
    Expect {
        rp_id: RP,
        origin: ORIGIN,
        challenge,
        require_uv: true,
    }
}

fn assertion(a: &SoftAuthenticator, challenge: &[u8], flags: u8) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let cd = client_data("webauthn.get", challenge, ORIGIN);
    let ad = a.auth_data(RP, flags, false);
    let mut msg = ad.clone();
    msg.extend_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &cd).as_ref());
    let sig = a.sign(&msg);
    (cd, ad, sig)
}

#[test]
fn register_then_sign_in_with_p256_and_ed25519() {
    for mut a in [p256(), ed25519()] {
        let ch = [1u8; 32];
        let cred = register(
            &expect(&ch),
            &client_data("webauthn.create", &ch, ORIGIN),
            &attestation(&a.auth_data(RP, 0x05, true), "none"),
        )
        .unwrap();
        assert_eq!(cred.id, a.id);
        assert!(matches!(
            (a.algorithm(), &cred.key),
            (-7, CredentialKey::Es256(_)) | (-8, CredentialKey::Ed25519(_))
        ));
        a.count = 5;
        let ch2 = [2u8; 32];
        let (cd, ad, sig) = assertion(&a, &ch2, 0x05);
        assert_eq!(authenticate(&expect(&ch2), &cred, &cd, &ad, &sig), Ok(5));
    }
}

#[test]
fn every_relying_party_check_refuses() {
    let mut a = p256();
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
