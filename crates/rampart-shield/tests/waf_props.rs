#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]
//! Properties of the inspector over arbitrary input: it never panics, it
//! answers the same way twice, and the normaliser's output stays bounded.

use proptest::prelude::*;
use rampart_shield::waf::corpus;
use rampart_shield::waf::detect;
use rampart_shield::waf::normalize;
use rampart_shield::waf::{Inspector, Request, RouteSchema};

/// Bytes biased towards the characters the parsers and detectors care
/// about.
fn hostile_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    let interesting = prop_oneof![
        Just(b'%'),
        Just(b'\''),
        Just(b'"'),
        Just(b'<'),
        Just(b'>'),
        Just(b';'),
        Just(b'|'),
        Just(b'&'),
        Just(b'$'),
        Just(b'('),
        Just(b')'),
        Just(b'{'),
        Just(b'}'),
        Just(b'['),
        Just(b']'),
        Just(b'\\'),
        Just(b'/'),
        Just(b'.'),
        Just(b'-'),
        Just(b'#'),
        Just(b'`'),
        Just(b'\r'),
        Just(b'\n'),
        Just(0u8),
        Just(0xc0u8),
        Just(0xafu8),
        b'0'..=b'9',
        b'a'..=b'z',
        any::<u8>(),
    ];
    proptest::collection::vec(interesting, 0..max)
}

fn schemas() -> Vec<(&'static str, RouteSchema)> {
    corpus::demo_schemas().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn inspect_never_panics(
        body in hostile_bytes(512),
        query in hostile_bytes(128),
        param in hostile_bytes(64),
        header in hostile_bytes(128),
        pick in 0usize..10,
    ) {
        let schemas = schemas();
        let inspector = Inspector::default();
        let query = String::from_utf8_lossy(&query).into_owned();
        let param = String::from_utf8_lossy(&param).into_owned();
        let params = [("symbol", param.as_str())];
        let headers: [(&str, &[u8]); 3] = [
            ("user-agent", &header),
            ("cookie", &header),
            ("content-length", b"12"),
        ];
        let schema = schemas.get(pick).map(|(_, s)| s);
        for content_type in [Some("application/json"), None, Some("application/x-www-form-urlencoded"), Some("text/plain")] {
            let req = Request {
                method: "POST",
                path: &query,
                params: &params,
                query: Some(&query),
                headers: &headers,
                content_type,
                body: &body,
            };
            let first = inspector.inspect(schema, &req);
            let second = inspector.inspect(schema, &req);
            prop_assert_eq!(first, second);
        }
    }

    #[test]
    fn json_bodies_never_panic(doc in "[\\[\\]{}\":,0-9a-z\\\\ ]{0,200}") {
        let inspector = Inspector::default();
        let schemas = schemas();
        for (_, s) in &schemas {
            let req = Request {
                method: "POST",
                path: "/v1/orders",
                params: &[],
                query: None,
                headers: &[],
                content_type: Some("application/json"),
                body: doc.as_bytes(),
            };
            let _ = inspector.inspect(Some(s), &req);
            let _ = inspector.inspect(None, &req);
        }
    }

    #[test]
    fn normaliser_is_bounded(bytes in hostile_bytes(1024)) {
        let s = String::from_utf8_lossy(&bytes);
        let n = normalize::normalize(&s, 4);
        // NFKC can expand a character at most 18-fold; decoding only shrinks.
        prop_assert!(n.len() <= s.len() * 18 + 4);
        let _ = normalize::html_decode(&n);
        let _ = detect::scan(&s, 4);
        let _ = detect::detectors(&n);
    }
}
