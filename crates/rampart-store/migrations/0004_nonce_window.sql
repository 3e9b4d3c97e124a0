-- Kraken-style nonce window: a key may accept nonces out of order, up to
-- `nonce_window` below the highest one accepted, each at most once. The
-- nonces accepted inside the window are remembered until they fall out of it.
ALTER TABLE key_counters ADD COLUMN nonce_window INTEGER NOT NULL DEFAULT 0 CHECK (nonce_window >= 0);

CREATE TABLE key_window_nonces (
    key_id TEXT    NOT NULL REFERENCES api_keys(key_id) ON DELETE CASCADE,
    nonce  INTEGER NOT NULL CHECK (nonce >= 0),
    PRIMARY KEY (key_id, nonce)
);
