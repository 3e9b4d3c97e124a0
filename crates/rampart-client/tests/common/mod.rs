//! Shared test helpers: one key of every kind, generated independently of
//! the client, a credentials file holding them, and the gateway-side
//! verification (rampart-auth's verifier) the tests check signatures with.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::disallowed_methods,
    reason = "test code"
)]

use std::collections::HashMap;

use base64::Engine as _;
use http::{HeaderMap, Method};
use rampart_auth::profiles::jwt::{Alg, JwtSigner};
use rampart_auth::{profiles, rfc9421, AuthError, Claims, KeyMaterial, RequestView, Scheme};
use serde_json::{json, Value};

/// A fixed clock for signing tests: 2023-11-14T22:13:20Z.
pub const NOW_MS: i64 = 1_700_000_000_123;

/// Every key kind: (name, scheme).
pub const KINDS: [(&str, &str); 8] = [
    ("trader-hmac", "hmac-sha256"),
    ("trader-ed25519", "ed25519"),
    ("trader-ecdsa", "ecdsa-p256-sha256"),
    ("binance-style", "binance-hmac-sha256"),
    ("binance-ed25519", "binance-ed25519"),
    ("kraken-style", "kraken-hmac-sha512"),
    ("coinbase-style", "coinbase-jwt-es256"),
    ("coinbase-eddsa", "coinbase-jwt-eddsa"),
];

fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    aws_lc_rs::rand::fill(&mut out).unwrap();
    out
}

/// What the gateway would store for a key: its scheme and verifying
/// material, built from the generated keys, not from the client.
pub struct Verifier {
    pub keys: HashMap<String, (Scheme, KeyMaterial)>,
}

/// A generated key set: the JSON entries for the credentials file, the
/// secrets (to check they never leak), and the verifier.
pub struct KeySet {
    pub entries: Vec<Value>,
    pub secrets: Vec<String>,
    pub verifier: Verifier,
}

/// One key of every kind in [`KINDS`].
pub fn key_set() -> KeySet {
    let mut entries = Vec::new();
    let mut secrets = Vec::new();
    let mut keys = HashMap::new();
    for (i, (name, scheme)) in KINDS.iter().enumerate() {
        let key_id = format!("k{i}_{}", hex(&random::<6>()));
        let scheme_enum = Scheme::parse(scheme).unwrap();
        let mut entry = json!({
            "name": name,
            "key_id": key_id,
            "scheme": scheme,
            "scopes": ["read", "trade"],
            "limits": {"future": "field"},
        });
        let material = match *scheme {
            "hmac-sha256" => {
                let secret = random::<32>();
                let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
                entry["secret_b64"] = json!(b64);
                secrets.push(b64);
                KeyMaterial::Hmac(secret.to_vec().into())
            }
            "kraken-hmac-sha512" => {
                let secret = random::<64>();
                let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
                entry["secret_b64"] = json!(b64);
                secrets.push(b64);
                KeyMaterial::Hmac(secret.to_vec().into())
            }
            "binance-hmac-sha256" => {
                let ascii: String = random::<48>()
                    .iter()
                    .map(|b| {
                        char::from(
                            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                                [usize::from(*b) % 62],
                        )
                    })
                    .collect();
                entry["secret"] = json!(ascii);
                secrets.push(ascii.clone());
                KeyMaterial::Hmac(ascii.into_bytes().into())
            }
            "ed25519" | "binance-ed25519" | "coinbase-jwt-eddsa" => {
                let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
                let pem = pair.serialize_pem();
                secrets.push(pem_body(&pem));
                entry["private_key_pem"] = json!(pem);
                KeyMaterial::Ed25519(pair.public_key_raw().try_into().unwrap())
            }
            "ecdsa-p256-sha256" => {
                // PKCS#8, as rcgen (and `rampart demo`) write it.
                let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
                let pem = pair.serialize_pem();
                secrets.push(pem_body(&pem));
                entry["private_key_pem"] = json!(pem);
                KeyMaterial::EcdsaP256(pair.public_key_raw().to_vec())
            }
            "coinbase-jwt-es256" => {
                // SEC1 `EC PRIVATE KEY`, as Coinbase hands it out.
                let signer = JwtSigner::generate(Alg::Es256).unwrap();
                let pem = signer.to_pem().unwrap().to_string();
                assert!(pem.starts_with("-----BEGIN EC PRIVATE KEY-----"));
                secrets.push(pem_body(&pem));
                entry["private_key_pem"] = json!(pem);
                signer.public_key().unwrap()
            }
            other => panic!("no generator for {other}"),
        };
        keys.insert(key_id, (scheme_enum, material));
        entries.push(entry);
    }
    KeySet {
        entries,
        secrets,
        verifier: Verifier { keys },
    }
}

/// Whether two verifying keys are the same.
pub fn same_material(a: &KeyMaterial, b: &KeyMaterial) -> bool {
    match (a, b) {
        (KeyMaterial::Hmac(a), KeyMaterial::Hmac(b)) => a.as_slice() == b.as_slice(),
        (KeyMaterial::Ed25519(a), KeyMaterial::Ed25519(b)) => a == b,
        (KeyMaterial::EcdsaP256(a), KeyMaterial::EcdsaP256(b)) => a == b,
        _ => false,
    }
}

/// The base64 body of a PEM (what must never appear in output).
pub fn pem_body(pem: &str) -> String {
    pem.lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A credentials file's JSON for `keys` with this gateway and CA path.
pub fn credentials_json(keys: &KeySet, gateway_url: &str, ca_cert_path: &str) -> Value {
    json!({
        "gateway_url": gateway_url,
        "admin_url": "https://127.0.0.1:9443",
        "ca_cert_path": ca_cert_path,
        "account": "demo",
        "keys": keys.entries,
        "totp_secret_base32": "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
        "withdrawal_addresses": ["bc1qdemo0rampart0allowlisted0address0000000"],
    })
}

impl Verifier {
    /// Verifies a request as the gateway does: RFC 9421 first, then the
    /// exchange profiles. `Ok(None)`: no credentials at all.
    pub fn verify(
        &self,
        method: &Method,
        authority: &str,
        path_and_query: &str,
        headers: &HeaderMap,
        body: &[u8],
        now_ms: i64,
    ) -> Result<Option<Claims>, AuthError> {
        let view = RequestView {
            method,
            path_and_query,
            authority,
            scheme: "https",
            headers,
            body,
        };
        let unknown = || AuthError::Malformed("unknown key".to_owned());
        if let Some(parsed) = rfc9421::parse(&view)? {
            let mut claims = parsed.claims();
            let (scheme, material) = self.keys.get(&claims.key_id).ok_or_else(unknown)?;
            parsed.verify(&view, *scheme, material)?;
            claims.scheme = *scheme;
            return Ok(Some(claims));
        }
        let Some(claims) = profiles::detect(&view, now_ms)? else {
            return Ok(None);
        };
        let (scheme, material) = self.keys.get(&claims.key_id).ok_or_else(unknown)?;
        if claims.scheme != *scheme {
            return Err(AuthError::AlgorithmMismatch(
                "scheme differs from the key's",
            ));
        }
        profiles::verify(&view, &claims, material)?;
        Ok(Some(claims))
    }
}
