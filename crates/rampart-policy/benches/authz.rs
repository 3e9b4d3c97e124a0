//! Authorization hot path: `authorize` with 1,000 operator policies (plus
//! the key-settings and default policies) and 100k prepared keys across 10k
//! accounts (9 of every 10 accounts are sub-accounts).
//!
//! `cargo bench -p rampart-policy --bench authz`
//!
//! Criterion reports means; the target is a p99, so a separate loop first
//! times 200k single decisions and prints percentiles.
#![allow(missing_docs, reason = "bench binary")]
#![allow(clippy::unwrap_used, reason = "bench")]
#![allow(clippy::indexing_slicing, reason = "bench")]
#![allow(clippy::print_stdout, reason = "bench output")]

use std::cell::Cell;
use std::collections::HashMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use criterion::Criterion;
use rampart_policy::authz::{
    AccountFacts, Authorizer, AuthzConfig, InstrumentDef, KeySettings, OrderFacts, PolicySource,
    PreparedKey, RequestFacts,
};

const ACCOUNTS: usize = 10_000;
const KEYS: usize = 100_000;
const INSTRUMENTS: usize = 500;
const NOW_MS: i64 = 1_700_000_000_000;

/// xorshift64*: deterministic, no dependency.
struct Rng(Cell<u64>);

impl Rng {
    fn next(&self, n: usize) -> usize {
        let mut x = self.0.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0.set(x);
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

fn symbol(i: usize) -> String {
    format!("SYM-{i}")
}

fn product(i: usize) -> &'static str {
    ["spot", "spot", "perp", "option"][i % 4]
}

/// 1,000 operator policies: 400 per-account permits, 300 per-account
/// forbids, 292 per-instrument forbids, 8 ("a few") unconstrained.
fn operator_policies() -> String {
    let mut s = String::new();
    for i in 0..400 {
        let a = (i * 25) % ACCOUNTS;
        s.push_str(&format!(
            "@id(\"desk.permit.{i}\")\npermit (principal in Rampart::Account::\"acct-{a}\", action in Rampart::Action::\"trade\", resource)\nwhen {{ context.risk_score < 70 && principal.account.kyc_tier >= 1 }};\n"
        ));
    }
    for i in 0..300 {
        let a = (i * 33 + 7) % ACCOUNTS;
        s.push_str(&format!(
            "@id(\"desk.forbid.{i}\")\nforbid (principal in Rampart::Account::\"acct-{a}\", action == Rampart::Action::\"PlaceOrder\", resource)\nwhen {{ context has order && context.order.qty.greaterThan(decimal(\"500.0\")) }};\n"
        ));
    }
    for i in 0..292 {
        s.push_str(&format!(
            "@id(\"desk.instrument.{i}\")\nforbid (principal, action == Rampart::Action::\"PlaceOrder\", resource == Rampart::Instrument::\"{}\")\nwhen {{ context.risk_score > 90 || (context has order && context.order.side == \"sell\" && context.order.qty.greaterThan(decimal(\"{}.0\"))) }};\n",
            symbol(i),
            100 + i
        ));
    }
    for i in 0..8 {
        match i % 4 {
            0 => s.push_str(&format!(
                "@id(\"desk.global.{i}\")\nforbid (principal, action in Rampart::Action::\"trade\", resource)\nwhen {{ context.risk_score > {} && context.hour < 3 }};\n",
                90 + i
            )),
            1 => s.push_str(&format!(
                "@id(\"desk.global.{i}\")\n@code(\"MFA_REQUIRED\")\nforbid (principal, action == Rampart::Action::\"PlaceOrder\", resource)\nwhen {{ context has order && context.order has notional && context.order.notional.greaterThan(decimal(\"{}000000.0\")) }}\nunless {{ context has mfa_age && context.mfa_age < 60 }};\n",
                i + 1
            )),
            2 => s.push_str(&format!(
                "@id(\"desk.global.{i}\")\nforbid (principal, action, resource is Rampart::Instrument)\nwhen {{ resource.product == \"option\" && principal.account.risk_profile == \"retail-{i}\" }};\n"
            )),
            _ => s.push_str(&format!(
                "@id(\"desk.global.{i}\")\nforbid (principal, action, resource)\nwhen {{ context.source_ip.isInRange(ip(\"198.51.{i}.0/24\")) }};\n"
            )),
        }
    }
    s
}

fn account(n: usize) -> AccountFacts {
    AccountFacts {
        id: format!("acct-{n}"),
        parent_id: (!n.is_multiple_of(10)).then(|| format!("acct-{}", n - n % 10)),
        kyc_tier: 2,
        risk_profile: "professional".into(),
        withdrawal_addresses: vec![format!("addr-{n}-a"), format!("addr-{n}-b")],
    }
}

fn key_settings(m: usize) -> KeySettings {
    let n = m % ACCOUNTS;
    KeySettings {
        key_id: format!("key-{m}"),
        account_id: format!("acct-{n}"),
        scopes: vec!["read".into(), "trade".into()],
        instruments: if m.is_multiple_of(5) {
            (0..8).map(|i| symbol((m + i * 61) % INSTRUMENTS)).collect()
        } else {
            vec![]
        },
        products: if m.is_multiple_of(7) {
            vec!["spot".into(), "perp".into()]
        } else {
            vec![]
        },
        nets: if m.is_multiple_of(3) {
            vec![
                "10.0.0.0/8".parse().unwrap(),
                "192.168.0.0/16".parse().unwrap(),
            ]
        } else {
            vec![]
        },
        expires_at_ms: m.is_multiple_of(2).then_some(NOW_MS + 86_400_000),
        read_only: false,
    }
}

struct World {
    authz: Authorizer,
    keys: HashMap<String, PreparedKey>,
    key_ids: Vec<String>,
    orders: Vec<OrderFacts>,
}

fn world(keys_n: usize) -> World {
    let cfg = AuthzConfig {
        actions: vec![],
        instruments: (0..INSTRUMENTS)
            .map(|i| InstrumentDef {
                symbol: symbol(i),
                product: product(i).into(),
            })
            .collect(),
        defaults: true,
        sources: vec![PolicySource {
            name: "desk.cedar".into(),
            text: operator_policies(),
        }],
    };
    let t = Instant::now();
    let authz = Authorizer::new(&cfg).unwrap();
    println!(
        "Authorizer::new: {} policies in {:.0?}",
        authz.policy_count(),
        t.elapsed()
    );
    let accounts: Vec<AccountFacts> = (0..ACCOUNTS).map(account).collect();
    let mut keys = HashMap::with_capacity(keys_n);
    let mut key_ids = Vec::with_capacity(keys_n);
    let mut prep = Vec::with_capacity(keys_n);
    for m in 0..keys_n {
        let ks = key_settings(m);
        let n = m % ACCOUNTS;
        let parent = accounts[n]
            .parent_id
            .as_ref()
            .map(|_| &accounts[n - n % 10]);
        let t = Instant::now();
        let pk = authz.prepare_key(&ks, &accounts[n], parent);
        prep.push(t.elapsed());
        assert!(pk.error().is_none());
        key_ids.push(ks.key_id.clone());
        keys.insert(ks.key_id, pk);
    }
    report("prepare_key (100k, cold heap)", &mut prep);
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm") {
        let pages: usize = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        println!(
            "resident after {keys_n} prepared keys: {} MiB",
            pages * 4096 / (1024 * 1024)
        );
    }
    let orders = (0..INSTRUMENTS)
        .map(|i| OrderFacts {
            side: if i % 2 == 0 { "buy" } else { "sell" }.into(),
            order_type: "limit".into(),
            qty: format!("{}.25", i % 50),
            notional: Some(format!("{}.5", 1000 + i * 37)),
            instrument: symbol(i),
        })
        .collect();
    World {
        authz,
        keys,
        key_ids,
        orders,
    }
}

fn place_order<'a>(order: &'a OrderFacts, ip: IpAddr) -> RequestFacts<'a> {
    RequestFacts {
        action: "PlaceOrder",
        required_scope: "trade",
        target_account: None,
        target_account_parent: None,
        instrument: Some(&order.instrument),
        source_ip: ip,
        risk_score: 12,
        mfa_age_secs: Some(900),
        now_ms: NOW_MS,
        order: Some(order),
        withdrawal: None,
    }
}

fn get_account(ip: IpAddr) -> RequestFacts<'static> {
    RequestFacts {
        action: "GetAccount",
        required_scope: "read",
        target_account: None,
        target_account_parent: None,
        instrument: None,
        source_ip: ip,
        risk_score: 12,
        mfa_age_secs: None,
        now_ms: NOW_MS,
        order: None,
        withdrawal: None,
    }
}

const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 20, 30, 40));

fn report(what: &str, samples: &mut [Duration]) {
    samples.sort_unstable();
    let pct = |p: f64| {
        let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples[i.min(samples.len() - 1)]
    };
    let mean = samples.iter().sum::<Duration>() / samples.len().max(1) as u32;
    println!(
        "{what:<28} n={:>6}  mean {:>8.2?}  p50 {:>8.2?}  p90 {:>8.2?}  p99 {:>8.2?}  p99.9 {:>8.2?}  max {:>8.2?}",
        samples.len(),
        mean,
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999),
        samples[samples.len() - 1]
    );
}

/// 200k single decisions, each timed; half PlaceOrder, half GetAccount.
fn percentiles(w: &World) {
    let rng = Rng(Cell::new(0x9e37_79b9_7f4a_7c15));
    // Warm up.
    for _ in 0..20_000 {
        let k = &w.keys[&w.key_ids[rng.next(w.key_ids.len())]];
        black_box(w.authz.authorize(k, &get_account(IP)));
    }
    let mut all = Vec::with_capacity(200_000);
    let mut orders = Vec::with_capacity(100_000);
    let mut reads = Vec::with_capacity(100_000);
    let mut allowed = 0usize;
    for i in 0..200_000 {
        let k = &w.keys[&w.key_ids[rng.next(w.key_ids.len())]];
        let o = &w.orders[rng.next(INSTRUMENTS)];
        let req = if i % 2 == 0 {
            place_order(o, IP)
        } else {
            get_account(IP)
        };
        let t = Instant::now();
        let d = w.authz.authorize(k, &req);
        let e = t.elapsed();
        allowed += usize::from(d.allowed);
        black_box(d);
        all.push(e);
        if i % 2 == 0 {
            orders.push(e);
        } else {
            reads.push(e);
        }
    }
    println!("allowed {allowed} of 200000 decisions");
    report("authorize (mixed)", &mut all);
    report("authorize PlaceOrder", &mut orders);
    report("authorize GetAccount", &mut reads);
    // The unindexed reference, for scale.
    let mut slow = Vec::with_capacity(2_000);
    for _ in 0..2_000 {
        let k = &w.keys[&w.key_ids[rng.next(w.key_ids.len())]];
        let o = &w.orders[rng.next(INSTRUMENTS)];
        let t = Instant::now();
        black_box(w.authz.authorize_unindexed(k, &place_order(o, IP)));
        slow.push(t.elapsed());
    }
    report("authorize_unindexed PlaceOrder", &mut slow);
    // Where a PlaceOrder's time goes: building the Cedar request alone.
    let mut build = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        let k = &w.keys[&w.key_ids[rng.next(w.key_ids.len())]];
        let o = &w.orders[rng.next(INSTRUMENTS)];
        let t = Instant::now();
        black_box(w.authz.cedar_request(k, &place_order(o, IP)).is_ok());
        build.push(t.elapsed());
    }
    report("cedar_request PlaceOrder (build)", &mut build);
}

fn benches(c: &mut Criterion, w: &World) {
    let rng = Rng(Cell::new(7));
    c.bench_function("authorize/PlaceOrder", |b| {
        b.iter(|| {
            let k = &w.keys[&w.key_ids[rng.next(w.key_ids.len())]];
            let o = &w.orders[rng.next(INSTRUMENTS)];
            black_box(w.authz.authorize(k, &place_order(o, IP)))
        })
    });
    c.bench_function("authorize/GetAccount", |b| {
        b.iter(|| {
            let k = &w.keys[&w.key_ids[rng.next(w.key_ids.len())]];
            black_box(w.authz.authorize(k, &get_account(IP)))
        })
    });
    let accounts: Vec<AccountFacts> = (0..20).map(account).collect();
    c.bench_function("prepare_key", |b| {
        b.iter(|| {
            // Keys of the first 20 accounts (every `m` with `m % ACCOUNTS < 20`).
            let n = rng.next(20);
            let m = n + ACCOUNTS * rng.next(KEYS / ACCOUNTS);
            let parent = accounts[n]
                .parent_id
                .as_ref()
                .map(|_| &accounts[n - n % 10]);
            let k = w.authz.prepare_key(&key_settings(m), &accounts[n], parent);
            debug_assert!(k.error().is_none());
            black_box(k)
        })
    });
}

/// Machine calibration: plain Cedar `is_authorized` over 10 trivial
/// policies (`context.risk > 90`), no entities. Scale the figures above by
/// this to compare hosts.
fn calibrate() {
    use cedar_policy::{Context, RestrictedExpression};
    let ctx =
        Context::from_pairs([("risk".to_string(), RestrictedExpression::new_long(5))]).unwrap();
    let p: cedar_policy::EntityUid = r#"User::"a""#.parse().unwrap();
    let a: cedar_policy::EntityUid = r#"Action::"b""#.parse().unwrap();
    let r: cedar_policy::EntityUid = r#"Res::"c""#.parse().unwrap();
    let req = cedar_policy::Request::new(p, a, r, ctx, None).unwrap();
    let ents = cedar_policy::Entities::empty();
    let cedar = cedar_policy::Authorizer::new();
    let text: String = (0..10)
        .map(|_| "forbid(principal, action, resource) when { context.risk > 90 };\n")
        .collect();
    let set: cedar_policy::PolicySet = text.parse().unwrap();
    let mut samples = Vec::with_capacity(50_000);
    for _ in 0..50_000 {
        let t = Instant::now();
        black_box(cedar.is_authorized(&req, &set, &ents));
        samples.push(t.elapsed());
    }
    report("calibration: cedar 10 trivial", &mut samples);
}

fn main() {
    // `cargo bench` passes `--bench`; without it (`cargo test --benches`)
    // run a small world once, as criterion does in test mode.
    let quick = !std::env::args().any(|a| a == "--bench");
    let w = world(if quick { 1_000 } else { KEYS });
    if !quick {
        calibrate();
        percentiles(&w);
    }
    // `-- --percentiles-only`: skip criterion.
    if std::env::args().any(|a| a == "--percentiles-only") {
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c, &w);
    c.final_summary();
}
