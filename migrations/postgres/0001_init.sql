-- Users, their sealed TOTP secrets, and the security state that must survive restarts:
-- the last accepted time step (replay protection) and the failed-attempt counter (lockout).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE users (
    username        TEXT PRIMARY KEY NOT NULL,
    sealed_secret   BYTEA NOT NULL,               -- version || nonce || AES-256-GCM ciphertext
    algorithm       TEXT NOT NULL CHECK (algorithm IN ('SHA1', 'SHA256', 'SHA512')),
    digits          BIGINT NOT NULL CHECK (digits BETWEEN 6 AND 8),
    period          BIGINT NOT NULL CHECK (period > 0),
    email           TEXT,
    telegram_id     TEXT,
    source          TEXT NOT NULL CHECK (source IN ('env', 'cli')),
    last_step       BIGINT,                     -- highest TOTP step accepted (RFC 6238 5.2)
    failed_attempts BIGINT NOT NULL DEFAULT 0,
    locked_until    BIGINT,                     -- unix seconds
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

-- At most one outstanding code per user, sent by /request-otp; only its keyed hash is kept.
CREATE TABLE sent_codes (
    username   TEXT PRIMARY KEY NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    code_hash  BYTEA NOT NULL,
    sent_at    BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
