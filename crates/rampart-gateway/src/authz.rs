//! Authorization after authentication (issue 6): object-level checks
//! (which account and which order a request acts on), MFA step-up proofs,
//! and the Cedar policy decision.
//!
//! Order of checks for one authenticated request:
//! 1. the target account (route `account = "query:…"` etc.) must be the
//!    key's own account or one of its sub-accounts (OWASP API1, BOLA);
//! 2. an order id the request names (route `order_id = …`) must have been
//!    placed by that account tree, when the gateway has seen it;
//! 3. a sensitive action (`[mfa] sensitive_actions`) needs a fresh MFA
//!    proof: `Rampart-MFA: totp=<code>` or `token=<step-up token>`, a
//!    covered component of the request's signature;
//! 4. with `[policy]`, the Cedar decision over key, account, instrument and
//!    context (IP, risk score, MFA age, order facts).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use rampart_auth::{AccountDirectory, AccountRecord, KeyRecord, MfaCheck};
use rampart_core::config::{Config, Locator};
use rampart_core::problem::{Problem, ProblemCode};
use rampart_policy::authz::{
    AccountFacts, ActionDef, Authorizer, AuthzConfig, InstrumentDef, KeySettings, PolicySource,
    PreparedKey,
};

/// The header carrying an MFA proof.
pub const MFA_HEADER: &str = "rampart-mfa";

/// How long prepared keys and accounts are cached.
const CACHE_TTL: Duration = Duration::from_secs(5);
/// Most cached prepared keys; emptied when full.
const CACHE_MAX: usize = 200_000;

/// A proof carried in `Rampart-MFA`.
#[derive(Debug, PartialEq, Eq)]
pub enum MfaProof<'a> {
    /// A TOTP code.
    Totp(&'a str),
    /// A step-up token from `POST /v1/mfa/verify`.
    Token(&'a str),
}

/// Parses `totp=<digits>` or `token=<token>`; `None` for anything else.
#[must_use]
pub fn parse_proof(v: &str) -> Option<MfaProof<'_>> {
    let (k, v) = v.trim().split_once('=')?;
    let v = v.trim();
    if v.is_empty() || v.len() > 128 {
        return None;
    }
    match k.trim() {
        "totp" => Some(MfaProof::Totp(v)),
        "token" => Some(MfaProof::Token(v)),
        _ => None,
    }
}

/// One step-up grant.
#[derive(Debug, Clone)]
struct Grant {
    key_id: String,
    verified_ms: i64,
    expires_ms: i64,
}

/// Step-up tokens issued by `POST /v1/mfa/verify`: random, held only as
/// their SHA-256, bound to the key that verified, valid for `[mfa]
/// step_up_ttl`. Gateway-wide (they survive config reloads, not restarts).
#[derive(Debug, Default)]
pub struct StepUpTokens {
    map: Mutex<HashMap<[u8; 32], Grant>>,
}

/// Most live step-up tokens; expired ones are swept first when full.
const MAX_TOKENS: usize = 100_000;

fn digest(token: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl StepUpTokens {
    /// Issues a token for `key_id`, verified at `now_ms`, valid for `ttl`.
    ///
    /// # Errors
    /// When the random generator fails or too many tokens are live.
    pub fn issue(&self, key_id: &str, now_ms: i64, ttl: Duration) -> Result<String, Problem> {
        let mut raw = [0u8; 32];
        aws_lc_rs::rand::fill(&mut raw).map_err(|_| Problem::new(ProblemCode::InternalError))?;
        let token = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, raw);
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let mut map = self.map.lock();
        if map.len() >= MAX_TOKENS {
            map.retain(|_, g| g.expires_ms > now_ms);
            if map.len() >= MAX_TOKENS {
                return Err(Problem::new(ProblemCode::Overloaded)
                    .detail("too many live step-up tokens; try again shortly"));
            }
        }
        map.insert(
            digest(&token),
            Grant {
                key_id: key_id.to_owned(),
                verified_ms: now_ms,
                expires_ms: now_ms.saturating_add(ttl_ms),
            },
        );
        Ok(token)
    }

    /// When `token` is live and was issued to `key_id`: the time its MFA
    /// was verified.
    #[must_use]
    pub fn check(&self, token: &str, key_id: &str, now_ms: i64) -> Option<i64> {
        let map = self.map.lock();
        let g = map.get(&digest(token))?;
        // Key ids are public; the token itself was found by its digest.
        (g.key_id == key_id && g.expires_ms > now_ms).then_some(g.verified_ms)
    }
}

/// Who placed an order the gateway saw accepted: for object-level checks
/// on cancels and for a key-scoped kill switch's cancel-all. Bounded; the
/// oldest entries go first.
#[derive(Debug, Default)]
pub struct OrderIndex {
    inner: Mutex<OrderIndexInner>,
}

#[derive(Debug, Default)]
struct OrderIndexInner {
    map: HashMap<String, (String, String)>,
    fifo: VecDeque<String>,
}

/// Most remembered orders.
const MAX_ORDERS: usize = 1_000_000;

impl OrderIndex {
    /// Records `order_id` as placed by `key_id` of `account_id`.
    pub fn record(&self, order_id: &str, account_id: &str, key_id: &str) {
        let mut g = self.inner.lock();
        if g.map.len() >= MAX_ORDERS {
            if let Some(old) = g.fifo.pop_front() {
                g.map.remove(&old);
            }
        }
        if g.map
            .insert(
                order_id.to_owned(),
                (account_id.to_owned(), key_id.to_owned()),
            )
            .is_none()
        {
            g.fifo.push_back(order_id.to_owned());
        }
    }

    /// The (account, key) that placed `order_id`, if known.
    #[must_use]
    pub fn owner(&self, order_id: &str) -> Option<(String, String)> {
        self.inner.lock().map.get(order_id).cloned()
    }

    /// Forgets a closed order.
    pub fn remove(&self, order_id: &str) {
        self.inner.lock().map.remove(order_id);
    }

    /// Orders placed by `key_id`.
    #[must_use]
    pub fn by_key(&self, key_id: &str) -> Vec<(String, String)> {
        self.inner
            .lock()
            .map
            .iter()
            .filter(|(_, (_, k))| k == key_id)
            .map(|(o, (a, _))| (o.clone(), a.clone()))
            .collect()
    }

    /// Accounts with remembered orders.
    #[must_use]
    pub fn accounts(&self) -> Vec<String> {
        let g = self.inner.lock();
        let set: HashSet<&String> = g.map.values().map(|(a, _)| a).collect();
        set.into_iter().cloned().collect()
    }
}

/// This config snapshot's authorization: the Cedar engine (with
/// `[policy]`), the sensitive actions, and caches of prepared keys.
pub struct Authz {
    /// The Cedar engine; `None` without `[policy]`.
    pub engine: Option<Arc<Authorizer>>,
    sensitive: HashSet<String>,
    /// Step-up token lifetime and the freshness a sensitive action needs.
    pub step_up_ttl: Duration,
    prepared: RwLock<HashMap<String, (Instant, Arc<PreparedKey>)>>,
}

impl std::fmt::Debug for Authz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authz")
            .field("cedar", &self.engine.is_some())
            .field("sensitive", &self.sensitive)
            .finish_non_exhaustive()
    }
}

/// Action groups of a route action for the policy schema.
fn groups_of(scope: &str, action: &str, sensitive: &HashSet<String>) -> Vec<String> {
    let mut g = Vec::new();
    if matches!(scope, "read" | "trade" | "withdraw" | "public") {
        g.push(scope.to_owned());
    }
    if sensitive.contains(action) {
        g.push("sensitive".to_owned());
    }
    g
}

/// The Cedar configuration a gateway config describes (policy files read
/// from disk). Also used by `rampart policy check` and `explain`.
///
/// # Errors
/// A message naming a policy file that cannot be read.
pub fn authz_config(cfg: &Config) -> Result<Option<AuthzConfig>, String> {
    let Some(pc) = &cfg.policy else {
        return Ok(None);
    };
    let sensitive: HashSet<String> = cfg.mfa.sensitive_actions.iter().cloned().collect();
    let mut seen = HashSet::new();
    let mut actions = Vec::new();
    for r in &cfg.routes {
        if seen.insert(r.action.clone()) {
            actions.push(ActionDef {
                name: r.action.clone(),
                scope: r.scope.clone(),
                groups: groups_of(&r.scope, &r.action, &sensitive),
            });
        }
    }
    // The gateway's own endpoints (`MfaVerify` and the `manage` actions
    // are built into the schema).
    for (name, scope) in [("GetLimits", ""), ("GetAddressBook", "read")] {
        if seen.insert(name.to_owned()) {
            actions.push(ActionDef {
                name: name.to_owned(),
                scope: scope.to_owned(),
                groups: groups_of(scope, name, &sensitive),
            });
        }
    }
    let mut sources = Vec::new();
    for f in &pc.files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| format!("policy file `{}`: {e}", f.display()))?;
        sources.push(PolicySource {
            name: f.display().to_string(),
            text,
        });
    }
    Ok(Some(AuthzConfig {
        actions,
        instruments: pc
            .instruments
            .iter()
            .map(|(s, p)| InstrumentDef {
                symbol: s.clone(),
                product: p.clone(),
            })
            .collect(),
        defaults: pc.defaults,
        sources,
    }))
}

impl Authz {
    /// Compiles the snapshot's authorization.
    ///
    /// # Errors
    /// Every policy error (file, line, message) as one string.
    pub fn compile(cfg: &Config) -> Result<Self, String> {
        let engine = match authz_config(cfg)? {
            Some(ac) => Some(Arc::new(Authorizer::new(&ac).map_err(|e| e.to_string())?)),
            None => None,
        };
        Ok(Self {
            engine,
            sensitive: cfg.mfa.sensitive_actions.iter().cloned().collect(),
            step_up_ttl: cfg.mfa.step_up_ttl,
            prepared: RwLock::new(HashMap::new()),
        })
    }

    /// Whether `action` needs a fresh MFA proof.
    #[must_use]
    pub fn is_sensitive(&self, action: &str) -> bool {
        self.sensitive.contains(action)
    }

    /// The prepared Cedar principal of a key (cached for a few seconds).
    pub fn prepared(
        &self,
        engine: &Authorizer,
        key: &KeyRecord,
        account: &AccountRecord,
        parent: Option<&AccountRecord>,
    ) -> Arc<PreparedKey> {
        if let Some((at, p)) = self.prepared.read().get(&key.key_id) {
            if at.elapsed() < CACHE_TTL {
                return Arc::clone(p);
            }
        }
        let settings = KeySettings {
            key_id: key.key_id.clone(),
            account_id: key.account_id.clone(),
            scopes: key.scopes.clone(),
            instruments: key.instruments.clone(),
            products: key.products.clone(),
            nets: key.allowed_nets.clone(),
            expires_at_ms: key.expires_at_ms,
            read_only: key.read_only,
        };
        let p =
            Arc::new(engine.prepare_key(&settings, &facts(account), parent.map(facts).as_ref()));
        let mut w = self.prepared.write();
        if w.len() >= CACHE_MAX {
            w.clear();
        }
        w.insert(key.key_id.clone(), (Instant::now(), Arc::clone(&p)));
        p
    }
}

/// The Cedar facts of an account.
#[must_use]
pub fn facts(a: &AccountRecord) -> AccountFacts {
    AccountFacts {
        id: a.id.clone(),
        parent_id: a.parent_id.clone(),
        kyc_tier: a.kyc_tier,
        risk_profile: a.risk_profile.clone(),
        withdrawal_addresses: a.withdrawal_addresses.clone(),
    }
}

/// A value named by `loc` in the request: path params, raw query, body.
#[must_use]
pub fn locate(
    loc: &Locator,
    params: &[(&str, &str)],
    query: Option<&str>,
    body: Option<&serde_json::Value>,
) -> Option<String> {
    match loc {
        Locator::Path(n) => params
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| (*v).to_owned()),
        Locator::Query(n) => query_value(query?, n),
        Locator::Body(ptr) => match body?.pointer(ptr)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        },
    }
}

/// The first value of query parameter `name`, percent-decoded (validation
/// already refused repeated parameters on routes with a schema).
#[must_use]
pub fn query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| pct_decode(v))
    })
}

/// `%XX` and `+` decoding of one query value (bounded by the listener's
/// head limits); invalid UTF-8 becomes U+FFFD.
#[must_use]
pub fn pct_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let hex = |j: usize| b.get(j).and_then(|h| (*h as char).to_digit(16));
        match (c, hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Looks an account up, mapping "unknown" and "unavailable" to problems
/// (fail closed: an account that cannot be read authorizes nothing).
///
/// # Errors
/// `FORBIDDEN_BY_POLICY` for an unknown account, `AUTH_UNAVAILABLE` when
/// the directory cannot answer.
pub async fn account(
    dir: &dyn AccountDirectory,
    id: &str,
) -> Result<Arc<AccountRecord>, Box<Problem>> {
    match dir.account(id).await {
        Ok(Some(a)) => Ok(a),
        Ok(None) => Err(Box::new(
            Problem::new(ProblemCode::ForbiddenByPolicy)
                .detail(format!("account `{}` is not known", truncate(id))),
        )),
        Err(e) => {
            tracing::error!(target: "rampart::authz", error = %e, "account directory unavailable");
            Err(Box::new(Problem::new(ProblemCode::AuthUnavailable).detail(
                "the account directory is unavailable; the request was refused",
            )))
        }
    }
}

fn truncate(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

/// Whether `target` is `own` or a direct sub-account of it.
#[must_use]
pub fn within(own: &str, target: &AccountRecord) -> bool {
    target.id == own || target.parent_id.as_deref() == Some(own)
}

/// Checks a TOTP proof through the directory.
///
/// # Errors
/// `MFA_INVALID` (wrong or reused), `MFA_REQUIRED` (not enrolled),
/// `AUTH_UNAVAILABLE`.
pub async fn verify_totp(
    dir: &dyn AccountDirectory,
    account_id: &str,
    code: &str,
    now_ms: i64,
) -> Result<(), Box<Problem>> {
    let secs = u64::try_from(now_ms / 1000).unwrap_or(0);
    match dir.verify_totp(account_id, code, secs).await {
        Ok(MfaCheck::Verified) => Ok(()),
        Ok(MfaCheck::Invalid) => Err(Box::new(
            Problem::new(ProblemCode::MfaInvalid).detail("the one-time code is not valid"),
        )),
        Ok(MfaCheck::Reused) => Err(Box::new(
            Problem::new(ProblemCode::MfaInvalid)
                .detail("the one-time code was already used; wait for the next one"),
        )),
        Ok(MfaCheck::NotEnrolled) => Err(Box::new(
            Problem::new(ProblemCode::MfaRequired)
                .detail("the account has no MFA enrolment; enrol before using this action"),
        )),
        Err(e) => {
            tracing::error!(target: "rampart::authz", error = %e, "MFA check unavailable");
            Err(Box::new(Problem::new(ProblemCode::AuthUnavailable).detail(
                "the MFA check is unavailable; the request was refused",
            )))
        }
    }
}

/// The IP Cedar sees (IPv4-mapped IPv6 as IPv4).
#[must_use]
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;

    #[test]
    fn proofs_parse() {
        assert_eq!(parse_proof("totp=123456"), Some(MfaProof::Totp("123456")));
        assert_eq!(parse_proof(" token = abc "), Some(MfaProof::Token("abc")));
        assert_eq!(parse_proof("totp="), None);
        assert_eq!(parse_proof("sms=1"), None);
        assert_eq!(parse_proof("123456"), None);
    }

    #[test]
    fn step_up_tokens_are_bound_and_expire() {
        let t = StepUpTokens::default();
        let tok = t.issue("k1", 1_000, Duration::from_secs(60)).unwrap();
        assert_eq!(t.check(&tok, "k1", 2_000), Some(1_000));
        assert_eq!(t.check(&tok, "k2", 2_000), None, "bound to the key");
        assert_eq!(t.check(&tok, "k1", 61_000), None, "expired");
        assert_eq!(t.check("nope", "k1", 2_000), None);
    }

    #[test]
    fn order_index_is_bounded_and_answers_owners() {
        let ix = OrderIndex::default();
        ix.record("1", "a", "k");
        ix.record("2", "b", "k2");
        assert_eq!(ix.owner("1"), Some(("a".into(), "k".into())));
        assert_eq!(ix.by_key("k2"), vec![("2".into(), "b".into())]);
        ix.remove("1");
        assert_eq!(ix.owner("1"), None);
    }

    #[test]
    fn locators() {
        let body = serde_json::json!({"symbol": "BTC-USD", "n": 5});
        let params = [("order_id", "42")];
        assert_eq!(
            locate(&Locator::Path("order_id".into()), &params, None, None),
            Some("42".into())
        );
        assert_eq!(
            locate(
                &Locator::Query("account".into()),
                &[],
                Some("x=1&account=sub%2D1"),
                None
            ),
            Some("sub-1".into())
        );
        assert_eq!(
            locate(&Locator::Body("/symbol".into()), &[], None, Some(&body)),
            Some("BTC-USD".into())
        );
        assert_eq!(
            locate(&Locator::Body("/none".into()), &[], None, Some(&body)),
            None
        );
    }
}
