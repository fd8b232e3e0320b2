//! The replica source: Orders' own copy of Products' catalogue and
//! entitlements, kept by the feed. Conclusive once it has caught up with
//! Products, and it stays so while Products is down: nothing can change then.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::{
    Store,
    store::{ReplicaChange, ReplicaEntry, StoreError},
};

use super::{Answer, Denial, Query, Source, SourceError, SourceKind};

/// Orders' replica of Products' catalogue and entitlements.
#[derive(Debug)]
pub struct Replica {
    store: Store,
    /// Set once the feed has been replayed to its end since Orders started; kept
    /// through disconnects.
    caught_up: AtomicBool,
}

impl Replica {
    /// The replica kept in `store`, not caught up yet.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            caught_up: AtomicBool::new(false),
        }
    }

    /// Whether the feed has been replayed to its end since Orders started.
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Acquire)
    }

    /// The feed has been replayed to its end.
    pub fn mark_caught_up(&self) {
        self.caught_up.store(true, Ordering::Release);
    }

    /// The feed position applied so far.
    pub async fn cursor(&self) -> Result<i64, StoreError> {
        self.store.replica_cursor().await
    }

    /// Applies one feed change and its position, atomically.
    pub async fn apply(&self, change: &ReplicaChange, cursor: i64) -> Result<(), StoreError> {
        self.store.apply_replica_change(change, cursor).await
    }

    /// Whether `subject`'s entitlement to `product_id` was revoked at or after
    /// `issued_at` (both on Products' clock, in seconds: a grant issued in the
    /// same second as a revocation is treated as older).
    pub async fn revoked_since(
        &self,
        subject: &str,
        product_id: &str,
        issued_at: i64,
    ) -> Result<bool, StoreError> {
        let entry = self.store.replica_lookup(subject, product_id).await?;
        Ok(matches!(
            entry,
            ReplicaEntry::Known { granted: false, changed_at } if changed_at >= issued_at
        ))
    }
}

#[tonic::async_trait]
impl Source for Replica {
    fn kind(&self) -> SourceKind {
        SourceKind::Replica
    }

    async fn answer(&self, query: &Query<'_>) -> Result<Answer, SourceError> {
        if !self.caught_up() {
            return Ok(Answer::Inconclusive(
                "not caught up with Products yet".into(),
            ));
        }
        let entry = self
            .store
            .replica_lookup(query.subject, query.product_id)
            .await?;
        Ok(match entry {
            ReplicaEntry::UnknownProduct => Answer::Deny(Denial::UnknownProduct),
            ReplicaEntry::Known { granted: true, .. } => Answer::Allow,
            ReplicaEntry::NeverGranted | ReplicaEntry::Known { granted: false, .. } => {
                Answer::Deny(Denial::NotEntitled)
            }
        })
    }
}

