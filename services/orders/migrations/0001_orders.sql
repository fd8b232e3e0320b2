-- Portable SQL: runs unchanged on SQLite and PostgreSQL.
CREATE TABLE orders (
    id                 TEXT PRIMARY KEY,
    subject            TEXT NOT NULL,
    product_id         TEXT NOT NULL,
    quantity           BIGINT NOT NULL,
    request_id         TEXT NOT NULL,
    -- tokenmesh.orders.v1.EntitlementSource
    entitlement_source BIGINT NOT NULL,
    created_at_us      BIGINT NOT NULL,
    -- A retried request finds the order its first attempt placed.
    UNIQUE (subject, request_id)
);
CREATE INDEX orders_by_subject ON orders (subject, created_at_us, id);

-- Orders' replica of Products' catalogue and entitlements, fed by
-- WatchEntitlements. Revoked entitlements stay as rows (granted = 0) so that a
-- revocation can override grants issued before it.
CREATE TABLE replica_products (
    product_id TEXT PRIMARY KEY
);
CREATE TABLE replica_entitlements (
    subject    TEXT NOT NULL,
    product_id TEXT NOT NULL,
    granted    BIGINT NOT NULL,
    changed_at BIGINT NOT NULL,
    PRIMARY KEY (subject, product_id)
);
-- The feed cursor applied so far (one row).
CREATE TABLE replica_cursor (
    id     BIGINT PRIMARY KEY,
    cursor BIGINT NOT NULL
);
