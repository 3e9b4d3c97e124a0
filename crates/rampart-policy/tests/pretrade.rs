//! Pre-trade engine: limits, state, concurrency and a reference-predicate
//! property test. Time is the `now_ms` argument (a fake clock).
#![allow(clippy::unwrap_used, reason = "test")]
#![allow(clippy::expect_used, reason = "test")]
#![allow(clippy::panic, reason = "test")]
#![allow(clippy::indexing_slicing, reason = "test")]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};

use rampart_policy::pretrade::{
    parse_order, Engine, Limits, Order, Outcome, PretradeConfig, Ticket, Violation, Who,
};
use rust_decimal::Decimal;

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

const WHO: Who<'static> = Who {
    key_id: "k1",
    account_id: "a1",
    parent_account_id: None,
};

fn limit_order(qty: &'static str, price: &'static str) -> OrderSpec {
    OrderSpec {
        order_type: "limit",
        qty: d(qty),
        price: Some(d(price)),
        tif: None,
        cid: None,
    }
}

fn market_order(qty: &'static str) -> OrderSpec {
    OrderSpec {
        order_type: "market",
        qty: d(qty),
        price: None,
        tif: None,
        cid: None,
    }
}

#[derive(Clone)]
struct OrderSpec {
    order_type: &'static str,
    qty: Decimal,
    price: Option<Decimal>,
    tif: Option<&'static str>,
    cid: Option<&'static str>,
}

impl OrderSpec {
    fn cid(mut self, cid: &'static str) -> Self {
        self.cid = Some(cid);
        self
    }
    fn tif(mut self, tif: &'static str) -> Self {
        self.tif = Some(tif);
        self
    }
    fn order(&self) -> Order<'static> {
        Order {
            symbol: "BTC-USD",
            side: "buy",
            order_type: self.order_type,
            qty: self.qty,
            price: self.price,
            time_in_force: self.tif,
            client_order_id: self.cid,
        }
    }
}

fn engine_with(defaults: Limits) -> Engine {
    Engine::new(PretradeConfig {
        defaults,
        ..PretradeConfig::default()
    })
}

fn refused(engine: &Engine, who: &Who<'_>, o: &OrderSpec, now: i64) -> Violation {
    match engine.check(who, &o.order(), now) {
        Ok(t) => {
            t.settle(Outcome::Rejected);
            panic!("expected a refusal")
        }
        Err(v) => v,
    }
}

fn accepted(engine: &Engine, who: &Who<'_>, o: &OrderSpec, now: i64) -> Ticket {
    match engine.check(who, &o.order(), now) {
        Ok(t) => t,
        Err(v) => panic!("expected acceptance, got {v}"),
    }
}

/// Accepts and settles as filled (slot freed, cid kept).
fn passes(engine: &Engine, who: &Who<'_>, o: &OrderSpec, now: i64) {
    accepted(engine, who, o, now).settle(Outcome::Done);
}

// ---------------------------------------------------------------- quantity

#[test]
fn fat_finger_qty_is_refused() {
    let e = engine_with(Limits {
        max_qty: Some(d("10")),
        ..Limits::default()
    });
    passes(&e, &WHO, &limit_order("10", "100"), 0);
    let v = refused(&e, &WHO, &limit_order("10.0001", "100"), 0);
    assert_eq!((v.limit, v.level), ("max_qty", "default"));
    assert!(
        v.detail.contains("10.0001") && v.detail.contains("max_qty 10"),
        "{}",
        v.detail
    );
    let v = refused(&e, &WHO, &limit_order("1000", "100"), 0);
    assert_eq!(v.limit, "max_qty");
    assert_eq!(e.open_orders("a1"), 0);
}

#[test]
fn non_positive_quantity_or_price_is_invalid() {
    let e = engine_with(Limits::default());
    for o in [
        limit_order("0", "100"),
        limit_order("-1", "100"),
        limit_order("1", "0"),
        limit_order("1", "-5"),
        market_order("0"),
        OrderSpec {
            price: None,
            ..limit_order("1", "1")
        },
    ] {
        let v = refused(&e, &WHO, &o, 0);
        assert_eq!((v.limit, v.level), ("invalid_order", "order"));
    }
    let long = "x".repeat(65);
    let order = Order {
        client_order_id: Some(&long),
        ..limit_order("1", "1").order()
    };
    assert_eq!(e.check(&WHO, &order, 0).unwrap_err().limit, "invalid_order");
}

// ---------------------------------------------------------------- notional

#[test]
fn notional_of_a_limit_order_uses_its_price() {
    let e = engine_with(Limits {
        max_notional: Some(d("100000")),
        ..Limits::default()
    });
    // No reference price needed for a priced order under a notional limit.
    passes(&e, &WHO, &limit_order("2", "50000"), 0);
    let v = refused(&e, &WHO, &limit_order("2.0001", "50000"), 0);
    assert_eq!((v.limit, v.level), ("max_notional", "default"));
    assert!(v.detail.contains("100000"), "{}", v.detail);
    assert!(v.detail.contains("100005"), "{}", v.detail);
}

#[test]
fn notional_of_a_market_order_uses_the_reference_price() {
    let e = engine_with(Limits {
        max_notional: Some(d("100000")),
        ..Limits::default()
    });
    let v = refused(&e, &WHO, &market_order("1"), 0);
    assert_eq!(
        (v.limit, v.level),
        ("reference_price_unavailable", "default")
    );
    e.set_reference_price("BTC-USD", d("50000"), 0);
    passes(&e, &WHO, &market_order("2"), 10);
    let v = refused(&e, &WHO, &market_order("2.01"), 10);
    assert_eq!(v.limit, "max_notional");
    assert!(v.detail.contains("reference price 50000"), "{}", v.detail);
}

#[test]
fn market_order_without_price_limits_needs_no_reference() {
    let e = engine_with(Limits {
        max_qty: Some(d("5")),
        ..Limits::default()
    });
    passes(&e, &WHO, &market_order("5"), 0);
}

#[test]
fn notional_overflow_is_refused_without_panic() {
    let e = engine_with(Limits {
        max_notional: Some(Decimal::MAX),
        ..Limits::default()
    });
    let o = OrderSpec {
        qty: Decimal::MAX,
        price: Some(Decimal::MAX),
        ..limit_order("1", "1")
    };
    let v = refused(&e, &WHO, &o, 0);
    assert_eq!(v.limit, "max_notional");
    assert!(v.detail.contains("overflows"), "{}", v.detail);
    // The collar's arithmetic overflows too: refused, no panic.
    let e = engine_with(Limits {
        collar_pct: Some(Decimal::MAX),
        ..Limits::default()
    });
    e.set_reference_price("BTC-USD", Decimal::MAX, 0);
    let v = refused(&e, &WHO, &limit_order("1", "1"), 0);
    assert_eq!(v.limit, "price_collar");
}

// ---------------------------------------------------------------- collar

#[test]
fn collar_refuses_off_market_prices_on_both_sides_and_allows_the_boundary() {
    let e = engine_with(Limits {
        collar_pct: Some(d("5")),
        ..Limits::default()
    });
    e.set_reference_price("BTC-USD", d("60000"), 0);
    for ok in ["60000", "63000", "57000", "62999.99", "57000.01"] {
        passes(&e, &WHO, &limit_order("1", ok), 0);
    }
    for bad in ["63000.01", "56999.99", "600000", "6000"] {
        let v = refused(&e, &WHO, &limit_order("1", bad), 0);
        assert_eq!((v.limit, v.level), ("price_collar", "default"), "{bad}");
        assert!(
            v.detail.contains("5%") && v.detail.contains("60000"),
            "{}",
            v.detail
        );
        assert!(v.detail.contains("57000 to 63000"), "{}", v.detail);
    }
    // A market order has no price to collar.
    passes(&e, &WHO, &market_order("1"), 0);
}

#[test]
fn collar_without_reference_price_fails_closed() {
    let e = Engine::new(PretradeConfig {
        instruments: HashMap::from([(
            "BTC-USD".to_owned(),
            Limits {
                collar_pct: Some(d("10")),
                ..Limits::default()
            },
        )]),
        ..PretradeConfig::default()
    });
    let v = refused(&e, &WHO, &limit_order("1", "100"), 0);
    assert_eq!(
        (v.limit, v.level),
        ("reference_price_unavailable", "instrument")
    );
    assert!(v.detail.contains("price_collar ±10%"), "{}", v.detail);
    let v = refused(&e, &WHO, &market_order("1"), 0);
    assert_eq!(v.limit, "reference_price_unavailable");
    // Another symbol has no collar: no reference needed.
    let order = Order {
        symbol: "ETH-USD",
        ..limit_order("1", "100").order()
    };
    e.check(&WHO, &order, 0).unwrap().settle(Outcome::Done);
}

// ---------------------------------------------------------------- reference prices

#[test]
fn stale_reference_price_falls_back_to_fixed_then_refuses() {
    let cfg = PretradeConfig {
        defaults: Limits {
            collar_pct: Some(d("1")),
            ..Limits::default()
        },
        reference_max_age_ms: 1_000,
        fixed_prices: HashMap::from([("BTC-USD".to_owned(), d("50000"))]),
        ..PretradeConfig::default()
    };
    let e = Engine::new(cfg.clone());
    e.set_reference_price("BTC-USD", d("60000"), 10_000);
    assert_eq!(e.reference_price("BTC-USD", 11_000), Some(d("60000")));
    passes(&e, &WHO, &limit_order("1", "60000"), 11_000);
    // Stale: the fixed price applies.
    assert_eq!(e.reference_price("BTC-USD", 11_001), Some(d("50000")));
    let v = refused(&e, &WHO, &limit_order("1", "60000"), 11_001);
    assert_eq!(v.limit, "price_collar");
    passes(&e, &WHO, &limit_order("1", "50000"), 11_001);
    // No fixed price either: refused.
    e.reload(PretradeConfig {
        fixed_prices: HashMap::new(),
        ..cfg
    });
    assert_eq!(e.reference_price("BTC-USD", 11_001), None);
    let v = refused(&e, &WHO, &limit_order("1", "50000"), 11_001);
    assert_eq!(v.limit, "reference_price_unavailable");
    assert!(v.detail.contains("1000 ms"), "{}", v.detail);
    // A fresh fetch restores it.
    e.set_reference_price("BTC-USD", d("50000"), 11_001);
    passes(&e, &WHO, &limit_order("1", "50000"), 11_500);
}

#[test]
fn reference_price_updates_ignore_bad_and_older_values() {
    let e = engine_with(Limits::default());
    e.set_reference_price("BTC-USD", d("100"), 1_000);
    e.set_reference_price("BTC-USD", d("90"), 999);
    e.set_reference_price("BTC-USD", d("0"), 2_000);
    e.set_reference_price("BTC-USD", d("-1"), 2_000);
    assert_eq!(e.reference_price("BTC-USD", 1_000), Some(d("100")));
    e.set_reference_price("BTC-USD", d("110"), 1_500);
    assert_eq!(e.reference_price("BTC-USD", 1_500), Some(d("110")));
    assert_eq!(e.reference_price("ETH-USD", 1_500), None);
}

// ---------------------------------------------------------------- order types / tif

#[test]
fn order_type_and_time_in_force_lists() {
    let e = engine_with(Limits {
        order_types: Some(vec!["limit".to_owned()]),
        time_in_force: Some(vec!["GTC".to_owned(), "ioc".to_owned()]),
        ..Limits::default()
    });
    passes(&e, &WHO, &limit_order("1", "1"), 0);
    passes(&e, &WHO, &limit_order("1", "1").tif("gtc"), 0);
    passes(&e, &WHO, &limit_order("1", "1").tif("ioc"), 0);
    let v = refused(&e, &WHO, &limit_order("1", "1").tif("fok"), 0);
    assert_eq!((v.limit, v.level), ("time_in_force", "default"));
    assert!(v.detail.contains("gtc, ioc"), "{}", v.detail);
    let v = refused(&e, &WHO, &market_order("1"), 0);
    assert_eq!(v.limit, "order_type");
    assert!(v.detail.contains("`market`"), "{}", v.detail);
    let upper = OrderSpec {
        order_type: "LIMIT",
        ..limit_order("1", "1")
    };
    assert_eq!(refused(&e, &WHO, &upper, 0).limit, "order_type");
}

#[test]
fn missing_time_in_force_is_the_venue_default() {
    let e = engine_with(Limits {
        time_in_force: Some(vec!["ioc".to_owned()]),
        ..Limits::default()
    });
    // limit → gtc (not allowed); market → ioc (allowed).
    assert_eq!(
        refused(&e, &WHO, &limit_order("1", "1"), 0).limit,
        "time_in_force"
    );
    passes(&e, &WHO, &market_order("1"), 0);
    let stop = OrderSpec {
        order_type: "stop",
        ..limit_order("1", "1")
    };
    assert_eq!(refused(&e, &WHO, &stop, 0).limit, "time_in_force");
}

// ---------------------------------------------------------------- open orders

#[test]
fn too_many_open_orders_then_a_cancel_frees_a_slot() {
    let e = engine_with(Limits {
        max_open_orders: Some(2),
        ..Limits::default()
    });
    let o = limit_order("1", "1");
    accepted(&e, &WHO, &o, 0).settle(Outcome::Resting("o1".into()));
    let in_flight = accepted(&e, &WHO, &o, 0);
    assert_eq!(e.open_orders("a1"), 2);
    let v = refused(&e, &WHO, &o, 0);
    assert_eq!((v.limit, v.level), ("max_open_orders", "default"));
    assert!(
        v.detail.contains("2 open orders; max_open_orders 2"),
        "{}",
        v.detail
    );
    e.settle(in_flight, Outcome::Resting("o2".into()));
    assert_eq!(refused(&e, &WHO, &o, 0).limit, "max_open_orders");
    e.order_closed("a1", "o1");
    assert_eq!(e.open_orders("a1"), 1);
    accepted(&e, &WHO, &o, 0).settle(Outcome::Resting("o3".into()));
    assert_eq!(refused(&e, &WHO, &o, 0).limit, "max_open_orders");
    // Unknown and repeated closes change nothing.
    e.order_closed("a1", "o1");
    e.order_closed("a1", "nope");
    e.order_closed("other", "o2");
    assert_eq!(e.open_orders("a1"), 2);
    // Filled / rejected orders free their slot at once.
    e.order_closed("a1", "o2");
    e.order_closed("a1", "o3");
    accepted(&e, &WHO, &o, 0).settle(Outcome::Done);
    accepted(&e, &WHO, &o, 0).settle(Outcome::Rejected);
    assert_eq!(e.open_orders("a1"), 0);
    assert_eq!(e.key_open_orders("k1"), 0);
}

#[test]
fn key_limit_counts_across_accounts_and_account_limit_across_keys() {
    let e = Engine::new(PretradeConfig {
        keys: HashMap::from([(
            "k1".to_owned(),
            Limits {
                max_open_orders: Some(2),
                ..Limits::default()
            },
        )]),
        accounts: HashMap::from([(
            "a1".to_owned(),
            Limits {
                max_open_orders: Some(3),
                ..Limits::default()
            },
        )]),
        ..PretradeConfig::default()
    });
    let o = limit_order("1", "1");
    let k1a1 = WHO;
    let k1a2 = Who {
        account_id: "a2",
        ..WHO
    };
    let k2a1 = Who {
        key_id: "k2",
        ..WHO
    };
    accepted(&e, &k1a1, &o, 0).settle(Outcome::Resting("x1".into()));
    accepted(&e, &k1a2, &o, 0).settle(Outcome::Resting("y1".into()));
    assert_eq!(e.key_open_orders("k1"), 2);
    let v = refused(&e, &k1a1, &o, 0);
    assert_eq!((v.limit, v.level), ("max_open_orders", "key"));
    // Another key on a1 still has room at the account: 1 of 3 used.
    accepted(&e, &k2a1, &o, 0).settle(Outcome::Resting("x2".into()));
    accepted(&e, &k2a1, &o, 0).settle(Outcome::Resting("x3".into()));
    let v = refused(&e, &k2a1, &o, 0);
    assert_eq!((v.limit, v.level), ("max_open_orders", "account"));
    e.order_closed("a2", "y1");
    assert_eq!(e.key_open_orders("k1"), 1);
    // k1 has room now, but a1 is full.
    assert_eq!(refused(&e, &k1a1, &o, 0).level, "account");
    e.order_closed("a1", "x3");
    accepted(&e, &k1a1, &o, 0).settle(Outcome::Done);
    assert_eq!(e.key_open_orders("k2"), 1);
}

#[test]
fn dropped_or_unknown_tickets_hold_their_slot_until_reconciliation() {
    let e = engine_with(Limits {
        max_open_orders: Some(2),
        duplicate_window_ms: Some(60_000),
        ..Limits::default()
    });
    drop(accepted(&e, &WHO, &limit_order("1", "1").cid("c1"), 0));
    accepted(&e, &WHO, &limit_order("1", "1").cid("c2"), 0).settle(Outcome::Unknown);
    assert_eq!(e.open_orders("a1"), 2);
    assert_eq!(e.unknown_orders("a1"), 2);
    assert_eq!(e.key_open_orders("k1"), 2);
    assert_eq!(
        refused(&e, &WHO, &limit_order("1", "1"), 0).limit,
        "max_open_orders"
    );
    // The venue says one of them rests.
    e.reconcile_open_orders("a1", &[("v1".to_owned(), Some("k1".to_owned()))]);
    assert_eq!(e.open_orders("a1"), 1);
    assert_eq!(e.unknown_orders("a1"), 0);
    assert_eq!(e.key_open_orders("k1"), 1);
    // Their client order ids stay remembered: a blind retry is refused.
    let v = refused(&e, &WHO, &limit_order("1", "1").cid("c1"), 1);
    assert_eq!(v.limit, "duplicate_client_order_id");
    assert_eq!(
        refused(&e, &WHO, &limit_order("1", "1").cid("c2"), 1).limit,
        "duplicate_client_order_id"
    );
}

// ---------------------------------------------------------------- client order ids

#[test]
fn duplicate_client_order_id_within_the_window_then_allowed_after() {
    let e = engine_with(Limits {
        duplicate_window_ms: Some(1_000),
        ..Limits::default()
    });
    let o = limit_order("1", "1").cid("abc-123");
    passes(&e, &WHO, &o, 10_000);
    let v = refused(&e, &WHO, &o, 10_999);
    assert_eq!((v.limit, v.level), ("duplicate_client_order_id", "default"));
    assert!(
        v.detail.contains("`abc-123`") && v.detail.contains("999 ms"),
        "{}",
        v.detail
    );
    assert!(
        v.detail.contains("duplicate_window_ms 1000"),
        "{}",
        v.detail
    );
    // Another account may use the same id; no id is never a duplicate.
    let other = Who {
        account_id: "a2",
        ..WHO
    };
    passes(&e, &other, &o, 10_500);
    passes(&e, &WHO, &limit_order("1", "1"), 10_500);
    passes(&e, &WHO, &limit_order("1", "1"), 10_500);
    // A clock stepped back counts as within the window.
    assert_eq!(
        refused(&e, &WHO, &o, 9_000).limit,
        "duplicate_client_order_id"
    );
    // Exactly one window later: allowed, and recorded again.
    passes(&e, &WHO, &o, 11_000);
    assert_eq!(
        refused(&e, &WHO, &o, 11_999).limit,
        "duplicate_client_order_id"
    );
    passes(&e, &WHO, &o, 12_000);
}

#[test]
fn a_rejected_orders_client_order_id_is_reusable_an_accepted_ones_is_not() {
    let e = engine_with(Limits {
        duplicate_window_ms: Some(60_000),
        ..Limits::default()
    });
    let o = limit_order("1", "1").cid("r-1");
    accepted(&e, &WHO, &o, 0).settle(Outcome::Rejected);
    accepted(&e, &WHO, &o, 1).settle(Outcome::Rejected);
    // In flight: a concurrent duplicate is refused.
    let t = accepted(&e, &WHO, &o, 2);
    assert_eq!(refused(&e, &WHO, &o, 3).limit, "duplicate_client_order_id");
    t.settle(Outcome::Resting("o1".into()));
    assert_eq!(refused(&e, &WHO, &o, 4).limit, "duplicate_client_order_id");
    e.order_closed("a1", "o1");
    assert_eq!(refused(&e, &WHO, &o, 5).limit, "duplicate_client_order_id");
    let filled = limit_order("1", "1").cid("f-1");
    accepted(&e, &WHO, &filled, 0).settle(Outcome::Done);
    assert_eq!(
        refused(&e, &WHO, &filled, 6).limit,
        "duplicate_client_order_id"
    );
}

#[test]
fn rejecting_an_old_ticket_does_not_forget_a_newer_use_of_its_id() {
    let e = engine_with(Limits {
        duplicate_window_ms: Some(100),
        ..Limits::default()
    });
    let o = limit_order("1", "1").cid("c");
    let old = accepted(&e, &WHO, &o, 0);
    // After the window the id is used again while the old ticket is open.
    let new = accepted(&e, &WHO, &o, 100);
    old.settle(Outcome::Rejected);
    assert_eq!(
        refused(&e, &WHO, &o, 150).limit,
        "duplicate_client_order_id"
    );
    new.settle(Outcome::Done);
}

#[test]
fn client_order_id_memory_is_bounded_and_evicts_the_oldest() {
    let e = Engine::new(PretradeConfig {
        defaults: Limits {
            duplicate_window_ms: Some(1_000_000),
            ..Limits::default()
        },
        max_tracked: 4,
        ..PretradeConfig::default()
    });
    let cids = ["c0", "c1", "c2", "c3", "c4", "c5"];
    for (i, cid) in cids.iter().enumerate() {
        passes(
            &e,
            &WHO,
            &limit_order("1", "1").cid(cid),
            i64::try_from(i).unwrap(),
        );
    }
    let snap = e.snapshot_at(10);
    assert_eq!(snap["tracked"]["client_order_ids"], 4);
    assert_eq!(snap["tracked"]["client_order_id_evictions"], 2);
    assert_eq!(snap["accounts"]["a1"]["client_order_ids"], 4);
    // The two oldest were evicted; the newest are still refused.
    passes(&e, &WHO, &limit_order("1", "1").cid("c0"), 20);
    assert_eq!(
        refused(&e, &WHO, &limit_order("1", "1").cid("c5"), 20).limit,
        "duplicate_client_order_id"
    );
    // Expired records leave the queue.
    passes(&e, &WHO, &limit_order("1", "1").cid("z"), 5_000_000);
    assert_eq!(e.snapshot_at(0)["tracked"]["client_order_ids"], 1);
}

/// `max_tracked` bounds the whole engine, not each shard: one busy account
/// may use all of it (a per-shard bound would forget its ids after
/// `max_tracked / shards` orders), and many accounts together stay within
/// it (plus at most one record per shard).
#[test]
fn client_order_id_bound_is_engine_wide() {
    let max_tracked = 65_536; // 64 shards
    let e = Engine::new(PretradeConfig {
        defaults: Limits {
            duplicate_window_ms: Some(1_000_000),
            ..Limits::default()
        },
        max_tracked,
        ..PretradeConfig::default()
    });
    fn order(cid: &str) -> Order<'_> {
        Order {
            symbol: "BTC-USD",
            side: "buy",
            order_type: "limit",
            qty: d("1"),
            price: Some(d("1")),
            time_in_force: None,
            client_order_id: Some(cid),
        }
    }
    let ids: Vec<String> = (0..5_000).map(|i| format!("hot-{i}")).collect();
    for id in &ids {
        e.check(&WHO, &order(id), 1).unwrap().settle(Outcome::Done);
    }
    let snap = e.snapshot_at(1);
    assert_eq!(snap["tracked"]["shards"], 64);
    assert_eq!(snap["tracked"]["client_order_id_evictions"], 0);
    assert_eq!(snap["accounts"]["a1"]["client_order_ids"], 5_000);
    // The first id of the busy account is still remembered.
    let v = e.check(&WHO, &order(&ids[0]), 2).unwrap_err();
    assert_eq!(v.limit, "duplicate_client_order_id");

    // Many accounts past the bound: the total stays within it (+ one per
    // shard), and the evictions make up the difference.
    let accounts: Vec<String> = (0..700).map(|i| format!("acct-{i}")).collect();
    let mut placed = 5_000u64;
    for round in 0..100 {
        for a in &accounts {
            let who = Who {
                key_id: "k1",
                account_id: a,
                parent_account_id: None,
            };
            let cid = format!("c-{round}");
            e.check(&who, &order(&cid), 3)
                .unwrap()
                .settle(Outcome::Done);
            placed += 1;
        }
    }
    let snap = e.snapshot_at(3);
    let held = snap["tracked"]["client_order_ids"].as_u64().unwrap();
    let evicted = snap["tracked"]["client_order_id_evictions"]
        .as_u64()
        .unwrap();
    assert!(held <= 65_536 + 64, "held {held}");
    assert!(held >= 65_536 - 64, "held {held}");
    assert_eq!(held + evicted, placed);
}

#[test]
fn order_ids_beyond_the_bound_keep_their_slot_as_unknown() {
    let e = Engine::new(PretradeConfig {
        max_tracked: 2,
        ..PretradeConfig::default()
    });
    for id in ["o1", "o2", "o3"] {
        accepted(&e, &WHO, &limit_order("1", "1"), 0).settle(Outcome::Resting(id.into()));
    }
    assert_eq!(e.open_orders("a1"), 3);
    assert_eq!(e.unknown_orders("a1"), 1);
    assert_eq!(e.snapshot_at(0)["tracked"]["order_ids"], 2);
    e.order_closed("a1", "o3"); // not tracked: ignored
    assert_eq!(e.open_orders("a1"), 3);
    e.order_closed("a1", "o1");
    e.reconcile_open_orders("a1", &[("o2".to_owned(), None)]);
    assert_eq!(e.open_orders("a1"), 1);
    assert_eq!(e.key_open_orders("k1"), 1, "o2's key attribution kept");
}

// ---------------------------------------------------------------- reconcile / reload

#[test]
fn reconcile_sets_counts_and_known_ids() {
    let e = engine_with(Limits {
        max_open_orders: Some(3),
        ..Limits::default()
    });
    let o = limit_order("1", "1");
    accepted(&e, &WHO, &o, 0).settle(Outcome::Resting("gone".into()));
    let in_flight = accepted(&e, &WHO, &o, 0);
    let ids = |xs: &[&str]| -> Vec<(String, Option<String>)> {
        xs.iter()
            .map(|x| ((*x).to_owned(), Some("k1".to_owned())))
            .collect()
    };
    e.reconcile_open_orders("a1", &ids(&["v1", "v2", "v1"]));
    // v1, v2 and the in-flight reservation.
    assert_eq!(e.open_orders("a1"), 3);
    assert_eq!(e.key_open_orders("k1"), 3);
    assert_eq!(refused(&e, &WHO, &o, 0).limit, "max_open_orders");
    e.order_closed("a1", "gone"); // forgotten by reconciliation
    assert_eq!(e.open_orders("a1"), 3);
    // The in-flight order turns out to be v2 (the reconciliation raced it):
    // not counted twice.
    in_flight.settle(Outcome::Resting("v2".into()));
    assert_eq!(e.open_orders("a1"), 2);
    assert_eq!(e.key_open_orders("k1"), 2);
    e.order_closed("a1", "v1");
    e.order_closed("a1", "v2");
    assert_eq!(e.open_orders("a1"), 0);
    assert_eq!(e.key_open_orders("k1"), 0);
    // Reconciling an account the engine never saw, keys unknown.
    e.reconcile_open_orders("a9", &[("z1".to_owned(), None), ("z2".to_owned(), None)]);
    assert_eq!(e.open_orders("a9"), 2);
    e.reconcile_open_orders("a9", &[]);
    assert_eq!(e.open_orders("a9"), 0);
    assert!(
        e.snapshot_at(0)["accounts"].get("a9").is_none(),
        "idle accounts are dropped"
    );
}

#[test]
fn reload_keeps_counts_and_client_order_ids() {
    let e = engine_with(Limits {
        max_open_orders: Some(5),
        duplicate_window_ms: Some(10_000),
        ..Limits::default()
    });
    accepted(&e, &WHO, &limit_order("1", "1").cid("a"), 0).settle(Outcome::Resting("o1".into()));
    accepted(&e, &WHO, &limit_order("1", "1").cid("b"), 0).settle(Outcome::Resting("o2".into()));
    let in_flight = accepted(&e, &WHO, &limit_order("1", "1"), 0);
    e.set_reference_price("BTC-USD", d("100"), 0);
    e.reload(PretradeConfig {
        defaults: Limits {
            max_open_orders: Some(3),
            duplicate_window_ms: Some(10_000),
            ..Limits::default()
        },
        ..PretradeConfig::default()
    });
    assert_eq!(e.open_orders("a1"), 3);
    assert_eq!(e.reference_price("BTC-USD", 10), Some(d("100")));
    assert_eq!(
        refused(&e, &WHO, &limit_order("1", "1"), 1).limit,
        "max_open_orders"
    );
    in_flight.settle(Outcome::Done);
    assert_eq!(
        refused(&e, &WHO, &limit_order("1", "1").cid("a"), 1).limit,
        "duplicate_client_order_id"
    );
    passes(&e, &WHO, &limit_order("1", "1").cid("c"), 1);
    e.order_closed("a1", "o1");
    assert_eq!(e.open_orders("a1"), 1);
}

// ---------------------------------------------------------------- most restrictive wins

const LEVELS: [&str; 5] = ["key", "account", "parent", "instrument", "default"];

/// A config with `loose` at every level and `tight` at `tight_level`.
fn layered(loose: &Limits, tight: &Limits, tight_level: &str) -> PretradeConfig {
    let at = |lvl: &str| {
        if lvl == tight_level {
            tight.clone()
        } else {
            loose.clone()
        }
    };
    PretradeConfig {
        defaults: at("default"),
        instruments: HashMap::from([("BTC-USD".to_owned(), at("instrument"))]),
        accounts: HashMap::from([
            ("sub".to_owned(), at("account")),
            ("parent".to_owned(), at("parent")),
        ]),
        keys: HashMap::from([("k1".to_owned(), at("key"))]),
        fixed_prices: HashMap::from([("BTC-USD".to_owned(), d("100"))]),
        ..PretradeConfig::default()
    }
}

#[test]
fn the_most_restrictive_level_wins() {
    let sub = Who {
        key_id: "k1",
        account_id: "sub",
        parent_account_id: Some("parent"),
    };
    struct Case {
        name: &'static str,
        loose: Limits,
        tight: Limits,
        ok: OrderSpec,
        bad: OrderSpec,
        limit: &'static str,
    }
    let strs = |xs: &[&str]| Some(xs.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>());
    let cases = [
        Case {
            name: "qty",
            loose: Limits {
                max_qty: Some(d("100")),
                ..Limits::default()
            },
            tight: Limits {
                max_qty: Some(d("2")),
                ..Limits::default()
            },
            ok: limit_order("2", "100"),
            bad: limit_order("3", "100"),
            limit: "max_qty",
        },
        Case {
            name: "notional",
            loose: Limits {
                max_notional: Some(d("100000")),
                ..Limits::default()
            },
            tight: Limits {
                max_notional: Some(d("500")),
                ..Limits::default()
            },
            ok: market_order("5"),
            bad: limit_order("5", "101"),
            limit: "max_notional",
        },
        Case {
            name: "collar",
            loose: Limits {
                collar_pct: Some(d("50")),
                ..Limits::default()
            },
            tight: Limits {
                collar_pct: Some(d("1")),
                ..Limits::default()
            },
            ok: limit_order("1", "101"),
            bad: limit_order("1", "102"),
            limit: "price_collar",
        },
        Case {
            name: "order types",
            loose: Limits {
                order_types: strs(&["limit", "market"]),
                ..Limits::default()
            },
            tight: Limits {
                order_types: strs(&["limit"]),
                ..Limits::default()
            },
            ok: limit_order("1", "100"),
            bad: market_order("1"),
            limit: "order_type",
        },
        Case {
            name: "time in force",
            loose: Limits {
                time_in_force: strs(&["gtc", "ioc", "fok"]),
                ..Limits::default()
            },
            tight: Limits {
                time_in_force: strs(&["gtc", "fok"]),
                ..Limits::default()
            },
            ok: limit_order("1", "100").tif("fok"),
            bad: limit_order("1", "100").tif("ioc"),
            limit: "time_in_force",
        },
    ];
    for case in &cases {
        for lvl in LEVELS {
            let e = Engine::new(layered(&case.loose, &case.tight, lvl));
            passes(&e, &sub, &case.ok, 0);
            let v = refused(&e, &sub, &case.bad, 0);
            assert_eq!(
                (v.limit, v.level),
                (case.limit, lvl),
                "{} at {lvl}",
                case.name
            );
        }
    }
    // Stateful kinds.
    for lvl in LEVELS {
        let e = Engine::new(layered(
            &Limits {
                max_open_orders: Some(100),
                duplicate_window_ms: Some(10),
                ..Limits::default()
            },
            &Limits {
                max_open_orders: Some(1),
                duplicate_window_ms: Some(1_000),
                ..Limits::default()
            },
            lvl,
        ));
        let o = limit_order("1", "100");
        let t = accepted(&e, &sub, &o.clone().cid("x"), 0);
        let v = refused(&e, &sub, &o, 0);
        assert_eq!(
            (v.limit, v.level),
            ("max_open_orders", lvl),
            "open orders at {lvl}"
        );
        t.settle(Outcome::Done);
        // The longest window is the most restrictive.
        let v = refused(&e, &sub, &o.clone().cid("x"), 500);
        assert_eq!(
            (v.limit, v.level),
            ("duplicate_client_order_id", lvl),
            "window at {lvl}"
        );
        passes(&e, &sub, &o.cid("x"), 1_000);
    }
}

#[test]
fn ties_report_the_most_specific_level_and_parent_applies_only_to_sub_accounts() {
    let tight = Limits {
        max_qty: Some(d("1")),
        ..Limits::default()
    };
    let mut cfg = layered(&tight, &tight, "key");
    let sub = Who {
        key_id: "k1",
        account_id: "sub",
        parent_account_id: Some("parent"),
    };
    let e = Engine::new(cfg.clone());
    assert_eq!(refused(&e, &sub, &limit_order("2", "100"), 0).level, "key");
    cfg.keys.clear();
    cfg.accounts.remove("sub");
    let e = Engine::new(cfg);
    assert_eq!(
        refused(&e, &sub, &limit_order("2", "100"), 0).level,
        "parent"
    );
    let no_parent = Who {
        parent_account_id: None,
        ..sub
    };
    assert_eq!(
        refused(&e, &no_parent, &limit_order("2", "100"), 0).level,
        "instrument"
    );
}

// ---------------------------------------------------------------- concurrency

#[test]
fn concurrent_checks_never_exceed_max_open_orders() {
    const M: u32 = 7;
    const THREADS: usize = 8;
    let e = Arc::new(engine_with(Limits {
        max_open_orders: Some(M),
        ..Limits::default()
    }));
    // Phase 1: everyone grabs slots and holds them.
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (e, barrier) = (e.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                (0..50)
                    .filter_map(|_| e.check(&WHO, &limit_order("1", "1").order(), 0).ok())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let tickets: Vec<Ticket> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(tickets.len(), M as usize);
    assert_eq!(e.open_orders("a1"), M);
    for t in tickets {
        t.settle(Outcome::Done);
    }
    assert_eq!(e.open_orders("a1"), 0);
    // Phase 2: churn; the number of live reservations never exceeds M.
    let live = Arc::new(AtomicU32::new(0));
    let peak = Arc::new(AtomicU32::new(0));
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let (e, barrier, live, peak) = (e.clone(), barrier.clone(), live.clone(), peak.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let who = Who {
                    key_id: if i % 2 == 0 { "k1" } else { "k2" },
                    ..WHO
                };
                for n in 0..2_000 {
                    if let Ok(t) = e.check(&who, &limit_order("1", "1").order(), 0) {
                        let now = live.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        live.fetch_sub(1, Ordering::SeqCst);
                        t.settle(if n % 3 == 0 {
                            Outcome::Rejected
                        } else {
                            Outcome::Done
                        });
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert!(peak.load(Ordering::SeqCst) <= M);
    assert!(peak.load(Ordering::SeqCst) >= 1);
    assert_eq!(e.open_orders("a1"), 0);
    assert_eq!(e.key_open_orders("k1") + e.key_open_orders("k2"), 0);
}

#[test]
fn engine_and_ticket_are_thread_safe_types() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Engine>();
    assert_send_sync::<Ticket>();
}

// ---------------------------------------------------------------- parse + snapshot

#[test]
fn a_parsed_body_is_checked() {
    let e = engine_with(Limits {
        max_qty: Some(d("1")),
        ..Limits::default()
    });
    let body = br#"{"symbol":"BTC-USD","side":"buy","type":"limit","qty":"0.5","price":"65000.00","client_order_id":"abc-123","time_in_force":"gtc"}"#;
    let o = parse_order(body).unwrap();
    e.check(&WHO, &o.as_order(), 0)
        .unwrap()
        .settle(Outcome::Done);
    let big =
        parse_order(br#"{"symbol":"BTC-USD","side":"sell","type":"market","qty":"1.5"}"#).unwrap();
    assert_eq!(
        e.check(&WHO, &big.as_order(), 0).unwrap_err().limit,
        "max_qty"
    );
    let err =
        parse_order(br#"{"symbol":"BTC-USD","side":"buy","type":"market","qty":0.5}"#).unwrap_err();
    assert!(err.contains("invalid order body"), "{err}");
}

#[test]
fn snapshot_reports_counts_and_reference_ages() {
    let e = Engine::new(PretradeConfig {
        fixed_prices: HashMap::from([("ETH-USD".to_owned(), d("3000.50"))]),
        reference_max_age_ms: 100,
        ..PretradeConfig::default()
    });
    e.set_reference_price("BTC-USD", d("65000.10"), 1_000);
    accepted(&e, &WHO, &limit_order("1", "1"), 0).settle(Outcome::Resting("o1".into()));
    let t = accepted(&e, &WHO, &limit_order("1", "1"), 0);
    let s = e.snapshot_at(1_250);
    assert_eq!(s["accounts"]["a1"]["open_orders"], 2);
    assert_eq!(s["accounts"]["a1"]["resting"], 1);
    assert_eq!(s["accounts"]["a1"]["in_flight"], 1);
    assert_eq!(s["keys"]["k1"], 2);
    assert_eq!(s["reference_prices"]["BTC-USD"]["price"], "65000.1");
    assert_eq!(s["reference_prices"]["BTC-USD"]["age_ms"], 250);
    assert_eq!(s["reference_prices"]["BTC-USD"]["fresh"], false);
    assert_eq!(s["fixed_prices"]["ETH-USD"], "3000.5");
    t.settle(Outcome::Done);
    assert!(e.snapshot()["tracked"]["max_tracked"].is_number());
}

#[test]
fn config_validation_collects_every_problem() {
    let bad = Limits {
        max_qty: Some(d("-1")),
        collar_pct: Some(d("-5")),
        order_types: Some(vec!["Limit".to_owned()]),
        ..Limits::default()
    };
    let cfg = PretradeConfig {
        keys: HashMap::from([("k1".to_owned(), bad.clone())]),
        defaults: bad,
        fixed_prices: HashMap::from([("X".to_owned(), d("0"))]),
        max_tracked: 0,
        ..PretradeConfig::default()
    };
    let errors = cfg.validate().unwrap_err();
    assert_eq!(errors.len(), 8, "{errors:#?}");
    assert!(
        errors
            .iter()
            .any(|e| e == "keys.`k1`.max_qty: must not be negative (got -1)"),
        "{errors:#?}"
    );
    assert!(PretradeConfig::default().validate().is_ok());
    // The engine stays fail closed on such a config (lists are lowercased,
    // a negative limit refuses everything).
    let e = Engine::new(cfg);
    let v = refused(&e, &WHO, &limit_order("1", "1"), 0);
    assert_eq!((v.limit, v.level), ("max_qty", "key"));
}

#[test]
fn config_deserializes_with_string_decimals_and_refuses_unknown_fields() {
    let cfg: PretradeConfig = serde_json::from_str(
        r#"{"defaults":{"max_qty":"10","collar_pct":"5","order_types":["limit"]},
            "accounts":{"a1":{"max_open_orders":3}},"reference_max_age_ms":2000}"#,
    )
    .unwrap();
    assert_eq!(cfg.defaults.max_qty, Some(d("10")));
    assert_eq!(cfg.accounts["a1"].max_open_orders, Some(3));
    assert_eq!(
        cfg.max_tracked,
        rampart_policy::pretrade::DEFAULT_MAX_TRACKED
    );
    assert!(serde_json::from_str::<PretradeConfig>(r#"{"defaults":{"max_qtty":"1"}}"#).is_err());
}
