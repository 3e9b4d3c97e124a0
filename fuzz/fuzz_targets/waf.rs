//! Arbitrary bytes as a request's body, query, path param, header values
//! and path through `waf::Inspector::inspect` (with each demo route's
//! schema and with none), and as one value through the normaliser and the
//! detectors: they must never panic, whatever they return.
//!
//! Layout: the first byte picks the schema (`% 11`, 9 and 10 mean none)
//! and the content type (bits 4-5); the rest is split on `0xFF` into body,
//! query, param, header value and path.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rampart_shield::waf::{corpus, detect, normalize, Inspector, Request, RouteSchema};

fn state() -> &'static (Inspector, Vec<RouteSchema>) {
    static STATE: OnceLock<(Inspector, Vec<RouteSchema>)> = OnceLock::new();
    STATE.get_or_init(|| {
        let schemas = corpus::demo_schemas()
            .map(|v| v.into_iter().map(|(_, s)| s).collect())
            .unwrap_or_default();
        (Inspector::default(), schemas)
    })
}

fuzz_target!(|data: &[u8]| {
    let (inspector, schemas) = state();
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };

    let text = String::from_utf8_lossy(rest);
    let folded = normalize::normalize(&text, 4);
    let _ = normalize::html_decode(&folded);
    let _ = normalize::percent_decode(rest, true);
    let _ = normalize::fix_overlong(rest);
    let _ = detect::scan(&text, 4);
    let _ = detect::scan_injections(&text, 4);
    let _ = detect::detectors(&folded);

    let mut parts = rest.splitn(5, |&b| b == 0xff);
    let body = parts.next().unwrap_or_default();
    let query = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let param = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let header = parts.next().unwrap_or_default();
    let path = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let params = [("symbol", param.as_ref()), ("order_id", param.as_ref())];
    let headers: [(&str, &[u8]); 5] = [
        ("user-agent", header),
        ("cookie", header),
        ("referer", header),
        ("content-length", header),
        ("transfer-encoding", header),
    ];
    let content_type = match (pick >> 4) & 3 {
        0 => Some("application/json"),
        1 => None,
        2 => Some("application/x-www-form-urlencoded"),
        _ => Some("text/plain"),
    };
    let schema = schemas.get(usize::from(pick % 11));
    for (params, headers) in [(&params[..1], &headers[..3]), (&params[..], &headers[..])] {
        let req = Request {
            method: "POST",
            path: &path,
            params,
            query: Some(&query),
            headers,
            content_type,
            body,
        };
        let _ = inspector.inspect(schema, &req);
        let _ = inspector.inspect(None, &req);
    }
});
