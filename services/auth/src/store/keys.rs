//! Signing keys, private keys included, so that every replica signs with the same
//! key. The newest unretired key signs; a retired key stays published until
//! `expires_at`.

use super::{Store, StoreError};

/// A stored signing key.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredKey {
    /// Thumbprint.
    pub kid: String,
    /// PKCS#8 PEM.
    pub private_key_pem: String,
    /// When it started signing.
    pub created_at: i64,
    /// When it stopped signing (None: it signs).
    pub retired_at: Option<i64>,
}

/// A key to make the signing key.
#[derive(Debug, Clone, Copy)]
pub struct NewSigningKey<'a> {
    /// Thumbprint.
    pub kid: &'a str,
    /// JOSE `alg`.
    pub algorithm: &'a str,
    /// PKCS#8 PEM.
    pub pem: &'a str,
}

impl Store {
    /// Keys still signing or still published at `now`, newest first.
    pub async fn live_keys(&self, now: i64) -> Result<Vec<StoredKey>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT kid, private_key_pem, created_at, retired_at FROM signing_keys \
             WHERE expires_at IS NULL OR expires_at > $1 ORDER BY created_at DESC, kid",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Makes `key` the signing key from `now`, retiring the one that signed
    /// before: it stays published until `old_expires_at`. A key already stored is
    /// re-activated. Returns the retired key's id.
    pub async fn activate_key(
        &self,
        key: NewSigningKey<'_>,
        now: i64,
        old_expires_at: i64,
    ) -> Result<Option<String>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let retired: Vec<String> = sqlx::query_scalar(
            "UPDATE signing_keys SET retired_at = $1, expires_at = $2 \
             WHERE retired_at IS NULL AND kid <> $3 RETURNING kid",
        )
        .bind(now)
        .bind(old_expires_at)
        .bind(key.kid)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, algorithm, private_key_pem, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (kid) DO UPDATE SET retired_at = NULL, expires_at = NULL, created_at = excluded.created_at",
        )
        .bind(key.kid)
        .bind(key.algorithm)
        .bind(key.pem)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(retired.into_iter().next())
    }
}
