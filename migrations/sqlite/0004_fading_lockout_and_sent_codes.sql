-- The lockout's failures fade with time since the last one (a right code no longer resets
-- them), and the sent codes move into the user's row: the newest (sealed, so that a resend
-- within half its lifetime repeats it) and the one before it, consumed together, with a
-- per-user pace of sends (GCRA's theoretical arrival time). One row holds the whole
-- security state, so each decision is one conditional UPDATE of that row.
ALTER TABLE users ADD COLUMN last_failed_at INTEGER;
ALTER TABLE users ADD COLUMN code_hash BLOB;
ALTER TABLE users ADD COLUMN sealed_code BLOB;
ALTER TABLE users ADD COLUMN code_sent_at INTEGER;
ALTER TABLE users ADD COLUMN code_expires_at INTEGER;
ALTER TABLE users ADD COLUMN previous_code_hash BLOB;
ALTER TABLE users ADD COLUMN previous_code_expires_at INTEGER;
ALTER TABLE users ADD COLUMN codes_used_at INTEGER;
ALTER TABLE users ADD COLUMN send_tat INTEGER;

-- Failures counted before this version start fading now.
UPDATE users SET last_failed_at = CAST(strftime('%s', 'now') AS INTEGER) WHERE failed_attempts > 0;
UPDATE users SET
    code_hash = (SELECT s.code_hash FROM sent_codes s WHERE s.username = users.username),
    code_sent_at = (SELECT s.sent_at FROM sent_codes s WHERE s.username = users.username),
    code_expires_at = (SELECT s.expires_at FROM sent_codes s WHERE s.username = users.username)
WHERE username IN (SELECT username FROM sent_codes);
DROP TABLE sent_codes;
