-- The lockout's failures fade with time since the last one (a right code no longer resets
-- them), and the sent codes move into the user's row: the newest (sealed, so that a resend
-- within half its lifetime repeats it) and the one before it, consumed together, with a
-- per-user pace of sends (GCRA's theoretical arrival time). One row holds the whole
-- security state, so each decision is one conditional UPDATE of that row.
ALTER TABLE users
    ADD COLUMN last_failed_at BIGINT,
    ADD COLUMN code_hash BYTEA,
    ADD COLUMN sealed_code BYTEA,
    ADD COLUMN code_sent_at BIGINT,
    ADD COLUMN code_expires_at BIGINT,
    ADD COLUMN previous_code_hash BYTEA,
    ADD COLUMN previous_code_expires_at BIGINT,
    ADD COLUMN codes_used_at BIGINT,
    ADD COLUMN send_tat BIGINT;

-- Failures counted before this version start fading now.
UPDATE users SET last_failed_at = CAST(EXTRACT(EPOCH FROM now()) AS BIGINT) WHERE failed_attempts > 0;
UPDATE users SET code_hash = s.code_hash, code_sent_at = s.sent_at, code_expires_at = s.expires_at
FROM sent_codes s WHERE s.username = users.username;
DROP TABLE sent_codes;
