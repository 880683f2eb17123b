-- A user has zero or more authenticators (TOTP apps, HOTP tokens), each with its own
-- secret, parameters and replay guard; the lockout and the sent codes stay in the user's
-- row, shared by all of them. Each user's one secret becomes an active TOTP authenticator
-- named 'default' (its secret stays sealed as it was: bound to the user; `mfa` seals it
-- again bound to the authenticator too at its next start). The users table keeps only who
-- the user is and the state every authenticator shares.
CREATE TABLE authenticators (
    username      TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    id            TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('totp', 'hotp')),
    name          TEXT NOT NULL,
    sealed_secret BLOB NOT NULL,                 -- version || nonce || AES-256-GCM ciphertext
    algorithm     TEXT NOT NULL CHECK (algorithm IN ('SHA1', 'SHA256', 'SHA512')),
    digits        INTEGER NOT NULL CHECK (digits BETWEEN 6 AND 8),
    period        INTEGER CHECK (period > 0),    -- TOTP: seconds per step
    counter       INTEGER CHECK (counter >= 0),  -- HOTP: the next counter expected (RFC 4226)
    last_step     INTEGER,                       -- TOTP: highest step accepted (RFC 6238 5.2)
    drift_steps   INTEGER NOT NULL DEFAULT 0,    -- TOTP: the clock offset learned (RFC 6238 6)
    status        TEXT NOT NULL CHECK (status IN ('pending', 'active')),
    replaces      TEXT,                          -- pending: retired when this one is confirmed
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER,
    expires_at    INTEGER,                       -- pending: removed unless confirmed by then
    PRIMARY KEY (username, id)
) WITHOUT ROWID;
CREATE INDEX authenticators_pending ON authenticators (expires_at) WHERE status = 'pending';

INSERT INTO authenticators (username, id, kind, name, sealed_secret, algorithm, digits, period, last_step,
    status, created_at, last_used_at)
SELECT username, lower(hex(randomblob(6))), 'totp', 'default', sealed_secret, algorithm, digits, period, last_step,
    'active', COALESCE(secret_set_at, created_at), last_step * period
FROM users;

-- Recovery codes: only their keyed hashes; a used one stays (marked) so that typing it
-- again is told apart from a guess.
CREATE TABLE recovery_codes (
    username   TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    code_hash  BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    used_at    INTEGER,
    PRIMARY KEY (username, code_hash)
) WITHOUT ROWID;

ALTER TABLE users DROP COLUMN sealed_secret;
ALTER TABLE users DROP COLUMN algorithm;
ALTER TABLE users DROP COLUMN digits;
ALTER TABLE users DROP COLUMN period;
ALTER TABLE users DROP COLUMN last_step;
ALTER TABLE users DROP COLUMN secret_set_at;
