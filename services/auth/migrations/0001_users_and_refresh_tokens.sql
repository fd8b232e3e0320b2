-- Portable SQL: runs unchanged on SQLite and PostgreSQL.
CREATE TABLE users (
    username      TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    scopes        TEXT NOT NULL DEFAULT '',
    active        BIGINT NOT NULL DEFAULT 1,
    created_at    BIGINT NOT NULL
);

-- Refresh tokens are stored as SHA-256 hashes; a family is one login's chain of
-- rotations.
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    family_id  TEXT NOT NULL,
    username   TEXT NOT NULL REFERENCES users (username),
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    spent_at   BIGINT,
    revoked_at BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
