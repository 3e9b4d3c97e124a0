//! RFC 9421 sign → claims → verify round trips for every algorithm,
//! tampering, Rampart's requirements and the parser's strictness.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use http::{HeaderMap, HeaderValue, Method};
use rampart_auth::digest::{self, DigestAlg};
use rampart_auth::rfc9421::{self, SignatureHeaders, SigningKey};
use rampart_auth::{AuthError, KeyMaterial, RequestView, Scheme, TimeUnit};
use zeroize::Zeroizing;

const CREATED: i64 = 1_700_000_000;
const NONCE: &str = "n-4f2a9c";
const KEY_ID: &str = "key-123";
const BODY: &[u8] =
    br#"{"symbol":"BTC-USD","side":"buy","type":"limit","qty":"0.5","price":"65000.00"}"#;

#[derive(Clone)]
struct Req {
    method: Method,
    path_and_query: String,
    authority: String,
    scheme: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Req {
    fn new(method: Method, path_and_query: &str, body: &[u8]) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert("rampart-mfa", HeaderValue::from_static("totp=123456"));
        if !body.is_empty() {
            headers.insert(
                "content-digest",
                HeaderValue::from_str(&digest::content_digest(DigestAlg::Sha256, body)).unwrap(),
            );
        }
        Req {
            method,
            path_and_query: path_and_query.to_owned(),
            authority: "api.example.com".to_owned(),
            scheme: "https".to_owned(),
            headers,
            body: body.to_vec(),
        }
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

    fn set(&mut self, name: &'static str, value: &str) {
        self.headers
            .insert(name, HeaderValue::from_str(value).unwrap());
    }

    fn signature_input(&self) -> String {
        self.headers["signature-input"].to_str().unwrap().to_owned()
    }
}

fn signing_key(scheme: Scheme) -> SigningKey {
    match scheme {
        Scheme::Rfc9421HmacSha256 => {
            SigningKey::Hmac(Zeroizing::new(b"0123456789abcdef0123456789abcdef".to_vec()))
        }
        Scheme::Rfc9421Ed25519 => SigningKey::Ed25519(Ed25519KeyPair::generate().unwrap()),
        Scheme::Rfc9421EcdsaP256 => {
            SigningKey::EcdsaP256(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap())
        }
        other => panic!("not an RFC 9421 scheme: {other:?}"),
    }
}

const SCHEMES: [Scheme; 3] = [
    Scheme::Rfc9421HmacSha256,
    Scheme::Rfc9421Ed25519,
    Scheme::Rfc9421EcdsaP256,
];

/// A signed request and the verifier's key for it.
fn signed(scheme: Scheme, mut req: Req, extra: &[&str]) -> (Req, KeyMaterial) {
    let key = signing_key(scheme);
    let headers = rfc9421::sign(&req.view(), KEY_ID, scheme, &key, CREATED, NONCE, extra).unwrap();
    headers.insert_into(&mut req.headers).unwrap();
    (req, key.verifying_key().unwrap())
}

fn order(scheme: Scheme) -> (Req, KeyMaterial) {
    signed(
        scheme,
        Req::new(Method::POST, "/v1/orders?symbol=BTC-USD&x=1", BODY),
        &["rampart-mfa"],
    )
}

/// What the gateway does: parse (requirements), then verify.
fn check(req: &Req, scheme: Scheme, key: &KeyMaterial) -> Result<(), AuthError> {
    let view = req.view();
    let parsed = rfc9421::parse(&view)?.ok_or(AuthError::Missing("no signature"))?;
    parsed.verify(&view, scheme, key)
}

fn malformed_detail(r: Result<(), AuthError>) -> String {
    match r {
        Err(AuthError::Malformed(d)) => d,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

// ---------------------------------------------------------------- round trips

#[test]
fn round_trip_every_algorithm_with_body() {
    for scheme in SCHEMES {
        let (req, key) = order(scheme);
        let claims = rfc9421::claims(&req.view()).unwrap().unwrap();
        assert_eq!(claims.scheme, scheme);
        assert_eq!(claims.key_id, KEY_ID);
        assert_eq!(claims.created, Some(CREATED));
        assert_eq!(claims.created_unit, TimeUnit::Seconds);
        assert_eq!(claims.nonce.as_deref(), Some(NONCE));
        assert_eq!(claims.expires, None);
        assert_eq!(claims.window_ms, None);
        assert_eq!(claims.counter_nonce, None);
        assert_eq!(
            claims.credential_headers,
            vec!["signature-input", "signature"]
        );
        assert!(claims.covers_mfa);
        check(&req, scheme, &key).unwrap_or_else(|e| panic!("{scheme:?}: {e}"));
    }
}

#[test]
fn round_trip_every_algorithm_without_body() {
    for scheme in SCHEMES {
        for pq in [
            "/v1/orders?symbol=BTC-USD",
            "/v1/orders",
            "/v1/orders?",
            "/",
        ] {
            let (req, key) = signed(scheme, Req::new(Method::GET, pq, b""), &[]);
            let parsed = rfc9421::parse(&req.view()).unwrap().unwrap();
            assert!(!parsed.covers("content-digest"));
            assert!(!parsed.claims().covers_mfa);
            check(&req, scheme, &key).unwrap_or_else(|e| panic!("{scheme:?} {pq}: {e}"));
        }
    }
}

#[test]
fn signed_headers_look_right() {
    let (req, _) = order(Scheme::Rfc9421HmacSha256);
    assert_eq!(
        req.signature_input(),
        format!(
            "sig1=(\"@method\" \"@authority\" \"@path\" \"@query\" \"content-digest\" \"rampart-mfa\");created={CREATED};nonce=\"{NONCE}\";keyid=\"{KEY_ID}\";alg=\"hmac-sha256\""
        )
    );
    let sig = req.headers["signature"].to_str().unwrap();
    assert!(sig.starts_with("sig1=:") && sig.ends_with(':'), "{sig}");
    let parsed = rfc9421::parse(&req.view()).unwrap().unwrap();
    assert_eq!(
        parsed.components().collect::<Vec<_>>(),
        [
            "@method",
            "@authority",
            "@path",
            "@query",
            "content-digest",
            "rampart-mfa"
        ]
    );
    assert_eq!(
        parsed.signature_params(),
        &req.signature_input()["sig1=".len()..]
    );
    let base = parsed.signature_base(&req.view()).unwrap();
    let expected_digest = digest::content_digest(DigestAlg::Sha256, BODY);
    assert_eq!(
        base,
        format!(
            "\"@method\": POST\n\"@authority\": api.example.com\n\"@path\": /v1/orders\n\"@query\": ?symbol=BTC-USD&x=1\n\"content-digest\": {expected_digest}\n\"rampart-mfa\": totp=123456\n\"@signature-params\": {}",
            parsed.signature_params()
        )
    );
}

#[test]
fn empty_query_is_a_lone_question_mark() {
    let (req, _) = signed(
        Scheme::Rfc9421HmacSha256,
        Req::new(Method::GET, "/v1/orders", b""),
        &[],
    );
    let parsed = rfc9421::parse(&req.view()).unwrap().unwrap();
    let base = parsed.signature_base(&req.view()).unwrap();
    assert!(base.contains("\n\"@query\": ?\n"), "{base}");
    assert!(base.contains("\n\"@path\": /v1/orders\n"), "{base}");
}

#[test]
fn no_signature_input_is_not_this_scheme() {
    let req = Req::new(Method::GET, "/v1/orders", b"");
    assert_eq!(rfc9421::claims(&req.view()), Ok(None));
    assert!(rfc9421::parse_unchecked(&req.view()).unwrap().is_none());
    let mut only_sig = req.clone();
    only_sig.set("signature", "sig1=:AAAA:");
    assert_eq!(rfc9421::claims(&only_sig.view()), Ok(None));
}

#[test]
fn alg_absent_uses_placeholder_and_key_decides() {
    for scheme in SCHEMES {
        let key = signing_key(scheme);
        let mut req = Req::new(Method::GET, "/v1/account", b"");
        let params = format!(
            "(\"@method\" \"@authority\" \"@path\" \"@query\");created={CREATED};nonce=\"{NONCE}\";keyid=\"{KEY_ID}\""
        );
        sign_by_hand(&mut req, &params, scheme, &key);
        let parsed = rfc9421::parse(&req.view()).unwrap().unwrap();
        assert_eq!(parsed.alg(), None);
        assert_eq!(parsed.claims().scheme, Scheme::Rfc9421HmacSha256);
        let vk = key.verifying_key().unwrap();
        parsed.verify(&req.view(), scheme, &vk).unwrap();
    }
}

/// Sets `Signature-Input: sig1=<params>` and a valid `Signature` over the
/// base the parser builds for it (so hand-written component lists can be
/// tested end to end).
fn sign_by_hand(req: &mut Req, params: &str, scheme: Scheme, key: &SigningKey) {
    req.set("signature-input", &format!("sig1={params}"));
    req.set("signature", "sig1=:AAAA:");
    let parsed = rfc9421::parse_unchecked(&req.view()).unwrap().unwrap();
    let base = parsed.signature_base(&req.view()).unwrap();
    let sig = rfc9421::sign_raw(base.as_bytes(), scheme, key).unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(sig);
    req.set("signature", &format!("sig1=:{b64}:"));
}

#[test]
fn target_uri_form_and_other_derived_components() {
    let key = signing_key(Scheme::Rfc9421Ed25519);
    let vk = key.verifying_key().unwrap();
    let mut req = Req::new(Method::POST, "/v1/orders?a=1", BODY);
    req.set("x-multi", "one");
    req.headers
        .append("x-multi", HeaderValue::from_static("  two\t"));
    let params = format!(
        "(\"@target-uri\" \"@method\" \"@scheme\" \"@request-target\" \"content-digest\" \"x-multi\");created={CREATED};expires={};nonce=\"{NONCE}\";keyid=\"{KEY_ID}\";tag=\"app\"",
        CREATED + 60
    );
    sign_by_hand(&mut req, &params, Scheme::Rfc9421Ed25519, &key);
    let parsed = rfc9421::parse(&req.view()).unwrap().unwrap();
    assert_eq!(parsed.expires(), Some(CREATED + 60));
    assert_eq!(parsed.claims().expires, Some(CREATED + 60));
    let base = parsed.signature_base(&req.view()).unwrap();
    assert!(base.starts_with(
        "\"@target-uri\": https://api.example.com/v1/orders?a=1\n\"@method\": POST\n\"@scheme\": https\n\"@request-target\": /v1/orders?a=1\n"
    ), "{base}");
    assert!(base.contains("\n\"x-multi\": one, two\n"), "{base}");
    parsed
        .verify(&req.view(), Scheme::Rfc9421Ed25519, &vk)
        .unwrap();

    // The path is covered through @target-uri.
    let mut other = req.clone();
    other.path_and_query = "/v1/orders?a=2".to_owned();
    assert_eq!(
        check(&other, Scheme::Rfc9421Ed25519, &vk),
        Err(AuthError::BadSignature)
    );
}

#[test]
fn authority_is_normalized() {
    let (mut req, key) = signed(
        Scheme::Rfc9421HmacSha256,
        Req::new(Method::GET, "/v1/orders", b""),
        &[],
    );
    // The default port and case do not change @authority.
    req.authority = "API.example.com:443".to_owned();
    check(&req, Scheme::Rfc9421HmacSha256, &key).unwrap();
    // Another port does.
    req.authority = "api.example.com:8443".to_owned();
    assert_eq!(
        check(&req, Scheme::Rfc9421HmacSha256, &key),
        Err(AuthError::BadSignature)
    );
    // :443 is not the default for http.
    req.authority = "api.example.com:443".to_owned();
    req.scheme = "http".to_owned();
    assert_eq!(
        check(&req, Scheme::Rfc9421HmacSha256, &key),
        Err(AuthError::BadSignature)
    );
}

// ---------------------------------------------------------------- tampering

#[test]
fn tampering_is_rejected_for_every_algorithm() {
    for scheme in SCHEMES {
        let (req, key) = order(scheme);
        check(&req, scheme, &key).unwrap();
        let bad = |mutate: &dyn Fn(&mut Req)| {
            let mut r = req.clone();
            mutate(&mut r);
            check(&r, scheme, &key)
        };
        let si = req.signature_input();
        let with_si = |from: &str, to: &str| {
            assert!(si.contains(from), "{si} lacks {from}");
            let si = si.replace(from, to);
            move |r: &mut Req| r.set("signature-input", &si)
        };

        assert_eq!(
            bad(&|r| r.method = Method::PUT),
            Err(AuthError::BadSignature),
            "{scheme:?} method"
        );
        assert_eq!(
            bad(&|r| r.path_and_query = "/v1/order?symbol=BTC-USD&x=1".into()),
            Err(AuthError::BadSignature),
            "{scheme:?} path"
        );
        assert_eq!(
            bad(&|r| r.path_and_query = "/v1/orders?symbol=ETH-USD&x=1".into()),
            Err(AuthError::BadSignature),
            "{scheme:?} query"
        );
        assert_eq!(
            bad(&|r| r.path_and_query = "/v1/orders".into()),
            Err(AuthError::BadSignature),
            "{scheme:?} query removed"
        );
        assert_eq!(
            bad(&|r| r.authority = "evil.example.com".into()),
            Err(AuthError::BadSignature),
            "{scheme:?} authority"
        );
        assert_eq!(
            bad(&|r| r.body[2] ^= 1),
            Err(AuthError::Digest("Content-Digest does not match the body")),
            "{scheme:?} body"
        );
        assert_eq!(
            bad(&|r| r.set(
                "content-digest",
                &digest::content_digest(DigestAlg::Sha256, b"x")
            )),
            Err(AuthError::BadSignature),
            "{scheme:?} content-digest"
        );
        assert_eq!(
            bad(&|r| {
                r.headers.remove("content-digest");
            }),
            Err(AuthError::Digest(
                "missing Content-Digest for a request body"
            )),
            "{scheme:?} content-digest removed"
        );
        assert_eq!(
            bad(&|r| r.set("rampart-mfa", "totp=123457")),
            Err(AuthError::BadSignature),
            "{scheme:?} rampart-mfa"
        );
        assert_eq!(
            bad(&|r| {
                r.headers
                    .append("rampart-mfa", HeaderValue::from_static("token=x"));
            }),
            Err(AuthError::BadSignature),
            "{scheme:?} second rampart-mfa line"
        );
        assert_eq!(
            malformed_detail(bad(&|r| {
                r.headers.remove("rampart-mfa");
            })),
            "covered header `rampart-mfa` is absent"
        );
        // Not covered: may change.
        assert_eq!(
            bad(&|r| r.set("content-type", "text/plain")),
            Ok(()),
            "{scheme:?} uncovered"
        );

        let created = format!("created={CREATED}");
        assert_eq!(
            bad(&with_si(&created, &format!("created={}", CREATED + 1))),
            Err(AuthError::BadSignature),
            "{scheme:?} created"
        );
        assert_eq!(
            bad(&with_si(NONCE, "n-4f2a9d")),
            Err(AuthError::BadSignature),
            "{scheme:?} nonce"
        );
        assert_eq!(
            bad(&with_si(KEY_ID, "key-124")),
            Err(AuthError::BadSignature),
            "{scheme:?} keyid"
        );
        let alg = format!(";alg=\"{}\"", scheme.as_str());
        assert_eq!(
            bad(&with_si(&alg, "")),
            Err(AuthError::BadSignature),
            "{scheme:?} alg removed"
        );
        let other = if scheme == Scheme::Rfc9421Ed25519 {
            "hmac-sha256"
        } else {
            "ed25519"
        };
        assert!(
            matches!(
                bad(&with_si(&alg, &format!(";alg=\"{other}\""))),
                Err(AuthError::AlgorithmMismatch(_))
            ),
            "{scheme:?} alg changed"
        );
        assert_eq!(
            bad(&with_si(" \"rampart-mfa\"", "")),
            Err(AuthError::BadSignature),
            "{scheme:?} component dropped"
        );
        assert_eq!(
            bad(&with_si(
                "\"@authority\" \"@path\"",
                "\"@path\" \"@authority\""
            )),
            Err(AuthError::BadSignature),
            "{scheme:?} components reordered"
        );
        assert_eq!(
            bad(&with_si(";keyid", ";expires=1800000000;keyid")),
            Err(AuthError::BadSignature),
            "{scheme:?} expires added"
        );
        assert_eq!(
            bad(&|r| {
                let sig = r.headers["signature"].to_str().unwrap().to_owned();
                let i = "sig1=:".len() + 3;
                let c = if &sig[i..=i] == "A" { "B" } else { "A" };
                r.set("signature", &format!("{}{c}{}", &sig[..i], &sig[i + 1..]));
            }),
            Err(AuthError::BadSignature),
            "{scheme:?} signature byte"
        );
    }
}

#[test]
fn wrong_key_or_scheme_is_an_algorithm_mismatch() {
    let (req, key) = order(Scheme::Rfc9421Ed25519);
    let view = req.view();
    let parsed = rfc9421::parse(&view).unwrap().unwrap();
    let hmac = KeyMaterial::Hmac(Zeroizing::new(vec![1; 32]));
    for (scheme, key) in [
        (Scheme::Rfc9421Ed25519, &hmac),
        (Scheme::Rfc9421HmacSha256, &key),
        (Scheme::BinanceEd25519, &key),
        (Scheme::Rfc9421EcdsaP256, &key),
    ] {
        assert!(
            matches!(
                parsed.verify(&view, scheme, key),
                Err(AuthError::AlgorithmMismatch(_))
            ),
            "{scheme:?}"
        );
    }
    // Right scheme, another key of the right type.
    let other = signing_key(Scheme::Rfc9421Ed25519).verifying_key().unwrap();
    assert_eq!(
        parsed.verify(&view, Scheme::Rfc9421Ed25519, &other),
        Err(AuthError::BadSignature)
    );
}

// ---------------------------------------------------------------- requirements

/// A request whose headers carry `Signature-Input: sig1=<params>` and a
/// dummy signature: requirement checks come before any crypto.
fn with_params(params: &str, body: &[u8]) -> Req {
    let mut req = Req::new(Method::POST, "/v1/orders?x=1", body);
    req.set("signature-input", &format!("sig1={params}"));
    req.set("signature", "sig1=:AAAA:");
    req
}

fn parse_err(req: &Req) -> String {
    match rfc9421::parse(&req.view()) {
        Err(AuthError::Malformed(d)) => d,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

const ALL: &str = "(\"@method\" \"@authority\" \"@path\" \"@query\" \"content-digest\")";

#[test]
fn missing_parameters_are_named() {
    let req = with_params(&format!("{ALL};nonce=\"n\";keyid=\"k\""), BODY);
    assert_eq!(parse_err(&req), "missing signature parameter `created`");
    let req = with_params(&format!("{ALL};created=1;keyid=\"k\""), BODY);
    assert_eq!(parse_err(&req), "missing signature parameter `nonce`");
    let req = with_params(&format!("{ALL};created=1;nonce=\"n\""), BODY);
    assert_eq!(parse_err(&req), "missing signature parameter `keyid`");
    let req = with_params(&format!("{ALL};created=1;nonce=\"n\";keyid=\"k\""), BODY);
    assert!(rfc9421::parse(&req.view()).unwrap().is_some());
}

#[test]
fn missing_components_are_named() {
    let p = ";created=1;nonce=\"n\";keyid=\"k\"";
    let req = with_params(
        &format!("(\"@authority\" \"@path\" \"@query\" \"content-digest\"){p}"),
        BODY,
    );
    assert_eq!(parse_err(&req), "signature does not cover `@method`");

    let req = with_params(
        &format!("(\"@method\" \"@authority\" \"@path\" \"content-digest\"){p}"),
        BODY,
    );
    let d = parse_err(&req);
    assert!(d.contains("`@query`") && !d.contains("nor `@path`"), "{d}");

    let req = with_params(&format!("(\"@method\" \"content-digest\"){p}"), BODY);
    let d = parse_err(&req);
    assert!(d.contains("`@authority` + `@path` + `@query`"), "{d}");

    let req = with_params(
        &format!("(\"@method\" \"@authority\" \"@path\" \"@query\"){p}"),
        BODY,
    );
    let d = parse_err(&req);
    assert!(d.contains("`content-digest`"), "{d}");

    // No body: content-digest is not required; @target-uri suffices.
    let req = with_params(&format!("(\"@method\" \"@target-uri\"){p}"), b"");
    assert!(rfc9421::parse(&req.view()).unwrap().is_some());
    // ... but @query is required even when the query is empty.
    let mut req = with_params(&format!("(\"@method\" \"@authority\" \"@path\"){p}"), b"");
    req.path_and_query = "/v1/orders".to_owned();
    assert!(parse_err(&req).contains("`@query`"));
}

#[test]
fn verify_rechecks_requirements_against_its_request() {
    // Signed without a body, then a body appears: content-digest is now
    // required, and `verify` says so even if the parse happened before.
    let (req, key) = signed(
        Scheme::Rfc9421HmacSha256,
        Req::new(Method::POST, "/v1/orders", b""),
        &[],
    );
    let parsed = rfc9421::parse(&req.view()).unwrap().unwrap();
    let mut with_body = req.clone();
    with_body.body = BODY.to_vec();
    let d = malformed_detail(parsed.verify(&with_body.view(), Scheme::Rfc9421HmacSha256, &key));
    assert!(d.contains("content-digest"), "{d}");
}

// ---------------------------------------------------------------- strictness

#[test]
fn strict_parsing() {
    let p = ";created=1;nonce=\"n\";keyid=\"k\"";
    let base = "\"@method\" \"@authority\" \"@path\" \"@query\"";
    let cases: Vec<(String, &str)> = vec![
        (
            format!("({base} \"content-digest\";sf){p}"),
            "component parameters are not supported",
        ),
        (
            format!("({base} \"content-digest\";bs){p}"),
            "component parameters are not supported",
        ),
        (
            format!("({base} \"@query-param\";name=\"x\"){p}"),
            "unsupported derived component `@query-param`",
        ),
        (
            format!("({base} \"@status\"){p}"),
            "unsupported derived component `@status`",
        ),
        (
            format!("({base} \"@method\"){p}"),
            "covered component `@method` is duplicated",
        ),
        (
            format!("({base} \"Content-Type\"){p}"),
            "covered component `Content-Type` must be lowercase",
        ),
        (
            format!("({base} \"a b\"){p}"),
            "covered component is not a header field name",
        ),
        (format!("({base} \"\"){p}"), "empty covered component name"),
        (
            format!("({base} date){p}"),
            "covered component is not a string",
        ),
        (
            format!("({base}){p};foo=1"),
            "unsupported signature parameter `foo`",
        ),
        (
            format!("({base}){p};alg=\"rsa-pss-sha512\""),
            "signature parameter `alg` is not",
        ),
        (
            format!("({base}){p};alg=hmac-sha256"),
            "signature parameter `alg` must be a string",
        ),
        (
            format!("({base});created=-1;nonce=\"n\";keyid=\"k\""),
            "`created` must be a non-negative integer",
        ),
        (
            format!("({base});created=1.5;nonce=\"n\";keyid=\"k\""),
            "`created` must be a non-negative integer",
        ),
        (
            format!("({base});created=1;nonce=\"a b\";keyid=\"k\""),
            "`nonce` must be 1 to 128",
        ),
        (
            format!("({base});created=1;nonce=\"\";keyid=\"k\""),
            "`nonce` must be 1 to 128",
        ),
        (
            format!(
                "({base});created=1;nonce=\"{}\";keyid=\"k\"",
                "n".repeat(129)
            ),
            "`nonce` must be 1 to 128",
        ),
        (
            format!("({base});created=1;nonce=n;keyid=\"k\""),
            "`nonce` must be a string",
        ),
        (
            format!("({base});created=1;nonce=\"n\";keyid=\"\""),
            "`keyid` must be 1 to 256",
        ),
        (
            format!("({base});created=1;created=2;nonce=\"n\";keyid=\"k\""),
            "duplicate parameter",
        ),
        (format!("({base}"), "Signature-Input:"),
        ("\"@method\"".to_owned(), "not an inner list"),
    ];
    for (params, want) in cases {
        let req = with_params(&params, b"");
        let d = parse_err(&req);
        assert!(d.contains(want), "{params}: got `{d}`, want `{want}`");
    }
    // 128 nonce characters are fine.
    let req = with_params(
        &format!(
            "({base});created=1;nonce=\"{}\";keyid=\"k\"",
            "n".repeat(128)
        ),
        b"",
    );
    assert!(rfc9421::parse(&req.view()).is_ok());
}

#[test]
fn exactly_one_signature() {
    let (req, _) = order(Scheme::Rfc9421HmacSha256);
    let si = req.signature_input();
    let sig = req.headers["signature"].to_str().unwrap().to_owned();

    let mut two = req.clone();
    two.set(
        "signature-input",
        &format!("{si}, {}", si.replacen("sig1", "sig2", 1)),
    );
    assert!(parse_err(&two).contains("more than one signature"));

    let mut two_lines = req.clone();
    two_lines.headers.append(
        "signature-input",
        HeaderValue::from_str(&si.replacen("sig1", "sig2", 1)).unwrap(),
    );
    assert!(parse_err(&two_lines).contains("more than one signature"));

    let mut two_sigs = req.clone();
    two_sigs.set(
        "signature",
        &format!("{sig}, {}", sig.replacen("sig1", "sig2", 1)),
    );
    assert!(parse_err(&two_sigs).contains("more than one signature"));

    let mut label = req.clone();
    label.set("signature", &sig.replacen("sig1", "sig2", 1));
    assert_eq!(parse_err(&label), "Signature has no entry for label `sig1`");

    let mut missing = req.clone();
    missing.headers.remove("signature");
    assert_eq!(parse_err(&missing), "missing Signature header");

    let mut not_bytes = req.clone();
    not_bytes.set("signature", "sig1=\"abc\"");
    assert!(parse_err(&not_bytes).contains("not a byte sequence"));

    let mut params = req.clone();
    params.set("signature", &format!("{sig};x=1"));
    assert!(parse_err(&params).contains("has parameters"));

    let mut dup = req.clone();
    dup.set("signature-input", &format!("{si}, {si}"));
    assert!(parse_err(&dup).contains("duplicate"));

    let mut empty = req.clone();
    empty.set("signature-input", "");
    assert_eq!(parse_err(&empty), "Signature-Input is empty");
}

#[test]
fn header_limits() {
    let (req, _) = order(Scheme::Rfc9421HmacSha256);
    let mut long = req.clone();
    long.set(
        "signature-input",
        &format!("{};tag=\"{}\"", req.signature_input(), "t".repeat(8 * 1024)),
    );
    assert!(parse_err(&long).contains("longer than 8 KiB"));

    let names: Vec<String> = (0..65).map(|i| format!("\"h{i}\"")).collect();
    let many = with_params(
        &format!("({});created=1;nonce=\"n\";keyid=\"k\"", names.join(" ")),
        b"",
    );
    assert!(parse_err(&many).contains("too many inner list items"));

    let mut non_ascii = req.clone();
    non_ascii.headers.insert(
        "signature-input",
        HeaderValue::from_bytes(b"sig1=(\"\xff\")").unwrap(),
    );
    assert!(parse_err(&non_ascii).contains("not visible ASCII"));
}

#[test]
fn covered_header_values_must_be_ascii() {
    let (mut req, key) = order(Scheme::Rfc9421HmacSha256);
    req.headers.insert(
        "rampart-mfa",
        HeaderValue::from_bytes(b"totp=\xe9").unwrap(),
    );
    let d = malformed_detail(check(&req, Scheme::Rfc9421HmacSha256, &key));
    assert_eq!(d, "covered header `rampart-mfa` is not visible ASCII");
}

// ---------------------------------------------------------------- signing

#[test]
fn sign_rejects_bad_input() {
    let key = signing_key(Scheme::Rfc9421HmacSha256);
    let req = Req::new(Method::GET, "/v1/orders", b"");
    let view = req.view();
    let sign = |key_id: &str, scheme, nonce: &str, created, extra: &[&str]| {
        rfc9421::sign(&view, key_id, scheme, &key, created, nonce, extra)
    };
    assert!(matches!(
        sign("k", Scheme::Rfc9421Ed25519, "n", 1, &[]),
        Err(AuthError::AlgorithmMismatch(_))
    ));
    assert!(matches!(
        sign("k", Scheme::BinanceHmac, "n", 1, &[]),
        Err(AuthError::AlgorithmMismatch(_))
    ));
    assert!(matches!(
        sign("", Scheme::Rfc9421HmacSha256, "n", 1, &[]),
        Err(AuthError::Malformed(_))
    ));
    assert!(matches!(
        sign("k", Scheme::Rfc9421HmacSha256, "a b", 1, &[]),
        Err(AuthError::Malformed(_))
    ));
    assert!(matches!(
        sign("k", Scheme::Rfc9421HmacSha256, "n", -1, &[]),
        Err(AuthError::Malformed(_))
    ));
    assert!(matches!(
        sign("k", Scheme::Rfc9421HmacSha256, "n", 1, &["Rampart-MFA"]),
        Err(AuthError::Malformed(_))
    ));
    assert!(matches!(
        sign("k", Scheme::Rfc9421HmacSha256, "n", 1, &["@target-uri"]),
        Err(AuthError::Malformed(_))
    ));
    assert_eq!(
        sign("k", Scheme::Rfc9421HmacSha256, "n", 1, &["x-absent"]),
        Err(AuthError::Malformed(
            "covered header `x-absent` is absent".into()
        ))
    );
    // Repeats are dropped.
    let h = sign(
        "k",
        Scheme::Rfc9421HmacSha256,
        "n",
        1,
        &["rampart-mfa", "rampart-mfa"],
    )
    .unwrap();
    assert_eq!(h.signature_input.matches("rampart-mfa").count(), 1);

    let mut body = Req::new(Method::POST, "/v1/orders", BODY);
    body.headers.remove("content-digest");
    assert_eq!(
        rfc9421::sign(
            &body.view(),
            "k",
            Scheme::Rfc9421HmacSha256,
            &key,
            1,
            "n",
            &[]
        ),
        Err(AuthError::Digest(
            "missing Content-Digest for a request body"
        ))
    );
}

#[test]
fn sign_escapes_strings_and_round_trips() {
    let scheme = Scheme::Rfc9421HmacSha256;
    let key = signing_key(scheme);
    let mut req = Req::new(Method::GET, "/v1/orders", b"");
    let nonce = "a\"b\\c";
    let key_id = "key \"quoted\"";
    let h = rfc9421::sign(&req.view(), key_id, scheme, &key, CREATED, nonce, &[]).unwrap();
    assert!(
        h.signature_input.contains(r#"nonce="a\"b\\c""#),
        "{}",
        h.signature_input
    );
    h.insert_into(&mut req.headers).unwrap();
    let claims = rfc9421::claims(&req.view()).unwrap().unwrap();
    assert_eq!(claims.nonce.as_deref(), Some(nonce));
    assert_eq!(claims.key_id, key_id);
    check(&req, scheme, &key.verifying_key().unwrap()).unwrap();
}

#[test]
fn ecdsa_needs_fixed_signatures() {
    let asn1 =
        SigningKey::EcdsaP256(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap());
    assert!(matches!(
        rfc9421::sign_raw(b"x", Scheme::Rfc9421EcdsaP256, &asn1),
        Err(AuthError::AlgorithmMismatch(_))
    ));
    let fixed = signing_key(Scheme::Rfc9421EcdsaP256);
    assert_eq!(
        rfc9421::sign_raw(b"x", Scheme::Rfc9421EcdsaP256, &fixed)
            .unwrap()
            .len(),
        64
    );
}

#[test]
fn debug_output_hides_secrets_and_signatures() {
    let (req, _) = order(Scheme::Rfc9421HmacSha256);
    let key = signing_key(Scheme::Rfc9421HmacSha256);
    assert_eq!(format!("{key:?}"), "SigningKey::Hmac(**REDACTED**)");
    let parsed = rfc9421::parse(&req.view()).unwrap().unwrap();
    let dbg = format!("{parsed:?}");
    let sig = req.headers["signature"].to_str().unwrap();
    let b64 = &sig["sig1=:".len()..sig.len() - 1];
    assert!(!dbg.contains(b64), "{dbg}");
    assert!(dbg.contains("signature_len: 32"), "{dbg}");
    let h = SignatureHeaders {
        signature_input: "sig1=()".into(),
        signature: "sig1=:AA==:".into(),
    };
    let mut headers = HeaderMap::new();
    h.insert_into(&mut headers).unwrap();
    assert_eq!(headers["signature"], "sig1=:AA==:");
}
