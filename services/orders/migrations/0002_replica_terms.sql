-- Portable SQL: runs unchanged on SQLite and PostgreSQL.
-- What each replicated entitlement allows an order (issue 10, item 10): the
-- `order` action (0/1) and the most units per order (0: no limit), and the feed
-- position of its last change, to tell which grants are older than it.
ALTER TABLE replica_entitlements ADD COLUMN may_order BIGINT NOT NULL DEFAULT 1;
ALTER TABLE replica_entitlements ADD COLUMN max_quantity BIGINT NOT NULL DEFAULT 0;
ALTER TABLE replica_entitlements ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;

-- Rows applied before this migration lack their terms: replay the whole feed
-- (every change is an upsert, so replaying is safe) to fill them in.
DELETE FROM replica_cursor;
