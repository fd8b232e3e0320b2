//! Products' tables: the catalogue, entitlements, and the feed of their changes.
//!
//! Every write transaction starts with a write (SQLite then takes its write lock
//! up front) and appends its event in the same transaction: the feed never misses
//! or invents a change.

use sqlx::{Any, AnyPool, Row, Transaction, any::AnyRow};
use tokenmesh_server::db::{appended, retry_feed_write};

pub use tokenmesh_server::db::StoreError;

/// A product in the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ProductRecord {
    /// Its id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Free text; empty if none.
    pub description: String,
    /// Price in cents.
    pub price_cents: i64,
}

/// One entry of the change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRecord {
    /// Its position: the stream cursor.
    pub seq: i64,
    /// Unix seconds.
    pub changed_at: i64,
    /// What changed.
    pub change: FeedChange,
}

/// What a feed entry records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedChange {
    /// A product was added to the catalogue.
    ProductCreated {
        /// Its id.
        product_id: String,
    },
    /// An entitlement was granted or revoked.
    Entitlement {
        /// Who.
        subject: String,
        /// To what.
        product_id: String,
        /// Granted (true) or revoked.
        granted: bool,
    },
}

/// `kind` of feed rows about the catalogue; every other row is about entitlements.
const KIND_PRODUCT: &str = "product";
/// `kind` of feed rows about entitlements.
const KIND_ENTITLEMENT: &str = "entitlement";

impl sqlx::FromRow<'_, AnyRow> for ChangeRecord {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        let product_id = row.try_get("product_id")?;
        let kind: String = row.try_get("kind")?;
        let change = if kind == KIND_PRODUCT {
            FeedChange::ProductCreated { product_id }
        } else {
            FeedChange::Entitlement {
                subject: row.try_get("subject")?,
                product_id,
                // A portable BIGINT 0/1: the Any driver decodes `bool` only from a
                // boolean column, which SQLite does not have.
                granted: row.try_get::<i64, _>("granted")? != 0,
            }
        };
        Ok(Self {
            seq: row.try_get("seq")?,
            changed_at: row.try_get("changed_at")?,
            change,
        })
    }
}

/// A write to the catalogue or the entitlements, and its feed event.
#[derive(Debug, Clone, Copy)]
enum Change<'a> {
    CreateProduct(&'a ProductRecord),
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
            Change::CreateProduct(product) => (KIND_PRODUCT, "", &product.id, true),
            Change::Grant {
                subject,
                product_id,
            } => (KIND_ENTITLEMENT, subject, product_id, true),
            Change::Revoke {
                subject,
                product_id,
            } => (KIND_ENTITLEMENT, subject, product_id, false),
        }
    }
}

/// Products' storage.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
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
    pub async fn open(database_url: &str) -> Result<Self, StoreError> {
        let pool = tokenmesh_server::db::connect(database_url).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Adds a product; `changed` is false if the id is taken.
    pub async fn create_product(&self, product: &ProductRecord) -> Result<Written, StoreError> {
        self.write(Change::CreateProduct(product)).await
    }

    /// Entitles `subject` to `product_id`; `changed` is false if already entitled.
    pub async fn grant(&self, subject: &str, product_id: &str) -> Result<Written, StoreError> {
        self.write(Change::Grant {
            subject,
            product_id,
        })
        .await
    }

    /// Withdraws `subject`'s entitlement to `product_id`; `changed` is false if
    /// there was none.
    pub async fn revoke(&self, subject: &str, product_id: &str) -> Result<Written, StoreError> {
        self.write(Change::Revoke {
            subject,
            product_id,
        })
        .await
    }

    /// Applies `change` and appends its event in one transaction. The feed's
    /// cursor is MAX(seq) + 1: a concurrent writer may take the same number, and
    /// then the whole change is retried.
    async fn write(&self, change: Change<'_>) -> Result<Written, StoreError> {
        let now = tokenmesh_server::now_unix();
        let written = retry_feed_write(|| self.write_once(&change, now)).await?;
        written.ok_or(StoreError::Contention("entitlement feed"))
    }

    /// One try of [`Store::write`]: `None` when the feed append lost its race.
    async fn write_once(
        &self,
        change: &Change<'_>,
        now: i64,
    ) -> Result<Option<Written>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let applied = change.apply(&mut tx, now).await?;
        if !applied {
            tx.rollback().await?;
            return Ok(Some(Written {
                changed: false,
                cursor: self.revision().await?,
            }));
        }
        let (kind, subject, product_id, granted) = change.event();
        let seq = sqlx::query_scalar(
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
        let Some(cursor) = appended(seq)? else {
            return Ok(None);
        };
        tx.commit().await?;
        Ok(Some(Written {
            changed: true,
            cursor,
        }))
    }

    /// The feed's last position (0 when empty).
    pub async fn revision(&self) -> Result<i64, StoreError> {
        let revision = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM entitlement_events")
            .fetch_one(&self.pool)
            .await?;
        Ok(revision)
    }

    /// Feed entries after `since`, in order.
    pub async fn changes_since(
        &self,
        since: i64,
        limit: i64,
    ) -> Result<Vec<ChangeRecord>, StoreError> {
        let changes = sqlx::query_as(
            "SELECT seq, kind, subject, product_id, granted, changed_at FROM entitlement_events \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(changes)
    }

    /// The product with this id.
    pub async fn product(&self, id: &str) -> Result<Option<ProductRecord>, StoreError> {
        let product =
            sqlx::query_as("SELECT id, name, description, price_cents FROM products WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(product)
    }

    /// Whether `subject` is entitled to `product_id`.
    pub async fn is_entitled(&self, subject: &str, product_id: &str) -> Result<bool, StoreError> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM entitlements WHERE subject = $1 AND product_id = $2")
                .bind(subject)
                .bind(product_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }

    /// Every product id `subject` is entitled to, in id order.
    pub async fn entitled_product_ids(&self, subject: &str) -> Result<Vec<String>, StoreError> {
        let ids = sqlx::query_scalar(
            "SELECT product_id FROM entitlements WHERE subject = $1 ORDER BY product_id",
        )
        .bind(subject)
        .fetch_all(&self.pool)
        .await?;
        Ok(ids)
    }

    /// Up to `limit` products after `after` in id order: all products, or only
    /// those `subject` is entitled to.
    pub async fn list_products(
        &self,
        subject: Option<&str>,
        after: &str,
        limit: i64,
    ) -> Result<Vec<ProductRecord>, StoreError> {
        let products = match subject {
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
        Ok(products)
    }
}
