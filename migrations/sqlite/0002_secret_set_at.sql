ALTER TABLE users ADD COLUMN secret_set_at INTEGER; -- when the current secret was issued (enrollment QR window)
