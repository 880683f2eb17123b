-- Users, their sealed TOTP secrets, and the security state that must survive restarts:
-- the last accepted time step (replay protection) and the failed-attempt counter (lockout).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE users (
    username        TEXT PRIMARY KEY NOT NULL,
    sealed_secret   BLOB NOT NULL,               -- version || nonce || AES-256-GCM ciphertext
    algorithm       TEXT NOT NULL CHECK (algorithm IN ('SHA1', 'SHA256', 'SHA512')),
    digits          INTEGER NOT NULL CHECK (digits BETWEEN 6 AND 8),
    period          INTEGER NOT NULL CHECK (period > 0),
    email           TEXT,
    telegram_id     TEXT,
    source          TEXT NOT NULL CHECK (source IN ('env', 'cli')),
    last_step       INTEGER,                     -- highest TOTP step accepted (RFC 6238 5.2)
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    locked_until    INTEGER,                     -- unix seconds
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) WITHOUT ROWID;

-- At most one outstanding code per user, sent by /request-otp; only its keyed hash is kept.
CREATE TABLE sent_codes (
    username   TEXT PRIMARY KEY NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    code_hash  BLOB NOT NULL,
    sent_at    INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
