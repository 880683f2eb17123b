-- The delivery outbox: one job per channel of each code /request-otp sends, written with
-- the code in one transaction and delivered after, by whichever process claims it (a lease
-- that expires, so a process that dies mid-job leaves it to another). The job holds the
-- code sealed, never in clear, and the sealed code is wiped once it is delivered, failed
-- or abandoned (expired, used or replaced by a newer code: never sent then).
CREATE TABLE deliveries (
    id              TEXT PRIMARY KEY NOT NULL,
    username        TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    channel         TEXT NOT NULL CHECK (channel IN ('email', 'telegram')),
    recipient       TEXT NOT NULL,
    code_hash       BLOB NOT NULL,                -- which of the user's codes it carries
    sealed_code     BLOB,                         -- NULL once finished
    expires_at      INTEGER NOT NULL,             -- the code's expiry: never sent after it
    state           TEXT NOT NULL CHECK (state IN ('queued', 'delivered', 'failed', 'abandoned')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,                      -- claimed by a worker until then
    created_at      INTEGER NOT NULL,
    finished_at     INTEGER,
    last_error      TEXT
) WITHOUT ROWID;
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'queued';
