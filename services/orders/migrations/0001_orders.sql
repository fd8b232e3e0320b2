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
