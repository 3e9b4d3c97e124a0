//! OAuth 2.0 client credentials (RFC 6749 §4.4) with proof of possession:
//! `POST /oauth/token` must itself be a signed request of the key (any of
//! its schemes); the answer is a short-lived EdDSA JWT access token (RFC
//! 9068 profile: `typ: at+jwt`) whose scopes are a subset of the key's.
//! `GET /.well-known/jwks.json` publishes the verification key.
//!
//! A token is checked on every use against its key: a revoked or expired
//! key invalidates its tokens as soon as the key directory sees the change
//! (at once in-process, within `auth.key_cache_ttl` otherwise), and the
//! token's scopes are intersected with the key's current ones.

use std::sync::Arc;

use base64::Engine as _;
use rampart_auth::profiles::jwt;
use rampart_auth::KeyMaterial;
use serde_json::{json, Map, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Issuer claim of Rampart's tokens.
pub const ISSUER: &str = "rampart";

/// Holds the Ed25519 key that signs access tokens (the key provider's
/// signing key, so an HSM can hold it).
pub trait TokenSigner: Send + Sync {
    /// The Ed25519 public key.
    fn public_key(&self) -> [u8; 32];
    /// Signs `message` (pure Ed25519).
    ///
    /// # Errors
    /// The provider's message.
    fn sign(&self, message: &[u8]) -> Result<[u8; 64], String>;
}

/// Issues and verifies access tokens.
pub struct Tokens {
    signer: Arc<dyn TokenSigner>,
    kid: String,
    public: [u8; 32],
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("kid", &self.kid).finish()
    }
}

/// The verified content of an access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    /// The key the token was issued to.
    pub key_id: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Token id.
    pub jti: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Not one of ours (another issuer or key): let other schemes try.
    NotOurs,
    /// Ours but malformed or the signature fails.
    Invalid(String),
    /// Ours, valid signature, past `exp`.
    Expired {
        /// Expiry, Unix ms.
        exp_ms: i64,
    },
}

impl Tokens {
    /// A token service over `signer`.
    #[must_use]
    pub fn new(signer: Arc<dyn TokenSigner>) -> Self {
        let public = signer.public_key();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &public);
        let kid = format!(
            "rampart-{}",
            digest
                .as_ref()
                .iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        Self {
            signer,
            kid,
            public,
        }
    }

    /// The JWKS document (RFC 7517, OKP key per RFC 8037).
    #[must_use]
    pub fn jwks(&self) -> Value {
        json!({"keys": [{
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "use": "sig",
            "kid": self.kid,
            "x": B64.encode(self.public),
        }]})
    }

    /// Issues a token for `key_id` with `scopes`, valid `lifetime_s` from `now_s`.
    ///
    /// # Errors
    /// The signer's message.
    pub fn issue(
        &self,
        key_id: &str,
        account_id: &str,
        scopes: &[String],
        now_s: i64,
        lifetime_s: i64,
    ) -> Result<(String, String), String> {
        let jti = crate::proxy::new_request_id();
        let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": self.kid});
        let payload = json!({
            "iss": ISSUER,
            "sub": key_id,
            "acct": account_id,
            "scope": scopes.join(" "),
            "iat": now_s,
            "exp": now_s.saturating_add(lifetime_s),
            "jti": jti,
        });
        let mut token = String::with_capacity(512);
        token.push_str(&B64.encode(header.to_string()));
        token.push('.');
        token.push_str(&B64.encode(payload.to_string()));
        let sig = self.signer.sign(token.as_bytes())?;
        token.push('.');
        token.push_str(&B64.encode(sig));
        Ok((token, jti))
    }

    /// Verifies one of our tokens.
    ///
    /// # Errors
    /// [`TokenError`].
    pub fn verify(&self, token: &str, now_ms: i64) -> Result<TokenClaims, TokenError> {
        // Cheap check first: is this a token with our kid at all?
        let decoded = jwt::decode(token).map_err(|_| TokenError::NotOurs)?;
        if decoded.header.get("kid").and_then(Value::as_str) != Some(self.kid.as_str()) {
            return Err(TokenError::NotOurs);
        }
        if decoded.header.get("typ").and_then(Value::as_str) != Some("at+jwt")
            || decoded.header.get("alg").and_then(Value::as_str) != Some("EdDSA")
        {
            return Err(TokenError::Invalid("not a Rampart access token".into()));
        }
        if decoded.signature.len() != 64 {
            return Err(TokenError::Invalid("bad signature length".into()));
        }
        aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, self.public)
            .verify(decoded.signing_input.as_bytes(), &decoded.signature)
            .map_err(|_| TokenError::Invalid("the token signature does not verify".into()))?;
        let p: &Map<String, Value> = &decoded.payload;
        let str_claim = |k: &str| p.get(k).and_then(Value::as_str);
        if str_claim("iss") != Some(ISSUER) {
            return Err(TokenError::Invalid("wrong issuer".into()));
        }
        let (Some(sub), Some(scope), Some(jti), Some(exp)) = (
            str_claim("sub"),
            str_claim("scope"),
            str_claim("jti"),
            p.get("exp").and_then(Value::as_i64),
        ) else {
            return Err(TokenError::Invalid(
                "the token lacks sub, scope, jti or exp".into(),
            ));
        };
        if exp.saturating_mul(1000) <= now_ms {
            return Err(TokenError::Expired {
                exp_ms: exp.saturating_mul(1000),
            });
        }
        Ok(TokenClaims {
            key_id: sub.to_owned(),
            scopes: scope
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            jti: jti.to_owned(),
            exp,
        })
    }

    /// The verification key as key material (for tests and tools).
    #[must_use]
    pub fn key_material(&self) -> KeyMaterial {
        KeyMaterial::Ed25519(self.public)
    }
}
