#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]
//! The search index over a few thousand events: every filter against a
//! brute-force scan, incremental catch-up, retention pruning, a replaced
//! log (shorter, or same indices with other bytes), unparsable entries,
//! read errors, schema versions, file mode and WAL, and that filter
//! values are bound, not spliced.

use std::path::Path;

use rampart_audit::event::types;
use rampart_audit::index::{AuditIndex, IndexError, Query, INDEX_FILE_NAME};
use rampart_audit::sink::EntrySource;
use rampart_audit::{Actor, AuditEvent, ClockSync, Decision, Timestamp};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::ConnectOptions as _;

#[derive(Debug, Clone, Default)]
struct MemLog {
    first: u64,
    entries: Vec<Vec<u8>>,
    fail_at: Option<u64>,
}

impl MemLog {
    fn of(events: &[AuditEvent]) -> Self {
        Self {
            first: 0,
            entries: events.iter().map(|e| e.to_entry().unwrap()).collect(),
            fail_at: None,
        }
    }
}

impl EntrySource for MemLog {
    type Error = String;

    fn first_index(&self) -> u64 {
        self.first
    }

    fn end_index(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    fn entries_from(
        &self,
        index: u64,
    ) -> impl Iterator<Item = Result<(u64, Vec<u8>), String>> + '_ {
        (index.max(self.first)..self.end_index()).map(move |i| {
            if Some(i) == self.fail_at {
                Err("checksum mismatch".to_owned())
            } else {
                Ok((i, self.entries[(i - self.first) as usize].clone()))
            }
        })
    }

    fn entry(&self, index: u64) -> Result<Vec<u8>, String> {
        index
            .checked_sub(self.first)
            .and_then(|i| self.entries.get(i as usize))
            .cloned()
            .ok_or_else(|| format!("no entry {index}"))
    }
}

const T0: i64 = 1_700_000_000_000_000;
const TYPES: [&str; 6] = [
    types::AUTH_SUCCESS,
    types::AUTH_FAILURE,
    types::AUTHZ_DECISION,
    types::APIKEY_CREATED,
    "key.data_key_created",
    types::GATEWAY_START,
];

/// Event `i` of a generated history (`salt` changes every event).
fn event(i: u64, salt: u64) -> AuditEvent {
    let decision = match (i + salt) % 4 {
        0 => Decision::Allow,
        1 => Decision::Deny,
        2 => Decision::StepUp,
        _ => Decision::Info,
    };
    let actor = match i % 11 {
        0 => Actor::system(),
        10 => Actor::anonymous("o'brien\"; DROP TABLE events; --"),
        n => Actor::key(format!("k{}", (n + salt) % 7)),
    };
    let mut e = AuditEvent::new(
        Timestamp {
            micros: T0 + i as i64 * 1_000_000,
            sync: ClockSync::Synced,
        },
        TYPES[((i + salt) % 6) as usize],
        actor,
        "PlaceOrder",
        "/api/v3/order",
        decision,
    )
    .request_id(format!("req-{i}"));
    if matches!(i % 3, 1 | 2) {
        e = e.account(format!("acct-{}", (i + salt) % 5));
    }
    e
}

fn history(n: u64, salt: u64) -> Vec<AuditEvent> {
    (0..n).map(|i| event(i, salt)).collect()
}

/// What the index must answer: a scan over the events.
fn scan(events: &[AuditEvent], first: u64, q: &Query) -> Vec<u64> {
    let mut out: Vec<u64> = events
        .iter()
        .enumerate()
        .map(|(i, e)| (i as u64, e))
        .filter(|(i, _)| *i >= first)
        .filter(|(_, e)| q.since_us.is_none_or(|s| e.time_us >= s))
        .filter(|(_, e)| q.until_us.is_none_or(|u| e.time_us < u))
        .filter(|(_, e)| match &q.event_type {
            None => true,
            Some(t) => match t.strip_suffix('*') {
                Some(prefix) => e.event_type.starts_with(prefix),
                None => e.event_type == *t,
            },
        })
        .filter(|(_, e)| q.actor.as_ref().is_none_or(|a| e.actor.id == *a))
        .filter(|(_, e)| q.account.is_none() || e.account == q.account)
        .filter(|(_, e)| q.decision.is_none_or(|d| e.decision == d))
        .filter(|(i, _)| q.after_idx.is_none_or(|a| *i > a))
        .map(|(i, _)| i)
        .collect();
    if let Some(limit) = q.limit {
        out.truncate(limit as usize);
    }
    out
}

fn queries() -> Vec<Query> {
    let t = |s: i64| T0 + s * 1_000_000;
    let mut qs = vec![
        Query::default(),
        Query {
            since_us: Some(t(100)),
            until_us: Some(t(200)),
            ..Query::default()
        },
        Query {
            since_us: Some(t(2999)),
            ..Query::default()
        },
        Query {
            until_us: Some(t(1)),
            ..Query::default()
        },
        Query {
            event_type: Some("auth.*".into()),
            ..Query::default()
        },
        Query {
            event_type: Some("key.*".into()),
            since_us: Some(t(500)),
            ..Query::default()
        },
        Query {
            event_type: Some("*".into()),
            ..Query::default()
        },
        Query {
            event_type: Some("auth.".into()),
            ..Query::default()
        },
        Query {
            actor: Some("rampart".into()),
            ..Query::default()
        },
        Query {
            account: Some("acct-3".into()),
            decision: Some(Decision::Deny),
            ..Query::default()
        },
        Query {
            actor: Some("k2".into()),
            account: Some("acct-1".into()),
            since_us: Some(t(10)),
            until_us: Some(t(2500)),
            event_type: Some(types::AUTHZ_DECISION.into()),
            ..Query::default()
        },
        Query {
            decision: Some(Decision::StepUp),
            limit: Some(25),
            after_idx: Some(1000),
            ..Query::default()
        },
        Query {
            limit: Some(0),
            ..Query::default()
        },
        Query {
            actor: Some("nobody".into()),
            ..Query::default()
        },
    ];
    for t in TYPES {
        qs.push(Query {
            event_type: Some(t.into()),
            ..Query::default()
        });
    }
    qs
}

async fn check_all(index: &AuditIndex, events: &[AuditEvent], first: u64) {
    for q in queries() {
        let got = index.search(&q).await.unwrap();
        assert_eq!(got, scan(events, first, &q), "{q:?}");
    }
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn searches_match_a_scan_and_catch_up_is_incremental() {
    let dir = tempfile::tempdir().unwrap();
    let events = history(3000, 0);
    let index = AuditIndex::open_in_dir(dir.path()).await.unwrap();
    assert_eq!(index.path(), dir.path().join(INDEX_FILE_NAME));
    assert_eq!(index.next_index().await.unwrap(), 0);

    // First part of the log, then the rest.
    assert_eq!(
        index.catch_up(&MemLog::of(&events[..1234])).await.unwrap(),
        1234
    );
    assert_eq!(index.next_index().await.unwrap(), 1234);
    check_all(&index, &events[..1234], 0).await;
    let log = MemLog::of(&events);
    assert_eq!(index.catch_up(&log).await.unwrap(), 3000 - 1234);
    assert_eq!(index.catch_up(&log).await.unwrap(), 0);
    check_all(&index, &events, 0).await;

    // Some sanity on the generated data: every filter finds something.
    for q in queries() {
        let n = scan(&events, 0, &q).len();
        let empty_expected = q.actor.as_deref() == Some("nobody")
            || q.limit == Some(0)
            || q.event_type.as_deref() == Some("auth.");
        assert!(n > 0 || empty_expected, "{q:?}");
    }

    // Reopened: the state persists.
    index.close().await;
    let index = AuditIndex::open_in_dir(dir.path()).await.unwrap();
    assert_eq!(index.next_index().await.unwrap(), 3000);
    assert_eq!(index.catch_up(&log).await.unwrap(), 0);
    check_all(&index, &events, 0).await;

    // The file is private and in WAL mode.
    let path = dir.path().join(INDEX_FILE_NAME);
    assert_eq!(mode(&path), 0o600);
    for suffix in ["-wal", "-shm"] {
        let companion = dir.path().join(format!("{INDEX_FILE_NAME}{suffix}"));
        if companion.exists() {
            assert_eq!(mode(&companion), 0o600, "{suffix}");
        }
    }
    let mut conn = SqliteConnectOptions::new()
        .filename(&path)
        .connect()
        .await
        .unwrap();
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(journal, "wal");
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        indexes,
        [
            "events_account_time",
            "events_actor_time",
            "events_time",
            "events_type_time"
        ]
    );
}

#[tokio::test]
async fn filter_values_are_bound_not_spliced() {
    let dir = tempfile::tempdir().unwrap();
    let events = history(300, 0);
    let index = AuditIndex::open_in_dir(dir.path()).await.unwrap();
    index.catch_up(&MemLog::of(&events)).await.unwrap();
    let hostile = "o'brien\"; DROP TABLE events; --";
    let got = index
        .search(&Query {
            actor: Some(hostile.into()),
            ..Query::default()
        })
        .await
        .unwrap();
    assert_eq!(got, (0..300).filter(|i| i % 11 == 10).collect::<Vec<_>>());
    for value in ["' OR '1'='1", "%", "_", "auth.%", "auth._*", "\0"] {
        for q in [
            Query {
                actor: Some(value.into()),
                ..Query::default()
            },
            Query {
                event_type: Some(value.into()),
                ..Query::default()
            },
            Query {
                account: Some(value.into()),
                ..Query::default()
            },
        ] {
            assert_eq!(index.search(&q).await.unwrap(), Vec::<u64>::new(), "{q:?}");
        }
    }
    // Still all there.
    assert_eq!(index.search(&Query::default()).await.unwrap().len(), 300);
}

#[tokio::test]
async fn pruned_entries_lose_their_rows() {
    let dir = tempfile::tempdir().unwrap();
    let events = history(2000, 0);
    let index = AuditIndex::open_in_dir(dir.path()).await.unwrap();
    index.catch_up(&MemLog::of(&events)).await.unwrap();

    // Retention prunes everything below 1500.
    let mut log = MemLog::of(&events);
    log.entries.drain(..1500);
    log.first = 1500;
    assert_eq!(index.catch_up(&log).await.unwrap(), 0);
    check_all(&index, &events, 1500).await;
    assert_eq!(index.search(&Query::default()).await.unwrap()[0], 1500);

    // The index was behind the pruning point: it skips forward.
    let dir2 = tempfile::tempdir().unwrap();
    let index2 = AuditIndex::open_in_dir(dir2.path()).await.unwrap();
    index2.catch_up(&MemLog::of(&events[..100])).await.unwrap();
    assert_eq!(index2.catch_up(&log).await.unwrap(), 500);
    assert_eq!(index2.next_index().await.unwrap(), 2000);
    check_all(&index2, &events, 1500).await;
}

#[tokio::test]
async fn a_replaced_log_rebuilds_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let index = AuditIndex::open_in_dir(dir.path()).await.unwrap();
    let original = history(3000, 0);
    index.catch_up(&MemLog::of(&original)).await.unwrap();

    // Restored from an older backup: shorter, and different from 0 on.
    let restored = history(2000, 1);
    assert_eq!(index.catch_up(&MemLog::of(&restored)).await.unwrap(), 2000);
    check_all(&index, &restored, 0).await;

    // Same length, then longer, but other bytes: the last indexed entry
    // gives it away.
    let other = history(2500, 2);
    assert_eq!(index.catch_up(&MemLog::of(&other)).await.unwrap(), 2500);
    check_all(&index, &other, 0).await;

    // Appending to the same log is not a replacement.
    let log = MemLog::of(&other);
    let mut grown = log.clone();
    grown.entries.push(event(2500, 2).to_entry().unwrap());
    assert_eq!(index.catch_up(&grown).await.unwrap(), 1);
}

#[tokio::test]
async fn unparsable_entries_and_read_errors() {
    let dir = tempfile::tempdir().unwrap();
    let index = AuditIndex::open_in_dir(dir.path()).await.unwrap();
    let events = history(2000, 0);
    let mut log = MemLog::of(&events);
    log.entries[5] = b"not an event".to_vec();
    log.fail_at = Some(1500);

    // Everything before the unreadable entry is committed.
    let err = index.catch_up(&log).await.unwrap_err();
    assert!(
        matches!(err, IndexError::Source(ref m) if m.contains("1500")),
        "{err}"
    );
    assert_eq!(index.next_index().await.unwrap(), 1500);
    log.fail_at = None;
    assert_eq!(index.catch_up(&log).await.unwrap(), 500);

    // The unparsable entry is listed by an unfiltered search only.
    let all = index.search(&Query::default()).await.unwrap();
    assert_eq!(all, (0..2000).collect::<Vec<_>>());
    let q = Query {
        event_type: Some(events[5].event_type.clone()),
        ..Query::default()
    };
    let got = index.search(&q).await.unwrap();
    let mut expected = scan(&events, 0, &q);
    expected.retain(|i| *i != 5);
    assert_eq!(got, expected);
}

#[tokio::test]
async fn another_schema_version_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let events = history(500, 0);
    let index = AuditIndex::open_in_dir(dir.path()).await.unwrap();
    index.catch_up(&MemLog::of(&events)).await.unwrap();
    index.close().await;
    {
        let mut conn = SqliteConnectOptions::new()
            .filename(dir.path().join(INDEX_FILE_NAME))
            .connect()
            .await
            .unwrap();
        sqlx::query("PRAGMA user_version = 7")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let index = AuditIndex::open_in_dir(dir.path()).await.unwrap();
    assert_eq!(index.next_index().await.unwrap(), 0);
    assert!(index.search(&Query::default()).await.unwrap().is_empty());
    assert_eq!(index.catch_up(&MemLog::of(&events)).await.unwrap(), 500);
    check_all(&index, &events, 0).await;
}

#[tokio::test]
async fn a_deleted_index_is_rebuilt_and_an_empty_log_is_fine() {
    let dir = tempfile::tempdir().unwrap();
    let index = AuditIndex::open_in_dir(dir.path().join("sub"))
        .await
        .unwrap();
    assert_eq!(index.catch_up(&MemLog::default()).await.unwrap(), 0);
    assert!(index.search(&Query::default()).await.unwrap().is_empty());
    index.close().await;
    std::fs::remove_dir_all(dir.path().join("sub")).unwrap();
    let index = AuditIndex::open_in_dir(dir.path().join("sub"))
        .await
        .unwrap();
    let events = history(50, 0);
    assert_eq!(index.catch_up(&MemLog::of(&events)).await.unwrap(), 50);
    check_all(&index, &events, 0).await;
}

// ---------------------------------------------------------------------
// End to end: the log on disk through `LogReader`.

const ORIGIN: &str = "rampart.test/audit";

#[tokio::test]
async fn end_to_end_from_the_log_on_disk() {
    use rampart_audit::log::{AuditLog, LogConfig};
    use rampart_audit::note::Ed25519Signer;
    use rampart_audit::reader::LogReader;

    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit");
    let signer = std::sync::Arc::new(Ed25519Signer::from_seed(ORIGIN, &[7u8; 32]).unwrap());
    let (log, _) = AuditLog::open(LogConfig::new(&audit, ORIGIN), signer).unwrap();
    let events = history(3500, 0);
    for e in &events[..2500] {
        log.append(e.to_entry().unwrap()).unwrap();
    }
    log.sync().await.unwrap();

    let index = AuditIndex::open_in_dir(&audit).await.unwrap();
    let reader = LogReader::open(&audit).unwrap();
    assert_eq!(index.catch_up(&reader).await.unwrap(), 2500);
    check_all(&index, &events[..2500], 0).await;

    // More entries: a fresh reader sees them, the index catches up.
    for e in &events[2500..] {
        log.append(e.to_entry().unwrap()).unwrap();
    }
    log.sync().await.unwrap();
    let reader = LogReader::open(&audit).unwrap();
    assert_eq!(index.catch_up(&reader).await.unwrap(), 1000);
    check_all(&index, &events, 0).await;

    // The caller fetches the entries the search names.
    let q = Query {
        event_type: Some("auth.*".into()),
        account: Some("acct-2".into()),
        since_us: Some(T0 + 1_000 * 1_000_000),
        limit: Some(50),
        ..Query::default()
    };
    let hits = index.search(&q).await.unwrap();
    assert_eq!(hits.len(), 50);
    for idx in hits {
        let e = AuditEvent::from_entry(&reader.get(idx).unwrap()).unwrap();
        assert_eq!(e, events[idx as usize]);
        assert!(e.event_type.starts_with("auth."));
        assert_eq!(e.account.as_deref(), Some("acct-2"));
        assert!(e.time_us >= T0 + 1_000 * 1_000_000);
    }
    // The index lives in the audit directory, private.
    assert_eq!(mode(&audit.join(INDEX_FILE_NAME)), 0o600);
    log.close().unwrap();
}
