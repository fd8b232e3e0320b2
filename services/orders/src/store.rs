//! Orders' tables — the orders, and the replica of Products' entitlements —
//! read and written as the store's own records; [`StoreError`] says what failed.

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::{Any, AnyPool, Transaction};

use crate::{
    SourceKind,
    entitlement::Terms,
    group_commit::{InsertOrder, OrderCommits},
};

pub use tokenmesh_server::db::StoreError;

/// Orders' PostgreSQL schema: its tables and migrations live there, so it can
/// share a database with the other services.
pub const SCHEMA: &str = "orders";

/// Orders' storage.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    /// New orders, committed in groups.
    commits: OrderCommits,
}

/// An order to insert.
#[derive(Debug, Clone)]
pub struct NewOrder<'a> {
    /// Who places it.
    pub subject: &'a str,
    /// What.
    pub product_id: &'a str,
    /// How many, ≥ 1.
    pub quantity: i32,
    /// The client's idempotency key.
    pub request_id: &'a str,
    /// Which source allowed it.
    pub source: SourceKind,
}

/// A placed order.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OrderRecord {
    /// Its id.
    pub id: String,
    /// Who placed it.
    pub subject: String,
    /// What.
    pub product_id: String,
    /// How many.
    pub quantity: i64,
    /// The client's idempotency key.
    pub request_id: String,
    /// Which source allowed it.
    #[sqlx(try_from = "i64")]
    pub entitlement_source: SourceKind,
    /// When, in microseconds since the Unix epoch.
    pub created_at_us: i64,
}

impl OrderRecord {
    /// The order's sort key in a newest-first listing, for page tokens.
    pub fn cursor(&self) -> String {
        format!("{}:{}", self.created_at_us, self.id)
    }
}

/// The `entitlement_source` column holds `tokenmesh.orders.v1.EntitlementSource`
/// numbers, so that the table reads the same as the wire.
impl From<SourceKind> for i64 {
    fn from(source: SourceKind) -> Self {
        match source {
            SourceKind::Grant => 1,
            SourceKind::Replica => 2,
            SourceKind::Rpc => 3,
        }
    }
}

impl TryFrom<i64> for SourceKind {
    type Error = String;

    fn try_from(column: i64) -> Result<Self, Self::Error> {
        match column {
            1 => Ok(Self::Grant),
            2 => Ok(Self::Replica),
            3 => Ok(Self::Rpc),
            other => Err(format!("unknown entitlement source {other}")),
        }
    }
}

/// An order's columns, in the order they are read and inserted.
pub(crate) const COLUMNS: &str =
    "id, subject, product_id, quantity, request_id, entitlement_source, created_at_us";

/// The (created_at_us, id) position an [`OrderRecord::cursor`] names.
pub fn parse_cursor(cursor: &str) -> Option<(i64, String)> {
    let (created, id) = cursor.split_once(':')?;
    Some((created.parse().ok()?, id.to_owned()))
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}

impl Store {
    /// Connects to `database_url` and brings the schema up to date (on
    /// PostgreSQL, in the schema [`SCHEMA`]).
    pub async fn open(database_url: &str) -> Result<Self, StoreError> {
        let pool = tokenmesh_server::db::connect(database_url, SCHEMA).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self {
            commits: OrderCommits::start(pool.clone()),
            pool,
        })
    }

    /// The order `subject` placed with `request_id`.
    pub async fn by_request_id(
        &self,
        subject: &str,
        request_id: &str,
    ) -> Result<Option<OrderRecord>, StoreError> {
        let order = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM orders WHERE subject = $1 AND request_id = $2"
        ))
        .bind(subject)
        .bind(request_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(order)
    }

    /// `subject`'s order `id`.
    pub async fn by_id(&self, subject: &str, id: &str) -> Result<Option<OrderRecord>, StoreError> {
        let order = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM orders WHERE id = $1 AND subject = $2"
        ))
        .bind(id)
        .bind(subject)
        .fetch_optional(&self.pool)
        .await?;
        Ok(order)
    }

    /// Inserts `new`, answering once it is committed (with whatever other orders
    /// were waiting: one commit for the group). Returns `None` if `subject`
    /// already has an order with this `request_id` (a concurrent retry won the
    /// race).
    pub async fn insert(&self, new: &NewOrder<'_>) -> Result<Option<OrderRecord>, StoreError> {
        let order = OrderRecord {
            id: format!("ord_{}", tokenmesh_server::random_token(12)),
            subject: new.subject.to_owned(),
            product_id: new.product_id.to_owned(),
            quantity: i64::from(new.quantity),
            request_id: new.request_id.to_owned(),
            entitlement_source: new.source,
            created_at_us: now_micros(),
        };
        // The row as written is the order: no read back.
        let inserted = self.commits.run(InsertOrder(order.clone())).await?;
        Ok(inserted.then_some(order))
    }

    /// Up to `limit` of `subject`'s orders, newest first, after the `after` cursor.
    pub async fn list(
        &self,
        subject: &str,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<OrderRecord>, StoreError> {
        let (created, id) = after.unwrap_or((i64::MAX, String::new()));
        let orders = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM orders WHERE subject = $1 \
             AND (created_at_us < $2 OR (created_at_us = $2 AND id < $3)) \
             ORDER BY created_at_us DESC, id DESC LIMIT $4"
        ))
        .bind(subject)
        .bind(created)
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(orders)
    }

    /// The entitlement feed position the replica has applied.
    pub async fn replica_cursor(&self) -> Result<i64, StoreError> {
        let cursor = sqlx::query_scalar("SELECT cursor FROM replica_cursor WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(cursor.unwrap_or(0))
    }

    /// Applies one feed change to the replica, with its cursor, atomically.
    pub async fn apply_replica_change(
        &self,
        change: &ReplicaChange,
        cursor: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        set_replica_cursor(&mut tx, cursor).await?;
        upsert_replica(&mut tx, change, cursor).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces the whole replica with `changes` (each at its feed position,
    /// applied in order as upserts onto nothing) and `cursor`, in one
    /// transaction: a re-sync from the snapshot is seen whole or not at all.
    pub async fn replace_replica(
        &self,
        changes: &[(ReplicaChange, i64)],
        cursor: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        set_replica_cursor(&mut tx, cursor).await?;
        sqlx::query("DELETE FROM replica_entitlements")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM replica_products")
            .execute(&mut *tx)
            .await?;
        for (change, at) in changes {
            upsert_replica(&mut tx, change, *at).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The whole replica as the changes that rebuild it (each at its feed
    /// position; products first) and the cursor they reach, to load it into
    /// memory. The cursor is read first: a change another writer commits
    /// meanwhile may show in the rows, never the cursor without its rows, and
    /// replaying a change from the cursor on is harmless (every change is an
    /// upsert).
    pub async fn replica_contents(&self) -> Result<(Vec<(ReplicaChange, i64)>, i64), StoreError> {
        let cursor = self.replica_cursor().await?;
        let products: Vec<String> =
            sqlx::query_scalar("SELECT product_id FROM replica_products ORDER BY product_id")
                .fetch_all(&self.pool)
                .await?;
        let entitlements: Vec<ReplicaEntitlementRow> = sqlx::query_as(
            "SELECT subject, product_id, granted, changed_at, may_order, max_quantity, seq \
             FROM replica_entitlements ORDER BY subject, product_id",
        )
        .fetch_all(&self.pool)
        .await?;
        let products = products.into_iter().map(|product_id| {
            // A product's feed position is not kept; nothing compares it.
            (ReplicaChange::Product { product_id }, 0)
        });
        let entitlements = entitlements.into_iter().map(|row| {
            let change = ReplicaChange::Entitlement {
                subject: row.subject,
                product_id: row.product_id,
                granted: row.granted != 0,
                changed_at: row.changed_at,
                terms: Terms::from_columns(row.may_order, row.max_quantity),
            };
            (change, row.seq)
        });
        Ok((products.chain(entitlements).collect(), cursor))
    }

    /// What the replica knows of `subject` and `product_id`: whether the product
    /// exists, and the entitlement's state, terms and when it last changed.
    pub async fn replica_lookup(
        &self,
        subject: &str,
        product_id: &str,
    ) -> Result<ReplicaEntry, StoreError> {
        let row: Option<ReplicaRow> = sqlx::query_as(
            "SELECT e.granted, e.changed_at, e.may_order, e.max_quantity, e.seq \
             FROM replica_products p \
             LEFT JOIN replica_entitlements e ON e.product_id = p.product_id AND e.subject = $1 \
             WHERE p.product_id = $2",
        )
        .bind(subject)
        .bind(product_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            None => ReplicaEntry::UnknownProduct,
            Some(ReplicaRow {
                granted: Some(granted),
                changed_at: Some(changed_at),
                may_order: Some(may_order),
                max_quantity: Some(max_quantity),
                seq: Some(seq),
            }) => ReplicaEntry::Known {
                granted: granted != 0,
                changed_at,
                seq,
                terms: Terms::from_columns(may_order, max_quantity),
            },
            Some(_) => ReplicaEntry::NeverGranted,
        })
    }
}

/// Moves the replica's cursor (the first write of its transactions).
async fn set_replica_cursor(tx: &mut Transaction<'_, Any>, cursor: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO replica_cursor (id, cursor) VALUES (1, $1) \
         ON CONFLICT (id) DO UPDATE SET cursor = excluded.cursor",
    )
    .bind(cursor)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Applies `change`, made at feed position `seq`, as an upsert.
async fn upsert_replica(
    tx: &mut Transaction<'_, Any>,
    change: &ReplicaChange,
    seq: i64,
) -> Result<(), sqlx::Error> {
    match change {
        ReplicaChange::Product { product_id } => {
            sqlx::query(
                "INSERT INTO replica_products (product_id) VALUES ($1) \
                 ON CONFLICT (product_id) DO NOTHING",
            )
            .bind(product_id)
            .execute(&mut **tx)
            .await?;
        }
        ReplicaChange::Entitlement {
            subject,
            product_id,
            granted,
            changed_at,
            terms,
        } => {
            sqlx::query(
                "INSERT INTO replica_entitlements \
                     (subject, product_id, granted, changed_at, may_order, max_quantity, seq) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (subject, product_id) \
                 DO UPDATE SET granted = excluded.granted, changed_at = excluded.changed_at, \
                     may_order = excluded.may_order, max_quantity = excluded.max_quantity, \
                     seq = excluded.seq",
            )
            .bind(subject)
            .bind(product_id)
            .bind(i64::from(*granted))
            .bind(changed_at)
            .bind(i64::from(terms.order))
            .bind(i64::from(terms.max_quantity))
            .bind(seq)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

/// A change from Products' entitlement feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaChange {
    /// A product was created.
    Product {
        /// Its id.
        product_id: String,
    },
    /// An entitlement was granted or revoked.
    Entitlement {
        /// Who.
        subject: String,
        /// What.
        product_id: String,
        /// Granted (true) or revoked.
        granted: bool,
        /// Unix seconds on Products' clock.
        changed_at: i64,
        /// What it allows after the change (the default on a revocation).
        terms: Terms,
    },
}

/// A known product and, if the subject was ever entitled to it, the
/// entitlement's row (`granted` is a portable BIGINT 0/1).
#[derive(sqlx::FromRow)]
struct ReplicaRow {
    granted: Option<i64>,
    changed_at: Option<i64>,
    may_order: Option<i64>,
    max_quantity: Option<i64>,
    seq: Option<i64>,
}

/// One row of `replica_entitlements` (`granted` and `may_order` are portable
/// BIGINT 0/1).
#[derive(sqlx::FromRow)]
struct ReplicaEntitlementRow {
    subject: String,
    product_id: String,
    granted: i64,
    changed_at: i64,
    may_order: i64,
    max_quantity: i64,
    seq: i64,
}

/// The replica's view of one subject and product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaEntry {
    /// No such product.
    UnknownProduct,
    /// The product exists; the subject was never entitled to it.
    NeverGranted,
    /// The entitlement's current state.
    Known {
        /// Entitled now.
        granted: bool,
        /// Last change, Unix seconds on Products' clock.
        changed_at: i64,
        /// Last change, its feed position (0: applied before positions were kept).
        seq: i64,
        /// What it allows, when granted.
        terms: Terms,
    },
}
