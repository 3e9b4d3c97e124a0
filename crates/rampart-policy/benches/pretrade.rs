//! Pre-trade hot path: `check` + `settle` of a limit order with every limit
//! configured at every level, over 10k accounts.
//!
//! `cargo bench -p rampart-policy --bench pretrade`
#![allow(missing_docs, reason = "bench binary")]
#![allow(clippy::unwrap_used, reason = "bench")]
#![allow(clippy::indexing_slicing, reason = "bench")]

use std::cell::Cell;
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use rampart_policy::pretrade::{Engine, Limits, Order, Outcome, PretradeConfig, Who};
use rust_decimal::Decimal;

const ACCOUNTS: usize = 10_000;
const CIDS: usize = 100_000;

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn all_limits(scale: u32) -> Limits {
    Limits {
        max_qty: Some(d("10") * Decimal::from(scale)),
        max_notional: Some(d("1000000") * Decimal::from(scale)),
        collar_pct: Some(d("5") * Decimal::from(scale)),
        max_open_orders: Some(100 * scale),
        order_types: Some(vec!["limit".into(), "market".into()]),
        time_in_force: Some(vec!["gtc".into(), "ioc".into(), "fok".into()]),
        duplicate_window_ms: Some(1_000),
    }
}

struct Fixture {
    engine: Engine,
    accounts: Vec<String>,
    keys: Vec<String>,
    cids: Vec<String>,
}

fn fixture() -> Fixture {
    let accounts: Vec<String> = (0..ACCOUNTS).map(|i| format!("acct-{i:05}")).collect();
    let keys: Vec<String> = (0..ACCOUNTS).map(|i| format!("key-{i:05}")).collect();
    let cids: Vec<String> = (0..CIDS).map(|i| format!("cid-{i:06}")).collect();
    let cfg = PretradeConfig {
        defaults: all_limits(4),
        instruments: HashMap::from([("BTC-USD".to_owned(), all_limits(3))]),
        accounts: accounts
            .iter()
            .map(|a| (a.clone(), all_limits(2)))
            .collect(),
        keys: keys.iter().map(|k| (k.clone(), all_limits(1))).collect(),
        reference_max_age_ms: u64::MAX / 4,
        fixed_prices: HashMap::from([("BTC-USD".to_owned(), d("65000"))]),
        max_tracked: 1_000_000,
    };
    let engine = Engine::new(cfg);
    engine.set_reference_price("BTC-USD", d("65000"), 0);
    Fixture {
        engine,
        accounts,
        keys,
        cids,
    }
}

/// 0.5
const QTY: Decimal = Decimal::from_parts(5, 0, 0, false, 1);
/// 65100.50, within the 5 % collar around 65000.
const PRICE: Decimal = Decimal::from_parts(6_510_050, 0, 0, false, 2);

fn order(cid: &str) -> Order<'_> {
    Order {
        symbol: "BTC-USD",
        side: "buy",
        order_type: "limit",
        qty: QTY,
        price: Some(PRICE),
        time_in_force: Some("gtc"),
        client_order_id: Some(cid),
    }
}

fn bench(c: &mut Criterion) {
    let f = fixture();
    let mut g = c.benchmark_group("pretrade");
    // One clock for every benchmark: tick `n` is both the time in ms and the
    // client order id's index, so an id comes back only 100 s later, well
    // outside the 1 s duplicate window.
    let tick = Cell::new(0usize);
    let next = || {
        let n = tick.get().wrapping_add(1);
        tick.set(n);
        (n, i64::try_from(n).unwrap())
    };

    g.bench_function("check_settle_done_limit_order_10k_accounts", |b| {
        b.iter(|| {
            let (n, now) = next();
            let a = n % ACCOUNTS;
            let who = Who {
                key_id: &f.keys[a],
                account_id: &f.accounts[a],
                parent_account_id: None,
            };
            let t = f
                .engine
                .check(&who, &order(&f.cids[n % CIDS]), now)
                .unwrap();
            f.engine.settle(black_box(t), Outcome::Done);
        });
    });

    // The same account every time (its state and limits stay in cache):
    // the floor of the hot path.
    g.bench_function("check_settle_done_limit_order_one_hot_account", |b| {
        let who = Who {
            key_id: &f.keys[7],
            account_id: &f.accounts[7],
            parent_account_id: None,
        };
        b.iter(|| {
            let (n, now) = next();
            let t = f
                .engine
                .check(&who, &order(&f.cids[n % CIDS]), now)
                .unwrap();
            f.engine.settle(black_box(t), Outcome::Done);
        });
    });

    // As the gateway runs it (`bench/authz.sh`): the order body parsed by
    // the strict parser, one account and key, a 10-minute duplicate window
    // and the default `max_tracked`, so the engine holds the full bound of
    // client order ids (each id new, the oldest evicted per order).
    {
        let engine = Engine::new(PretradeConfig {
            defaults: Limits {
                duplicate_window_ms: Some(600_000),
                ..all_limits(4)
            },
            fixed_prices: HashMap::from([("BTC-USD".to_owned(), d("65000"))]),
            ..PretradeConfig::default()
        });
        let who = Who {
            key_id: "key-bench",
            account_id: "acct-bench",
            parent_account_id: None,
        };
        let bodies: Vec<Vec<u8>> = (0..400_000)
            .map(|i| {
                format!(
                    r#"{{"symbol":"BTC-USD","side":"buy","type":"limit","qty":"0.01","price":"64000.00","client_order_id":"b-{i}","time_in_force":"gtc"}}"#
                )
                .into_bytes()
            })
            .collect();
        let n = Cell::new(0usize);
        g.bench_function("parse_check_settle_one_account_full_window", |b| {
            b.iter(|| {
                let i = n.get();
                n.set(i + 1);
                // Past the bodies, ids repeat: by then the bound has
                // evicted them (a refusal would be a bench bug).
                let parsed =
                    rampart_policy::pretrade::parse_order(&bodies[i % bodies.len()]).unwrap();
                let t = engine.check(&who, &parsed.as_order(), 1).unwrap();
                t.settle(Outcome::Done);
            });
        });
    }

    let order_ids: Vec<String> = (0..CIDS).map(|i| format!("ord-{i:06}")).collect();
    g.bench_function("check_settle_resting_then_close_10k_accounts", |b| {
        b.iter(|| {
            let (n, now) = next();
            let a = n % ACCOUNTS;
            let who = Who {
                key_id: &f.keys[a],
                account_id: &f.accounts[a],
                parent_account_id: None,
            };
            let id = &order_ids[n % CIDS];
            let t = f
                .engine
                .check(&who, &order(&f.cids[n % CIDS]), now)
                .unwrap();
            f.engine.settle(t, Outcome::Resting(id.clone()));
            f.engine.order_closed(&f.accounts[a], id);
        });
    });

    let mut i = 0usize;
    g.bench_function("check_refused_collar_10k_accounts", |b| {
        let off = Order {
            price: Some(d("80000")),
            ..order("x")
        };
        b.iter(|| {
            i = i.wrapping_add(1);
            let a = i % ACCOUNTS;
            let who = Who {
                key_id: &f.keys[a],
                account_id: &f.accounts[a],
                parent_account_id: None,
            };
            black_box(f.engine.check(&who, &off, 0).unwrap_err());
        });
    });

    // Threads on distinct accounts; figure = wall time per operation
    // (throughput across the threads, not the latency of one call). Tick
    // `m` (time in ms, client order id, account) never repeats across
    // rounds; an account is only ever used by one thread.
    const THREADS: usize = 2;
    let shared = Arc::new(fixture());
    let rounds = Arc::new(AtomicUsize::new(0));
    g.bench_function("check_settle_done_2_threads_wall_per_op", |b| {
        b.iter_custom(|iters| {
            let per_thread = usize::try_from(iters.div_ceil(THREADS as u64)).unwrap();
            let base = rounds.fetch_add(per_thread * THREADS, Ordering::Relaxed);
            let start = Instant::now();
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    let f = shared.clone();
                    std::thread::spawn(move || {
                        for n in 0..per_thread {
                            let m = base + n * THREADS + t;
                            let a = m % ACCOUNTS;
                            let who = Who {
                                key_id: &f.keys[a],
                                account_id: &f.accounts[a],
                                parent_account_id: None,
                            };
                            let now = i64::try_from(m).unwrap();
                            let tk = f
                                .engine
                                .check(&who, &order(&f.cids[m % CIDS]), now)
                                .unwrap();
                            tk.settle(Outcome::Done);
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
            start.elapsed()
        });
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
