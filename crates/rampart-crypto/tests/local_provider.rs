//! The `local` key provider: file modes, passphrase sealing, wrong keys.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rampart_crypto::local::root_key_path;
use rampart_crypto::{
    CryptoError, DataKey, KdfParams, KeyProvider, LocalKeyProvider, Purpose, SecretString,
};

/// Cheap parameters so debug-build tests stay fast; production uses the default.
const FAST: KdfParams = KdfParams {
    m_cost_kib: 64,
    t_cost: 1,
    p_cost: 1,
};

fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    (dir, data)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn pass(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

#[test]
fn creates_private_dir_and_key_file() {
    let (_t, data) = data_dir();
    let p = LocalKeyProvider::create(&data, None, FAST).unwrap();
    assert_eq!(mode(&data), 0o700);
    let key = root_key_path(&data);
    assert_eq!(p.path(), key);
    assert_eq!(mode(&key), 0o600);
    assert_eq!(fs::read(&key).unwrap().len(), 42);
    assert!(!p.is_sealed());
    assert!(p.health().healthy);
    assert!(!format!("{p:?}").contains(&format!("{:?}", &fs::read(&key).unwrap()[10..])));
}

#[test]
fn reopened_provider_unwraps_what_it_wrapped() {
    let (_t, data) = data_dir();
    let dek = DataKey::generate().unwrap();
    let wrapped = LocalKeyProvider::create(&data, None, FAST)
        .unwrap()
        .wrap_data_key(Purpose::ApiSecrets, 1, &dek)
        .unwrap();
    let p = LocalKeyProvider::open(&data, None).unwrap();
    let back = p.unwrap_data_key(Purpose::ApiSecrets, 1, &wrapped).unwrap();
    assert_eq!(back.expose(), dek.expose());
}

#[test]
fn wrapped_key_is_bound_to_purpose_and_version() {
    let (_t, data) = data_dir();
    let p = LocalKeyProvider::create(&data, None, FAST).unwrap();
    let dek = DataKey::generate().unwrap();
    let wrapped = p.wrap_data_key(Purpose::MfaSeeds, 3, &dek).unwrap();
    for (purpose, version) in [
        (Purpose::ApiSecrets, 3),
        (Purpose::MfaSeeds, 4),
        (Purpose::AuditFields, 3),
    ] {
        assert!(matches!(
            p.unwrap_data_key(purpose, version, &wrapped),
            Err(CryptoError::Unwrap { .. })
        ));
    }
    for len in 0..wrapped.len() {
        assert!(p
            .unwrap_data_key(Purpose::MfaSeeds, 3, &wrapped[..len])
            .is_err());
    }
    let mut bad = wrapped.clone();
    *bad.last_mut().unwrap() ^= 1;
    assert!(p.unwrap_data_key(Purpose::MfaSeeds, 3, &bad).is_err());
}

#[test]
fn wrong_root_key_fails() {
    let (_t1, a) = data_dir();
    let (_t2, b) = data_dir();
    let pa = LocalKeyProvider::create(&a, None, FAST).unwrap();
    let pb = LocalKeyProvider::create(&b, None, FAST).unwrap();
    let wrapped = pa
        .wrap_data_key(Purpose::ApiSecrets, 1, &DataKey::generate().unwrap())
        .unwrap();
    let err = pb
        .unwrap_data_key(Purpose::ApiSecrets, 1, &wrapped)
        .unwrap_err();
    assert!(matches!(err, CryptoError::Unwrap { .. }));
    assert!(err.to_string().contains("wrong root key"), "{err}");
}

#[test]
fn refuses_group_or_world_readable_key_file() {
    let (_t, data) = data_dir();
    LocalKeyProvider::create(&data, None, FAST).unwrap();
    let key = root_key_path(&data);
    for bad in [0o644, 0o640, 0o604, 0o660] {
        chmod(&key, bad);
        let err = LocalKeyProvider::open(&data, None).unwrap_err();
        assert!(
            matches!(err, CryptoError::InsecurePermissions { mode, fix: "600", .. } if mode == bad),
            "{bad:o}: {err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
    chmod(&key, 0o400);
    LocalKeyProvider::open(&data, None).unwrap();
}

#[test]
fn refuses_world_accessible_data_dir() {
    let (_t, data) = data_dir();
    LocalKeyProvider::create(&data, None, FAST).unwrap();
    for bad in [0o755, 0o701, 0o777] {
        chmod(&data, bad);
        let err = LocalKeyProvider::open(&data, None).unwrap_err();
        assert!(
            matches!(err, CryptoError::InsecurePermissions { fix: "700", .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 700"), "{err}");
    }
    chmod(&data, 0o750);
    LocalKeyProvider::open(&data, None).unwrap();
    // create refuses too, before writing anything
    let (_t2, other) = data_dir();
    fs::create_dir(&other).unwrap();
    chmod(&other, 0o755);
    assert!(matches!(
        LocalKeyProvider::create(&other, None, FAST),
        Err(CryptoError::InsecurePermissions { .. })
    ));
    assert!(!root_key_path(&other).exists());
}

#[test]
fn missing_existing_and_malformed_files() {
    let (_t, data) = data_dir();
    fs::create_dir(&data).unwrap();
    chmod(&data, 0o700);
    let err = LocalKeyProvider::open(&data, None).unwrap_err();
    assert!(matches!(err, CryptoError::MissingRootKey { .. }), "{err}");
    assert!(err.to_string().contains("restore it from backup"), "{err}");

    LocalKeyProvider::open_or_create(&data, None, FAST).unwrap();
    LocalKeyProvider::open_or_create(&data, None, FAST).unwrap();
    assert!(matches!(
        LocalKeyProvider::create(&data, None, FAST),
        Err(CryptoError::RootKeyExists { .. })
    ));

    let key = root_key_path(&data);
    let good = fs::read(&key).unwrap();
    for len in 0..good.len() {
        fs::write(&key, &good[..len]).unwrap();
        assert!(matches!(
            LocalKeyProvider::open(&data, None),
            Err(CryptoError::MalformedRootKey { .. })
        ));
    }
    fs::write(&key, vec![0u8; 10_000]).unwrap();
    assert!(matches!(
        LocalKeyProvider::open(&data, None),
        Err(CryptoError::MalformedRootKey { .. })
    ));
}

#[test]
fn refuses_symlinked_key_file() {
    let (_t, data) = data_dir();
    let (_t2, elsewhere) = data_dir();
    LocalKeyProvider::create(&elsewhere, None, FAST).unwrap();
    fs::create_dir(&data).unwrap();
    chmod(&data, 0o700);
    std::os::unix::fs::symlink(root_key_path(&elsewhere), root_key_path(&data)).unwrap();
    assert!(matches!(
        LocalKeyProvider::open(&data, None),
        Err(CryptoError::WrongFileType { .. })
    ));
}

#[test]
fn passphrase_seal_round_trip() {
    let (_t, data) = data_dir();
    let p = LocalKeyProvider::create(&data, Some(&pass("correct horse")), FAST).unwrap();
    assert!(p.is_sealed());
    assert_eq!(mode(&root_key_path(&data)), 0o600);
    assert_eq!(fs::read(root_key_path(&data)).unwrap().len(), 98);
    let dek = DataKey::generate().unwrap();
    let wrapped = p.wrap_data_key(Purpose::AuditFields, 1, &dek).unwrap();

    let reopened = LocalKeyProvider::open(&data, Some(&pass("correct horse"))).unwrap();
    assert!(reopened.is_sealed());
    let back = reopened
        .unwrap_data_key(Purpose::AuditFields, 1, &wrapped)
        .unwrap();
    assert_eq!(back.expose(), dek.expose());
}

#[test]
fn wrong_or_missing_passphrase_is_a_clear_error() {
    let (_t, data) = data_dir();
    LocalKeyProvider::create(&data, Some(&pass("correct horse")), FAST).unwrap();

    let err = LocalKeyProvider::open(&data, Some(&pass("correct horse "))).unwrap_err();
    assert!(matches!(err, CryptoError::WrongPassphrase { .. }), "{err}");
    assert!(err.to_string().starts_with("wrong passphrase"), "{err}");
    assert!(!format!("{err} {err:?}").contains("correct horse"));

    let err = LocalKeyProvider::open(&data, None).unwrap_err();
    assert!(
        matches!(err, CryptoError::PassphraseRequired { .. }),
        "{err}"
    );

    let (_t2, plain) = data_dir();
    LocalKeyProvider::create(&plain, None, FAST).unwrap();
    let err = LocalKeyProvider::open(&plain, Some(&pass("x"))).unwrap_err();
    assert!(matches!(err, CryptoError::NotSealed { .. }), "{err}");
}

#[test]
fn sealed_file_parameters_are_authenticated() {
    let (_t, data) = data_dir();
    LocalKeyProvider::create(&data, Some(&pass("pw")), FAST).unwrap();
    let key = root_key_path(&data);
    let good = fs::read(&key).unwrap();
    // t_cost 1 → 2: still valid parameters, but the AAD no longer matches.
    let mut bad = good.clone();
    bad[17] = 2;
    fs::write(&key, &bad).unwrap();
    assert!(matches!(
        LocalKeyProvider::open(&data, Some(&pass("pw"))),
        Err(CryptoError::WrongPassphrase { .. })
    ));
    // An absurd memory cost is refused before any allocation.
    let mut huge = good.clone();
    huge[10..14].copy_from_slice(&u32::MAX.to_be_bytes());
    fs::write(&key, &huge).unwrap();
    assert!(matches!(
        LocalKeyProvider::open(&data, Some(&pass("pw"))),
        Err(CryptoError::Kdf(_))
    ));
    fs::write(&key, &good).unwrap();
    LocalKeyProvider::open(&data, Some(&pass("pw"))).unwrap();
}

#[test]
fn root_rotation_keeps_old_wraps_until_destroyed_and_survives_a_crash() {
    let (_t, data) = data_dir();
    let p = LocalKeyProvider::create(&data, Some(&pass("pw")), FAST).unwrap();
    let dek = DataKey::generate().unwrap();
    let w1 = p.wrap_data_key(Purpose::ApiSecrets, 1, &dek).unwrap();
    assert_eq!(p.wrapped_root_version(&w1).unwrap(), 1);

    assert_eq!(p.rotate_root().unwrap(), 2);
    let next = data.join(rampart_crypto::local::NEXT_ROOT_KEY_FILE);
    assert_eq!(mode(&next), 0o600);
    let w2 = p.wrap_data_key(Purpose::ApiSecrets, 1, &dek).unwrap();
    assert_eq!(p.wrapped_root_version(&w2).unwrap(), 2);
    assert_eq!(p.root_key_versions(), vec![1, 2]);
    // A second rotate_root before the first finished keeps the pending version.
    assert_eq!(p.rotate_root().unwrap(), 2);

    // "Crash": reopen with both files present; both versions unwrap.
    drop(p);
    let p = LocalKeyProvider::open(&data, Some(&pass("pw"))).unwrap();
    assert_eq!(p.root_key_versions(), vec![1, 2]);
    assert_eq!(p.root_key_version(), 2);
    assert!(p.unwrap_data_key(Purpose::ApiSecrets, 1, &w1).is_ok());
    assert!(p.unwrap_data_key(Purpose::ApiSecrets, 1, &w2).is_ok());

    assert!(matches!(
        p.destroy_root_versions_below(3),
        Err(CryptoError::InvalidRootVersion {
            requested: 3,
            current: 2
        })
    ));
    let old_bytes = fs::read(root_key_path(&data)).unwrap();
    assert_eq!(p.destroy_root_versions_below(2).unwrap(), 1);
    assert!(!next.exists());
    assert_eq!(mode(&root_key_path(&data)), 0o600);
    assert_ne!(fs::read(root_key_path(&data)).unwrap(), old_bytes);
    assert!(matches!(
        p.unwrap_data_key(Purpose::ApiSecrets, 1, &w1),
        Err(CryptoError::Unwrap { .. })
    ));
    assert!(p.unwrap_data_key(Purpose::ApiSecrets, 1, &w2).is_ok());
    assert_eq!(p.destroy_root_versions_below(2).unwrap(), 0);

    drop(p);
    let p = LocalKeyProvider::open(&data, Some(&pass("pw"))).unwrap();
    assert_eq!(p.root_key_versions(), vec![2]);
    assert!(p.unwrap_data_key(Purpose::ApiSecrets, 1, &w1).is_err());
    assert_eq!(
        p.unwrap_data_key(Purpose::ApiSecrets, 1, &w2)
            .unwrap()
            .expose(),
        dek.expose()
    );
}

#[test]
fn signing_key_is_stable_private_and_verifies() {
    use aws_lc_rs::signature::{UnparsedPublicKey, ED25519};
    let (_t, data) = data_dir();
    let p = LocalKeyProvider::create(&data, None, FAST).unwrap();
    let pk = p.signing_public_key().unwrap();
    let sig = p.sign(b"checkpoint body").unwrap();
    UnparsedPublicKey::new(&ED25519, pk)
        .verify(b"checkpoint body", &sig)
        .unwrap();
    assert!(UnparsedPublicKey::new(&ED25519, pk)
        .verify(b"other body", &sig)
        .is_err());
    let file = data.join(rampart_crypto::local::SIGNING_KEY_FILE);
    assert_eq!(mode(&file), 0o600);
    // Survives a root rotation and a reopen.
    p.rotate_root().unwrap();
    p.destroy_root_versions_below(2).unwrap();
    drop(p);
    let p = LocalKeyProvider::open(&data, None).unwrap();
    assert_eq!(p.signing_public_key().unwrap(), pk);
}

#[test]
fn sealed_signing_key_needs_the_passphrase() {
    let (_t, data) = data_dir();
    let p = LocalKeyProvider::create(&data, Some(&pass("pw")), FAST).unwrap();
    let pk = p.signing_public_key().unwrap();
    let file = fs::read(data.join(rampart_crypto::local::SIGNING_KEY_FILE)).unwrap();
    assert_eq!(&file[..4], b"RMSK");
    assert_eq!(file[5], 1, "sealed kind");
    drop(p);
    assert!(matches!(
        LocalKeyProvider::open(&data, Some(&pass("wrong"))),
        Err(CryptoError::WrongPassphrase { .. })
    ));
    let p = LocalKeyProvider::open(&data, Some(&pass("pw"))).unwrap();
    assert_eq!(p.signing_public_key().unwrap(), pk);
}
