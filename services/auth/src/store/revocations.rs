//! The revocation feed's table: an append-only log whose `seq` is the stream
//! cursor. A subject row revokes every token issued to it before `not_before`;
//! a jti row revokes one token; a session row every token of one login.
//!
//! Rows are pruned once nothing they match can still be valid: after
//! `forget_after`, which is the revocation's time plus the access-token
//! lifetime plus the most leeway a verifier allows (exchanged tokens never
//! outlive their subject token). Refresh tokens need no row: every refresh
//! reads the family and the user's epoch in its own transaction. The last row
//! is always kept, so that a new row never reuses a cursor a follower holds.

use sqlx::{Any, Transaction};
use tokenmesh_server::{
    db::lock_feed,
    wakeups::{REVOCATIONS, notify},
};

use super::{Store, StoreError};

/// One revocation of the feed.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Revocation {
    /// Stream position.
    pub seq: i64,
    /// Set for subject revocations.
    pub subject: String,
    /// Set for single-token revocations.
    pub jti: String,
    /// Set for session revocations.
    pub session_id: String,
    /// Subject revocations: tokens issued before this are revoked.
    pub not_before: i64,
    /// When the entry stops mattering.
    pub forget_after: i64,
}

/// A subject's revocation epoch: tokens issued before `not_before` are revoked,
/// and the entry matters until `forget_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch {
    /// Unix seconds; tokens with an earlier `iat` are revoked.
    pub not_before: i64,
    /// Unix seconds; after this no token the entry concerns can be valid.
    pub forget_after: i64,
}

impl Store {
    /// Revocations after `since` that still matter at `now`, in order.
    pub async fn revocations_since(
        &self,
        since: i64,
        now: i64,
        limit: i64,
    ) -> Result<Vec<Revocation>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT seq, subject, jti, session_id, not_before, forget_after FROM revocations \
             WHERE seq > $1 AND forget_after >= $2 ORDER BY seq LIMIT $3",
        )
        .bind(since)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }
}

impl Store {
    /// The feed's last position (0 when empty): pruning keeps the last row, so
    /// it never goes back but with the store itself.
    pub async fn last_revocation(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM revocations")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Deletes the rows that no longer matter at `now` (all but the last); any
    /// replica may, at any time. Answers how many it deleted.
    pub async fn prune_revocations(&self, now: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "DELETE FROM revocations WHERE forget_after < $1 \
             AND seq < (SELECT MAX(seq) FROM revocations)",
        )
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}

/// Appends a subject revocation at `MAX(seq) + 1` (inside a cut-off's
/// transaction, as its last write: see [`lock_feed`]) and notifies the feed's
/// listeners on commit. A concurrent writer may still take the same number:
/// the unique violation comes back as is, for the caller to retry.
pub(super) async fn append_subject(
    tx: &mut Transaction<'_, Any>,
    subject: &str,
    epoch: Epoch,
) -> Result<(), sqlx::Error> {
    lock_feed(tx, "revocations").await?;
    sqlx::query(
        "INSERT INTO revocations (seq, subject, jti, not_before, forget_after) \
         SELECT COALESCE(MAX(seq), 0) + 1, $1, '', $2, $3 FROM revocations",
    )
    .bind(subject)
    .bind(epoch.not_before)
    .bind(epoch.forget_after)
    .execute(&mut **tx)
    .await?;
    notify(tx, REVOCATIONS).await
}

/// Appends a session revocation at `MAX(seq) + 1`, as [`append_subject`] does.
pub(super) async fn append_session(
    tx: &mut Transaction<'_, Any>,
    session_id: &str,
    forget_after: i64,
) -> Result<(), sqlx::Error> {
    lock_feed(tx, "revocations").await?;
    sqlx::query(
        "INSERT INTO revocations (seq, subject, jti, session_id, not_before, forget_after) \
         SELECT COALESCE(MAX(seq), 0) + 1, '', '', $1, 0, $2 FROM revocations",
    )
    .bind(session_id)
    .bind(forget_after)
    .execute(&mut **tx)
    .await?;
    notify(tx, REVOCATIONS).await
}
