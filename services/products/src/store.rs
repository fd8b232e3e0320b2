//! Products' tables: the catalogue and entitlements.

use sqlx::AnyPool;
use tokenmesh_proto::products::v1::Product;

use crate::ProductsError;

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

impl Store {
    /// Connects to `database_url` and brings the schema up to date.
    pub async fn open(database_url: &str) -> Result<Self, ProductsError> {
        let pool = tokenmesh_server::db::connect(database_url).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Inserts a product or updates its name and price.
    pub async fn upsert_product(
        &self,
        id: &str,
        name: &str,
        price_cents: i64,
    ) -> Result<(), ProductsError> {
        sqlx::query(
            "INSERT INTO products (id, name, price_cents) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, price_cents = excluded.price_cents",
        )
        .bind(id)
        .bind(name)
        .bind(price_cents)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Entitles `subject` to `product_id` (no-op if already entitled).
    pub async fn grant(&self, subject: &str, product_id: &str) -> Result<(), ProductsError> {
        sqlx::query(
            "INSERT INTO entitlements (subject, product_id, granted_at) VALUES ($1, $2, $3) \
             ON CONFLICT (subject, product_id) DO NOTHING",
        )
        .bind(subject)
        .bind(product_id)
        .bind(tokenmesh_server::now_unix())
        .execute(&self.pool)
        .await?;
        Ok(())
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
