//! The entitlement feed's compaction: changes older than a horizon are deleted,
//! their effect being in the catalogue and entitlements tables, which then
//! serve as the snapshot a subscriber from before the horizon starts from.

use super::{ChangeRecord, Store, StoreError};

/// Where a snapshot page starts: after this product id, or after this
/// (subject, product id) entitlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotAfter {
    /// Products after this id (`""`: from the first).
    Product(String),
    /// Entitlements after this (subject, product id) (`("", "")`: from the first).
    Entitlement(String, String),
}

impl Store {
    /// The highest feed position compacted away (0: none): a subscriber resuming
    /// from an earlier cursor would miss changes.
    pub async fn compacted_through(&self) -> Result<i64, StoreError> {
        let horizon: Option<i64> = sqlx::query_scalar(
            "SELECT compacted_through FROM entitlement_feed_horizon WHERE id = 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(horizon.unwrap_or(0))
    }

    /// Deletes the changes made before `before` (Unix seconds), always keeping
    /// the last one (new changes are numbered after it), and moves the horizon
    /// past them. Idempotent: replicas may run it concurrently. Answers the
    /// horizon.
    pub async fn compact_feed(&self, before: i64) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The write first: SQLite takes its write lock up front.
        sqlx::query(
            "INSERT INTO entitlement_feed_horizon (id, compacted_through) \
             SELECT 1, COALESCE(MAX(seq), 0) FROM entitlement_events \
             WHERE changed_at < $1 AND seq < (SELECT MAX(seq) FROM entitlement_events) \
             ON CONFLICT (id) DO UPDATE SET compacted_through = CASE \
               WHEN excluded.compacted_through > entitlement_feed_horizon.compacted_through \
               THEN excluded.compacted_through \
               ELSE entitlement_feed_horizon.compacted_through END",
        )
        .bind(before)
        .execute(&mut *tx)
        .await?;
        let horizon: i64 = sqlx::query_scalar(
            "SELECT compacted_through FROM entitlement_feed_horizon WHERE id = 1",
        )
        .fetch_one(&mut *tx)
        .await?;
        let deleted = sqlx::query("DELETE FROM entitlement_events WHERE seq <= $1")
            .bind(horizon)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        if deleted > 0 {
            tracing::info!(deleted, horizon, "entitlement feed compacted");
        }
        Ok(horizon)
    }

    /// One page of the snapshot after `after`, as feed entries at position
    /// `horizon`: products first, then granted entitlements (`changed_at`: when
    /// granted). An empty page of products means: go on with entitlements.
    pub async fn snapshot_page(
        &self,
        horizon: i64,
        after: &SnapshotAfter,
        limit: i64,
    ) -> Result<Vec<ChangeRecord>, StoreError> {
        let page = match after {
            SnapshotAfter::Product(id) => {
                sqlx::query_as(
                    "SELECT CAST($1 AS BIGINT) AS seq, 'product' AS kind, '' AS subject, \
                     id AS product_id, CAST(0 AS BIGINT) AS granted, CAST(0 AS BIGINT) AS changed_at, \
                     '' AS actions, CAST(0 AS BIGINT) AS max_quantity \
                     FROM products WHERE id > $2 ORDER BY id LIMIT $3",
                )
                .bind(horizon)
                .bind(id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            SnapshotAfter::Entitlement(subject, product_id) => {
                sqlx::query_as(
                    "SELECT CAST($1 AS BIGINT) AS seq, 'entitlement' AS kind, subject, product_id, \
                     CAST(1 AS BIGINT) AS granted, granted_at AS changed_at, actions, max_quantity \
                     FROM entitlements \
                     WHERE subject > $2 OR (subject = $2 AND product_id > $3) \
                     ORDER BY subject, product_id LIMIT $4",
                )
                .bind(horizon)
                .bind(subject)
                .bind(product_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        Ok(page)
    }
}
