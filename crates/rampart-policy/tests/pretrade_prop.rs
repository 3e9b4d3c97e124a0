//! Property tests of the pre-trade engine against simple reference models.
#![allow(clippy::unwrap_used, reason = "test")]
#![allow(clippy::panic, reason = "test")]
#![allow(clippy::indexing_slicing, reason = "test")]

use std::collections::HashMap;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::subsequence;
use rampart_policy::pretrade::{Engine, Limits, Order, Outcome, PretradeConfig, Ticket, Who};
use rust_decimal::Decimal;

const MAX_AGE_MS: u64 = 1_000;
const NOW: i64 = 1_000_000;

fn dec(lo: i64, hi: i64, max_scale: u32) -> impl Strategy<Value = Decimal> {
    (lo..=hi, 0..=max_scale).prop_map(|(m, s)| Decimal::new(m, s))
}

fn list(items: &'static [&'static str]) -> impl Strategy<Value = Option<Vec<String>>> {
    option::of(
        subsequence(items, 0..=items.len())
            .prop_map(|v| v.iter().map(|s| (*s).to_owned()).collect()),
    )
}

fn limits() -> impl Strategy<Value = Option<Limits>> {
    option::of(
        (
            option::of(dec(1, 2_000, 2)),
            option::of(dec(1, 300_000, 2)),
            option::of(dec(0, 200, 1)),
            option::of(0u32..3),
            list(&["limit", "market"]),
            list(&["gtc", "ioc", "fok"]),
        )
            .prop_map(
                |(
                    max_qty,
                    max_notional,
                    collar_pct,
                    max_open_orders,
                    order_types,
                    time_in_force,
                )| Limits {
                    max_qty,
                    max_notional,
                    collar_pct,
                    max_open_orders,
                    order_types,
                    time_in_force,
                    duplicate_window_ms: None,
                },
            ),
    )
}

#[derive(Debug, Clone)]
struct Case {
    levels: [Option<Limits>; 5],
    order_type: &'static str,
    qty: Decimal,
    price: Option<Decimal>,
    tif: Option<&'static str>,
    fixed: Option<Decimal>,
    /// Fetched price and its age.
    fetched: Option<(Decimal, u64)>,
}

fn case() -> impl Strategy<Value = Case> {
    let qty = prop_oneof![
        20 => dec(1, 2_000, 2),
        1 => Just(Decimal::ZERO),
        1 => Just(Decimal::MAX),
    ];
    let price = prop_oneof![
        20 => option::of(dec(8_000, 12_000, 2)),
        1 => Just(Some(Decimal::MAX)),
        1 => Just(Some(Decimal::NEGATIVE_ONE)),
    ];
    (
        [limits(), limits(), limits(), limits(), limits()],
        prop_oneof![Just("limit"), Just("market")],
        qty,
        price,
        option::of(prop_oneof![Just("gtc"), Just("ioc"), Just("fok")]),
        option::of(dec(90, 110, 0)),
        option::of((dec(90, 110, 0), 0u64..2 * MAX_AGE_MS)),
    )
        .prop_map(
            |(levels, order_type, qty, price, tif, fixed, fetched)| Case {
                levels,
                order_type,
                qty,
                price,
                tif,
                fixed,
                fetched,
            },
        )
}

/// The limit kinds `l` refuses for the order (checked level by level, which
/// is what "most restrictive wins" must amount to).
fn failing(l: &Limits, c: &Case, reference: Option<Decimal>) -> Vec<&'static str> {
    let mut out = Vec::new();
    if l.order_types
        .as_ref()
        .is_some_and(|t| !t.iter().any(|x| x == c.order_type))
    {
        out.push("order_type");
    }
    let tif = c.tif.unwrap_or(if c.order_type == "limit" {
        "gtc"
    } else {
        "ioc"
    });
    if l.time_in_force
        .as_ref()
        .is_some_and(|t| !t.iter().any(|x| x == tif))
    {
        out.push("time_in_force");
    }
    if l.max_qty.is_some_and(|m| c.qty > m) {
        out.push("max_qty");
    }
    if let Some(m) = l.max_notional {
        match c.price.or(reference) {
            None => out.push("reference_price_unavailable"),
            Some(px) => {
                if c.qty.checked_mul(px).is_none_or(|n| n > m) {
                    out.push("max_notional");
                }
            }
        }
    }
    if let Some(pct) = l.collar_pct {
        match (reference, c.price) {
            (None, _) => out.push("reference_price_unavailable"),
            (Some(r), Some(p)) => {
                let lhs = (p - r).abs().checked_mul(Decimal::ONE_HUNDRED);
                let rhs = r.checked_mul(pct);
                if !matches!((lhs, rhs), (Some(a), Some(b)) if a <= b) {
                    out.push("price_collar");
                }
            }
            (Some(_), None) => {}
        }
    }
    if l.max_open_orders == Some(0) {
        out.push("max_open_orders");
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    /// `check` accepts exactly the orders satisfying every level's limits.
    #[test]
    fn check_accepts_exactly_the_orders_within_every_limit(c in case()) {
        let names = ["k", "acct", "parent", "SYM"];
        let mut cfg = PretradeConfig {
            reference_max_age_ms: MAX_AGE_MS,
            ..PretradeConfig::default()
        };
        let [key, acct, parent, instrument, default] = c.levels.clone();
        if let Some(l) = key { cfg.keys.insert(names[0].into(), l); }
        if let Some(l) = acct { cfg.accounts.insert(names[1].into(), l); }
        if let Some(l) = parent { cfg.accounts.insert(names[2].into(), l); }
        if let Some(l) = instrument { cfg.instruments.insert(names[3].into(), l); }
        cfg.defaults = default.unwrap_or_default();
        if let Some(f) = c.fixed { cfg.fixed_prices.insert("SYM".into(), f); }
        let engine = Engine::new(cfg);
        let mut reference = c.fixed;
        if let Some((p, age)) = c.fetched {
            engine.set_reference_price("SYM", p, NOW - i64::try_from(age).unwrap());
            if age <= MAX_AGE_MS { reference = Some(p); }
        }
        prop_assert_eq!(engine.reference_price("SYM", NOW), reference);

        let shape_ok = c.qty > Decimal::ZERO
            && c.price.is_none_or(|p| p > Decimal::ZERO)
            && !(c.order_type == "limit" && c.price.is_none());
        let fails: Vec<&str> = c.levels.iter().flatten().flat_map(|l| failing(l, &c, reference)).collect();
        let order = Order {
            symbol: "SYM",
            side: "buy",
            order_type: c.order_type,
            qty: c.qty,
            price: c.price,
            time_in_force: c.tif,
            client_order_id: None,
        };
        let who = Who { key_id: "k", account_id: "acct", parent_account_id: Some("parent") };
        match engine.check(&who, &order, NOW) {
            Ok(t) => {
                prop_assert!(shape_ok && fails.is_empty(), "accepted but fails {:?}", fails);
                t.settle(Outcome::Done);
            }
            Err(v) => {
                if shape_ok {
                    prop_assert!(fails.contains(&v.limit), "refused with {} but model fails {:?}", v, fails);
                } else {
                    prop_assert_eq!(v.limit, "invalid_order");
                }
            }
        }
        prop_assert_eq!(engine.open_orders("acct"), 0);
    }
}

// ---------------------------------------------------------------- open-order accounting model

#[derive(Debug, Clone)]
enum Op {
    Check {
        acct: usize,
        key: usize,
        cid: Option<usize>,
        dt: i64,
    },
    Settle {
        idx: usize,
        kind: u8,
    },
    Close {
        idx: usize,
    },
    Reconcile {
        acct: usize,
        mask: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 0..3usize, option::of(0..4usize), 0..30i64)
            .prop_map(|(acct, key, cid, dt)| Op::Check { acct, key, cid, dt }),
        3 => (any::<usize>(), 0..5u8).prop_map(|(idx, kind)| Op::Settle { idx, kind }),
        2 => any::<usize>().prop_map(|idx| Op::Close { idx }),
        1 => (0..3usize, any::<u8>()).prop_map(|(acct, mask)| Op::Reconcile { acct, mask }),
    ]
}

const ACCTS: [&str; 3] = ["a0", "a1", "a2"];
const KEYS: [&str; 3] = ["k0", "k1", "k2"];
const CIDS: [&str; 4] = ["c0", "c1", "c2", "c3"];
const ACCOUNT_MAX: u32 = 3;
const KEY0_MAX: u32 = 2;
const WINDOW: i64 = 50;

#[derive(Default)]
struct Model {
    now: i64,
    /// (ticket serial, acct, key, cid)
    live: Vec<(u64, usize, usize, Option<usize>)>,
    resting: Vec<(usize, String, usize)>,
    unknown: Vec<(usize, usize)>,
    /// (acct, cid) → (recorded at, ticket serial)
    cids: HashMap<(usize, usize), (i64, u64)>,
    serial: u64,
}

impl Model {
    fn acct_count(&self, a: usize) -> u32 {
        let n = self.live.iter().filter(|t| t.1 == a).count()
            + self.resting.iter().filter(|r| r.0 == a).count()
            + self.unknown.iter().filter(|u| u.0 == a).count();
        u32::try_from(n).unwrap()
    }
    fn key_count(&self, k: usize) -> u32 {
        let n = self.live.iter().filter(|t| t.2 == k).count()
            + self.resting.iter().filter(|r| r.2 == k).count()
            + self.unknown.iter().filter(|u| u.1 == k).count();
        u32::try_from(n).unwrap()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// Open-order counts per account and key, and duplicate-id refusals,
    /// follow a straightforward model through checks, settles, closes and
    /// reconciliations.
    #[test]
    fn open_order_accounting_follows_the_model(ops in vec(op(), 1..80)) {
        let engine = Engine::new(PretradeConfig {
            defaults: Limits {
                max_open_orders: Some(ACCOUNT_MAX),
                duplicate_window_ms: Some(50),
                ..Limits::default()
            },
            keys: HashMap::from([("k0".to_owned(), Limits { max_open_orders: Some(KEY0_MAX), ..Limits::default() })]),
            ..PretradeConfig::default()
        });
        let mut m = Model::default();
        let mut tickets: Vec<Ticket> = Vec::new();
        let mut next_id = 0u32;
        for op in ops {
            match op {
                Op::Check { acct, key, cid, dt } => {
                    m.now += dt;
                    let who = Who { key_id: KEYS[key], account_id: ACCTS[acct], parent_account_id: None };
                    let order = Order {
                        symbol: "SYM", side: "buy", order_type: "limit",
                        qty: Decimal::ONE, price: Some(Decimal::ONE),
                        time_in_force: None, client_order_id: cid.map(|c| CIDS[c]),
                    };
                    let expected = if cid.and_then(|c| m.cids.get(&(acct, c))).is_some_and(|(at, _)| m.now - at < WINDOW) {
                        Some(("duplicate_client_order_id", "default"))
                    } else if key == 0 && m.key_count(0) >= KEY0_MAX {
                        Some(("max_open_orders", "key"))
                    } else if m.acct_count(acct) >= ACCOUNT_MAX {
                        Some(("max_open_orders", "default"))
                    } else {
                        None
                    };
                    match (engine.check(&who, &order, m.now), expected) {
                        (Ok(t), None) => {
                            m.serial += 1;
                            if let Some(c) = cid { m.cids.insert((acct, c), (m.now, m.serial)); }
                            m.live.push((m.serial, acct, key, cid));
                            tickets.push(t);
                        }
                        (Err(v), Some((l, lvl))) => {
                            prop_assert_eq!((v.limit, v.level), (l, lvl));
                        }
                        (got, want) => prop_assert!(false, "got {:?}, model expects {:?}", got.map(|_| ()), want),
                    }
                }
                Op::Settle { idx, kind } => {
                    if tickets.is_empty() { continue; }
                    let i = idx % tickets.len();
                    let t = tickets.swap_remove(i);
                    let (serial, acct, key, cid) = m.live.swap_remove(i);
                    match kind {
                        0 => {
                            next_id += 1;
                            let id = format!("o{next_id}");
                            m.resting.push((acct, id.clone(), key));
                            t.settle(Outcome::Resting(id));
                        }
                        1 => t.settle(Outcome::Done),
                        2 => {
                            if let Some(c) = cid {
                                if m.cids.get(&(acct, c)).is_some_and(|e| e.1 == serial) {
                                    m.cids.remove(&(acct, c));
                                }
                            }
                            t.settle(Outcome::Rejected);
                        }
                        3 => {
                            m.unknown.push((acct, key));
                            t.settle(Outcome::Unknown);
                        }
                        _ => {
                            m.unknown.push((acct, key));
                            drop(t);
                        }
                    }
                }
                Op::Close { idx } => {
                    if m.resting.is_empty() { continue; }
                    let (acct, id, _) = m.resting.swap_remove(idx % m.resting.len());
                    engine.order_closed(ACCTS[acct], &id);
                }
                Op::Reconcile { acct, mask } => {
                    let mut kept = Vec::new();
                    let mut list = Vec::new();
                    for (i, r) in m.resting.iter().enumerate() {
                        if r.0 != acct { kept.push(r.clone()); continue; }
                        if mask & (1 << (i % 8)) != 0 {
                            // Odd positions omit the key: the known attribution is kept.
                            let key = (i % 2 == 0).then(|| KEYS[r.2].to_owned());
                            list.push((r.1.clone(), key));
                            kept.push(r.clone());
                        }
                    }
                    m.resting = kept;
                    m.unknown.retain(|u| u.0 != acct);
                    engine.reconcile_open_orders(ACCTS[acct], &list);
                }
            }
            for (a, name) in ACCTS.iter().enumerate() {
                prop_assert_eq!(engine.open_orders(name), m.acct_count(a), "account {}", name);
            }
            for (k, name) in KEYS.iter().enumerate() {
                prop_assert_eq!(engine.key_open_orders(name), m.key_count(k), "key {}", name);
            }
        }
    }
}
