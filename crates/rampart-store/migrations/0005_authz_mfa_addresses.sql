-- What authorization and MFA need: KYC tier and risk profile per account,
-- permissions per API key, TOTP replay guard, recovery codes and
-- parameters per MFA enrolment, and the withdrawal address book.
-- Never edit a migration once released (sqlx checks its checksum): add a
-- new numbered file instead.

-- KYC tier 0..=3. Rows written before this migration get tier 0, the
-- secure default (market data only), until an operator raises it.
ALTER TABLE accounts
    ADD COLUMN kyc_tier INTEGER NOT NULL DEFAULT 0 CHECK (kyc_tier BETWEEN 0 AND 3);
-- Name of the risk profile the account is held to, if any.
ALTER TABLE accounts ADD COLUMN risk_profile TEXT;

-- Per-key permissions, one JSON object (instruments, products, read_only,
-- max_order_qty, max_notional, max_open_orders) so later settings need no
-- migration. Earlier keys get `{}`: every setting at its default, that is
-- no restriction beyond the key's scopes (as before this migration).
ALTER TABLE api_keys ADD COLUMN permissions TEXT NOT NULL DEFAULT '{}';

-- TOTP replay guard: the last time step a code was accepted for (a code is
-- accepted once per enrolment). NULL until the first code.
ALTER TABLE mfa_enrolments
    ADD COLUMN last_used_step INTEGER CHECK (last_used_step >= 0);
-- JSON array of the lowercase hex SHA-256 of each unused recovery code
-- (hashes only, never the codes).
ALTER TABLE mfa_enrolments ADD COLUMN recovery_hashes TEXT NOT NULL DEFAULT '[]';
-- One-time-password parameters; earlier enrolments were SHA1, 6 digits,
-- 30-second steps.
ALTER TABLE mfa_enrolments
    ADD COLUMN algorithm TEXT NOT NULL DEFAULT 'SHA1'
    CHECK (algorithm IN ('SHA1', 'SHA256', 'SHA512'));
ALTER TABLE mfa_enrolments
    ADD COLUMN digits INTEGER NOT NULL DEFAULT 6 CHECK (digits BETWEEN 6 AND 10);
ALTER TABLE mfa_enrolments
    ADD COLUMN period_secs INTEGER NOT NULL DEFAULT 30 CHECK (period_secs BETWEEN 1 AND 4294967295);

-- Withdrawal address book. An entry may be withdrawn to only from
-- `effective_at_ms` on (a configured delay after it is added). One entry
-- per account and address; the primary key also serves listing an
-- account's entries in address order.
CREATE TABLE withdrawal_addresses (
    account_id      TEXT    NOT NULL REFERENCES accounts(id) ON DELETE RESTRICT,
    address         TEXT    NOT NULL,
    asset           TEXT,
    label           TEXT,
    added_at_ms     INTEGER NOT NULL,
    effective_at_ms INTEGER NOT NULL,
    PRIMARY KEY (account_id, address),
    CHECK (effective_at_ms >= added_at_ms)
);
