//! The replica source: Orders' own copy of Products' catalogue and
//! entitlements, kept by the feed. Conclusive once it has caught up with
//! Products, and while the feed is connected or was heard within its bound.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use tokenmesh_interceptor::{FeedFreshness, system_clock};

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
    /// How current the feed is: past its silence bound, changes on Products
    /// may be missing here.
    freshness: Arc<FeedFreshness>,
}

impl Replica {
    /// The replica kept in `store`, not caught up yet, trusting a quiet feed
    /// forever (see [`Replica::with_freshness`]).
    pub fn new(store: Store) -> Self {
        Self {
            store,
            caught_up: AtomicBool::new(false),
            freshness: Arc::new(FeedFreshness::new(system_clock(), std::time::Duration::MAX)),
        }
    }

    /// Conclusive only while `freshness` says the feed is current.
    pub fn with_freshness(mut self, freshness: Arc<FeedFreshness>) -> Self {
        self.freshness = freshness;
        self
    }

    /// How current the feed is; the follower reports to it.
    pub fn freshness(&self) -> &Arc<FeedFreshness> {
        &self.freshness
    }

    /// Whether the feed has been replayed to its end since Orders started.
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Acquire)
    }

    /// The feed has been replayed to its end.
    pub fn mark_caught_up(&self) {
        self.caught_up.store(true, Ordering::Release);
        self.freshness.replayed();
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
        // Products may have changed since the feed went quiet.
        if let Err(stale) = self.freshness.check() {
            return Ok(Answer::Inconclusive(format!("Products' {stale}")));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entitlement::tests::{entitle, query, replica};

    #[tokio::test]
    async fn until_caught_up_the_replica_cannot_tell() {
        let store = Store::open("sqlite::memory:").await.expect("store");
        let replica = Replica::new(store);
        assert!(!replica.caught_up());
        assert_eq!(
            replica.answer(&query()).await.expect("answer"),
            Answer::Inconclusive("not caught up with Products yet".into())
        );
    }

    #[tokio::test]
    async fn the_replica_answers_from_what_the_feed_applied() {
        let replica = replica().await;
        let unknown = Query {
            product_id: "P-999",
            ..query()
        };
        assert_eq!(
            replica.answer(&unknown).await.expect("answer"),
            Answer::Deny(Denial::UnknownProduct)
        );
        assert_eq!(
            replica.answer(&query()).await.expect("answer"),
            Answer::Deny(Denial::NotEntitled),
            "never granted"
        );
        entitle(&replica, true, 100, 2).await;
        assert_eq!(
            replica.answer(&query()).await.expect("answer"),
            Answer::Allow
        );
        entitle(&replica, false, 200, 3).await;
        assert_eq!(
            replica.answer(&query()).await.expect("answer"),
            Answer::Deny(Denial::NotEntitled),
            "revoked"
        );
        assert_eq!(replica.cursor().await.expect("cursor"), 3);
    }

    #[tokio::test]
    async fn a_revocation_counts_against_grants_issued_up_to_its_second() {
        let replica = replica().await;
        assert!(
            !replica
                .revoked_since("alice", "P-100", 150)
                .await
                .expect("lookup")
        );
        entitle(&replica, false, 200, 2).await;
        let revoked_since = |issued_at| replica.revoked_since("alice", "P-100", issued_at);
        assert!(revoked_since(199).await.expect("lookup"));
        assert!(revoked_since(200).await.expect("lookup"), "the same second");
        assert!(!revoked_since(201).await.expect("lookup"));
    }
}
