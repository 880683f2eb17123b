ALTER TABLE users ADD COLUMN secret_set_at BIGINT; -- when the current secret was issued (enrollment QR window)
