//! Property tests: any one-byte change to a signed request's covered parts
//! or its signature headers is rejected, and the parsers never panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::sync::OnceLock;

use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use http::{HeaderMap, HeaderValue, Method};
use proptest::prelude::*;
use rampart_auth::digest::{self, DigestAlg};
use rampart_auth::rfc9421::{self, SigningKey};
use rampart_auth::{AuthError, KeyMaterial, RequestView, Scheme};
use zeroize::Zeroizing;

#[derive(Clone)]
struct Req {
    method: Method,
    path_and_query: String,
    authority: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Req {
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

struct Keys {
    signing: Vec<(Scheme, SigningKey)>,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        signing: vec![
            (
                Scheme::Rfc9421HmacSha256,
                SigningKey::Hmac(Zeroizing::new(b"proptest-secret-0123456789abcdef".to_vec())),
            ),
            (
                Scheme::Rfc9421Ed25519,
                SigningKey::Ed25519(Ed25519KeyPair::generate().unwrap()),
            ),
            (
                Scheme::Rfc9421EcdsaP256,
                SigningKey::EcdsaP256(
                    EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap(),
                ),
            ),
        ],
    })
}

fn signed(alg: usize, body: &[u8]) -> (Req, Scheme, KeyMaterial) {
    let (scheme, key) = &keys().signing[alg % 3];
    let mut headers = HeaderMap::new();
    headers.insert("rampart-mfa", HeaderValue::from_static("totp=123456"));
    headers.insert(
        "content-digest",
        HeaderValue::from_str(&digest::content_digest(DigestAlg::Sha512, body)).unwrap(),
    );
    let mut req = Req {
        method: Method::POST,
        path_and_query: "/v1/withdrawals?asset=BTC".to_owned(),
        authority: "api.example.com".to_owned(),
        headers,
        body: body.to_vec(),
    };
    let h = rfc9421::sign(
        &req.view(),
        "key-1",
        *scheme,
        key,
        1_700_000_000,
        "nonce-xyz",
        &["rampart-mfa"],
    )
    .unwrap();
    h.insert_into(&mut req.headers).unwrap();
    (req, *scheme, key.verifying_key().unwrap())
}

fn check(req: &Req, scheme: Scheme, key: &KeyMaterial) -> Result<(), AuthError> {
    let view = req.view();
    let parsed = rfc9421::parse(&view)?.ok_or(AuthError::Missing("no signature"))?;
    parsed.verify(&view, scheme, key)
}

/// `bytes` with the byte at `pos % len` XORed with `x` (non-zero).
fn flip(bytes: &[u8], pos: usize, x: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let i = pos % out.len();
    out[i] ^= x;
    out
}

fn flip_header(req: &mut Req, name: &'static str, pos: usize, x: u8) -> bool {
    let old = req.headers[name].as_bytes().to_vec();
    match HeaderValue::from_bytes(&flip(&old, pos, x)) {
        Ok(v) => {
            req.headers.insert(name, v);
            true
        }
        Err(_) => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_single_byte_change_is_rejected(
        alg in 0usize..3,
        part in 0usize..8,
        pos in any::<usize>(),
        x in 1u8..=255,
        body in proptest::collection::vec(any::<u8>(), 1..64),
    ) {
        let (req, scheme, key) = signed(alg, &body);
        prop_assert_eq!(check(&req, scheme, &key), Ok(()));
        let mut bad = req.clone();
        let applied = match part {
            0 => match Method::from_bytes(&flip(req.method.as_str().as_bytes(), pos, x)) {
                Ok(m) => { bad.method = m; true }
                Err(_) => false,
            },
            1 => match String::from_utf8(flip(req.path_and_query.as_bytes(), pos, x)) {
                Ok(s) => { bad.path_and_query = s; true }
                Err(_) => false,
            },
            2 => match String::from_utf8(flip(req.authority.as_bytes(), pos, x)) {
                // The gateway hands over a lowercase authority: a change
                // of case only is normalized away by design.
                Ok(s) if s.to_ascii_lowercase() != req.authority => { bad.authority = s; true }
                _ => false,
            },
            3 => { bad.body = flip(&req.body, pos, x); true }
            4 => flip_header(&mut bad, "content-digest", pos, x),
            5 => flip_header(&mut bad, "rampart-mfa", pos, x),
            6 => flip_header(&mut bad, "signature-input", pos, x),
            _ => flip_header(&mut bad, "signature", pos, x),
        };
        prop_assume!(applied);
        let result = check(&bad, scheme, &key);
        prop_assert!(result.is_err(), "part {} accepted after a change", part);
        if part == 3 {
            prop_assert_eq!(result, Err(AuthError::Digest("Content-Digest does not match the body")));
        }
    }

    #[test]
    fn parse_never_panics_on_arbitrary_strings(input in ".{0,300}", sig in ".{0,120}") {
        parse_all(input.as_bytes(), sig.as_bytes());
    }

    #[test]
    fn parse_never_panics_on_arbitrary_bytes(
        input in proptest::collection::vec(any::<u8>(), 0..300),
        sig in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        parse_all(&input, &sig);
    }

    #[test]
    fn parse_never_panics_on_structured_looking_input(
        (input, sig) in signature_headers(),
    ) {
        parse_all(input.as_bytes(), sig.as_bytes());
    }

    #[test]
    fn content_digest_never_panics(
        input in r#"([a-z0-9\-]{0,8}=?(:[A-Za-z0-9+/=]{0,90}:?|[ -~]{0,10})[;, ]{0,2}){0,4}"#,
        raw in ".{0,200}",
        body in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        for value in [&input, &raw] {
            let _ = digest::parse_content_digest(value);
            if let Ok(v) = HeaderValue::from_str(value) {
                let mut headers = HeaderMap::new();
                headers.insert("content-digest", v);
                let _ = digest::verify_content_digest(&headers, &body);
            }
        }
    }
}

/// `Signature-Input` / `Signature` pairs built from the grammar's pieces,
/// valid and not, so that generated input gets past the tokenizer.
fn signature_headers() -> impl Strategy<Value = (String, String)> {
    let label = prop_oneof![
        12 => Just("sig1".to_owned()),
        1 => Just("sig2".to_owned()),
        1 => "[a-z*][a-z0-9_.*-]{0,3}",
        1 => "[ -~]{0,3}",
    ];
    let component = prop_oneof![
        4 => Just(r#""@method""#.to_owned()),
        4 => Just(r#""@authority""#.to_owned()),
        4 => Just(r#""@path""#.to_owned()),
        4 => Just(r#""@query""#.to_owned()),
        2 => Just(r#""@target-uri""#.to_owned()),
        1 => Just(r#""@scheme""#.to_owned()),
        1 => Just(r#""@request-target""#.to_owned()),
        4 => Just(r#""content-digest""#.to_owned()),
        2 => Just(r#""rampart-mfa""#.to_owned()),
        1 => Just(r#""x-absent""#.to_owned()),
        1 => Just(r#""@status""#.to_owned()),
        1 => Just(r#""@query-param";name="a""#.to_owned()),
        1 => Just(r#""content-digest";sf"#.to_owned()),
        1 => Just(r#""Date""#.to_owned()),
        1 => Just(r#""a\"b""#.to_owned()),
        1 => Just(r#""""#.to_owned()),
        1 => "[a-z]{1,4}",
        1 => "-?[0-9]{1,17}",
        1 => r#""[ -~]{0,8}""#,
    ];
    let sep = prop_oneof![12 => Just(" "), 1 => Just("  "), 1 => Just(""), 1 => Just(",")];
    let components =
        (proptest::collection::vec(component, 0..10), sep).prop_map(|(c, sep)| c.join(sep));
    let often = |s: BoxedStrategy<String>| proptest::option::weighted(0.85, s);
    let params = (
        often(
            (-2i64..2_000_000_000)
                .prop_map(|n| format!(";created={n}"))
                .boxed(),
        ),
        proptest::option::weighted(
            0.2,
            (-2i64..2_000_000_000).prop_map(|n| format!(";expires={n}")),
        ),
        often(
            "[!-~]{0,130}"
                .prop_map(|n| format!(";nonce=\"{}\"", n.replace(['"', '\\'], "")))
                .boxed(),
        ),
        often(
            "[ -~]{0,10}"
                .prop_map(|n| format!(";keyid=\"{}\"", n.replace(['"', '\\'], "")))
                .boxed(),
        ),
        proptest::option::weighted(
            0.5,
            prop_oneof![
                Just("hmac-sha256"),
                Just("ed25519"),
                Just("ecdsa-p256-sha256"),
                Just("rsa-v1_5-sha256"),
            ]
            .prop_map(|a| format!(";alg=\"{a}\"")),
        ),
        proptest::option::weighted(
            0.3,
            prop_oneof![
                Just(";tag=\"t\"".to_owned()),
                Just(";created=1.5".to_owned()),
                Just(";nonce=tok".to_owned()),
                Just(";x".to_owned()),
                Just("; keyid=\"k\"".to_owned()),
                "[ -~]{0,4}",
            ],
        ),
    )
        .prop_map(|(a, b, c, d, e, f)| {
            [a, b, c, d, e, f].into_iter().flatten().collect::<String>()
        });
    let open = prop_oneof![12 => Just("("), 1 => Just(""), 1 => Just("( ")];
    let close = prop_oneof![12 => Just(")"), 1 => Just(""), 1 => Just(" )")];
    let trailer = prop_oneof![
        12 => Just(String::new()),
        1 => Just(", sig2=()".to_owned()),
        1 => Just(",".to_owned()),
        1 => "[ -~]{0,4}",
    ];
    let input = (label.clone(), open, components, close, params, trailer).prop_map(
        |(label, open, components, close, params, trailer)| {
            format!("{label}={open}{components}{close}{params}{trailer}")
        },
    );
    let sig = (
        label,
        proptest::collection::vec(any::<u8>(), 0..80),
        prop_oneof![12 => Just(""), 1 => Just(";p=1"), 1 => Just(", x=:AA==:"), 1 => Just("=")],
    )
        .prop_map(|(label, bytes, tail)| {
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
            format!("{label}=:{b64}:{tail}")
        });
    (input, sig)
}

/// Runs every entry point on the given header values; only a panic fails.
fn parse_all(input: &[u8], sig: &[u8]) {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(input) {
        headers.insert("signature-input", v);
    }
    if let Ok(v) = HeaderValue::from_bytes(sig) {
        headers.insert("signature", v);
    }
    headers.insert("content-digest", HeaderValue::from_static("sha-256=:AAAA:"));
    let req = Req {
        method: Method::GET,
        path_and_query: "/x?y".to_owned(),
        authority: "h".to_owned(),
        headers,
        body: b"b".to_vec(),
    };
    let view = req.view();
    let _ = rfc9421::claims(&view);
    let _ = rfc9421::parse(&view);
    if let Ok(Some(p)) = rfc9421::parse_unchecked(&view) {
        let _ = p.claims();
        let _ = p.signature_base(&view);
        let _ = p.verify_signature(
            &view,
            Scheme::Rfc9421HmacSha256,
            &KeyMaterial::Hmac(Zeroizing::new(vec![0; 32])),
        );
    }
}
