//! Following Products' `WatchEntitlements` into the replica: resumes from the
//! stored cursor after any drop (from the snapshot when it has none, it was
//! compacted away, or Products' store went back behind it), marks the replica
//! caught up at the end of each replay, and makes the rpc cache forget every
//! entitlement that changed.

use std::sync::{Arc, Weak};

use tokenmesh_interceptor::{AttachToken, AttachTokenLayer};
use tokenmesh_proto::products::v1::{
    WatchEntitlementsRequest, entitlement_event::Change,
    products_service_client::ProductsServiceClient,
};
use tokenmesh_server::ServiceTokens;
use tonic::{Code, Status, transport::Channel};
use tower::Layer;

use super::{Terms, replica::Replica, rpc::RpcCache};
use crate::{OrdersError, store::ReplicaChange};

/// What following the feed needs.
#[derive(Debug, Clone)]
pub struct Feed {
    /// The replica to keep; following stops once it is dropped.
    pub replica: Weak<Replica>,
    /// Answers to forget when their entitlement changes.
    pub rpc_cache: RpcCache,
    /// Products.
    pub products: Channel,
    /// Orders' own tokens for Products.
    pub credentials: Arc<ServiceTokens>,
}

impl Feed {
    /// Follows the feed until the replica is dropped, resubscribing with
    /// backoff. The replica stays conclusive while disconnected only up to its
    /// silence bound (Products may be changing without Orders hearing), and
    /// catches up again on reconnect.
    pub async fn follow(self) {
        let client = ProductsServiceClient::new(
            AttachTokenLayer::shared(self.credentials.clone()).layer(self.products.clone()),
        );
        let Some(freshness) = self.replica.upgrade().map(|r| r.freshness().clone()) else {
            return;
        };
        tokenmesh_server::follow("entitlements", freshness, move || {
            let (feed, mut client) = (self.clone(), client.clone());
            async move { feed.subscribe(&mut client).await }
        })
        .await;
    }

    /// One subscription: `Ok(None)` when the replica is gone, else how many
    /// changes it applied before the stream ended. From the stored cursor; from
    /// the snapshot when there is none, or when Products answers that changes
    /// after it were compacted away or that its store went back behind it.
    async fn subscribe(
        &self,
        client: &mut ProductsServiceClient<AttachToken<Channel>>,
    ) -> Result<Option<usize>, Status> {
        let Some(replica) = self.replica.upgrade() else {
            return Ok(None);
        };
        let since = replica.cursor();
        // Held only while applying: between events the owner may go.
        drop(replica);
        let from_snapshot = since == 0;
        match self.watch(client, since, from_snapshot).await {
            Err(status) if status.code() == Code::OutOfRange && !from_snapshot => {
                tracing::info!(
                    since,
                    reason = status.message(),
                    "Products no longer serves the entitlement replica's cursor (compacted away, or its store went back): re-syncing from the snapshot"
                );
                self.watch(client, 0, true).await
            }
            outcome => outcome,
        }
    }

    /// One stream, from `since` or from the snapshot. A snapshot and the
    /// changes after it are gathered until the caught-up event, then replace
    /// the replica in one transaction; later changes apply one by one.
    async fn watch(
        &self,
        client: &mut ProductsServiceClient<AttachToken<Channel>>,
        since: i64,
        snapshot: bool,
    ) -> Result<Option<usize>, Status> {
        let mut applied = 0;
        let request = WatchEntitlementsRequest {
            since: u64::try_from(since).unwrap_or_default(),
            snapshot,
        };
        let mut stream = client.watch_entitlements(request).await?.into_inner();
        let mut gathered: Option<Vec<(ReplicaChange, i64)>> = snapshot.then(Vec::new);
        while let Some(event) = tokenmesh_server::next_event(&mut stream).await? {
            let Some(replica) = self.replica.upgrade() else {
                return Ok(None);
            };
            // Counts only once this stream has replayed what was missed.
            replica.freshness().heard();
            let cursor = i64::try_from(event.cursor).unwrap_or(i64::MAX);
            let change = match event.change {
                None => {
                    if let Some(changes) = gathered.take() {
                        replica.replace(&changes, cursor).await.map_err(internal)?;
                        self.rpc_cache.invalidate_all();
                        applied += changes.len();
                        tracing::info!(
                            cursor,
                            entries = changes.len(),
                            "entitlement replica re-synced from the snapshot"
                        );
                    }
                    replica.mark_caught_up();
                    tracing::debug!(cursor, "entitlement replica caught up");
                    continue;
                }
                Some(Change::Heartbeat(_)) => continue,
                Some(Change::ProductCreated(product_id)) => ReplicaChange::Product { product_id },
                Some(Change::Entitlement(change)) => {
                    if gathered.is_none() {
                        self.rpc_cache
                            .invalidate(&(change.subject.clone(), change.product_id.clone()))
                            .await;
                    }
                    ReplicaChange::Entitlement {
                        terms: Terms::from_proto(change.terms.as_ref()),
                        subject: change.subject,
                        product_id: change.product_id,
                        granted: change.granted,
                        changed_at: event.changed_at,
                    }
                }
            };
            match &mut gathered {
                Some(changes) if changes.len() >= MAX_SNAPSHOT_ENTRIES => {
                    return Err(Status::resource_exhausted(format!(
                        "the entitlement snapshot exceeds {MAX_SNAPSHOT_ENTRIES} entries"
                    )));
                }
                Some(changes) => changes.push((change, cursor)),
                None => {
                    replica.apply(&change, cursor).await.map_err(internal)?;
                    applied += 1;
                }
            }
        }
        Ok(Some(applied))
    }
}

/// Most entries a snapshot (and the changes after it) may hold before the
/// caught-up event: the replica gathers them in memory to apply them at once.
const MAX_SNAPSHOT_ENTRIES: usize = 5_000_000;

/// A store failure ends the subscription like a broken stream, logged once as
/// the service logs internal errors.
fn internal(error: crate::store::StoreError) -> Status {
    Status::from(OrdersError::from(error))
}
