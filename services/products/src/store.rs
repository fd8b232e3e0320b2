//! Products' tables: the catalogue, entitlements, and the feed of their changes.
//!
//! Every write transaction starts with a write (SQLite then takes its write lock
//! up front) and appends its event in the same transaction: the feed never misses
//! or invents a change.

use sqlx::{Any, AnyPool, Transaction};

use tokenmesh_proto::products::v1::Product;

use crate::ProductsError;

/// A write to the catalogue or the entitlements, and its feed event.
#[derive(Debug, Clone, Copy)]
enum Change<'a> {
    CreateProduct(&'a Product),
    Grant {
        subject: &'a str,
        product_id: &'a str,
    },
    Revoke {
        subject: &'a str,
        product_id: &'a str,
    },
}

impl Change<'_> {
    /// Applies the change; false if there was nothing to change.
    async fn apply(
        &self,
        tx: &mut Transaction<'static, Any>,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        let result = match *self {
            Change::CreateProduct(product) => sqlx::query(
                "INSERT INTO products (id, name, description, price_cents) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (id) DO NOTHING",
            )
            .bind(&product.id)
            .bind(&product.name)
            .bind(&product.description)
            .bind(product.price_cents)
            .execute(&mut **tx)
            .await?,
            Change::Grant {
                subject,
                product_id,
            } => sqlx::query(
                "INSERT INTO entitlements (subject, product_id, granted_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (subject, product_id) DO NOTHING",
            )
            .bind(subject)
            .bind(product_id)
            .bind(now)
            .execute(&mut **tx)
            .await?,
            Change::Revoke {
                subject,
                product_id,
            } => {
                sqlx::query("DELETE FROM entitlements WHERE subject = $1 AND product_id = $2")
                    .bind(subject)
                    .bind(product_id)
                    .execute(&mut **tx)
                    .await?
            }
        };
        Ok(result.rows_affected() == 1)
    }

    /// (kind, subject, product id, granted) of the feed row.
    fn event(&self) -> (&'static str, &str, &str, bool) {
        match *self {
            Change::CreateProduct(product) => ("product", "", &product.id, true),
            Change::Grant {
                subject,
                product_id,
            } => ("entitlement", subject, product_id, true),
            Change::Revoke {
                subject,
                product_id,
            } => ("entitlement", subject, product_id, false),
        }
    }
}

/// Products' storage.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
}

type ProductRow = (String, String, String, i64);

fn product((id, name, description, price_cents): ProductRow) -> Product {
    Product {
        id,
        name,
        description,
        price_cents,
    }
}

/// One row of the change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRow {
    /// Cursor.
    pub seq: i64,
    /// `entitlement` or `product`.
    pub kind: String,
    /// For entitlement changes.
    pub subject: String,
    /// The product.
    pub product_id: String,
    /// For entitlement changes: granted (true) or revoked.
    pub granted: bool,
    /// Unix seconds.
    pub changed_at: i64,
}

/// A change that was written, or not (nothing to change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Whether anything changed.
    pub changed: bool,
    /// The feed position of the change, or the current end of the feed.
    pub cursor: i64,
}

impl Store {
    /// Connects to `database_url` and brings the schema up to date.
    pub async fn open(database_url: &str) -> Result<Self, ProductsError> {
        let pool = tokenmesh_server::db::connect(database_url).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Adds a product; `changed` is false if the id is taken.
    pub async fn create_product(&self, product: &Product) -> Result<Written, ProductsError> {
        self.write(Change::CreateProduct(product)).await
    }

    /// Entitles `subject` to `product_id`; `changed` is false if already entitled.
    pub async fn grant(&self, subject: &str, product_id: &str) -> Result<Written, ProductsError> {
        self.write(Change::Grant {
            subject,
            product_id,
        })
        .await
    }

    /// Withdraws `subject`'s entitlement to `product_id`; `changed` is false if
    /// there was none.
    pub async fn revoke(&self, subject: &str, product_id: &str) -> Result<Written, ProductsError> {
        self.write(Change::Revoke {
            subject,
            product_id,
        })
        .await
    }

    /// Applies `change` and appends its event in one transaction. The feed's
    /// cursor is MAX(seq) + 1: a concurrent writer may take the same number, and
    /// then the whole change is retried.
    async fn write(&self, change: Change<'_>) -> Result<Written, ProductsError> {
        let now = tokenmesh_server::now_unix();
        for _ in 0..8 {
            let mut tx = self.pool.begin().await?;
            let applied = change.apply(&mut tx, now).await?;
            if !applied {
                tx.rollback().await?;
                return Ok(Written {
                    changed: false,
                    cursor: self.revision().await?,
                });
            }
            let (kind, subject, product_id, granted) = change.event();
            let seq: Result<(i64,), sqlx::Error> = sqlx::query_as(
                "INSERT INTO entitlement_events (seq, kind, subject, product_id, granted, changed_at) \
                 SELECT COALESCE(MAX(seq), 0) + 1, $1, $2, $3, $4, $5 FROM entitlement_events RETURNING seq",
            )
            .bind(kind)
            .bind(subject)
            .bind(product_id)
            .bind(i64::from(granted))
            .bind(now)
            .fetch_one(&mut *tx)
            .await;
            match seq {
                Ok((cursor,)) => {
                    tx.commit().await?;
                    return Ok(Written {
                        changed: true,
                        cursor,
                    });
                }
                Err(error) if tokenmesh_server::db::is_unique_violation(&error) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(ProductsError::Contention("entitlement feed"))
    }

    /// The feed's last position (0 when empty).
    pub async fn revision(&self) -> Result<i64, ProductsError> {
        let (revision,): (i64,) =
            sqlx::query_as("SELECT COALESCE(MAX(seq), 0) FROM entitlement_events")
                .fetch_one(&self.pool)
                .await?;
        Ok(revision)
    }

    /// Feed rows after `since`, in order.
    pub async fn changes_since(
        &self,
        since: i64,
        limit: i64,
    ) -> Result<Vec<ChangeRow>, ProductsError> {
        let rows: Vec<(i64, String, String, String, i64, i64)> = sqlx::query_as(
            "SELECT seq, kind, subject, product_id, granted, changed_at FROM entitlement_events \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(seq, kind, subject, product_id, granted, changed_at)| ChangeRow {
                    seq,
                    kind,
                    subject,
                    product_id,
                    granted: granted != 0,
                    changed_at,
                },
            )
            .collect())
    }

    /// The product with this id.
    pub async fn product(&self, id: &str) -> Result<Option<Product>, ProductsError> {
        let row: Option<ProductRow> =
            sqlx::query_as("SELECT id, name, description, price_cents FROM products WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(product))
    }

    /// Whether `subject` is entitled to `product_id`.
    pub async fn is_entitled(
        &self,
        subject: &str,
        product_id: &str,
    ) -> Result<bool, ProductsError> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT 1 FROM entitlements WHERE subject = $1 AND product_id = $2")
                .bind(subject)
                .bind(product_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.is_some())
    }

    /// Every product id `subject` is entitled to, in id order.
    pub async fn entitled_product_ids(&self, subject: &str) -> Result<Vec<String>, ProductsError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT product_id FROM entitlements WHERE subject = $1 ORDER BY product_id",
        )
        .bind(subject)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Up to `limit` products after `after` in id order: all products, or only
    /// those `subject` is entitled to.
    pub async fn list_products(
        &self,
        subject: Option<&str>,
        after: &str,
        limit: i64,
    ) -> Result<Vec<Product>, ProductsError> {
        let rows: Vec<ProductRow> = match subject {
            None => {
                sqlx::query_as(
                    "SELECT id, name, description, price_cents FROM products \
                     WHERE id > $1 ORDER BY id LIMIT $2",
                )
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            Some(subject) => {
                sqlx::query_as(
                    "SELECT p.id, p.name, p.description, p.price_cents FROM products p \
                     JOIN entitlements e ON e.product_id = p.id \
                     WHERE e.subject = $1 AND p.id > $2 ORDER BY p.id LIMIT $3",
                )
                .bind(subject)
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        Ok(rows.into_iter().map(product).collect())
    }
}
