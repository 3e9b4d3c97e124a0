-- Operator accounts for the admin listener: WebAuthn credentials and
-- one-time enrolment tokens.
-- Never edit a migration once released (sqlx checks its checksum): add a
-- new numbered file instead.

-- An operator: a human who may change the gateway on the admin listener.
-- `user_handle` is the WebAuthn user id (random bytes, not the name).
-- A disabled operator can neither sign in nor enrol again; its
-- credentials are revoked with it.
CREATE TABLE operators (
    name        TEXT    PRIMARY KEY NOT NULL,
    user_handle BLOB    NOT NULL,
    created_ms  INTEGER NOT NULL,
    disabled    INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    disabled_ms INTEGER
);

-- A WebAuthn credential of an operator. `algorithm` is the COSE algorithm
-- (-7 ES256: `public_key` is the uncompressed P-256 point; -8 EdDSA: the
-- 32-byte Ed25519 key). `sign_count` only grows (a conditional UPDATE);
-- `revoked_ms` is set when the operator is disabled. Rows are never
-- deleted, so "some operator has enrolled" stays true once it was.
CREATE TABLE operator_credentials (
    credential_id BLOB    PRIMARY KEY NOT NULL,
    operator      TEXT    NOT NULL REFERENCES operators(name) ON DELETE RESTRICT,
    algorithm     INTEGER NOT NULL CHECK (algorithm IN (-7, -8)),
    public_key    BLOB    NOT NULL,
    sign_count    INTEGER NOT NULL CHECK (sign_count BETWEEN 0 AND 4294967295),
    created_ms    INTEGER NOT NULL,
    last_used_ms  INTEGER,
    revoked_ms    INTEGER
);
CREATE INDEX operator_credentials_operator_idx ON operator_credentials(operator);

-- One-time enrolment tokens: only the SHA-256 of the token is stored. A
-- token is spent by one conditional UPDATE (used = 0 AND not expired).
CREATE TABLE operator_enrolment_tokens (
    token_hash BLOB    PRIMARY KEY NOT NULL CHECK (length(token_hash) = 32),
    operator   TEXT    NOT NULL REFERENCES operators(name) ON DELETE RESTRICT,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    used       INTEGER NOT NULL DEFAULT 0 CHECK (used IN (0, 1))
);
CREATE INDEX operator_enrolment_tokens_operator_idx ON operator_enrolment_tokens(operator);
