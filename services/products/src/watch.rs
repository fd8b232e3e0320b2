//! The entitlement feed as Products serves it: WatchEntitlements from a cursor
//! (OUT_OF_RANGE once the cursor is older than the compaction horizon, or past
//! the last position because the store went back) or from
//! the snapshot, and the periodic compaction that keeps the feed small.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use futures::{Stream, StreamExt};
use tokenmesh_proto::products::v1::{
    EntitlementChange, EntitlementEvent, Heartbeat, entitlement_event,
};
use tokenmesh_server::{Feed, Markers};
use tonic::Status;

use crate::{
    ProductsError, Store,
    store::{ChangeRecord, FeedChange, SnapshotAfter, StoreError},
};

/// The WatchEntitlements stream.
pub(crate) type ChangeStream =
    std::pin::Pin<Box<dyn Stream<Item = Result<EntitlementEvent, Status>> + Send>>;

/// Rows per snapshot page.
const SNAPSHOT_PAGE: i64 = 500;

/// The changes after `since`, the caught-up marker, then the live tail, until
/// `expires_at`. Ends with OUT_OF_RANGE as soon as changes after `since` have
/// been compacted away, or the feed's last position is behind the cursor.
pub(crate) fn changes(feed: &Feed, store: Store, since: i64, expires_at: i64) -> ReceiverStream {
    let markers = Markers {
        // After the replay, an event without a change marks "caught up".
        caught_up: |cursor: i64| EntitlementEvent {
            cursor: u64::try_from(cursor).unwrap_or_default(),
            changed_at: 0,
            change: None,
        },
        heartbeat: |cursor: i64| EntitlementEvent {
            cursor: u64::try_from(cursor).unwrap_or_default(),
            changed_at: 0,
            change: Some(entitlement_event::Change::Heartbeat(Heartbeat {})),
        },
    };
    let last_store = store.clone();
    let fetch = move |cursor, limit: usize| {
        let store = store.clone();
        async move {
            let records = store
                .changes_since(cursor, limit as i64)
                .await
                .map_err(status)?;
            // Sequence numbers have no gaps but compaction's, and compaction
            // keeps the last row: rows from `cursor + 1` on, or none after it,
            // lost nothing, and need no second read.
            let contiguous = records.first().is_none_or(|first| first.seq == cursor + 1);
            if !contiguous {
                // Read after the rows: a compaction that deleted some of them
                // before the read has moved the horizon by now.
                let oldest = store.compacted_through().await.map_err(status)?;
                if cursor < oldest {
                    return Err(ProductsError::Compacted {
                        since: cursor,
                        oldest,
                    }
                    .into());
                }
            }
            Ok(records
                .into_iter()
                .map(|record| (record.seq, change_event(record)))
                .collect())
        }
    };
    let last = move || {
        let store = last_store.clone();
        async move { store.revision().await.map_err(status) }
    };
    feed.stream(since, fetch, last, markers, expires_at)
}

/// A store failure as the feed ends with it.
fn status(error: StoreError) -> Status {
    Status::from(ProductsError::from(error))
}

type ReceiverStream = tokio_stream::wrappers::ReceiverStream<Result<EntitlementEvent, Status>>;

/// The snapshot at the compaction horizon (products, then granted
/// entitlements), then [`changes`] after the horizon.
pub(crate) fn snapshot_then_changes(
    feed: Arc<Feed>,
    store: Store,
    expires_at: i64,
) -> ChangeStream {
    let start = {
        let store = store.clone();
        async move { store.compacted_through().await }
    };
    let stream = futures::stream::once(start).flat_map(move |horizon| match horizon {
        Err(error) => futures::stream::once(async move { Err(status(error)) }).boxed(),
        Ok(horizon) => {
            let (tail_store, feed) = (store.clone(), feed.clone());
            // Started once the snapshot is read: its caught-up marker then
            // covers the snapshot too.
            let tail =
                futures::stream::once(
                    async move { changes(&feed, tail_store, horizon, expires_at) },
                )
                .flatten();
            snapshot(store.clone(), horizon).chain(tail).boxed()
        }
    });
    Box::pin(stream)
}

/// The snapshot's entries, page by page, each at position `horizon`.
fn snapshot(
    store: Store,
    horizon: i64,
) -> impl Stream<Item = Result<EntitlementEvent, Status>> + Send {
    let first = Some(SnapshotAfter::Product(String::new()));
    futures::stream::unfold(first, move |after| {
        let store = store.clone();
        async move {
            let after = after?;
            let page = match store.snapshot_page(horizon, &after, SNAPSHOT_PAGE).await {
                Ok(page) => page,
                Err(error) => {
                    return Some((vec![Err(status(error))], None));
                }
            };
            let next = match (&after, page.last()) {
                (_, Some(last)) => Some(after_record(last)),
                (SnapshotAfter::Product(_), None) => {
                    Some(SnapshotAfter::Entitlement(String::new(), String::new()))
                }
                (SnapshotAfter::Entitlement(..), None) => None,
            };
            let events = page.into_iter().map(|row| Ok(change_event(row))).collect();
            Some((events, next))
        }
    })
    .flat_map(futures::stream::iter)
}

/// Where the page after `record` starts.
fn after_record(record: &ChangeRecord) -> SnapshotAfter {
    match &record.change {
        FeedChange::ProductCreated { product_id } => SnapshotAfter::Product(product_id.clone()),
        FeedChange::Entitlement {
            subject,
            product_id,
            ..
        } => SnapshotAfter::Entitlement(subject.clone(), product_id.clone()),
    }
}

/// A feed entry as sent.
pub(crate) fn change_event(record: ChangeRecord) -> EntitlementEvent {
    let change = match record.change {
        FeedChange::ProductCreated { product_id } => {
            entitlement_event::Change::ProductCreated(product_id)
        }
        FeedChange::Entitlement {
            subject,
            product_id,
            granted,
            terms,
        } => entitlement_event::Change::Entitlement(EntitlementChange {
            subject,
            product_id,
            granted,
            terms: granted.then(|| terms.to_proto()),
        }),
    };
    EntitlementEvent {
        cursor: u64::try_from(record.seq).unwrap_or_default(),
        changed_at: record.changed_at,
        change: Some(change),
    }
}

/// How the feed is compacted.
#[derive(Debug, Clone, Copy)]
pub struct Compaction {
    /// Changes are kept at least this long. Never less than a grant's lifetime
    /// plus the verifiers' leeway: a revocation must reach the replicas that
    /// check grants issued before it.
    pub retention: Duration,
    /// How often a replica compacts (any replica may: it is idempotent).
    pub interval: Duration,
}

impl Default for Compaction {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(24 * 3600),
            interval: Duration::from_secs(60),
        }
    }
}

impl Compaction {
    /// This compaction, keeping changes at least as long as a grant of `ttl`
    /// can be verified (plus the interceptor's largest leeway).
    pub fn covering(self, ttl: Duration) -> Self {
        Self {
            retention: self.retention.max(ttl + tokenmesh_interceptor::MAX_LEEWAY),
            ..self
        }
    }
}

/// Compacts the feed every `compaction.interval` until Products (`owner`) is
/// gone: changes older than the retention, on `clock`.
pub(crate) async fn compact_periodically<T: Send + Sync + 'static>(
    owner: Weak<T>,
    store: Store,
    compaction: Compaction,
    clock: tokenmesh_interceptor::SharedClock,
) {
    let retention = i64::try_from(compaction.retention.as_secs()).unwrap_or(i64::MAX);
    loop {
        tokio::time::sleep(compaction.interval).await;
        if owner.upgrade().is_none() {
            return;
        }
        let before = clock.now_unix().saturating_sub(retention);
        if let Err(error) = store.compact_feed(before).await {
            tracing::warn!(%error, "compacting the entitlement feed failed");
        }
    }
}
