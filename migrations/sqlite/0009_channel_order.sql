-- OTP_DELIVERY=first: the order in which a user's channels are tried (comma-separated,
-- e.g. 'email,telegram'); NULL: the default, Telegram first, then email.
ALTER TABLE users ADD COLUMN channels TEXT;
