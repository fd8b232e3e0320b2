//! The replica source: Orders' own copy of Products' catalogue and
//! entitlements with their terms, kept by the feed in the store and, for
//! answering, in memory. Conclusive once it has caught up with Products, and
//! while the feed is connected or was heard within its bound.

use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use tokenmesh_interceptor::{FeedFreshness, system_clock};

use crate::{
    Store,
    store::{ReplicaChange, ReplicaEntry, StoreError},
};

use super::{
    Answer, Query, Source, SourceError, SourceKind,
    memory::Memory,
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
///
/// The store is the durable copy (a restart resumes from its cursor); every
/// answer comes from `memory`, which is loaded from the store and changed only
/// after the store's transaction commits. It holds one entry per (subject,
/// product) the feed carried plus the product set — what the tables hold, and
/// no more than a re-sync already gathers in memory (`MAX_SNAPSHOT_ENTRIES`).
#[derive(Debug)]
pub struct Replica {
    store: Store,
    memory: RwLock<Memory>,
    /// Held by a writer from its store transaction to its memory update, so
    /// that the memory applies changes in the order the store committed them.
    writing: tokio::sync::Mutex<()>,
    /// Whether the feed was replayed since Orders started, and how current it
    /// is: past its silence bound, changes on Products may be missing here.
    freshness: Arc<FeedFreshness>,
}

impl Replica {
    /// The replica kept in `store`, loaded into memory, not caught up yet,
    /// trusting a quiet feed forever (see [`Replica::with_freshness`]).
    pub async fn load(store: Store) -> Result<Self, StoreError> {
        let (changes, cursor) = store.replica_contents().await?;
        Ok(Self {
            memory: RwLock::new(Memory::from_changes(&changes, cursor)),
            store,
            writing: tokio::sync::Mutex::new(()),
            freshness: Arc::new(FeedFreshness::new(system_clock(), std::time::Duration::MAX)),
        })
    }

    /// Conclusive only while `freshness` says the feed is current; tells it
    /// the position applied from here on.
    pub fn with_freshness(mut self, freshness: Arc<FeedFreshness>) -> Self {
        freshness.applied(position(self.cursor()));
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

    /// The feed position applied so far. The memory's: should a commit
    /// succeed but report failure, the follower resumes before it and the
    /// memory gets the change again (every change is an upsert).
    pub fn cursor(&self) -> i64 {
        self.memory().cursor()
    }

    /// Applies one feed change and its position, atomically.
    pub async fn apply(&self, change: &ReplicaChange, cursor: i64) -> Result<(), StoreError> {
        let _writing = self.writing.lock().await;
        self.store.apply_replica_change(change, cursor).await?;
        self.memory
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .apply(change, cursor);
        self.freshness.applied(position(cursor));
        Ok(())
    }

    /// Replaces everything with a snapshot and the changes after it (each at
    /// its position), caught up at `cursor`, atomically.
    pub async fn replace(
        &self,
        changes: &[(ReplicaChange, i64)],
        cursor: i64,
    ) -> Result<(), StoreError> {
        let _writing = self.writing.lock().await;
        self.store.replace_replica(changes, cursor).await?;
        // Built before the swap: readers wait for the swap only.
        let memory = Memory::from_changes(changes, cursor);
        *self.memory.write().unwrap_or_else(PoisonError::into_inner) = memory;
        self.freshness.applied(position(cursor));
        Ok(())
    }

    /// What the replica holds for `subject` and `product_id`.
    pub fn lookup(&self, subject: &str, product_id: &str) -> ReplicaEntry {
        self.memory().lookup(subject, product_id)
    }

    fn memory(&self) -> RwLockReadGuard<'_, Memory> {
        self.memory.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// What changed in `subject`'s entitlement to `product_id` after a grant
    /// `issued` then. By feed position when the grant states one; else by time,
    /// both on Products' clock in seconds, a change in the grant's second
    /// counting as newer.
    pub fn since(&self, subject: &str, product_id: &str, issued: Issued) -> Since {
        let ReplicaEntry::Known {
            granted,
            changed_at,
            seq,
            terms,
        } = self.lookup(subject, product_id)
        else {
            return Since::Unchanged;
        };
        let newer = match (issued.revision, u64::try_from(seq).unwrap_or_default()) {
            (revision, seq) if revision > 0 && seq > 0 => seq > revision,
            _ => changed_at >= issued.at,
        };
        match (newer, granted) {
            (false, _) => Since::Unchanged,
            (true, false) => Since::Revoked,
            (true, true) => Since::Changed(terms),
        }
    }
}

/// A stored cursor as a feed position (never negative).
fn position(cursor: i64) -> u64 {
    u64::try_from(cursor).unwrap_or_default()
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
        let standing = match self.lookup(query.subject, query.product_id) {
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
        a_replica_loaded_from_the_store_answers_as_the_one_that_wrote_it,
    );

    async fn until_caught_up_the_replica_cannot_tell(url: &str) {
        let store = Store::open(url).await.expect("store");
        let replica = Replica::load(store).await.expect("loaded");
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
        assert_eq!(replica.cursor(), 3);
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
        assert_eq!(since(150), Since::Unchanged);
        entitle(&replica, false, 200, 2).await;
        assert_eq!(since(199), Since::Revoked);
        assert_eq!(since(200), Since::Revoked, "the same second");
        assert_eq!(since(201), Since::Unchanged);
        set_terms(&replica, Terms::default(), 300, 3).await;
        assert_eq!(since(300), Since::Changed(Terms::default()));
    }

    async fn a_grant_stating_its_revision_is_compared_by_feed_position(url: &str) {
        let replica = replica_on(url).await;
        entitle(&replica, false, 200, 5).await;
        let since = |revision| replica.since("alice", "P-100", Issued { at: 200, revision });
        assert_eq!(since(4), Since::Revoked);
        // Issued in the revocation's second, but after it: the position says so.
        assert_eq!(since(5), Since::Unchanged);
    }

    async fn a_replica_loaded_from_the_store_answers_as_the_one_that_wrote_it(url: &str) {
        let writer = replica_on(url).await;
        let product = |id: &str| ReplicaChange::Product {
            product_id: id.into(),
        };
        let entitlement = |subject: &str, product_id: &str, granted| ReplicaChange::Entitlement {
            subject: subject.into(),
            product_id: product_id.into(),
            granted,
            changed_at: 100,
            terms: Terms {
                order: true,
                max_quantity: 3,
            },
        };
        writer.apply(&product("P-200"), 2).await.expect("applied");
        writer
            .apply(&entitlement("bob", "P-200", true), 3)
            .await
            .expect("applied");
        entitle(&writer, false, 150, 4).await;
        let cases = [
            ("alice", "P-100"),
            ("bob", "P-100"),
            ("bob", "P-200"),
            ("alice", "P-200"),
            ("bob", "P-999"),
        ];
        let restarted = Replica::load(writer.store.clone()).await.expect("loaded");
        assert_eq!(restarted.cursor(), 4);
        for (subject, product_id) in cases {
            let entry = restarted.lookup(subject, product_id);
            assert_eq!(
                entry,
                writer.lookup(subject, product_id),
                "{subject}, {product_id}"
            );
            assert_eq!(
                entry,
                writer
                    .store
                    .replica_lookup(subject, product_id)
                    .await
                    .expect("lookup"),
                "the store agrees: {subject}, {product_id}"
            );
        }
        assert!(matches!(
            restarted.lookup("bob", "P-200"),
            ReplicaEntry::Known {
                granted: true,
                seq: 3,
                ..
            }
        ));

        // A re-sync replaces the copy as it replaces the tables.
        let snapshot = [
            (product("P-200"), 5),
            (entitlement("carol", "P-200", true), 6),
        ];
        restarted.replace(&snapshot, 6).await.expect("replaced");
        assert_eq!(restarted.cursor(), 6);
        for (subject, product_id) in [("carol", "P-200"), ("bob", "P-200"), ("alice", "P-100")] {
            assert_eq!(
                restarted.lookup(subject, product_id),
                restarted
                    .store
                    .replica_lookup(subject, product_id)
                    .await
                    .expect("lookup"),
                "after the re-sync: {subject}, {product_id}"
            );
        }
        assert_eq!(restarted.lookup("bob", "P-200"), ReplicaEntry::NeverGranted);
        assert_eq!(
            restarted.lookup("alice", "P-100"),
            ReplicaEntry::UnknownProduct
        );
    }
}
