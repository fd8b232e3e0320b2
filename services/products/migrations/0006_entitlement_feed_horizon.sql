-- Portable SQL: runs unchanged on SQLite and PostgreSQL.
-- The entitlement feed is compacted: changes up to `compacted_through` are
-- deleted, their effect kept in `entitlements` (the snapshot). A subscriber
-- resuming before it must start from the snapshot (one row, id = 1).
CREATE TABLE entitlement_feed_horizon (
    id                BIGINT PRIMARY KEY,
    compacted_through BIGINT NOT NULL
);
