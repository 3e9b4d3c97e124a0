//! Envelope encryption: round trips, record binding, tampering, truncation.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::sync::Arc;

use proptest::prelude::*;
use rampart_crypto::envelope::{HEADER_LEN, MIN_LEN};
use rampart_crypto::{
    AadContext, CryptoError, Envelope, KdfParams, Keyring, LocalKeyProvider, Purpose,
};

const CTX: AadContext<'static> = AadContext::new("api_key", "key-0001", "secret");

fn keyring() -> (tempfile::TempDir, Keyring) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let provider = LocalKeyProvider::create(&data, None, KdfParams::default()).unwrap();
    let ring = Keyring::new(Arc::new(provider));
    for p in Purpose::ALL {
        ring.rotate(p).unwrap();
    }
    (dir, ring)
}

#[test]
fn round_trip_all_purposes_and_sizes() {
    let (_dir, ring) = keyring();
    for p in Purpose::ALL {
        for len in [0usize, 1, 15, 16, 17, 256, 4096] {
            let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let ct = ring.encrypt(p, &CTX, &plain).unwrap();
            assert_eq!(ct.len(), MIN_LEN + len);
            let env = Envelope::parse(&ct).unwrap();
            assert_eq!(env.purpose, p);
            assert_eq!(env.key_version, 1);
            assert_eq!(
                ring.decrypt(p, &CTX, &ct).unwrap().as_slice(),
                plain.as_slice()
            );
        }
    }
}

#[test]
fn nonces_are_fresh() {
    let (_dir, ring) = keyring();
    let a = ring.encrypt(Purpose::ApiSecrets, &CTX, b"same").unwrap();
    let b = ring.encrypt(Purpose::ApiSecrets, &CTX, b"same").unwrap();
    assert_ne!(a, b);
    assert_ne!(
        Envelope::parse(&a).unwrap().nonce,
        Envelope::parse(&b).unwrap().nonce
    );
}

#[test]
fn moved_ciphertext_fails() {
    let (_dir, ring) = keyring();
    let ct = ring.encrypt(Purpose::ApiSecrets, &CTX, b"hunter2").unwrap();
    for other in [
        AadContext::new("api_key", "key-0002", "secret"),
        AadContext::new("api_key", "key-0001", "label"),
        AadContext::new("mfa", "key-0001", "secret"),
        // Boundaries between fields are part of the AAD.
        AadContext::new("api_keykey-0001", "", "secret"),
        AadContext::new("api_key", "key-0001secret", ""),
    ] {
        assert!(
            matches!(
                ring.decrypt(Purpose::ApiSecrets, &other, &ct),
                Err(CryptoError::Decrypt)
            ),
            "{other:?}"
        );
    }
    // Asking for another purpose is refused by the header check…
    assert!(matches!(
        ring.decrypt(Purpose::MfaSeeds, &CTX, &ct),
        Err(CryptoError::WrongPurpose {
            expected: Purpose::MfaSeeds,
            found: Purpose::ApiSecrets
        })
    ));
    // …and rewriting the header's purpose fails authentication.
    let mut relabelled = ct.clone();
    relabelled[3] = Purpose::MfaSeeds.id();
    assert!(matches!(
        ring.decrypt(Purpose::MfaSeeds, &CTX, &relabelled),
        Err(CryptoError::Decrypt)
    ));
}

#[test]
fn every_flipped_bit_fails() {
    let (_dir, ring) = keyring();
    let ct = ring
        .encrypt(Purpose::MfaSeeds, &CTX, b"JBSWY3DPEHPK3PXP")
        .unwrap();
    for i in 0..ct.len() {
        for bit in 0..8 {
            let mut bad = ct.clone();
            bad[i] ^= 1 << bit;
            let err = ring.decrypt(Purpose::MfaSeeds, &CTX, &bad).unwrap_err();
            if i >= HEADER_LEN - 12 {
                // nonce, ciphertext, tag: authentication failure
                assert!(
                    matches!(err, CryptoError::Decrypt),
                    "byte {i} bit {bit}: {err}"
                );
            }
        }
    }
}

#[test]
fn tampered_key_version_fails() {
    let (_dir, ring) = keyring();
    ring.rotate(Purpose::ApiSecrets).unwrap();
    let ct = ring.encrypt(Purpose::ApiSecrets, &CTX, b"x").unwrap();
    assert_eq!(Envelope::parse(&ct).unwrap().key_version, 2);
    let mut bad = ct.clone();
    bad[7] = 1; // claim version 1, which exists: AAD mismatch
    assert!(matches!(
        ring.decrypt(Purpose::ApiSecrets, &CTX, &bad),
        Err(CryptoError::Decrypt)
    ));
    bad[7] = 9; // a version that does not exist
    assert!(matches!(
        ring.decrypt(Purpose::ApiSecrets, &CTX, &bad),
        Err(CryptoError::UnknownKeyVersion { version: 9, .. })
    ));
}

#[test]
fn truncated_inputs_fail_without_panic() {
    let (_dir, ring) = keyring();
    let ct = ring
        .encrypt(Purpose::AuditFields, &CTX, b"balance=1234.56")
        .unwrap();
    for len in 0..ct.len() {
        let err = ring
            .decrypt(Purpose::AuditFields, &CTX, &ct[..len])
            .unwrap_err();
        if len < MIN_LEN {
            assert!(matches!(err, CryptoError::Malformed(_)), "len {len}: {err}");
        } else {
            assert!(matches!(err, CryptoError::Decrypt), "len {len}: {err}");
        }
    }
    let mut longer = ct.clone();
    longer.push(0);
    assert!(ring.decrypt(Purpose::AuditFields, &CTX, &longer).is_err());
}

#[test]
fn header_errors_are_typed() {
    assert!(matches!(
        Envelope::parse(b""),
        Err(CryptoError::Malformed(_))
    ));
    assert!(matches!(
        Envelope::parse(&[0u8; 64]),
        Err(CryptoError::Malformed(_))
    ));
    let mut v3 = vec![b'R', b'E', 3];
    v3.resize(64, 0);
    assert!(matches!(
        Envelope::parse(&v3),
        Err(CryptoError::UnsupportedVersion(3))
    ));
    let mut unknown = vec![b'R', b'E', 1, 99];
    unknown.resize(64, 0);
    assert!(matches!(
        Envelope::parse(&unknown),
        Err(CryptoError::UnknownPurpose(99))
    ));
}

#[test]
fn errors_and_debug_leak_no_secrets() {
    let (_dir, ring) = keyring();
    let ct = ring
        .encrypt(Purpose::ApiSecrets, &CTX, b"TOPSECRETVALUE")
        .unwrap();
    let err = ring
        .decrypt(Purpose::ApiSecrets, &AadContext::new("a", "b", "c"), &ct)
        .unwrap_err();
    assert!(!format!("{err} {err:?}").contains("TOPSECRET"));
    let debug = format!("{ring:?}");
    assert!(debug.contains("REDACTED"), "{debug}");
}

proptest! {
    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        let _ = Envelope::parse(&bytes);
    }

    #[test]
    fn parse_never_panics_with_valid_prefix(
        purpose in 0u8..5,
        version in any::<u32>(),
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut bytes = vec![b'R', b'E', 1, purpose];
        bytes.extend_from_slice(&version.to_be_bytes());
        bytes.extend_from_slice(&tail);
        match Envelope::parse(&bytes) {
            Ok(env) => {
                prop_assert!(bytes.len() >= MIN_LEN);
                prop_assert_eq!(env.key_version, version);
                prop_assert_eq!(env.ciphertext_and_tag.len(), bytes.len() - HEADER_LEN);
            }
            Err(_) => prop_assert!(bytes.len() < MIN_LEN || !(1..=3).contains(&purpose)),
        }
    }

    #[test]
    fn decrypt_of_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
        let (_dir, ring) = keyring();
        for p in Purpose::ALL {
            prop_assert!(ring.decrypt(p, &CTX, &bytes).is_err());
        }
    }
}
