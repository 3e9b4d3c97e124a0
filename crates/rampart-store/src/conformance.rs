//! The conformance suite every [`Store`] backend must pass.
//!
//! Each case is an async function over any backend that returns
//! `Err(Failure)` instead of panicking, so backends run the same suite from
//! their own test files (one fresh store per case, or [`run_all`] on one
//! store: case ids never collide). Persistence across reopen needs a way to
//! reopen, so [`persists_across_reopen`] takes an opener.

use std::fmt;
use std::future::Future;

use crate::error::StoreError;
use crate::model::{Account, ApiKey, DekState, KeyMetadata, KeyState, MfaEnrolment};
use crate::store::Store;

/// A conformance case that did not hold, with what was expected.
#[derive(Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Self(format!("unexpected store error: {e}"))
    }
}

/// Outcome of one case.
pub type Outcome = Result<(), Failure>;

macro_rules! check_eq {
    ($left:expr, $right:expr, $what:expr) => {{
        let (l, r) = (&$left, &$right);
        if l != r {
            return Err(Failure(format!("{}: got {:?}, expected {:?}", $what, l, r)));
        }
    }};
}

/// A sample account.
pub fn account(id: &str, parent: Option<&str>) -> Account {
    Account {
        id: id.to_owned(),
        name: format!("name of {id}"),
        parent_id: parent.map(str::to_owned),
        created_at_ms: 1_700_000_000_000,
    }
}

/// A sample API key with every optional field set.
pub fn api_key(key_id: &str, account_id: &str) -> ApiKey {
    ApiKey {
        key_id: key_id.to_owned(),
        account_id: account_id.to_owned(),
        scheme: "hmac-sha256".to_owned(),
        scopes: vec!["trade".to_owned(), "read".to_owned()],
        allowed_cidrs: vec!["10.0.0.0/8".to_owned(), "2001:db8::/32".to_owned()],
        expires_at_ms: Some(1_800_000_000_000),
        cert_fingerprint: Some("sha256:ab12".to_owned()),
        profile: Some("binance".to_owned()),
        state: KeyState::Enabled,
        revoked_at_ms: None,
        secret_ciphertext: Some(vec![0, 1, 2, 255, 254, 0]),
        public_key: Some(vec![9; 32]),
        created_at_ms: 1_700_000_000_123,
    }
}

/// A sample data-key version.
pub fn key_meta(purpose: &str, version: u32) -> KeyMetadata {
    KeyMetadata {
        purpose: purpose.to_owned(),
        version,
        wrapped_dek: vec![u8::try_from(version % 256).unwrap_or(0); 60],
        encryptions: 0,
        state: DekState::Active,
        created_at_ms: 1_700_000_000_000 + i64::from(version),
    }
}

/// Accounts round-trip; a duplicate id conflicts; unknown ids are not found.
pub async fn accounts_round_trip(store: &impl Store) -> Outcome {
    let a = account("acc-rt", None);
    store.create_account(&a).await?;
    check_eq!(store.get_account("acc-rt").await?, a, "account read back");
    let mut dup = account("acc-rt", None);
    dup.name = "other".to_owned();
    check_eq!(
        store.create_account(&dup).await,
        Err(StoreError::Conflict("account")),
        "duplicate account id"
    );
    check_eq!(
        store.get_account("acc-rt").await?.name,
        a.name,
        "duplicate did not overwrite"
    );
    check_eq!(
        store.get_account("acc-missing").await,
        Err(StoreError::NotFound("account")),
        "unknown account"
    );
    Ok(())
}

/// Sub-accounts list under their parent only, ordered by id; an unknown
/// parent is refused.
pub async fn sub_accounts(store: &impl Store) -> Outcome {
    store.create_account(&account("sub-parent", None)).await?;
    store.create_account(&account("sub-other", None)).await?;
    let b = account("sub-parent-b", Some("sub-parent"));
    let a = account("sub-parent-a", Some("sub-parent"));
    store.create_account(&b).await?;
    store.create_account(&a).await?;
    store
        .create_account(&account("sub-other-x", Some("sub-other")))
        .await?;
    check_eq!(
        store.list_sub_accounts("sub-parent").await?,
        vec![a.clone(), b],
        "sub-accounts of parent"
    );
    check_eq!(
        store.get_account("sub-parent-a").await?.parent_id,
        Some("sub-parent".to_owned()),
        "parent id read back"
    );
    check_eq!(
        store.list_sub_accounts("sub-parent-a").await?,
        Vec::<Account>::new(),
        "leaf has no sub-accounts"
    );
    check_eq!(
        store
            .create_account(&account("sub-orphan", Some("sub-nobody")))
            .await,
        Err(StoreError::MissingReference("account")),
        "sub-account of unknown parent"
    );
    check_eq!(
        store.get_account("sub-orphan").await,
        Err(StoreError::NotFound("account")),
        "refused sub-account not stored"
    );
    Ok(())
}

/// API keys round-trip with every field (lists, optional fields, opaque
/// bytes), and with every optional field empty.
pub async fn api_keys_round_trip(store: &impl Store) -> Outcome {
    store.create_account(&account("key-rt", None)).await?;
    let full = api_key("kid-rt-full", "key-rt");
    store.create_api_key(&full).await?;
    check_eq!(store.get_api_key("kid-rt-full").await?, full, "full key");

    let bare = ApiKey {
        key_id: "kid-rt-bare".to_owned(),
        scheme: "ed25519".to_owned(),
        scopes: Vec::new(),
        allowed_cidrs: Vec::new(),
        expires_at_ms: None,
        cert_fingerprint: None,
        profile: None,
        secret_ciphertext: None,
        public_key: None,
        ..api_key("kid-rt-bare", "key-rt")
    };
    store.create_api_key(&bare).await?;
    check_eq!(store.get_api_key("kid-rt-bare").await?, bare, "bare key");
    check_eq!(
        store.get_api_key("kid-rt-none").await,
        Err(StoreError::NotFound("api key")),
        "unknown key"
    );
    Ok(())
}

/// A duplicate `key_id` conflicts, even under another account, and leaves
/// the first key untouched.
pub async fn api_key_id_unique(store: &impl Store) -> Outcome {
    store.create_account(&account("key-uq-1", None)).await?;
    store.create_account(&account("key-uq-2", None)).await?;
    let first = api_key("kid-uq", "key-uq-1");
    store.create_api_key(&first).await?;
    let mut second = api_key("kid-uq", "key-uq-2");
    second.secret_ciphertext = Some(vec![7; 8]);
    check_eq!(
        store.create_api_key(&second).await,
        Err(StoreError::Conflict("api key")),
        "duplicate key id"
    );
    check_eq!(store.get_api_key("kid-uq").await?, first, "first key kept");
    check_eq!(
        store.list_api_keys("key-uq-2").await?.len(),
        0,
        "no key under second account"
    );
    Ok(())
}

/// A key for an unknown account is refused and not stored.
pub async fn api_key_unknown_account(store: &impl Store) -> Outcome {
    check_eq!(
        store
            .create_api_key(&api_key("kid-orphan", "acc-nobody"))
            .await,
        Err(StoreError::MissingReference("api key")),
        "key of unknown account"
    );
    check_eq!(
        store.get_api_key("kid-orphan").await,
        Err(StoreError::NotFound("api key")),
        "refused key not stored"
    );
    Ok(())
}

/// Keys list per account, ordered by key id, revoked ones included.
pub async fn api_keys_list_by_account(store: &impl Store) -> Outcome {
    store.create_account(&account("key-ls-1", None)).await?;
    store.create_account(&account("key-ls-2", None)).await?;
    let k2 = api_key("kid-ls-b", "key-ls-1");
    let k1 = api_key("kid-ls-a", "key-ls-1");
    let other = api_key("kid-ls-c", "key-ls-2");
    store.create_api_key(&k2).await?;
    store.create_api_key(&k1).await?;
    store.create_api_key(&other).await?;
    store.revoke_api_key("kid-ls-b", 5).await?;
    let listed = store.list_api_keys("key-ls-1").await?;
    let ids: Vec<&str> = listed.iter().map(|k| k.key_id.as_str()).collect();
    check_eq!(ids, vec!["kid-ls-a", "kid-ls-b"], "keys of first account");
    check_eq!(listed.first().cloned(), Some(k1), "first listed key");
    check_eq!(
        listed.get(1).map(|k| k.state),
        Some(KeyState::Revoked),
        "revoked key listed as revoked"
    );
    check_eq!(
        store.list_api_keys("key-ls-2").await?,
        vec![other],
        "keys of second account"
    );
    check_eq!(
        store.list_api_keys("key-ls-none").await?,
        Vec::<ApiKey>::new(),
        "keys of unknown account"
    );
    Ok(())
}

/// Revocation sets the state and time, keeps the first time when repeated,
/// touches no other key, and an unknown key is not found.
pub async fn api_key_revoke(store: &impl Store) -> Outcome {
    store.create_account(&account("key-rv", None)).await?;
    store.create_api_key(&api_key("kid-rv", "key-rv")).await?;
    store
        .create_api_key(&api_key("kid-rv-keep", "key-rv"))
        .await?;
    store.revoke_api_key("kid-rv", 1_750_000_000_000).await?;
    let k = store.get_api_key("kid-rv").await?;
    check_eq!(k.state, KeyState::Revoked, "state after revoke");
    check_eq!(k.revoked_at_ms, Some(1_750_000_000_000), "revocation time");
    check_eq!(
        k.secret_ciphertext,
        api_key("kid-rv", "key-rv").secret_ciphertext,
        "other fields kept"
    );
    store.revoke_api_key("kid-rv", 1_760_000_000_000).await?;
    let again = store.get_api_key("kid-rv").await?;
    check_eq!(again.state, KeyState::Revoked, "state after second revoke");
    check_eq!(
        again.revoked_at_ms,
        Some(1_750_000_000_000),
        "first revocation time kept"
    );
    check_eq!(
        store.get_api_key("kid-rv-keep").await?.state,
        KeyState::Enabled,
        "other key still enabled"
    );
    check_eq!(
        store.revoke_api_key("kid-rv-none", 1).await,
        Err(StoreError::NotFound("api key")),
        "revoke unknown key"
    );
    Ok(())
}

/// MFA enrolments round-trip, are replaced per account and kind, list by
/// kind, and need an existing account.
pub async fn mfa_round_trip(store: &impl Store) -> Outcome {
    store.create_account(&account("mfa-1", None)).await?;
    let totp = MfaEnrolment {
        account_id: "mfa-1".to_owned(),
        kind: "totp".to_owned(),
        seed_ciphertext: vec![1, 2, 3, 0, 255],
        created_at_ms: 10,
    };
    store.put_mfa(&totp).await?;
    check_eq!(
        store.get_mfa("mfa-1", "totp").await?,
        totp,
        "totp read back"
    );
    let replaced = MfaEnrolment {
        seed_ciphertext: vec![4; 40],
        created_at_ms: 20,
        ..totp.clone()
    };
    store.put_mfa(&replaced).await?;
    check_eq!(
        store.get_mfa("mfa-1", "totp").await?,
        replaced.clone(),
        "totp replaced"
    );
    let webauthn = MfaEnrolment {
        kind: "webauthn".to_owned(),
        seed_ciphertext: vec![8; 16],
        ..totp.clone()
    };
    store.put_mfa(&webauthn).await?;
    check_eq!(
        store.list_mfa("mfa-1").await?,
        vec![replaced, webauthn],
        "enrolments listed by kind"
    );
    check_eq!(
        store.get_mfa("mfa-1", "sms").await,
        Err(StoreError::NotFound("mfa enrolment")),
        "unknown kind"
    );
    let orphan = MfaEnrolment {
        account_id: "mfa-nobody".to_owned(),
        ..totp
    };
    check_eq!(
        store.put_mfa(&orphan).await,
        Err(StoreError::MissingReference("mfa enrolment")),
        "enrolment of unknown account"
    );
    check_eq!(
        store.list_mfa("mfa-nobody").await?.len(),
        0,
        "refused enrolment not stored"
    );
    Ok(())
}

/// Data-key versions round-trip, list by version per purpose, refuse a
/// duplicate version, count encryptions and change state.
pub async fn key_metadata_versions(store: &impl Store) -> Outcome {
    let v2 = key_meta("km-api", 2);
    let v1 = KeyMetadata {
        encryptions: 41,
        ..key_meta("km-api", 1)
    };
    store.put_key_metadata(&v2).await?;
    store.put_key_metadata(&v1).await?;
    store.put_key_metadata(&key_meta("km-mfa", 1)).await?;
    check_eq!(
        store.list_key_metadata("km-api").await?,
        vec![v1.clone(), v2.clone()],
        "versions in order"
    );
    check_eq!(
        store.put_key_metadata(&key_meta("km-api", 2)).await,
        Err(StoreError::Conflict("key metadata")),
        "duplicate version"
    );

    check_eq!(
        store.add_encryptions("km-api", 1, 1).await?,
        42,
        "counter after +1"
    );
    check_eq!(
        store.add_encryptions("km-api", 1, 1_000).await?,
        1_042,
        "counter after +1000"
    );
    check_eq!(
        store.add_encryptions("km-api", 2, 0).await?,
        0,
        "other version untouched"
    );
    check_eq!(
        store.add_encryptions("km-api", 3, 1).await,
        Err(StoreError::NotFound("key metadata")),
        "counter of unknown version"
    );
    check_eq!(
        store.add_encryptions("km-api", 1, u64::MAX).await,
        Err(StoreError::Backend(
            "encryption increment out of range".to_owned()
        )),
        "increment past i64"
    );
    let near = i64::MAX.unsigned_abs() - 1_042;
    check_eq!(
        store.add_encryptions("km-api", 1, near).await?,
        i64::MAX.unsigned_abs(),
        "counter at its maximum"
    );
    check_eq!(
        store.add_encryptions("km-api", 1, 1).await,
        Err(StoreError::Conflict("encryption count")),
        "counter overflow refused"
    );

    store.set_key_state("km-api", 1, DekState::Retired).await?;
    let listed = store.list_key_metadata("km-api").await?;
    check_eq!(
        listed.first().map(|m| (m.state, m.encryptions)),
        Some((DekState::Retired, i64::MAX.unsigned_abs())),
        "v1 retired with its count"
    );
    check_eq!(
        listed.get(1).map(|m| m.state),
        Some(DekState::Active),
        "v2 still active"
    );
    check_eq!(
        store.set_key_state("km-api", 9, DekState::Retired).await,
        Err(StoreError::NotFound("key metadata")),
        "state of unknown version"
    );
    check_eq!(
        store.list_key_metadata("km-mfa").await?,
        vec![key_meta("km-mfa", 1)],
        "other purpose untouched"
    );
    check_eq!(
        store.list_key_metadata("km-none").await?.len(),
        0,
        "unknown purpose"
    );
    Ok(())
}

/// The minimum decryption version starts unset, rises, never lowers, and is
/// per purpose.
pub async fn min_decrypt_version(store: &impl Store) -> Outcome {
    check_eq!(
        store.min_decrypt_version("mv-api").await?,
        None,
        "unset at first"
    );
    store.set_min_decrypt_version("mv-api", 2).await?;
    check_eq!(
        store.min_decrypt_version("mv-api").await?,
        Some(2),
        "after set"
    );
    store.set_min_decrypt_version("mv-api", 2).await?;
    store.set_min_decrypt_version("mv-api", 5).await?;
    check_eq!(
        store.min_decrypt_version("mv-api").await?,
        Some(5),
        "after raise"
    );
    check_eq!(
        store.set_min_decrypt_version("mv-api", 4).await,
        Err(StoreError::Conflict("minimum decryption version")),
        "lowering refused"
    );
    check_eq!(
        store.min_decrypt_version("mv-api").await?,
        Some(5),
        "unchanged after refused lowering"
    );
    check_eq!(
        store.min_decrypt_version("mv-mfa").await?,
        None,
        "other purpose unset"
    );
    Ok(())
}

/// Everything written through one store is read back, unchanged, through
/// a store reopened on the same storage (`open` is called twice; the first
/// store is dropped before the second open).
pub async fn persists_across_reopen<S, F, Fut>(open: F) -> Outcome
where
    S: Store,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<S, StoreError>>,
{
    let parent = account("re-parent", None);
    let child = account("re-child", Some("re-parent"));
    let mut key = api_key("kid-re", "re-child");
    let mfa = MfaEnrolment {
        account_id: "re-child".to_owned(),
        kind: "totp".to_owned(),
        seed_ciphertext: vec![42; 33],
        created_at_ms: 7,
    };
    {
        let store = open().await?;
        store.create_account(&parent).await?;
        store.create_account(&child).await?;
        store.create_api_key(&key).await?;
        store.revoke_api_key("kid-re", 99).await?;
        store.put_mfa(&mfa).await?;
        store.put_key_metadata(&key_meta("re-api", 1)).await?;
        store.add_encryptions("re-api", 1, 17).await?;
        store.set_min_decrypt_version("re-api", 1).await?;
    }
    let store = open().await?;
    key.state = KeyState::Revoked;
    key.revoked_at_ms = Some(99);
    check_eq!(store.get_account("re-parent").await?, parent, "parent");
    check_eq!(
        store.list_sub_accounts("re-parent").await?,
        vec![child],
        "child"
    );
    check_eq!(store.get_api_key("kid-re").await?, key, "key");
    check_eq!(store.get_mfa("re-child", "totp").await?, mfa, "mfa");
    check_eq!(
        store.list_key_metadata("re-api").await?,
        vec![KeyMetadata {
            encryptions: 17,
            ..key_meta("re-api", 1)
        }],
        "key metadata"
    );
    check_eq!(
        store.min_decrypt_version("re-api").await?,
        Some(1),
        "min version"
    );
    Ok(())
}

/// Runs every single-store case on one store, stopping at the first
/// failure (named in the message).
pub async fn run_all(store: &impl Store) -> Outcome {
    macro_rules! case {
        ($name:ident) => {
            $name(store)
                .await
                .map_err(|f| Failure(format!("{}: {}", stringify!($name), f)))?
        };
    }
    case!(accounts_round_trip);
    case!(sub_accounts);
    case!(api_keys_round_trip);
    case!(api_key_id_unique);
    case!(api_key_unknown_account);
    case!(api_keys_list_by_account);
    case!(api_key_revoke);
    case!(mfa_round_trip);
    case!(key_metadata_versions);
    case!(min_decrypt_version);
    Ok(())
}
