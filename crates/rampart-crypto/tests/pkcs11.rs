//! The `pkcs11` key provider against a real SoftHSM2 token.
//!
//! SoftHSM2 reads its configuration from `SOFTHSM2_CONF` when the module is
//! initialised, and the environment of a running test cannot be changed
//! safely, so every test re-runs itself in a child process: the parent
//! creates a fresh token directory and token with `softhsm2-util`, then runs
//! the current test binary for just this test with `SOFTHSM2_CONF` and
//! `RAMPART_SOFTHSM_CHILD=1` set; the child runs the real body.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use aws_lc_rs::signature::{UnparsedPublicKey, ED25519};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as Pkcs11Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{
    Attribute, AttributeInfo, AttributeType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::{Session, UserType};
use rampart_crypto::pkcs11::WRAPPED_LEN;
use rampart_crypto::{
    CryptoError, DataKey, KeyProvider, Pkcs11Config, Pkcs11KeyProvider, Purpose, SecretString,
};
use subtle::ConstantTimeEq;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const TOKEN: &str = "rampart-test";
const SO_PIN: &str = "12345678";
const PIN: &str = "87654321";
const CHILD_ENV: &str = "RAMPART_SOFTHSM_CHILD";

/// Runs `body` in a child process that sees a fresh SoftHSM2 token
/// `rampart-test` (user PIN [`PIN`]). `name` must be the test's own name.
fn in_softhsm(name: &str, body: impl FnOnce()) {
    if std::env::var_os(CHILD_ENV).is_some() {
        body();
        return;
    }
    assert!(
        Path::new(MODULE).exists(),
        "SoftHSM2 is not installed ({MODULE} is missing): install it with `apt-get install softhsm2`; the pkcs11 provider tests need a real PKCS#11 token"
    );
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    fs::create_dir(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let init = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            TOKEN,
            "--so-pin",
            SO_PIN,
            "--pin",
            PIN,
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("cannot run softhsm2-util; install it with `apt-get install softhsm2`");
    assert!(
        init.status.success(),
        "softhsm2-util --init-token failed:\n{}{}",
        String::from_utf8_lossy(&init.stdout),
        String::from_utf8_lossy(&init.stderr)
    );
    let child = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("SOFTHSM2_CONF", &conf)
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&child.stdout);
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert!(
        child.status.success(),
        "test `{name}` failed against SoftHSM2:\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(
        stdout.contains("1 passed"),
        "test `{name}` did not run in the child process:\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
}

/// A `#[test]` whose body runs against a fresh SoftHSM2 token.
macro_rules! softhsm_test {
    ($(#[doc = $doc:literal])* fn $name:ident() $body:block) => {
        $(#[doc = $doc])*
        #[test]
        fn $name() {
            in_softhsm(stringify!($name), || $body);
        }
    };
}

fn config() -> Pkcs11Config {
    Pkcs11Config::new(MODULE, TOKEN, SecretString::from(PIN))
}

fn open() -> Pkcs11KeyProvider {
    Pkcs11KeyProvider::open(&config()).unwrap()
}

fn provider_message(err: CryptoError) -> String {
    match err {
        CryptoError::Provider { provider, message } => {
            assert_eq!(provider, "pkcs11");
            message
        }
        other => panic!("expected a provider error, got {other:?}"),
    }
}

/// A session of the test's own (a second cryptoki context on the same
/// module), logged in as the user.
fn raw_session() -> Session {
    let ctx = Pkcs11::new(MODULE).unwrap();
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(Pkcs11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => panic!("C_Initialize: {e}"),
    }
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label() == TOKEN)
        .unwrap();
    let session = ctx.open_rw_session(slot).unwrap();
    match session.login(UserType::User, Some(&SecretString::from(PIN))) {
        Ok(()) | Err(Pkcs11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => panic!("C_Login: {e}"),
    }
    session
}

fn find(session: &Session, class: ObjectClass, label: &str) -> Vec<ObjectHandle> {
    session
        .find_objects(&[
            Attribute::Class(class),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .unwrap()
}

fn bool_attr(session: &Session, object: ObjectHandle, ty: AttributeType) -> bool {
    let attrs = session.get_attributes(object, &[ty]).unwrap();
    match attrs.as_slice() {
        [Attribute::Extractable(b)
        | Attribute::Sensitive(b)
        | Attribute::NeverExtractable(b)
        | Attribute::AlwaysSensitive(b)
        | Attribute::Token(b)
        | Attribute::Private(b)
        | Attribute::Wrap(b)
        | Attribute::Unwrap(b)
        | Attribute::Modifiable(b)] => *b,
        other => panic!("unexpected attributes for {ty:?}: {other:?}"),
    }
}

fn same(a: &DataKey, b: &DataKey) -> bool {
    bool::from(a.ct_eq(b))
}

#[test]
fn provider_is_send_sync_and_debug() {
    fn check<T: Send + Sync + std::fmt::Debug>() {}
    check::<Pkcs11KeyProvider>();
    check::<Pkcs11Config>();
}

#[test]
fn config_debug_never_shows_the_pin() {
    let cfg = config();
    let debug = format!("{cfg:?}");
    assert!(!debug.contains(PIN), "{debug}");
    assert!(debug.contains("REDACTED"), "{debug}");
    assert!(debug.contains(TOKEN), "{debug}");
    assert_eq!(cfg.key_label, "rampart");
}

softhsm_test! {
    /// Every purpose round-trips; another purpose, version, root version or a
    /// flipped or missing byte fails as an unwrap error.
    fn wrap_unwrap_round_trips_and_rejects_tampering() {
        let p = open();
        assert_eq!(p.kind(), "pkcs11");
        assert_eq!(p.root_key_versions(), vec![1]);
        for purpose in Purpose::ALL {
            let dek = DataKey::generate().unwrap();
            let wrapped = p.wrap_data_key(purpose, 7, &dek).unwrap();
            assert_eq!(wrapped.len(), WRAPPED_LEN);
            assert_eq!(wrapped[0], 1, "format byte");
            assert_eq!(p.wrapped_root_version(&wrapped).unwrap(), 1);
            assert_eq!(&wrapped[1..5], &1u32.to_be_bytes());
            let back = p.unwrap_data_key(purpose, 7, &wrapped).unwrap();
            assert!(same(&dek, &back));

            // Two wraps of the same key differ (fresh IV).
            let again = p.wrap_data_key(purpose, 7, &dek).unwrap();
            assert_ne!(wrapped, again);

            for other in Purpose::ALL.into_iter().filter(|o| *o != purpose) {
                let res = p.unwrap_data_key(other, 7, &wrapped);
                assert!(
                    matches!(&res, Err(CryptoError::Unwrap { purpose: q, version: 7 }) if *q == other),
                    "{res:?}"
                );
            }
            assert!(matches!(
                p.unwrap_data_key(purpose, 8, &wrapped),
                Err(CryptoError::Unwrap { version: 8, .. })
            ));
            for i in 0..wrapped.len() {
                let mut tampered = wrapped.clone();
                tampered[i] ^= 0x01;
                assert!(
                    matches!(
                        p.unwrap_data_key(purpose, 7, &tampered),
                        Err(CryptoError::Unwrap { .. })
                    ),
                    "flipping byte {i} went unnoticed"
                );
            }
            for len in [0, 1, 5, 17, WRAPPED_LEN - 1] {
                assert!(matches!(
                    p.unwrap_data_key(purpose, 7, &wrapped[..len]),
                    Err(CryptoError::Unwrap { .. })
                ));
            }
            let mut longer = wrapped.clone();
            longer.push(0);
            assert!(matches!(
                p.unwrap_data_key(purpose, 7, &longer),
                Err(CryptoError::Unwrap { .. })
            ));
        }
        assert!(matches!(
            p.wrapped_root_version(&[]),
            Err(CryptoError::Malformed(_))
        ));
        assert!(matches!(
            p.wrapped_root_version(&[2, 0, 0, 0, 1]),
            Err(CryptoError::Malformed(_))
        ));
        assert!(matches!(
            p.wrapped_root_version(&[1, 0, 0]),
            Err(CryptoError::Malformed(_))
        ));

        let health = p.health();
        assert!(health.healthy, "{health:?}");
        assert_eq!(health.kind, "pkcs11");
        assert_eq!(health.root_key_version, 1);
        assert!(health.detail.contains(TOKEN), "{health:?}");

        let debug = format!("{p:?}");
        assert!(!debug.contains(PIN), "{debug}");
        assert!(debug.contains(TOKEN), "{debug}");
    }
}

softhsm_test! {
    /// The root key cannot be read or wrapped out of the token.
    fn root_key_is_sensitive_and_never_extractable() {
        let p = open();
        let s = raw_session();
        let roots = find(&s, ObjectClass::SECRET_KEY, "rampart-root");
        assert_eq!(roots.len(), 1);
        let root = roots[0];
        let attrs = s
            .get_attributes(root, &[AttributeType::Id, AttributeType::KeyType, AttributeType::ValueLen])
            .unwrap();
        assert!(attrs.contains(&Attribute::Id(vec![0, 0, 0, 1])), "{attrs:?}");
        assert!(attrs.contains(&Attribute::KeyType(KeyType::AES)), "{attrs:?}");
        assert!(attrs.contains(&Attribute::ValueLen(32.into())), "{attrs:?}");
        assert!(!bool_attr(&s, root, AttributeType::Extractable));
        assert!(bool_attr(&s, root, AttributeType::Sensitive));
        assert!(bool_attr(&s, root, AttributeType::NeverExtractable));
        assert!(bool_attr(&s, root, AttributeType::AlwaysSensitive));
        assert!(bool_attr(&s, root, AttributeType::Token));
        assert!(bool_attr(&s, root, AttributeType::Private));
        assert!(!bool_attr(&s, root, AttributeType::Wrap));
        assert!(!bool_attr(&s, root, AttributeType::Unwrap));
        assert!(!bool_attr(&s, root, AttributeType::Modifiable));

        // CKA_VALUE is refused as sensitive.
        let info = s.get_attribute_info(root, &[AttributeType::Value]).unwrap();
        assert!(matches!(info.as_slice(), [AttributeInfo::Sensitive]), "{info:?}");
        let value = s.get_attributes(root, &[AttributeType::Value]).unwrap();
        assert!(value.is_empty(), "CKA_VALUE was returned");

        // Its attributes cannot be relaxed either.
        assert!(s.update_attributes(root, &[Attribute::Extractable(true)]).is_err());
        assert!(s.update_attributes(root, &[Attribute::Sensitive(false)]).is_err());

        // C_WrapKey with a wrapping-capable key of the test's own is refused.
        let kek = s
            .generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::ValueLen(32.into()),
                    Attribute::Token(false),
                    Attribute::Wrap(true),
                    Attribute::Unwrap(true),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                ],
            )
            .unwrap();
        for mechanism in [Mechanism::AesKeyWrapPad, Mechanism::AesKeyWrap] {
            match s.wrap_key(&mechanism, kek, root) {
                Err(Pkcs11Error::Pkcs11(RvError::KeyUnextractable, _)) => {}
                other => panic!("wrapping the root key with {mechanism:?}: {other:?}"),
            }
        }

        // The signing key is an Ed25519 key (RFC 8410 OID in CKA_EC_PARAMS).
        let public = find(&s, ObjectClass::PUBLIC_KEY, "rampart-signing");
        assert_eq!(public.len(), 1);
        let params = s.get_attributes(public[0], &[AttributeType::EcParams]).unwrap();
        assert_eq!(params, vec![Attribute::EcParams(vec![0x06, 0x03, 0x2b, 0x65, 0x70])]);

        // The signing key's private half is protected the same way.
        let signing = find(&s, ObjectClass::PRIVATE_KEY, "rampart-signing");
        assert_eq!(signing.len(), 1);
        let signing = signing[0];
        assert!(!bool_attr(&s, signing, AttributeType::Extractable));
        assert!(bool_attr(&s, signing, AttributeType::Sensitive));
        assert!(bool_attr(&s, signing, AttributeType::NeverExtractable));
        assert!(bool_attr(&s, signing, AttributeType::Token));
        assert!(bool_attr(&s, signing, AttributeType::Private));
        let info = s.get_attribute_info(signing, &[AttributeType::Value]).unwrap();
        assert!(matches!(info.as_slice(), [AttributeInfo::Sensitive]), "{info:?}");
        match s.wrap_key(&Mechanism::AesKeyWrapPad, kek, signing) {
            Err(Pkcs11Error::Pkcs11(RvError::KeyUnextractable, _)) => {}
            other => panic!("wrapping the signing key: {other:?}"),
        }

        // The provider still works after all that.
        let dek = DataKey::generate().unwrap();
        let wrapped = p.wrap_data_key(Purpose::ApiSecrets, 1, &dek).unwrap();
        assert!(same(&dek, &p.unwrap_data_key(Purpose::ApiSecrets, 1, &wrapped).unwrap()));
    }
}

softhsm_test! {
    /// A wrong PIN and an unknown token label fail with messages that say so.
    fn wrong_pin_and_unknown_token_are_clear_errors() {
        let mut cfg = config();
        cfg.pin = SecretString::from("11111111");
        let message = provider_message(Pkcs11KeyProvider::open(&cfg).unwrap_err());
        assert!(message.contains("wrong PIN"), "{message}");
        assert!(message.contains("CKR_PIN_INCORRECT"), "{message}");
        assert!(message.contains(TOKEN), "{message}");
        assert!(!message.contains("11111111"), "{message}");

        let mut cfg = config();
        cfg.token_label = "no-such-token".to_owned();
        let message = provider_message(Pkcs11KeyProvider::open(&cfg).unwrap_err());
        assert!(message.contains("`no-such-token`"), "{message}");
        assert!(message.contains(&format!("`{TOKEN}`")), "lists available tokens: {message}");

        let mut cfg = config();
        cfg.module = "/nonexistent/libpkcs11.so".into();
        let message = provider_message(Pkcs11KeyProvider::open(&cfg).unwrap_err());
        assert!(message.contains("/nonexistent/libpkcs11.so"), "{message}");

        // The right PIN still works after one wrong attempt.
        let p = open();
        assert_eq!(p.root_key_versions(), vec![1]);
    }
}

softhsm_test! {
    /// Keys live in the token: a re-opened provider unwraps what an earlier
    /// one wrapped, and opening again creates no second key.
    fn keys_persist_across_reopen() {
        let dek = DataKey::generate().unwrap();
        let (wrapped, public) = {
            let p = open();
            (
                p.wrap_data_key(Purpose::MfaSeeds, 3, &dek).unwrap(),
                p.signing_public_key().unwrap(),
            )
        };
        for _ in 0..2 {
            let p = open();
            assert_eq!(p.root_key_versions(), vec![1]);
            assert_eq!(p.root_key_version(), 1);
            assert!(same(&dek, &p.unwrap_data_key(Purpose::MfaSeeds, 3, &wrapped).unwrap()));
            assert_eq!(p.signing_public_key().unwrap(), public);
        }
        let s = raw_session();
        assert_eq!(find(&s, ObjectClass::SECRET_KEY, "rampart-root").len(), 1);
        assert_eq!(find(&s, ObjectClass::PRIVATE_KEY, "rampart-signing").len(), 1);
        assert_eq!(find(&s, ObjectClass::PUBLIC_KEY, "rampart-signing").len(), 1);

        // Another key label prefix is another, independent hierarchy.
        let mut other = config();
        other.key_label = "other".to_owned();
        let q = Pkcs11KeyProvider::open(&other).unwrap();
        assert!(matches!(
            q.unwrap_data_key(Purpose::MfaSeeds, 3, &wrapped),
            Err(CryptoError::Unwrap { .. })
        ));
        assert_ne!(q.signing_public_key().unwrap(), public);
        assert_eq!(find(&s, ObjectClass::SECRET_KEY, "other-root").len(), 1);
    }
}

softhsm_test! {
    /// Rotation adds a version in the token; destroying old versions makes
    /// their wraps unrecoverable; versions survive a re-open.
    fn rotate_root_and_destroy_old_versions() {
        let p = open();
        let dek1 = DataKey::generate().unwrap();
        let dek2 = DataKey::generate().unwrap();
        let w1 = p.wrap_data_key(Purpose::ApiSecrets, 1, &dek1).unwrap();
        assert_eq!(p.rotate_root().unwrap(), 2);
        assert_eq!(p.root_key_version(), 2);
        assert_eq!(p.root_key_versions(), vec![1, 2]);
        let w2 = p.wrap_data_key(Purpose::ApiSecrets, 2, &dek2).unwrap();
        assert_eq!(p.wrapped_root_version(&w1).unwrap(), 1);
        assert_eq!(p.wrapped_root_version(&w2).unwrap(), 2);
        assert!(same(&dek1, &p.unwrap_data_key(Purpose::ApiSecrets, 1, &w1).unwrap()));
        assert!(same(&dek2, &p.unwrap_data_key(Purpose::ApiSecrets, 2, &w2).unwrap()));

        // A blob claiming the other root version does not open.
        let mut swapped = w1.clone();
        swapped[1..5].copy_from_slice(&2u32.to_be_bytes());
        assert!(matches!(
            p.unwrap_data_key(Purpose::ApiSecrets, 1, &swapped),
            Err(CryptoError::Unwrap { .. })
        ));
        drop(p);

        let p = open();
        assert_eq!(p.root_key_versions(), vec![1, 2]);
        assert_eq!(p.root_key_version(), 2);
        assert!(same(&dek1, &p.unwrap_data_key(Purpose::ApiSecrets, 1, &w1).unwrap()));
        assert!(same(&dek2, &p.unwrap_data_key(Purpose::ApiSecrets, 2, &w2).unwrap()));
        assert!(matches!(
            p.destroy_root_versions_below(3),
            Err(CryptoError::InvalidRootVersion { requested: 3, current: 2 })
        ));
        assert_eq!(p.destroy_root_versions_below(1).unwrap(), 0);
        assert_eq!(p.destroy_root_versions_below(2).unwrap(), 1);
        assert_eq!(p.root_key_versions(), vec![2]);
        assert!(matches!(
            p.unwrap_data_key(Purpose::ApiSecrets, 1, &w1),
            Err(CryptoError::Unwrap { purpose: Purpose::ApiSecrets, version: 1 })
        ));
        assert!(same(&dek2, &p.unwrap_data_key(Purpose::ApiSecrets, 2, &w2).unwrap()));
        assert_eq!(p.destroy_root_versions_below(2).unwrap(), 0);
        drop(p);

        let p = open();
        assert_eq!(p.root_key_versions(), vec![2]);
        assert_eq!(p.root_key_version(), 2);
        assert!(matches!(
            p.unwrap_data_key(Purpose::ApiSecrets, 1, &w1),
            Err(CryptoError::Unwrap { .. })
        ));
        assert!(same(&dek2, &p.unwrap_data_key(Purpose::ApiSecrets, 2, &w2).unwrap()));
        let s = raw_session();
        let roots = find(&s, ObjectClass::SECRET_KEY, "rampart-root");
        assert_eq!(roots.len(), 1);
        let id = s.get_attributes(roots[0], &[AttributeType::Id]).unwrap();
        assert_eq!(id, vec![Attribute::Id(vec![0, 0, 0, 2])]);

        // The next rotation continues from the surviving version.
        assert_eq!(p.rotate_root().unwrap(), 3);
        assert_eq!(p.root_key_versions(), vec![2, 3]);
    }
}

softhsm_test! {
    /// Two providers on one token (two gateway processes): a rotation by one
    /// is seen by the other when it meets a newer version, and its own
    /// rotation continues from the token's newest version.
    fn a_second_instance_follows_rotations() {
        let a = open();
        let b = open();
        assert_eq!(a.signing_public_key().unwrap(), b.signing_public_key().unwrap());
        assert_eq!(a.rotate_root().unwrap(), 2);
        let dek = DataKey::generate().unwrap();
        let w2 = a.wrap_data_key(Purpose::MfaSeeds, 1, &dek).unwrap();
        assert_eq!(b.root_key_versions(), vec![1]);
        assert!(same(&dek, &b.unwrap_data_key(Purpose::MfaSeeds, 1, &w2).unwrap()));
        assert_eq!(b.root_key_versions(), vec![1, 2]);
        assert_eq!(b.rotate_root().unwrap(), 3);
        assert_eq!(a.rotate_root().unwrap(), 4);
        let s = raw_session();
        assert_eq!(find(&s, ObjectClass::SECRET_KEY, "rampart-root").len(), 4);
        // Versions destroyed by one instance are gone for the other too.
        assert_eq!(a.destroy_root_versions_below(4).unwrap(), 3);
        let w = b.wrap_data_key(Purpose::MfaSeeds, 1, &dek).unwrap();
        assert_eq!(b.wrapped_root_version(&w).unwrap(), 4);
        assert!(same(&dek, &a.unwrap_data_key(Purpose::MfaSeeds, 1, &w).unwrap()));
        assert!(matches!(
            b.unwrap_data_key(Purpose::MfaSeeds, 1, &w2),
            Err(CryptoError::Unwrap { .. })
        ));
        assert_eq!(b.root_key_versions(), vec![4]);
    }
}

softhsm_test! {
    /// Signatures made in the token verify as pure Ed25519 with aws-lc-rs,
    /// and the public key is the same after a re-open.
    fn signatures_verify_and_public_key_is_stable() {
        let p = open();
        let public = p.signing_public_key().unwrap();
        let key = UnparsedPublicKey::new(&ED25519, public);
        for message in [&b""[..], b"audit checkpoint 1", &[0xa5; 4096]] {
            let signature = p.sign(message).unwrap();
            key.verify(message, &signature).unwrap();
            assert!(key.verify(b"another message", &signature).is_err());
        }
        // Ed25519 is deterministic.
        assert_eq!(p.sign(b"m").unwrap(), p.sign(b"m").unwrap());
        drop(p);

        let p = open();
        assert_eq!(p.signing_public_key().unwrap(), public);
        key.verify(b"after reopen", &p.sign(b"after reopen").unwrap()).unwrap();
    }
}

softhsm_test! {
    /// If the login is dropped under the provider (here: another session of
    /// the process logs out), it logs in again and carries on.
    fn recovers_after_the_login_is_lost() {
        let p = open();
        let dek = DataKey::generate().unwrap();
        let wrapped = p.wrap_data_key(Purpose::AuditFields, 1, &dek).unwrap();
        let s = raw_session();
        s.logout().unwrap();
        assert!(same(&dek, &p.unwrap_data_key(Purpose::AuditFields, 1, &wrapped).unwrap()));
        s.logout().unwrap();
        let again = p.wrap_data_key(Purpose::AuditFields, 1, &dek).unwrap();
        assert!(same(&dek, &p.unwrap_data_key(Purpose::AuditFields, 1, &again).unwrap()));
        s.logout().unwrap();
        UnparsedPublicKey::new(&ED25519, p.signing_public_key().unwrap())
            .verify(b"x", &p.sign(b"x").unwrap())
            .unwrap();
        s.logout().unwrap();
        assert_eq!(p.rotate_root().unwrap(), 2);
        assert!(p.health().healthy);
    }
}

softhsm_test! {
    /// If the PIN changes under a running provider, the re-login fails once
    /// with a clear error and is not retried (which could lock the PIN).
    fn relogin_with_a_rejected_pin_is_not_retried() {
        let p = open();
        let dek = DataKey::generate().unwrap();
        let wrapped = p.wrap_data_key(Purpose::AuditFields, 1, &dek).unwrap();
        let s = raw_session();
        s.set_pin(&SecretString::from(PIN), &SecretString::from("24681357"))
            .unwrap();
        s.logout().unwrap();
        let first = provider_message(
            p.unwrap_data_key(Purpose::AuditFields, 1, &wrapped).unwrap_err(),
        );
        assert!(first.contains("wrong PIN"), "{first}");
        let second = provider_message(p.sign(b"x").unwrap_err());
        assert!(second.contains("not trying again"), "{second}");
        assert!(!p.health().healthy);
    }
}

softhsm_test! {
    /// One provider shared by several threads.
    fn concurrent_use_from_threads() {
        let p = Arc::new(open());
        let handles: Vec<_> = (0..4u32)
            .map(|t| {
                let p = Arc::clone(&p);
                std::thread::spawn(move || {
                    for i in 0..25u32 {
                        let dek = DataKey::generate().unwrap();
                        let w = p.wrap_data_key(Purpose::ApiSecrets, t * 100 + i, &dek).unwrap();
                        let back = p.unwrap_data_key(Purpose::ApiSecrets, t * 100 + i, &w).unwrap();
                        assert!(same(&dek, &back));
                        p.sign(&i.to_be_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }
}
