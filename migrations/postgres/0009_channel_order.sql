-- OTP_DELIVERY=first: the order in which a user's channels are tried (comma-separated,
-- e.g. 'email,telegram'); NULL: the default, Telegram first, then email.
ALTER TABLE users ADD COLUMN channels TEXT;
-- When the user's Telegram chat refused the bot for good (blocked it, or is gone): the
-- chat is skipped until the user's Telegram id changes.
ALTER TABLE users ADD COLUMN telegram_blocked_at BIGINT;
