//! Group commit of new orders: concurrent `PlaceOrder`s hand their insert to
//! one writer task, which commits whatever has queued up in one transaction and
//! only then answers each caller. The database syncs its log once per group,
//! not once per order, and no order is acknowledged before its commit.

use sqlx::{Any, AnyPool, Executor};
use tokio::sync::{mpsc, oneshot};

use crate::store::{OrderRecord, StoreError};

/// Most orders in one transaction.
const MAX_GROUP: usize = 256;
/// Orders queued for the writer; beyond it callers wait for room.
const QUEUE: usize = 1024;

/// An order waiting for its group's commit, and who to tell.
struct Pending {
    order: OrderRecord,
    done: oneshot::Sender<Result<bool, sqlx::Error>>,
}

/// The queue to the writer task.
#[derive(Debug, Clone)]
pub(crate) struct GroupCommit {
    queue: mpsc::Sender<Pending>,
}

impl GroupCommit {
    /// Starts the writer on `pool`; it stops when the last handle is dropped.
    pub(crate) fn start(pool: AnyPool) -> Self {
        let (queue, pending) = mpsc::channel(QUEUE);
        tokio::spawn(write_groups(pool, pending));
        Self { queue }
    }

    /// Inserts `order`, answering once it is committed: false, with nothing
    /// written, if its subject already has an order with its `request_id`.
    pub(crate) async fn insert(&self, order: OrderRecord) -> Result<bool, StoreError> {
        let stopped = || StoreError::Database(sqlx::Error::PoolClosed);
        let (done, committed) = oneshot::channel();
        self.queue
            .send(Pending { order, done })
            .await
            .map_err(|_| stopped())?;
        Ok(committed.await.map_err(|_| stopped())??)
    }
}

async fn write_groups(pool: AnyPool, mut pending: mpsc::Receiver<Pending>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while pending.recv_many(&mut group, MAX_GROUP).await > 0 {
        match insert_group(&pool, &group).await {
            Ok(inserted) => {
                for (order, inserted) in group.drain(..).zip(inserted) {
                    let _ = order.done.send(Ok(inserted));
                }
            }
            // One failing insert or a failed commit must not fail the others:
            // each is tried again on its own. One the failed commit did write
            // now conflicts, and its caller replays it by request id.
            Err(error) => {
                tracing::debug!(%error, orders = group.len(), "group commit failed; inserting one by one");
                for order in group.drain(..) {
                    let inserted = insert(&pool, &order.order).await;
                    let _ = order.done.send(inserted);
                }
            }
        }
    }
}

/// Inserts every order of `group` in one transaction: which were new.
async fn insert_group(pool: &AnyPool, group: &[Pending]) -> Result<Vec<bool>, sqlx::Error> {
    let mut transaction = pool.begin().await?;
    let mut inserted = Vec::with_capacity(group.len());
    for pending in group {
        inserted.push(insert(&mut *transaction, &pending.order).await?);
    }
    transaction.commit().await?;
    Ok(inserted)
}

/// Inserts `order` unless its subject already used its `request_id`: then false
/// (a retry, or two calls with one id in the same group).
async fn insert<'c>(
    executor: impl Executor<'c, Database = Any>,
    order: &OrderRecord,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "INSERT INTO orders \
             (id, subject, product_id, quantity, request_id, entitlement_source, created_at_us) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (subject, request_id) DO NOTHING",
    )
    .bind(&order.id)
    .bind(&order.subject)
    .bind(&order.product_id)
    .bind(order.quantity)
    .bind(&order.request_id)
    .bind(i64::from(order.entitlement_source))
    .bind(order.created_at_us)
    .execute(executor)
    .await?;
    Ok(result.rows_affected() == 1)
}
