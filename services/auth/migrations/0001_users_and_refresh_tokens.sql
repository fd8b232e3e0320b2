-- Portable SQL: runs unchanged on SQLite and PostgreSQL.
CREATE TABLE users (
    username      TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    scopes        TEXT NOT NULL DEFAULT '',
    active        BIGINT NOT NULL DEFAULT 1,
    -- Access tokens issued before this (Unix seconds) are revoked.
    not_before    BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL
);

-- One login's chain of refresh tokens; revoking the family ends the login.
CREATE TABLE refresh_families (
    family_id  TEXT PRIMARY KEY,
    username   TEXT NOT NULL REFERENCES users (username),
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX refresh_families_user ON refresh_families (username);

-- Refresh tokens, stored as SHA-256 hashes only.
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    family_id  TEXT NOT NULL REFERENCES refresh_families (family_id),
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    spent_at   BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

-- The revocation feed. `seq` is the stream cursor; a subject row revokes tokens
-- issued before `not_before`, a jti row one token.
CREATE TABLE revocations (
    seq          BIGINT PRIMARY KEY,
    subject      TEXT NOT NULL DEFAULT '',
    jti          TEXT NOT NULL DEFAULT '',
    not_before   BIGINT NOT NULL DEFAULT 0,
    forget_after BIGINT NOT NULL
);

-- Service clients for client credentials and token exchange. Secrets are 256-bit
-- random strings, so a SHA-256 hash is enough (no password-grade KDF needed).
CREATE TABLE service_clients (
    client_id   TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    scopes      TEXT NOT NULL DEFAULT '',
    audiences   TEXT NOT NULL DEFAULT ''
);

-- Signing keys. The newest unretired key signs; a retired key stays published
-- until `expires_at`, when the last token it signed has expired.
CREATE TABLE signing_keys (
    kid             TEXT PRIMARY KEY,
    algorithm       TEXT NOT NULL,
    private_key_pem TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    retired_at      BIGINT,
    expires_at      BIGINT
);
