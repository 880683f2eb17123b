-- Telegram chats linking themselves (POST /admin/users/{u}/telegram-link, then `/start
-- <token>` to the bot): a token is stored only as its SHA-256 (it is 256 random bits, so
-- no key is needed to keep it from being guessed back), works once, and until expires_at.
CREATE TABLE telegram_links (
    token_hash BYTEA PRIMARY KEY,
    username   TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,    -- unix seconds
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    chat       TEXT                -- the chat that used it
);
CREATE INDEX telegram_links_by_user ON telegram_links (username);
