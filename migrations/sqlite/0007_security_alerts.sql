-- Security alerts to the user (src/alerts.rs). `alerts_sent` holds when each kind of alert
-- last went to a user: one conditional upsert claims the hour for a (user, kind), so at most
-- one alert of a kind goes per user per hour whichever instance raises it. It is throttle
-- state only; it goes with the user. (A later migration that rebuilds `users` the SQLite way
-- drops these rows with the old table: at worst one alert of a kind goes early.)
CREATE TABLE alerts_sent (
    username TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    kind     TEXT NOT NULL,
    sent_at  INTEGER NOT NULL,    -- unix seconds
    PRIMARY KEY (username, kind)
) WITHOUT ROWID;

-- The client addresses of the failures counted since the last lock or unlock: distinct, at
-- most 4, comma-separated, written by the same conditional UPDATE that counts a failure, so
-- the lockout alert can say where the failures came from. An operator unlock clears it.
ALTER TABLE users ADD COLUMN failed_from TEXT;
