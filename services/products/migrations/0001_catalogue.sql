-- Portable SQL: runs unchanged on SQLite and PostgreSQL.
CREATE TABLE products (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    price_cents BIGINT NOT NULL
);

-- Who may see and order what.
CREATE TABLE entitlements (
    subject    TEXT NOT NULL,
    product_id TEXT NOT NULL REFERENCES products (id),
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (subject, product_id)
);

-- The feed replicas follow: every catalogue and entitlement change, in order.
-- `seq` is the stream cursor (and the catalogue revision).
CREATE TABLE entitlement_events (
    seq        BIGINT PRIMARY KEY,
    kind       TEXT NOT NULL,
    subject    TEXT NOT NULL DEFAULT '',
    product_id TEXT NOT NULL,
    granted    BIGINT NOT NULL DEFAULT 0,
    changed_at BIGINT NOT NULL
);
