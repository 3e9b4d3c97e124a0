//! Every scheme: what `rampart_client::sign` produces verifies with
//! rampart-auth's verifier and the key's independently generated
//! material, and a changed body, path, query or method is rejected (where
//! the scheme covers it).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::disallowed_methods,
    reason = "test code"
)]

mod common;

use common::{credentials_json, key_set, KeySet, NOW_MS};
use http::{HeaderMap, HeaderValue, Method};
use rampart_auth::{AuthError, Claims, Scheme};
use rampart_client::{sign, ClientKey, Credentials, SignedParts, MFA_HEADER};

const AUTHORITY: &str = "127.0.0.1:8443";
const ORDER: &[u8] =
    br#"{"symbol":"BTC-USD","side":"buy","type":"limit","qty":"0.5","price":"65000.00","client_order_id":"abc-123","time_in_force":"gtc"}"#;

fn setup() -> (KeySet, Credentials) {
    let keys = key_set();
    let json = credentials_json(&keys, "https://127.0.0.1:8443", "/nonexistent/ca.pem");
    let creds = Credentials::from_json(json.to_string().as_bytes()).unwrap();
    (keys, creds)
}

/// A signed request as it would go on the wire.
struct Wire {
    method: Method,
    path_and_query: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

fn signed(
    key: &ClientKey,
    method: Method,
    path_and_query: &str,
    body: &[u8],
    mut headers: HeaderMap,
) -> Wire {
    if !body.is_empty() && !headers.contains_key("content-type") {
        headers.insert("content-type", HeaderValue::from_static("application/json"));
    }
    let nonce = rampart_client::random_nonce().unwrap();
    let SignedParts {
        path_and_query,
        body,
    } = sign(
        key,
        &method,
        AUTHORITY,
        path_and_query,
        &mut headers,
        body,
        NOW_MS,
        &nonce,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", key.name()));
    Wire {
        method,
        path_and_query,
        headers,
        body,
    }
}

impl Wire {
    fn verify(&self, keys: &KeySet) -> Result<Option<Claims>, AuthError> {
        keys.verifier.verify(
            &self.method,
            AUTHORITY,
            &self.path_and_query,
            &self.headers,
            &self.body,
            NOW_MS,
        )
    }
}

fn covers_method(scheme: Scheme) -> bool {
    !matches!(
        scheme,
        Scheme::BinanceHmac | Scheme::BinanceEd25519 | Scheme::KrakenHmac
    )
}

/// Binance's payload is the query string and body only (the venue's
/// design): the path is not signed.
fn covers_path(scheme: Scheme) -> bool {
    !matches!(scheme, Scheme::BinanceHmac | Scheme::BinanceEd25519)
}

fn covers_query_and_body(scheme: Scheme) -> bool {
    !matches!(scheme, Scheme::CoinbaseJwtEs256 | Scheme::CoinbaseJwtEdDsa)
}

#[test]
fn every_scheme_signs_what_the_verifier_accepts() {
    let (keys, creds) = setup();
    assert_eq!(creds.keys.len(), common::KINDS.len());
    for key in &creds.keys {
        for (method, target, body) in [
            (Method::GET, "/v1/orders?symbol=BTC-USD&limit=5", &b""[..]),
            (Method::GET, "/v1/account", &b""[..]),
            (Method::POST, "/v1/orders", ORDER),
            (Method::DELETE, "/v1/orders/ord-42", &b""[..]),
        ] {
            let wire = signed(key, method.clone(), target, body, HeaderMap::new());
            let claims = wire
                .verify(&keys)
                .unwrap_or_else(|e| panic!("{} {method} {target}: {e}", key.name()))
                .unwrap_or_else(|| panic!("{}: no credentials detected", key.name()));
            assert_eq!(claims.key_id, key.key_id(), "{}", key.name());
            assert_eq!(claims.scheme, key.scheme(), "{}", key.name());
        }
    }
}

#[test]
fn a_changed_body_path_query_or_method_is_rejected() {
    let (keys, creds) = setup();
    for key in &creds.keys {
        let scheme = key.scheme();
        let name = key.name();

        // Path.
        if covers_path(scheme) {
            let mut wire = signed(key, Method::POST, "/v1/orders", ORDER, HeaderMap::new());
            wire.path_and_query = wire
                .path_and_query
                .replacen("/v1/orders", "/v1/withdrawals", 1);
            assert!(wire.verify(&keys).is_err(), "{name}: changed path accepted");
        }

        // Body.
        if covers_query_and_body(scheme) {
            let mut wire = signed(key, Method::POST, "/v1/orders", ORDER, HeaderMap::new());
            let text = String::from_utf8(wire.body.clone()).unwrap();
            wire.body = text.replace("\"0.5\"", "\"50\"").into_bytes();
            assert_ne!(text.as_bytes(), wire.body.as_slice());
            let err = wire
                .verify(&keys)
                .expect_err(&format!("{name}: changed body accepted"));
            if matches!(
                scheme,
                Scheme::Rfc9421HmacSha256 | Scheme::Rfc9421Ed25519 | Scheme::Rfc9421EcdsaP256
            ) {
                assert!(matches!(err, AuthError::Digest(_)), "{name}: {err:?}");
            }

            // Query.
            let mut wire = signed(
                key,
                Method::GET,
                "/v1/orders?symbol=BTC-USD",
                b"",
                HeaderMap::new(),
            );
            wire.path_and_query = wire.path_and_query.replacen("BTC-USD", "ETH-USD", 1);
            assert!(
                wire.verify(&keys).is_err(),
                "{name}: changed query accepted"
            );
        }

        // Method.
        if covers_method(scheme) {
            let mut wire = signed(key, Method::DELETE, "/v1/orders/x", b"", HeaderMap::new());
            wire.method = Method::GET;
            assert!(
                wire.verify(&keys).is_err(),
                "{name}: changed method accepted"
            );
        }
    }
}

#[test]
fn binance_style_signatures_do_not_cover_the_path_or_method() {
    // Pinned so that a change in the profile is noticed: Binance signs
    // `totalParams` (query ‖ body) only. The gateway's replay cache (the
    // signature is the nonce) keeps a captured request from being reused
    // on another route.
    let (keys, creds) = setup();
    let key = creds.key("binance-style").unwrap();
    let mut wire = signed(key, Method::POST, "/v1/orders", ORDER, HeaderMap::new());
    wire.path_and_query = wire.path_and_query.replacen("/v1/orders", "/v1/other", 1);
    wire.method = Method::PUT;
    assert!(wire.verify(&keys).unwrap().is_some());
}

#[test]
fn a_signature_does_not_verify_with_another_key() {
    let (mut keys, creds) = setup();
    // The gateway holds another secret under this key id.
    let hmac = creds.key("trader-hmac").unwrap();
    let wire = signed(hmac, Method::GET, "/v1/account", b"", HeaderMap::new());
    let other = keys
        .verifier
        .keys
        .remove(creds.key("kraken-style").unwrap().key_id())
        .unwrap();
    keys.verifier.keys.insert(
        hmac.key_id().to_owned(),
        (Scheme::Rfc9421HmacSha256, other.1),
    );
    assert_eq!(wire.verify(&keys).unwrap_err(), AuthError::BadSignature);
}

#[test]
fn rfc9421_covers_rampart_mfa_and_uses_the_given_nonce_and_time() {
    let (keys, creds) = setup();
    for name in ["trader-hmac", "trader-ed25519", "trader-ecdsa"] {
        let key = creds.key(name).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(MFA_HEADER, HeaderValue::from_static("totp=123456"));
        let mut h = headers.clone();
        let parts = sign(
            key,
            &Method::POST,
            AUTHORITY,
            "/v1/withdrawals",
            &mut h,
            br#"{"asset":"BTC"}"#,
            NOW_MS,
            "fixed-nonce-1",
        )
        .unwrap();
        assert_eq!(parts.path_and_query, "/v1/withdrawals");
        assert_eq!(parts.body, br#"{"asset":"BTC"}"#);
        assert!(h.contains_key("content-digest"));
        let input = h["signature-input"].to_str().unwrap();
        assert!(input.contains("\"rampart-mfa\""), "{input}");
        assert!(input.contains("\"content-digest\""), "{input}");
        let wire = Wire {
            method: Method::POST,
            path_and_query: parts.path_and_query,
            headers: h,
            body: parts.body,
        };
        let claims = wire.verify(&keys).unwrap().unwrap();
        assert!(claims.covers_mfa);
        assert_eq!(claims.created, Some(NOW_MS / 1000));
        assert_eq!(claims.nonce.as_deref(), Some("fixed-nonce-1"));

        // The proof cannot be swapped or dropped.
        let mut swapped = Wire {
            headers: wire.headers.clone(),
            body: wire.body.clone(),
            path_and_query: wire.path_and_query.clone(),
            method: Method::POST,
        };
        swapped
            .headers
            .insert(MFA_HEADER, HeaderValue::from_static("totp=654321"));
        assert_eq!(swapped.verify(&keys).unwrap_err(), AuthError::BadSignature);
        swapped.headers.remove(MFA_HEADER);
        assert!(swapped.verify(&keys).is_err());

        // Without the header it is not covered.
        let wire = signed(key, Method::GET, "/v1/account", b"", HeaderMap::new());
        assert!(!wire.verify(&keys).unwrap().unwrap().covers_mfa);
        assert!(!wire.headers.contains_key("content-digest"));
    }
}

#[test]
fn binance_puts_timestamp_and_signature_last_in_the_query_or_form() {
    let (keys, creds) = setup();
    for name in ["binance-style", "binance-ed25519"] {
        let key = creds.key(name).unwrap();

        let wire = signed(
            key,
            Method::GET,
            "/v1/orders?symbol=BTC-USD",
            b"",
            HeaderMap::new(),
        );
        assert!(
            wire.path_and_query.starts_with(&format!(
                "/v1/orders?symbol=BTC-USD&timestamp={NOW_MS}&signature="
            )),
            "{}",
            wire.path_and_query
        );
        assert_eq!(wire.headers["x-mbx-apikey"], key.key_id());
        let claims = wire.verify(&keys).unwrap().unwrap();
        assert_eq!(claims.created, Some(NOW_MS));

        // JSON body: signed raw, signature in the query, body unchanged.
        let wire = signed(key, Method::POST, "/v1/orders", ORDER, HeaderMap::new());
        assert!(wire.path_and_query.contains("&signature="));
        assert_eq!(wire.body, ORDER);
        wire.verify(&keys).unwrap().unwrap();

        // Form body: the signature goes last in the body.
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let wire = signed(
            key,
            Method::POST,
            "/v1/orders",
            b"symbol=BTC-USD&qty=1",
            headers,
        );
        assert_eq!(wire.path_and_query, "/v1/orders");
        let body = String::from_utf8(wire.body.clone()).unwrap();
        assert!(
            body.starts_with(&format!(
                "symbol=BTC-USD&qty=1&timestamp={NOW_MS}&signature="
            )),
            "{body}"
        );
        wire.verify(&keys).unwrap().unwrap();
        let mut tampered = wire;
        tampered.body = body.replace("qty=1", "qty=9").into_bytes();
        assert!(tampered.verify(&keys).is_err());
    }
}

#[test]
fn kraken_counter_nonce_goes_into_json_form_or_query_and_increases() {
    let (keys, creds) = setup();
    let key = creds.key("kraken-style").unwrap();

    let a = signed(
        key,
        Method::GET,
        "/v1/orders?symbol=BTC-USD",
        b"",
        HeaderMap::new(),
    );
    let b = signed(
        key,
        Method::GET,
        "/v1/orders?symbol=BTC-USD",
        b"",
        HeaderMap::new(),
    );
    assert!(a.path_and_query.starts_with("/v1/orders?nonce="));
    assert!(a.path_and_query.ends_with("&symbol=BTC-USD"));
    let na = a.verify(&keys).unwrap().unwrap().counter_nonce.unwrap();
    let nb = b.verify(&keys).unwrap().unwrap().counter_nonce.unwrap();
    assert!(na >= u64::try_from(NOW_MS).unwrap());
    assert!(nb > na, "same millisecond, still strictly increasing");

    let wire = signed(key, Method::POST, "/v1/orders", ORDER, HeaderMap::new());
    let body = String::from_utf8(wire.body.clone()).unwrap();
    assert!(body.starts_with("{\"nonce\":"), "{body}");
    assert!(body.ends_with(&String::from_utf8_lossy(&ORDER[1..]).into_owned()));
    let nc = wire.verify(&keys).unwrap().unwrap().counter_nonce.unwrap();
    assert!(nc > nb);
    assert_eq!(wire.headers["api-key"], key.key_id());

    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    let wire = signed(key, Method::POST, "/v1/orders", b"pair=XBTUSD", headers);
    let body = String::from_utf8(wire.body.clone()).unwrap();
    assert!(
        body.starts_with("nonce=") && body.ends_with("&pair=XBTUSD"),
        "{body}"
    );
    wire.verify(&keys).unwrap().unwrap();

    // A body next to a query string would leave the query unsigned.
    let mut h = HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    let err = sign(
        key,
        &Method::POST,
        AUTHORITY,
        "/v1/orders?x=1",
        &mut h,
        ORDER,
        NOW_MS,
        "n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("query string"), "{err}");
    // A JSON body must be an object without its own nonce.
    for bad in [&b"[1,2]"[..], br#"{"nonce":1}"#, b"not json"] {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        assert!(sign(
            key,
            &Method::POST,
            AUTHORITY,
            "/v1/orders",
            &mut h,
            bad,
            NOW_MS,
            "n"
        )
        .is_err());
    }
}

#[test]
fn coinbase_tokens_are_bearer_jwts_with_fresh_nonces() {
    let (keys, creds) = setup();
    for name in ["coinbase-style", "coinbase-eddsa"] {
        let key = creds.key(name).unwrap();
        let a = signed(
            key,
            Method::GET,
            "/v1/orders?symbol=BTC-USD",
            b"",
            HeaderMap::new(),
        );
        let b = signed(
            key,
            Method::GET,
            "/v1/orders?symbol=BTC-USD",
            b"",
            HeaderMap::new(),
        );
        assert_eq!(a.path_and_query, "/v1/orders?symbol=BTC-USD");
        let auth = a.headers["authorization"].to_str().unwrap();
        assert!(auth.starts_with("Bearer "));
        let ca = a.verify(&keys).unwrap().unwrap();
        let cb = b.verify(&keys).unwrap().unwrap();
        assert_ne!(ca.nonce, cb.nonce);
        assert_eq!(ca.created, Some(NOW_MS / 1000));
        assert_eq!(ca.expires, Some(NOW_MS / 1000 + 120));

        // Another authority is another request.
        let wrong = keys.verifier.verify(
            &a.method,
            "api.example.com",
            &a.path_and_query,
            &a.headers,
            &a.body,
            NOW_MS,
        );
        assert!(wrong.is_err());
    }
}

#[test]
fn unsigned_requests_carry_no_credentials() {
    let (keys, _) = setup();
    let headers = HeaderMap::new();
    let found = keys
        .verifier
        .verify(
            &Method::GET,
            AUTHORITY,
            "/v1/markets",
            &headers,
            b"",
            NOW_MS,
        )
        .unwrap();
    assert!(found.is_none());
}

#[test]
fn sign_rejects_targets_that_are_not_origin_form() {
    let (_, creds) = setup();
    let key = creds.key("trader-hmac").unwrap();
    for target in ["v1/orders", "https://x/v1", "/v1#frag"] {
        let mut h = HeaderMap::new();
        assert!(
            sign(
                key,
                &Method::GET,
                AUTHORITY,
                target,
                &mut h,
                b"",
                NOW_MS,
                "n"
            )
            .is_err(),
            "{target}"
        );
    }
    // RFC 9421 nonce rules come from rampart-auth.
    let mut h = HeaderMap::new();
    let err = sign(key, &Method::GET, AUTHORITY, "/v1", &mut h, b"", NOW_MS, "").unwrap_err();
    assert!(matches!(err, rampart_client::ClientError::Sign(_)), "{err}");
}
