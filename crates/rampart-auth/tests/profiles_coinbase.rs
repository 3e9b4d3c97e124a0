//! Coinbase-style JWT profile: sign → claims → verify with generated ES256
//! and EdDSA keys, PEM keys, every claim and header member tampered,
//! hand-built edge-case tokens.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use rampart_auth::profiles::coinbase;
use rampart_auth::profiles::jwt::{self, Alg, JwtSigner};
use rampart_auth::{AuthError, Claims, KeyMaterial, RequestView, Scheme, TimeUnit};
use serde_json::{json, Value};

const NOW_S: i64 = 1_700_000_000;
const NOW_MS: i64 = NOW_S * 1000;
const KEY_NAME: &str = "organizations/demo/apiKeys/coinbase-style";
const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

struct Req {
    method: Method,
    path_and_query: String,
    authority: String,
    scheme: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Req {
    fn new(method: Method, path_and_query: &str) -> Self {
        Self {
            method,
            path_and_query: path_and_query.to_owned(),
            authority: "127.0.0.1:8443".to_owned(),
            scheme: "https".to_owned(),
            headers: HeaderMap::new(),
            body: Vec::new(),
        }
    }

    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        self
    }

    fn bearer(self, token: &str) -> Self {
        self.header("Authorization", &format!("Bearer {token}"))
    }

    fn view(&self) -> RequestView<'_> {
        RequestView {
            method: &self.method,
            path_and_query: &self.path_and_query,
            authority: &self.authority,
            scheme: &self.scheme,
            headers: &self.headers,
            body: &self.body,
        }
    }
}

fn claims_of(req: &Req) -> Claims {
    coinbase::claims(&req.view(), NOW_MS)
        .unwrap()
        .expect("coinbase claims")
}

fn check(req: &Req, key: &KeyMaterial) -> Result<Claims, AuthError> {
    let claims = coinbase::claims(&req.view(), NOW_MS)?.expect("coinbase claims");
    coinbase::verify(&req.view(), &claims, key)?;
    Ok(claims)
}

fn std_header() -> Value {
    json!({"alg": "ES256", "kid": KEY_NAME, "nonce": "0123456789abcdef0123456789abcdef", "typ": "JWT"})
}

fn std_payload() -> Value {
    json!({"sub": KEY_NAME, "iss": "cdp", "nbf": NOW_S, "exp": NOW_S + 120, "uri": "GET 127.0.0.1:8443/v1/account"})
}

/// A token from raw JSON texts, signed by `signer` (whatever `alg` says).
fn raw_token(header: &str, payload: &str, signer: &JwtSigner) -> String {
    let input = format!(
        "{}.{}",
        B64URL.encode(header.as_bytes()),
        B64URL.encode(payload.as_bytes())
    );
    let sig = signer.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", B64URL.encode(sig))
}

fn token(header: &Value, payload: &Value, signer: &JwtSigner) -> String {
    raw_token(&header.to_string(), &payload.to_string(), signer)
}

fn es256() -> (JwtSigner, KeyMaterial) {
    let signer = JwtSigner::generate(Alg::Es256).unwrap();
    let key = signer.public_key().unwrap();
    (signer, key)
}

fn account_req(token: &str) -> Req {
    Req::new(Method::GET, "/v1/account").bearer(token)
}

fn malformed_detail(req: &Req) -> String {
    match coinbase::claims(&req.view(), NOW_MS) {
        Err(AuthError::Malformed(detail)) => detail,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn es256_and_eddsa_round_trip() {
    for alg in [Alg::Es256, Alg::EdDsa] {
        let signer = JwtSigner::generate(alg).unwrap();
        let key = signer.public_key().unwrap();
        let headers = coinbase::sign(
            &signer,
            KEY_NAME,
            &Method::POST,
            "127.0.0.1:8443",
            "/v1/orders?dry_run=1",
            NOW_S,
        )
        .unwrap();
        assert_eq!(headers.len(), 1);
        assert_eq!(headers[0].0, "Authorization");
        let mut req = Req::new(Method::POST, "/v1/orders?dry_run=1");
        req = req.header(headers[0].0, &headers[0].1);
        let claims = check(&req, &key).unwrap();
        assert_eq!(
            claims.scheme,
            match alg {
                Alg::Es256 => Scheme::CoinbaseJwtEs256,
                Alg::EdDsa => Scheme::CoinbaseJwtEdDsa,
            }
        );
        assert_eq!(claims.key_id, KEY_NAME);
        assert_eq!(claims.created, Some(NOW_S));
        assert_eq!(claims.created_unit, TimeUnit::Seconds);
        assert_eq!(claims.expires, Some(NOW_S + 120));
        assert_eq!(claims.nonce.as_deref().unwrap().len(), 32);
        assert_eq!(claims.credential_headers, vec!["authorization"]);
        assert_eq!(claims.window_ms, None);
        assert_eq!(claims.counter_nonce, None);

        // The signed token has the documented shape.
        let token = headers[0].1.strip_prefix("Bearer ").unwrap();
        let parsed = jwt::parse(token).unwrap();
        assert_eq!(parsed.header.alg, alg);
        assert_eq!(parsed.header.typ.as_deref(), Some("JWT"));
        assert_eq!(
            parsed.decoded.payload["uri"],
            "POST 127.0.0.1:8443/v1/orders"
        );
        assert_eq!(parsed.decoded.payload["iss"], "cdp");
        assert_eq!(parsed.decoded.payload["sub"], KEY_NAME);

        // Two signatures of the same request differ by nonce.
        let again = coinbase::sign(
            &signer,
            KEY_NAME,
            &Method::POST,
            "127.0.0.1:8443",
            "/v1/orders",
            NOW_S,
        )
        .unwrap();
        assert_ne!(again[0].1, headers[0].1);
    }
}

#[test]
fn pem_keys_round_trip() {
    // SEC1 "EC PRIVATE KEY" (as Coinbase hands out), through to_pem/from_pem.
    let (signer, key) = es256();
    let pem = signer.to_pem().unwrap();
    assert!(pem.starts_with("-----BEGIN EC PRIVATE KEY-----\n"));
    let back = JwtSigner::from_pem(&pem).unwrap();
    assert_eq!(back.alg(), Alg::Es256);
    let headers = coinbase::sign(
        &back,
        KEY_NAME,
        &Method::GET,
        "127.0.0.1:8443",
        "/v1/account",
        NOW_S,
    )
    .unwrap();
    check(
        &Req::new(Method::GET, "/v1/account").header("authorization", &headers[0].1),
        &key,
    )
    .unwrap();

    // The same PEM with literal "\n" escapes (as pasted into an env variable).
    let escaped = pem.replace('\n', "\\n");
    assert!(JwtSigner::from_pem(&escaped).is_ok());

    // PKCS#8 "PRIVATE KEY", P-256.
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let der = pair.to_pkcs8v1().unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(der.as_ref())
    );
    assert_eq!(JwtSigner::from_pem(&pem).unwrap().alg(), Alg::Es256);

    // PKCS#8 Ed25519.
    let ed = JwtSigner::generate(Alg::EdDsa).unwrap();
    let pem = ed.to_pem().unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let back = JwtSigner::from_pem(&pem).unwrap();
    assert_eq!(back.alg(), Alg::EdDsa);
    let public = ed.public_key().unwrap();
    let headers = coinbase::sign(
        &back,
        KEY_NAME,
        &Method::GET,
        "127.0.0.1:8443",
        "/v1/account",
        NOW_S,
    )
    .unwrap();
    check(
        &Req::new(Method::GET, "/v1/account").header("authorization", &headers[0].1),
        &public,
    )
    .unwrap();

    // Not keys.
    for bad in [
        "",
        "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
        "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "-----BEGIN EC PRIVATE KEY-----\nAAAA\n",
    ] {
        let err = JwtSigner::from_pem(bad).unwrap_err();
        assert!(matches!(err, AuthError::Malformed(_)), "{bad}");
    }
    // Debug never shows the key.
    assert_eq!(format!("{signer:?}"), "JwtSigner::Es256(..)");
}

#[test]
fn uri_excludes_the_query_and_ignores_default_ports() {
    let (signer, key) = es256();
    let mut payload = std_payload();
    // Path only (Coinbase): matches a request with a query.
    let t = token(&std_header(), &payload, &signer);
    check(
        &Req::new(Method::GET, "/v1/account?verbose=1").bearer(&t),
        &key,
    )
    .unwrap();
    // Path and the exact query: also accepted.
    payload["uri"] = json!("GET 127.0.0.1:8443/v1/account?verbose=1");
    let t = token(&std_header(), &payload, &signer);
    check(
        &Req::new(Method::GET, "/v1/account?verbose=1").bearer(&t),
        &key,
    )
    .unwrap();
    // Another query: rejected.
    let detail = malformed_detail(&Req::new(Method::GET, "/v1/account?verbose=2").bearer(&t));
    assert!(detail.contains("uri does not match"), "{detail}");

    // Default port on either side; host case.
    payload["uri"] = json!("GET API.example.com/v1/account");
    let t = token(&std_header(), &payload, &signer);
    let mut req = Req::new(Method::GET, "/v1/account").bearer(&t);
    req.authority = "api.example.com:443".to_owned();
    check(&req, &key).unwrap();
    req.authority = "api.example.com:8443".to_owned();
    assert!(malformed_detail(&req).contains("uri does not match"));
    // Plain http default port.
    req.authority = "api.example.com:80".to_owned();
    req.scheme = "http".to_owned();
    check(&req, &key).unwrap();

    assert_eq!(
        coinbase::format_uri(&Method::DELETE, "api.example.com", "/v1/orders/1?x=1"),
        "DELETE api.example.com/v1/orders/1"
    );
}

/// Changes to the header or payload after signing: the signature no longer
/// verifies (claims still parse).
#[test]
fn tampering_with_each_member_after_signing_fails() {
    let (signer, key) = es256();
    let good = token(&std_header(), &std_payload(), &signer);
    check(&account_req(&good), &key).unwrap();
    let (h, rest) = good.split_once('.').unwrap();
    let (p, sig) = rest.split_once('.').unwrap();

    for (name, value) in [("nbf", json!(NOW_S + 1)), ("exp", json!(NOW_S + 119))] {
        let mut payload = std_payload();
        payload[name] = value;
        let forged = format!("{h}.{}.{sig}", B64URL.encode(payload.to_string()));
        assert_eq!(
            check(&account_req(&forged), &key),
            Err(AuthError::BadSignature),
            "payload {name}"
        );
    }
    // Uri for another request, re-pointed after signing.
    let mut payload = std_payload();
    payload["uri"] = json!("POST 127.0.0.1:8443/v1/withdrawals");
    let forged = format!("{h}.{}.{sig}", B64URL.encode(payload.to_string()));
    let req = Req::new(Method::POST, "/v1/withdrawals").bearer(&forged);
    assert_eq!(check(&req, &key), Err(AuthError::BadSignature));
    // Key id: sub and kid both changed.
    let mut payload = std_payload();
    payload["sub"] = json!("other-key");
    let mut header = std_header();
    header["kid"] = json!("other-key");
    let forged = format!(
        "{}.{}.{sig}",
        B64URL.encode(header.to_string()),
        B64URL.encode(payload.to_string())
    );
    assert_eq!(
        check(&account_req(&forged), &key),
        Err(AuthError::BadSignature)
    );
    // Nonce.
    let mut header = std_header();
    header["nonce"] = json!("ffffffffffffffffffffffffffffffff");
    let forged = format!("{}.{p}.{sig}", B64URL.encode(header.to_string()));
    assert_eq!(
        check(&account_req(&forged), &key),
        Err(AuthError::BadSignature)
    );
    // typ dropped.
    let mut header = std_header();
    header.as_object_mut().unwrap().remove("typ");
    let forged = format!("{}.{p}.{sig}", B64URL.encode(header.to_string()));
    assert_eq!(
        check(&account_req(&forged), &key),
        Err(AuthError::BadSignature)
    );
    // Signature bit flip.
    let mut raw = B64URL.decode(sig).unwrap();
    raw[10] ^= 1;
    let forged = format!("{h}.{p}.{}", B64URL.encode(raw));
    assert_eq!(
        check(&account_req(&forged), &key),
        Err(AuthError::BadSignature)
    );
    // Alg switched to EdDSA: the ECDSA key does not fit.
    let mut header = std_header();
    header["alg"] = json!("EdDSA");
    let forged = format!("{}.{p}.{sig}", B64URL.encode(header.to_string()));
    assert!(matches!(
        check(&account_req(&forged), &key),
        Err(AuthError::AlgorithmMismatch(_))
    ));
    // Another key of the same type.
    let (_, other_key) = es256();
    assert_eq!(
        check(&account_req(&good), &other_key),
        Err(AuthError::BadSignature)
    );
    // Method.
    let req = Req::new(Method::DELETE, "/v1/account").bearer(&good);
    assert!(malformed_detail(&req).contains("uri does not match"));
    // Path.
    let req = Req::new(Method::GET, "/v1/orders").bearer(&good);
    assert!(malformed_detail(&req).contains("uri does not match"));
}

#[test]
fn claim_rules_on_properly_signed_tokens() {
    let (signer, _) = es256();
    let with = |f: &dyn Fn(&mut Value, &mut Value)| {
        let mut header = std_header();
        let mut payload = std_payload();
        f(&mut header, &mut payload);
        account_req(&token(&header, &payload, &signer))
    };
    let malformed: Vec<(Req, &str)> = vec![
        (
            with(&|_, p| p["sub"] = json!("someone-else")),
            "sub must equal the header kid",
        ),
        (
            with(&|_, p| {
                p.as_object_mut().unwrap().remove("sub");
            }),
            "sub claim missing",
        ),
        (with(&|_, p| p["sub"] = json!(1)), "sub must be a string"),
        (
            with(&|_, p| {
                p.as_object_mut().unwrap().remove("uri");
            }),
            "uri claim missing",
        ),
        (
            with(&|_, p| p["uri"] = json!("GET127.0.0.1:8443/v1/account")),
            "uri does not match",
        ),
        (
            with(&|_, p| p["uri"] = json!("GET 127.0.0.1:8443")),
            "uri does not match",
        ),
        (
            with(&|_, p| p["uri"] = json!("get 127.0.0.1:8443/v1/account")),
            "uri does not match",
        ),
        (
            with(&|_, p| {
                p.as_object_mut().unwrap().remove("nbf");
            }),
            "nbf claim missing",
        ),
        (
            with(&|_, p| {
                p.as_object_mut().unwrap().remove("exp");
            }),
            "exp claim missing",
        ),
        (
            with(&|_, p| p["exp"] = json!(1.7e9)),
            "exp must be an integer",
        ),
        (
            with(&|_, p| p["nbf"] = json!("1700000000")),
            "nbf must be an integer",
        ),
        (
            with(&|_, p| p["exp"] = json!(NOW_S - 1)),
            "exp is before nbf",
        ),
        (
            with(&|h, _| {
                h.as_object_mut().unwrap().remove("nonce");
            }),
            "no nonce",
        ),
        (
            with(&|h, _| h["nonce"] = json!(5)),
            "nonce must be a string",
        ),
        (
            with(&|h, _| h["nonce"] = json!("")),
            "nonce must be 1 to 128",
        ),
        (
            with(&|h, _| h["nonce"] = json!("a b")),
            "nonce must be 1 to 128",
        ),
        (
            with(&|h, _| h["nonce"] = json!("x".repeat(129))),
            "nonce must be 1 to 128",
        ),
        (
            with(&|h, _| {
                h.as_object_mut().unwrap().remove("kid");
            }),
            "no kid",
        ),
        (
            with(&|h, _| h["kid"] = json!("")),
            "kid must be a non-empty string",
        ),
        (with(&|h, _| h["typ"] = json!("JOSE")), "typ must be JWT"),
        (with(&|h, _| h["crit"] = json!(["exp"])), "crit"),
        (with(&|h, _| h["alg"] = json!("none")), "alg none"),
        (with(&|h, _| h["alg"] = json!("NONE")), "alg none"),
        (
            with(&|h, _| h["alg"] = json!("HS256")),
            "alg must be ES256 or EdDSA",
        ),
        (
            with(&|h, _| h["alg"] = json!("RS256")),
            "alg must be ES256 or EdDSA",
        ),
        (
            with(&|h, _| h["alg"] = json!("es256")),
            "alg must be ES256 or EdDSA",
        ),
        (
            with(&|h, _| {
                h.as_object_mut().unwrap().remove("alg");
            }),
            "no alg",
        ),
    ];
    for (req, expected) in malformed {
        let detail = malformed_detail(&req);
        assert!(
            detail.contains(expected),
            "expected {expected:?}, got {detail:?}"
        );
    }
    // Lifetime and expiry.
    assert_eq!(
        coinbase::claims(&with(&|_, p| p["exp"] = json!(NOW_S + 121)).view(), NOW_MS),
        Err(AuthError::Window("jwt lifetime (exp - nbf) above 120 s"))
    );
    let old = with(&|_, p| {
        p["nbf"] = json!(NOW_S - 120);
        p["exp"] = json!(NOW_S);
    });
    assert_eq!(
        coinbase::claims(&old.view(), NOW_MS),
        Err(AuthError::Expired("jwt expired (exp is not in the future)"))
    );
    assert!(coinbase::claims(&old.view(), NOW_MS - 1).unwrap().is_some());
    // A token from the future parses: the gateway's window rejects created.
    let future = with(&|_, p| {
        p["nbf"] = json!(NOW_S + 3600);
        p["exp"] = json!(NOW_S + 3700);
    });
    assert_eq!(claims_of(&future).created, Some(NOW_S + 3600));
    // Extreme integers do not overflow.
    let extreme = with(&|_, p| {
        p["nbf"] = json!(i64::MIN);
        p["exp"] = json!(i64::MAX);
    });
    assert!(matches!(
        coinbase::claims(&extreme.view(), NOW_MS),
        Err(AuthError::Window(_))
    ));
    // Not a cdp token: not this profile's.
    assert_eq!(
        coinbase::claims(&with(&|_, p| p["iss"] = json!("rampart")).view(), NOW_MS),
        Ok(None)
    );
    assert_eq!(
        coinbase::claims(
            &with(&|_, p| {
                p.as_object_mut().unwrap().remove("iss");
            })
            .view(),
            NOW_MS
        ),
        Ok(None)
    );
    // Extra members are ignored.
    let extra = with(&|h, p| {
        h["x5u"] = json!("https://evil.example/");
        p["aud"] = json!(["cdp_service"]);
        p["iat"] = json!(NOW_S);
    });
    assert!(claims_of(&extra).nonce.is_some());
}

#[test]
fn strict_token_structure() {
    let (signer, key) = es256();
    let good = token(&std_header(), &std_payload(), &signer);
    let (h, rest) = good.split_once('.').unwrap();
    let (p, sig) = rest.split_once('.').unwrap();
    let cases: Vec<(String, &str)> = vec![
        (format!("{h}.{p}"), "exactly three"),
        (format!("{h}.{p}.{sig}.x"), "exactly three"),
        (format!("{h}=.{p}.{sig}"), "base64url without padding"),
        (format!("{h}.{p}.{sig}="), "base64url without padding"),
        (format!("{h}.{p}+.{sig}"), "base64url without padding"),
        (format!("{h}.{p}."), "signature must be 64 bytes"),
        (
            format!("{h}.{p}.{}", B64URL.encode([0u8; 70])),
            "signature longer than 64 bytes",
        ),
        (
            format!("{h}.{p}.{}", B64URL.encode([0u8; 63])),
            "signature must be 64 bytes",
        ),
        (format!(".{p}.{sig}"), "jwt header is not valid JSON"),
        (
            format!("{}.{p}.{sig}", B64URL.encode("[]")),
            "jwt header is not a JSON object",
        ),
        (
            format!(
                "{}.{p}.{sig}",
                B64URL.encode(r#"{"alg":"ES256","alg":"ES256","kid":"k"}"#)
            ),
            "duplicate key",
        ),
        (
            format!(
                "{h}.{}.{sig}",
                B64URL.encode(r#"{"iss":"cdp","iss":"cdp"}"#)
            ),
            "duplicate key",
        ),
        (
            format!("{h}.{}.{sig}", B64URL.encode(r#"{"iss":"cdp"} {}"#)),
            "not valid JSON",
        ),
        (
            format!(
                "{}.{p}.{sig}",
                B64URL.encode(format!(
                    r#"{{"alg":"ES256","kid":"k","pad":"{}"}}"#,
                    "x".repeat(1024)
                ))
            ),
            "header longer than 1024 bytes",
        ),
        (
            format!(
                "{h}.{}.{sig}",
                B64URL.encode(format!(r#"{{"iss":"cdp","pad":"{}"}}"#, "x".repeat(4096)))
            ),
            "payload longer than 4096 bytes",
        ),
    ];
    for (token, expected) in cases {
        let detail = malformed_detail(&account_req(&token));
        assert!(
            detail.contains(expected),
            "expected {expected:?}, got {detail:?}"
        );
    }
    // Exactly at the limits parses.
    let header = format!(
        r#"{{"alg":"ES256","kid":"k","pad":"{}"}}"#,
        "x".repeat(1024 - 34)
    );
    assert_eq!(header.len(), 1024);
    assert!(jwt::decode(&format!("{}.{p}.{sig}", B64URL.encode(&header))).is_ok());
    // Authorization forms.
    let bearer_lower =
        Req::new(Method::GET, "/v1/account").header("authorization", &format!("bearer {good}"));
    check(&bearer_lower, &key).unwrap();
    let basic = Req::new(Method::GET, "/v1/account").header("authorization", "Basic dXNlcjpwYXNz");
    assert_eq!(coinbase::claims(&basic.view(), NOW_MS), Ok(None));
    let garbage = Req::new(Method::GET, "/v1/account").header("authorization", "Bearer not-a-jwt");
    assert!(malformed_detail(&garbage).contains("exactly three"));
    let twice = account_req(&good).bearer(&good);
    assert!(malformed_detail(&twice).contains("repeated"));
    assert_eq!(
        coinbase::claims(&Req::new(Method::GET, "/").view(), NOW_MS),
        Ok(None)
    );
}

#[test]
fn wrong_key_types_are_algorithm_mismatch() {
    let (signer, _) = es256();
    let es = account_req(&token(&std_header(), &std_payload(), &signer));
    let ed_signer = JwtSigner::generate(Alg::EdDsa).unwrap();
    let mut header = std_header();
    header["alg"] = json!("EdDSA");
    let ed = account_req(&token(&header, &std_payload(), &ed_signer));
    let hmac = KeyMaterial::Hmac(zeroize::Zeroizing::new(b"secret".to_vec()));
    let ed_key = ed_signer.public_key().unwrap();
    let ec_key = signer.public_key().unwrap();
    for (req, key) in [(&es, &ed_key), (&es, &hmac), (&ed, &ec_key), (&ed, &hmac)] {
        let claims = claims_of(req);
        assert!(matches!(
            coinbase::verify(&req.view(), &claims, key),
            Err(AuthError::AlgorithmMismatch(_))
        ));
    }
    assert_eq!(claims_of(&ed).scheme, Scheme::CoinbaseJwtEdDsa);
    check(&ed, &ed_key).unwrap();
    // Claims of another profile.
    let mut claims = claims_of(&es);
    claims.scheme = Scheme::BinanceHmac;
    assert!(matches!(
        coinbase::verify(&es.view(), &claims, &ec_key),
        Err(AuthError::AlgorithmMismatch(_))
    ));
    // Claims of another token.
    let other = account_req(&token(&std_header(), &std_payload(), &signer));
    let mut claims = claims_of(&es);
    claims.nonce = Some("different".to_owned());
    assert!(matches!(
        coinbase::verify(&other.view(), &claims, &ec_key),
        Err(AuthError::Malformed(_))
    ));
}

#[test]
fn der_encoded_es256_signature_is_rejected() {
    // Some libraries emit ASN.1 DER ECDSA signatures (70-72 bytes); JWS
    // requires raw r || s.
    let pair =
        EcdsaKeyPair::generate(&aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
    let input = format!(
        "{}.{}",
        B64URL.encode(std_header().to_string()),
        B64URL.encode(std_payload().to_string())
    );
    let sig = pair
        .sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes())
        .unwrap();
    assert_ne!(sig.as_ref().len(), 64);
    let detail = malformed_detail(&account_req(&format!(
        "{input}.{}",
        B64URL.encode(sig.as_ref())
    )));
    assert!(detail.contains("signature"), "{detail}");
}

/// Throwaway test keys generated with `openssl ecparam -name prime256v1
/// -genkey -noout` (SEC1, the shape Coinbase hands out) and `openssl
/// genpkey -algorithm ed25519` (PKCS#8).
const OPENSSL_EC_PEM: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIJTP8nfhqqFuRV08oFjd3Td4e8WAYXKYdWRD1ND5tjK8oAoGCCqGSM49
AwEHoUQDQgAEIIV3LA8DuGwA5DzoRV+5ZITxwdBk2+bXnUMlq6RarydqQuk+K9ti
xuxpiiHlSb3p0FUqv/xLXM3aG8vjnMCQSA==
-----END EC PRIVATE KEY-----
";
const OPENSSL_ED25519_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIAFxsd4jytzCheWRJbizo0mCU12n62cxzAM75Wu/64I3
-----END PRIVATE KEY-----
";

#[test]
fn openssl_generated_pem_keys_sign() {
    let ec = JwtSigner::from_pem(OPENSSL_EC_PEM).unwrap();
    assert_eq!(ec.alg(), Alg::Es256);
    let KeyMaterial::EcdsaP256(public) = ec.public_key().unwrap() else {
        panic!("not P-256");
    };
    assert_eq!(public.len(), 65);
    assert_eq!(&public[..4], &[0x04, 0x20, 0x85, 0x77]);
    let ed = JwtSigner::from_pem(OPENSSL_ED25519_PEM).unwrap();
    assert_eq!(ed.alg(), Alg::EdDsa);
    for signer in [ec, ed] {
        let key = signer.public_key().unwrap();
        let headers = coinbase::sign(
            &signer,
            KEY_NAME,
            &Method::GET,
            "127.0.0.1:8443",
            "/v1/account",
            NOW_S,
        )
        .unwrap();
        check(
            &Req::new(Method::GET, "/v1/account").header("authorization", &headers[0].1),
            &key,
        )
        .unwrap();
    }
}
