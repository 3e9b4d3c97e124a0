//! RFC 9421 Appendix B examples (B.2.5 hmac-sha256, B.2.6 ed25519) from
//! `shared/vectors/rfc9421.json`, checked through the same code path the
//! gateway uses (`parse_unchecked` → `signature_base` → `verify_signature`),
//! plus the RFC 9530 `Content-Digest` of the example request.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::path::PathBuf;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use rampart_auth::rfc9421::{self, SigningKey};
use rampart_auth::{digest, AuthError, KeyMaterial, RequestView, Scheme};
use serde_json::Value;
use zeroize::Zeroizing;

fn vectors() -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors/rfc9421.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the RFC 9421 vectors at {} ({e}): the shared/ directory must sit beside the repository checkout",
            path.display()
        )
    });
    serde_json::from_str(&text).expect("rfc9421.json is JSON")
}

struct Request {
    method: Method,
    path_and_query: String,
    authority: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Request {
    /// Parses the vector's raw HTTP/1.1 request text.
    fn from_raw(raw: &str) -> Self {
        let (head, body) = raw.split_once("\r\n\r\n").expect("head and body");
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap().split(' ');
        let method = Method::from_bytes(request_line.next().unwrap().as_bytes()).unwrap();
        let path_and_query = request_line.next().unwrap().to_owned();
        let mut headers = HeaderMap::new();
        for line in lines {
            let (name, value) = line.split_once(':').unwrap();
            headers.append(
                HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes()).unwrap(),
                HeaderValue::from_str(value.trim()).unwrap(),
            );
        }
        let authority = headers["host"].to_str().unwrap().to_ascii_lowercase();
        Request {
            method,
            path_and_query,
            authority,
            headers,
            body: body.as_bytes().to_vec(),
        }
    }

    fn with_signature(&self, input: &str, signature: &str) -> Self {
        let mut headers = self.headers.clone();
        headers.insert("signature-input", HeaderValue::from_str(input).unwrap());
        headers.insert("signature", HeaderValue::from_str(signature).unwrap());
        Request {
            method: self.method.clone(),
            path_and_query: self.path_and_query.clone(),
            authority: self.authority.clone(),
            headers,
            body: self.body.clone(),
        }
    }

    fn view(&self) -> RequestView<'_> {
        RequestView {
            method: &self.method,
            path_and_query: &self.path_and_query,
            authority: &self.authority,
            scheme: "https",
            headers: &self.headers,
            body: &self.body,
        }
    }
}

fn case<'v>(v: &'v Value, name: &str) -> &'v Value {
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("case {name} in rfc9421.json"))
}

fn pem_body(pem: &str) -> Vec<u8> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(b64).unwrap()
}

fn hmac_secret(v: &Value) -> Zeroizing<Vec<u8>> {
    let b64 = v["keys"]["test-shared-secret"]["secret_b64"]
        .as_str()
        .unwrap();
    Zeroizing::new(STANDARD.decode(b64).unwrap())
}

fn ed25519_public(v: &Value) -> [u8; 32] {
    let spki = pem_body(
        v["keys"]["test-key-ed25519"]["public_spki_pem"]
            .as_str()
            .unwrap(),
    );
    // SubjectPublicKeyInfo for Ed25519: a 12-byte prefix, then the key.
    assert_eq!(spki.len(), 44);
    spki[12..].try_into().unwrap()
}

fn ed25519_pair(v: &Value) -> Ed25519KeyPair {
    let pkcs8 = pem_body(
        v["keys"]["test-key-ed25519"]["private_pkcs8_pem"]
            .as_str()
            .unwrap(),
    );
    Ed25519KeyPair::from_pkcs8(&pkcs8).unwrap()
}

/// The case's signature bytes (`label=:b64:`).
fn signature_bytes(c: &Value) -> Vec<u8> {
    let sig = c["signature"].as_str().unwrap();
    let b64 = sig.split_once("=:").unwrap().1.strip_suffix(':').unwrap();
    STANDARD.decode(b64).unwrap()
}

fn check_case(name: &str, scheme: Scheme, key: &KeyMaterial, signing: &SigningKey) {
    let v = vectors();
    let c = case(&v, name);
    let base_req = Request::from_raw(v["request"].as_str().unwrap());
    let req = base_req.with_signature(
        c["signature_input"].as_str().unwrap(),
        c["signature"].as_str().unwrap(),
    );
    let view = req.view();

    let parsed = rfc9421::parse_unchecked(&view)
        .unwrap()
        .expect("a signature");
    let base = parsed.signature_base(&view).unwrap();
    assert_eq!(
        base,
        c["signature_base"].as_str().unwrap(),
        "{name}: signature base"
    );
    assert_eq!(parsed.created(), Some(1_618_884_473));
    parsed.verify_signature(&view, scheme, key).unwrap();
    rfc9421::verify_raw(base.as_bytes(), &signature_bytes(c), scheme, key).unwrap();

    // Both algorithms are deterministic: signing the base reproduces it.
    assert_eq!(
        rfc9421::sign_raw(base.as_bytes(), scheme, signing).unwrap(),
        signature_bytes(c),
        "{name}: signing reproduces the RFC's signature"
    );

    // The RFC's examples lack `nonce` and Rampart's required components,
    // which `parse` (the gateway's entry point) enforces.
    match rfc9421::parse(&view) {
        Err(AuthError::Malformed(detail)) => assert!(detail.contains("nonce"), "{detail}"),
        other => panic!("{name}: expected Malformed, got {other:?}"),
    }

    // A one-byte change in a covered header breaks it.
    let mut tampered = req.with_signature(
        c["signature_input"].as_str().unwrap(),
        c["signature"].as_str().unwrap(),
    );
    tampered
        .headers
        .insert("content-type", HeaderValue::from_static("application/jsoN"));
    let view = tampered.view();
    let parsed = rfc9421::parse_unchecked(&view).unwrap().unwrap();
    assert_eq!(
        parsed.verify_signature(&view, scheme, key),
        Err(AuthError::BadSignature)
    );
}

#[test]
fn b25_hmac_sha256() {
    let v = vectors();
    check_case(
        "B.2.5 hmac-sha256",
        Scheme::Rfc9421HmacSha256,
        &KeyMaterial::Hmac(hmac_secret(&v)),
        &SigningKey::Hmac(hmac_secret(&v)),
    );
}

#[test]
fn b26_ed25519() {
    let v = vectors();
    let pair = ed25519_pair(&v);
    assert_eq!(pair.public_key().as_ref(), ed25519_public(&v));
    check_case(
        "B.2.6 ed25519",
        Scheme::Rfc9421Ed25519,
        &KeyMaterial::Ed25519(ed25519_public(&v)),
        &SigningKey::Ed25519(pair),
    );
}

#[test]
fn vector_keys_are_not_interchangeable() {
    let v = vectors();
    let c = case(&v, "B.2.6 ed25519");
    let req = Request::from_raw(v["request"].as_str().unwrap()).with_signature(
        c["signature_input"].as_str().unwrap(),
        c["signature"].as_str().unwrap(),
    );
    let view = req.view();
    let parsed = rfc9421::parse_unchecked(&view).unwrap().unwrap();
    assert_eq!(
        parsed.verify_signature(
            &view,
            Scheme::Rfc9421HmacSha256,
            &KeyMaterial::Hmac(hmac_secret(&v))
        ),
        Err(AuthError::BadSignature)
    );
    assert!(matches!(
        parsed.verify_signature(
            &view,
            Scheme::Rfc9421Ed25519,
            &KeyMaterial::Hmac(hmac_secret(&v))
        ),
        Err(AuthError::AlgorithmMismatch(_))
    ));
}

#[test]
fn vector_request_content_digest() {
    let v = vectors();
    let req = Request::from_raw(v["request"].as_str().unwrap());
    assert_eq!(req.body, br#"{"hello": "world"}"#);
    digest::verify_content_digest(&req.headers, &req.body).unwrap();
    assert_eq!(
        req.headers["content-digest"].to_str().unwrap(),
        digest::content_digest(digest::DigestAlg::Sha512, &req.body)
    );
    assert_eq!(
        digest::verify_content_digest(&req.headers, b"{\"hello\": \"world!\"}"),
        Err(AuthError::Digest("Content-Digest does not match the body"))
    );
}
