-- Users created through the admin API are recorded as such ('admin'), apart from those of
-- the command line ('cli'). Instances of the version before read 'admin' as 'cli', so they
-- can keep serving during a rolling upgrade. NOT VALID: the existing rows met the stricter
-- check, and skipping their scan keeps the table's exclusive lock to an instant.
ALTER TABLE users DROP CONSTRAINT users_source_check;
ALTER TABLE users ADD CONSTRAINT users_source_check CHECK (source IN ('env', 'cli', 'admin')) NOT VALID;
