//! Orders' table.

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::AnyPool;
use tokenmesh_proto::orders::v1::{EntitlementSource, Order};

use crate::OrdersError;

/// Orders' storage.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
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
    pub source: EntitlementSource,
}

type OrderRow = (String, String, String, i64, String, i64, i64);

const COLUMNS: &str =
    "id, subject, product_id, quantity, request_id, entitlement_source, created_at_us";

fn order(
    (id, subject, product_id, quantity, request_id, source, created_at_us): OrderRow,
) -> Order {
    Order {
        id,
        product_id,
        quantity: i32::try_from(quantity).unwrap_or(i32::MAX),
        subject,
        entitlement_source: i32::try_from(source).unwrap_or_default(),
        created_at: Some(prost_types::Timestamp {
            seconds: created_at_us.div_euclid(1_000_000),
            nanos: (created_at_us.rem_euclid(1_000_000) * 1_000) as i32,
        }),
        request_id,
    }
}

/// The sort key of `order` in a newest-first listing, for page tokens.
pub fn cursor(order: &Order) -> String {
    let created = order
        .created_at
        .map(|t| t.seconds * 1_000_000 + i64::from(t.nanos) / 1_000)
        .unwrap_or_default();
    format!("{created}:{}", order.id)
}

/// The (created_at_us, id) position a [`cursor`] names.
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
    /// Connects to `database_url` and brings the schema up to date.
    pub async fn open(database_url: &str) -> Result<Self, OrdersError> {
        let pool = tokenmesh_server::db::connect(database_url).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    /// The order `subject` placed with `request_id`.
    pub async fn by_request_id(
        &self,
        subject: &str,
        request_id: &str,
    ) -> Result<Option<Order>, OrdersError> {
        let row: Option<OrderRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM orders WHERE subject = $1 AND request_id = $2"
        ))
        .bind(subject)
        .bind(request_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(order))
    }

    /// `subject`'s order `id`.
    pub async fn by_id(&self, subject: &str, id: &str) -> Result<Option<Order>, OrdersError> {
        let row: Option<OrderRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM orders WHERE id = $1 AND subject = $2"
        ))
        .bind(id)
        .bind(subject)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(order))
    }

    /// Inserts `new` in one statement. Returns `None` if `subject` already has an
    /// order with this `request_id` (a concurrent retry won the race).
    pub async fn insert(&self, new: &NewOrder<'_>) -> Result<Option<Order>, OrdersError> {
        let row: OrderRow = (
            format!("ord_{}", tokenmesh_server::random_token(12)),
            new.subject.to_owned(),
            new.product_id.to_owned(),
            i64::from(new.quantity),
            new.request_id.to_owned(),
            new.source as i64,
            now_micros(),
        );
        let result = sqlx::query(&format!(
            "INSERT INTO orders ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(&row.0)
        .bind(&row.1)
        .bind(&row.2)
        .bind(row.3)
        .bind(&row.4)
        .bind(row.5)
        .bind(row.6)
        .execute(&self.pool)
        .await;
        match result {
            // The row as written is the order: no read back.
            Ok(_) => Ok(Some(order(row))),
            Err(error) if tokenmesh_server::db::is_unique_violation(&error) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Up to `limit` of `subject`'s orders, newest first, after the `after` cursor.
    pub async fn list(
        &self,
        subject: &str,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<Order>, OrdersError> {
        let (created, id) = after.unwrap_or((i64::MAX, String::new()));
        let rows: Vec<OrderRow> = sqlx::query_as(&format!(
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
        Ok(rows.into_iter().map(order).collect())
    }

    /// The entitlement feed position the replica has applied.
    pub async fn replica_cursor(&self) -> Result<i64, OrdersError> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT cursor FROM replica_cursor WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map_or(0, |(cursor,)| cursor))
    }

    /// Applies one feed change to the replica, with its cursor, atomically.
    pub async fn apply_replica_change(
        &self,
        change: &ReplicaChange,
        cursor: i64,
    ) -> Result<(), OrdersError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO replica_cursor (id, cursor) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET cursor = excluded.cursor",
        )
        .bind(cursor)
        .execute(&mut *tx)
        .await?;
        match change {
            ReplicaChange::Product { product_id } => {
                sqlx::query("INSERT INTO replica_products (product_id) VALUES ($1) ON CONFLICT (product_id) DO NOTHING")
                    .bind(product_id)
                    .execute(&mut *tx)
                    .await?;
            }
            ReplicaChange::Entitlement {
                subject,
                product_id,
                granted,
                changed_at,
            } => {
                sqlx::query(
                    "INSERT INTO replica_entitlements (subject, product_id, granted, changed_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (subject, product_id) \
                     DO UPDATE SET granted = excluded.granted, changed_at = excluded.changed_at",
                )
                .bind(subject)
                .bind(product_id)
                .bind(i64::from(*granted))
                .bind(changed_at)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// What the replica knows of `subject` and `product_id`: whether the product
    /// exists, and the entitlement's state and when it last changed.
    pub async fn replica_lookup(
        &self,
        subject: &str,
        product_id: &str,
    ) -> Result<ReplicaEntry, OrdersError> {
        let row: Option<(i64, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT 1, e.granted, e.changed_at FROM replica_products p \
             LEFT JOIN replica_entitlements e ON e.product_id = p.product_id AND e.subject = $1 \
             WHERE p.product_id = $2",
        )
        .bind(subject)
        .bind(product_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            None => ReplicaEntry::UnknownProduct,
            Some((_, Some(granted), Some(changed_at))) => ReplicaEntry::Known {
                granted: granted != 0,
                changed_at,
            },
            Some(_) => ReplicaEntry::NeverGranted,
        })
    }
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
    },
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
    },
}
