//! Signing keys, private keys sealed under the key-encryption key, so that every
//! replica signs with the same key and a database dump alone yields none. The
//! newest unretired key signs; a retired key stays published until
//! `expires_at`. A key id, once stored, is never stored or activated again.

use super::{Store, StoreError};

/// A stored signing key.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredKey {
    /// Thumbprint.
    pub kid: String,
    /// The PKCS#8 PEM sealed under the key-encryption key (base64).
    pub sealed_private_key: String,
    /// When it started signing.
    pub created_at: i64,
    /// When it stopped signing (None: it signs).
    pub retired_at: Option<i64>,
}

/// A key from before keys were sealed, its PEM still in plaintext.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PlaintextKey {
    /// Thumbprint.
    pub kid: String,
    /// PKCS#8 PEM.
    pub plaintext_pem: String,
}

/// A key to store and make the signing key.
#[derive(Debug, Clone, Copy)]
pub struct NewSigningKey<'a> {
    /// Thumbprint.
    pub kid: &'a str,
    /// JOSE `alg`.
    pub algorithm: &'a str,
    /// The PKCS#8 PEM sealed under the key-encryption key.
    pub sealed_private_key: &'a str,
}

/// What [`Store::add_signing_key`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    /// The key signs from now on; it retired this one, if any signed.
    Activated {
        /// The key it replaced.
        retired: Option<String>,
    },
    /// A key with this id was stored before (signing, retired or expired): it
    /// was left as it is.
    AlreadyStored,
}

impl Store {
    /// Keys still signing or still published at `now`, newest first.
    pub async fn live_keys(&self, now: i64) -> Result<Vec<StoredKey>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT kid, sealed_private_key, created_at, retired_at FROM signing_keys \
             WHERE sealed_private_key IS NOT NULL AND (expires_at IS NULL OR expires_at > $1) \
             ORDER BY created_at DESC, kid",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Whether any key signs now.
    pub async fn has_signing_key(&self) -> Result<bool, StoreError> {
        let signing: Option<String> =
            sqlx::query_scalar("SELECT kid FROM signing_keys WHERE retired_at IS NULL LIMIT 1")
                .fetch_optional(&self.pool)
                .await?;
        Ok(signing.is_some())
    }

    /// Whether any key is stored sealed (under some key-encryption key).
    pub async fn has_sealed_keys(&self) -> Result<bool, StoreError> {
        let sealed: Option<String> = sqlx::query_scalar(
            "SELECT kid FROM signing_keys WHERE sealed_private_key IS NOT NULL LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(sealed.is_some())
    }

    /// Stores `key` and makes it the signing key from `now`, retiring the one
    /// that signed before: it stays published until `old_expires_at`. A key id
    /// stored before — signing, retired or expired — is left as it is: a retired
    /// key never signs again.
    pub async fn add_signing_key(
        &self,
        key: NewSigningKey<'_>,
        now: i64,
        old_expires_at: i64,
    ) -> Result<Added, StoreError> {
        let mut tx = self.pool.begin().await?;
        let inserted: Option<String> = sqlx::query_scalar(
            "INSERT INTO signing_keys (kid, algorithm, sealed_private_key, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (kid) DO NOTHING RETURNING kid",
        )
        .bind(key.kid)
        .bind(key.algorithm)
        .bind(key.sealed_private_key)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if inserted.is_none() {
            tx.rollback().await?;
            return Ok(Added::AlreadyStored);
        }
        let retired: Vec<String> = sqlx::query_scalar(
            "UPDATE signing_keys SET retired_at = $1, expires_at = $2 \
             WHERE retired_at IS NULL AND kid <> $3 RETURNING kid",
        )
        .bind(now)
        .bind(old_expires_at)
        .bind(key.kid)
        .fetch_all(&mut *tx)
        .await?;
        // Every replica reloads its keys on commit.
        tokenmesh_server::wakeups::notify(&mut tx, tokenmesh_server::wakeups::SIGNING_KEYS).await?;
        tx.commit().await?;
        Ok(Added::Activated {
            retired: retired.into_iter().next(),
        })
    }

    /// Keys stored before keys were sealed.
    pub async fn plaintext_keys(&self) -> Result<Vec<PlaintextKey>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT kid, plaintext_pem FROM signing_keys WHERE plaintext_pem IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Replaces the plaintext PEM of the key `kid` with its sealed form.
    pub async fn seal_plaintext_key(&self, kid: &str, sealed: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE signing_keys SET sealed_private_key = $1, plaintext_pem = NULL WHERE kid = $2",
        )
        .bind(sealed)
        .bind(kid)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// On SQLite, copies the write-ahead log into the database file and empties
    /// it, so that page images written before (plaintext keys) are gone from
    /// both files; `secure_delete` already zeroed the freed space. Nothing to do
    /// on PostgreSQL, where `VACUUM` is the operator's.
    pub async fn purge_old_pages(&self) -> Result<(), StoreError> {
        if self.pool.connect_options().database_url.scheme() == "sqlite" {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }
}
