//! Products' tables: the catalogue, entitlements, and the feed of their changes.
//!
//! Every write transaction starts with a write (SQLite then takes its write lock
//! up front) and appends its event in the same transaction: the feed never misses
//! or invents a change.

mod feed;
mod records;

use sqlx::{Any, AnyPool, FromRow, Row, Transaction};
use tokenmesh_interceptor::{SharedClock, system_clock};
use tokenmesh_server::{
    db::{appended, lock_feed, retry_feed_write},
    wakeups::{ENTITLEMENTS, notify},
};

pub use feed::SnapshotAfter;
pub use records::{ChangeRecord, EntitlementRecord, FeedChange, GrantedRecord, ProductRecord};
use records::{KIND_ENTITLEMENT, KIND_PRODUCT};
pub use tokenmesh_server::db::StoreError;

use crate::Terms;

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
    SetTerms {
        subject: &'a str,
        product_id: &'a str,
        terms: &'a Terms,
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
            // Only an existing entitlement, and only if the terms differ: the
            // feed gets an event for a real change alone.
            Change::SetTerms {
                subject,
                product_id,
                terms,
            } => sqlx::query(
                "UPDATE entitlements SET actions = $3, max_quantity = $4 \
                     WHERE subject = $1 AND product_id = $2 AND (actions <> $3 OR max_quantity <> $4)",
            )
            .bind(subject)
            .bind(product_id)
            .bind(terms.actions_column())
            .bind(i64::from(terms.max_quantity()))
            .execute(&mut **tx)
            .await?,
        };
        Ok(result.rows_affected() == 1)
    }

    /// The feed row of the change.
    fn event(&self) -> Event<'_> {
        let entitlement = |subject, product_id, granted, terms| Event {
            kind: KIND_ENTITLEMENT,
            subject,
            product_id,
            granted,
            terms,
        };
        match *self {
            Change::CreateProduct(product) => Event {
                kind: KIND_PRODUCT,
                subject: "",
                product_id: &product.id,
                granted: true,
                terms: Terms::default(),
            },
            // A new entitlement starts with the default terms (the column default).
            Change::Grant {
                subject,
                product_id,
            } => entitlement(subject, product_id, true, Terms::default()),
            Change::Revoke {
                subject,
                product_id,
            } => entitlement(subject, product_id, false, Terms::default()),
            Change::SetTerms {
                subject,
                product_id,
                terms,
            } => entitlement(subject, product_id, true, terms.clone()),
        }
    }
}

/// The columns of one feed row.
struct Event<'a> {
    kind: &'static str,
    subject: &'a str,
    product_id: &'a str,
    granted: bool,
    terms: Terms,
}

/// Products' PostgreSQL schema: its tables and migrations live there, so it can
/// share a database with the other services.
pub const SCHEMA: &str = "products";

/// Products' storage.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    /// Stamps `changed_at` on the feed (the clock grants are issued on).
    clock: SharedClock,
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
    /// The grant keys' table, for the key ring.
    pub fn grant_keys(&self) -> tokenmesh_server::KeyTable {
        tokenmesh_server::KeyTable::new(
            self.pool.clone(),
            tokenmesh_server::wakeups::GRANT_SIGNING_KEYS,
        )
    }

    /// Connects to `database_url` and brings the schema up to date (on
    /// PostgreSQL, in the schema [`SCHEMA`]).
    pub async fn open(database_url: &str) -> Result<Self, StoreError> {
        let pool = tokenmesh_server::db::connect(database_url, SCHEMA).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self {
            pool,
            clock: system_clock(),
        })
    }

    /// The same store stamping changes with `clock`'s time.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
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

    /// Sets what `subject`'s entitlement to `product_id` allows; `changed` is
    /// false if there is no such entitlement or it already has these terms.
    pub async fn set_terms(
        &self,
        subject: &str,
        product_id: &str,
        terms: &Terms,
    ) -> Result<Written, StoreError> {
        self.write(Change::SetTerms {
            subject,
            product_id,
            terms,
        })
        .await
    }

    /// Applies `change` and appends its event in one transaction. The feed's
    /// cursor is MAX(seq) + 1: a concurrent writer may take the same number, and
    /// then the whole change is retried.
    async fn write(&self, change: Change<'_>) -> Result<Written, StoreError> {
        let now = self.clock.now_unix();
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
        let event = change.event();
        lock_feed(&mut tx, "entitlement_events").await?;
        let seq = sqlx::query_scalar(
            "INSERT INTO entitlement_events \
                 (seq, kind, subject, product_id, granted, changed_at, actions, max_quantity) \
             SELECT COALESCE(MAX(seq), 0) + 1, $1, $2, $3, $4, $5, $6, $7 FROM entitlement_events \
             RETURNING seq",
        )
        .bind(event.kind)
        .bind(event.subject)
        .bind(event.product_id)
        .bind(i64::from(event.granted))
        .bind(now)
        .bind(event.terms.actions_column())
        .bind(i64::from(event.terms.max_quantity()))
        .fetch_one(&mut *tx)
        .await;
        let Some(cursor) = appended(seq)? else {
            return Ok(None);
        };
        // Every replica's feed streams wake on commit.
        notify(&mut tx, ENTITLEMENTS).await?;
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
            "SELECT seq, kind, subject, product_id, granted, changed_at, actions, max_quantity \
             FROM entitlement_events WHERE seq > $1 ORDER BY seq LIMIT $2",
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

    /// The product `id` and what `subject`'s entitlement to it allows (`None`
    /// inside: not entitled), in one query: `GetProduct` answers from one round
    /// trip to the database, not two.
    pub async fn product_for(
        &self,
        id: &str,
        subject: &str,
    ) -> Result<Option<(ProductRecord, Option<Terms>)>, StoreError> {
        let row = sqlx::query(
            "SELECT p.id, p.name, p.description, p.price_cents, e.actions, e.max_quantity \
             FROM products p LEFT JOIN entitlements e ON e.product_id = p.id AND e.subject = $2 \
             WHERE p.id = $1",
        )
        .bind(id)
        .bind(subject)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let product = ProductRecord::from_row(&row)?;
        let actions: Option<String> = row.try_get("actions")?;
        let max_quantity: Option<i64> = row.try_get("max_quantity")?;
        let terms = actions
            .zip(max_quantity)
            .map(|(actions, max_quantity)| Terms::from_columns(&actions, max_quantity));
        Ok(Some((product, terms)))
    }

    /// What `subject`'s entitlement to `product_id` allows, if there is one.
    pub async fn entitlement(
        &self,
        subject: &str,
        product_id: &str,
    ) -> Result<Option<Terms>, StoreError> {
        let found: Option<EntitlementRecord> = sqlx::query_as(
            "SELECT product_id, actions, max_quantity FROM entitlements \
             WHERE subject = $1 AND product_id = $2",
        )
        .bind(subject)
        .bind(product_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.map(|record| record.terms))
    }

    /// Whether `subject` is entitled to `product_id`.
    pub async fn is_entitled(&self, subject: &str, product_id: &str) -> Result<bool, StoreError> {
        Ok(self.entitlement(subject, product_id).await?.is_some())
    }

    /// Every entitlement of `subject`, in product id order.
    pub async fn entitlements(&self, subject: &str) -> Result<Vec<EntitlementRecord>, StoreError> {
        let entitlements = sqlx::query_as(
            "SELECT product_id, actions, max_quantity FROM entitlements \
             WHERE subject = $1 ORDER BY product_id",
        )
        .bind(subject)
        .fetch_all(&self.pool)
        .await?;
        Ok(entitlements)
    }

    /// Up to `limit` entitlements after `after` (a subject and a product id) in
    /// that order, only `subject`'s and only to `product_id` when not empty.
    pub async fn list_entitlements(
        &self,
        subject: &str,
        product_id: &str,
        after: (&str, &str),
        limit: i64,
    ) -> Result<Vec<GrantedRecord>, StoreError> {
        let entitlements = sqlx::query_as(
            "SELECT subject, product_id, actions, max_quantity, granted_at FROM entitlements \
             WHERE ($1 = '' OR subject = $1) AND ($2 = '' OR product_id = $2) \
             AND (subject > $3 OR (subject = $3 AND product_id > $4)) \
             ORDER BY subject, product_id LIMIT $5",
        )
        .bind(subject)
        .bind(product_id)
        .bind(after.0)
        .bind(after.1)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(entitlements)
    }

    /// Up to `limit` products after `after` in id order: all products, or only
    /// those `subject` is entitled to view.
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
                     WHERE e.subject = $1 AND p.id > $2 \
                     AND (' ' || e.actions || ' ') LIKE $4 ORDER BY p.id LIMIT $3",
                )
                .bind(subject)
                .bind(after)
                .bind(limit)
                // `actions` holds known words separated by single spaces.
                .bind(format!("% {} %", tokenmesh_proto::names::action::VIEW))
                .fetch_all(&self.pool)
                .await?
            }
        };
        Ok(products)
    }
}
