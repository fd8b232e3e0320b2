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
