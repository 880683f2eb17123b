-- Start-up lists the users defined by .env; this keeps that fast with millions of users.
CREATE INDEX users_env_source ON users (source) WHERE source = 'env';
