#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]
//! `Inspector::inspect` through its public API: the positive model's
//! pointers, limits (deep nesting, huge strings, many fields, duplicate
//! keys), query and params handling, smuggling header sets, header scanning
//! and the negative model with and without a schema.

use std::time::{Duration, Instant};

use rampart_shield::waf::corpus;
use rampart_shield::waf::{Inspector, Limits, Mode, Request, RouteSchema, Violation};

type Headers<'a> = &'a [(&'a str, &'a [u8])];

fn schema(action: &str) -> RouteSchema {
    let route = corpus::DEMO_ROUTES
        .iter()
        .find(|r| r.action == action)
        .unwrap();
    RouteSchema::from_json_str(route.schema).unwrap()
}

const ORDER: &str = r#"{"symbol":"BTC-USD","side":"buy","type":"limit","qty":"0.5","price":"65000.00","client_order_id":"abc-123","time_in_force":"gtc"}"#;

fn post<'a>(path: &'a str, body: &'a [u8], headers: &'a [(&'a str, &'a [u8])]) -> Request<'a> {
    Request {
        method: "POST",
        path,
        params: &[],
        query: None,
        headers,
        content_type: Some("application/json"),
        body,
    }
}

fn get<'a>(
    path: &'a str,
    params: &'a [(&'a str, &'a str)],
    query: Option<&'a str>,
    headers: &'a [(&'a str, &'a [u8])],
) -> Request<'a> {
    Request {
        method: "GET",
        path,
        params,
        query,
        headers,
        content_type: None,
        body: b"",
    }
}

fn invalid_at(r: Result<(), Violation>) -> String {
    match r {
        Err(Violation::Invalid { pointer, .. }) => pointer,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn blocked(r: Result<(), Violation>) -> (&'static str, String) {
    match r {
        Err(Violation::Blocked { rule, location, .. }) => (rule, location),
        other => panic!("expected Blocked, got {other:?}"),
    }
}

#[test]
fn order_body_passes_and_fails_with_pointers() {
    let ins = Inspector::new(Limits::default());
    let s = schema("PlaceOrder");
    assert_eq!(
        ins.inspect(Some(&s), &post("/v1/orders", ORDER.as_bytes(), &[])),
        Ok(())
    );

    let cases = [
        (ORDER.replace("\"qty\":\"0.5\"", "\"qty\":0.5"), "/body/qty"),
        (
            ORDER.replace("\"qty\":\"0.5\"", "\"qty\":\"-1\""),
            "/body/qty",
        ),
        (ORDER.replace("BTC-USD", "btc-usd"), "/body/symbol"),
        (ORDER.replace("\"buy\"", "\"hold\""), "/body/side"),
        (ORDER.replace("abc-123", "abc 123"), "/body/client_order_id"),
        (ORDER.replace(",\"price\":\"65000.00\"", ""), "/body/price"),
        (ORDER.replace("}", ",\"admin\":true}"), "/body/admin"),
        (
            ORDER.replace("\"type\":\"limit\"", "\"type\":\"market\""),
            "/body/price",
        ),
        (
            ORDER.replace("}", ",\"note\":\"".to_owned().as_str()) + &"x".repeat(257) + "\"}",
            "/body/note",
        ),
    ];
    for (body, pointer) in cases {
        let r = ins.inspect(Some(&s), &post("/v1/orders", body.as_bytes(), &[]));
        assert_eq!(invalid_at(r), pointer, "{body}");
    }
    // No body, a non-JSON content type, not JSON, not UTF-8.
    assert_eq!(
        invalid_at(ins.inspect(Some(&s), &post("/v1/orders", b"", &[]))),
        "/body"
    );
    let mut form = post("/v1/orders", ORDER.as_bytes(), &[]);
    form.content_type = Some("text/plain");
    assert_eq!(
        invalid_at(ins.inspect(Some(&s), &form)),
        "/headers/content-type"
    );
    let mut typed = post("/v1/orders", ORDER.as_bytes(), &[]);
    typed.content_type = Some("application/json; charset=utf-8");
    assert_eq!(ins.inspect(Some(&s), &typed), Ok(()));
    assert_eq!(
        invalid_at(ins.inspect(Some(&s), &post("/v1/orders", b"symbol=BTC-USD", &[]))),
        "/body"
    );
    assert_eq!(
        invalid_at(ins.inspect(
            Some(&s),
            &post("/v1/orders", b"{\"symbol\":\"BTC-\xff\"}", &[])
        )),
        "/body/symbol"
    );
}

#[test]
fn violations_map_to_codes() {
    let i = Violation::Invalid {
        pointer: "/body/qty".into(),
        message: "must be a string".into(),
    };
    assert_eq!((i.code(), i.status()), ("VALIDATION_FAILED", 400));
    let b = Violation::Blocked {
        rule: "sqli",
        location: "/body/note".into(),
        detail: String::new(),
    };
    assert_eq!((b.code(), b.status()), ("REQUEST_BLOCKED", 403));
    assert!(Mode::Block.enforces());
    assert!(!Mode::Detect.enforces());
    assert_eq!("detect".parse::<Mode>(), Ok(Mode::Detect));
    assert!("off".parse::<Mode>().is_err());
    assert_eq!(Mode::default(), Mode::Block);
}

#[test]
fn messages_never_echo_the_value() {
    let ins = Inspector::default();
    let s = schema("PlaceOrder");
    let body = ORDER.replace("BTC-USD", "<script>alert(1)</script>");
    match ins.inspect(Some(&s), &post("/v1/orders", body.as_bytes(), &[])) {
        Err(Violation::Invalid { pointer, message }) => {
            assert_eq!(pointer, "/body/symbol");
            assert!(!message.contains("script"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // A hostile unknown key is escaped in the pointer.
    let body = ORDER.replace("}", ",\"<img src=x onerror=alert(1)>\":1}");
    let p = invalid_at(ins.inspect(Some(&s), &post("/v1/orders", body.as_bytes(), &[])));
    assert!(!p.contains('<') && !p.contains('>'), "{p}");
}

#[test]
fn routes_without_body_params_or_query_take_none() {
    let ins = Inspector::default();
    let time = schema("GetTime");
    assert_eq!(
        ins.inspect(Some(&time), &get("/v1/time", &[], None, &[])),
        Ok(())
    );
    assert_eq!(
        ins.inspect(Some(&time), &get("/v1/time", &[], Some(""), &[])),
        Ok(())
    );
    assert_eq!(
        invalid_at(ins.inspect(Some(&time), &get("/v1/time", &[], Some("x=1"), &[]))),
        "/query/x"
    );
    assert_eq!(
        invalid_at(ins.inspect(Some(&time), &post("/v1/time", b"{}", &[]))),
        "/body"
    );
    assert_eq!(
        invalid_at(ins.inspect(Some(&time), &get("/v1/time", &[("id", "1")], None, &[]))),
        "/params/id"
    );
}

#[test]
fn query_and_params() {
    let ins = Inspector::default();
    let book = schema("GetBook");
    let ok = |params: &[(&str, &str)], q: Option<&str>| {
        ins.inspect(Some(&book), &get("/v1/markets/x/book", params, q, &[]))
    };
    assert_eq!(ok(&[("symbol", "BTC-USD")], Some("depth=10")), Ok(()));
    assert_eq!(ok(&[("symbol", "BTC%2DUSD")], None), Ok(()));
    assert_eq!(
        ok(&[("symbol", "BTC-20261225-100000-C")], Some("depth=100")),
        Ok(())
    );
    let at = |params: &[(&str, &str)], q: Option<&str>| invalid_at(ok(params, q));
    assert_eq!(
        at(&[("symbol", "BTC-USD")], Some("depth=0")),
        "/query/depth"
    );
    assert_eq!(
        at(&[("symbol", "BTC-USD")], Some("depth=101")),
        "/query/depth"
    );
    assert_eq!(
        at(&[("symbol", "BTC-USD")], Some("depth=ten")),
        "/query/depth"
    );
    assert_eq!(
        at(&[("symbol", "BTC-USD")], Some("depth=1&depth=2")),
        "/query/depth"
    );
    assert_eq!(
        at(&[("symbol", "BTC-USD")], Some("depth=%ff")),
        "/query/depth"
    );
    assert_eq!(at(&[("symbol", "BTC%20USD")], None), "/params/symbol");
    assert_eq!(at(&[], None), "/params/symbol");
    let cancel = schema("CancelOrder");
    let del = |id: &str| {
        let params = [("order_id", id)];
        let req = Request {
            method: "DELETE",
            ..get("/v1/orders/x", &params, None, &[])
        };
        ins.inspect(Some(&cancel), &req)
    };
    assert_eq!(del("18446744073709551615"), Ok(()));
    assert_eq!(invalid_at(del("1 OR 1=1")), "/params/order_id");
    assert_eq!(invalid_at(del("%2e%2e%2f")), "/params/order_id");
}

#[test]
fn deep_nesting_fails_fast_without_stack_overflow() {
    let ins = Inspector::new(Limits {
        max_body_bytes: 16 * 1024 * 1024,
        ..Limits::default()
    });
    let s = schema("PlaceOrder");
    for body in [
        "[".repeat(100_000),
        "[".repeat(1_000_000),
        "{\"a\":".repeat(100_000),
        format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000)),
    ] {
        let start = Instant::now();
        for schema in [Some(&s), None] {
            let r = ins.inspect(schema, &post("/v1/orders", body.as_bytes(), &[]));
            match r {
                Err(Violation::Invalid { message, .. }) => {
                    assert!(message.contains("nested deeper than 16"), "{message}");
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(
            start.elapsed() < Duration::from_millis(200),
            "{:?}",
            start.elapsed()
        );
    }
    // Exactly at the limit parses (and then fails the schema's type).
    let at_limit = format!("{}{}", "[".repeat(16), "]".repeat(16));
    let r = ins.inspect(Some(&s), &post("/v1/orders", at_limit.as_bytes(), &[]));
    assert_eq!(
        r,
        Err(Violation::Invalid {
            pointer: "/body".into(),
            message: "must be an object".into()
        })
    );
    assert_eq!(
        ins.inspect(None, &post("/x", at_limit.as_bytes(), &[])),
        Ok(())
    );
}

#[test]
fn huge_strings_many_fields_duplicate_keys() {
    let ins = Inspector::default();
    let s = schema("PlaceOrder");
    // Over the body limit.
    let big = format!("{{\"note\":\"{}\"}}", "A".repeat(100_000));
    let r = ins.inspect(Some(&s), &post("/v1/orders", big.as_bytes(), &[]));
    assert_eq!(invalid_at(r), "/body");
    // Under the body limit, over the string limit.
    let long = ORDER.replace("}", &format!(",\"note\":\"{}\"}}", "A".repeat(5000)));
    let r = ins.inspect(None, &post("/v1/orders", long.as_bytes(), &[]));
    assert_eq!(invalid_at(r), "/body/note");
    // Many fields.
    let members: Vec<String> = (0..2000).map(|i| format!("\"k{i}\":1")).collect();
    let wide = format!("{{{}}}", members.join(","));
    let r = ins.inspect(None, &post("/x", wide.as_bytes(), &[]));
    match r {
        Err(Violation::Invalid { message, .. }) => {
            assert!(message.contains("more than 1024 fields"))
        }
        other => panic!("{other:?}"),
    }
    // Duplicate keys, with and without a schema.
    let dup = ORDER.replace("\"qty\":\"0.5\"", "\"qty\":\"0.5\",\"qty\":\"500\"");
    for schema in [Some(&s), None] {
        let r = ins.inspect(schema, &post("/v1/orders", dup.as_bytes(), &[]));
        assert_eq!(
            r,
            Err(Violation::Invalid {
                pointer: "/body/qty".into(),
                message: "duplicate key".into()
            })
        );
    }
    // A long query and many query params.
    let q = "a=1&".repeat(2000);
    assert_eq!(
        invalid_at(ins.inspect(None, &get("/x", &[], Some(&q), &[]))),
        "/query"
    );
    let limits = Limits {
        max_query_bytes: 1 << 20,
        ..Limits::default()
    };
    let r = Inspector::new(limits).inspect(None, &get("/x", &[], Some(&q), &[]));
    assert_eq!(invalid_at(r), "/query");
    // A huge header value.
    let ua = "A".repeat(10_000);
    let headers = [("user-agent", ua.as_bytes())];
    assert_eq!(
        invalid_at(ins.inspect(None, &get("/x", &[], None, &headers))),
        "/headers/user-agent"
    );
}

#[test]
fn smuggling_header_sets() {
    let ins = Inspector::default();
    let s = schema("PlaceOrder");
    let sets: Vec<Vec<(&str, &[u8])>> = vec![
        vec![("content-length", b"4"), ("transfer-encoding", b"chunked")],
        vec![("content-length", b"5"), ("content-length", b"6")],
        vec![("content-length", b"5, 6")],
        vec![
            ("transfer-encoding", b"chunked"),
            ("transfer-encoding", b"chunked"),
        ],
        vec![("transfer-encoding", b"gzip, chunked")],
        vec![("x-a", b"a\r\n\tb")],
        vec![("transfer_encoding", b"chunked")],
        vec![("host", b"a"), ("host", b"b")],
    ];
    for set in &sets {
        let (rule, location) =
            blocked(ins.inspect(Some(&s), &post("/v1/orders", ORDER.as_bytes(), set)));
        assert!(location.starts_with("/headers/"), "{location}");
        assert_eq!(rule, "smuggling", "{set:?}");
    }
    let fine: [(&str, &[u8]); 2] = [("content-length", b"123"), ("host", b"api.example")];
    assert_eq!(
        ins.inspect(Some(&s), &post("/v1/orders", ORDER.as_bytes(), &fine)),
        Ok(())
    );
    let chunked: [(&str, &[u8]); 1] = [("transfer-encoding", b"chunked")];
    assert_eq!(
        ins.inspect(Some(&s), &post("/v1/orders", ORDER.as_bytes(), &chunked)),
        Ok(())
    );
}

#[test]
fn header_injection_and_scanning() {
    let ins = Inspector::default();
    let cases: [(Headers<'_>, &str, &str); 6] = [
        (
            &[("x-custom", b"a\r\nSet-Cookie: x=1")],
            "crlf",
            "/headers/x-custom",
        ),
        (&[("x-custom", b"a\0b")], "null-byte", "/headers/x-custom"),
        (
            &[("user-agent", b"sqlmap/1.7.2#stable (https://sqlmap.org)")],
            "scanner",
            "/headers/user-agent",
        ),
        (
            &[("user-agent", b"() { :; }; /bin/bash -c id")],
            "cmdi",
            "/headers/user-agent",
        ),
        (
            &[("referer", b"https://x.example/?q=<script>alert(1)</script>")],
            "xss",
            "/headers/referer",
        ),
        (
            &[("cookie", b"theme=dark; session=' OR 1=1--")],
            "sqli",
            "/headers/cookie",
        ),
    ];
    for (headers, rule, location) in cases {
        assert_eq!(
            blocked(ins.inspect(None, &get("/v1/time", &[], None, headers))),
            (rule, location.to_owned())
        );
    }
    // Headers that are not scanned may carry anything printable.
    let sig: [(&str, &[u8]); 2] = [
        (
            "signature-input",
            b"sig1=(\"@method\" \"@target-uri\");created=1;keyid=\"k\"",
        ),
        ("authorization", b"Bearer a.b.c"),
    ];
    assert_eq!(ins.inspect(None, &get("/v1/time", &[], None, &sig)), Ok(()));
    let browser: [(&str, &[u8]); 3] = [
        (
            "user-agent",
            b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
        ),
        ("referer", b"https://app.example.com/trade?symbol=BTC-USD&side=buy"),
        ("cookie", b"session=3f9a1c2e7b; theme=dark; lang=en-GB"),
    ];
    assert_eq!(
        ins.inspect(None, &get("/v1/time", &[], None, &browser)),
        Ok(())
    );
}

#[test]
fn negative_model_on_what_the_schema_lets_through() {
    let ins = Inspector::default();
    let w = schema("Withdraw");
    let body = |memo: &str| {
        serde_json::json!({
            "asset": "BTC", "amount": "0.1",
            "address": "bc1qdemo0rampart0allowlisted0address0000000",
            "memo": memo
        })
        .to_string()
    };
    for memo in [
        "Transfer to O'Brien's cold wallet",
        "Zoë Müller 株式",
        "a < b and c > d",
        "SELECT your best price",
        "Rebalance <main> → <hedge>",
    ] {
        let b = body(memo);
        assert_eq!(
            ins.inspect(Some(&w), &post("/v1/withdrawals", b.as_bytes(), &[])),
            Ok(()),
            "{memo}"
        );
    }
    for (memo, rule) in [
        ("' OR 1=1--", "sqli"),
        ("<svg/onload=alert(1)>", "xss"),
        ("; cat /etc/passwd", "cmdi"),
        ("../../etc/passwd", "path-traversal"),
        ("a\r\nb", "crlf"),
        ("%2527%20OR%201=1--", "sqli"),
        ("${jndi:ldap://x/a}", "jndi"),
    ] {
        let b = body(memo);
        assert_eq!(
            blocked(ins.inspect(Some(&w), &post("/v1/withdrawals", b.as_bytes(), &[]))),
            (rule, "/body/memo".to_owned()),
            "{memo}"
        );
    }
    // Without a schema, keys and nested strings are scanned too.
    let nested = br#"{"a":[{"b":"ok"},{"<script>alert(1)</script>":1}]}"#;
    let (rule, at) = blocked(ins.inspect(None, &post("/x", nested, &[])));
    assert_eq!(rule, "xss");
    assert!(at.starts_with("/body/a/1/"), "{at}");
    // Form and text bodies without a schema.
    let mut form = post("/x", b"q=%27+OR+1%3D1--&x=1", &[]);
    form.content_type = Some("application/x-www-form-urlencoded");
    assert_eq!(
        blocked(ins.inspect(None, &form)),
        ("sqli", "/body/q".to_owned())
    );
    let mut text = post("/x", b"hello\nworld <script>alert(1)</script>", &[]);
    text.content_type = Some("text/plain");
    assert_eq!(blocked(ins.inspect(None, &text)).0, "xss");
    // The raw path.
    let (rule, at) =
        blocked(ins.inspect(None, &get("/v1/%2e%2e/%2e%2e/etc/passwd", &[], None, &[])));
    assert_eq!((rule, at.as_str()), ("path-traversal", "/path"));
    // Query keys are scanned too.
    let (rule, at) = blocked(ins.inspect(None, &get("/x", &[], Some("%3Cscript%3E=1"), &[])));
    assert_eq!((rule, at.as_str()), ("xss", "/query/%3Cscript%3E"));
}

#[test]
fn credential_params_skip_the_positive_model_but_not_the_detectors() {
    let insp = Inspector::new(Limits::default());
    let list = schema("ListOrders");
    // Binance-style signing adds timestamp and signature to the query.
    let q = Some("symbol=BTC-USD&timestamp=1700000000000&signature=ab12");
    let req = get("/v1/orders", &[], q, &[]);
    assert_eq!(
        invalid_at(insp.inspect(Some(&list), &req)),
        "/query/timestamp"
    );
    assert!(insp
        .inspect_with(Some(&list), &req, &["timestamp", "recvWindow", "signature"])
        .is_ok());
    // Only the named params are exempt …
    let q = Some("symbol=BTC-USD&timestamp=1&extra=1");
    let req = get("/v1/orders", &[], q, &[]);
    assert_eq!(
        invalid_at(insp.inspect_with(Some(&list), &req, &["timestamp"])),
        "/query/extra"
    );
    // … and still scanned by the detectors.
    let q = Some("symbol=BTC-USD&timestamp=1%27%20UNION%20SELECT%20password%20FROM%20users--");
    let req = get("/v1/orders", &[], q, &[]);
    assert!(matches!(
        insp.inspect_with(Some(&list), &req, &["timestamp"]),
        Err(Violation::Blocked { rule: "sqli", .. })
    ));
    // Kraken-style signing puts a nonce first in the JSON body.
    let place = schema("PlaceOrder");
    let body = format!("{{\"nonce\":1700000000001,{}", &ORDER[1..]);
    let req = post("/v1/orders", body.as_bytes(), &[]);
    assert_eq!(invalid_at(insp.inspect(Some(&place), &req)), "/body/nonce");
    assert!(insp.inspect_with(Some(&place), &req, &["nonce"]).is_ok());
    // A duplicate nonce is still a parser-differential refusal.
    let dup = format!("{{\"nonce\":1,\"nonce\":2,{}", &ORDER[1..]);
    let req = post("/v1/orders", dup.as_bytes(), &[]);
    assert!(insp.inspect_with(Some(&place), &req, &["nonce"]).is_err());
}
