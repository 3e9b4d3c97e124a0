-- Rampart durable store, first schema.
-- Never edit a migration once released (sqlx checks its checksum): add a
-- new numbered file instead.
-- Secret-bearing columns (secret_ciphertext, seed_ciphertext, wrapped_dek)
-- only ever hold bytes already sealed by rampart-crypto; never plaintext.

CREATE TABLE accounts (
    id            TEXT    PRIMARY KEY NOT NULL,
    name          TEXT    NOT NULL,
    parent_id     TEXT    REFERENCES accounts(id) ON DELETE RESTRICT,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX accounts_parent_idx ON accounts(parent_id);

CREATE TABLE api_keys (
    key_id            TEXT    PRIMARY KEY NOT NULL,
    account_id        TEXT    NOT NULL REFERENCES accounts(id) ON DELETE RESTRICT,
    scheme            TEXT    NOT NULL,
    scopes            TEXT    NOT NULL, -- JSON array of strings
    allowed_cidrs     TEXT    NOT NULL, -- JSON array of strings
    expires_at_ms     INTEGER,
    cert_fingerprint  TEXT,
    profile           TEXT,
    state             TEXT    NOT NULL CHECK (state IN ('enabled', 'revoked')),
    secret_ciphertext BLOB,
    public_key        BLOB,
    created_at_ms     INTEGER NOT NULL,
    revoked_at_ms     INTEGER
);
CREATE INDEX api_keys_account_idx ON api_keys(account_id);

CREATE TABLE mfa_enrolments (
    account_id      TEXT    NOT NULL REFERENCES accounts(id) ON DELETE RESTRICT,
    kind            TEXT    NOT NULL,
    seed_ciphertext BLOB    NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (account_id, kind)
);

CREATE TABLE key_metadata (
    purpose       TEXT    NOT NULL,
    version       INTEGER NOT NULL CHECK (version >= 0),
    wrapped_dek   BLOB    NOT NULL,
    encryptions   INTEGER NOT NULL DEFAULT 0 CHECK (encryptions >= 0),
    state         TEXT    NOT NULL CHECK (state IN ('active', 'retired')),
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (purpose, version)
);

CREATE TABLE key_min_versions (
    purpose     TEXT    PRIMARY KEY NOT NULL,
    min_version INTEGER NOT NULL CHECK (min_version >= 0)
);
