-- Portable SQL: runs unchanged on SQLite and PostgreSQL.
-- What an entitlement allows (issue 10, item 10): its actions, space-separated
-- ("view order"), and the most units per order (0: no limit). Existing
-- entitlements keep what they meant before: view and order, no limit.
ALTER TABLE entitlements ADD COLUMN actions TEXT NOT NULL DEFAULT 'view order';
ALTER TABLE entitlements ADD COLUMN max_quantity BIGINT NOT NULL DEFAULT 0;

-- The feed carries each entitlement's terms after the change, so that replicas
-- hold the same state as Products.
ALTER TABLE entitlement_events ADD COLUMN actions TEXT NOT NULL DEFAULT 'view order';
ALTER TABLE entitlement_events ADD COLUMN max_quantity BIGINT NOT NULL DEFAULT 0;
