-- Key rotation, rewrap and crypto-shredding.
-- Never edit a migration once released (sqlx checks its checksum): add a
-- new numbered file instead.

-- Version of the root key that wrapped `wrapped_dek`, so a root-key
-- rotation can find and rewrap the DEKs still wrapped by an older root key.
-- Rows written before this migration were wrapped by root key version 1.
ALTER TABLE key_metadata
    ADD COLUMN root_key_version INTEGER NOT NULL DEFAULT 1 CHECK (root_key_version >= 0);

-- Per-account shred handle: a random secret mixed into the derivation of
-- that account's field keys. Shredding sets `secret` to NULL (the row stays
-- as a tombstone recording when), which makes every field sealed under the
-- account's keys unrecoverable. The store runs with `secure_delete` on, so
-- the old secret bytes are zeroed on disk rather than left in free space.
CREATE TABLE account_keys (
    account_id     TEXT    PRIMARY KEY NOT NULL REFERENCES accounts(id) ON DELETE RESTRICT,
    secret         BLOB,
    created_at_ms  INTEGER NOT NULL,
    shredded_at_ms INTEGER,
    CHECK ((secret IS NULL) = (shredded_at_ms IS NOT NULL))
);
