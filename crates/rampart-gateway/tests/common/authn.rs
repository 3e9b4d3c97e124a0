//! Authenticated-gateway harness shared by the authentication and shield
//! tests: an in-memory key directory, RFC 9421 request signing, and a
//! gateway with authentication services over a demo exchange that accepts
//! only gateway-signed requests.
#![allow(dead_code, reason = "each test binary uses a different subset")]
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::too_many_arguments,
    reason = "test code: a failed unwrap is a failed test"
)]

use super::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use aws_lc_rs::rand::SecureRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request};
use http_body_util::Full;
use parking_lot::Mutex;
use rampart_auth::directory::BoxFuture;
use rampart_auth::rfc9421::{self, SigningKey};
use rampart_auth::{
    DirectoryError, KeyDirectory, KeyMaterial, KeyRecord, MemoryNonceStore, RequestView, Scheme,
};
use rampart_gateway::auth::{AuthServices, IdentitySigner};
use zeroize::Zeroizing;

pub const GATEWAY_SECRET: [u8; 32] = [0x42; 32];
pub const ORDER: &str = r#"{"symbol":"BTC-USD","side":"buy","type":"limit","qty":"0.01","price":"100.00","client_order_id":"CID","time_in_force":"gtc"}"#;

#[derive(Default)]
pub struct Directory {
    pub keys: Mutex<HashMap<String, Arc<KeyRecord>>>,
    pub counters: Mutex<HashMap<String, (u64, std::collections::HashSet<u64>)>>,
}

impl KeyDirectory for Directory {
    fn lookup<'a>(
        &'a self,
        key_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<KeyRecord>>, DirectoryError>> {
        let r = self.keys.lock().get(key_id).cloned();
        Box::pin(async move { Ok(r) })
    }
    fn advance_counter<'a>(
        &'a self,
        key_id: &'a str,
        nonce: u64,
        window: u64,
    ) -> BoxFuture<'a, Result<bool, DirectoryError>> {
        // Same rule as the store: above highest - window, each once.
        let mut c = self.counters.lock();
        let (highest, seen) = c.entry(key_id.to_owned()).or_default();
        let ok = nonce > highest.saturating_sub(window) && seen.insert(nonce);
        if ok {
            *highest = (*highest).max(nonce);
        }
        Box::pin(async move { Ok(ok) })
    }
}

pub struct TestSigner(pub Ed25519KeyPair);

impl rampart_gateway::tokens::TokenSigner for TestSigner {
    fn public_key(&self) -> [u8; 32] {
        self.0.public_key().as_ref().try_into().unwrap()
    }
    fn sign(&self, message: &[u8]) -> Result<[u8; 64], String> {
        Ok(self.0.sign(message).as_ref().try_into().unwrap())
    }
}

pub fn record(key_id: &str, account: &str, scheme: Scheme, material: KeyMaterial) -> KeyRecord {
    KeyRecord {
        key_id: key_id.into(),
        account_id: account.into(),
        parent_account_id: None,
        scheme,
        scopes: vec!["read".into(), "trade".into()],
        allowed_nets: vec![],
        expires_at_ms: None,
        cert_fingerprint: None,
        revoked: false,
        material,
        previous: None,
        nonce_window: 0,
        instruments: Vec::new(),
        products: Vec::new(),
        read_only: false,
        order_limits: rampart_auth::KeyOrderLimits::default(),
    }
}

/// A TOTP seed and its last used step.
pub type Enrolled = (Vec<u8>, Option<u64>);

/// In-memory accounts: KYC tiers, parents, address books and TOTP seeds
/// (the store-backed one is `rampart_vault::directory::VaultAccounts`).
#[derive(Default)]
pub struct Accounts {
    pub accounts: Mutex<HashMap<String, rampart_auth::AccountRecord>>,
    /// account → (seed, last used step)
    pub totp: Mutex<HashMap<String, Enrolled>>,
    pub recovery: Mutex<HashMap<String, Vec<String>>>,
    /// account → (address, usable from)
    pub book: Mutex<HashMap<String, Vec<(String, i64)>>>,
}

impl Accounts {
    pub fn put(&self, id: &str, parent: Option<&str>, kyc_tier: u8, addresses: &[&str]) {
        self.accounts.lock().insert(
            id.to_owned(),
            rampart_auth::AccountRecord {
                id: id.to_owned(),
                parent_id: parent.map(str::to_owned),
                kyc_tier,
                risk_profile: "standard".to_owned(),
                withdrawal_addresses: addresses.iter().map(|a| (*a).to_owned()).collect(),
                mfa_enrolled: false,
            },
        );
    }
    pub fn enrol(&self, id: &str, seed: &[u8]) {
        self.totp
            .lock()
            .insert(id.to_owned(), (seed.to_vec(), None));
        if let Some(a) = self.accounts.lock().get_mut(id) {
            a.mfa_enrolled = true;
        }
    }
}

impl rampart_auth::AccountDirectory for Accounts {
    fn account<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<rampart_auth::AccountRecord>>, DirectoryError>> {
        let now = now_ms();
        let book = self.book.lock().get(id).cloned().unwrap_or_default();
        let r = self.accounts.lock().get(id).cloned().map(|mut a| {
            a.withdrawal_addresses.extend(
                book.into_iter()
                    .filter(|(_, at)| *at <= now)
                    .map(|(addr, _)| addr),
            );
            Arc::new(a)
        });
        Box::pin(async move { Ok(r) })
    }
    fn verify_totp<'a>(
        &'a self,
        account_id: &'a str,
        code: &'a str,
        unix_secs: u64,
    ) -> BoxFuture<'a, Result<rampart_auth::MfaCheck, DirectoryError>> {
        use rampart_auth::totp;
        let mut t = self.totp.lock();
        let r = match t.get_mut(account_id) {
            None => rampart_auth::MfaCheck::NotEnrolled,
            Some((seed, last)) => {
                match totp::verify(seed, &totp::TotpParams::default(), code, unix_secs, *last) {
                    Ok(step) => {
                        *last = Some(step);
                        rampart_auth::MfaCheck::Verified
                    }
                    Err(totp::TotpError::Reused) => rampart_auth::MfaCheck::Reused,
                    Err(_) => rampart_auth::MfaCheck::Invalid,
                }
            }
        };
        Box::pin(async move { Ok(r) })
    }
    fn use_recovery_code<'a>(
        &'a self,
        account_id: &'a str,
        code: &'a str,
    ) -> BoxFuture<'a, Result<rampart_auth::MfaCheck, DirectoryError>> {
        use rampart_auth::totp::recovery;
        let mut r = self.recovery.lock();
        let out = match r.get_mut(account_id) {
            None => rampart_auth::MfaCheck::NotEnrolled,
            Some(hashes) => match recovery::find(code, hashes) {
                Some(i) => {
                    hashes.remove(i);
                    rampart_auth::MfaCheck::Verified
                }
                None => rampart_auth::MfaCheck::Invalid,
            },
        };
        Box::pin(async move { Ok(out) })
    }
    fn withdrawal_addresses<'a>(
        &'a self,
        account_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, i64)>, DirectoryError>> {
        let r = self
            .book
            .lock()
            .get(account_id)
            .cloned()
            .unwrap_or_default();
        Box::pin(async move { Ok(r) })
    }
    fn add_withdrawal_address<'a>(
        &'a self,
        account_id: &'a str,
        address: &'a str,
        _now_ms: i64,
        effective_at_ms: i64,
    ) -> BoxFuture<'a, Result<bool, DirectoryError>> {
        let mut b = self.book.lock();
        let list = b.entry(account_id.to_owned()).or_default();
        let added = !list.iter().any(|(a, _)| a == address);
        if added {
            list.push((address.to_owned(), effective_at_ms));
        }
        Box::pin(async move { Ok(added) })
    }
    fn remove_withdrawal_address<'a>(
        &'a self,
        account_id: &'a str,
        address: &'a str,
    ) -> BoxFuture<'a, Result<bool, DirectoryError>> {
        let mut b = self.book.lock();
        let list = b.entry(account_id.to_owned()).or_default();
        let before = list.len();
        list.retain(|(a, _)| a != address);
        let removed = list.len() != before;
        if let Some(acct) = self.accounts.lock().get_mut(account_id) {
            acct.withdrawal_addresses.retain(|a| a != address);
        }
        Box::pin(async move { Ok(removed) })
    }
    fn account_ids(&self) -> BoxFuture<'_, Result<Vec<String>, DirectoryError>> {
        let ids = self.accounts.lock().keys().cloned().collect();
        Box::pin(async move { Ok(ids) })
    }
}

pub struct Env {
    pub pki: Arc<Pki>,
    pub addr: SocketAddr,
    pub dir: Arc<Directory>,
    pub accts: Arc<Accounts>,
    pub ex: Arc<demo_exchange::Exchange>,
    pub _g: rampart_gateway::Running,
    pub _stop: tokio::sync::oneshot::Sender<()>,
}

impl Env {
    pub fn orders(&self, account: &str) -> usize {
        self.ex
            .with_engine(|e| e.open_orders(account).map(|o| o.len()).unwrap_or(0))
    }
    pub fn add(&self, r: KeyRecord) {
        self.dir.keys.lock().insert(r.key_id.clone(), Arc::new(r));
    }
}

pub async fn env() -> Env {
    env_with("").await
}

pub async fn env_with(auth_section: &str) -> Env {
    env_full(auth_section, None).await
}

pub async fn env_full(
    auth_section: &str,
    audit: Option<Arc<rampart_gateway::audit::Auditor>>,
) -> Env {
    env_routes(EXCHANGE_ROUTES, auth_section, audit).await
}

/// [`env_full`] with the given `[[routes]]` text.
pub async fn env_routes(
    routes: &str,
    auth_section: &str,
    audit: Option<Arc<rampart_gateway::audit::Auditor>>,
) -> Env {
    env_store(routes, auth_section, audit, None).await
}

/// [`env_routes`] with a store of operator accounts for the admin listener.
pub async fn env_store(
    routes: &str,
    auth_section: &str,
    audit: Option<Arc<rampart_gateway::audit::Auditor>>,
    operators: Option<rampart_store::AnyStore>,
) -> Env {
    let pki = pki();
    let ex = demo_exchange::Exchange::new_seeded();
    ex.require_gateway_signature(&GATEWAY_SECRET);
    let (up, stop) = exchange(Arc::clone(&ex)).await;
    let text = format!("{}{auth_section}", config(&pki, &[up], "", routes));
    let cfg = rampart_core::config::parse(&text, std::path::Path::new("/")).unwrap();
    let dir = Arc::new(Directory::default());
    let accts = Arc::new(Accounts::default());
    accts.put("acct-1", None, 2, &[]);
    accts.put("acct-2", None, 2, &[]);
    accts.put("demo", None, 2, &[]);
    accts.put("demo2", None, 2, &[]);
    let services = Arc::new(AuthServices {
        directory: Arc::clone(&dir) as Arc<dyn KeyDirectory>,
        nonces: Arc::new(MemoryNonceStore::new(100_000)),
        identity: Arc::new(IdentitySigner::hmac(&GATEWAY_SECRET).unwrap()),
        tokens: Some(Arc::new(rampart_gateway::tokens::Tokens::new(Arc::new(
            TestSigner(Ed25519KeyPair::generate().unwrap()),
        )))),
        audit,
        accounts: Some(Arc::clone(&accts) as Arc<dyn rampart_auth::AccountDirectory>),
    });
    let g = rampart_gateway::start_full(cfg, Some(services), operators)
        .await
        .unwrap();
    Env {
        pki: Arc::new(pki),
        addr: g.addr,
        dir,
        accts,
        ex,
        _g: g,
        _stop: stop,
    }
}

pub fn now_ms() -> i64 {
    rampart_gateway::auth::now_ms()
}

pub fn nonce() -> String {
    let mut b = [0u8; 12];
    aws_lc_rs::rand::SystemRandom::new().fill(&mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A request signed with RFC 9421 as a client would (authority `localhost`,
/// the name the test client uses).
pub fn signed(
    method: Method,
    pq: &str,
    body: &str,
    key_id: &str,
    scheme: Scheme,
    key: &SigningKey,
    created: i64,
    nonce: &str,
) -> Request<Full<Bytes>> {
    let mut headers = HeaderMap::new();
    if !body.is_empty() {
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let d = rampart_auth::digest::content_digest(
            rampart_auth::digest::DigestAlg::Sha256,
            body.as_bytes(),
        );
        headers.insert("content-digest", HeaderValue::from_str(&d).unwrap());
    }
    let view = RequestView {
        method: &method,
        path_and_query: pq,
        authority: "localhost",
        scheme: "https",
        headers: &headers,
        body: body.as_bytes(),
    };
    let sig = rfc9421::sign(&view, key_id, scheme, key, created, nonce, &[]).unwrap();
    sig.insert_into(&mut headers).unwrap();
    let mut req = Request::builder()
        .method(method)
        .uri(pq)
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    *req.headers_mut() = headers;
    req
}

pub fn hmac_key() -> (SigningKey, KeyMaterial) {
    let secret = vec![7u8; 32];
    (
        SigningKey::Hmac(Zeroizing::new(secret.clone())),
        KeyMaterial::Hmac(Zeroizing::new(secret)),
    )
}

pub fn order(cid: &str) -> String {
    ORDER.replace("CID", cid)
}

/// A writer that keeps entries in memory and can be made full (to test the
/// queue-full policy, which a real disk cannot be made to hit on cue).
#[derive(Debug, Default)]
pub struct HeldWriter {
    pub entries: Mutex<Vec<Vec<u8>>>,
    pub full: std::sync::atomic::AtomicBool,
}

impl rampart_gateway::audit::AuditWriter for HeldWriter {
    fn try_append(&self, entry: Vec<u8>) -> Result<(), rampart_gateway::audit::WriteError> {
        if self.full.load(Ordering::Relaxed) {
            return Err(rampart_gateway::audit::WriteError::Full);
        }
        self.entries.lock().push(entry);
        Ok(())
    }
    fn append_durable(&self, entry: Vec<u8>) -> rampart_gateway::audit::DurableFuture {
        let mut e = self.entries.lock();
        e.push(entry);
        let n = e.len() as u64;
        Box::pin(async move { Ok(n) })
    }
    fn accepting(&self) -> bool {
        !self.full.load(Ordering::Relaxed)
    }
}

impl HeldWriter {
    pub fn events(&self) -> Vec<rampart_audit::AuditEvent> {
        self.entries
            .lock()
            .iter()
            .map(|e| rampart_audit::AuditEvent::from_entry(e).unwrap())
            .collect()
    }
}

#[derive(Debug)]
pub struct TestSealer;
impl rampart_audit::FieldSealer for TestSealer {
    fn seal(&self, id: &str, field: &str, p: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = format!("{id}/{field}/").into_bytes();
        out.extend(p.iter().map(|b| b ^ 0xa5));
        Ok(out)
    }
    fn open(&self, id: &str, field: &str, c: &[u8]) -> Result<Vec<u8>, String> {
        let prefix = format!("{id}/{field}/").into_bytes();
        let body = c.strip_prefix(prefix.as_slice()).ok_or("moved")?;
        Ok(body.iter().map(|b| b ^ 0xa5).collect())
    }
}

pub fn auditor(
    writer: Arc<dyn rampart_gateway::audit::AuditWriter>,
    on_full: rampart_core::config::AuditOnFull,
) -> Arc<rampart_gateway::audit::Auditor> {
    Arc::new(rampart_gateway::audit::Auditor::new(
        writer,
        Arc::new(rampart_audit::SystemClock::new(
            rampart_audit::SyncSource::Auto,
        )),
        Some(Arc::new(TestSealer)),
        on_full,
    ))
}

/// A POST to the admin listener (TLS with the test CA); (status, body).
pub async fn admin_post(pki: &Pki, admin: std::net::SocketAddr, pq: &str) -> (u16, String) {
    let req = http::Request::post(pq)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let r = send(pki, admin, false, req).await;
    (
        r.status.as_u16(),
        String::from_utf8_lossy(&r.body).into_owned(),
    )
}
