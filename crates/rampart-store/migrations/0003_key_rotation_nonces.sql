-- API-key secret rotation with an overlap window, and persisted nonces.
-- Never edit a migration once released (sqlx checks its checksum): add a
-- new numbered file instead.

-- The previous secret of a rotated API key (at most one per key), still
-- accepted until `valid_until_ms` so clients can switch over. Like
-- `api_keys.secret_ciphertext` it only ever holds bytes sealed by
-- rampart-crypto. A replaced or dropped previous secret is zeroed on disk
-- (`secure_delete`); the row goes with its key.
CREATE TABLE api_key_previous_secrets (
    key_id            TEXT    PRIMARY KEY NOT NULL REFERENCES api_keys(key_id) ON DELETE CASCADE,
    secret_ciphertext BLOB    NOT NULL,
    valid_until_ms    INTEGER NOT NULL
);
-- Expiry sweeps find the expired rows without a full scan.
CREATE INDEX api_key_previous_secrets_valid_until_idx
    ON api_key_previous_secrets(valid_until_ms);

-- The last nonce accepted for each API key: a request nonce is accepted
-- only if strictly greater (Kraken-style), and the high-water mark
-- survives restarts. Nonces are unsigned 63-bit values.
CREATE TABLE key_counters (
    key_id     TEXT    PRIMARY KEY NOT NULL REFERENCES api_keys(key_id) ON DELETE CASCADE,
    last_nonce INTEGER NOT NULL CHECK (last_nonce >= 0)
);
