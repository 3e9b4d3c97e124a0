//! Order bodies from the input through `pretrade::parse_order`, then
//! `Engine::check` against every kind of limit; the body also goes through
//! the TOTP code check, base32 and recovery codes, and the WebAuthn
//! registration and assertion parsers (CBOR, authenticator data). None may panic;
//! an accepted order must satisfy the configured quantity limit.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rampart_policy::pretrade::{parse_order, Engine, Limits, Outcome, PretradeConfig, Who};

fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        let mut cfg = PretradeConfig::default();
        cfg.defaults = Limits {
            max_qty: "10".parse().ok(),
            max_notional: "1000000".parse().ok(),
            collar_pct: "5".parse().ok(),
            max_open_orders: Some(1000),
            order_types: Some(vec!["limit".into(), "market".into()]),
            time_in_force: Some(vec!["gtc".into(), "ioc".into(), "fok".into()]),
            duplicate_window_ms: Some(60_000),
        };
        cfg.fixed_prices.insert("BTC-USD".into(), "65000".parse().expect("price"));
        cfg.max_tracked = 10_000;
        Engine::new(cfg)
    })
}

fuzz_target!(|data: &[u8]| {
    if data.len() > 4096 {
        return;
    }
    if let Ok(order) = parse_order(data) {
        let who = Who {
            key_id: "k",
            account_id: "a",
            parent_account_id: None,
        };
        let o = order.as_order();
        if let Ok(ticket) = engine().check(&who, &o, 1_000) {
            assert!(o.qty <= "10".parse().expect("limit"), "max_qty passed: {}", o.qty);
            ticket.settle(Outcome::Rejected);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let params = rampart_auth::totp::TotpParams::default();
        let _ = rampart_auth::totp::verify(&[7u8; 20], &params, text, 1_700_000_000, None);
        let _ = rampart_auth::totp::base32_decode(text);
        let _ = rampart_auth::totp::recovery::find(text, &[rampart_auth::totp::recovery::hash("x")]);
    }
    // The same bytes as WebAuthn attestation objects, client data and
    // authenticator data.
    let e = rampart_auth::webauthn::Expect {
        rp_id: "admin.example",
        origin: "https://admin.example",
        challenge: &[1; 32],
        require_uv: true,
    };
    let _ = rampart_auth::webauthn::register(&e, data, data);
    let cred = rampart_auth::webauthn::Credential {
        id: vec![1],
        key: rampart_auth::webauthn::CredentialKey::Ed25519([0; 32]),
        sign_count: 0,
    };
    let _ = rampart_auth::webauthn::authenticate(&e, &cred, data, data, data);
});
