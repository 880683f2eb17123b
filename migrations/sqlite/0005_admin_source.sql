-- Users created through the admin API are recorded as such ('admin'), apart from those of
-- the command line ('cli'). SQLite cannot change a CHECK constraint in place: the table is
-- rebuilt with the new one (the documented procedure; no other table refers to it).
CREATE TABLE users_new (
    username                 TEXT PRIMARY KEY NOT NULL,
    sealed_secret            BLOB NOT NULL,      -- version || nonce || AES-256-GCM ciphertext
    algorithm                TEXT NOT NULL CHECK (algorithm IN ('SHA1', 'SHA256', 'SHA512')),
    digits                   INTEGER NOT NULL CHECK (digits BETWEEN 6 AND 8),
    period                   INTEGER NOT NULL CHECK (period > 0),
    email                    TEXT,
    telegram_id              TEXT,
    source                   TEXT NOT NULL CHECK (source IN ('env', 'cli', 'admin')),
    last_step                INTEGER,            -- highest TOTP step accepted (RFC 6238 5.2)
    failed_attempts          INTEGER NOT NULL DEFAULT 0,
    locked_until             INTEGER,            -- unix seconds
    created_at               INTEGER NOT NULL,
    updated_at               INTEGER NOT NULL,
    secret_set_at            INTEGER,
    last_failed_at           INTEGER,
    code_hash                BLOB,
    sealed_code              BLOB,
    code_sent_at             INTEGER,
    code_expires_at          INTEGER,
    previous_code_hash       BLOB,
    previous_code_expires_at INTEGER,
    codes_used_at            INTEGER,
    send_tat                 INTEGER
) WITHOUT ROWID;

INSERT INTO users_new (username, sealed_secret, algorithm, digits, period, email, telegram_id, source,
    last_step, failed_attempts, locked_until, created_at, updated_at, secret_set_at, last_failed_at,
    code_hash, sealed_code, code_sent_at, code_expires_at, previous_code_hash, previous_code_expires_at,
    codes_used_at, send_tat)
SELECT username, sealed_secret, algorithm, digits, period, email, telegram_id, source,
    last_step, failed_attempts, locked_until, created_at, updated_at, secret_set_at, last_failed_at,
    code_hash, sealed_code, code_sent_at, code_expires_at, previous_code_hash, previous_code_expires_at,
    codes_used_at, send_tat
FROM users;

DROP TABLE users;
ALTER TABLE users_new RENAME TO users;
CREATE INDEX users_env_source ON users (source) WHERE source = 'env';
