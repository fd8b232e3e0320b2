//! Products' records as the store reads them: products, entitlements with their
//! terms, and feed entries.

use sqlx::{Row, any::AnyRow};

use crate::Terms;

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
    /// An entitlement was granted, revoked, or its terms changed.
    Entitlement {
        /// Who.
        subject: String,
        /// To what.
        product_id: String,
        /// Granted (true) or revoked.
        granted: bool,
        /// What it allows after the change (the default on a revocation).
        terms: Terms,
    },
}

/// One of a subject's entitlements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntitlementRecord {
    /// The product.
    pub product_id: String,
    /// What the entitlement allows.
    pub terms: Terms,
}

impl sqlx::FromRow<'_, AnyRow> for EntitlementRecord {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            product_id: row.try_get("product_id")?,
            terms: Terms::from_columns(row.try_get("actions")?, row.try_get("max_quantity")?),
        })
    }
}

/// A granted entitlement, as an admin lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantedRecord {
    /// Who.
    pub subject: String,
    /// The product.
    pub product_id: String,
    /// What the entitlement allows.
    pub terms: Terms,
    /// When it was granted (Unix seconds).
    pub granted_at: i64,
}

impl sqlx::FromRow<'_, AnyRow> for GrantedRecord {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            subject: row.try_get("subject")?,
            product_id: row.try_get("product_id")?,
            terms: Terms::from_columns(row.try_get("actions")?, row.try_get("max_quantity")?),
            granted_at: row.try_get("granted_at")?,
        })
    }
}

/// `kind` of feed rows about the catalogue; every other row is about entitlements.
pub(super) const KIND_PRODUCT: &str = "product";
/// `kind` of feed rows about entitlements.
pub(super) const KIND_ENTITLEMENT: &str = "entitlement";

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
                terms: Terms::from_columns(row.try_get("actions")?, row.try_get("max_quantity")?),
            }
        };
        Ok(Self {
            seq: row.try_get("seq")?,
            changed_at: row.try_get("changed_at")?,
            change,
        })
    }
}
