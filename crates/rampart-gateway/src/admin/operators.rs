//! Operator sign-in on the admin listener: WebAuthn registration and
//! authentication ceremonies (verified by [`rampart_auth::webauthn`]),
//! one-time enrolment tokens, and the sessions that mutating admin
//! endpoints require once any operator has a credential.
//!
//! What it owns: the ceremony table (challenges, single use, a TTL and a
//! bound) and the session table (per node, in memory: a restart signs every
//! operator out). Operators, credentials, counters and tokens live in the
//! store. What it must never do: log or audit a session token, an
//! enrolment token or a challenge; keep a session token other than as its
//! SHA-256; reveal at login whether an operator exists; read an unbounded
//! body.
//!
//! Endpoints (JSON in and out, every failure an RFC 9457 problem):
//!
//! - `POST /v1/operators/register/start` `{"operator","token"}` →
//!   `{"ceremony","publicKey":{…creation options…}}`
//! - `POST /v1/operators/register/finish` `{"ceremony","credential"}` →
//!   `201 {"operator","credential"}`; the token is spent here
//! - `POST /v1/operators/login/start` `{"operator"}` →
//!   `{"ceremony","publicKey":{…request options…}}`
//! - `POST /v1/operators/login/finish` `{"ceremony","credential"}` →
//!   `{"operator","session","expires_ms"}` and `Set-Cookie: rampart_admin=…`
//! - `POST /v1/operators/logout`, `GET /v1/operators/me`
//! - `GET /operator`: a self-contained page that runs the ceremonies.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use aws_lc_rs::digest;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, SET_COOKIE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use parking_lot::Mutex;
use rampart_audit::event::{types, Actor, AuditEvent, Decision};
use rampart_auth::webauthn::{self, Credential, CredentialKey, Expect, WebauthnError};
use rampart_core::config::OperatorsConfig;
use rampart_core::{Problem, ProblemCode};
use rampart_store::{AnyStore, OperatorCredential, Store as _, StoreError, COSE_EDDSA, COSE_ES256};
use serde::Deserialize;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use crate::respond::{self, Body};
use crate::runtime::Gateway;

/// Largest request body of the operator endpoints.
pub const MAX_BODY: usize = 16 * 1024;
/// Name of the session cookie.
pub const COOKIE: &str = "rampart_admin";
/// The header a cookie-authenticated change must carry (a cross-site form
/// cannot set it), with the value `1`.
pub const CSRF_HEADER: &str = "x-rampart-csrf";
/// How long an enrolment token printed by `rampart operators` is valid.
pub const ENROLMENT_TOKEN_TTL_MS: i64 = 24 * 3600 * 1000;

/// A clock in Unix milliseconds (injected in tests).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// SHA-256 of an enrolment or session token, the only form stored.
#[must_use]
pub fn token_hash(token: &str) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// `n` random bytes from the system CSPRNG.
fn random<const N: usize>() -> Result<Zeroizing<[u8; N]>, Problem> {
    let mut b = Zeroizing::new([0u8; N]);
    aws_lc_rs::rand::fill(b.as_mut_slice())
        .map_err(|_| Problem::new(ProblemCode::InternalError).detail("no randomness"))?;
    Ok(b)
}

/// A new random token (32 bytes, base64url): enrolment tokens and sessions.
///
/// # Errors
/// When the system has no randomness.
pub fn new_token() -> Result<Zeroizing<String>, String> {
    let b = random::<32>().map_err(|_| "the system has no randomness".to_owned())?;
    Ok(Zeroizing::new(URL_SAFE_NO_PAD.encode(b.as_slice())))
}

/// A new WebAuthn user handle (16 random bytes).
///
/// # Errors
/// When the system has no randomness.
pub fn new_user_handle() -> Result<Vec<u8>, String> {
    let b = random::<16>().map_err(|_| "the system has no randomness".to_owned())?;
    Ok(b.to_vec())
}

/// Whether an operator name is acceptable: 1 to 64 characters of letters,
/// digits, `.`, `_`, `-` and `@`.
#[must_use]
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
}

/// What a pending ceremony is for.
enum Kind {
    Register {
        operator: String,
        token_hash: [u8; 32],
    },
    Login {
        operator: String,
    },
}

struct Ceremony {
    kind: Kind,
    challenge: Zeroizing<[u8; 32]>,
    expires_ms: i64,
}

/// A signed-in operator (the token itself is never kept).
#[derive(Debug, Clone)]
struct Session {
    operator: String,
    created_ms: i64,
    last_ms: i64,
}

/// The operator a request proved with its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorSession {
    /// The operator's name.
    pub operator: String,
    /// When the session ends unless used again (Unix ms).
    pub expires_ms: i64,
    /// When the session started (Unix ms).
    pub created_ms: i64,
}

/// Operator accounts on the admin listener.
pub struct Operators {
    store: AnyStore,
    cfg: OperatorsConfig,
    origins: Vec<String>,
    ceremonies: Mutex<HashMap<String, Ceremony>>,
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    /// Latched once a credential exists (rows are never deleted).
    enforced: AtomicBool,
    /// Key of the placeholder credential ids shown for unknown operators.
    decoy_key: Zeroizing<[u8; 32]>,
    clock: Clock,
}

impl std::fmt::Debug for Operators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operators")
            .field("rp_id", &self.cfg.rp_id)
            .field("origins", &self.origins)
            .finish_non_exhaustive()
    }
}

/// A failure: the problem for the client and the cause for the audit
/// trail and the log (never a secret).
#[derive(Debug)]
struct Fail {
    problem: Box<Problem>,
    cause: String,
    operator: Option<String>,
}

fn fail(code: ProblemCode, detail: &str, cause: impl Into<String>) -> Fail {
    Fail {
        problem: Box::new(Problem::new(code).detail(detail.to_owned())),
        cause: cause.into(),
        operator: None,
    }
}

fn auth_failed(detail: &str, cause: impl Into<String>) -> Fail {
    fail(ProblemCode::OperatorAuthFailed, detail, cause)
}

/// The one detail of every sign-in failure after the ceremony was found,
/// so a response never tells whether the operator exists.
const LOGIN_FAILED: &str = "the assertion was not accepted";

fn store_fail(e: &StoreError) -> Fail {
    fail(
        ProblemCode::AuthUnavailable,
        "operator accounts are unavailable",
        format!("store: {e}"),
    )
}

impl From<Problem> for Fail {
    fn from(problem: Problem) -> Self {
        Self {
            cause: problem.code.as_str().to_owned(),
            problem: Box::new(problem),
            operator: None,
        }
    }
}

fn b64(s: &str, what: &'static str) -> Result<Vec<u8>, Fail> {
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| {
            fail(
                ProblemCode::BadRequest,
                &format!("`{what}` is not base64url"),
                "base64",
            )
        })
}

fn problem_for(e: &WebauthnError) -> &'static str {
    match e {
        WebauthnError::ClientData(_) => "the client data does not match the ceremony",
        WebauthnError::RpId => "the credential is for another relying party",
        WebauthnError::Flags(_) => "the authenticator did not verify the user",
        WebauthnError::Counter => "the signature counter did not increase",
        WebauthnError::Signature => "the signature does not verify",
        WebauthnError::Unsupported(_) => "the authenticator's key or format is not supported",
        _ => "the authenticator response is malformed",
    }
}

// ------------------------------------------------------------ bodies

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterStart {
    operator: String,
    token: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginStart {
    operator: String,
}

/// `PublicKeyCredential.toJSON()` of a registration or an assertion.
/// Fields browsers add that the server does not need are accepted and
/// ignored by name; anything else is refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CredentialJson {
    id: String,
    raw_id: String,
    #[serde(rename = "type")]
    ty: String,
    response: ResponseJson,
    #[serde(default)]
    #[expect(dead_code, reason = "accepted as browsers send it, not used")]
    authenticator_attachment: Option<serde_json::Value>,
    #[serde(default)]
    #[expect(dead_code, reason = "accepted as browsers send it, not used")]
    client_extension_results: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ResponseJson {
    #[serde(rename = "clientDataJSON")]
    client_data_json: String,
    #[serde(default)]
    attestation_object: Option<String>,
    #[serde(default)]
    authenticator_data: Option<String>,
    #[serde(default)]
    signature: Option<String>,
    #[serde(default)]
    user_handle: Option<String>,
    #[serde(default)]
    #[expect(dead_code, reason = "accepted as browsers send it, not used")]
    transports: Option<serde_json::Value>,
    #[serde(default)]
    #[expect(dead_code, reason = "accepted as browsers send it, not used")]
    public_key: Option<serde_json::Value>,
    #[serde(default)]
    #[expect(dead_code, reason = "accepted as browsers send it, not used")]
    public_key_algorithm: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Finish {
    ceremony: String,
    credential: CredentialJson,
}

/// Reads at most [`MAX_BODY`] bytes of a JSON body and parses it strictly.
async fn read_json<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, Fail> {
    let json = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(fail(
            ProblemCode::BadRequest,
            "the body must be `application/json`",
            "content type",
        ));
    }
    let too_large = || {
        fail(
            ProblemCode::PayloadTooLarge,
            "the body is larger than 16 KiB",
            "body size",
        )
    };
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    let mut body = req.into_body();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| {
            fail(
                ProblemCode::BadRequest,
                "the body could not be read",
                "body read",
            )
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len().saturating_add(data.len()) > MAX_BODY {
                return Err(too_large());
            }
            buf.extend_from_slice(&data);
        }
    }
    let buf = Zeroizing::new(buf);
    serde_json::from_slice(&buf).map_err(|e| {
        fail(
            ProblemCode::BadRequest,
            &format!(
                "the body is not the expected JSON object (line {}, column {})",
                e.line(),
                e.column()
            ),
            "malformed json",
        )
    })
}

// ------------------------------------------------------------ service

impl Operators {
    /// Operator accounts in `store`, for ceremonies from `origins` (the
    /// configured ones, or `https://<rp_id>:<admin port>` when none are).
    ///
    /// # Errors
    /// When the system has no randomness.
    pub fn new(
        store: AnyStore,
        cfg: OperatorsConfig,
        admin_port: u16,
        clock: Clock,
    ) -> Result<Self, String> {
        let origins = if cfg.origins.is_empty() {
            vec![if admin_port == 443 {
                format!("https://{}", cfg.rp_id)
            } else {
                format!("https://{}:{admin_port}", cfg.rp_id)
            }]
        } else {
            cfg.origins.clone()
        };
        let decoy_key = random::<32>().map_err(|_| "the system has no randomness".to_owned())?;
        Ok(Self {
            store,
            cfg,
            origins,
            ceremonies: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            enforced: AtomicBool::new(false),
            decoy_key,
            clock,
        })
    }

    /// The origins ceremonies are accepted from.
    #[must_use]
    pub fn origins(&self) -> &[String] {
        &self.origins
    }

    fn now(&self) -> i64 {
        (self.clock)()
    }

    fn ms(d: std::time::Duration) -> i64 {
        i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
    }

    /// Whether mutating admin endpoints need a session: once any operator
    /// credential was registered (revoked ones count), for good.
    ///
    /// # Errors
    /// The store failed (callers refuse the request: fail closed).
    pub async fn enforced(&self) -> Result<bool, StoreError> {
        if self.enforced.load(Ordering::Acquire) {
            return Ok(true);
        }
        let exists = self.store.operator_credentials_exist().await?;
        if exists {
            self.enforced.store(true, Ordering::Release);
        }
        Ok(exists)
    }

    fn put_ceremony(&self, kind: Kind) -> Result<(String, Zeroizing<[u8; 32]>), Fail> {
        let now = self.now();
        let id = URL_SAFE_NO_PAD.encode(random::<16>()?.as_slice());
        let challenge = random::<32>()?;
        let mut map = self.ceremonies.lock();
        if map.len() >= self.cfg.max_ceremonies {
            map.retain(|_, c| c.expires_ms > now);
        }
        if map.len() >= self.cfg.max_ceremonies {
            return Err(Fail {
                problem: Box::new(
                    Problem::new(ProblemCode::Overloaded)
                        .detail("too many sign-in ceremonies are pending; retry shortly")
                        .retry_after(5),
                ),
                cause: "ceremony table full".into(),
                operator: None,
            });
        }
        map.insert(
            id.clone(),
            Ceremony {
                kind,
                challenge: challenge.clone(),
                expires_ms: now.saturating_add(Self::ms(self.cfg.ceremony_ttl)),
            },
        );
        Ok((id, challenge))
    }

    /// Removes a ceremony (single use, whatever the outcome); `None` when
    /// unknown, already used or expired.
    fn take_ceremony(&self, id: &str) -> Option<Ceremony> {
        let c = self.ceremonies.lock().remove(id)?;
        (c.expires_ms > self.now()).then_some(c)
    }

    /// The origin a client data JSON names, if it is one of ours; else the
    /// first of ours (the verifier then refuses the origin).
    fn origin_for(&self, client_data: &[u8]) -> &str {
        #[derive(Deserialize)]
        struct Origin {
            origin: String,
        }
        let first = self.origins.first().map_or("", String::as_str);
        serde_json::from_slice::<Origin>(client_data)
            .ok()
            .and_then(|o| self.origins.iter().find(|x| **x == o.origin))
            .map_or(first, String::as_str)
    }

    fn timeout_ms(&self) -> i64 {
        Self::ms(self.cfg.ceremony_ttl)
    }

    fn user_verification(&self) -> &'static str {
        if self.cfg.require_uv {
            "required"
        } else {
            "preferred"
        }
    }

    async fn register_start(
        &self,
        body: RegisterStart,
    ) -> Result<(String, serde_json::Value), Fail> {
        let RegisterStart {
            operator: name,
            token,
        } = body;
        let token = Zeroizing::new(token);
        if !valid_name(&name) {
            return Err(fail(
                ProblemCode::BadRequest,
                "`operator` must be 1 to 64 letters, digits, `.`, `_`, `-` or `@`",
                "operator name",
            ));
        }
        let hash = token_hash(&token);
        let now = self.now();
        let owner = self
            .store
            .enrolment_token_operator(&hash, now)
            .await
            .map_err(|e| store_fail(&e))?;
        if owner.as_deref() != Some(name.as_str()) {
            return Err(Fail {
                operator: Some(name),
                ..auth_failed(
                    "the enrolment token is not valid (unknown, used, expired or for another operator)",
                    "enrolment token not usable",
                )
            });
        }
        let op = self
            .store
            .get_operator(&name)
            .await
            .map_err(|e| store_fail(&e))?;
        let existing = self
            .store
            .list_operator_credentials(&name)
            .await
            .map_err(|e| store_fail(&e))?;
        let (id, challenge) = self.put_ceremony(Kind::Register {
            operator: name.clone(),
            token_hash: hash,
        })?;
        let exclude: Vec<serde_json::Value> = existing
            .iter()
            .map(|c| serde_json::json!({"type": "public-key", "id": URL_SAFE_NO_PAD.encode(&c.credential_id)}))
            .collect();
        let options = serde_json::json!({
            "ceremony": id,
            "publicKey": {
                "challenge": URL_SAFE_NO_PAD.encode(challenge.as_slice()),
                "rp": {"id": self.cfg.rp_id, "name": self.cfg.rp_name},
                "user": {
                    "id": URL_SAFE_NO_PAD.encode(&op.user_handle),
                    "name": name,
                    "displayName": name,
                },
                "pubKeyCredParams": [
                    {"type": "public-key", "alg": COSE_ES256},
                    {"type": "public-key", "alg": COSE_EDDSA},
                ],
                "timeout": self.timeout_ms(),
                "attestation": "none",
                "authenticatorSelection": {
                    "residentKey": "discouraged",
                    "userVerification": self.user_verification(),
                },
                "excludeCredentials": exclude,
            },
        });
        Ok((name, options))
    }

    async fn register_finish(&self, body: Finish) -> Result<(String, serde_json::Value), Fail> {
        let Some(c) = self.take_ceremony(&body.ceremony) else {
            return Err(auth_failed(
                "unknown, used or expired ceremony; start again",
                "ceremony unknown or expired",
            ));
        };
        let Kind::Register {
            operator,
            token_hash,
        } = c.kind
        else {
            return Err(auth_failed(
                "unknown, used or expired ceremony; start again",
                "ceremony of another kind",
            ));
        };
        let with_op = |f: Fail| Fail {
            operator: Some(operator.clone()),
            ..f
        };
        let cred = body.credential;
        let r = &cred.response;
        let Some(att) = r.attestation_object.as_deref() else {
            return Err(with_op(fail(
                ProblemCode::BadRequest,
                "`response.attestationObject` is missing",
                "attestation object missing",
            )));
        };
        if cred.ty != "public-key" {
            return Err(with_op(fail(
                ProblemCode::BadRequest,
                "`type` must be `public-key`",
                "credential type",
            )));
        }
        let client_data = b64(&r.client_data_json, "clientDataJSON").map_err(&with_op)?;
        let att = b64(att, "attestationObject").map_err(&with_op)?;
        let raw_id = b64(&cred.raw_id, "rawId").map_err(&with_op)?;
        let expect = Expect {
            rp_id: &self.cfg.rp_id,
            origin: self.origin_for(&client_data),
            challenge: c.challenge.as_slice(),
            require_uv: self.cfg.require_uv,
        };
        let verified = webauthn::register(&expect, &client_data, &att)
            .map_err(|e| with_op(auth_failed(problem_for(&e), format!("registration: {e}"))))?;
        if verified.id != raw_id || URL_SAFE_NO_PAD.encode(&verified.id) != cred.id {
            return Err(with_op(auth_failed(
                "`id` and `rawId` must name the attested credential",
                "credential id mismatch",
            )));
        }
        let (algorithm, public_key) = match &verified.key {
            CredentialKey::Es256(p) => (COSE_ES256, p.clone()),
            CredentialKey::Ed25519(k) => (COSE_EDDSA, k.to_vec()),
        };
        let now = self.now();
        let stored = OperatorCredential {
            credential_id: verified.id.clone(),
            operator: operator.clone(),
            algorithm,
            public_key,
            sign_count: verified.sign_count,
            created_ms: now,
            last_used_ms: None,
            revoked_ms: None,
        };
        match self
            .store
            .enrol_operator_credential(&token_hash, &stored, now)
            .await
        {
            Ok(true) => {}
            Ok(false) => return Err(with_op(auth_failed(
                "the enrolment token is not valid (unknown, used, expired or for another operator)",
                "enrolment token not usable at finish",
            ))),
            Err(StoreError::Conflict(_)) => {
                return Err(with_op(auth_failed(
                    "this credential is already registered",
                    "credential id exists",
                )))
            }
            Err(e) => return Err(with_op(store_fail(&e))),
        }
        self.enforced.store(true, Ordering::Release);
        Ok((
            operator.clone(),
            serde_json::json!({"operator": operator, "credential": URL_SAFE_NO_PAD.encode(&verified.id)}),
        ))
    }

    /// A placeholder credential id for an operator that does not exist or
    /// has no usable credential: stable per name for this process, so
    /// repeated starts look like a real operator's.
    fn decoy_id(&self, name: &str) -> String {
        let key =
            aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, self.decoy_key.as_slice());
        let tag = aws_lc_rs::hmac::sign(&key, name.as_bytes());
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    }

    async fn login_start(&self, body: LoginStart) -> Result<(String, serde_json::Value), Fail> {
        let name = body.operator;
        if !valid_name(&name) {
            return Err(fail(
                ProblemCode::BadRequest,
                "`operator` must be 1 to 64 letters, digits, `.`, `_`, `-` or `@`",
                "operator name",
            ));
        }
        let ids: Vec<String> = match self.store.get_operator(&name).await {
            Ok(op) if !op.disabled => self
                .store
                .list_operator_credentials(&name)
                .await
                .map_err(|e| store_fail(&e))?
                .iter()
                .filter(|c| c.revoked_ms.is_none())
                .map(|c| URL_SAFE_NO_PAD.encode(&c.credential_id))
                .collect(),
            Ok(_) | Err(StoreError::NotFound(_)) => Vec::new(),
            Err(e) => return Err(store_fail(&e)),
        };
        let ids = if ids.is_empty() {
            vec![self.decoy_id(&name)]
        } else {
            ids
        };
        let (id, challenge) = self.put_ceremony(Kind::Login {
            operator: name.clone(),
        })?;
        let allow: Vec<serde_json::Value> = ids
            .into_iter()
            .map(|id| serde_json::json!({"type": "public-key", "id": id}))
            .collect();
        Ok((
            name,
            serde_json::json!({
                "ceremony": id,
                "publicKey": {
                    "challenge": URL_SAFE_NO_PAD.encode(challenge.as_slice()),
                    "rpId": self.cfg.rp_id,
                    "allowCredentials": allow,
                    "userVerification": self.user_verification(),
                    "timeout": self.timeout_ms(),
                },
            }),
        ))
    }

    async fn login_finish(
        &self,
        body: Finish,
    ) -> Result<(OperatorSession, Zeroizing<String>), Fail> {
        let Some(c) = self.take_ceremony(&body.ceremony) else {
            return Err(auth_failed(
                "unknown, used or expired ceremony; start again",
                "ceremony unknown or expired",
            ));
        };
        let Kind::Login { operator } = c.kind else {
            return Err(auth_failed(
                "unknown, used or expired ceremony; start again",
                "ceremony of another kind",
            ));
        };
        let denied = |cause: String| Fail {
            operator: Some(operator.clone()),
            ..auth_failed(LOGIN_FAILED, cause)
        };
        let cred = body.credential;
        let r = &cred.response;
        let (Some(ad), Some(sig)) = (r.authenticator_data.as_deref(), r.signature.as_deref())
        else {
            return Err(Fail {
                operator: Some(operator.clone()),
                ..fail(
                    ProblemCode::BadRequest,
                    "`response.authenticatorData` and `response.signature` are required",
                    "assertion fields missing",
                )
            });
        };
        let with_op = |f: Fail| Fail {
            operator: Some(operator.clone()),
            ..f
        };
        let client_data = b64(&r.client_data_json, "clientDataJSON").map_err(&with_op)?;
        let ad = b64(ad, "authenticatorData").map_err(&with_op)?;
        let sig = b64(sig, "signature").map_err(&with_op)?;
        let raw_id = b64(&cred.raw_id, "rawId").map_err(&with_op)?;
        let user_handle = r
            .user_handle
            .as_deref()
            .map(|u| b64(u, "userHandle"))
            .transpose()
            .map_err(&with_op)?;
        if cred.ty != "public-key" || URL_SAFE_NO_PAD.encode(&raw_id) != cred.id {
            return Err(denied("credential id or type mismatch".into()));
        }
        let op = match self.store.get_operator(&operator).await {
            Ok(op) => op,
            Err(StoreError::NotFound(_)) => return Err(denied("unknown operator".into())),
            Err(e) => return Err(with_op(store_fail(&e))),
        };
        if op.disabled {
            return Err(denied("operator disabled".into()));
        }
        if user_handle
            .as_ref()
            .is_some_and(|u| !bool::from(u.as_slice().ct_eq(&op.user_handle)))
        {
            return Err(denied("user handle mismatch".into()));
        }
        let creds = self
            .store
            .list_operator_credentials(&operator)
            .await
            .map_err(|e| with_op(store_fail(&e)))?;
        let Some(stored) = creds
            .into_iter()
            .find(|c| c.credential_id == raw_id && c.revoked_ms.is_none())
        else {
            return Err(denied("credential not registered to the operator".into()));
        };
        let key = match stored.algorithm {
            COSE_ES256 => CredentialKey::Es256(stored.public_key.clone()),
            COSE_EDDSA => match <[u8; 32]>::try_from(stored.public_key.as_slice()) {
                Ok(k) => CredentialKey::Ed25519(k),
                Err(_) => return Err(denied("stored key malformed".into())),
            },
            _ => return Err(denied("stored algorithm unsupported".into())),
        };
        let verifier_cred = Credential {
            id: stored.credential_id.clone(),
            key,
            sign_count: stored.sign_count,
        };
        let expect = Expect {
            rp_id: &self.cfg.rp_id,
            origin: self.origin_for(&client_data),
            challenge: c.challenge.as_slice(),
            require_uv: self.cfg.require_uv,
        };
        let now = self.now();
        let count = match webauthn::authenticate(&expect, &verifier_cred, &client_data, &ad, &sig) {
            Ok(n) => n,
            Err(WebauthnError::Counter) => {
                tracing::warn!(target: "rampart::operators", operator = %operator, "signature counter did not increase: a cloned authenticator?");
                return Err(denied(
                    "signature counter did not increase (cloned authenticator?)".into(),
                ));
            }
            Err(e) => return Err(denied(format!("assertion: {e}"))),
        };
        match self
            .store
            .advance_operator_credential(&stored.credential_id, count, now)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                return Err(denied(
                    "signature counter did not increase (concurrent use or revoked)".into(),
                ))
            }
            Err(e) => return Err(with_op(store_fail(&e))),
        }
        let token = new_token()
            .map_err(|e| with_op(fail(ProblemCode::InternalError, "no randomness", e)))?;
        let hash = token_hash(&token);
        let session = Session {
            operator: operator.clone(),
            created_ms: now,
            last_ms: now,
        };
        {
            let mut map = self.sessions.lock();
            if map.len() >= self.cfg.max_sessions {
                map.retain(|_, s| self.alive(s, now));
            }
            if map.len() >= self.cfg.max_sessions {
                return Err(with_op(Fail {
                    problem: Box::new(
                        Problem::new(ProblemCode::Overloaded)
                            .detail("too many operator sessions; sign out elsewhere or retry later")
                            .retry_after(60),
                    ),
                    cause: "session table full".into(),
                    operator: None,
                }));
            }
            map.insert(hash, session.clone());
        }
        Ok((
            OperatorSession {
                operator,
                expires_ms: self.expiry(&session),
                created_ms: now,
            },
            token,
        ))
    }

    fn expiry(&self, s: &Session) -> i64 {
        s.last_ms
            .saturating_add(Self::ms(self.cfg.session_idle))
            .min(s.created_ms.saturating_add(Self::ms(self.cfg.session_ttl)))
    }

    fn alive(&self, s: &Session, now: i64) -> bool {
        now < self.expiry(s)
    }

    /// The session of a token, touched (its idle timer restarts); `None`
    /// when unknown or expired (an expired one is dropped).
    fn touch(&self, token: &str) -> Option<OperatorSession> {
        let hash = token_hash(token);
        let now = self.now();
        let mut map = self.sessions.lock();
        let s = map.get_mut(&hash)?;
        if now
            >= s.last_ms
                .saturating_add(Self::ms(self.cfg.session_idle))
                .min(s.created_ms.saturating_add(Self::ms(self.cfg.session_ttl)))
        {
            map.remove(&hash);
            return None;
        }
        s.last_ms = now;
        let s = s.clone();
        Some(OperatorSession {
            expires_ms: self.expiry(&s),
            operator: s.operator,
            created_ms: s.created_ms,
        })
    }

    /// Ends the session of a token; whether there was one.
    fn end(&self, token: &str) -> bool {
        self.sessions.lock().remove(&token_hash(token)).is_some()
    }

    /// The session a request presents and whether it came as the cookie.
    fn presented(headers: &HeaderMap) -> Option<(Zeroizing<String>, bool)> {
        if let Some(v) = headers.get(http::header::AUTHORIZATION) {
            let v = v.to_str().ok()?;
            let (scheme, token) = v.split_once(' ')?;
            return scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| (Zeroizing::new(token.trim().to_owned()), false));
        }
        for v in headers.get_all(http::header::COOKIE) {
            let Ok(v) = v.to_str() else { continue };
            for kv in v.split(';') {
                if let Some((k, val)) = kv.trim().split_once('=') {
                    if k == COOKIE {
                        return Some((Zeroizing::new(val.to_owned()), true));
                    }
                }
            }
        }
        None
    }

    /// Checks the session of a request: `Ok` with the operator, or the
    /// failure. A cookie needs the CSRF header on anything but `GET`. The
    /// operator must still be enabled (a disable from the CLI ends its
    /// sessions at their next use).
    async fn session_of(
        &self,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<OperatorSession, Fail> {
        let required = |cause: &str| {
            fail(
                ProblemCode::OperatorAuthRequired,
                "sign in on /operator and send `Authorization: Bearer <session>`",
                cause,
            )
        };
        let Some((token, cookie)) = Self::presented(headers) else {
            return Err(required("no session presented"));
        };
        if cookie
            && method != Method::GET
            && headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()) != Some("1")
        {
            return Err(fail(
                ProblemCode::OperatorAuthRequired,
                "a session cookie needs the `X-Rampart-CSRF: 1` header",
                "cookie without csrf header",
            ));
        }
        let Some(s) = self.touch(&token) else {
            return Err(required("unknown or expired session"));
        };
        match self.store.get_operator(&s.operator).await {
            Ok(op) if !op.disabled => Ok(s),
            Ok(_) | Err(StoreError::NotFound(_)) => {
                self.end(&token);
                Err(Fail {
                    operator: Some(s.operator),
                    ..required("operator disabled")
                })
            }
            Err(e) => Err(store_fail(&e)),
        }
    }
}

// ------------------------------------------------------------ HTTP

/// Audit context of one admin request.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// The gateway (audit trail).
    pub gw: &'a Gateway,
    /// The peer address.
    pub peer: Option<IpAddr>,
}

impl Ctx<'_> {
    fn audit(&self, ev: AuditEvent) {
        let ev = match self.peer {
            Some(ip) => ev.source_ip(ip),
            None => ev,
        };
        if let Some(a) = self.gw.auth.as_ref().and_then(|s| s.audit.as_ref()) {
            a.record_deny(&ev);
        }
    }

    fn now(&self) -> Option<rampart_audit::Timestamp> {
        self.gw
            .auth
            .as_ref()
            .and_then(|s| s.audit.as_ref())
            .map(|a| a.now())
    }

    /// Records a success.
    fn ok(&self, action: &str, resource: &str, operator: &str) {
        if let Some(t) = self.now() {
            self.audit(AuditEvent::new(
                t,
                types::AUTH_SUCCESS,
                Actor::user(operator),
                action,
                resource,
                Decision::Allow,
            ));
        }
    }

    /// Records and logs a failure; the problem response.
    fn failed(&self, action: &str, resource: &str, f: Fail) -> Response<Body> {
        tracing::warn!(target: "rampart::operators", action, operator = ?f.operator, code = f.problem.code.as_str(), cause = %f.cause, "operator request refused");
        if let Some(t) = self.now() {
            let actor = f
                .operator
                .as_deref()
                .map_or_else(|| Actor::anonymous(""), Actor::anonymous);
            self.audit(
                AuditEvent::new(
                    t,
                    types::AUTH_FAILURE,
                    actor,
                    action,
                    resource,
                    Decision::Deny,
                )
                .reason(f.problem.code.as_str())
                .plain("cause", f.cause.clone()),
            );
        }
        respond::problem(&f.problem, None)
    }
}

fn json_response(status: StatusCode, v: &serde_json::Value) -> Response<Body> {
    let mut r = respond::json(status, v);
    respond::stamp(&mut r, None);
    r
}

fn cookie(value: &str, max_age_secs: i64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_secs}"
    ))
    .ok()
}

fn unavailable() -> Response<Body> {
    respond::problem(
        &Problem::new(ProblemCode::AuthUnavailable)
            .detail("operator accounts need the store (`rampart serve`)"),
        None,
    )
}

/// Serves `/operator` and `/v1/operators/…`; gives any other request back.
///
/// # Errors
/// The request itself when its path is not an operator endpoint.
pub async fn handle(
    ops: Option<&Operators>,
    ctx: Ctx<'_>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Box<Request<Incoming>>> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    if path == "/operator" {
        return Ok(if method == Method::GET {
            page()
        } else {
            method_not_allowed("GET")
        });
    }
    let Some(action) = path.strip_prefix("/v1/operators/") else {
        return Err(Box::new(req));
    };
    let want_get = action == "me";
    let known = matches!(
        action,
        "register/start" | "register/finish" | "login/start" | "login/finish" | "logout" | "me"
    );
    if !known {
        return Ok(respond::problem(&Problem::new(ProblemCode::NotFound), None));
    }
    if (want_get && method != Method::GET) || (!want_get && method != Method::POST) {
        return Ok(method_not_allowed(if want_get { "GET" } else { "POST" }));
    }
    let Some(ops) = ops else {
        return Ok(unavailable());
    };
    let name = match action {
        "register/start" | "register/finish" => "OperatorRegister",
        "login/start" | "login/finish" => "OperatorLogin",
        "logout" => "OperatorLogout",
        _ => "OperatorSession",
    };
    let res = match action {
        "register/start" => match read_json::<RegisterStart>(req).await {
            Ok(b) => ops
                .register_start(b)
                .await
                .map(|(_, v)| json_response(StatusCode::OK, &v)),
            Err(f) => Err(f),
        },
        "register/finish" => match read_json::<Finish>(req).await {
            Ok(b) => ops.register_finish(b).await.map(|(op, v)| {
                ctx.ok(name, &path, &op);
                tracing::warn!(target: "rampart::operators", operator = %op, "operator credential registered");
                json_response(StatusCode::CREATED, &v)
            }),
            Err(f) => Err(f),
        },
        "login/start" => match read_json::<LoginStart>(req).await {
            Ok(b) => ops
                .login_start(b)
                .await
                .map(|(_, v)| json_response(StatusCode::OK, &v)),
            Err(f) => Err(f),
        },
        "login/finish" => match read_json::<Finish>(req).await {
            Ok(b) => ops.login_finish(b).await.map(|(s, token)| {
                ctx.ok(name, &path, &s.operator);
                tracing::info!(target: "rampart::operators", operator = %s.operator, "operator signed in");
                let mut r = json_response(
                    StatusCode::OK,
                    &serde_json::json!({
                        "operator": s.operator,
                        "session": token.as_str(),
                        "expires_ms": s.expires_ms,
                    }),
                );
                if let Some(c) = cookie(&token, Operators::ms(ops.cfg.session_ttl) / 1000) {
                    r.headers_mut().insert(SET_COOKIE, c);
                }
                r
            }),
            Err(f) => Err(f),
        },
        "logout" => match ops.session_of(&method, req.headers()).await {
            Ok(s) => {
                if let Some((token, _)) = Operators::presented(req.headers()) {
                    ops.end(&token);
                }
                ctx.ok(name, &path, &s.operator);
                let mut r = json_response(
                    StatusCode::OK,
                    &serde_json::json!({"operator": s.operator, "signed_out": true}),
                );
                if let Some(c) = cookie("", 0) {
                    r.headers_mut().insert(SET_COOKIE, c);
                }
                Ok(r)
            }
            Err(f) => Err(f),
        },
        _ => ops.session_of(&method, req.headers()).await.map(|s| {
            json_response(
                StatusCode::OK,
                &serde_json::json!({
                    "operator": s.operator,
                    "created_ms": s.created_ms,
                    "expires_ms": s.expires_ms,
                }),
            )
        }),
    };
    Ok(res.unwrap_or_else(|f| ctx.failed(name, &path, f)))
}

/// Guards a mutating admin endpoint: `Ok(None)` while no operator has a
/// credential (or without a store: the admin side is unauthenticated, as
/// logged at start), `Ok(Some(operator))` with a valid session, else the
/// problem response (401, or 503 when the store fails: fail closed).
///
/// # Errors
/// The response to send instead.
pub async fn authorize(
    ops: Option<&Operators>,
    ctx: Ctx<'_>,
    method: &Method,
    headers: &HeaderMap,
    action: &str,
    resource: &str,
) -> Result<Option<String>, Box<Response<Body>>> {
    let Some(ops) = ops else {
        return Ok(None);
    };
    match ops.enforced().await {
        Ok(false) => return Ok(None),
        Ok(true) => {}
        Err(e) => return Err(Box::new(ctx.failed(action, resource, store_fail(&e)))),
    }
    ops.session_of(method, headers)
        .await
        .map(|s| Some(s.operator))
        .map_err(|f| Box::new(ctx.failed(action, resource, f)))
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = respond::problem(
        &Problem::new(ProblemCode::MethodNotAllowed).detail(format!("the path accepts {allow}")),
        None,
    );
    r.headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static(allow));
    r
}

// ------------------------------------------------------------ page

const PAGE_HTML: &str = include_str!("operator.html");
const PAGE_JS: &str = include_str!("operator.js");
const PAGE_CSS: &str = "body{font:15px system-ui,sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem}fieldset{margin:1rem 0}input{margin:.2rem 0;width:100%}pre{white-space:pre-wrap;word-break:break-all;background:#f3f3f3;padding:.5rem}";

fn csp_hash(s: &str) -> String {
    let d = digest::digest(&digest::SHA256, s.as_bytes());
    format!("'sha256-{}'", STANDARD.encode(d.as_ref()))
}

/// The sign-in page and its Content-Security-Policy (inline script and
/// style allowed by hash only; nothing loads from elsewhere).
fn page_parts() -> &'static (Bytes, String) {
    static PAGE: OnceLock<(Bytes, String)> = OnceLock::new();
    PAGE.get_or_init(|| {
        let body = PAGE_HTML
            .replace("/*STYLE*/", PAGE_CSS)
            .replace("/*SCRIPT*/", PAGE_JS);
        let csp = format!(
            "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            csp_hash(PAGE_JS),
            csp_hash(PAGE_CSS)
        );
        (Bytes::from(body), csp)
    })
}

fn page() -> Response<Body> {
    let (body, csp) = page_parts();
    let mut r = Response::new(respond::full(body.clone()));
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(csp) {
        h.insert(http::header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(
        http::header::X_FRAME_OPTIONS,
        HeaderValue::from_static("DENY"),
    );
    h.insert(
        http::header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    respond::stamp(&mut r, None);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicI64;

    async fn ops(clock: Clock) -> Operators {
        let store = rampart_store::SqliteStore::open_in_memory().await.unwrap();
        let cfg = OperatorsConfig {
            session_idle: std::time::Duration::from_secs(60),
            session_ttl: std::time::Duration::from_secs(300),
            max_sessions: 2,
            max_ceremonies: 2,
            ..OperatorsConfig::default()
        };
        Operators::new(AnyStore::new(store), cfg, 9443, clock).unwrap()
    }

    fn session(o: &Operators, name: &str, now: i64) -> Zeroizing<String> {
        let token = new_token().unwrap();
        o.sessions.lock().insert(
            token_hash(&token),
            Session {
                operator: name.into(),
                created_ms: now,
                last_ms: now,
            },
        );
        token
    }

    #[tokio::test]
    async fn sessions_expire_when_idle_and_absolutely() {
        let t = Arc::new(AtomicI64::new(1_000_000));
        let t2 = t.clone();
        let o = ops(Arc::new(move || t2.load(Ordering::SeqCst))).await;
        assert_eq!(o.origins(), ["https://localhost:9443".to_owned()]);
        let tok = session(&o, "alice", 1_000_000);
        // Used every 50 s: alive until the 300 s absolute limit.
        for step in 1..=5 {
            t.store(1_000_000 + step * 50_000, Ordering::SeqCst);
            let s = o.touch(&tok).unwrap();
            assert_eq!(
                s.expires_ms,
                (1_000_000 + step * 50_000 + 60_000).min(1_300_000)
            );
        }
        t.store(1_300_000, Ordering::SeqCst);
        assert!(o.touch(&tok).is_none(), "absolute expiry");
        // Idle: 60 s without use ends it.
        let tok = session(&o, "alice", 1_300_000);
        t.store(1_359_999, Ordering::SeqCst);
        assert!(o.touch(&tok).is_some());
        t.store(1_419_999, Ordering::SeqCst);
        assert!(o.touch(&tok).is_none(), "idle expiry");
        assert!(o.touch("not-a-session").is_none());
    }

    #[tokio::test]
    async fn ceremonies_are_single_use_bounded_and_expire() {
        let t = Arc::new(AtomicI64::new(0));
        let t2 = t.clone();
        let o = ops(Arc::new(move || t2.load(Ordering::SeqCst))).await;
        let (a, _) = o
            .put_ceremony(Kind::Login {
                operator: "a".into(),
            })
            .unwrap();
        let (b, _) = o
            .put_ceremony(Kind::Login {
                operator: "b".into(),
            })
            .unwrap();
        let full = o
            .put_ceremony(Kind::Login {
                operator: "c".into(),
            })
            .err()
            .unwrap();
        assert_eq!(full.problem.code, ProblemCode::Overloaded);
        assert!(o.take_ceremony(&a).is_some());
        assert!(o.take_ceremony(&a).is_none(), "single use");
        t.store(5 * 60 * 1000, Ordering::SeqCst);
        assert!(o.take_ceremony(&b).is_none(), "expired");
        // Expired entries make room.
        let _ = o
            .put_ceremony(Kind::Login {
                operator: "d".into(),
            })
            .unwrap();
        let _ = o
            .put_ceremony(Kind::Login {
                operator: "e".into(),
            })
            .unwrap();
    }

    #[test]
    fn presented_sessions_and_names() {
        let mut h = HeaderMap::new();
        assert!(Operators::presented(&h).is_none());
        h.insert(
            http::header::COOKIE,
            HeaderValue::from_static("a=b; rampart_admin=tok"),
        );
        assert_eq!(
            Operators::presented(&h).map(|(t, c)| (t.to_string(), c)),
            Some(("tok".into(), true))
        );
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer xyz"),
        );
        assert_eq!(
            Operators::presented(&h).map(|(t, c)| (t.to_string(), c)),
            Some(("xyz".into(), false))
        );
        assert!(valid_name("alice.ops@desk-1"));
        assert!(!valid_name("") && !valid_name("a b") && !valid_name(&"a".repeat(65)));
    }

    #[test]
    fn page_csp_allows_only_its_own_script_and_style() {
        let (body, csp) = page_parts();
        let body = std::str::from_utf8(body).unwrap();
        assert!(body.contains("navigator.credentials.create"));
        assert!(!body.contains("src=\"http") && !body.contains("/*SCRIPT*/"));
        assert!(csp.contains(&csp_hash(PAGE_JS)) && csp.starts_with("default-src 'none'"));
    }
}
