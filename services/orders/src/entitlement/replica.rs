//! The replica source: Orders' own copy of Products' catalogue and
//! entitlements with their terms, kept by the feed. Conclusive once it has
//! caught up with Products, and while the feed is connected or was heard
//! within its bound.

use std::sync::Arc;

use tokenmesh_interceptor::{FeedFreshness, system_clock};

use crate::{
    Store,
    store::{ReplicaChange, ReplicaEntry, StoreError},
};

use super::{
    Answer, Query, Source, SourceError, SourceKind,
    terms::{Standing, Terms},
};

/// When a grant was issued, on Products' clock and feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Issued {
    /// `iat`, Unix seconds.
    pub at: i64,
    /// `catalogue_revision`: the feed position it reflects (0: not stated, as
    /// in v1 grants).
    pub revision: u64,
}

/// What the replica has seen of an entitlement since a grant was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// No change (or none the replica has applied yet).
    Unchanged,
    /// Revoked.
    Revoked,
    /// Granted again, or its terms set: now on these terms.
    Changed(Terms),
}

/// Orders' replica of Products' catalogue and entitlements.
#[derive(Debug)]
pub struct Replica {
    store: Store,
    /// Whether the feed was replayed since Orders started, and how current it
    /// is: past its silence bound, changes on Products may be missing here.
    freshness: Arc<FeedFreshness>,
}

impl Replica {
    /// The replica kept in `store`, not caught up yet, trusting a quiet feed
    /// forever (see [`Replica::with_freshness`]).
    pub fn new(store: Store) -> Self {
        Self {
            store,
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
        self.freshness.is_replayed()
    }

    /// The feed has been replayed to its end.
    pub fn mark_caught_up(&self) {
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

    /// Replaces everything with a snapshot and the changes after it (each at
    /// its position), caught up at `cursor`, atomically.
    pub async fn replace(
        &self,
        changes: &[(ReplicaChange, i64)],
        cursor: i64,
    ) -> Result<(), StoreError> {
        self.store.replace_replica(changes, cursor).await
    }

    /// What changed in `subject`'s entitlement to `product_id` after a grant
    /// `issued` then. By feed position when the grant states one; else by time,
    /// both on Products' clock in seconds, a change in the grant's second
    /// counting as newer.
    pub async fn since(
        &self,
        subject: &str,
        product_id: &str,
        issued: Issued,
    ) -> Result<Since, StoreError> {
        let entry = self.store.replica_lookup(subject, product_id).await?;
        let ReplicaEntry::Known {
            granted,
            changed_at,
            seq,
            terms,
        } = entry
        else {
            return Ok(Since::Unchanged);
        };
        let newer = match (issued.revision, u64::try_from(seq).unwrap_or_default()) {
            (revision, seq) if revision > 0 && seq > 0 => seq > revision,
            _ => changed_at >= issued.at,
        };
        Ok(match (newer, granted) {
            (false, _) => Since::Unchanged,
            (true, false) => Since::Revoked,
            (true, true) => Since::Changed(terms),
        })
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
        let standing = match entry {
            ReplicaEntry::UnknownProduct => Standing::UnknownProduct,
            ReplicaEntry::Known {
                granted: true,
                terms,
                ..
            } => Standing::Entitled(terms),
            ReplicaEntry::NeverGranted | ReplicaEntry::Known { granted: false, .. } => {
                Standing::NotEntitled
            }
        };
        Ok(standing.answer(query.quantity))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        entitlement::{
            Denial,
            tests::{entitle, query, replica_on},
        },
        store::ReplicaChange,
    };

    tokenmesh_server::on_each_store!(
        until_caught_up_the_replica_cannot_tell,
        the_replica_answers_from_what_the_feed_applied,
        the_replica_answers_with_the_terms_the_feed_carried,
        a_change_counts_against_grants_issued_up_to_its_second,
        a_grant_stating_its_revision_is_compared_by_feed_position,
    );

    async fn until_caught_up_the_replica_cannot_tell(url: &str) {
        let store = Store::open(url).await.expect("store");
        let replica = Replica::new(store);
        assert!(!replica.caught_up());
        assert_eq!(
            replica.answer(&query()).await.expect("answer"),
            Answer::Inconclusive("not caught up with Products yet".into())
        );
    }

    async fn the_replica_answers_from_what_the_feed_applied(url: &str) {
        let replica = replica_on(url).await;
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

    async fn the_replica_answers_with_the_terms_the_feed_carried(url: &str) {
        let replica = replica_on(url).await;
        let limited = Terms {
            order: true,
            max_quantity: 2,
        };
        set_terms(&replica, limited, 100, 2).await;
        let ordering = |quantity| Query {
            quantity,
            ..query()
        };
        assert_eq!(
            replica.answer(&ordering(2)).await.expect("answer"),
            Answer::Allow
        );
        assert_eq!(
            replica.answer(&ordering(3)).await.expect("answer"),
            Answer::Deny(Denial::OverLimit(2))
        );
        let view_only = Terms {
            order: false,
            max_quantity: 0,
        };
        set_terms(&replica, view_only, 100, 3).await;
        assert_eq!(
            replica.answer(&ordering(1)).await.expect("answer"),
            Answer::Deny(Denial::OrderNotAllowed)
        );
    }

    async fn set_terms(replica: &Replica, terms: Terms, changed_at: i64, cursor: i64) {
        let change = ReplicaChange::Entitlement {
            subject: "alice".into(),
            product_id: "P-100".into(),
            granted: true,
            changed_at,
            terms,
        };
        replica.apply(&change, cursor).await.expect("applied");
    }

    async fn a_change_counts_against_grants_issued_up_to_its_second(url: &str) {
        let replica = replica_on(url).await;
        let since = |at| replica.since("alice", "P-100", Issued { at, revision: 0 });
        assert_eq!(since(150).await.expect("lookup"), Since::Unchanged);
        entitle(&replica, false, 200, 2).await;
        assert_eq!(since(199).await.expect("lookup"), Since::Revoked);
        assert_eq!(
            since(200).await.expect("lookup"),
            Since::Revoked,
            "the same second"
        );
        assert_eq!(since(201).await.expect("lookup"), Since::Unchanged);
        set_terms(&replica, Terms::default(), 300, 3).await;
        assert_eq!(
            since(300).await.expect("lookup"),
            Since::Changed(Terms::default())
        );
    }

    async fn a_grant_stating_its_revision_is_compared_by_feed_position(url: &str) {
        let replica = replica_on(url).await;
        entitle(&replica, false, 200, 5).await;
        let since = |revision| replica.since("alice", "P-100", Issued { at: 200, revision });
        assert_eq!(since(4).await.expect("lookup"), Since::Revoked);
        // Issued in the revocation's second, but after it: the position says so.
        assert_eq!(since(5).await.expect("lookup"), Since::Unchanged);
    }
}
