//! The keyring: rotation, persistence through wrapped keys, encryption limits.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::path::PathBuf;
use std::sync::Arc;

use rampart_crypto::keyring::{DEFAULT_HARD_LIMIT, DEFAULT_ROTATE_AFTER};
use rampart_crypto::{
    AadContext, CryptoError, DataKey, Envelope, KdfParams, Keyring, KeyringLimits,
    LocalKeyProvider, Purpose,
};

const CTX: AadContext<'static> = AadContext::new("mfa_enrolment", "acct-7", "totp_seed");

fn provider() -> (tempfile::TempDir, PathBuf, Arc<LocalKeyProvider>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let p = LocalKeyProvider::create(&data, None, KdfParams::default()).unwrap();
    (dir, data, Arc::new(p))
}

#[test]
fn default_limits_stay_below_the_random_nonce_bound() {
    const { assert!(DEFAULT_ROTATE_AFTER == 1 << 31) };
    const { assert!(DEFAULT_ROTATE_AFTER < DEFAULT_HARD_LIMIT) };
    const { assert!(DEFAULT_HARD_LIMIT < 1 << 32) };
}

#[test]
fn no_data_key_until_first_rotation() {
    let (_t, _d, p) = provider();
    let ring = Keyring::new(p);
    assert!(matches!(
        ring.encrypt(Purpose::MfaSeeds, &CTX, b"x"),
        Err(CryptoError::NoDataKey(Purpose::MfaSeeds))
    ));
    assert_eq!(ring.current_version(Purpose::MfaSeeds), None);
    assert!(!ring.rotation_due(Purpose::MfaSeeds));
}

#[test]
fn rotation_makes_a_new_version_and_old_ciphertexts_still_decrypt() {
    let (_t, _d, p) = provider();
    let ring = Keyring::new(p);
    let w1 = ring.rotate(Purpose::MfaSeeds).unwrap();
    assert_eq!(
        (w1.purpose, w1.version, w1.root_key_version),
        (Purpose::MfaSeeds, 1, 1)
    );
    let old = ring.encrypt(Purpose::MfaSeeds, &CTX, b"seed-v1").unwrap();

    let w2 = ring.rotate(Purpose::MfaSeeds).unwrap();
    assert_eq!(w2.version, 2);
    assert_ne!(w1.wrapped, w2.wrapped);
    assert_eq!(ring.current_version(Purpose::MfaSeeds), Some(2));
    let new = ring.encrypt(Purpose::MfaSeeds, &CTX, b"seed-v2").unwrap();
    assert_eq!(Envelope::parse(&new).unwrap().key_version, 2);

    assert_eq!(
        ring.decrypt(Purpose::MfaSeeds, &CTX, &old)
            .unwrap()
            .as_slice(),
        b"seed-v1"
    );
    assert_eq!(
        ring.decrypt(Purpose::MfaSeeds, &CTX, &new)
            .unwrap()
            .as_slice(),
        b"seed-v2"
    );
    // Other purposes are independent.
    assert_eq!(ring.current_version(Purpose::ApiSecrets), None);

    let status = ring.status();
    assert_eq!(status.len(), 2);
    assert!(!status[0].current && status[0].encryptions == 1);
    assert!(status[1].current && status[1].version == 2 && status[1].encryptions == 1);
}

#[test]
fn wrapped_keys_reload_after_restart() {
    let (_t, data, p) = provider();
    let ring = Keyring::new(p);
    let wrapped = [
        ring.rotate(Purpose::ApiSecrets).unwrap(),
        ring.rotate(Purpose::ApiSecrets).unwrap(),
    ];
    let ct_v2 = ring
        .encrypt(Purpose::ApiSecrets, &CTX, b"api-secret")
        .unwrap();
    let count = ring.status()[1].encryptions;
    drop(ring);

    let reopened = Arc::new(LocalKeyProvider::open(&data, None).unwrap());
    let ring = Keyring::new(reopened);
    for w in &wrapped {
        ring.load(w, if w.version == 2 { count } else { 0 })
            .unwrap();
    }
    // Loading the same key again is idempotent.
    ring.load(&wrapped[0], 0).unwrap();
    assert_eq!(ring.current_version(Purpose::ApiSecrets), Some(2));
    assert_eq!(ring.status()[1].encryptions, 1);
    assert_eq!(
        ring.decrypt(Purpose::ApiSecrets, &CTX, &ct_v2)
            .unwrap()
            .as_slice(),
        b"api-secret"
    );
}

#[test]
fn wrong_root_key_cannot_load_or_decrypt() {
    let (_t, _d, p) = provider();
    let ring = Keyring::new(p);
    let w = ring.rotate(Purpose::AuditFields).unwrap();
    let ct = ring.encrypt(Purpose::AuditFields, &CTX, b"x").unwrap();

    let (_t2, _d2, other) = provider();
    let other_ring = Keyring::new(other);
    assert!(matches!(
        other_ring.load(&w, 0),
        Err(CryptoError::Unwrap { .. })
    ));
    assert!(matches!(
        other_ring.decrypt(Purpose::AuditFields, &CTX, &ct),
        Err(CryptoError::UnknownKeyVersion { version: 1, .. })
    ));
    // A different key under the same purpose and version cannot decrypt either,
    // and is refused if loaded next to the real one.
    let w_other = other_ring.rotate(Purpose::AuditFields).unwrap();
    assert!(matches!(
        other_ring.decrypt(Purpose::AuditFields, &CTX, &ct),
        Err(CryptoError::Decrypt)
    ));
    let mut conflicting = w.clone();
    let fresh = DataKey::generate().unwrap();
    conflicting.wrapped = ring
        .provider()
        .wrap_data_key(Purpose::AuditFields, 1, &fresh)
        .unwrap();
    assert!(matches!(
        ring.load(&conflicting, 0),
        Err(CryptoError::ConflictingDataKey { .. })
    ));
    assert_ne!(w_other.wrapped, w.wrapped);
}

#[test]
fn counts_encryptions_reports_rotation_and_enforces_the_limit() {
    let (_t, _d, p) = provider();
    let ring = Keyring::with_limits(
        p,
        KeyringLimits {
            rotate_after: 3,
            hard_limit: 5,
        },
    );
    ring.rotate(Purpose::ApiSecrets).unwrap();
    ring.rotate(Purpose::MfaSeeds).unwrap();
    for i in 0..5 {
        assert_eq!(ring.rotation_due(Purpose::ApiSecrets), i >= 3, "after {i}");
        ring.encrypt(Purpose::ApiSecrets, &CTX, b"x").unwrap();
    }
    assert_eq!(ring.due_rotations(), vec![Purpose::ApiSecrets]);
    let err = ring.encrypt(Purpose::ApiSecrets, &CTX, b"x").unwrap_err();
    assert!(
        matches!(
            err,
            CryptoError::KeyExhausted {
                purpose: Purpose::ApiSecrets,
                version: 1
            }
        ),
        "{err}"
    );

    let rotated = ring.rotate_due().unwrap();
    assert_eq!(rotated.len(), 1);
    assert_eq!(
        (rotated[0].purpose, rotated[0].version),
        (Purpose::ApiSecrets, 2)
    );
    assert!(ring.due_rotations().is_empty());
    ring.encrypt(Purpose::ApiSecrets, &CTX, b"x").unwrap();
    assert_eq!(
        ring.status()
            .iter()
            .find(|s| s.version == 1 && s.purpose == Purpose::ApiSecrets)
            .unwrap()
            .encryptions,
        5
    );
}

#[test]
fn exhausted_key_still_decrypts() {
    let (_t, _d, p) = provider();
    let ring = Keyring::with_limits(
        p,
        KeyringLimits {
            rotate_after: 1,
            hard_limit: 1,
        },
    );
    ring.rotate(Purpose::ApiSecrets).unwrap();
    let ct = ring.encrypt(Purpose::ApiSecrets, &CTX, b"last").unwrap();
    assert!(ring.encrypt(Purpose::ApiSecrets, &CTX, b"x").is_err());
    assert_eq!(
        ring.decrypt(Purpose::ApiSecrets, &CTX, &ct)
            .unwrap()
            .as_slice(),
        b"last"
    );
}

#[test]
fn concurrent_encryptions_are_all_counted() {
    let (_t, _d, p) = provider();
    let ring = Arc::new(Keyring::new(p));
    ring.rotate(Purpose::AuditFields).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let ring = Arc::clone(&ring);
            std::thread::spawn(move || {
                for i in 0..250 {
                    let id = format!("{t}-{i}");
                    let ctx = AadContext::new("audit", &id, "amount");
                    let ct = ring
                        .encrypt(Purpose::AuditFields, &ctx, id.as_bytes())
                        .unwrap();
                    assert_eq!(
                        ring.decrypt(Purpose::AuditFields, &ctx, &ct)
                            .unwrap()
                            .as_slice(),
                        id.as_bytes()
                    );
                    if i == 100 && t == 0 {
                        ring.rotate(Purpose::AuditFields).unwrap();
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let total: u64 = ring.status().iter().map(|s| s.encryptions).sum();
    assert_eq!(total, 1000);
}

#[test]
fn debug_shows_versions_not_keys() {
    let (_t, _d, p) = provider();
    let ring = Keyring::new(p);
    ring.rotate(Purpose::MfaSeeds).unwrap();
    let debug = format!("{ring:?}");
    assert!(
        debug.contains("MfaSeeds") && debug.contains("REDACTED"),
        "{debug}"
    );
}

#[test]
fn reencrypt_moves_records_to_the_current_version_then_old_versions_retire() {
    let (_t, _d, p) = provider();
    let ring = Keyring::new(p);
    let w1 = ring.rotate(Purpose::ApiSecrets).unwrap();
    let ids: Vec<String> = (0..20).map(|i| format!("key-{i}")).collect();
    let mut records: Vec<Vec<u8>> = ids
        .iter()
        .map(|id| {
            let ctx = AadContext::new("api_key", id, "secret");
            ring.encrypt(Purpose::ApiSecrets, &ctx, id.as_bytes())
                .unwrap()
        })
        .collect();
    ring.rotate(Purpose::ApiSecrets).unwrap();
    assert!(matches!(
        ring.retire_below(Purpose::ApiSecrets, 3),
        Err(CryptoError::InvalidRetirement { current: 2, .. })
    ));

    let mut rewrapped = 0;
    for (id, record) in ids.iter().zip(records.iter_mut()) {
        let ctx = AadContext::new("api_key", id, "secret");
        assert!(ring.needs_rewrap(record).unwrap());
        if let Some(new) = ring.reencrypt(Purpose::ApiSecrets, &ctx, record).unwrap() {
            *record = new;
            rewrapped += 1;
        }
        // Already current: nothing to do (resuming a rewrap is idempotent).
        assert_eq!(
            ring.reencrypt(Purpose::ApiSecrets, &ctx, record).unwrap(),
            None
        );
    }
    assert_eq!(rewrapped, 20);

    let old = {
        let ctx = AadContext::new("api_key", "stale", "secret");
        // A record still on v1 (e.g. written by a node that missed the rotation).
        let fresh = Keyring::new(Arc::clone(ring.provider()));
        fresh.load(&w1, 0).unwrap();
        (
            fresh.encrypt(Purpose::ApiSecrets, &ctx, b"stale").unwrap(),
            ctx,
        )
    };
    assert_eq!(ring.retire_below(Purpose::ApiSecrets, 2).unwrap(), 1);
    assert_eq!(ring.min_version(Purpose::ApiSecrets), 2);
    assert!(matches!(
        ring.decrypt(Purpose::ApiSecrets, &old.1, &old.0),
        Err(CryptoError::RetiredKeyVersion {
            version: 1,
            min_version: 2,
            ..
        })
    ));
    assert!(matches!(
        ring.load(&w1, 0),
        Err(CryptoError::RetiredKeyVersion { .. })
    ));
    assert!(matches!(
        ring.retire_below(Purpose::ApiSecrets, 1),
        Err(CryptoError::InvalidRetirement { .. })
    ));
    for (id, record) in ids.iter().zip(&records) {
        let ctx = AadContext::new("api_key", id, "secret");
        assert_eq!(
            ring.decrypt(Purpose::ApiSecrets, &ctx, record)
                .unwrap()
                .as_slice(),
            id.as_bytes()
        );
    }
    assert_eq!(ring.status().len(), 1);
}

#[derive(Debug, Default)]
struct Recorder(parking_lot::Mutex<Vec<rampart_crypto::KeyEvent>>);

impl rampart_crypto::KeyEventSink for Recorder {
    fn record(&self, event: &rampart_crypto::KeyEvent) {
        self.0.lock().push(event.clone());
    }
}

#[test]
fn key_operations_emit_events() {
    use rampart_crypto::KeyEvent;
    let (_t, _d, p) = provider();
    let rec = Arc::new(Recorder::default());
    let ring =
        Keyring::new(p).with_event_sink(Arc::clone(&rec) as Arc<dyn rampart_crypto::KeyEventSink>);
    ring.rotate(Purpose::MfaSeeds).unwrap();
    let w2 = ring.rotate(Purpose::MfaSeeds).unwrap();
    ring.retire_below(Purpose::MfaSeeds, 2).unwrap();
    let mut bad = w2.clone();
    bad.version = 3;
    assert!(ring.load(&bad, 0).is_err());
    let events = rec.0.lock().clone();
    assert_eq!(
        events,
        vec![
            KeyEvent::DataKeyCreated {
                purpose: Purpose::MfaSeeds,
                version: 1,
                root_key_version: 1
            },
            KeyEvent::DataKeyCreated {
                purpose: Purpose::MfaSeeds,
                version: 2,
                root_key_version: 1
            },
            KeyEvent::DataKeysRetired {
                purpose: Purpose::MfaSeeds,
                min_version: 2,
                dropped: 1
            },
            KeyEvent::UnwrapFailed {
                purpose: Purpose::MfaSeeds,
                version: 3
            },
        ]
    );
    assert_eq!(events[3].name(), "key.unwrap_failed");
}

#[test]
fn account_scoped_fields_rotate_rewrap_and_shred() {
    use rampart_crypto::{AccountKey, Scope};
    let (_t, _d, p) = provider();
    let ring = Keyring::new(p);
    ring.rotate(Purpose::ApiSecrets).unwrap();
    let alice = AccountKey::generate("alice").unwrap();
    let bob = AccountKey::generate("bob").unwrap();
    let ctx = AadContext::new("api_key", "k1", "secret");
    let ct = ring
        .encrypt_for(Purpose::ApiSecrets, &alice, &ctx, b"alice-secret")
        .unwrap();
    assert_eq!(Envelope::parse(&ct).unwrap().scope, Scope::Account);
    assert_eq!(
        &ring
            .decrypt_for(Purpose::ApiSecrets, &alice, &ctx, &ct)
            .unwrap()[..],
        b"alice-secret"
    );
    // Another account's key, a replaced secret, or no account key: all fail.
    assert!(matches!(
        ring.decrypt_for(Purpose::ApiSecrets, &bob, &ctx, &ct),
        Err(CryptoError::Decrypt)
    ));
    let alice_other = AccountKey::generate("alice").unwrap();
    assert!(matches!(
        ring.decrypt_for(Purpose::ApiSecrets, &alice_other, &ctx, &ct),
        Err(CryptoError::Decrypt)
    ));
    assert!(matches!(
        ring.decrypt(Purpose::ApiSecrets, &ctx, &ct),
        Err(CryptoError::ScopeMismatch(_))
    ));
    let plain_ct = ring.encrypt(Purpose::ApiSecrets, &ctx, b"x").unwrap();
    assert!(matches!(
        ring.decrypt_for(Purpose::ApiSecrets, &alice, &ctx, &plain_ct),
        Err(CryptoError::ScopeMismatch(_))
    ));
    // Flipping the format byte (scope) fails authentication, never panics.
    let mut flipped = ct.clone();
    flipped[2] = 1;
    assert!(ring.decrypt(Purpose::ApiSecrets, &ctx, &flipped).is_err());

    // Rotate and rewrap: same account key, new data-key version.
    ring.rotate(Purpose::ApiSecrets).unwrap();
    let ct2 = ring
        .reencrypt_for(Purpose::ApiSecrets, &alice, &ctx, &ct)
        .unwrap()
        .unwrap();
    assert_eq!(Envelope::parse(&ct2).unwrap().key_version, 2);
    assert!(ring
        .reencrypt_for(Purpose::ApiSecrets, &alice, &ctx, &ct2)
        .unwrap()
        .is_none());
    ring.retire_below(Purpose::ApiSecrets, 2).unwrap();
    assert_eq!(
        &ring
            .decrypt_for(Purpose::ApiSecrets, &alice, &ctx, &ct2)
            .unwrap()[..],
        b"alice-secret"
    );
    // Shredding = losing the account secret: the cache must not keep it alive.
    ring.forget_account("alice");
    let restored = AccountKey::from_bytes("alice", alice.expose()).unwrap();
    assert!(ring
        .decrypt_for(Purpose::ApiSecrets, &restored, &ctx, &ct2)
        .is_ok());
}

#[test]
fn prepared_rotation_is_not_current_until_loaded_and_counters_flush() {
    let (_t, _d, p) = provider();
    let ring = Keyring::new(p);
    let w1 = ring.prepare_rotation(Purpose::MfaSeeds).unwrap();
    assert_eq!(w1.version, 1);
    assert_eq!(ring.current_version(Purpose::MfaSeeds), None);
    ring.load(&w1, 10).unwrap();
    assert_eq!(ring.current_version(Purpose::MfaSeeds), Some(1));
    assert!(ring.take_encryption_deltas().is_empty());
    for _ in 0..3 {
        ring.encrypt(Purpose::MfaSeeds, &CTX, b"s").unwrap();
    }
    assert_eq!(
        ring.take_encryption_deltas(),
        vec![(Purpose::MfaSeeds, 1, 3)]
    );
    assert!(ring.take_encryption_deltas().is_empty());
    ring.observe_total(Purpose::MfaSeeds, 1, 1_000);
    assert!(ring.take_encryption_deltas().is_empty());
    assert_eq!(ring.status()[0].encryptions, 1_000);
    // Root rotation: the data key re-wraps under the new root version.
    ring.provider().rotate_root().unwrap();
    let rw = ring.rewrap_data_key(Purpose::MfaSeeds, 1).unwrap();
    assert_eq!(rw.root_key_version, 2);
    ring.provider().destroy_root_versions_below(2).unwrap();
    let fresh = Keyring::new(Arc::clone(ring.provider()));
    assert!(fresh.load(&w1, 0).is_err());
    fresh.load(&rw, 0).unwrap();
}
