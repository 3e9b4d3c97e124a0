//! The embedded SQLite backend (sqlx): one database file under the data
//! dir, WAL journal, foreign keys enforced, `secure_delete` on (deleted or
//! overwritten bytes, such as a shredded account secret, are zeroed in the
//! file rather than left in free space), schema from embedded migrations.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::error::ErrorKind;
use sqlx::query::Query;
use sqlx::sqlite::{
    Sqlite, SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::Row;
use zeroize::Zeroizing;

use crate::error::{Result, StoreError};
use crate::model::{
    Account, AccountKey, ApiKey, CipherRef, CipherSwap, DekState, EnrolmentToken, KeyMetadata,
    KeyPermissions, KeyState, MfaEnrolment, Operator, OperatorCredential, StoredCiphertext,
    WithdrawalAddress, COSE_EDDSA, COSE_ES256, MAX_KYC_TIER, MFA_ALGORITHMS,
};
use crate::store::Store;

/// File name of the database inside the data dir.
pub const DB_FILE_NAME: &str = "rampart.sqlite3";

/// How long a connection waits for another writer before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections of a file-backed pool (one writer at a time, readers in
/// parallel thanks to WAL).
const FILE_POOL_SIZE: u32 = 4;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

const ACCOUNT_COLUMNS: &str = "id, name, parent_id, created_at_ms, kyc_tier, risk_profile";
const API_KEY_COLUMNS: &str = "key_id, account_id, scheme, scopes, allowed_cidrs, \
     expires_at_ms, cert_fingerprint, profile, state, secret_ciphertext, public_key, \
     created_at_ms, revoked_at_ms, permissions";
const MFA_COLUMNS: &str = "account_id, kind, seed_ciphertext, created_at_ms, last_used_step, \
     recovery_hashes, algorithm, digits, period_secs";
const WITHDRAWAL_COLUMNS: &str = "account_id, address, asset, label, added_at_ms, effective_at_ms";
const KEY_META_COLUMNS: &str =
    "purpose, version, wrapped_dek, encryptions, state, created_at_ms, root_key_version";
const ACCOUNT_KEY_COLUMNS: &str = "account_id, secret, created_at_ms, shredded_at_ms";
const OPERATOR_COLUMNS: &str = "name, user_handle, created_ms, disabled, disabled_ms";
const OPERATOR_CREDENTIAL_COLUMNS: &str = "credential_id, operator, algorithm, public_key, \
     sign_count, created_ms, last_used_ms, revoked_ms";

/// Pages of [`Store::scan_ciphertexts`]: API-key secrets by key id, then
/// previous API-key secrets by key id (with their key's account), then MFA
/// seeds by account and kind, each from the start or strictly after a
/// position. Text compares byte-wise (SQLite's default `BINARY` collation),
/// which is Rust's `String` order, so pages follow [`CipherRef`]'s order.
const SCAN_KEYS_FIRST: &str = "SELECT key_id, account_id, secret_ciphertext AS ciphertext \
     FROM api_keys WHERE secret_ciphertext IS NOT NULL ORDER BY key_id LIMIT ?";
const SCAN_KEYS_AFTER: &str = "SELECT key_id, account_id, secret_ciphertext AS ciphertext \
     FROM api_keys WHERE secret_ciphertext IS NOT NULL AND key_id > ? ORDER BY key_id LIMIT ?";
const SCAN_PREVIOUS_FIRST: &str = "SELECT p.key_id AS key_id, k.account_id AS account_id, \
     p.secret_ciphertext AS ciphertext \
     FROM api_key_previous_secrets p JOIN api_keys k ON k.key_id = p.key_id \
     ORDER BY p.key_id LIMIT ?";
const SCAN_PREVIOUS_AFTER: &str = "SELECT p.key_id AS key_id, k.account_id AS account_id, \
     p.secret_ciphertext AS ciphertext \
     FROM api_key_previous_secrets p JOIN api_keys k ON k.key_id = p.key_id \
     WHERE p.key_id > ? ORDER BY p.key_id LIMIT ?";
const SCAN_SEEDS_FIRST: &str = "SELECT account_id, kind, seed_ciphertext AS ciphertext \
     FROM mfa_enrolments ORDER BY account_id, kind LIMIT ?";
const SCAN_SEEDS_AFTER: &str = "SELECT account_id, kind, seed_ciphertext AS ciphertext \
     FROM mfa_enrolments WHERE (account_id, kind) > (?, ?) ORDER BY account_id, kind LIMIT ?";

/// Starts a write transaction that takes the write lock at once, so no
/// statement in it can fail on a lock upgrade.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// The SQLite implementation of [`Store`].
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    path: Option<PathBuf>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path`, creating its
    /// parent directories (mode 0700 on Unix) and running pending
    /// migrations. The file is restricted to its owner (0600) on Unix.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_private_dir(parent)?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .pragma("secure_delete", "ON")
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(FILE_POOL_SIZE)
            .connect_with(options)
            .await
            .map_err(|e| backend("open database", &e))?;
        restrict_file(path)?;
        let store = Self {
            pool,
            path: Some(path.to_path_buf()),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Opens the database [`DB_FILE_NAME`] inside `data_dir`, creating the
    /// directory if missing.
    pub async fn open_in_dir(data_dir: impl AsRef<Path>) -> Result<Self> {
        Self::open(data_dir.as_ref().join(DB_FILE_NAME)).await
    }

    /// Opens a private in-memory database (one connection, gone on drop);
    /// for tests.
    pub async fn open_in_memory() -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .in_memory(true)
            .foreign_keys(true)
            .pragma("secure_delete", "ON")
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(|e| backend("open in-memory database", &e))?;
        let store = Self { pool, path: None };
        store.migrate().await?;
        Ok(store)
    }

    /// The database file, `None` when in memory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Copies every committed change from the WAL into the database file
    /// and truncates the WAL to zero bytes (`PRAGMA wal_checkpoint(TRUNCATE)`),
    /// so no older copy of overwritten or deleted bytes (a shredded secret,
    /// a replaced ciphertext) survives in the WAL. A no-op in memory.
    /// Fails with a backend error if concurrent readers or writers kept it
    /// from completing within the busy timeout.
    pub async fn checkpoint(&self) -> Result<()> {
        let row = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| backend("checkpoint", &e))?;
        let busy: i64 = row.try_get(0).map_err(|e| backend("checkpoint", &e))?;
        if busy != 0 {
            return Err(StoreError::Backend(
                "checkpoint blocked by concurrent access".into(),
            ));
        }
        Ok(())
    }

    /// Closes every connection, checkpointing the WAL.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// `Ok` if the MFA enrolment exists, `NotFound("mfa enrolment")` if not.
    async fn mfa_exists(&self, account_id: &str, kind: &str) -> Result<()> {
        sqlx::query("SELECT 1 FROM mfa_enrolments WHERE account_id = ? AND kind = ?")
            .bind(account_id)
            .bind(kind)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| map_err("mfa enrolment", &e))?
            .map(|_| ())
            .ok_or(StoreError::NotFound("mfa enrolment"))
    }

    async fn migrate(&self) -> Result<()> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Backend(format!("migration failed: {e}")))
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| StoreError::Backend(format!("cannot create data dir: {e}")))
}

/// Restricts the database file and its WAL companions (`-wal`, `-shm`,
/// when present) to their owner.
fn restrict_file(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut files = vec![path.to_path_buf()];
        for suffix in ["-wal", "-shm"] {
            let mut companion = path.as_os_str().to_owned();
            companion.push(suffix);
            let companion = PathBuf::from(companion);
            if companion.exists() {
                files.push(companion);
            }
        }
        for file in files {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| StoreError::Backend(format!("cannot restrict database file: {e}")))?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Maps a sqlx error to a [`StoreError`] for a record kind, keeping values
/// out of the message.
fn map_err(entity: &'static str, e: &sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::RowNotFound => StoreError::NotFound(entity),
        sqlx::Error::Database(db) => match db.kind() {
            ErrorKind::UniqueViolation => StoreError::Conflict(entity),
            ErrorKind::ForeignKeyViolation => StoreError::MissingReference(entity),
            _ => StoreError::Backend(format!(
                "{entity}: database error {}: {}",
                db.code().unwrap_or_default(),
                db.message()
            )),
        },
        other => backend(entity, other),
    }
}

fn backend(what: &str, e: &sqlx::Error) -> StoreError {
    StoreError::Backend(format!("{what}: {e}"))
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Backend(format!("stored {what} is malformed"))
}

fn to_i64(v: u64, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Backend(format!("{what} out of range")))
}

fn account_from(row: &SqliteRow) -> Result<Account> {
    let e = |e: sqlx::Error| map_err("account", &e);
    let kyc_tier: i64 = row.try_get("kyc_tier").map_err(e)?;
    Ok(Account {
        id: row.try_get("id").map_err(e)?,
        name: row.try_get("name").map_err(e)?,
        parent_id: row.try_get("parent_id").map_err(e)?,
        created_at_ms: row.try_get("created_at_ms").map_err(e)?,
        kyc_tier: u8::try_from(kyc_tier)
            .ok()
            .filter(|t| *t <= MAX_KYC_TIER)
            .ok_or_else(|| corrupt("kyc tier"))?,
        risk_profile: row.try_get("risk_profile").map_err(e)?,
    })
}

/// The KYC tier as stored, or `Conflict` above [`MAX_KYC_TIER`].
fn checked_kyc_tier(tier: u8) -> Result<i64> {
    if tier > MAX_KYC_TIER {
        return Err(StoreError::Conflict("kyc tier out of range"));
    }
    Ok(i64::from(tier))
}

fn string_list(json: &str, what: &str) -> Result<Vec<String>> {
    serde_json::from_str(json).map_err(|_| corrupt(what))
}

fn api_key_from(row: &SqliteRow) -> Result<ApiKey> {
    let e = |e: sqlx::Error| map_err("api key", &e);
    let scopes: String = row.try_get("scopes").map_err(e)?;
    let cidrs: String = row.try_get("allowed_cidrs").map_err(e)?;
    let state: String = row.try_get("state").map_err(e)?;
    let permissions: String = row.try_get("permissions").map_err(e)?;
    Ok(ApiKey {
        key_id: row.try_get("key_id").map_err(e)?,
        account_id: row.try_get("account_id").map_err(e)?,
        scheme: row.try_get("scheme").map_err(e)?,
        scopes: string_list(&scopes, "api key scopes")?,
        allowed_cidrs: string_list(&cidrs, "api key cidrs")?,
        expires_at_ms: row.try_get("expires_at_ms").map_err(e)?,
        cert_fingerprint: row.try_get("cert_fingerprint").map_err(e)?,
        profile: row.try_get("profile").map_err(e)?,
        state: KeyState::parse(&state).ok_or_else(|| corrupt("api key state"))?,
        revoked_at_ms: row.try_get("revoked_at_ms").map_err(e)?,
        secret_ciphertext: row.try_get("secret_ciphertext").map_err(e)?,
        public_key: row.try_get("public_key").map_err(e)?,
        created_at_ms: row.try_get("created_at_ms").map_err(e)?,
        permissions: permissions_from_json(&permissions)?,
    })
}

/// Reads stored permissions: a JSON object only (serde would also take a
/// positional array, which no version writes and whose fields a newer
/// version could shift), unknown fields ignored, missing ones defaulted,
/// a known field of the wrong type an error.
fn permissions_from_json(json: &str) -> Result<KeyPermissions> {
    let malformed = || corrupt("api key permissions");
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(json).map_err(|_| malformed())?;
    serde_json::from_value(serde_json::Value::Object(object)).map_err(|_| malformed())
}

fn json_permissions(permissions: &KeyPermissions) -> Result<String> {
    serde_json::to_string(permissions)
        .map_err(|_| StoreError::Backend("cannot encode api key permissions".into()))
}

fn mfa_from(row: &SqliteRow) -> Result<MfaEnrolment> {
    let e = |e: sqlx::Error| map_err("mfa enrolment", &e);
    let last_used_step: Option<i64> = row.try_get("last_used_step").map_err(e)?;
    let recovery: String = row.try_get("recovery_hashes").map_err(e)?;
    let digits: i64 = row.try_get("digits").map_err(e)?;
    let period_secs: i64 = row.try_get("period_secs").map_err(e)?;
    let enrolment = MfaEnrolment {
        account_id: row.try_get("account_id").map_err(e)?,
        kind: row.try_get("kind").map_err(e)?,
        seed_ciphertext: row.try_get("seed_ciphertext").map_err(e)?,
        created_at_ms: row.try_get("created_at_ms").map_err(e)?,
        last_used_step: last_used_step
            .map(|s| u64::try_from(s).map_err(|_| corrupt("mfa step")))
            .transpose()?,
        recovery_hashes: string_list(&recovery, "recovery code hashes")?,
        algorithm: row.try_get("algorithm").map_err(e)?,
        digits: u8::try_from(digits).map_err(|_| corrupt("mfa parameters"))?,
        period_secs: u32::try_from(period_secs).map_err(|_| corrupt("mfa parameters"))?,
    };
    if !mfa_parameters_valid(&enrolment) {
        return Err(corrupt("mfa parameters"));
    }
    Ok(enrolment)
}

/// Whether the one-time-password parameters of an enrolment are ones the
/// store accepts (see [`Store::put_mfa`]).
fn mfa_parameters_valid(enrolment: &MfaEnrolment) -> bool {
    MFA_ALGORITHMS.contains(&enrolment.algorithm.as_str())
        && (6..=10).contains(&enrolment.digits)
        && enrolment.period_secs >= 1
}

/// Whether `hash` looks like a lowercase hex SHA-256 digest.
fn is_sha256_hex(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks an enrolment before it is written and returns its stored
/// `last_used_step` and recovery hashes.
fn checked_mfa(enrolment: &MfaEnrolment) -> Result<(Option<i64>, String)> {
    if !mfa_parameters_valid(enrolment) {
        return Err(StoreError::Conflict("mfa parameters"));
    }
    let hashes = &enrolment.recovery_hashes;
    let repeated = hashes
        .iter()
        .enumerate()
        .any(|(i, h)| hashes.iter().skip(i + 1).any(|other| other == h));
    if repeated || !hashes.iter().all(|h| is_sha256_hex(h)) {
        return Err(StoreError::Conflict("recovery code hash"));
    }
    let step = enrolment
        .last_used_step
        .map(|s| i64::try_from(s).map_err(|_| StoreError::Conflict("mfa step out of range")))
        .transpose()?;
    Ok((step, json_list(hashes)?))
}

fn withdrawal_from(row: &SqliteRow) -> std::result::Result<WithdrawalAddress, sqlx::Error> {
    Ok(WithdrawalAddress {
        account_id: row.try_get("account_id")?,
        address: row.try_get("address")?,
        asset: row.try_get("asset")?,
        label: row.try_get("label")?,
        added_at_ms: row.try_get("added_at_ms")?,
        effective_at_ms: row.try_get("effective_at_ms")?,
    })
}

fn key_meta_from(row: &SqliteRow) -> Result<KeyMetadata> {
    let e = |e: sqlx::Error| map_err("key metadata", &e);
    let version: i64 = row.try_get("version").map_err(e)?;
    let encryptions: i64 = row.try_get("encryptions").map_err(e)?;
    let state: String = row.try_get("state").map_err(e)?;
    let root_key_version: i64 = row.try_get("root_key_version").map_err(e)?;
    Ok(KeyMetadata {
        purpose: row.try_get("purpose").map_err(e)?,
        version: u32::try_from(version).map_err(|_| corrupt("key version"))?,
        wrapped_dek: row.try_get("wrapped_dek").map_err(e)?,
        encryptions: u64::try_from(encryptions).map_err(|_| corrupt("encryption count"))?,
        state: DekState::parse(&state).ok_or_else(|| corrupt("key state"))?,
        created_at_ms: row.try_get("created_at_ms").map_err(e)?,
        root_key_version: u32::try_from(root_key_version)
            .map_err(|_| corrupt("root key version"))?,
    })
}

fn account_key_from(row: &SqliteRow) -> Result<AccountKey> {
    let e = |e: sqlx::Error| map_err("account key", &e);
    let secret: Option<Vec<u8>> = row.try_get("secret").map_err(e)?;
    let key = AccountKey {
        account_id: row.try_get("account_id").map_err(e)?,
        secret: secret.map(Zeroizing::new),
        created_at_ms: row.try_get("created_at_ms").map_err(e)?,
        shredded_at_ms: row.try_get("shredded_at_ms").map_err(e)?,
    };
    if key.secret.is_some() == key.shredded_at_ms.is_some() {
        return Err(corrupt("account key"));
    }
    Ok(key)
}

/// The three kinds of encrypted field, in scan order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum FieldKind {
    Secret,
    PreviousSecret,
    Seed,
}

impl FieldKind {
    fn of(location: &CipherRef) -> Self {
        match location {
            CipherRef::ApiKeySecret { .. } => Self::Secret,
            CipherRef::ApiKeyPreviousSecret { .. } => Self::PreviousSecret,
            CipherRef::MfaSeed { .. } => Self::Seed,
        }
    }

    fn entity(self) -> &'static str {
        match self {
            Self::Secret => "api key",
            Self::PreviousSecret => "previous secret",
            Self::Seed => "mfa enrolment",
        }
    }

    /// The page query of this kind from `after` (which must be of this
    /// kind) or from its start, still missing the `LIMIT` bind.
    fn page_query(self, after: Option<&CipherRef>) -> Query<'_, Sqlite, SqliteArguments<'_>> {
        match (self, after) {
            (Self::Secret, Some(CipherRef::ApiKeySecret { key_id })) => {
                sqlx::query(SCAN_KEYS_AFTER).bind(key_id.as_str())
            }
            (Self::PreviousSecret, Some(CipherRef::ApiKeyPreviousSecret { key_id })) => {
                sqlx::query(SCAN_PREVIOUS_AFTER).bind(key_id.as_str())
            }
            (Self::Seed, Some(CipherRef::MfaSeed { account_id, kind })) => {
                sqlx::query(SCAN_SEEDS_AFTER)
                    .bind(account_id.as_str())
                    .bind(kind.as_str())
            }
            (Self::Secret, _) => sqlx::query(SCAN_KEYS_FIRST),
            (Self::PreviousSecret, _) => sqlx::query(SCAN_PREVIOUS_FIRST),
            (Self::Seed, _) => sqlx::query(SCAN_SEEDS_FIRST),
        }
    }
}

fn ciphertext_from(row: &SqliteRow, kind: FieldKind) -> Result<StoredCiphertext> {
    let e = |e: sqlx::Error| map_err(kind.entity(), &e);
    let account_id: String = row.try_get("account_id").map_err(e)?;
    let location = match kind {
        FieldKind::Seed => CipherRef::MfaSeed {
            account_id: account_id.clone(),
            kind: row.try_get("kind").map_err(e)?,
        },
        FieldKind::Secret => CipherRef::ApiKeySecret {
            key_id: row.try_get("key_id").map_err(e)?,
        },
        FieldKind::PreviousSecret => CipherRef::ApiKeyPreviousSecret {
            key_id: row.try_get("key_id").map_err(e)?,
        },
    };
    Ok(StoredCiphertext {
        location,
        account_id,
        ciphertext: row.try_get("ciphertext").map_err(e)?,
    })
}

/// The statement inserting one API key (see [`insert_api_key`]).
fn insert_api_key_sql() -> String {
    format!(
        "INSERT INTO api_keys ({API_KEY_COLUMNS}) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
}

/// The insert of one API key, ready to execute on the pool or in a
/// transaction; `sql` comes from [`insert_api_key_sql`].
fn insert_api_key<'q>(
    sql: &'q str,
    key: &'q ApiKey,
) -> Result<Query<'q, Sqlite, SqliteArguments<'q>>> {
    Ok(sqlx::query(sql)
        .bind(&key.key_id)
        .bind(&key.account_id)
        .bind(&key.scheme)
        .bind(json_list(&key.scopes)?)
        .bind(json_list(&key.allowed_cidrs)?)
        .bind(key.expires_at_ms)
        .bind(&key.cert_fingerprint)
        .bind(&key.profile)
        .bind(key.state.as_str())
        .bind(&key.secret_ciphertext)
        .bind(&key.public_key)
        .bind(key.created_at_ms)
        .bind(key.revoked_at_ms)
        .bind(json_permissions(&key.permissions)?))
}

fn json_list(list: &[String]) -> Result<String> {
    serde_json::to_string(list).map_err(|_| StoreError::Backend("cannot encode list".into()))
}

fn operator_from(row: &SqliteRow) -> Result<Operator> {
    let e = |e: sqlx::Error| map_err("operator", &e);
    let disabled: i64 = row.try_get("disabled").map_err(e)?;
    Ok(Operator {
        name: row.try_get("name").map_err(e)?,
        user_handle: row.try_get("user_handle").map_err(e)?,
        created_ms: row.try_get("created_ms").map_err(e)?,
        disabled: match disabled {
            0 => false,
            1 => true,
            _ => return Err(corrupt("operator state")),
        },
        disabled_ms: row.try_get("disabled_ms").map_err(e)?,
    })
}

fn operator_credential_from(row: &SqliteRow) -> Result<OperatorCredential> {
    let e = |e: sqlx::Error| map_err("operator credential", &e);
    let algorithm: i64 = row.try_get("algorithm").map_err(e)?;
    let sign_count: i64 = row.try_get("sign_count").map_err(e)?;
    Ok(OperatorCredential {
        credential_id: row.try_get("credential_id").map_err(e)?,
        operator: row.try_get("operator").map_err(e)?,
        algorithm: i32::try_from(algorithm).map_err(|_| corrupt("credential algorithm"))?,
        public_key: row.try_get("public_key").map_err(e)?,
        sign_count: u32::try_from(sign_count).map_err(|_| corrupt("signature counter"))?,
        created_ms: row.try_get("created_ms").map_err(e)?,
        last_used_ms: row.try_get("last_used_ms").map_err(e)?,
        revoked_ms: row.try_get("revoked_ms").map_err(e)?,
    })
}

impl Store for SqliteStore {
    async fn create_account(&self, account: &Account) -> Result<()> {
        let kyc_tier = checked_kyc_tier(account.kyc_tier)?;
        let sql = format!("INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)");
        sqlx::query(&sql)
            .bind(&account.id)
            .bind(&account.name)
            .bind(&account.parent_id)
            .bind(account.created_at_ms)
            .bind(kyc_tier)
            .bind(&account.risk_profile)
            .execute(&self.pool)
            .await
            .map_err(|e| map_err("account", &e))?;
        Ok(())
    }

    async fn set_account_kyc(
        &self,
        id: &str,
        kyc_tier: u8,
        risk_profile: Option<&str>,
    ) -> Result<()> {
        let kyc_tier = checked_kyc_tier(kyc_tier)?;
        let done = sqlx::query("UPDATE accounts SET kyc_tier = ?, risk_profile = ? WHERE id = ?")
            .bind(kyc_tier)
            .bind(risk_profile)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(|e| map_err("account", &e))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("account"));
        }
        Ok(())
    }

    async fn get_account(&self, id: &str) -> Result<Account> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| map_err("account", &e))?;
        account_from(&row)
    }

    async fn list_sub_accounts(&self, parent_id: &str) -> Result<Vec<Account>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE parent_id = ? ORDER BY id");
        let rows = sqlx::query(&sql)
            .bind(parent_id)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| map_err("account", &e))?;
        rows.iter().map(account_from).collect()
    }

    async fn list_accounts(&self) -> Result<Vec<Account>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY id");
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| map_err("account", &e))?;
        rows.iter().map(account_from).collect()
    }

    async fn create_api_key(&self, key: &ApiKey) -> Result<()> {
        let sql = insert_api_key_sql();
        insert_api_key(&sql, key)?
            .execute(&self.pool)
            .await
            .map_err(|e| map_err("api key", &e))?;
        Ok(())
    }

    async fn create_api_keys(&self, keys: &[ApiKey]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let sql = insert_api_key_sql();
        let mut tx = self
            .pool
            .begin_with(BEGIN_WRITE)
            .await
            .map_err(|e| map_err("api key", &e))?;
        for key in keys {
            insert_api_key(&sql, key)?
                .execute(&mut *tx)
                .await
                .map_err(|e| map_err("api key", &e))?;
        }
        tx.commit().await.map_err(|e| map_err("api key", &e))
    }

    async fn set_api_key_secret(&self, key_id: &str, ciphertext: &[u8]) -> Result<()> {
        let done = sqlx::query("UPDATE api_keys SET secret_ciphertext = ? WHERE key_id = ?")
            .bind(ciphertext)
            .bind(key_id)
            .execute(&self.pool)
            .await
            .map_err(|e| map_err("api key", &e))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("api key"));
        }
        Ok(())
    }

    async fn set_api_key_permissions(
        &self,
        key_id: &str,
        permissions: &KeyPermissions,
    ) -> Result<()> {
        let done = sqlx::query("UPDATE api_keys SET permissions = ? WHERE key_id = ?")
            .bind(json_permissions(permissions)?)
            .bind(key_id)
            .execute(&self.pool)
            .await
            .map_err(|e| map_err("api key", &e))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("api key"));
        }
        Ok(())
    }

    async fn get_api_key(&self, key_id: &str) -> Result<ApiKey> {
        let sql = format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_id = ?");
        let row = sqlx::query(&sql)
            .bind(key_id)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| map_err("api key", &e))?;
        api_key_from(&row)
    }

    async fn list_api_keys(&self, account_id: &str) -> Result<Vec<ApiKey>> {
        let sql =
            format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE account_id = ? ORDER BY key_id");
        let rows = sqlx::query(&sql)
            .bind(account_id)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| map_err("api key", &e))?;
        rows.iter().map(api_key_from).collect()
    }

    async fn list_all_api_keys(&self, after: Option<&str>, limit: u32) -> Result<Vec<ApiKey>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows = match after {
            None => {
                let sql = format!("SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY key_id LIMIT ?");
                sqlx::query(&sql)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
            }
            Some(after) => {
                let sql = format!(
                    "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_id > ? \
                     ORDER BY key_id LIMIT ?"
                );
                sqlx::query(&sql)
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(|e| map_err("api key", &e))?;
        rows.iter().map(api_key_from).collect()
    }

    async fn revoke_api_key(&self, key_id: &str, at_ms: i64) -> Result<()> {
        let done = sqlx::query(
            "UPDATE api_keys SET state = 'revoked', revoked_at_ms = COALESCE(revoked_at_ms, ?) \
             WHERE key_id = ?",
        )
        .bind(at_ms)
        .bind(key_id)
        .execute(&self.pool)
        .await
        .map_err(|e| map_err("api key", &e))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("api key"));
        }
        Ok(())
    }

    async fn rotate_api_key_secret(
        &self,
        key_id: &str,
        new_ciphertext: &[u8],
        previous_valid_until_ms: i64,
    ) -> Result<()> {
        let mut tx = self
            .pool
            .begin_with(BEGIN_WRITE)
            .await
            .map_err(|e| backend("rotate api key secret", &e))?;
        let has_secret: Option<bool> = sqlx::query_scalar(
            "SELECT secret_ciphertext IS NOT NULL FROM api_keys WHERE key_id = ?",
        )
        .bind(key_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| map_err("api key", &e))?;
        match has_secret {
            None => return Err(StoreError::NotFound("api key")),
            Some(false) => return Err(StoreError::Conflict("api key secret")),
            Some(true) => {}
        }
        // The current bytes move inside the database. (An upsert after a
        // SELECT needs the SELECT's WHERE clause to parse unambiguously.)
        // An early return above drops `tx`, which rolls it back.
        sqlx::query(
            "INSERT INTO api_key_previous_secrets (key_id, secret_ciphertext, valid_until_ms) \
             SELECT key_id, secret_ciphertext, ? FROM api_keys WHERE key_id = ? \
             ON CONFLICT (key_id) DO UPDATE SET \
             secret_ciphertext = excluded.secret_ciphertext, \
             valid_until_ms = excluded.valid_until_ms",
        )
        .bind(previous_valid_until_ms)
        .bind(key_id)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_err("previous secret", &e))?;
        sqlx::query("UPDATE api_keys SET secret_ciphertext = ? WHERE key_id = ?")
            .bind(new_ciphertext)
            .bind(key_id)
            .execute(&mut *tx)
            .await
            .map_err(|e| map_err("api key", &e))?;
        tx.commit()
            .await
            .map_err(|e| backend("rotate api key secret", &e))
    }

    async fn get_previous_secret(&self, key_id: &str) -> Result<Option<(Vec<u8>, i64)>> {
        // One statement: the key's existence and its previous secret come
        // from the same snapshot.
        let row = sqlx::query(
            "SELECT p.secret_ciphertext AS ciphertext, p.valid_until_ms AS valid_until_ms \
             FROM api_keys k LEFT JOIN api_key_previous_secrets p ON p.key_id = k.key_id \
             WHERE k.key_id = ?",
        )
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| map_err("previous secret", &e))?
        .ok_or(StoreError::NotFound("api key"))?;
        let e = |e: sqlx::Error| map_err("previous secret", &e);
        let ciphertext: Option<Vec<u8>> = row.try_get("ciphertext").map_err(e)?;
        let valid_until_ms: Option<i64> = row.try_get("valid_until_ms").map_err(e)?;
        match (ciphertext, valid_until_ms) {
            (Some(ciphertext), Some(valid_until_ms)) => Ok(Some((ciphertext, valid_until_ms))),
            (None, None) => Ok(None),
            _ => Err(corrupt("previous secret")),
        }
    }

    async fn drop_expired_previous_secrets(&self, now_ms: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM api_key_previous_secrets WHERE valid_until_ms <= ?")
            .bind(now_ms)
            .execute(&self.pool)
            .await
            .map_err(|e| map_err("previous secret", &e))?;
        Ok(done.rows_affected())
    }

    async fn advance_key_counter(&self, key_id: &str, nonce: u64) -> Result<bool> {
        let nonce = i64::try_from(nonce).map_err(|_| StoreError::Conflict("nonce out of range"))?;
        // One statement, so the comparison and the write are atomic: the
        // update applies only to a strictly greater nonce, and a nonce
        // that is not applied changes no row.
        let done = sqlx::query(
            "INSERT INTO key_counters (key_id, last_nonce) VALUES (?, ?) \
             ON CONFLICT (key_id) DO UPDATE SET last_nonce = excluded.last_nonce \
             WHERE excluded.last_nonce > key_counters.last_nonce",
        )
        .bind(key_id)
        .bind(nonce)
        .execute(&self.pool)
        .await
        .map_err(|e| map_err("key counter", &e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn get_key_counter(&self, key_id: &str) -> Result<Option<u64>> {
        let nonce: Option<i64> =
            sqlx::query_scalar("SELECT last_nonce FROM key_counters WHERE key_id = ?")
                .bind(key_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| map_err("key counter", &e))?;
        nonce
            .map(|n| u64::try_from(n).map_err(|_| corrupt("key counter")))
            .transpose()
    }

    async fn set_key_nonce_window(&self, key_id: &str, window: u64) -> Result<()> {
        let window =
            i64::try_from(window).map_err(|_| StoreError::Conflict("nonce out of range"))?;
        sqlx::query(
            "INSERT INTO key_counters (key_id, last_nonce, nonce_window) VALUES (?, 0, ?) \
             ON CONFLICT (key_id) DO UPDATE SET nonce_window = excluded.nonce_window",
        )
        .bind(key_id)
        .bind(window)
        .execute(&self.pool)
        .await
        .map_err(|e| map_err("key counter", &e))?;
        Ok(())
    }

    async fn get_key_nonce_window(&self, key_id: &str) -> Result<u64> {
        let w: Option<i64> =
            sqlx::query_scalar("SELECT nonce_window FROM key_counters WHERE key_id = ?")
                .bind(key_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| map_err("key counter", &e))?;
        w.map_or(Ok(0), |w| {
            u64::try_from(w).map_err(|_| corrupt("key counter"))
        })
    }

    async fn accept_windowed_nonce(&self, key_id: &str, nonce: u64, window: u64) -> Result<bool> {
        let out_of_range = || StoreError::Conflict("nonce out of range");
        let nonce = i64::try_from(nonce).map_err(|_| out_of_range())?;
        let window = i64::try_from(window).map_err(|_| out_of_range())?;
        let mut tx = self
            .pool
            .begin_with(BEGIN_WRITE)
            .await
            .map_err(|e| backend("accept nonce", &e))?;
        let highest: Option<i64> =
            sqlx::query_scalar("SELECT last_nonce FROM key_counters WHERE key_id = ?")
                .bind(key_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| map_err("key counter", &e))?;
        let highest = highest.unwrap_or(0);
        if nonce <= highest.saturating_sub(window) {
            return Ok(false);
        }
        let inserted = sqlx::query(
            "INSERT INTO key_window_nonces (key_id, nonce) VALUES (?, ?) \
             ON CONFLICT (key_id, nonce) DO NOTHING",
        )
        .bind(key_id)
        .bind(nonce)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_err("key counter", &e))?;
        if inserted.rows_affected() == 0 {
            return Ok(false);
        }
        let new_highest = highest.max(nonce);
        sqlx::query(
            "INSERT INTO key_counters (key_id, last_nonce) VALUES (?, ?) \
             ON CONFLICT (key_id) DO UPDATE SET last_nonce = excluded.last_nonce",
        )
        .bind(key_id)
        .bind(new_highest)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_err("key counter", &e))?;
        sqlx::query("DELETE FROM key_window_nonces WHERE key_id = ? AND nonce <= ?")
            .bind(key_id)
            .bind(new_highest.saturating_sub(window))
            .execute(&mut *tx)
            .await
            .map_err(|e| map_err("key counter", &e))?;
        tx.commit().await.map_err(|e| backend("accept nonce", &e))?;
        Ok(true)
    }

    async fn put_mfa(&self, enrolment: &MfaEnrolment) -> Result<()> {
        let (last_used_step, recovery_hashes) = checked_mfa(enrolment)?;
        // One statement. Replacing the same enrolment (same sealed seed and
        // period) keeps the higher of the two last used steps, so a stale
        // read-modify-write cannot reopen a used step to replay.
        let sql = format!(
            "INSERT INTO mfa_enrolments ({MFA_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (account_id, kind) DO UPDATE SET \
             last_used_step = CASE \
               WHEN excluded.seed_ciphertext = mfa_enrolments.seed_ciphertext \
                AND excluded.period_secs = mfa_enrolments.period_secs \
                AND mfa_enrolments.last_used_step IS NOT NULL \
                AND (excluded.last_used_step IS NULL \
                     OR excluded.last_used_step < mfa_enrolments.last_used_step) \
               THEN mfa_enrolments.last_used_step \
               ELSE excluded.last_used_step END, \
             seed_ciphertext = excluded.seed_ciphertext, \
             created_at_ms = excluded.created_at_ms, \
             recovery_hashes = excluded.recovery_hashes, \
             algorithm = excluded.algorithm, \
             digits = excluded.digits, \
             period_secs = excluded.period_secs"
        );
        sqlx::query(&sql)
            .bind(&enrolment.account_id)
            .bind(&enrolment.kind)
            .bind(&enrolment.seed_ciphertext)
            .bind(enrolment.created_at_ms)
            .bind(last_used_step)
            .bind(recovery_hashes)
            .bind(&enrolment.algorithm)
            .bind(i64::from(enrolment.digits))
            .bind(i64::from(enrolment.period_secs))
            .execute(&self.pool)
            .await
            .map_err(|e| map_err("mfa enrolment", &e))?;
        Ok(())
    }

    async fn advance_mfa_step(&self, account_id: &str, kind: &str, step: u64) -> Result<bool> {
        let step =
            i64::try_from(step).map_err(|_| StoreError::Conflict("mfa step out of range"))?;
        // One conditional statement, so the comparison and the write are
        // atomic across connections: a step not above the stored one
        // changes no row.
        let done = sqlx::query(
            "UPDATE mfa_enrolments SET last_used_step = ?1 \
             WHERE account_id = ?2 AND kind = ?3 \
             AND (last_used_step IS NULL OR last_used_step < ?1)",
        )
        .bind(step)
        .bind(account_id)
        .bind(kind)
        .execute(&self.pool)
        .await
        .map_err(|e| map_err("mfa enrolment", &e))?;
        if done.rows_affected() > 0 {
            return Ok(true);
        }
        self.mfa_exists(account_id, kind).await?;
        Ok(false)
    }

    async fn consume_recovery_code(
        &self,
        account_id: &str,
        kind: &str,
        hash: &str,
    ) -> Result<bool> {
        // One statement: the hash is removed only from a list that holds
        // it, so of concurrent uses of one code exactly one changes a row.
        let done = sqlx::query(
            "UPDATE mfa_enrolments SET recovery_hashes = \
             (SELECT json_group_array(value ORDER BY key) \
              FROM json_each(mfa_enrolments.recovery_hashes) WHERE value <> ?1) \
             WHERE account_id = ?2 AND kind = ?3 \
             AND EXISTS (SELECT 1 FROM json_each(mfa_enrolments.recovery_hashes) \
                         WHERE value = ?1)",
        )
        .bind(hash)
        .bind(account_id)
        .bind(kind)
        .execute(&self.pool)
        .await
        .map_err(|e| map_err("mfa enrolment", &e))?;
        if done.rows_affected() > 0 {
            return Ok(true);
        }
        self.mfa_exists(account_id, kind).await?;
        Ok(false)
    }

    async fn delete_mfa(&self, account_id: &str, kind: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM mfa_enrolments WHERE account_id = ? AND kind = ?")
            .bind(account_id)
            .bind(kind)
            .execute(&self.pool)
            .await
            .map_err(|e| map_err("mfa enrolment", &e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn get_mfa(&self, account_id: &str, kind: &str) -> Result<MfaEnrolment> {
        let sql =
            format!("SELECT {MFA_COLUMNS} FROM mfa_enrolments WHERE account_id = ? AND kind = ?");
        let row = sqlx::query(&sql)
            .bind(account_id)
            .bind(kind)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| map_err("mfa enrolment", &e))?;
        mfa_from(&row)
    }

    async fn list_mfa(&self, account_id: &str) -> Result<Vec<MfaEnrolment>> {
        let sql =
            format!("SELECT {MFA_COLUMNS} FROM mfa_enrolments WHERE account_id = ? ORDER BY kind");
        let rows = sqlx::query(&sql)
            .bind(account_id)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| map_err("mfa enrolment", &e))?;
        rows.iter().map(mfa_from).collect()
    }

    async fn add_withdrawal_address(&self, address: &WithdrawalAddress) -> Result<()> {
        if address.effective_at_ms < address.added_at_ms {
            return Err(StoreError::Conflict("withdrawal address effective time"));
        }
        let sql = format!(
            "INSERT INTO withdrawal_addresses ({WITHDRAWAL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
        );
        sqlx::query(&sql)
            .bind(&address.account_id)
            .bind(&address.address)
            .bind(&address.asset)
            .bind(&address.label)
            .bind(address.added_at_ms)
            .bind(address.effective_at_ms)
            .execute(&self.pool)
            .await
            .map_err(|e| map_err("withdrawal address", &e))?;
        Ok(())
    }

    async fn remove_withdrawal_address(&self, account_id: &str, address: &str) -> Result<bool> {
        let done =
            sqlx::query("DELETE FROM withdrawal_addresses WHERE account_id = ? AND address = ?")
                .bind(account_id)
                .bind(address)
                .execute(&self.pool)
                .await
                .map_err(|e| map_err("withdrawal address", &e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_withdrawal_addresses(&self, account_id: &str) -> Result<Vec<WithdrawalAddress>> {
        let sql = format!(
            "SELECT {WITHDRAWAL_COLUMNS} FROM withdrawal_addresses WHERE account_id = ? \
             ORDER BY address"
        );
        let rows = sqlx::query(&sql)
            .bind(account_id)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| map_err("withdrawal address", &e))?;
        rows.iter()
            .map(|r| withdrawal_from(r).map_err(|e| map_err("withdrawal address", &e)))
            .collect()
    }

    async fn put_account_key(&self, key: &AccountKey) -> Result<()> {
        let (Some(secret), None) = (&key.secret, key.shredded_at_ms) else {
            return Err(StoreError::Conflict("account key"));
        };
        let sql =
            format!("INSERT INTO account_keys ({ACCOUNT_KEY_COLUMNS}) VALUES (?, ?, ?, NULL)");
        sqlx::query(&sql)
            .bind(&key.account_id)
            .bind(secret.as_slice())
            .bind(key.created_at_ms)
            .execute(&self.pool)
            .await
            .map_err(|e| map_err("account key", &e))?;
        Ok(())
    }

    async fn get_account_key(&self, account_id: &str) -> Result<AccountKey> {
        let sql = format!("SELECT {ACCOUNT_KEY_COLUMNS} FROM account_keys WHERE account_id = ?");
        let row = sqlx::query(&sql)
            .bind(account_id)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| map_err("account key", &e))?;
        account_key_from(&row)
    }

    async fn shred_account_key(&self, account_id: &str, at_ms: i64) -> Result<()> {
        let done = sqlx::query(
            "UPDATE account_keys SET secret = NULL, shredded_at_ms = COALESCE(shredded_at_ms, ?) \
             WHERE account_id = ?",
        )
        .bind(at_ms)
        .bind(account_id)
        .execute(&self.pool)
        .await
        .map_err(|e| map_err("account key", &e))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("account key"));
        }
        Ok(())
    }

    async fn put_key_metadata(&self, meta: &KeyMetadata) -> Result<()> {
        let sql =
            format!("INSERT INTO key_metadata ({KEY_META_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)");
        sqlx::query(&sql)
            .bind(&meta.purpose)
            .bind(i64::from(meta.version))
            .bind(&meta.wrapped_dek)
            .bind(to_i64(meta.encryptions, "encryption count")?)
            .bind(meta.state.as_str())
            .bind(meta.created_at_ms)
            .bind(i64::from(meta.root_key_version))
            .execute(&self.pool)
            .await
            .map_err(|e| map_err("key metadata", &e))?;
        Ok(())
    }

    async fn list_key_metadata(&self, purpose: &str) -> Result<Vec<KeyMetadata>> {
        let sql = format!(
            "SELECT {KEY_META_COLUMNS} FROM key_metadata WHERE purpose = ? ORDER BY version"
        );
        let rows = sqlx::query(&sql)
            .bind(purpose)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| map_err("key metadata", &e))?;
        rows.iter().map(key_meta_from).collect()
    }

    async fn add_encryptions(&self, purpose: &str, version: u32, by: u64) -> Result<u64> {
        let by = to_i64(by, "encryption increment")?;
        // The guard keeps SQLite from overflowing the integer into a float.
        let row = sqlx::query(
            "UPDATE key_metadata SET encryptions = encryptions + ?1 \
             WHERE purpose = ?2 AND version = ?3 AND encryptions <= 9223372036854775807 - ?1 \
             RETURNING encryptions",
        )
        .bind(by)
        .bind(purpose)
        .bind(i64::from(version))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| map_err("key metadata", &e))?;
        match row {
            Some(row) => {
                let n: i64 = row
                    .try_get("encryptions")
                    .map_err(|e| map_err("key metadata", &e))?;
                u64::try_from(n).map_err(|_| corrupt("encryption count"))
            }
            None => {
                let exists =
                    sqlx::query("SELECT 1 FROM key_metadata WHERE purpose = ? AND version = ?")
                        .bind(purpose)
                        .bind(i64::from(version))
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(|e| map_err("key metadata", &e))?;
                Err(match exists {
                    Some(_) => StoreError::Conflict("encryption count"),
                    None => StoreError::NotFound("key metadata"),
                })
            }
        }
    }

    async fn update_wrapped_dek(
        &self,
        purpose: &str,
        version: u32,
        wrapped_dek: &[u8],
        root_key_version: u32,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE key_metadata SET wrapped_dek = ?, root_key_version = ? \
             WHERE purpose = ? AND version = ?",
        )
        .bind(wrapped_dek)
        .bind(i64::from(root_key_version))
        .bind(purpose)
        .bind(i64::from(version))
        .execute(&self.pool)
        .await
        .map_err(|e| map_err("key metadata", &e))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("key metadata"));
        }
        Ok(())
    }

    async fn set_key_state(&self, purpose: &str, version: u32, state: DekState) -> Result<()> {
        let done =
            sqlx::query("UPDATE key_metadata SET state = ? WHERE purpose = ? AND version = ?")
                .bind(state.as_str())
                .bind(purpose)
                .bind(i64::from(version))
                .execute(&self.pool)
                .await
                .map_err(|e| map_err("key metadata", &e))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("key metadata"));
        }
        Ok(())
    }

    async fn set_min_decrypt_version(&self, purpose: &str, version: u32) -> Result<()> {
        let done = sqlx::query(
            "INSERT INTO key_min_versions (purpose, min_version) VALUES (?, ?) \
             ON CONFLICT (purpose) DO UPDATE SET min_version = excluded.min_version \
             WHERE excluded.min_version >= key_min_versions.min_version",
        )
        .bind(purpose)
        .bind(i64::from(version))
        .execute(&self.pool)
        .await
        .map_err(|e| map_err("minimum decryption version", &e))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict("minimum decryption version"));
        }
        Ok(())
    }

    async fn min_decrypt_version(&self, purpose: &str) -> Result<Option<u32>> {
        let row = sqlx::query("SELECT min_version FROM key_min_versions WHERE purpose = ?")
            .bind(purpose)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| map_err("minimum decryption version", &e))?;
        match row {
            None => Ok(None),
            Some(row) => {
                let v: i64 = row
                    .try_get("min_version")
                    .map_err(|e| map_err("minimum decryption version", &e))?;
                u32::try_from(v)
                    .map(Some)
                    .map_err(|_| corrupt("minimum decryption version"))
            }
        }
    }

    async fn count_ciphertexts(&self) -> Result<u64> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM api_keys WHERE secret_ciphertext IS NOT NULL) \
             + (SELECT COUNT(*) FROM api_key_previous_secrets) \
             + (SELECT COUNT(*) FROM mfa_enrolments)",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| backend("count ciphertexts", &e))?;
        let n: i64 = row
            .try_get(0)
            .map_err(|e| backend("count ciphertexts", &e))?;
        u64::try_from(n).map_err(|_| corrupt("ciphertext count"))
    }

    async fn scan_ciphertexts(
        &self,
        after: Option<&CipherRef>,
        limit: u32,
    ) -> Result<Vec<StoredCiphertext>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Every query reads one snapshot; each walks a primary-key index
        // from the `after` position (keyset pagination, no OFFSET). Kinds
        // before the one of `after` are done; later ones start at the top.
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| backend("scan ciphertexts", &e))?;
        let mut page = Vec::new();
        let from = after.map_or(FieldKind::Secret, FieldKind::of);
        for kind in [
            FieldKind::Secret,
            FieldKind::PreviousSecret,
            FieldKind::Seed,
        ] {
            if kind < from {
                continue;
            }
            let rest =
                i64::from(limit).saturating_sub(i64::try_from(page.len()).unwrap_or(i64::MAX));
            if rest <= 0 {
                break;
            }
            let rows = kind
                .page_query(after)
                .bind(rest)
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| map_err(kind.entity(), &e))?;
            for row in &rows {
                page.push(ciphertext_from(row, kind)?);
            }
        }
        tx.commit()
            .await
            .map_err(|e| backend("scan ciphertexts", &e))?;
        Ok(page)
    }

    async fn swap_ciphertexts(&self, swaps: &[CipherSwap]) -> Result<Vec<bool>> {
        if swaps.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self
            .pool
            .begin_with(BEGIN_WRITE)
            .await
            .map_err(|e| backend("swap ciphertexts", &e))?;
        let mut applied = Vec::with_capacity(swaps.len());
        for swap in swaps {
            let done = match &swap.location {
                CipherRef::ApiKeySecret { key_id } => sqlx::query(
                    "UPDATE api_keys SET secret_ciphertext = ? \
                     WHERE key_id = ? AND secret_ciphertext = ?",
                )
                .bind(swap.new.as_slice())
                .bind(key_id)
                .bind(swap.expected.as_slice())
                .execute(&mut *tx)
                .await
                .map_err(|e| map_err("api key", &e))?,
                CipherRef::ApiKeyPreviousSecret { key_id } => sqlx::query(
                    "UPDATE api_key_previous_secrets SET secret_ciphertext = ? \
                     WHERE key_id = ? AND secret_ciphertext = ?",
                )
                .bind(swap.new.as_slice())
                .bind(key_id)
                .bind(swap.expected.as_slice())
                .execute(&mut *tx)
                .await
                .map_err(|e| map_err("previous secret", &e))?,
                CipherRef::MfaSeed { account_id, kind } => sqlx::query(
                    "UPDATE mfa_enrolments SET seed_ciphertext = ? \
                     WHERE account_id = ? AND kind = ? AND seed_ciphertext = ?",
                )
                .bind(swap.new.as_slice())
                .bind(account_id)
                .bind(kind)
                .bind(swap.expected.as_slice())
                .execute(&mut *tx)
                .await
                .map_err(|e| map_err("mfa enrolment", &e))?,
            };
            applied.push(done.rows_affected() > 0);
        }
        tx.commit()
            .await
            .map_err(|e| backend("swap ciphertexts", &e))?;
        Ok(applied)
    }

    async fn create_operator(&self, operator: &Operator) -> Result<()> {
        if operator.user_handle.is_empty() || operator.user_handle.len() > 64 {
            return Err(StoreError::Conflict("operator user handle"));
        }
        let sql = format!("INSERT INTO operators ({OPERATOR_COLUMNS}) VALUES (?, ?, ?, ?, ?)");
        sqlx::query(&sql)
            .bind(&operator.name)
            .bind(&operator.user_handle)
            .bind(operator.created_ms)
            .bind(i64::from(operator.disabled))
            .bind(operator.disabled_ms)
            .execute(&self.pool)
            .await
            .map_err(|e| map_err("operator", &e))?;
        Ok(())
    }

    async fn get_operator(&self, name: &str) -> Result<Operator> {
        let sql = format!("SELECT {OPERATOR_COLUMNS} FROM operators WHERE name = ?");
        let row = sqlx::query(&sql)
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| map_err("operator", &e))?;
        operator_from(&row)
    }

    async fn list_operators(&self) -> Result<Vec<Operator>> {
        let sql = format!("SELECT {OPERATOR_COLUMNS} FROM operators ORDER BY name");
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| map_err("operator", &e))?;
        rows.iter().map(operator_from).collect()
    }

    async fn disable_operator(&self, name: &str, at_ms: i64) -> Result<u64> {
        let mut tx = self
            .pool
            .begin_with(BEGIN_WRITE)
            .await
            .map_err(|e| map_err("operator", &e))?;
        let found = sqlx::query(
            "UPDATE operators SET disabled = 1, disabled_ms = COALESCE(disabled_ms, ?1) \
             WHERE name = ?2",
        )
        .bind(at_ms)
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_err("operator", &e))?;
        if found.rows_affected() == 0 {
            return Err(StoreError::NotFound("operator"));
        }
        let revoked = sqlx::query(
            "UPDATE operator_credentials SET revoked_ms = ?1 \
             WHERE operator = ?2 AND revoked_ms IS NULL",
        )
        .bind(at_ms)
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_err("operator credential", &e))?;
        sqlx::query(
            "UPDATE operator_enrolment_tokens SET used = 1 WHERE operator = ? AND used = 0",
        )
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_err("enrolment token", &e))?;
        tx.commit().await.map_err(|e| map_err("operator", &e))?;
        Ok(revoked.rows_affected())
    }

    async fn put_enrolment_token(&self, token: &EnrolmentToken) -> Result<()> {
        // One statement: the token is stored only for an operator that
        // exists and is not disabled at this moment.
        let done = sqlx::query(
            "INSERT INTO operator_enrolment_tokens \
             (token_hash, operator, created_ms, expires_ms, used) \
             SELECT ?1, name, ?2, ?3, 0 FROM operators WHERE name = ?4 AND disabled = 0",
        )
        .bind(token.token_hash.as_slice())
        .bind(token.created_ms)
        .bind(token.expires_ms)
        .bind(&token.operator)
        .execute(&self.pool)
        .await
        .map_err(|e| map_err("enrolment token", &e))?;
        if done.rows_affected() > 0 {
            return Ok(());
        }
        match self.get_operator(&token.operator).await {
            Ok(_) => Err(StoreError::Conflict("operator disabled")),
            Err(StoreError::NotFound(_)) => Err(StoreError::MissingReference("enrolment token")),
            Err(e) => Err(e),
        }
    }

    async fn enrolment_token_operator(
        &self,
        token_hash: &[u8; 32],
        now_ms: i64,
    ) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT t.operator AS operator FROM operator_enrolment_tokens t \
             JOIN operators o ON o.name = t.operator \
             WHERE t.token_hash = ? AND t.used = 0 AND t.expires_ms > ? AND o.disabled = 0",
        )
        .bind(token_hash.as_slice())
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| map_err("enrolment token", &e))?;
        row.map(|r| {
            r.try_get("operator")
                .map_err(|e| map_err("enrolment token", &e))
        })
        .transpose()
    }

    async fn enrol_operator_credential(
        &self,
        token_hash: &[u8; 32],
        credential: &OperatorCredential,
        now_ms: i64,
    ) -> Result<bool> {
        if !matches!(credential.algorithm, COSE_ES256 | COSE_EDDSA)
            || credential.credential_id.is_empty()
            || credential.public_key.is_empty()
        {
            return Err(StoreError::Conflict("operator credential key"));
        }
        let mut tx = self
            .pool
            .begin_with(BEGIN_WRITE)
            .await
            .map_err(|e| map_err("enrolment token", &e))?;
        // One conditional write spends the token: of concurrent uses,
        // exactly one changes a row.
        let spent = sqlx::query(
            "UPDATE operator_enrolment_tokens SET used = 1 \
             WHERE token_hash = ?1 AND operator = ?2 AND used = 0 AND expires_ms > ?3 \
             AND EXISTS (SELECT 1 FROM operators WHERE name = ?2 AND disabled = 0)",
        )
        .bind(token_hash.as_slice())
        .bind(&credential.operator)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_err("enrolment token", &e))?;
        if spent.rows_affected() == 0 {
            return Ok(false);
        }
        let sql = format!(
            "INSERT INTO operator_credentials ({OPERATOR_CREDENTIAL_COLUMNS}) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        );
        sqlx::query(&sql)
            .bind(&credential.credential_id)
            .bind(&credential.operator)
            .bind(i64::from(credential.algorithm))
            .bind(&credential.public_key)
            .bind(i64::from(credential.sign_count))
            .bind(credential.created_ms)
            .bind(credential.last_used_ms)
            .bind(credential.revoked_ms)
            .execute(&mut *tx)
            .await
            .map_err(|e| map_err("operator credential", &e))?;
        tx.commit()
            .await
            .map_err(|e| map_err("operator credential", &e))?;
        Ok(true)
    }

    async fn list_operator_credentials(&self, operator: &str) -> Result<Vec<OperatorCredential>> {
        let sql = format!(
            "SELECT {OPERATOR_CREDENTIAL_COLUMNS} FROM operator_credentials \
             WHERE operator = ? ORDER BY created_ms, credential_id"
        );
        let rows = sqlx::query(&sql)
            .bind(operator)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| map_err("operator credential", &e))?;
        rows.iter().map(operator_credential_from).collect()
    }

    async fn advance_operator_credential(
        &self,
        credential_id: &[u8],
        sign_count: u32,
        used_ms: i64,
    ) -> Result<bool> {
        // One conditional statement: a counter that did not grow (unless
        // both are 0) or a revoked credential changes no row.
        let done = sqlx::query(
            "UPDATE operator_credentials SET sign_count = ?1, last_used_ms = ?2 \
             WHERE credential_id = ?3 AND revoked_ms IS NULL \
             AND (sign_count < ?1 OR (sign_count = 0 AND ?1 = 0))",
        )
        .bind(i64::from(sign_count))
        .bind(used_ms)
        .bind(credential_id)
        .execute(&self.pool)
        .await
        .map_err(|e| map_err("operator credential", &e))?;
        if done.rows_affected() > 0 {
            return Ok(true);
        }
        sqlx::query("SELECT 1 FROM operator_credentials WHERE credential_id = ?")
            .bind(credential_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| map_err("operator credential", &e))?
            .map(|_| false)
            .ok_or(StoreError::NotFound("operator credential"))
    }

    async fn operator_credentials_exist(&self) -> Result<bool> {
        let row = sqlx::query("SELECT EXISTS (SELECT 1 FROM operator_credentials)")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| map_err("operator credential", &e))?;
        let n: i64 = row
            .try_get(0)
            .map_err(|e| map_err("operator credential", &e))?;
        Ok(n != 0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        reason = "test code"
    )]

    use super::*;

    async fn pragma(store: &SqliteStore, name: &str) -> String {
        let row = sqlx::query(&format!("PRAGMA {name}"))
            .fetch_one(&store.pool)
            .await
            .unwrap();
        match row.try_get::<String, _>(0) {
            Ok(s) => s,
            Err(_) => row.try_get::<i64, _>(0).unwrap().to_string(),
        }
    }

    #[tokio::test]
    async fn file_store_uses_wal_and_foreign_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_in_dir(dir.path()).await.unwrap();
        assert_eq!(store.path(), Some(dir.path().join(DB_FILE_NAME).as_path()));
        assert_eq!(pragma(&store, "journal_mode").await, "wal");
        assert_eq!(pragma(&store, "foreign_keys").await, "1");
        assert_eq!(pragma(&store, "secure_delete").await, "1");
    }

    #[tokio::test]
    async fn memory_store_enforces_foreign_keys() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        assert_eq!(store.path(), None);
        assert_eq!(pragma(&store, "foreign_keys").await, "1");
        assert_eq!(pragma(&store, "secure_delete").await, "1");
        store.checkpoint().await.unwrap();
    }

    #[tokio::test]
    async fn every_pooled_connection_has_secure_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_in_dir(dir.path()).await.unwrap();
        let mut held = Vec::new();
        for _ in 0..FILE_POOL_SIZE {
            let mut conn = store.pool.acquire().await.unwrap();
            let on: i64 = sqlx::query_scalar("PRAGMA secure_delete")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!(on, 1);
            held.push(conn);
        }
    }

    /// A new database file at `path` with the embedded migrations up to
    /// and including `version` applied (an earlier schema to upgrade from).
    async fn migrated_to(path: &Path, version: i64) -> SqlitePool {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .foreign_keys(true);
        let pool = SqlitePool::connect_with(options).await.unwrap();
        let mut m = sqlx::migrate::Migrator::new(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/migrations"
        )))
        .await
        .unwrap();
        m.migrations = std::borrow::Cow::Owned(
            m.migrations
                .iter()
                .filter(|x| x.version <= version)
                .cloned()
                .collect(),
        );
        m.run(&pool).await.unwrap();
        pool
    }

    #[tokio::test]
    async fn migrations_are_recorded_and_rerun_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let store = SqliteStore::open(&path).await.unwrap();
        store.close().await;
        let store = SqliteStore::open(&path).await.unwrap();
        let row = sqlx::query("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = 1")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(row.try_get::<i64, _>(0).unwrap(), 6);
    }

    #[tokio::test]
    async fn malformed_row_is_a_backend_error_not_a_panic() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        sqlx::query("INSERT INTO key_metadata VALUES ('p', 1, x'00', 0, 'active', 0, 1)")
            .execute(&store.pool)
            .await
            .unwrap();
        sqlx::query("PRAGMA ignore_check_constraints = ON")
            .execute(&store.pool)
            .await
            .unwrap();
        sqlx::query("UPDATE key_metadata SET state = 'bogus'")
            .execute(&store.pool)
            .await
            .unwrap();
        assert_eq!(
            store.list_key_metadata("p").await,
            Err(StoreError::Backend("stored key state is malformed".into()))
        );
    }

    #[tokio::test]
    async fn migration_defaults_root_key_version_of_existing_rows_to_1() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        {
            let pool = migrated_to(&path, 1).await;
            sqlx::query("INSERT INTO key_metadata VALUES ('old', 1, x'00', 0, 'active', 0)")
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
        let store = SqliteStore::open(&path).await.unwrap();
        let meta = store.list_key_metadata("old").await.unwrap();
        assert_eq!(meta[0].root_key_version, 1);
    }

    #[tokio::test]
    async fn account_key_check_refuses_inconsistent_rows() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        store
            .create_account(&Account {
                id: "a".into(),
                name: "a".into(),
                parent_id: None,
                created_at_ms: 0,
                kyc_tier: 0,
                risk_profile: None,
            })
            .await
            .unwrap();
        for (secret, shredded) in [("x'01'", "5"), ("NULL", "NULL")] {
            let sql = format!("INSERT INTO account_keys VALUES ('a', {secret}, 0, {shredded})");
            let err = sqlx::query(&sql).execute(&store.pool).await.unwrap_err();
            assert!(
                err.as_database_error().unwrap().is_check_violation(),
                "{err}"
            );
        }
        sqlx::query("INSERT INTO account_keys VALUES ('a', x'01', 0, NULL)")
            .execute(&store.pool)
            .await
            .unwrap();
        let err = sqlx::query("UPDATE account_keys SET secret = NULL")
            .execute(&store.pool)
            .await
            .unwrap_err();
        assert!(err.as_database_error().unwrap().is_check_violation());
        sqlx::query("PRAGMA ignore_check_constraints = ON")
            .execute(&store.pool)
            .await
            .unwrap();
        sqlx::query("UPDATE account_keys SET secret = NULL")
            .execute(&store.pool)
            .await
            .unwrap();
        assert_eq!(
            store.get_account_key("a").await,
            Err(StoreError::Backend(
                "stored account key is malformed".into()
            ))
        );
    }

    #[tokio::test]
    async fn negative_root_key_version_is_refused_and_malformed_when_forced() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        let err =
            sqlx::query("INSERT INTO key_metadata VALUES ('p', 1, x'00', 0, 'active', 0, -1)")
                .execute(&store.pool)
                .await
                .unwrap_err();
        assert!(err.as_database_error().unwrap().is_check_violation());
        sqlx::query("PRAGMA ignore_check_constraints = ON")
            .execute(&store.pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO key_metadata VALUES ('p', 1, x'00', 0, 'active', 0, -1)")
            .execute(&store.pool)
            .await
            .unwrap();
        assert_eq!(
            store.list_key_metadata("p").await,
            Err(StoreError::Backend(
                "stored root key version is malformed".into()
            ))
        );
    }

    #[tokio::test]
    async fn scans_walk_primary_key_indexes() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        for (sql, search) in [
            (SCAN_KEYS_FIRST, false),
            (SCAN_KEYS_AFTER, true),
            (SCAN_PREVIOUS_FIRST, false),
            (SCAN_PREVIOUS_AFTER, true),
            (SCAN_SEEDS_FIRST, false),
            (SCAN_SEEDS_AFTER, true),
        ] {
            let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
                .bind("a")
                .bind("b")
                .bind(1_i64)
                .fetch_all(&store.pool)
                .await
                .unwrap();
            let plan: Vec<String> = rows
                .iter()
                .map(|r| r.try_get::<String, _>("detail").unwrap())
                .collect();
            let plan = plan.join("; ");
            assert!(plan.contains("INDEX sqlite_autoindex"), "{sql}: {plan}");
            assert_eq!(plan.starts_with("SEARCH"), search, "{sql}: {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{sql}: {plan}");
        }
    }

    async fn store_with_key(key_id: &str) -> SqliteStore {
        let store = SqliteStore::open_in_memory().await.unwrap();
        sqlx::query("INSERT INTO accounts (id, name, created_at_ms) VALUES ('a', 'a', 0)")
            .execute(&store.pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO api_keys (key_id, account_id, scheme, scopes, allowed_cidrs, state, \
             secret_ciphertext, created_at_ms) VALUES (?, 'a', 's', '[]', '[]', 'enabled', x'01', 0)",
        )
        .bind(key_id)
        .execute(&store.pool)
        .await
        .unwrap();
        store
    }

    #[tokio::test]
    async fn key_counter_refuses_negative_nonces_and_malformed_reads_are_errors() {
        let store = store_with_key("k").await;
        let err = sqlx::query("INSERT INTO key_counters (key_id, last_nonce) VALUES ('k', -1)")
            .execute(&store.pool)
            .await
            .unwrap_err();
        assert!(err.as_database_error().unwrap().is_check_violation());
        sqlx::query("PRAGMA ignore_check_constraints = ON")
            .execute(&store.pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO key_counters (key_id, last_nonce) VALUES ('k', -1)")
            .execute(&store.pool)
            .await
            .unwrap();
        assert_eq!(
            store.get_key_counter("k").await,
            Err(StoreError::Backend(
                "stored key counter is malformed".into()
            ))
        );
    }

    #[tokio::test]
    async fn previous_secret_and_counter_go_with_their_key() {
        let store = store_with_key("k").await;
        store.rotate_api_key_secret("k", &[2], 5).await.unwrap();
        assert!(store.advance_key_counter("k", 3).await.unwrap());
        let err = sqlx::query("INSERT INTO key_counters (key_id, last_nonce) VALUES ('nobody', 1)")
            .execute(&store.pool)
            .await
            .unwrap_err();
        assert!(err.as_database_error().unwrap().is_foreign_key_violation());
        sqlx::query("DELETE FROM api_keys WHERE key_id = 'k'")
            .execute(&store.pool)
            .await
            .unwrap();
        for table in ["api_key_previous_secrets", "key_counters"] {
            let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(&store.pool)
                .await
                .unwrap();
            assert_eq!(n, 0, "{table}");
        }
        assert_eq!(store.count_ciphertexts().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn expiry_sweep_and_counter_use_indexes() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        for (sql, index) in [
            (
                "DELETE FROM api_key_previous_secrets WHERE valid_until_ms <= ?",
                "api_key_previous_secrets_valid_until_idx",
            ),
            (
                "SELECT last_nonce FROM key_counters WHERE key_id = ?",
                "sqlite_autoindex_key_counters",
            ),
        ] {
            let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
                .bind(1_i64)
                .fetch_all(&store.pool)
                .await
                .unwrap();
            let plan: Vec<String> = rows
                .iter()
                .map(|r| r.try_get::<String, _>("detail").unwrap())
                .collect();
            let plan = plan.join("; ");
            assert!(
                plan.starts_with("SEARCH") && plan.contains(index),
                "{sql}: {plan}"
            );
        }
    }

    #[tokio::test]
    async fn migration_keeps_rows_of_earlier_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        {
            let pool = migrated_to(&path, 2).await;
            sqlx::query("INSERT INTO accounts VALUES ('a', 'a', NULL, 0)")
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query(
                "INSERT INTO api_keys (key_id, account_id, scheme, scopes, allowed_cidrs, state, \
                 secret_ciphertext, created_at_ms) \
                 VALUES ('k', 'a', 's', '[]', '[]', 'enabled', x'01', 0)",
            )
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
        let store = SqliteStore::open(&path).await.unwrap();
        assert_eq!(store.get_previous_secret("k").await.unwrap(), None);
        assert_eq!(store.get_key_counter("k").await.unwrap(), None);
        store.rotate_api_key_secret("k", &[2], 9).await.unwrap();
        assert_eq!(
            store.get_previous_secret("k").await.unwrap(),
            Some((vec![1], 9))
        );
    }

    /// A database migrated up to 0004, with rows in every table 0005
    /// extends, opens with those rows intact and the new columns at their
    /// defaults: KYC tier 0 and no risk profile, unrestricted permissions,
    /// no used step, no recovery codes, SHA1 / 6 digits / 30 s.
    #[tokio::test]
    async fn migration_0005_defaults_new_columns_of_existing_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        {
            let pool = migrated_to(&path, 4).await;
            for sql in [
                "INSERT INTO accounts VALUES ('a', 'Desk', NULL, 7)",
                "INSERT INTO accounts VALUES ('a-sub', 'Sub', 'a', 8)",
                "INSERT INTO api_keys (key_id, account_id, scheme, scopes, allowed_cidrs, \
                 state, secret_ciphertext, created_at_ms) \
                 VALUES ('k', 'a', 's', '[\"trade\"]', '[]', 'enabled', x'01', 9)",
                "INSERT INTO mfa_enrolments VALUES ('a', 'totp', x'0203', 10)",
                "INSERT INTO key_counters (key_id, last_nonce) VALUES ('k', 12)",
            ] {
                sqlx::query(sql).execute(&pool).await.unwrap();
            }
            pool.close().await;
        }
        let store = SqliteStore::open(&path).await.unwrap();
        let account = store.get_account("a").await.unwrap();
        assert_eq!(
            account,
            Account {
                id: "a".into(),
                name: "Desk".into(),
                parent_id: None,
                created_at_ms: 7,
                kyc_tier: 0,
                risk_profile: None,
            }
        );
        assert_eq!(store.list_sub_accounts("a").await.unwrap()[0].kyc_tier, 0);
        let key = store.get_api_key("k").await.unwrap();
        assert_eq!(key.permissions, KeyPermissions::default());
        assert_eq!(key.scopes, vec!["trade".to_owned()]);
        assert_eq!(key.secret_ciphertext, Some(vec![1]));
        assert_eq!(store.get_key_counter("k").await.unwrap(), Some(12));
        let mfa = store.get_mfa("a", "totp").await.unwrap();
        assert_eq!(
            mfa,
            MfaEnrolment {
                account_id: "a".into(),
                kind: "totp".into(),
                seed_ciphertext: vec![2, 3],
                created_at_ms: 10,
                last_used_step: None,
                recovery_hashes: Vec::new(),
                algorithm: "SHA1".into(),
                digits: 6,
                period_secs: 30,
            }
        );
        assert!(store.advance_mfa_step("a", "totp", 1).await.unwrap());
        assert_eq!(store.list_withdrawal_addresses("a").await.unwrap(), vec![]);
        store.set_account_kyc("a", 1, Some("p")).await.unwrap();
        assert_eq!(store.get_account("a").await.unwrap().kyc_tier, 1);
    }

    #[tokio::test]
    async fn permissions_tolerate_unknown_and_missing_fields_but_not_wrong_types() {
        let store = store_with_key("k").await;
        let set = |json: &'static str| {
            let store = store.clone();
            async move {
                sqlx::query("UPDATE api_keys SET permissions = ? WHERE key_id = 'k'")
                    .bind(json)
                    .execute(&store.pool)
                    .await
                    .unwrap();
                store.get_api_key("k").await.map(|k| k.permissions)
            }
        };
        assert_eq!(
            set(r#"{"read_only": true, "max_leverage": "5", "future": {"x": [1]}}"#).await,
            Ok(KeyPermissions {
                read_only: true,
                ..KeyPermissions::default()
            })
        );
        assert_eq!(
            set(r#"{"instruments": ["BTC-USDT"]}"#).await,
            Ok(KeyPermissions {
                instruments: vec!["BTC-USDT".into()],
                ..KeyPermissions::default()
            })
        );
        let malformed = Err(StoreError::Backend(
            "stored api key permissions is malformed".into(),
        ));
        for json in [
            r#"{"read_only": "yes"}"#,
            r#"{"instruments": "BTC-USDT"}"#,
            r#"{"max_open_orders": -1}"#,
            r#"{"max_order_qty": 1.5}"#,
            "[]",
            "null",
            "not json",
        ] {
            assert_eq!(set(json).await, malformed, "{json}");
        }
        // A listing fails as a whole rather than skipping the malformed key.
        assert_eq!(
            store.list_api_keys("a").await.map(|_| ()),
            Err(StoreError::Backend(
                "stored api key permissions is malformed".into()
            ))
        );
    }

    #[tokio::test]
    async fn new_columns_refuse_out_of_range_values_and_malformed_reads_are_errors() {
        let store = store_with_key("k").await;
        sqlx::query("INSERT INTO mfa_enrolments (account_id, kind, seed_ciphertext, created_at_ms) VALUES ('a', 'totp', x'01', 0)")
            .execute(&store.pool)
            .await
            .unwrap();
        for sql in [
            "UPDATE accounts SET kyc_tier = 4",
            "UPDATE accounts SET kyc_tier = -1",
            "UPDATE mfa_enrolments SET last_used_step = -1",
            "UPDATE mfa_enrolments SET algorithm = 'MD5'",
            "UPDATE mfa_enrolments SET digits = 5",
            "UPDATE mfa_enrolments SET period_secs = 0",
        ] {
            let err = sqlx::query(sql).execute(&store.pool).await.unwrap_err();
            assert!(
                err.as_database_error().unwrap().is_check_violation(),
                "{sql}: {err}"
            );
        }
        let err =
            sqlx::query("INSERT INTO withdrawal_addresses VALUES ('a', 'x', NULL, NULL, 5, 4)")
                .execute(&store.pool)
                .await
                .unwrap_err();
        assert!(err.as_database_error().unwrap().is_check_violation());

        sqlx::query("PRAGMA ignore_check_constraints = ON")
            .execute(&store.pool)
            .await
            .unwrap();
        sqlx::query("UPDATE accounts SET kyc_tier = 4")
            .execute(&store.pool)
            .await
            .unwrap();
        assert_eq!(
            store.get_account("a").await,
            Err(StoreError::Backend("stored kyc tier is malformed".into()))
        );
        for (sql, what) in [
            ("UPDATE mfa_enrolments SET last_used_step = -1", "mfa step"),
            (
                "UPDATE mfa_enrolments SET last_used_step = NULL, digits = 300",
                "mfa parameters",
            ),
            (
                "UPDATE mfa_enrolments SET digits = 6, algorithm = 'MD5'",
                "mfa parameters",
            ),
            (
                "UPDATE mfa_enrolments SET algorithm = 'SHA1', recovery_hashes = '{'",
                "recovery code hashes",
            ),
        ] {
            sqlx::query(sql).execute(&store.pool).await.unwrap();
            assert_eq!(
                store.get_mfa("a", "totp").await,
                Err(StoreError::Backend(format!("stored {what} is malformed"))),
                "{sql}"
            );
        }
        // A malformed list is an error for the replay-relevant writes
        // too, never a silent success.
        assert!(matches!(
            store.consume_recovery_code("a", "totp", "x").await,
            Err(StoreError::Backend(_))
        ));
    }

    #[tokio::test]
    async fn mfa_step_and_address_book_use_indexes() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        for (sql, index) in [
            (
                "UPDATE mfa_enrolments SET last_used_step = ?1 WHERE account_id = ?2 \
                 AND kind = ?3 AND (last_used_step IS NULL OR last_used_step < ?1)",
                "sqlite_autoindex_mfa_enrolments",
            ),
            (
                "SELECT address FROM withdrawal_addresses WHERE account_id = ?1 ORDER BY address",
                "sqlite_autoindex_withdrawal_addresses",
            ),
        ] {
            let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
                .bind(1_i64)
                .bind("a")
                .bind("b")
                .fetch_all(&store.pool)
                .await
                .unwrap();
            let plan: Vec<String> = rows
                .iter()
                .map(|r| r.try_get::<String, _>("detail").unwrap())
                .collect();
            let plan = plan.join("; ");
            assert!(
                plan.starts_with("SEARCH") && plan.contains(index) && !plan.contains("TEMP B-TREE"),
                "{sql}: {plan}"
            );
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn data_dir_and_file_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a").join("b");
        let store = SqliteStore::open_in_dir(&data).await.unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        let db = store.path().unwrap();
        assert_eq!(mode(db), 0o600);
        for suffix in ["-wal", "-shm"] {
            let mut companion = db.as_os_str().to_owned();
            companion.push(suffix);
            let companion = PathBuf::from(companion);
            if companion.exists() {
                assert_eq!(mode(&companion), 0o600, "{}", companion.display());
            }
        }
    }

    /// A database migrated up to 0005 with accounts and keys upgrades to
    /// 0006: the rows stay, no operator exists, so the admin listener
    /// stays open until one enrols.
    #[tokio::test]
    async fn migration_0006_adds_empty_operator_tables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        {
            let pool = migrated_to(&path, 5).await;
            sqlx::query("INSERT INTO accounts (id, name, parent_id, created_at_ms) VALUES ('a', 'A', NULL, 1)")
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
        let store = SqliteStore::open(&path).await.unwrap();
        assert_eq!(store.get_account("a").await.unwrap().name, "A");
        assert!(!store.operator_credentials_exist().await.unwrap());
        assert_eq!(store.list_operators().await.unwrap(), vec![]);
    }

    /// Malformed operator rows read back as errors, never panics.
    #[tokio::test]
    async fn malformed_operator_rows_are_backend_errors() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        sqlx::query("PRAGMA ignore_check_constraints = ON")
            .execute(&store.pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO operators VALUES ('x', x'01', 0, 7, NULL)")
            .execute(&store.pool)
            .await
            .unwrap();
        assert_eq!(
            store.get_operator("x").await,
            Err(StoreError::Backend(
                "stored operator state is malformed".into()
            ))
        );
        sqlx::query(
            "INSERT INTO operator_credentials VALUES (x'01', 'x', -7, x'04', -1, 0, NULL, NULL)",
        )
        .execute(&store.pool)
        .await
        .unwrap();
        assert_eq!(
            store.list_operator_credentials("x").await,
            Err(StoreError::Backend(
                "stored signature counter is malformed".into()
            ))
        );
    }

    /// Only hashes are stored as tokens.
    #[tokio::test]
    async fn enrolment_token_hash_must_be_32_bytes() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        sqlx::query("INSERT INTO operators VALUES ('x', x'01', 0, 0, NULL)")
            .execute(&store.pool)
            .await
            .unwrap();
        let err = sqlx::query("INSERT INTO operator_enrolment_tokens VALUES (x'01', 'x', 0, 1, 0)")
            .execute(&store.pool)
            .await
            .unwrap_err();
        assert!(
            err.as_database_error().unwrap().is_check_violation(),
            "{err}"
        );
    }
}
