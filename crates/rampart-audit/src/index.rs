//! The search index behind `rampart audit search`: a SQLite file next to
//! the log (`<audit dir>/index.sqlite`, mode 0600, WAL) with one row per
//! entry.
//!
//! The index is **derived data**. It holds no event content beyond the
//! searchable columns — time, type, actor, account, decision, request id
//! — and answers a search with log indices; the caller reads the entries
//! from the log (`LogReader::get`), whose bytes are the ones the Merkle
//! tree covers. Deleting the file is always safe: the next
//! [`AuditIndex::catch_up`] rebuilds it.
//!
//! [`AuditIndex::catch_up`] is incremental: it indexes from the stored
//! `next_idx` to the end of the log in transactions of [`INDEX_BATCH`]
//! entries, each of which also advances `next_idx`, so an interrupted
//! catch-up resumes where it stopped. It follows the log:
//!
//! - entries pruned by retention (below the log's first index) lose their
//!   rows, and indexing skips forward to the first entry still present;
//! - if the index is ahead of the log, or the last indexed entry no longer
//!   has the bytes it had when indexed (its RFC 9162 leaf hash is kept),
//!   the log was replaced — restored from a backup, say — and the index is
//!   rebuilt from scratch.
//!
//! An entry that does not parse as an event is indexed with its index
//! only (every other column `NULL`): a search without filters lists it,
//! a filtered one does not.
//!
//! All SQL is static text with `?` parameters; filter values are only
//! ever bound, never spliced into the statement.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row as _;

use crate::event::{ActorKind, AuditEvent, Decision};
use crate::merkle::{leaf_hash, Hash};
use crate::sink::EntrySource;

/// File name of the index inside the audit directory.
pub const INDEX_FILE_NAME: &str = "index.sqlite";
/// Entries per catch-up transaction.
pub const INDEX_BATCH: usize = 1000;
/// Schema version (`PRAGMA user_version`); an index of another version is
/// dropped and rebuilt.
pub const INDEX_SCHEMA_VERSION: i64 = 1;

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const TARGET: &str = "rampart::audit";
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

const SCHEMA: &str = "\
CREATE TABLE IF NOT EXISTS events (
    idx INTEGER PRIMARY KEY,
    time_us INTEGER,
    type TEXT,
    actor TEXT,
    actor_kind TEXT,
    account TEXT,
    decision TEXT,
    request_id TEXT
);
CREATE INDEX IF NOT EXISTS events_time ON events (time_us);
CREATE INDEX IF NOT EXISTS events_type_time ON events (type, time_us);
CREATE INDEX IF NOT EXISTS events_actor_time ON events (actor, time_us);
CREATE INDEX IF NOT EXISTS events_account_time ON events (account, time_us);
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    next_idx INTEGER NOT NULL,
    last_leaf BLOB
);
INSERT OR IGNORE INTO meta (id, next_idx, last_leaf) VALUES (0, 0, NULL);
PRAGMA user_version = 1;
";

const DROP_SCHEMA: &str = "DROP TABLE IF EXISTS events; DROP TABLE IF EXISTS meta;";

const INSERT_EVENTS_PREFIX: &str = "INSERT OR REPLACE INTO events \
     (idx, time_us, type, actor, actor_kind, account, decision, request_id) ";
/// Rows per multi-row insert (8 parameters each, far below SQLite's limit
/// of 32,766 bound parameters).
const ROWS_PER_INSERT: usize = 200;
const SET_META: &str = "UPDATE meta SET next_idx = ?, last_leaf = ? WHERE id = 0";
const GET_META: &str = "SELECT next_idx, last_leaf FROM meta WHERE id = 0";

/// Errors of the index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// SQLite failed (open, schema, query).
    #[error("audit index: {0}")]
    Sqlite(String),
    /// The index file or its directory could not be created.
    #[error("audit index file {}: {reason}", path.display())]
    File {
        /// The index file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The log could not be read.
    #[error("reading the audit log for the index: {0}")]
    Source(String),
    /// An index beyond what SQLite's integers hold.
    #[error("log index {0} is too large for the index")]
    TooLarge(u64),
}

fn db(context: &str, e: &sqlx::Error) -> IndexError {
    IndexError::Sqlite(format!("{context}: {e}"))
}

fn to_i64(index: u64) -> Result<i64, IndexError> {
    i64::try_from(index).map_err(|_| IndexError::TooLarge(index))
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// A search. Every filter present must match; results are log indices in
/// increasing order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Events at or after this time (µs since the Unix epoch, UTC).
    pub since_us: Option<i64>,
    /// Events strictly before this time (µs).
    pub until_us: Option<i64>,
    /// Event type: exact (`auth.failure`), or a prefix when it ends with
    /// `*` (`auth.*`, `key.*`).
    pub event_type: Option<String>,
    /// Actor id (key id, user name, `rampart`), exact.
    pub actor: Option<String>,
    /// Account, exact.
    pub account: Option<String>,
    /// Decision.
    pub decision: Option<Decision>,
    /// Only indices strictly above this one (to page through results).
    pub after_idx: Option<u64>,
    /// At most this many results; `None` for all.
    pub limit: Option<u32>,
}

enum Bind {
    Int(i64),
    Text(String),
}

/// The next string after every string starting with `prefix`, in
/// SQLite's byte order (= code point order for UTF-8); `None` if there
/// is none.
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(c) = chars.pop() {
        let next = (u32::from(c).saturating_add(1)..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

impl Query {
    fn to_sql(&self) -> Result<(String, Vec<Bind>), IndexError> {
        let mut sql = String::from("SELECT idx FROM events WHERE 1 = 1");
        let mut binds = Vec::new();
        if let Some(since) = self.since_us {
            sql.push_str(" AND time_us >= ?");
            binds.push(Bind::Int(since));
        }
        if let Some(until) = self.until_us {
            sql.push_str(" AND time_us < ?");
            binds.push(Bind::Int(until));
        }
        if let Some(t) = &self.event_type {
            match t.strip_suffix('*') {
                Some(prefix) => {
                    sql.push_str(" AND type >= ?");
                    binds.push(Bind::Text(prefix.to_owned()));
                    if let Some(upper) = prefix_upper_bound(prefix) {
                        sql.push_str(" AND type < ?");
                        binds.push(Bind::Text(upper));
                    }
                }
                None => {
                    sql.push_str(" AND type = ?");
                    binds.push(Bind::Text(t.clone()));
                }
            }
        }
        if let Some(actor) = &self.actor {
            sql.push_str(" AND actor = ?");
            binds.push(Bind::Text(actor.clone()));
        }
        if let Some(account) = &self.account {
            sql.push_str(" AND account = ?");
            binds.push(Bind::Text(account.clone()));
        }
        if let Some(decision) = self.decision {
            sql.push_str(" AND decision = ?");
            binds.push(Bind::Text(decision.as_str().to_owned()));
        }
        if let Some(after) = self.after_idx {
            sql.push_str(" AND idx > ?");
            binds.push(Bind::Int(to_i64(after)?));
        }
        // A negative LIMIT is no limit in SQLite.
        sql.push_str(" ORDER BY idx LIMIT ?");
        binds.push(Bind::Int(self.limit.map_or(-1, i64::from)));
        Ok((sql, binds))
    }
}

/// One row of the index.
struct Row {
    idx: i64,
    time_us: Option<i64>,
    event_type: Option<String>,
    actor: Option<String>,
    actor_kind: Option<&'static str>,
    account: Option<String>,
    decision: Option<&'static str>,
    request_id: Option<String>,
}

fn actor_kind_name(kind: ActorKind) -> &'static str {
    match kind {
        ActorKind::Key => "key",
        ActorKind::User => "user",
        ActorKind::System => "system",
        ActorKind::Anonymous => "anonymous",
    }
}

impl Row {
    fn of_entry(idx: i64, entry: &[u8]) -> Self {
        match AuditEvent::from_entry(entry) {
            Ok(ev) => Row {
                idx,
                time_us: Some(ev.time_us),
                actor_kind: Some(actor_kind_name(ev.actor.kind)),
                decision: Some(ev.decision.as_str()),
                event_type: Some(ev.event_type),
                actor: Some(ev.actor.id),
                account: ev.account,
                request_id: ev.request_id,
            },
            Err(e) => {
                tracing::warn!(target: TARGET, index = idx, error = %e, "audit entry is not a valid event; indexed without fields");
                Row {
                    idx,
                    time_us: None,
                    event_type: None,
                    actor: None,
                    actor_kind: None,
                    account: None,
                    decision: None,
                    request_id: None,
                }
            }
        }
    }
}

/// The search index (see the module documentation).
#[derive(Debug, Clone)]
pub struct AuditIndex {
    pool: SqlitePool,
    path: PathBuf,
}

impl AuditIndex {
    /// Opens the index at `path`, creating it (mode 0600, parent
    /// directories 0700) if missing. An index with another schema version
    /// is emptied, to be rebuilt by [`AuditIndex::catch_up`].
    ///
    /// # Errors
    /// [`IndexError::File`] or [`IndexError::Sqlite`].
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, IndexError> {
        let path = path.as_ref().to_path_buf();
        create_private_file(&path)?;
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .map_err(|e| db("open", &e))?;
        let version: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(&pool)
            .await
            .map_err(|e| db("schema version", &e))?;
        if version != 0 && version != INDEX_SCHEMA_VERSION {
            tracing::warn!(target: TARGET, found = version, expected = INDEX_SCHEMA_VERSION, "audit index has another schema version; rebuilding it");
            sqlx::raw_sql(DROP_SCHEMA)
                .execute(&pool)
                .await
                .map_err(|e| db("drop old schema", &e))?;
        }
        sqlx::raw_sql(SCHEMA)
            .execute(&pool)
            .await
            .map_err(|e| db("create schema", &e))?;
        restrict_files(&path)?;
        Ok(Self { pool, path })
    }

    /// Opens [`INDEX_FILE_NAME`] in the audit directory.
    ///
    /// # Errors
    /// As [`AuditIndex::open`].
    pub async fn open_in_dir(audit_dir: impl AsRef<Path>) -> Result<Self, IndexError> {
        Self::open(audit_dir.as_ref().join(INDEX_FILE_NAME)).await
    }

    /// The index file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Index of the next entry to index (every entry below it that the log
    /// still holds is indexed).
    ///
    /// # Errors
    /// [`IndexError::Sqlite`].
    pub async fn next_index(&self) -> Result<u64, IndexError> {
        Ok(self.meta().await?.0)
    }

    async fn meta(&self) -> Result<(u64, Option<Hash>), IndexError> {
        let row = sqlx::query(GET_META)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| db("read meta", &e))?;
        let next: i64 = row.try_get(0).map_err(|e| db("read meta", &e))?;
        let leaf: Option<Vec<u8>> = row.try_get(1).map_err(|e| db("read meta", &e))?;
        let leaf = leaf.and_then(|l| Hash::try_from(l.as_slice()).ok());
        Ok((to_u64(next), leaf))
    }

    /// Indexes the entries of `src` not indexed yet, in transactions of
    /// [`INDEX_BATCH`]; drops rows of pruned entries; rebuilds if the log
    /// was replaced (see the module documentation). Returns the number of
    /// entries indexed by this call.
    ///
    /// The source is read synchronously between the (asynchronous)
    /// database writes.
    ///
    /// # Errors
    /// [`IndexError::Source`] if an entry cannot be read (entries before
    /// it are indexed and committed), [`IndexError::Sqlite`].
    pub async fn catch_up<Src: EntrySource>(&self, src: &Src) -> Result<u64, IndexError> {
        let first = src.first_index();
        let end = src.end_index();
        let (stored_next, last_leaf) = self.meta().await?;
        let mut next = stored_next;
        let mut leaf = last_leaf;

        let replaced = if next > end {
            Some(format!(
                "the index reaches entry {next} but the log ends at {end}"
            ))
        } else if next > first {
            let last = next.saturating_sub(1);
            match (src.entry(last), last_leaf) {
                (Ok(entry), Some(stored)) if leaf_hash(&entry) != stored => {
                    Some(format!("entry {last} differs from the one indexed"))
                }
                (Ok(_), _) => None,
                (Err(e), _) => {
                    return Err(IndexError::Source(format!("entry {last}: {e}")));
                }
            }
        } else {
            None
        };
        let has_pruned_rows: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM events WHERE idx < ?)")
                .bind(to_i64(first)?)
                .fetch_one(&self.pool)
                .await
                .map_err(|e| db("read", &e))?;
        if replaced.is_none() && next >= first && !has_pruned_rows {
            return self.index_from(src, next, end).await;
        }
        let mut tx = self
            .pool
            .begin_with(BEGIN_WRITE)
            .await
            .map_err(|e| db("begin", &e))?;
        if let Some(why) = replaced {
            tracing::warn!(target: TARGET, reason = %why, "the audit log was replaced (restored from a backup?); rebuilding the search index");
            sqlx::query("DELETE FROM events")
                .execute(&mut *tx)
                .await
                .map_err(|e| db("clear", &e))?;
            next = first;
            leaf = None;
        }
        if next < first {
            next = first;
            leaf = None;
        }
        // Rows of entries retention has pruned.
        sqlx::query("DELETE FROM events WHERE idx < ?")
            .bind(to_i64(first)?)
            .execute(&mut *tx)
            .await
            .map_err(|e| db("prune", &e))?;
        sqlx::query(SET_META)
            .bind(to_i64(next)?)
            .bind(leaf.map(|l| l.to_vec()))
            .execute(&mut *tx)
            .await
            .map_err(|e| db("write meta", &e))?;
        tx.commit().await.map_err(|e| db("commit", &e))?;
        self.index_from(src, next, end).await
    }

    /// Indexes `next .. end` batch by batch.
    async fn index_from<Src: EntrySource>(
        &self,
        src: &Src,
        mut next: u64,
        end: u64,
    ) -> Result<u64, IndexError> {
        let mut indexed = 0u64;
        while next < end {
            let (rows, last_leaf, read_error) = read_rows(src, next, end)?;
            if let Some(last) = rows.last() {
                let new_next = to_u64(last.idx).saturating_add(1);
                let mut tx = self
                    .pool
                    .begin_with(BEGIN_WRITE)
                    .await
                    .map_err(|e| db("begin", &e))?;
                // Many rows per statement: each statement is a round trip
                // to sqlx's SQLite worker thread, which cost more than the
                // insert itself (≈ 32 µs per entry one row at a time).
                for chunk in rows.chunks(ROWS_PER_INSERT) {
                    let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(INSERT_EVENTS_PREFIX);
                    q.push_values(chunk, |mut b, row| {
                        b.push_bind(row.idx)
                            .push_bind(row.time_us)
                            .push_bind(row.event_type.as_deref())
                            .push_bind(row.actor.as_deref())
                            .push_bind(row.actor_kind)
                            .push_bind(row.account.as_deref())
                            .push_bind(row.decision)
                            .push_bind(row.request_id.as_deref());
                    });
                    q.build()
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| db("insert", &e))?;
                }
                sqlx::query(SET_META)
                    .bind(to_i64(new_next)?)
                    .bind(last_leaf.map(|l| l.to_vec()))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| db("write meta", &e))?;
                tx.commit().await.map_err(|e| db("commit", &e))?;
                indexed = indexed.saturating_add(u64::try_from(rows.len()).unwrap_or(0));
                next = new_next;
            }
            if let Some(e) = read_error {
                return Err(e);
            }
            if rows.is_empty() {
                // The source ended before `end`: nothing more to read now.
                break;
            }
        }
        Ok(indexed)
    }

    /// Log indices of the entries matching `query`, in increasing order.
    ///
    /// # Errors
    /// [`IndexError::Sqlite`], [`IndexError::TooLarge`].
    pub async fn search(&self, query: &Query) -> Result<Vec<u64>, IndexError> {
        let (sql, binds) = query.to_sql()?;
        let mut q = sqlx::query_scalar::<_, i64>(&sql);
        for bind in binds {
            q = match bind {
                Bind::Int(v) => q.bind(v),
                Bind::Text(v) => q.bind(v),
            };
        }
        let rows = q
            .fetch_all(&self.pool)
            .await
            .map_err(|e| db("search", &e))?;
        Ok(rows.into_iter().map(to_u64).collect())
    }

    /// Closes the connections (checkpointing the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Reads up to [`INDEX_BATCH`] entries from `next` into rows, with the
/// leaf hash of the last one. A read error or a gap ends the batch and is
/// returned after the rows read before it.
#[allow(clippy::type_complexity, reason = "private helper")]
fn read_rows<Src: EntrySource>(
    src: &Src,
    next: u64,
    end: u64,
) -> Result<(Vec<Row>, Option<Hash>, Option<IndexError>), IndexError> {
    let mut rows = Vec::new();
    let mut leaf = None;
    let mut expected = next;
    for item in src.entries_from(next) {
        match item {
            Ok((index, entry)) => {
                if index >= end {
                    break;
                }
                if index != expected {
                    let e = IndexError::Source(format!(
                        "the log reader returned entry {index} where {expected} was expected"
                    ));
                    return Ok((rows, leaf, Some(e)));
                }
                rows.push(Row::of_entry(to_i64(index)?, &entry));
                leaf = Some(leaf_hash(&entry));
                expected = expected.saturating_add(1);
                if rows.len() >= INDEX_BATCH || expected >= end {
                    break;
                }
            }
            Err(e) => {
                let e = IndexError::Source(format!("entry {expected}: {e}"));
                return Ok((rows, leaf, Some(e)));
            }
        }
    }
    Ok((rows, leaf, None))
}

/// Creates `path` empty with mode 0600 if missing (so SQLite never
/// creates it with the umask's mode), and its parent directories (0700).
fn create_private_file(path: &Path) -> Result<(), IndexError> {
    let err = |e: std::io::Error| IndexError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt as _;
            builder.mode(0o700);
        }
        builder.create(parent).map_err(err)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path).map(drop).map_err(err)
}

/// Restricts the index and its WAL companions to their owner.
fn restrict_files(path: &Path) -> Result<(), IndexError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.as_os_str().to_owned();
            file.push(suffix);
            let file = PathBuf::from(file);
            if file.exists() {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).map_err(
                    |e| IndexError::File {
                        path: file.clone(),
                        reason: e.to_string(),
                    },
                )?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
