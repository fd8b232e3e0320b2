//! Following Products' `WatchEntitlements` into the replica: resumes from the
//! stored cursor after any drop, marks the replica caught up at the end of each
//! replay, and makes the rpc cache forget every entitlement that changed.

use std::sync::{Arc, Weak};

use tokenmesh_interceptor::{AttachToken, AttachTokenLayer};
use tokenmesh_proto::products::v1::{
    WatchEntitlementsRequest, entitlement_event::Change,
    products_service_client::ProductsServiceClient,
};
use tokenmesh_server::ServiceTokens;
use tonic::{Status, transport::Channel};
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
    /// changes it applied before the stream ended.
    async fn subscribe(
        &self,
        client: &mut ProductsServiceClient<AttachToken<Channel>>,
    ) -> Result<Option<usize>, Status> {
        let Some(replica) = self.replica.upgrade() else {
            return Ok(None);
        };
        let since = replica.cursor().await.map_err(internal)?;
        // Held only while applying: between events the owner may go.
        drop(replica);
        let mut applied = 0;
        let request = WatchEntitlementsRequest {
            since: u64::try_from(since).unwrap_or_default(),
        };
        let mut stream = client.watch_entitlements(request).await?.into_inner();
        while let Some(event) = tokenmesh_server::next_event(&mut stream).await? {
            let Some(replica) = self.replica.upgrade() else {
                return Ok(None);
            };
            replica.freshness().heard();
            let cursor = i64::try_from(event.cursor).unwrap_or(i64::MAX);
            let change = match event.change {
                None => {
                    replica.mark_caught_up();
                    tracing::debug!(cursor, "entitlement replica caught up");
                    continue;
                }
                Some(Change::Heartbeat(_)) => continue,
                Some(Change::ProductCreated(product_id)) => ReplicaChange::Product { product_id },
                Some(Change::Entitlement(change)) => {
                    self.rpc_cache
                        .invalidate(&(change.subject.clone(), change.product_id.clone()))
                        .await;
                    ReplicaChange::Entitlement {
                        terms: Terms::from_proto(change.terms.as_ref()),
                        subject: change.subject,
                        product_id: change.product_id,
                        granted: change.granted,
                        changed_at: event.changed_at,
                    }
                }
            };
            replica.apply(&change, cursor).await.map_err(internal)?;
            applied += 1;
        }
        Ok(Some(applied))
    }
}

/// A store failure ends the subscription like a broken stream, logged once as
/// the service logs internal errors.
fn internal(error: crate::store::StoreError) -> Status {
    Status::from(OrdersError::from(error))
}
