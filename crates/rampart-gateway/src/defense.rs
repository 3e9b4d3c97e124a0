//! Failed-authentication defense and adaptive risk on the request path:
//! the gateway-wide [`AuthGuard`] and [`RiskEngine`] from
//! [`rampart_shield`], built once at start (their state outlives config
//! reloads; changing `[abuse]` or `[risk]` needs a restart).
//!
//! - **Before authentication** ([`Defense::pre_auth`]): the (source IP,
//!   claimed key id) pair is admitted, delayed (progressive delay after
//!   failures), refused with `429 LOCKED_OUT` (pair, IP or prefix locked;
//!   never the victim key itself) or `429 RATE_LIMITED` (pre-auth limit for
//!   unknown sources during a distributed attack).
//! - **After authentication** ([`Defense::auth_failed`],
//!   [`Defense::auth_succeeded`]): credential failures feed the counters;
//!   a success marks the source known-good for the key.
//! - **Adaptive risk** ([`Defense::assess`]): every authenticated request
//!   is scored against its key's behaviour profile; the thresholds map the
//!   score to allow / MFA step-up / throttle / deny. Allowed requests teach
//!   the profile.
//!
//! Alerts (distributed attack, targeted key, lockouts, risk denials) go to
//! the log, the audit trail and the `[alerts]` webhook.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rampart_core::config::{AbuseConfig, Config, RiskSettings};
use rampart_core::problem::{Problem, ProblemCode};
use rampart_shield::abuse::{Admission, AuthGuard, AuthGuardConfig, LockScope};
use rampart_shield::alert::Alert;
use rampart_shield::risk::{AsnTable, Assessment, RiskAction, RiskConfig, RiskContext, RiskEngine};
use rampart_shield::{KeyHasher, MemoryStore, MonotonicClock, Quota, RateLimiter};

/// Where alerts go besides the log (the `[alerts]` webhook).
pub trait AlertSink: Send + Sync {
    /// Queues an alert; never blocks.
    fn send(&self, alert: Alert);
}

impl AlertSink for crate::alerts::Alerter {
    fn send(&self, alert: Alert) {
        crate::alerts::Alerter::send(self, alert);
    }
}

/// Gateway-wide abuse and risk state.
pub struct Defense {
    guard: Option<AuthGuard<MonotonicClock>>,
    risk: Option<RiskEngine>,
    sensitive: Vec<String>,
    credential_changes: Vec<String>,
    /// Per-key limiter for keys whose score is in the throttle band.
    throttle: RateLimiter<MemoryStore, MonotonicClock>,
    throttle_quota: Quota,
    hasher: KeyHasher,
    alerter: Option<Arc<dyn AlertSink>>,
}

impl std::fmt::Debug for Defense {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Defense")
            .field("guard", &self.guard.is_some())
            .field("risk", &self.risk.is_some())
            .finish_non_exhaustive()
    }
}

fn unix_ms() -> u64 {
    crate::respond::unix_ms()
}

fn guard_config(a: &AbuseConfig) -> AuthGuardConfig {
    let mut g = AuthGuardConfig {
        trusted: a.trusted.clone(),
        detect_min_ips: a.detect_min_ips,
        detect_min_keys: a.detect_min_keys,
        ..AuthGuardConfig::default()
    };
    g.pair.max_failures = a.max_failures;
    g.pair_lock.base = a.lockout;
    g.pair_lock.max = g.pair_lock.max.max(a.lockout);
    g.ip.max_failures = a.ip_max_failures;
    g.ip_lock.base = a.lockout;
    g.ip_lock.max = g.ip_lock.max.max(a.lockout);
    g.prefix.max_failures = a.prefix_max_failures;
    g
}

fn risk_config(r: &RiskSettings) -> RiskConfig {
    let mut c = RiskConfig {
        learning_min_requests: r.learning_requests,
        learning_min_age: r.learning_period,
        ..RiskConfig::default()
    };
    c.thresholds.step_up = r.step_up;
    c.thresholds.throttle = r.throttle;
    c.thresholds.deny = r.deny;
    c.sensitive_thresholds.step_up = c.sensitive_thresholds.step_up.min(r.step_up);
    c.sensitive_thresholds.throttle = c.sensitive_thresholds.throttle.min(r.throttle);
    c.sensitive_thresholds.deny = c.sensitive_thresholds.deny.min(r.deny);
    c
}

/// What [`Defense::assess`] decided for an authenticated request.
#[derive(Debug)]
pub enum RiskVerdict {
    /// Forward (the profile has learnt from it).
    Allow,
    /// Forward, but the score was not clean: record it.
    Noted(Assessment),
    /// Refuse with this problem; record the assessment.
    Refuse(Box<Problem>, Assessment),
}

impl Defense {
    /// Builds the guard and the risk engine from `cfg`.
    ///
    /// # Errors
    ///
    /// A message naming every invalid setting, or an unreadable ASN table.
    pub fn new(cfg: &Config, alerter: Option<Arc<dyn AlertSink>>) -> Result<Self, String> {
        let guard = if cfg.abuse.enabled {
            let started = unix_ms();
            Some(
                AuthGuard::new(guard_config(&cfg.abuse), MonotonicClock::new(), started)
                    .map_err(|e| format!("[abuse]: {e}"))?,
            )
        } else {
            None
        };
        let r = &cfg.risk;
        let risk = if r.enabled {
            let asn = match &r.asn_table {
                Some(p) => Some(
                    AsnTable::from_csv_file(p)
                        .map_err(|e| format!("[risk] asn_table `{}`: {e}", p.display()))?,
                ),
                None => None,
            };
            let engine =
                RiskEngine::new(risk_config(r), asn).map_err(|e| format!("[risk]: {e}"))?;
            for net in &r.trusted {
                engine.trust(*net);
            }
            Some(engine)
        } else {
            None
        };
        let throttle_quota = Quota::new(r.throttle_rate, r.throttle_per, r.throttle_rate)
            .map_err(|e| format!("[risk] throttle: {e}"))?;
        let throttle = RateLimiter::new(
            MemoryStore::new(16, 4096).map_err(|e| format!("[risk] throttle store: {e}"))?,
            MonotonicClock::new(),
        );
        Ok(Self {
            guard,
            risk,
            sensitive: r.sensitive_actions.clone(),
            credential_changes: r.credential_change_actions.clone(),
            throttle,
            throttle_quota,
            hasher: KeyHasher::new(),
            alerter,
        })
    }

    /// Sends an alert: log always (the sink logs), the webhook when
    /// configured.
    pub fn alert(&self, alert: Alert) {
        match &self.alerter {
            Some(a) => a.send(alert),
            None => tracing::warn!(
                target: "rampart::alerts",
                kind = alert.kind,
                summary = %alert.summary,
                "security alert (no webhook configured)"
            ),
        }
    }

    /// Before credentials are verified: may `ip` try `claimed`? Sleeps the
    /// progressive delay itself.
    ///
    /// # Errors
    ///
    /// The `429` to answer, with the lock scope as a note.
    pub async fn pre_auth(&self, ip: IpAddr, claimed: &str) -> Result<(), Box<Problem>> {
        let Some(g) = &self.guard else {
            return Ok(());
        };
        match g.admit(ip, claimed) {
            Admission::Allow => Ok(()),
            Admission::Delay(d) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
            Admission::Locked { retry_after, scope } => {
                let what = match scope {
                    LockScope::Pair => "this source's attempts on this key",
                    LockScope::Ip => "attempts from this source address",
                    LockScope::Prefix => "attempts from this source network",
                };
                Err(Box::new(
                    Problem::new(ProblemCode::LockedOut)
                        .detail(format!(
                            "too many failed authentications: {what} are locked; retry after {} s or ask an operator to unlock",
                            secs(retry_after)
                        ))
                        .with("lock", lock_name(scope))
                        .retry_after(secs(retry_after)),
                ))
            }
            Admission::Throttled { retry_after } => Err(Box::new(
                Problem::new(ProblemCode::RateLimited)
                    .detail(format!(
                        "authentication attempts from unknown sources are limited right now; retry after {} s",
                        secs(retry_after)
                    ))
                    .with("limit", "pre-auth")
                    .retry_after(secs(retry_after)),
            )),
        }
    }

    /// After a failed verification with `code`. Only credential failures
    /// count (a stale timestamp or a replayed nonce is not a guess).
    /// Returns the alert raised, if any (also sent).
    pub fn auth_failed(&self, ip: IpAddr, claimed: &str, code: ProblemCode) -> Option<Alert> {
        let g = self.guard.as_ref()?;
        if !counts_as_failure(code) {
            return None;
        }
        let alert = g.record_failure(ip, claimed)?;
        self.alert(alert.clone());
        Some(alert)
    }

    /// After a successful verification of `key_id` from `ip`.
    pub fn auth_succeeded(&self, ip: IpAddr, key_id: &str) {
        if let Some(g) = &self.guard {
            g.record_success(ip, key_id);
        }
    }

    /// Whether `action` is scored with the stricter thresholds.
    #[must_use]
    pub fn is_sensitive(&self, action: &str) -> bool {
        self.sensitive.iter().any(|a| a == action)
    }

    /// Whether a completed `action` changes credentials (MFA, keys, the
    /// withdrawal address book).
    #[must_use]
    pub fn changes_credentials(&self, action: &str) -> bool {
        self.risk.is_some() && self.credential_changes.iter().any(|a| a == action)
    }

    /// Scores an authenticated request; learns from it when it is let
    /// through.
    #[must_use]
    pub fn assess(&self, ctx: &RiskContext<'_>, mfa_proven: bool) -> RiskVerdict {
        let Some(engine) = &self.risk else {
            return RiskVerdict::Allow;
        };
        let a = engine.assess(ctx);
        match a.action {
            RiskAction::Allow => {
                engine.observe(ctx);
                if a.signals.is_empty() {
                    RiskVerdict::Allow
                } else {
                    RiskVerdict::Noted(a)
                }
            }
            RiskAction::StepUp if mfa_proven => {
                engine.observe(ctx);
                RiskVerdict::Noted(a)
            }
            RiskAction::StepUp => {
                let p = Problem::new(ProblemCode::MfaRequired)
                    .detail(format!(
                        "this request looks unusual for the key (risk score {}: {}); repeat it with an MFA proof",
                        a.score,
                        signal_names(&a)
                    ))
                    .with("risk_score", a.score);
                RiskVerdict::Refuse(Box::new(p), a)
            }
            RiskAction::Throttle => {
                let cell = self.hasher.key(0, b"risk-throttle", ctx.key_id.as_bytes());
                let d = self.throttle.check(cell, &self.throttle_quota, 1);
                if d.is_allowed() {
                    engine.observe(ctx);
                    return RiskVerdict::Noted(a);
                }
                let retry = d.retry_after().unwrap_or(Duration::from_secs(1));
                let p = Problem::new(ProblemCode::RateLimited)
                    .detail(format!(
                        "the key is throttled while its requests look unusual (risk score {}: {})",
                        a.score,
                        signal_names(&a)
                    ))
                    .with("limit", "risk-throttle")
                    .with("risk_score", a.score)
                    .retry_after(secs(retry));
                RiskVerdict::Refuse(Box::new(p), a)
            }
            RiskAction::Deny => {
                if let Some(alert) = a.alert(ctx) {
                    self.alert(alert);
                }
                let p = Problem::new(ProblemCode::ForbiddenByPolicy)
                    .detail(format!(
                        "refused by adaptive risk (score {}: {})",
                        a.score,
                        signal_names(&a)
                    ))
                    .with("risk_score", a.score);
                RiskVerdict::Refuse(Box::new(p), a)
            }
        }
    }

    /// Records an MFA or address-book change for a key or account: the
    /// next requests carry a `recent_credential_change` signal.
    pub fn note_credential_change(&self, key_or_account: &str) {
        if let Some(r) = &self.risk {
            r.note_credential_change(key_or_account, unix_ms());
        }
    }

    /// The guard (admin views, tests).
    #[must_use]
    pub fn guard(&self) -> Option<&AuthGuard<MonotonicClock>> {
        self.guard.as_ref()
    }

    /// The risk engine (admin views, tests).
    #[must_use]
    pub fn risk(&self) -> Option<&RiskEngine> {
        self.risk.as_ref()
    }
}

fn counts_as_failure(code: ProblemCode) -> bool {
    matches!(
        code,
        ProblemCode::UnknownKey
            | ProblemCode::SignatureInvalid
            | ProblemCode::KeyRevoked
            | ProblemCode::KeyExpired
            | ProblemCode::MfaInvalid
    )
}

fn lock_name(scope: LockScope) -> &'static str {
    match scope {
        LockScope::Pair => "pair",
        LockScope::Ip => "ip",
        LockScope::Prefix => "prefix",
    }
}

fn secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

fn signal_names(a: &Assessment) -> String {
    a.signals
        .iter()
        .map(|s| s.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Audit facts of an assessment.
#[must_use]
pub fn notes(a: &Assessment) -> Vec<(&'static str, String)> {
    vec![
        ("risk_score", a.score.to_string()),
        ("risk_action", a.action.as_str().to_owned()),
        ("risk", a.explain()),
    ]
}
