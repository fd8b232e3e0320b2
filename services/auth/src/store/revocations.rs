//! The revocation feed's table: an append-only log whose `seq` is the stream
//! cursor. A subject row revokes every token issued to it before `not_before`;
//! a jti row revokes one token.

use sqlx::{Any, Transaction};

use tokenmesh_server::db::lock_feed;

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

/// Appends a subject revocation at `MAX(seq) + 1` (inside a cut-off's
/// transaction, as its last write: see [`lock_feed`]). A concurrent writer may
/// still take the same number: the unique violation comes back as is, for the
/// caller to retry.
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
    Ok(())
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
    Ok(())
}
