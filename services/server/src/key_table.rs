//! A table of signing keys — Auth's, Products' grant keys — private keys sealed
//! under the key-encryption key, so that every replica signs with the same key
//! and a database dump alone yields none. The newest unretired key signs (a
//! unique index allows one); a retired key stays published until `expires_at`.
//! A key id, once stored, is never stored or activated again.

use sqlx::{Any, AnyPool, Transaction};

use crate::db::{StoreError, appended, retry_feed_write};

/// One service's signing-key table: `kid, algorithm, sealed_private_key,
/// plaintext_pem, created_at, retired_at, expires_at`, with a unique index on
/// `(retired_at IS NULL) WHERE retired_at IS NULL`.
#[derive(Debug, Clone)]
pub struct KeyTable {
    pool: AnyPool,
    table: &'static str,
}

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

/// What [`KeyTable::add_signing_key`] did.
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

impl KeyTable {
    /// The table `table` in `pool`'s database.
    pub fn new(pool: AnyPool, table: &'static str) -> Self {
        Self { pool, table }
    }

    /// Keys still signing or still published at `now`, newest first.
    pub async fn live_keys(&self, now: i64) -> Result<Vec<StoredKey>, StoreError> {
        let sql = format!(
            "SELECT kid, sealed_private_key, created_at, retired_at FROM {} \
             WHERE sealed_private_key IS NOT NULL AND (expires_at IS NULL OR expires_at > $1) \
             ORDER BY created_at DESC, kid",
            self.table
        );
        Ok(sqlx::query_as(&sql).bind(now).fetch_all(&self.pool).await?)
    }

    /// Whether any key signs now.
    pub async fn has_signing_key(&self) -> Result<bool, StoreError> {
        let sql = format!(
            "SELECT kid FROM {} WHERE retired_at IS NULL LIMIT 1",
            self.table
        );
        let signing: Option<String> = sqlx::query_scalar(&sql).fetch_optional(&self.pool).await?;
        Ok(signing.is_some())
    }

    /// Whether any key is stored sealed (under some key-encryption key).
    pub async fn has_sealed_keys(&self) -> Result<bool, StoreError> {
        let sql = format!(
            "SELECT kid FROM {} WHERE sealed_private_key IS NOT NULL LIMIT 1",
            self.table
        );
        let sealed: Option<String> = sqlx::query_scalar(&sql).fetch_optional(&self.pool).await?;
        Ok(sealed.is_some())
    }

    /// Stores `key` and makes it the signing key from `now`, retiring the one
    /// that signed before: it stays published until `old_expires_at`. A key id
    /// stored before — signing, retired or expired — is left as it is: a retired
    /// key never signs again. The old key is retired before the new one is
    /// inserted, so that the index allowing one signer settles a race with
    /// another replica's rotation: the loser tries again, over the winner's key.
    pub async fn add_signing_key(
        &self,
        key: NewSigningKey<'_>,
        now: i64,
        old_expires_at: i64,
    ) -> Result<Added, StoreError> {
        let added = retry_feed_write(|| async {
            appended(self.try_add_signing_key(key, now, old_expires_at).await)
        })
        .await?;
        added.ok_or(StoreError::Contention(self.table))
    }

    async fn try_add_signing_key(
        &self,
        key: NewSigningKey<'_>,
        now: i64,
        old_expires_at: i64,
    ) -> Result<Added, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        // The write first (SQLite's write lock up front); undone if the id was
        // stored before.
        let retire = format!(
            "UPDATE {} SET retired_at = $1, expires_at = $2 \
             WHERE retired_at IS NULL RETURNING kid",
            self.table
        );
        let retired: Vec<String> = sqlx::query_scalar(&retire)
            .bind(now)
            .bind(old_expires_at)
            .fetch_all(&mut *tx)
            .await?;
        let find = format!("SELECT kid FROM {} WHERE kid = $1", self.table);
        let stored: Option<String> = sqlx::query_scalar(&find)
            .bind(key.kid)
            .fetch_optional(&mut *tx)
            .await?;
        if stored.is_some() {
            tx.rollback().await?;
            return Ok(Added::AlreadyStored);
        }
        self.insert(&mut tx, key, now).await?;
        // Replicas listening on the table's channel reload on commit (Auth's
        // `signing_keys`: see `wakeups::SIGNING_KEYS`).
        crate::wakeups::notify(&mut tx, self.table).await?;
        tx.commit().await?;
        Ok(Added::Activated {
            retired: retired.into_iter().next(),
        })
    }

    /// Stores `key` as the first signing key, unless a key signs already —
    /// possibly one another replica stored a moment ago: `false` then, and
    /// that key is the one to sign with.
    pub async fn add_first_signing_key(
        &self,
        key: NewSigningKey<'_>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let inserted = appended(self.insert(&mut tx, key, now).await)?.is_some();
        if inserted {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(inserted)
    }

    /// Inserts `key` as the signing key; a unique violation (its id stored, or
    /// another key signing) comes back as is.
    async fn insert(
        &self,
        tx: &mut Transaction<'_, Any>,
        key: NewSigningKey<'_>,
        now: i64,
    ) -> Result<(), sqlx::Error> {
        let sql = format!(
            "INSERT INTO {} (kid, algorithm, sealed_private_key, created_at) \
             VALUES ($1, $2, $3, $4)",
            self.table
        );
        sqlx::query(&sql)
            .bind(key.kid)
            .bind(key.algorithm)
            .bind(key.sealed_private_key)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Keys stored before keys were sealed.
    pub async fn plaintext_keys(&self) -> Result<Vec<PlaintextKey>, StoreError> {
        let sql = format!(
            "SELECT kid, plaintext_pem FROM {} WHERE plaintext_pem IS NOT NULL",
            self.table
        );
        Ok(sqlx::query_as(&sql).fetch_all(&self.pool).await?)
    }

    /// Replaces the plaintext PEM of the key `kid` with its sealed form.
    pub async fn seal_plaintext_key(&self, kid: &str, sealed: &str) -> Result<(), StoreError> {
        let sql = format!(
            "UPDATE {} SET sealed_private_key = $1, plaintext_pem = NULL WHERE kid = $2",
            self.table
        );
        sqlx::query(&sql)
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
