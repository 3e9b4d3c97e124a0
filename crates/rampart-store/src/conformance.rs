//! The conformance suite every [`Store`] backend must pass.
//!
//! Each case is an async function over any backend that returns
//! `Err(Failure)` instead of panicking, so backends run the same suite from
//! their own test files (one fresh store per case, or [`run_all`] on one
//! store: case ids never collide). Persistence across reopen needs a way to
//! reopen, so [`persists_across_reopen`] takes an opener.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use zeroize::Zeroizing;

use crate::error::StoreError;
use crate::model::{
    Account, AccountKey, ApiKey, CipherRef, CipherSwap, DekState, EnrolmentToken, KeyMetadata,
    KeyPermissions, KeyState, MfaEnrolment, Operator, OperatorCredential, StoredCiphertext,
    WithdrawalAddress, COSE_EDDSA, COSE_ES256, DEFAULT_MFA_ALGORITHM, DEFAULT_MFA_DIGITS,
    DEFAULT_MFA_PERIOD_SECS,
};
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
        kyc_tier: 0,
        risk_profile: None,
    }
}

/// Sample key permissions with every setting away from its default.
pub fn permissions() -> KeyPermissions {
    KeyPermissions {
        instruments: vec!["BTC-USDT".to_owned(), "ETH-USDT-PERP".to_owned()],
        products: vec!["spot".to_owned(), "perp".to_owned()],
        read_only: true,
        max_order_qty: Some("1.5".to_owned()),
        max_notional: Some("250000.00".to_owned()),
        max_open_orders: Some(20),
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
        permissions: permissions(),
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
        root_key_version: 1,
    }
}

/// A sample MFA enrolment: default parameters (SHA1, 6 digits, 30 s), no
/// step used, no recovery codes.
pub fn mfa(account_id: &str, kind: &str, seed_ciphertext: Vec<u8>) -> MfaEnrolment {
    MfaEnrolment {
        account_id: account_id.to_owned(),
        kind: kind.to_owned(),
        seed_ciphertext,
        created_at_ms: 1_700_000_000_456,
        last_used_step: None,
        recovery_hashes: Vec::new(),
        algorithm: DEFAULT_MFA_ALGORITHM.to_owned(),
        digits: DEFAULT_MFA_DIGITS,
        period_secs: DEFAULT_MFA_PERIOD_SECS,
    }
}

/// A well-formed sample recovery-code hash (64 lowercase hex digits, some
/// of them letters), distinct for each `n`.
pub fn recovery_hash(n: u8) -> String {
    format!("{n:02x}{}", "ab".repeat(31))
}

/// A sample withdrawal address book entry, effective a day after it was
/// added.
pub fn withdrawal_address(account_id: &str, address: &str) -> WithdrawalAddress {
    WithdrawalAddress {
        account_id: account_id.to_owned(),
        address: address.to_owned(),
        asset: Some("BTC".to_owned()),
        label: Some(format!("label of {address}")),
        added_at_ms: 1_700_000_000_000,
        effective_at_ms: 1_700_086_400_000,
    }
}

/// A sample live shred handle with a 32-byte secret.
pub fn account_key(account_id: &str) -> AccountKey {
    AccountKey {
        account_id: account_id.to_owned(),
        secret: Some(Zeroizing::new(vec![0x5a; 32])),
        created_at_ms: 1_700_000_000_789,
        shredded_at_ms: None,
    }
}

/// The location of an API key's secret.
pub fn key_ref(key_id: &str) -> CipherRef {
    CipherRef::ApiKeySecret {
        key_id: key_id.to_owned(),
    }
}

/// The location of an API key's previous secret.
pub fn prev_ref(key_id: &str) -> CipherRef {
    CipherRef::ApiKeyPreviousSecret {
        key_id: key_id.to_owned(),
    }
}

/// The location of an MFA seed.
pub fn mfa_ref(account_id: &str, kind: &str) -> CipherRef {
    CipherRef::MfaSeed {
        account_id: account_id.to_owned(),
        kind: kind.to_owned(),
    }
}

/// Walks every stored encrypted field with [`Store::scan_ciphertexts`] in
/// pages of `page` (at least 1), checking that no page is longer than asked
/// and that locations strictly increase across the whole walk.
pub async fn scan_all(store: &impl Store, page: u32) -> Result<Vec<StoredCiphertext>, Failure> {
    let page = page.max(1);
    let mut all: Vec<StoredCiphertext> = Vec::new();
    loop {
        let after = all.last().map(|c| c.location.clone());
        let next = store.scan_ciphertexts(after.as_ref(), page).await?;
        if next.is_empty() {
            return Ok(all);
        }
        if next.len() > usize::try_from(page).unwrap_or(usize::MAX) {
            return Err(Failure(format!(
                "scan page of {} entries, asked for at most {page}",
                next.len()
            )));
        }
        for entry in next {
            if let Some(last) = all.last() {
                if entry.location <= last.location {
                    return Err(Failure(format!(
                        "scan order: {:?} came after {:?}",
                        entry.location, last.location
                    )));
                }
            }
            all.push(entry);
        }
    }
}

/// Drives all `futures` concurrently on the current task and returns their
/// outputs in order (a runtime-free `join_all`: the backend's own I/O runs
/// them in parallel).
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// Validity of the previous secrets of every case but
/// [`previous_secrets_expire`], far beyond the times that case drops at.
const FAR_FUTURE_MS: i64 = 1_900_000_000_000;

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
        permissions: KeyPermissions::default(),
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

/// Many keys are created in one transaction: all of them, or none when
/// one of them is a duplicate (of a stored key or within the batch) or
/// names an unknown account.
pub async fn api_keys_batch_create(store: &impl Store) -> Outcome {
    store.create_account(&account("bat", None)).await?;
    store.create_api_keys(&[]).await?;
    let batch = vec![
        api_key("kid-bat-1", "bat"),
        api_key("kid-bat-2", "bat"),
        ApiKey {
            secret_ciphertext: None,
            ..api_key("kid-bat-3", "bat")
        },
    ];
    store.create_api_keys(&batch).await?;
    check_eq!(store.list_api_keys("bat").await?, batch, "batch stored");

    let mut clash = api_key("kid-bat-1", "bat");
    clash.scheme = "ed25519".to_owned();
    check_eq!(
        store
            .create_api_keys(&[
                api_key("kid-bat-4", "bat"),
                api_key("kid-bat-5", "bat"),
                clash
            ])
            .await,
        Err(StoreError::Conflict("api key")),
        "batch with an existing key id"
    );
    check_eq!(
        store
            .create_api_keys(&[api_key("kid-bat-6", "bat"), api_key("kid-bat-6", "bat")])
            .await,
        Err(StoreError::Conflict("api key")),
        "batch repeating a key id"
    );
    check_eq!(
        store
            .create_api_keys(&[
                api_key("kid-bat-7", "bat"),
                api_key("kid-bat-8", "bat-nobody")
            ])
            .await,
        Err(StoreError::MissingReference("api key")),
        "batch with an unknown account"
    );
    for refused in [
        "kid-bat-4",
        "kid-bat-5",
        "kid-bat-6",
        "kid-bat-7",
        "kid-bat-8",
    ] {
        check_eq!(
            store.get_api_key(refused).await,
            Err(StoreError::NotFound("api key")),
            format!("{refused} of a refused batch not stored")
        );
    }
    check_eq!(
        store.list_api_keys("bat").await?,
        batch,
        "refused batches changed nothing"
    );
    Ok(())
}

/// The secret ciphertext of a key can be replaced (or set when it had
/// none), leaving every other field alone; an unknown key is not found.
pub async fn api_key_set_secret(store: &impl Store) -> Outcome {
    store.create_account(&account("key-ss", None)).await?;
    let key = api_key("kid-ss", "key-ss");
    let bare = ApiKey {
        secret_ciphertext: None,
        ..api_key("kid-ss-bare", "key-ss")
    };
    store.create_api_keys(&[key.clone(), bare.clone()]).await?;
    store.set_api_key_secret("kid-ss", &[7, 0, 7, 255]).await?;
    check_eq!(
        store.get_api_key("kid-ss").await?,
        ApiKey {
            secret_ciphertext: Some(vec![7, 0, 7, 255]),
            ..key
        },
        "secret replaced, rest kept"
    );
    store.set_api_key_secret("kid-ss-bare", &[1; 48]).await?;
    check_eq!(
        store.get_api_key("kid-ss-bare").await?,
        ApiKey {
            secret_ciphertext: Some(vec![1; 48]),
            ..bare
        },
        "secret set on a key without one"
    );
    check_eq!(
        store.set_api_key_secret("kid-ss-none", &[1]).await,
        Err(StoreError::NotFound("api key")),
        "secret of unknown key"
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
        seed_ciphertext: vec![1, 2, 3, 0, 255],
        created_at_ms: 10,
        ..mfa("mfa-1", "totp", Vec::new())
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

/// Shred handles round-trip, are never replaced (not even once shredded),
/// need an existing account and a live secret; shredding deletes the secret,
/// keeps the first shredding time and touches no other account.
pub async fn account_keys_shred(store: &impl Store) -> Outcome {
    store.create_account(&account("ak-1", None)).await?;
    store.create_account(&account("ak-2", None)).await?;
    let k1 = account_key("ak-1");
    let k2 = AccountKey {
        secret: Some(Zeroizing::new((0..=31).collect())),
        ..account_key("ak-2")
    };
    check_eq!(
        store.get_account_key("ak-1").await,
        Err(StoreError::NotFound("account key")),
        "no handle at first"
    );
    store.put_account_key(&k1).await?;
    store.put_account_key(&k2).await?;
    check_eq!(store.get_account_key("ak-1").await?, k1, "handle read back");
    check_eq!(store.get_account_key("ak-2").await?, k2, "second handle");
    check_eq!(
        store.put_account_key(&account_key("ak-1")).await,
        Err(StoreError::Conflict("account key")),
        "second handle for an account"
    );
    check_eq!(
        store.put_account_key(&account_key("ak-nobody")).await,
        Err(StoreError::MissingReference("account key")),
        "handle of unknown account"
    );
    check_eq!(
        store.get_account_key("ak-nobody").await,
        Err(StoreError::NotFound("account key")),
        "refused handle not stored"
    );

    store.create_account(&account("ak-3", None)).await?;
    let not_live = [
        AccountKey {
            secret: None,
            shredded_at_ms: Some(5),
            ..account_key("ak-3")
        },
        AccountKey {
            shredded_at_ms: Some(5),
            ..account_key("ak-3")
        },
        AccountKey {
            secret: None,
            ..account_key("ak-3")
        },
    ];
    for key in &not_live {
        check_eq!(
            store.put_account_key(key).await,
            Err(StoreError::Conflict("account key")),
            format!("handle that is not live: {key:?}")
        );
    }
    check_eq!(
        store.get_account_key("ak-3").await,
        Err(StoreError::NotFound("account key")),
        "refused handles not stored"
    );

    store.shred_account_key("ak-1", 1_750_000_000_000).await?;
    let shredded = AccountKey {
        secret: None,
        shredded_at_ms: Some(1_750_000_000_000),
        ..k1.clone()
    };
    check_eq!(
        store.get_account_key("ak-1").await?,
        shredded.clone(),
        "shredded handle"
    );
    store.shred_account_key("ak-1", 1_760_000_000_000).await?;
    check_eq!(
        store.get_account_key("ak-1").await?,
        shredded,
        "first shredding time kept"
    );
    check_eq!(
        store.put_account_key(&k1).await,
        Err(StoreError::Conflict("account key")),
        "shredded handle never replaced"
    );
    check_eq!(
        store.get_account_key("ak-2").await?,
        k2,
        "other account untouched"
    );
    check_eq!(
        store.shred_account_key("ak-nobody", 1).await,
        Err(StoreError::NotFound("account key")),
        "shred of unknown account"
    );
    check_eq!(
        store.shred_account_key("ak-3", 1).await,
        Err(StoreError::NotFound("account key")),
        "shred of account without a handle"
    );
    Ok(())
}

/// The root-key version of a data-key version round-trips (its whole
/// range), and a rewrap replaces the wrapped DEK and root-key version of
/// that version only.
pub async fn key_metadata_rewrap(store: &impl Store) -> Outcome {
    let v1 = KeyMetadata {
        root_key_version: 0,
        ..key_meta("rw-api", 1)
    };
    let v2 = KeyMetadata {
        root_key_version: u32::MAX,
        encryptions: 9,
        state: DekState::Retired,
        ..key_meta("rw-api", 2)
    };
    store.put_key_metadata(&v1).await?;
    store.put_key_metadata(&v2).await?;
    store.put_key_metadata(&key_meta("rw-mfa", 1)).await?;
    check_eq!(
        store.list_key_metadata("rw-api").await?,
        vec![v1.clone(), v2.clone()],
        "root key versions read back"
    );
    store
        .update_wrapped_dek("rw-api", 2, &[0xaa, 0, 0xbb], 7)
        .await?;
    check_eq!(
        store.list_key_metadata("rw-api").await?,
        vec![
            v1,
            KeyMetadata {
                wrapped_dek: vec![0xaa, 0, 0xbb],
                root_key_version: 7,
                ..v2
            }
        ],
        "rewrapped version, the other untouched"
    );
    check_eq!(
        store.list_key_metadata("rw-mfa").await?,
        vec![key_meta("rw-mfa", 1)],
        "other purpose untouched"
    );
    check_eq!(
        store.update_wrapped_dek("rw-api", 3, &[1], 2).await,
        Err(StoreError::NotFound("key metadata")),
        "rewrap of unknown version"
    );
    check_eq!(
        store.update_wrapped_dek("rw-none", 1, &[1], 2).await,
        Err(StoreError::NotFound("key metadata")),
        "rewrap of unknown purpose"
    );
    Ok(())
}

/// Encrypted fields are counted and scanned in [`CipherRef`] order (API-key
/// secrets by key id, compared byte-wise, then MFA seeds by account and
/// kind), skipping keys without a secret; `after` may sit anywhere, in
/// either kind, and need not exist; pages never overlap or skip, also when
/// fields are inserted and updated between pages. Other cases' fields may
/// be present: only this case's ids are pinned down exactly.
pub async fn ciphertext_scan_order(store: &impl Store) -> Outcome {
    let before = store.count_ciphertexts().await?;
    for id in ["cx-acc-1", "cx-acc-2", "cx-a", "cx-b"] {
        store.create_account(&account(id, None)).await?;
    }
    let key = |id: &str, acc: &str, secret: Option<Vec<u8>>| ApiKey {
        secret_ciphertext: secret,
        ..api_key(id, acc)
    };
    store
        .create_api_keys(&[
            key("cx-k4", "cx-acc-2", Some(vec![4])),
            key("cx-k2b", "cx-acc-1", None),
            key("cx-K0", "cx-acc-1", Some(vec![0])),
            key("cx-k\u{e9}", "cx-acc-2", Some(vec![5])),
            key("cx-k2", "cx-acc-1", Some(vec![2])),
            key("cx-k1", "cx-acc-1", Some(vec![1])),
            key("cx-k3", "cx-acc-2", Some(vec![3])),
        ])
        .await?;
    store.put_mfa(&mfa("cx-b", "totp", vec![0xb1])).await?;
    store.put_mfa(&mfa("cx-a", "webauthn", vec![0xa2])).await?;
    store.put_mfa(&mfa("cx-a", "totp", vec![0xa1])).await?;
    check_eq!(
        store.count_ciphertexts().await?,
        before + 9,
        "count: six secrets and three seeds added"
    );

    let entry = |location: CipherRef, acc: &str, ciphertext: Vec<u8>| StoredCiphertext {
        location,
        account_id: acc.to_owned(),
        ciphertext,
    };
    let all = scan_all(store, 3).await?;
    check_eq!(
        u64::try_from(all.len()).unwrap_or(u64::MAX),
        before + 9,
        "full scan visits every counted field"
    );
    check_eq!(
        store.scan_ciphertexts(None, u32::MAX).await?,
        all.clone(),
        "one big page equals the paged walk"
    );
    check_eq!(scan_all(store, 1).await?, all.clone(), "pages of one");
    let ours: Vec<StoredCiphertext> = all
        .iter()
        .filter(|c| c.location.record_id().starts_with("cx-"))
        .cloned()
        .collect();
    check_eq!(
        ours,
        vec![
            entry(key_ref("cx-K0"), "cx-acc-1", vec![0]),
            entry(key_ref("cx-k1"), "cx-acc-1", vec![1]),
            entry(key_ref("cx-k2"), "cx-acc-1", vec![2]),
            entry(key_ref("cx-k3"), "cx-acc-2", vec![3]),
            entry(key_ref("cx-k4"), "cx-acc-2", vec![4]),
            entry(key_ref("cx-k\u{e9}"), "cx-acc-2", vec![5]),
            entry(mfa_ref("cx-a", "totp"), "cx-a", vec![0xa1]),
            entry(mfa_ref("cx-a", "webauthn"), "cx-a", vec![0xa2]),
            entry(mfa_ref("cx-b", "totp"), "cx-b", vec![0xb1]),
        ],
        "this case's fields, in order"
    );

    check_eq!(
        store.scan_ciphertexts(None, 0).await?,
        Vec::<StoredCiphertext>::new(),
        "limit 0"
    );
    check_eq!(
        store.scan_ciphertexts(None, 1).await?,
        all.first().cloned().into_iter().collect::<Vec<_>>(),
        "first page of one"
    );
    check_eq!(
        store.scan_ciphertexts(Some(&key_ref("cx-k1")), 2).await?,
        vec![
            entry(key_ref("cx-k2"), "cx-acc-1", vec![2]),
            entry(key_ref("cx-k3"), "cx-acc-2", vec![3]),
        ],
        "after a key in the middle, skipping a key without secret"
    );
    check_eq!(
        store.scan_ciphertexts(Some(&key_ref("cx-k2a")), 1).await?,
        vec![entry(key_ref("cx-k3"), "cx-acc-2", vec![3])],
        "after a key id that does not exist"
    );
    check_eq!(
        store
            .scan_ciphertexts(Some(&mfa_ref("cx-a", "totp")), 2)
            .await?,
        vec![
            entry(mfa_ref("cx-a", "webauthn"), "cx-a", vec![0xa2]),
            entry(mfa_ref("cx-b", "totp"), "cx-b", vec![0xb1]),
        ],
        "after a seed in the middle, ordered by account then kind"
    );
    check_eq!(
        store
            .scan_ciphertexts(Some(&mfa_ref("cx-a", "u")), 1)
            .await?,
        vec![entry(mfa_ref("cx-a", "webauthn"), "cx-a", vec![0xa2])],
        "after a seed that does not exist"
    );

    // A page spanning the end of the keys and the start of the seeds
    // (previous secrets of other cases may sit in between).
    let first_seed = all
        .iter()
        .position(|c| matches!(c.location, CipherRef::MfaSeed { .. }))
        .ok_or_else(|| Failure("no seed in the full scan".to_owned()))?;
    let before_last_key = first_seed
        .checked_sub(2)
        .and_then(|i| all.get(i))
        .map(|c| c.location.clone())
        .ok_or_else(|| Failure("fewer than two keys in the full scan".to_owned()))?;
    check_eq!(
        store.scan_ciphertexts(Some(&before_last_key), 3).await?,
        all.iter()
            .skip(first_seed.saturating_sub(1))
            .take(3)
            .cloned()
            .collect::<Vec<_>>(),
        "page from the last key into the seeds"
    );
    check_eq!(
        store
            .scan_ciphertexts(Some(&key_ref("\u{10ffff}")), 2)
            .await?,
        all.iter()
            .skip_while(|c| matches!(c.location, CipherRef::ApiKeySecret { .. }))
            .take(2)
            .cloned()
            .collect::<Vec<_>>(),
        "after every key id: the first fields of the next kinds"
    );
    let last = all
        .last()
        .map(|c| c.location.clone())
        .ok_or_else(|| Failure("empty full scan".to_owned()))?;
    check_eq!(
        store.scan_ciphertexts(Some(&last), 5).await?,
        Vec::<StoredCiphertext>::new(),
        "nothing after the last field"
    );

    // Writes between pages: behind the cursor they are not seen, ahead of
    // it they are, and nothing is visited twice.
    let page = store.scan_ciphertexts(Some(&key_ref("cx-k1")), 2).await?;
    let cursor = page
        .last()
        .map(|c| c.location.clone())
        .ok_or_else(|| Failure("empty page".to_owned()))?;
    check_eq!(cursor, key_ref("cx-k3"), "cursor");
    store
        .create_api_keys(&[
            key("cx-k2c", "cx-acc-1", Some(vec![6])),
            key("cx-k4a", "cx-acc-2", Some(vec![7])),
        ])
        .await?;
    store.set_api_key_secret("cx-k4", &[44]).await?;
    store.set_api_key_secret("cx-k2b", &[22]).await?;
    check_eq!(
        store.scan_ciphertexts(Some(&cursor), 3).await?,
        vec![
            entry(key_ref("cx-k4"), "cx-acc-2", vec![44]),
            entry(key_ref("cx-k4a"), "cx-acc-2", vec![7]),
            entry(key_ref("cx-k\u{e9}"), "cx-acc-2", vec![5]),
        ],
        "next page sees writes ahead of the cursor only"
    );
    check_eq!(
        store.count_ciphertexts().await?,
        before + 12,
        "count after more writes"
    );
    Ok(())
}

/// Compare-and-swaps apply, in order and in one transaction, exactly when
/// the field still holds the expected bytes; a changed field, a key
/// without secret or a missing record is reported as not applied and left
/// alone.
pub async fn ciphertext_swaps(store: &impl Store) -> Outcome {
    store.create_account(&account("sw", None)).await?;
    let key = |id: &str, secret: Option<Vec<u8>>| ApiKey {
        secret_ciphertext: secret,
        ..api_key(id, "sw")
    };
    store
        .create_api_keys(&[
            key("sw-k1", Some(vec![1; 8])),
            key("sw-k2", Some(vec![2; 8])),
            key("sw-k3", None),
        ])
        .await?;
    store.put_mfa(&mfa("sw", "totp", vec![3; 8])).await?;
    let swap = |location: CipherRef, expected: Vec<u8>, new: Vec<u8>| CipherSwap {
        location,
        expected,
        new,
    };
    check_eq!(
        store.swap_ciphertexts(&[]).await?,
        Vec::<bool>::new(),
        "no swaps"
    );
    check_eq!(
        store
            .swap_ciphertexts(&[
                swap(key_ref("sw-k1"), vec![1; 8], vec![11; 9]),
                swap(key_ref("sw-k2"), vec![2; 7], vec![12; 9]),
                swap(key_ref("sw-k3"), Vec::new(), vec![13; 9]),
                swap(key_ref("sw-gone"), vec![1; 8], vec![14; 9]),
                swap(mfa_ref("sw", "totp"), vec![3; 8], vec![15; 9]),
                swap(mfa_ref("sw", "sms"), vec![3; 8], vec![16; 9]),
                swap(mfa_ref("sw-gone", "totp"), vec![3; 8], vec![17; 9]),
            ])
            .await?,
        vec![true, false, false, false, true, false, false],
        "applied per swap"
    );
    check_eq!(
        store.get_api_key("sw-k1").await?.secret_ciphertext,
        Some(vec![11; 9]),
        "applied swap"
    );
    check_eq!(
        store.get_api_key("sw-k2").await?.secret_ciphertext,
        Some(vec![2; 8]),
        "swap with stale expectation left alone"
    );
    check_eq!(
        store.get_api_key("sw-k3").await?.secret_ciphertext,
        None,
        "key without secret left alone"
    );
    check_eq!(
        store.get_mfa("sw", "totp").await?.seed_ciphertext,
        vec![15; 9],
        "applied seed swap"
    );
    check_eq!(
        store.get_api_key("sw-gone").await,
        Err(StoreError::NotFound("api key")),
        "swap creates no key"
    );
    check_eq!(
        store.get_mfa("sw", "sms").await,
        Err(StoreError::NotFound("mfa enrolment")),
        "swap creates no enrolment"
    );

    // An online rewrap racing a writer: the writer wins.
    let page = store.scan_ciphertexts(Some(&key_ref("sw-")), 2).await?;
    check_eq!(
        page.iter().map(|c| c.location.clone()).collect::<Vec<_>>(),
        vec![key_ref("sw-k1"), key_ref("sw-k2")],
        "rewrap page"
    );
    store.set_api_key_secret("sw-k2", &[22; 8]).await?;
    let rewrapped: Vec<CipherSwap> = page
        .into_iter()
        .map(|c| {
            let mut new = c.ciphertext.clone();
            new.push(0xff);
            swap(c.location, c.ciphertext, new)
        })
        .collect();
    check_eq!(
        store.swap_ciphertexts(&rewrapped).await?,
        vec![true, false],
        "rewrap skips the concurrently written field"
    );
    check_eq!(
        store.get_api_key("sw-k1").await?.secret_ciphertext,
        Some([vec![11; 9], vec![0xff]].concat()),
        "rewrapped"
    );
    check_eq!(
        store.get_api_key("sw-k2").await?.secret_ciphertext,
        Some(vec![22; 8]),
        "concurrent write kept"
    );

    // Swaps of one batch see the ones before them.
    check_eq!(
        store
            .swap_ciphertexts(&[
                swap(mfa_ref("sw", "totp"), vec![15; 9], vec![20]),
                swap(mfa_ref("sw", "totp"), vec![20], vec![21]),
                swap(mfa_ref("sw", "totp"), vec![15; 9], vec![22]),
            ])
            .await?,
        vec![true, true, false],
        "swaps applied in order"
    );
    check_eq!(
        store.get_mfa("sw", "totp").await?.seed_ciphertext,
        vec![21],
        "seed after chained swaps"
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

/// Every account is listed, sub-accounts included, ordered by id compared
/// byte-wise.
pub async fn accounts_list_all(store: &impl Store) -> Outcome {
    let before = store.list_accounts().await?.len();
    let b = account("lsa-b", None);
    let a = account("lsa-a", None);
    let child = account("lsa-a-child", Some("lsa-a"));
    let upper = account("lsa-B", None);
    for acc in [&b, &a, &child, &upper] {
        store.create_account(acc).await?;
    }
    let listed = store.list_accounts().await?;
    check_eq!(listed.len(), before + 4, "four accounts added");
    if let Some(pair) = listed
        .windows(2)
        .find(|w| matches!(w, [x, y] if x.id >= y.id))
    {
        return Err(Failure(format!("account order: {pair:?}")));
    }
    check_eq!(
        listed
            .into_iter()
            .filter(|acc| acc.id.starts_with("lsa-"))
            .collect::<Vec<_>>(),
        vec![upper, a, child, b],
        "this case's accounts, in order"
    );
    Ok(())
}

/// Every API key of every account is listed by key id, compared byte-wise,
/// in keyset pages (revoked keys and keys without a secret included);
/// `after` need not exist, a page never exceeds `limit`, and the pages
/// together are exactly the keys of every account.
pub async fn api_keys_list_all(store: &impl Store) -> Outcome {
    store.create_account(&account("lsk-1", None)).await?;
    store.create_account(&account("lsk-2", None)).await?;
    let k3 = api_key("lsk-k3", "lsk-2");
    let k1 = api_key("lsk-k1", "lsk-1");
    let k0 = ApiKey {
        secret_ciphertext: None,
        ..api_key("lsk-K0", "lsk-1")
    };
    let k2 = api_key("lsk-k2", "lsk-2");
    let ke = api_key("lsk-k\u{e9}", "lsk-1");
    store
        .create_api_keys(&[k3.clone(), k1.clone(), k0.clone(), k2.clone(), ke.clone()])
        .await?;
    store.revoke_api_key("lsk-k2", 77).await?;
    let k2 = ApiKey {
        state: KeyState::Revoked,
        revoked_at_ms: Some(77),
        ..k2
    };

    let mut all: Vec<ApiKey> = Vec::new();
    loop {
        let after = all.last().map(|k| k.key_id.clone());
        let page = store.list_all_api_keys(after.as_deref(), 2).await?;
        if page.is_empty() {
            break;
        }
        if page.len() > 2 {
            return Err(Failure(format!(
                "key page of {} entries, asked for at most 2",
                page.len()
            )));
        }
        for key in page {
            if let Some(last) = all.last() {
                if key.key_id <= last.key_id {
                    return Err(Failure(format!(
                        "key order: {} came after {}",
                        key.key_id, last.key_id
                    )));
                }
            }
            all.push(key);
        }
    }
    check_eq!(
        store.list_all_api_keys(None, u32::MAX).await?,
        all.clone(),
        "one big page equals the paged walk"
    );
    check_eq!(
        all.iter()
            .filter(|k| k.key_id.starts_with("lsk-"))
            .cloned()
            .collect::<Vec<_>>(),
        vec![k0, k1, k2.clone(), k3.clone(), ke],
        "this case's keys, in order"
    );
    let mut per_account = 0;
    for acc in store.list_accounts().await? {
        per_account += store.list_api_keys(&acc.id).await?.len();
    }
    check_eq!(
        all.len(),
        per_account,
        "the walk holds the keys of every account"
    );
    check_eq!(
        store.list_all_api_keys(None, 0).await?,
        Vec::<ApiKey>::new(),
        "limit 0"
    );
    check_eq!(
        store.list_all_api_keys(Some("lsk-k1"), 2).await?,
        vec![k2, k3.clone()],
        "after a key in the middle"
    );
    check_eq!(
        store.list_all_api_keys(Some("lsk-k2a"), 1).await?,
        vec![k3],
        "after a key id that does not exist"
    );
    let last = all
        .last()
        .map(|k| k.key_id.clone())
        .ok_or_else(|| Failure("empty key walk".to_owned()))?;
    check_eq!(
        store.list_all_api_keys(Some(&last), 3).await?,
        Vec::<ApiKey>::new(),
        "nothing after the last key"
    );
    Ok(())
}

/// Rotating a key's secret makes the current secret the previous one (with
/// the given validity, replacing any earlier previous secret) and the new
/// one current, leaving every other field and key alone; a key without a
/// secret is a conflict, an unknown key is not found, and a refused
/// rotation changes nothing.
pub async fn api_key_secret_rotation(store: &impl Store) -> Outcome {
    store.create_account(&account("rot", None)).await?;
    let key = ApiKey {
        secret_ciphertext: Some(vec![1; 8]),
        ..api_key("rot-k1", "rot")
    };
    let other = api_key("rot-k2", "rot");
    let bare = ApiKey {
        scheme: "ed25519".to_owned(),
        secret_ciphertext: None,
        ..api_key("rot-bare", "rot")
    };
    store
        .create_api_keys(&[key.clone(), other.clone(), bare.clone()])
        .await?;
    check_eq!(
        store.get_previous_secret("rot-k1").await?,
        None,
        "no previous secret at first"
    );

    store
        .rotate_api_key_secret("rot-k1", &[2; 9], FAR_FUTURE_MS)
        .await?;
    check_eq!(
        store.get_api_key("rot-k1").await?,
        ApiKey {
            secret_ciphertext: Some(vec![2; 9]),
            ..key.clone()
        },
        "new secret current, rest kept"
    );
    check_eq!(
        store.get_previous_secret("rot-k1").await?,
        Some((vec![1; 8], FAR_FUTURE_MS)),
        "old secret previous"
    );

    store
        .rotate_api_key_secret("rot-k1", &[3; 10], FAR_FUTURE_MS + 5)
        .await?;
    check_eq!(
        store.get_api_key("rot-k1").await?.secret_ciphertext,
        Some(vec![3; 10]),
        "second rotation: newest secret current"
    );
    check_eq!(
        store.get_previous_secret("rot-k1").await?,
        Some((vec![2; 9], FAR_FUTURE_MS + 5)),
        "second rotation replaces the previous secret and its validity"
    );
    store
        .rotate_api_key_secret("rot-k1", &[4; 11], FAR_FUTURE_MS - 5)
        .await?;
    check_eq!(
        store.get_previous_secret("rot-k1").await?,
        Some((vec![3; 10], FAR_FUTURE_MS - 5)),
        "a shorter validity replaces a longer one"
    );
    store.set_api_key_secret("rot-k1", &[5; 3]).await?;
    check_eq!(
        store.get_previous_secret("rot-k1").await?,
        Some((vec![3; 10], FAR_FUTURE_MS - 5)),
        "setting the secret leaves the previous one alone"
    );
    check_eq!(
        store.get_api_key("rot-k2").await?,
        other,
        "other key untouched"
    );
    check_eq!(
        store.get_previous_secret("rot-k2").await?,
        None,
        "other key has no previous secret"
    );

    check_eq!(
        store
            .rotate_api_key_secret("rot-bare", &[6; 8], FAR_FUTURE_MS)
            .await,
        Err(StoreError::Conflict("api key secret")),
        "rotation of a key without a secret"
    );
    check_eq!(
        store.get_api_key("rot-bare").await?,
        bare.clone(),
        "refused rotation left the key alone"
    );
    check_eq!(
        store.get_previous_secret("rot-bare").await?,
        None,
        "refused rotation stored no previous secret"
    );
    store.set_api_key_secret("rot-bare", &[7; 8]).await?;
    store
        .rotate_api_key_secret("rot-bare", &[8; 8], FAR_FUTURE_MS)
        .await?;
    check_eq!(
        store.get_previous_secret("rot-bare").await?,
        Some((vec![7; 8], FAR_FUTURE_MS)),
        "rotation once the key has a secret"
    );

    check_eq!(
        store
            .rotate_api_key_secret("rot-none", &[9], FAR_FUTURE_MS)
            .await,
        Err(StoreError::NotFound("api key")),
        "rotation of an unknown key"
    );
    check_eq!(
        store.get_previous_secret("rot-none").await,
        Err(StoreError::NotFound("api key")),
        "previous secret of an unknown key"
    );
    check_eq!(
        store.get_api_key("rot-none").await,
        Err(StoreError::NotFound("api key")),
        "refused rotation created no key"
    );
    Ok(())
}

/// Previous secrets whose validity ended (`valid_until_ms <= now_ms`) are
/// dropped and counted; later ones, the current secrets and other keys
/// stay. Uses validity times long before every other case's, so a shared
/// store holds nothing else that expires at them.
pub async fn previous_secrets_expire(store: &impl Store) -> Outcome {
    store.create_account(&account("exp", None)).await?;
    let ids = ["exp-k1", "exp-k2", "exp-k3", "exp-k4", "exp-k5"];
    let keys: Vec<ApiKey> = ids.iter().map(|id| api_key(id, "exp")).collect();
    store.create_api_keys(&keys).await?;
    for (id, valid_until) in [
        ("exp-k1", 10),
        ("exp-k2", 20),
        ("exp-k3", 30),
        ("exp-k4", 31),
    ] {
        store
            .rotate_api_key_secret(id, &[0xe0; 4], valid_until)
            .await?;
    }
    let count = store.count_ciphertexts().await?;
    check_eq!(
        store.drop_expired_previous_secrets(9).await?,
        0,
        "nothing expired yet"
    );
    check_eq!(
        store.drop_expired_previous_secrets(20).await?,
        2,
        "expired strictly before and exactly at now"
    );
    for (id, expected) in [
        ("exp-k1", None),
        ("exp-k2", None),
        (
            "exp-k3",
            Some((
                api_key("exp-k3", "exp")
                    .secret_ciphertext
                    .unwrap_or_default(),
                30,
            )),
        ),
        (
            "exp-k4",
            Some((
                api_key("exp-k4", "exp")
                    .secret_ciphertext
                    .unwrap_or_default(),
                31,
            )),
        ),
        ("exp-k5", None),
    ] {
        check_eq!(
            store.get_previous_secret(id).await?,
            expected,
            format!("previous secret of {id} after the drop")
        );
        check_eq!(
            store.get_api_key(id).await?.secret_ciphertext,
            Some(if id == "exp-k5" {
                api_key(id, "exp").secret_ciphertext.unwrap_or_default()
            } else {
                vec![0xe0; 4]
            }),
            format!("current secret of {id} kept")
        );
    }
    check_eq!(
        store.count_ciphertexts().await?,
        count - 2,
        "dropped secrets no longer counted"
    );
    check_eq!(
        store.drop_expired_previous_secrets(20).await?,
        0,
        "a repeated drop finds nothing"
    );
    check_eq!(
        store.drop_expired_previous_secrets(30).await?,
        1,
        "the next one expires"
    );
    check_eq!(
        store.get_previous_secret("exp-k4").await?.map(|(_, t)| t),
        Some(31),
        "the last one still valid"
    );
    store
        .rotate_api_key_secret("exp-k1", &[0xe1; 4], 40)
        .await?;
    check_eq!(
        store.get_previous_secret("exp-k1").await?,
        Some((vec![0xe0; 4], 40)),
        "a new rotation after expiry keeps a previous secret again"
    );
    Ok(())
}

/// Previous secrets are counted and scanned after every current secret and
/// before every MFA seed, by key id, with their key's account; `after` may
/// sit on any of them (existing or not), pages cross the kind boundaries
/// without overlap or gap, and compare-and-swaps apply to them exactly
/// when they still hold the expected bytes, keeping their validity.
pub async fn ciphertext_scan_previous_secrets(store: &impl Store) -> Outcome {
    let before = store.count_ciphertexts().await?;
    for id in ["ps-acc-1", "ps-acc-2", "ps-m"] {
        store.create_account(&account(id, None)).await?;
    }
    let key = |id: &str, acc: &str, secret: Option<Vec<u8>>| ApiKey {
        secret_ciphertext: secret,
        ..api_key(id, acc)
    };
    store
        .create_api_keys(&[
            key("ps-k3", "ps-acc-1", Some(vec![3])),
            key("ps-k1", "ps-acc-1", Some(vec![1])),
            key("ps-k2", "ps-acc-2", Some(vec![2])),
            key("ps-bare", "ps-acc-2", None),
        ])
        .await?;
    store.put_mfa(&mfa("ps-m", "totp", vec![0x51])).await?;
    store
        .rotate_api_key_secret("ps-k3", &[13], FAR_FUTURE_MS)
        .await?;
    store
        .rotate_api_key_secret("ps-k1", &[11], FAR_FUTURE_MS)
        .await?;
    check_eq!(
        store.count_ciphertexts().await?,
        before + 6,
        "count: three secrets, two previous secrets and a seed added"
    );

    let entry = |location: CipherRef, acc: &str, ciphertext: Vec<u8>| StoredCiphertext {
        location,
        account_id: acc.to_owned(),
        ciphertext,
    };
    let all = scan_all(store, 2).await?;
    check_eq!(
        u64::try_from(all.len()).unwrap_or(u64::MAX),
        before + 6,
        "full scan visits every counted field"
    );
    check_eq!(
        store.scan_ciphertexts(None, u32::MAX).await?,
        all.clone(),
        "one big page equals the paged walk"
    );
    check_eq!(scan_all(store, 1).await?, all.clone(), "pages of one");
    check_eq!(
        all.iter()
            .filter(|c| c.location.record_id().starts_with("ps-"))
            .cloned()
            .collect::<Vec<_>>(),
        vec![
            entry(key_ref("ps-k1"), "ps-acc-1", vec![11]),
            entry(key_ref("ps-k2"), "ps-acc-2", vec![2]),
            entry(key_ref("ps-k3"), "ps-acc-1", vec![13]),
            entry(prev_ref("ps-k1"), "ps-acc-1", vec![1]),
            entry(prev_ref("ps-k3"), "ps-acc-1", vec![3]),
            entry(mfa_ref("ps-m", "totp"), "ps-m", vec![0x51]),
        ],
        "this case's fields, in order: secrets, previous secrets, seeds"
    );

    check_eq!(
        store.scan_ciphertexts(Some(&prev_ref("ps-k1")), 1).await?,
        vec![entry(prev_ref("ps-k3"), "ps-acc-1", vec![3])],
        "after an existing previous secret"
    );
    check_eq!(
        store.scan_ciphertexts(Some(&prev_ref("ps-k2")), 1).await?,
        vec![entry(prev_ref("ps-k3"), "ps-acc-1", vec![3])],
        "after a previous secret that does not exist"
    );
    let position = |what: &str, found: Option<usize>| {
        found.ok_or_else(|| Failure(format!("no {what} in the full scan")))
    };
    let first_prev = position(
        "previous secret",
        all.iter()
            .position(|c| matches!(c.location, CipherRef::ApiKeyPreviousSecret { .. })),
    )?;
    let first_seed = position(
        "seed",
        all.iter()
            .position(|c| matches!(c.location, CipherRef::MfaSeed { .. })),
    )?;
    let from = |index: usize, take: usize| -> Vec<StoredCiphertext> {
        all.iter().skip(index).take(take).cloned().collect()
    };
    check_eq!(
        store
            .scan_ciphertexts(Some(&key_ref("\u{10ffff}")), 2)
            .await?,
        from(first_prev, 2),
        "after every key id: the first previous secrets"
    );
    check_eq!(
        store
            .scan_ciphertexts(Some(&prev_ref("\u{10ffff}")), 2)
            .await?,
        from(first_seed, 2),
        "after every previous secret: the first seeds"
    );
    let at = |index: Option<usize>| {
        index
            .and_then(|i| all.get(i))
            .map(|c| c.location.clone())
            .ok_or_else(|| Failure("scan shorter than expected".to_owned()))
    };
    check_eq!(
        store
            .scan_ciphertexts(Some(&at(first_prev.checked_sub(2))?), 3)
            .await?,
        from(first_prev.saturating_sub(1), 3),
        "page from the last secret into the previous secrets"
    );
    check_eq!(
        store
            .scan_ciphertexts(Some(&at(first_seed.checked_sub(2))?), 3)
            .await?,
        from(first_seed.saturating_sub(1), 3),
        "page from the last previous secret into the seeds"
    );
    let across = first_seed.saturating_sub(first_prev).saturating_add(2);
    check_eq!(
        store
            .scan_ciphertexts(
                Some(&at(first_prev.checked_sub(2))?),
                u32::try_from(across).unwrap_or(u32::MAX)
            )
            .await?,
        from(first_prev.saturating_sub(1), across),
        "page across all three kinds"
    );

    let swap = |location: CipherRef, expected: Vec<u8>, new: Vec<u8>| CipherSwap {
        location,
        expected,
        new,
    };
    check_eq!(
        store
            .swap_ciphertexts(&[
                swap(prev_ref("ps-k1"), vec![1], vec![21]),
                swap(prev_ref("ps-k3"), vec![99], vec![23]),
                swap(prev_ref("ps-k2"), vec![2], vec![22]),
                swap(prev_ref("ps-gone"), vec![1], vec![24]),
                swap(key_ref("ps-k3"), vec![3], vec![25]),
            ])
            .await?,
        vec![true, false, false, false, false],
        "applied per swap"
    );
    check_eq!(
        store.get_previous_secret("ps-k1").await?,
        Some((vec![21], FAR_FUTURE_MS)),
        "swapped previous secret keeps its validity"
    );
    check_eq!(
        store.get_previous_secret("ps-k3").await?,
        Some((vec![3], FAR_FUTURE_MS)),
        "stale swap left the previous secret alone"
    );
    check_eq!(
        store.get_previous_secret("ps-k2").await?,
        None,
        "swap creates no previous secret"
    );
    check_eq!(
        store.get_api_key("ps-k3").await?.secret_ciphertext,
        Some(vec![13]),
        "a swap expecting the previous bytes on the current secret is not applied"
    );
    check_eq!(
        store.get_api_key("ps-k1").await?.secret_ciphertext,
        Some(vec![11]),
        "current secret untouched by the previous secret's swap"
    );
    check_eq!(
        store.count_ciphertexts().await?,
        before + 6,
        "swaps change no count"
    );
    Ok(())
}

/// Kraken-style nonce window: out-of-order nonces inside the window are
/// accepted once each; nonces at or below `highest - window` never.
pub async fn key_nonce_window(store: &impl Store) -> Outcome {
    store.create_account(&account("win", None)).await?;
    store.create_api_keys(&[api_key("win-k1", "win")]).await?;
    check_eq!(
        store.get_key_nonce_window("win-k1").await?,
        0,
        "no window at first"
    );
    store.set_key_nonce_window("win-k1", 10).await?;
    check_eq!(
        store.get_key_nonce_window("win-k1").await?,
        10,
        "window stored"
    );
    check_eq!(
        store.accept_windowed_nonce("win-k1", 100, 10).await?,
        true,
        "first"
    );
    check_eq!(
        store.accept_windowed_nonce("win-k1", 95, 10).await?,
        true,
        "out of order, inside"
    );
    check_eq!(
        store.accept_windowed_nonce("win-k1", 95, 10).await?,
        false,
        "inside, but used"
    );
    check_eq!(
        store.accept_windowed_nonce("win-k1", 100, 10).await?,
        false,
        "the highest, used"
    );
    check_eq!(
        store.accept_windowed_nonce("win-k1", 90, 10).await?,
        false,
        "at the window's edge"
    );
    check_eq!(
        store.accept_windowed_nonce("win-k1", 120, 10).await?,
        true,
        "ahead"
    );
    check_eq!(
        store.accept_windowed_nonce("win-k1", 105, 10).await?,
        false,
        "now out of the window"
    );
    check_eq!(
        store.accept_windowed_nonce("win-k1", 111, 10).await?,
        true,
        "inside the new window"
    );
    check_eq!(
        store.get_key_counter("win-k1").await?,
        Some(120),
        "highest kept"
    );
    check_eq!(
        store.get_key_nonce_window("win-k1").await?,
        10,
        "window kept"
    );
    // Window 0 is strictly increasing.
    check_eq!(
        store.accept_windowed_nonce("win-k1", 121, 0).await?,
        true,
        "next"
    );
    check_eq!(
        store.accept_windowed_nonce("win-k1", 121, 0).await?,
        false,
        "equal"
    );
    check_eq!(
        matches!(
            store.accept_windowed_nonce("nobody", 1, 10).await,
            Err(StoreError::MissingReference(_))
        ),
        true,
        "unknown key"
    );
    check_eq!(
        matches!(
            store.accept_windowed_nonce("win-k1", u64::MAX, 10).await,
            Err(StoreError::Conflict(_))
        ),
        true,
        "out of range"
    );
    Ok(())
}

/// A key's nonce is accepted only when strictly greater than the last
/// accepted one (any nonce, 0 included, when none was), per key; equal or
/// smaller nonces are refused and change nothing; nonces above `i64::MAX`
/// are out of range (before the key is looked at); an unknown key is a
/// missing reference.
pub async fn key_counter_strictly_increasing(store: &impl Store) -> Outcome {
    store.create_account(&account("ctr", None)).await?;
    store
        .create_api_keys(&[api_key("ctr-k1", "ctr"), api_key("ctr-k2", "ctr")])
        .await?;
    check_eq!(
        store.get_key_counter("ctr-k1").await?,
        None,
        "no nonce at first"
    );
    check_eq!(
        store.advance_key_counter("ctr-k1", 5).await?,
        true,
        "first nonce"
    );
    check_eq!(store.get_key_counter("ctr-k1").await?, Some(5), "stored");
    check_eq!(
        store.advance_key_counter("ctr-k1", 5).await?,
        false,
        "equal nonce"
    );
    check_eq!(
        store.advance_key_counter("ctr-k1", 4).await?,
        false,
        "smaller nonce"
    );
    check_eq!(
        store.get_key_counter("ctr-k1").await?,
        Some(5),
        "refused nonces changed nothing"
    );
    check_eq!(
        store.advance_key_counter("ctr-k1", 6).await?,
        true,
        "next nonce"
    );
    check_eq!(
        store.advance_key_counter("ctr-k1", 1_000).await?,
        true,
        "a jump ahead"
    );
    check_eq!(
        store.advance_key_counter("ctr-k1", 999).await?,
        false,
        "back after the jump"
    );
    check_eq!(
        store.get_key_counter("ctr-k1").await?,
        Some(1_000),
        "after the jump"
    );

    check_eq!(
        store.advance_key_counter("ctr-k2", 0).await?,
        true,
        "zero as the first nonce of another key"
    );
    check_eq!(
        store.get_key_counter("ctr-k2").await?,
        Some(0),
        "other key's nonce"
    );
    check_eq!(
        store.advance_key_counter("ctr-k2", 0).await?,
        false,
        "zero again"
    );
    check_eq!(
        store.get_key_counter("ctr-k1").await?,
        Some(1_000),
        "counters are per key"
    );

    let max = i64::MAX.unsigned_abs();
    for nonce in [max + 1, u64::MAX] {
        check_eq!(
            store.advance_key_counter("ctr-k1", nonce).await,
            Err(StoreError::Conflict("nonce out of range")),
            format!("nonce {nonce}")
        );
    }
    check_eq!(
        store.get_key_counter("ctr-k1").await?,
        Some(1_000),
        "out-of-range nonces changed nothing"
    );
    check_eq!(
        store.advance_key_counter("ctr-k1", max).await?,
        true,
        "largest nonce"
    );
    check_eq!(
        store.get_key_counter("ctr-k1").await?,
        Some(max),
        "largest stored"
    );
    check_eq!(
        store.advance_key_counter("ctr-k1", max).await?,
        false,
        "largest again"
    );

    check_eq!(
        store.advance_key_counter("ctr-none", 1).await,
        Err(StoreError::MissingReference("key counter")),
        "nonce of an unknown key"
    );
    check_eq!(
        store.advance_key_counter("ctr-none", u64::MAX).await,
        Err(StoreError::Conflict("nonce out of range")),
        "range checked before the key"
    );
    check_eq!(
        store.get_key_counter("ctr-none").await?,
        None,
        "no nonce for an unknown key"
    );
    Ok(())
}

/// Concurrent advances of one key's counter (driven together on one task;
/// backends run them on their own connections) are atomic: of identical
/// nonces exactly one is accepted, and of different nonces the largest is
/// always accepted and stored.
pub async fn key_counter_concurrent_advances(store: &impl Store) -> Outcome {
    const RACERS: u64 = 8;
    store.create_account(&account("ctr-race", None)).await?;
    store
        .create_api_key(&api_key("ctr-race-k", "ctr-race"))
        .await?;
    store.advance_key_counter("ctr-race-k", 10).await?;
    for nonce in [11, 12, 13] {
        let outcomes = join_all(
            (0..RACERS)
                .map(|_| store.advance_key_counter("ctr-race-k", nonce))
                .collect(),
        )
        .await
        .into_iter()
        .collect::<Result<Vec<bool>, StoreError>>()?;
        check_eq!(
            outcomes.iter().filter(|&&won| won).count(),
            1,
            format!("winners among {RACERS} advances to {nonce}")
        );
    }
    let nonces: Vec<u64> = (0..RACERS).map(|i| 20 + (i * 5) % RACERS).collect();
    let outcomes = join_all(
        nonces
            .iter()
            .map(|&nonce| store.advance_key_counter("ctr-race-k", nonce))
            .collect(),
    )
    .await
    .into_iter()
    .collect::<Result<Vec<bool>, StoreError>>()?;
    let largest = 20 + RACERS - 1;
    check_eq!(
        nonces
            .iter()
            .zip(&outcomes)
            .find(|(&nonce, _)| nonce == largest)
            .map(|(_, &won)| won),
        Some(true),
        "the largest of different nonces is accepted"
    );
    check_eq!(
        store.get_key_counter("ctr-race-k").await?,
        Some(largest),
        "the largest nonce is stored"
    );
    Ok(())
}

/// New accounts hold the KYC tier they are created with (0, market data
/// only, in the samples) and no risk profile; the tier and profile are set
/// together, tiers above 3 are refused before anything changes, and an
/// unknown account is not found.
pub async fn account_kyc(store: &impl Store) -> Outcome {
    store.create_account(&account("kyc-1", None)).await?;
    store.create_account(&account("kyc-2", None)).await?;
    let fresh = store.get_account("kyc-1").await?;
    check_eq!(fresh.kyc_tier, 0, "default kyc tier");
    check_eq!(fresh.risk_profile, None, "default risk profile");

    store.set_account_kyc("kyc-1", 2, Some("retail")).await?;
    check_eq!(
        store.get_account("kyc-1").await?,
        Account {
            kyc_tier: 2,
            risk_profile: Some("retail".to_owned()),
            ..account("kyc-1", None)
        },
        "kyc set"
    );
    check_eq!(
        store.get_account("kyc-2").await?,
        account("kyc-2", None),
        "other account untouched"
    );
    for tier in [4, u8::MAX] {
        check_eq!(
            store.set_account_kyc("kyc-1", tier, None).await,
            Err(StoreError::Conflict("kyc tier out of range")),
            format!("kyc tier {tier}")
        );
    }
    check_eq!(
        store.set_account_kyc("kyc-none", 9, None).await,
        Err(StoreError::Conflict("kyc tier out of range")),
        "range checked before the account"
    );
    check_eq!(
        store.get_account("kyc-1").await?.kyc_tier,
        2,
        "refused tiers changed nothing"
    );
    store.set_account_kyc("kyc-1", 3, None).await?;
    check_eq!(
        store.get_account("kyc-1").await?,
        Account {
            kyc_tier: 3,
            ..account("kyc-1", None)
        },
        "highest tier, profile cleared"
    );
    store.set_account_kyc("kyc-1", 0, None).await?;
    check_eq!(
        store.get_account("kyc-1").await?.kyc_tier,
        0,
        "tier lowered again"
    );
    check_eq!(
        store.set_account_kyc("kyc-none", 1, None).await,
        Err(StoreError::NotFound("account")),
        "kyc of an unknown account"
    );

    let tiered = Account {
        kyc_tier: 3,
        risk_profile: Some("pro".to_owned()),
        ..account("kyc-3", None)
    };
    store.create_account(&tiered).await?;
    check_eq!(
        store.get_account("kyc-3").await?,
        tiered,
        "created with a tier"
    );
    check_eq!(
        store
            .create_account(&Account {
                kyc_tier: 4,
                ..account("kyc-4", None)
            })
            .await,
        Err(StoreError::Conflict("kyc tier out of range")),
        "created with a tier out of range"
    );
    check_eq!(
        store.get_account("kyc-4").await,
        Err(StoreError::NotFound("account")),
        "refused account not stored"
    );
    Ok(())
}

/// Key permissions round-trip (every setting, and the all-default
/// unrestricted value), are replaced as a whole, show in every listing,
/// and an unknown key is not found.
pub async fn api_key_permissions(store: &impl Store) -> Outcome {
    store.create_account(&account("perm", None)).await?;
    let plain = ApiKey {
        permissions: KeyPermissions::default(),
        ..api_key("perm-k1", "perm")
    };
    let full = api_key("perm-k2", "perm");
    store
        .create_api_keys(&[plain.clone(), full.clone()])
        .await?;
    check_eq!(
        store.get_api_key("perm-k1").await?.permissions,
        KeyPermissions::default(),
        "default permissions"
    );
    check_eq!(
        store.get_api_key("perm-k2").await?.permissions,
        permissions(),
        "full permissions"
    );

    let narrowed = KeyPermissions {
        instruments: vec!["SOL-USDT".to_owned()],
        products: vec!["option".to_owned()],
        read_only: false,
        max_order_qty: None,
        max_notional: Some("10".to_owned()),
        max_open_orders: Some(0),
    };
    store.set_api_key_permissions("perm-k1", &narrowed).await?;
    let updated = ApiKey {
        permissions: narrowed.clone(),
        ..plain
    };
    check_eq!(
        store.get_api_key("perm-k1").await?,
        updated.clone(),
        "permissions replaced, rest of the key kept"
    );
    check_eq!(
        store.list_api_keys("perm").await?,
        vec![updated.clone(), full.clone()],
        "listed with permissions"
    );
    check_eq!(
        store.list_all_api_keys(Some("perm-k0"), 2).await?,
        vec![updated, full],
        "paged with permissions"
    );
    store
        .set_api_key_permissions("perm-k2", &KeyPermissions::default())
        .await?;
    check_eq!(
        store.get_api_key("perm-k2").await?.permissions,
        KeyPermissions::default(),
        "permissions back to the default"
    );
    check_eq!(
        store.get_api_key("perm-k1").await?.permissions,
        narrowed,
        "other key untouched"
    );
    check_eq!(
        store
            .set_api_key_permissions("perm-none", &permissions())
            .await,
        Err(StoreError::NotFound("api key")),
        "permissions of an unknown key"
    );
    Ok(())
}

/// MFA parameters round-trip; only RFC 6238 algorithms, 6 to 10 digits,
/// a period of at least 1 s and well-formed, distinct recovery hashes are
/// stored; replacing an enrolment with the same seed and period never
/// lowers its last used step, while a new seed takes the given one.
pub async fn mfa_parameters(store: &impl Store) -> Outcome {
    store.create_account(&account("mfap", None)).await?;
    let custom = MfaEnrolment {
        algorithm: "SHA512".to_owned(),
        digits: 8,
        period_secs: 60,
        recovery_hashes: vec![recovery_hash(0xab), recovery_hash(0x01)],
        ..mfa("mfap", "totp", vec![5; 20])
    };
    store.put_mfa(&custom).await?;
    check_eq!(
        store.get_mfa("mfap", "totp").await?,
        custom.clone(),
        "custom parameters"
    );

    let refused: [(MfaEnrolment, &str); 9] = [
        (
            MfaEnrolment {
                algorithm: "MD5".to_owned(),
                ..custom.clone()
            },
            "mfa parameters",
        ),
        (
            MfaEnrolment {
                algorithm: "sha1".to_owned(),
                ..custom.clone()
            },
            "mfa parameters",
        ),
        (
            MfaEnrolment {
                digits: 5,
                ..custom.clone()
            },
            "mfa parameters",
        ),
        (
            MfaEnrolment {
                digits: 11,
                ..custom.clone()
            },
            "mfa parameters",
        ),
        (
            MfaEnrolment {
                period_secs: 0,
                ..custom.clone()
            },
            "mfa parameters",
        ),
        (
            MfaEnrolment {
                recovery_hashes: vec!["1234-5678-9012".to_owned()],
                ..custom.clone()
            },
            "recovery code hash",
        ),
        (
            MfaEnrolment {
                recovery_hashes: vec![recovery_hash(0xab).to_uppercase()],
                ..custom.clone()
            },
            "recovery code hash",
        ),
        (
            MfaEnrolment {
                recovery_hashes: vec![recovery_hash(3), recovery_hash(4), recovery_hash(3)],
                ..custom.clone()
            },
            "recovery code hash",
        ),
        (
            MfaEnrolment {
                last_used_step: Some(i64::MAX.unsigned_abs() + 1),
                ..custom.clone()
            },
            "mfa step out of range",
        ),
    ];
    for (enrolment, error) in refused {
        check_eq!(
            store.put_mfa(&enrolment).await,
            Err(StoreError::Conflict(error)),
            format!("refused enrolment {enrolment:?}")
        );
    }
    check_eq!(
        store.get_mfa("mfap", "totp").await?,
        custom.clone(),
        "refused enrolments changed nothing"
    );

    check_eq!(
        store.advance_mfa_step("mfap", "totp", 500).await?,
        true,
        "step used"
    );
    // A stale read-modify-write of the same enrolment (same seed and
    // period) cannot lower the step...
    let stale = MfaEnrolment {
        last_used_step: Some(400),
        recovery_hashes: vec![recovery_hash(0x01)],
        ..custom.clone()
    };
    store.put_mfa(&stale).await?;
    check_eq!(
        store.get_mfa("mfap", "totp").await?,
        MfaEnrolment {
            last_used_step: Some(500),
            ..stale.clone()
        },
        "same enrolment keeps the higher step"
    );
    store
        .put_mfa(&MfaEnrolment {
            last_used_step: None,
            ..stale.clone()
        })
        .await?;
    check_eq!(
        store.get_mfa("mfap", "totp").await?.last_used_step,
        Some(500),
        "same enrolment keeps its step over none"
    );
    store
        .put_mfa(&MfaEnrolment {
            last_used_step: Some(600),
            ..stale.clone()
        })
        .await?;
    check_eq!(
        store.get_mfa("mfap", "totp").await?.last_used_step,
        Some(600),
        "same enrolment takes a higher step"
    );
    // ...but a new seed, or a new period, is a new enrolment.
    let reenrolled = MfaEnrolment {
        seed_ciphertext: vec![6; 20],
        ..stale.clone()
    };
    store.put_mfa(&reenrolled).await?;
    check_eq!(
        store.get_mfa("mfap", "totp").await?,
        reenrolled,
        "new seed takes the given step"
    );
    store.advance_mfa_step("mfap", "totp", 900).await?;
    let new_period = MfaEnrolment {
        period_secs: 30,
        last_used_step: None,
        ..stale
    };
    store.put_mfa(&new_period).await?;
    check_eq!(
        store.get_mfa("mfap", "totp").await?.last_used_step,
        None,
        "new period takes the given step"
    );
    Ok(())
}

/// The TOTP replay guard: a step is accepted only above the last used one
/// (any step, 0 included, at first), per enrolment; equal and lower steps
/// are refused and change nothing; steps above `i64::MAX` are out of range
/// (before the enrolment is looked at); an unknown enrolment is not found.
pub async fn mfa_step_replay_guard(store: &impl Store) -> Outcome {
    store.create_account(&account("step-1", None)).await?;
    store.create_account(&account("step-2", None)).await?;
    store.put_mfa(&mfa("step-1", "totp", vec![1; 20])).await?;
    store.put_mfa(&mfa("step-1", "hotp", vec![2; 20])).await?;
    store.put_mfa(&mfa("step-2", "totp", vec![3; 20])).await?;
    check_eq!(
        store.get_mfa("step-1", "totp").await?.last_used_step,
        None,
        "no step at first"
    );
    check_eq!(
        store.advance_mfa_step("step-1", "totp", 56_666_666).await?,
        true,
        "first step"
    );
    check_eq!(
        store.get_mfa("step-1", "totp").await?.last_used_step,
        Some(56_666_666),
        "step stored"
    );
    check_eq!(
        store.advance_mfa_step("step-1", "totp", 56_666_666).await?,
        false,
        "equal step (a replayed code)"
    );
    check_eq!(
        store.advance_mfa_step("step-1", "totp", 56_666_665).await?,
        false,
        "lower step (an earlier code)"
    );
    check_eq!(
        store.get_mfa("step-1", "totp").await?.last_used_step,
        Some(56_666_666),
        "refused steps changed nothing"
    );
    check_eq!(
        store.advance_mfa_step("step-1", "totp", 56_666_667).await?,
        true,
        "next step"
    );
    check_eq!(
        store.advance_mfa_step("step-1", "hotp", 0).await?,
        true,
        "zero as the first step of another kind"
    );
    check_eq!(
        store.advance_mfa_step("step-1", "hotp", 0).await?,
        false,
        "zero again"
    );
    check_eq!(
        store.advance_mfa_step("step-2", "totp", 56_666_666).await?,
        true,
        "the same step on another account"
    );
    check_eq!(
        store.get_mfa("step-1", "totp").await?.last_used_step,
        Some(56_666_667),
        "steps are per enrolment"
    );

    let max = i64::MAX.unsigned_abs();
    for step in [max + 1, u64::MAX] {
        check_eq!(
            store.advance_mfa_step("step-1", "totp", step).await,
            Err(StoreError::Conflict("mfa step out of range")),
            format!("step {step}")
        );
    }
    check_eq!(
        store.advance_mfa_step("step-1", "totp", max).await?,
        true,
        "largest step"
    );
    check_eq!(
        store.advance_mfa_step("step-1", "totp", max).await?,
        false,
        "largest step again"
    );
    check_eq!(
        store.get_mfa("step-1", "totp").await?.last_used_step,
        Some(max),
        "largest stored"
    );
    check_eq!(
        store.advance_mfa_step("step-1", "sms", 1).await,
        Err(StoreError::NotFound("mfa enrolment")),
        "step of an unknown kind"
    );
    check_eq!(
        store.advance_mfa_step("step-none", "totp", 1).await,
        Err(StoreError::NotFound("mfa enrolment")),
        "step of an unknown account"
    );
    check_eq!(
        store.advance_mfa_step("step-none", "totp", u64::MAX).await,
        Err(StoreError::Conflict("mfa step out of range")),
        "range checked before the enrolment"
    );
    Ok(())
}

/// Concurrent uses of one enrolment's step (driven together on one task;
/// backends run them on their own connections) are atomic: of identical
/// steps exactly one is accepted, and of different steps the largest is
/// always accepted and stored.
pub async fn mfa_step_concurrent_advances(store: &impl Store) -> Outcome {
    const RACERS: u64 = 8;
    store.create_account(&account("step-race", None)).await?;
    store
        .put_mfa(&mfa("step-race", "totp", vec![7; 20]))
        .await?;
    for step in [100, 101, 102] {
        let outcomes = join_all(
            (0..RACERS)
                .map(|_| store.advance_mfa_step("step-race", "totp", step))
                .collect(),
        )
        .await
        .into_iter()
        .collect::<Result<Vec<bool>, StoreError>>()?;
        check_eq!(
            outcomes.iter().filter(|&&won| won).count(),
            1,
            format!("winners among {RACERS} uses of step {step}")
        );
    }
    let steps: Vec<u64> = (0..RACERS).map(|i| 200 + (i * 3) % RACERS).collect();
    let outcomes = join_all(
        steps
            .iter()
            .map(|&step| store.advance_mfa_step("step-race", "totp", step))
            .collect(),
    )
    .await
    .into_iter()
    .collect::<Result<Vec<bool>, StoreError>>()?;
    let largest = 200 + RACERS - 1;
    check_eq!(
        steps
            .iter()
            .zip(&outcomes)
            .find(|(&step, _)| step == largest)
            .map(|(_, &won)| won),
        Some(true),
        "the largest of different steps is accepted"
    );
    check_eq!(
        store.get_mfa("step-race", "totp").await?.last_used_step,
        Some(largest),
        "the largest step is stored"
    );
    Ok(())
}

/// Each recovery code works once: consuming removes its hash (the others
/// keep their order), a second use and an unknown hash find nothing, of
/// concurrent uses of one code exactly one succeeds, and an unknown
/// enrolment is not found.
pub async fn mfa_recovery_codes(store: &impl Store) -> Outcome {
    store.create_account(&account("rec", None)).await?;
    let hashes: Vec<String> = (1..=5).map(recovery_hash).collect();
    store
        .put_mfa(&MfaEnrolment {
            recovery_hashes: hashes.clone(),
            ..mfa("rec", "totp", vec![9; 20])
        })
        .await?;
    store
        .put_mfa(&MfaEnrolment {
            recovery_hashes: hashes.clone(),
            ..mfa("rec", "hotp", vec![8; 20])
        })
        .await?;
    check_eq!(
        store
            .consume_recovery_code("rec", "totp", &recovery_hash(3))
            .await?,
        true,
        "first use"
    );
    check_eq!(
        store
            .consume_recovery_code("rec", "totp", &recovery_hash(3))
            .await?,
        false,
        "second use"
    );
    check_eq!(
        store.get_mfa("rec", "totp").await?.recovery_hashes,
        vec![
            recovery_hash(1),
            recovery_hash(2),
            recovery_hash(4),
            recovery_hash(5)
        ],
        "the others kept, in order"
    );
    check_eq!(
        store.get_mfa("rec", "hotp").await?.recovery_hashes,
        hashes,
        "codes are per enrolment"
    );
    check_eq!(
        store
            .consume_recovery_code("rec", "totp", &recovery_hash(9))
            .await?,
        false,
        "unknown hash"
    );
    check_eq!(
        store
            .consume_recovery_code("rec", "totp", &recovery_hash(1).to_uppercase())
            .await?,
        false,
        "hashes compare exactly"
    );
    check_eq!(
        store.consume_recovery_code("rec", "totp", "").await?,
        false,
        "empty hash"
    );

    let five = recovery_hash(5);
    let outcomes = join_all(
        (0..8)
            .map(|_| store.consume_recovery_code("rec", "totp", &five))
            .collect(),
    )
    .await
    .into_iter()
    .collect::<Result<Vec<bool>, StoreError>>()?;
    check_eq!(
        outcomes.iter().filter(|&&won| won).count(),
        1,
        "winners among concurrent uses of one code"
    );
    for n in [1, 2, 4] {
        check_eq!(
            store
                .consume_recovery_code("rec", "totp", &recovery_hash(n))
                .await?,
            true,
            format!("use of code {n}")
        );
    }
    check_eq!(
        store.get_mfa("rec", "totp").await?.recovery_hashes,
        Vec::<String>::new(),
        "every code used"
    );
    check_eq!(
        store
            .consume_recovery_code("rec", "totp", &recovery_hash(1))
            .await?,
        false,
        "no codes left"
    );
    check_eq!(
        store
            .consume_recovery_code("rec", "sms", &recovery_hash(1))
            .await,
        Err(StoreError::NotFound("mfa enrolment")),
        "code of an unknown enrolment"
    );
    Ok(())
}

/// Deleting an enrolment removes it (and its seed from the ciphertext
/// walk) and nothing else; deleting it again finds nothing.
pub async fn mfa_delete(store: &impl Store) -> Outcome {
    store.create_account(&account("mfad", None)).await?;
    store.put_mfa(&mfa("mfad", "totp", vec![1; 20])).await?;
    store.put_mfa(&mfa("mfad", "webauthn", vec![2; 20])).await?;
    let count = store.count_ciphertexts().await?;
    check_eq!(store.delete_mfa("mfad", "totp").await?, true, "deleted");
    check_eq!(
        store.get_mfa("mfad", "totp").await,
        Err(StoreError::NotFound("mfa enrolment")),
        "deleted enrolment gone"
    );
    check_eq!(
        store.list_mfa("mfad").await?,
        vec![mfa("mfad", "webauthn", vec![2; 20])],
        "other kind kept"
    );
    check_eq!(
        store.count_ciphertexts().await?,
        count - 1,
        "seed no longer counted"
    );
    check_eq!(
        scan_all(store, 100)
            .await?
            .iter()
            .any(|c| c.location == mfa_ref("mfad", "totp")),
        false,
        "seed no longer scanned"
    );
    check_eq!(
        store.delete_mfa("mfad", "totp").await?,
        false,
        "deleted twice"
    );
    check_eq!(
        store.delete_mfa("mfad-none", "totp").await?,
        false,
        "unknown account"
    );
    check_eq!(
        store.advance_mfa_step("mfad", "totp", 1).await,
        Err(StoreError::NotFound("mfa enrolment")),
        "no step on a deleted enrolment"
    );
    store.put_mfa(&mfa("mfad", "totp", vec![3; 20])).await?;
    check_eq!(
        store.get_mfa("mfad", "totp").await?,
        mfa("mfad", "totp", vec![3; 20]),
        "enrolled again"
    );
    Ok(())
}

/// The withdrawal address book: entries round-trip and list by address
/// (compared byte-wise), not yet effective ones included; an address is
/// unique per account (not across accounts); an entry needs an existing
/// account and an effective time not before it was added; removal reports
/// whether the entry was there.
pub async fn withdrawal_address_book(store: &impl Store) -> Outcome {
    store.create_account(&account("wd-1", None)).await?;
    store.create_account(&account("wd-2", None)).await?;
    check_eq!(
        store.list_withdrawal_addresses("wd-1").await?,
        Vec::<WithdrawalAddress>::new(),
        "empty at first"
    );
    let c = withdrawal_address("wd-1", "bc1qc");
    let a = WithdrawalAddress {
        asset: None,
        label: None,
        added_at_ms: 5,
        effective_at_ms: 5,
        ..withdrawal_address("wd-1", "0xA1")
    };
    let b = WithdrawalAddress {
        effective_at_ms: FAR_FUTURE_MS,
        ..withdrawal_address("wd-1", "bc1qb")
    };
    for entry in [&c, &a, &b] {
        store.add_withdrawal_address(entry).await?;
    }
    check_eq!(
        store.list_withdrawal_addresses("wd-1").await?,
        vec![a.clone(), b.clone(), c.clone()],
        "listed by address, not yet effective included"
    );
    check_eq!(
        store
            .add_withdrawal_address(&WithdrawalAddress {
                label: Some("other".to_owned()),
                asset: Some("ETH".to_owned()),
                ..b.clone()
            })
            .await,
        Err(StoreError::Conflict("withdrawal address")),
        "duplicate address"
    );
    let other = withdrawal_address("wd-2", "bc1qb");
    store.add_withdrawal_address(&other).await?;
    check_eq!(
        store.list_withdrawal_addresses("wd-2").await?,
        vec![other],
        "the same address under another account"
    );
    check_eq!(
        store
            .add_withdrawal_address(&withdrawal_address("wd-none", "bc1qz"))
            .await,
        Err(StoreError::MissingReference("withdrawal address")),
        "address of an unknown account"
    );
    check_eq!(
        store
            .add_withdrawal_address(&WithdrawalAddress {
                effective_at_ms: 4,
                added_at_ms: 5,
                ..withdrawal_address("wd-1", "bc1qe")
            })
            .await,
        Err(StoreError::Conflict("withdrawal address effective time")),
        "effective before added"
    );
    check_eq!(
        store.remove_withdrawal_address("wd-1", "bc1qb").await?,
        true,
        "removed"
    );
    check_eq!(
        store.remove_withdrawal_address("wd-1", "bc1qb").await?,
        false,
        "removed twice"
    );
    check_eq!(
        store.remove_withdrawal_address("wd-1", "0xa1").await?,
        false,
        "addresses compare exactly"
    );
    check_eq!(
        store.list_withdrawal_addresses("wd-1").await?,
        vec![a, c],
        "the rest kept"
    );
    check_eq!(
        store.list_withdrawal_addresses("wd-2").await?.len(),
        1,
        "other account untouched"
    );
    store.add_withdrawal_address(&b).await?;
    check_eq!(
        store.list_withdrawal_addresses("wd-1").await?.len(),
        3,
        "added again after removal"
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
    let enrolment = MfaEnrolment {
        created_at_ms: 7,
        last_used_step: Some(55),
        recovery_hashes: vec![recovery_hash(1), recovery_hash(2), recovery_hash(3)],
        algorithm: "SHA256".to_owned(),
        digits: 8,
        period_secs: 60,
        ..mfa("re-child", "totp", vec![42; 33])
    };
    {
        let store = open().await?;
        store.create_account(&parent).await?;
        store.create_account(&child).await?;
        store.create_api_key(&key).await?;
        store.revoke_api_key("kid-re", 99).await?;
        store.put_mfa(&enrolment).await?;
        store.advance_mfa_step("re-child", "totp", 56).await?;
        store
            .consume_recovery_code("re-child", "totp", &recovery_hash(2))
            .await?;
        store
            .set_account_kyc("re-child", 2, Some("re-profile"))
            .await?;
        store
            .add_withdrawal_address(&withdrawal_address("re-child", "re-addr"))
            .await?;
        store
            .rotate_api_key_secret("kid-re", &[0x77; 12], FAR_FUTURE_MS)
            .await?;
        store.advance_key_counter("kid-re", 41).await?;
        store.put_key_metadata(&key_meta("re-api", 1)).await?;
        store.add_encryptions("re-api", 1, 17).await?;
        store.set_min_decrypt_version("re-api", 1).await?;
        store
            .update_wrapped_dek("re-api", 1, &[0xee; 61], 2)
            .await?;
        store.put_account_key(&account_key("re-parent")).await?;
        store.put_account_key(&account_key("re-child")).await?;
        store.shred_account_key("re-child", 123).await?;
    }
    let store = open().await?;
    let previous = key.secret_ciphertext.take().map(|c| (c, FAR_FUTURE_MS));
    key.secret_ciphertext = Some(vec![0x77; 12]);
    key.state = KeyState::Revoked;
    key.revoked_at_ms = Some(99);
    check_eq!(store.get_account("re-parent").await?, parent, "parent");
    check_eq!(
        store.list_sub_accounts("re-parent").await?,
        vec![Account {
            kyc_tier: 2,
            risk_profile: Some("re-profile".to_owned()),
            ..child
        }],
        "child with its kyc tier"
    );
    check_eq!(
        store.list_withdrawal_addresses("re-child").await?,
        vec![withdrawal_address("re-child", "re-addr")],
        "withdrawal address book"
    );
    check_eq!(store.get_api_key("kid-re").await?, key, "key");
    check_eq!(
        store.get_previous_secret("kid-re").await?,
        previous,
        "previous secret"
    );
    check_eq!(
        store.get_key_counter("kid-re").await?,
        Some(41),
        "key counter"
    );
    check_eq!(
        store.get_mfa("re-child", "totp").await?,
        MfaEnrolment {
            last_used_step: Some(56),
            recovery_hashes: vec![recovery_hash(1), recovery_hash(3)],
            ..enrolment
        },
        "mfa"
    );
    check_eq!(
        store.advance_mfa_step("re-child", "totp", 56).await?,
        false,
        "used step still refused after reopen"
    );
    check_eq!(
        store.list_key_metadata("re-api").await?,
        vec![KeyMetadata {
            encryptions: 17,
            wrapped_dek: vec![0xee; 61],
            root_key_version: 2,
            ..key_meta("re-api", 1)
        }],
        "key metadata"
    );
    check_eq!(
        store.min_decrypt_version("re-api").await?,
        Some(1),
        "min version"
    );
    check_eq!(
        store.get_account_key("re-parent").await?,
        account_key("re-parent"),
        "live account key"
    );
    check_eq!(
        store.get_account_key("re-child").await?,
        AccountKey {
            secret: None,
            shredded_at_ms: Some(123),
            ..account_key("re-child")
        },
        "shredded account key"
    );
    Ok(())
}
/// A sample operator.
pub fn operator(name: &str) -> Operator {
    Operator {
        name: name.to_owned(),
        user_handle: name
            .as_bytes()
            .iter()
            .rev()
            .copied()
            .chain([0xa5])
            .collect(),
        created_ms: 1_000,
        disabled: false,
        disabled_ms: None,
    }
}

/// A sample enrolment token hash (the token itself is never stored).
pub fn token_hash(n: u8) -> [u8; 32] {
    [n; 32]
}

/// A sample enrolment token of `operator`, valid until `expires_ms`.
pub fn enrolment_token(operator: &str, n: u8, expires_ms: i64) -> EnrolmentToken {
    EnrolmentToken {
        token_hash: token_hash(n),
        operator: operator.to_owned(),
        created_ms: 1_000,
        expires_ms,
    }
}

/// A sample ES256 credential of `operator`.
pub fn operator_credential(operator: &str, id: &[u8], sign_count: u32) -> OperatorCredential {
    let mut point = vec![4u8];
    point.extend(std::iter::repeat_n(id.first().copied().unwrap_or(1), 64));
    OperatorCredential {
        credential_id: id.to_vec(),
        operator: operator.to_owned(),
        algorithm: COSE_ES256,
        public_key: point,
        sign_count,
        created_ms: 2_000,
        last_used_ms: None,
        revoked_ms: None,
    }
}

/// Operators round-trip and list by name; a duplicate name conflicts; an
/// empty or oversized user handle is refused.
pub async fn operators_round_trip(store: &impl Store) -> Outcome {
    let b = operator("op-rt-b");
    let a = operator("op-rt-a");
    store.create_operator(&b).await?;
    store.create_operator(&a).await?;
    check_eq!(
        store.get_operator("op-rt-a").await?,
        a,
        "operator read back"
    );
    check_eq!(
        store.create_operator(&operator("op-rt-a")).await,
        Err(StoreError::Conflict("operator")),
        "duplicate operator"
    );
    check_eq!(
        store.get_operator("op-rt-missing").await,
        Err(StoreError::NotFound("operator")),
        "unknown operator"
    );
    for handle in [Vec::new(), vec![1u8; 65]] {
        check_eq!(
            store
                .create_operator(&Operator {
                    user_handle: handle,
                    ..operator("op-rt-handle")
                })
                .await,
            Err(StoreError::Conflict("operator user handle")),
            "bad user handle"
        );
    }
    let names: Vec<String> = store
        .list_operators()
        .await?
        .into_iter()
        .map(|o| o.name)
        .filter(|n| n.starts_with("op-rt-"))
        .collect();
    check_eq!(
        names,
        vec!["op-rt-a".to_owned(), "op-rt-b".to_owned()],
        "listed by name"
    );
    Ok(())
}

/// Enrolment tokens: checked without being spent, spent once together with
/// the credential they register, never after expiry, never for another
/// operator; concurrent uses of one token register one credential.
pub async fn operator_enrolment_tokens(store: &impl Store) -> Outcome {
    store.create_operator(&operator("op-tok")).await?;
    store.create_operator(&operator("op-tok-other")).await?;
    check_eq!(
        store
            .put_enrolment_token(&enrolment_token("op-tok-missing", 40, 10_000))
            .await,
        Err(StoreError::MissingReference("enrolment token")),
        "token of an unknown operator"
    );
    store
        .put_enrolment_token(&enrolment_token("op-tok", 41, 10_000))
        .await?;
    check_eq!(
        store
            .put_enrolment_token(&enrolment_token("op-tok", 41, 10_000))
            .await,
        Err(StoreError::Conflict("enrolment token")),
        "duplicate token hash"
    );
    check_eq!(
        store
            .enrolment_token_operator(&token_hash(41), 9_999)
            .await?,
        Some("op-tok".to_owned()),
        "usable token"
    );
    check_eq!(
        store
            .enrolment_token_operator(&token_hash(41), 10_000)
            .await?,
        None,
        "expired token"
    );
    check_eq!(
        store.enrolment_token_operator(&token_hash(42), 0).await?,
        None,
        "unknown token"
    );
    // Expired, or issued for another operator: not spent, nothing stored.
    let cred = operator_credential("op-tok", b"op-tok-cred-1", 0);
    check_eq!(
        store
            .enrol_operator_credential(&token_hash(41), &cred, 10_000)
            .await?,
        false,
        "expired token spent"
    );
    let other = operator_credential("op-tok-other", b"op-tok-cred-x", 0);
    check_eq!(
        store
            .enrol_operator_credential(&token_hash(41), &other, 5_000)
            .await?,
        false,
        "token of another operator spent"
    );
    check_eq!(
        store.list_operator_credentials("op-tok-other").await?,
        vec![],
        "nothing stored for a refused token"
    );
    check_eq!(
        store
            .enrol_operator_credential(
                &token_hash(41),
                &OperatorCredential {
                    algorithm: -257,
                    ..cred.clone()
                },
                5_000
            )
            .await,
        Err(StoreError::Conflict("operator credential key")),
        "unsupported algorithm"
    );
    check_eq!(
        store
            .enrol_operator_credential(&token_hash(41), &cred, 5_000)
            .await?,
        true,
        "token spent once"
    );
    check_eq!(
        store
            .enrol_operator_credential(
                &token_hash(41),
                &operator_credential("op-tok", b"op-tok-cred-2", 0),
                5_000
            )
            .await?,
        false,
        "token spent twice"
    );
    check_eq!(
        store
            .enrolment_token_operator(&token_hash(41), 5_000)
            .await?,
        None,
        "a spent token is not usable"
    );
    check_eq!(
        store.list_operator_credentials("op-tok").await?,
        vec![cred.clone()],
        "credential read back"
    );
    // A credential id that exists: conflict, and the token stays unspent.
    store
        .put_enrolment_token(&enrolment_token("op-tok", 43, 10_000))
        .await?;
    check_eq!(
        store
            .enrol_operator_credential(&token_hash(43), &cred, 5_000)
            .await,
        Err(StoreError::Conflict("operator credential")),
        "duplicate credential id"
    );
    check_eq!(
        store
            .enrolment_token_operator(&token_hash(43), 5_000)
            .await?,
        Some("op-tok".to_owned()),
        "token kept after a conflict"
    );
    // Concurrent uses of one token: exactly one registers.
    let creds: Vec<OperatorCredential> = (0u8..8)
        .map(|i| {
            let mut c = operator_credential("op-tok", &[b'c', b'o', b'n', i], 0);
            c.algorithm = COSE_EDDSA;
            c.public_key = vec![i; 32];
            c
        })
        .collect();
    let hash = token_hash(43);
    let outcomes = join_all(
        creds
            .iter()
            .map(|c| store.enrol_operator_credential(&hash, c, 5_000))
            .collect(),
    )
    .await;
    let mut won = 0;
    for o in outcomes {
        if o? {
            won += 1;
        }
    }
    check_eq!(won, 1, "concurrent uses of one token");
    check_eq!(
        store.list_operator_credentials("op-tok").await?.len(),
        2,
        "one credential per token"
    );
    Ok(())
}

/// The signature counter only grows (a cloned authenticator's lower or
/// equal counter is refused), except that 0 stays acceptable for an
/// authenticator that keeps no counter; concurrent sign-ins with one
/// counter are accepted once.
pub async fn operator_credential_counter(store: &impl Store) -> Outcome {
    store.create_operator(&operator("op-ctr")).await?;
    for (n, id, count) in [(50u8, &b"op-ctr-1"[..], 5u32), (51, &b"op-ctr-0"[..], 0)] {
        store
            .put_enrolment_token(&enrolment_token("op-ctr", n, 10_000))
            .await?;
        check_eq!(
            store
                .enrol_operator_credential(
                    &token_hash(n),
                    &operator_credential("op-ctr", id, count),
                    1
                )
                .await?,
            true,
            "enrolled"
        );
    }
    check_eq!(
        store.operator_credentials_exist().await?,
        true,
        "credentials exist"
    );
    let id = b"op-ctr-1";
    check_eq!(
        store.advance_operator_credential(id, 5, 3_000).await?,
        false,
        "equal counter"
    );
    check_eq!(
        store.advance_operator_credential(id, 4, 3_000).await?,
        false,
        "lower counter"
    );
    check_eq!(
        store.advance_operator_credential(id, 0, 3_000).await?,
        false,
        "counter back to 0"
    );
    check_eq!(
        store.advance_operator_credential(id, 6, 3_000).await?,
        true,
        "counter grew"
    );
    let stored = store.list_operator_credentials("op-ctr").await?;
    let c = stored
        .iter()
        .find(|c| c.credential_id == id)
        .ok_or_else(|| Failure("credential missing".into()))?;
    check_eq!(
        (c.sign_count, c.last_used_ms),
        (6, Some(3_000)),
        "counter and last use stored"
    );
    // No counter on either side: accepted every time.
    for at in [4_000, 5_000] {
        check_eq!(
            store
                .advance_operator_credential(b"op-ctr-0", 0, at)
                .await?,
            true,
            "counter-less authenticator"
        );
    }
    check_eq!(
        store
            .advance_operator_credential(b"op-ctr-missing", 1, 1)
            .await,
        Err(StoreError::NotFound("operator credential")),
        "unknown credential"
    );
    let outcomes = join_all(
        (0..8)
            .map(|_| store.advance_operator_credential(id, 9, 6_000))
            .collect(),
    )
    .await;
    let mut won = 0;
    for o in outcomes {
        if o? {
            won += 1;
        }
    }
    check_eq!(won, 1, "concurrent sign-ins with one counter");
    Ok(())
}

/// Disabling an operator revokes its credentials (they never sign in
/// again) and its unused tokens, keeps the first time, and refuses new
/// tokens; the credentials still count as "ever registered".
pub async fn operator_disable(store: &impl Store) -> Outcome {
    store.create_operator(&operator("op-dis")).await?;
    store
        .put_enrolment_token(&enrolment_token("op-dis", 60, 10_000))
        .await?;
    store
        .put_enrolment_token(&enrolment_token("op-dis", 61, 10_000))
        .await?;
    check_eq!(
        store
            .enrol_operator_credential(
                &token_hash(60),
                &operator_credential("op-dis", b"op-dis-1", 1),
                1
            )
            .await?,
        true,
        "enrolled"
    );
    check_eq!(store.disable_operator("op-dis", 7_000).await?, 1, "revoked");
    check_eq!(store.disable_operator("op-dis", 8_000).await?, 0, "again");
    let op = store.get_operator("op-dis").await?;
    check_eq!(
        (op.disabled, op.disabled_ms),
        (true, Some(7_000)),
        "first time kept"
    );
    check_eq!(
        store.disable_operator("op-dis-missing", 1).await,
        Err(StoreError::NotFound("operator")),
        "unknown operator"
    );
    let creds = store.list_operator_credentials("op-dis").await?;
    check_eq!(
        creds.iter().map(|c| c.revoked_ms).collect::<Vec<_>>(),
        vec![Some(7_000)],
        "credential revoked"
    );
    check_eq!(
        store
            .advance_operator_credential(b"op-dis-1", 2, 9_000)
            .await?,
        false,
        "a revoked credential does not sign in"
    );
    check_eq!(
        store.enrolment_token_operator(&token_hash(61), 1).await?,
        None,
        "unused token of a disabled operator"
    );
    check_eq!(
        store
            .enrol_operator_credential(
                &token_hash(61),
                &operator_credential("op-dis", b"op-dis-2", 1),
                1
            )
            .await?,
        false,
        "a disabled operator does not enrol"
    );
    check_eq!(
        store
            .put_enrolment_token(&enrolment_token("op-dis", 62, 10_000))
            .await,
        Err(StoreError::Conflict("operator disabled")),
        "no new token for a disabled operator"
    );
    check_eq!(
        store.operator_credentials_exist().await?,
        true,
        "revoked credentials still count"
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
    case!(api_keys_batch_create);
    case!(api_key_set_secret);
    case!(api_key_unknown_account);
    case!(api_keys_list_by_account);
    case!(api_key_revoke);
    case!(mfa_round_trip);
    case!(account_keys_shred);
    case!(key_metadata_versions);
    case!(key_metadata_rewrap);
    case!(min_decrypt_version);
    case!(ciphertext_scan_order);
    case!(ciphertext_swaps);
    case!(accounts_list_all);
    case!(api_keys_list_all);
    case!(api_key_secret_rotation);
    case!(previous_secrets_expire);
    case!(ciphertext_scan_previous_secrets);
    case!(key_counter_strictly_increasing);
    case!(key_counter_concurrent_advances);
    case!(key_nonce_window);
    case!(account_kyc);
    case!(api_key_permissions);
    case!(mfa_parameters);
    case!(mfa_step_replay_guard);
    case!(mfa_step_concurrent_advances);
    case!(mfa_recovery_codes);
    case!(mfa_delete);
    case!(withdrawal_address_book);
    case!(operators_round_trip);
    case!(operator_enrolment_tokens);
    case!(operator_credential_counter);
    case!(operator_disable);
    Ok(())
}
