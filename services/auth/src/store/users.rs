//! The `users` table: accounts, their password hashes (made by the caller), scopes,
//! and the cut-offs (deactivation, password change) that end every login and
//! revoke every token issued before them, in one transaction.

use tokenmesh_server::db::{appended, retry_feed_write};

use super::{Epoch, Store, StoreError, revocations, sessions};

/// A user to insert, already hashed.
#[derive(Debug, Clone)]
pub struct NewUserRecord {
    /// Login name, unique.
    pub username: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Space-separated scopes granted at login.
    pub scopes: String,
    /// When (Unix seconds).
    pub created_at: i64,
}

/// A stored user.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRecord {
    /// Login name.
    pub username: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Space-separated scopes.
    pub scopes: String,
    /// Non-zero while the user may log in (an integer column: `Any` decodes no
    /// `bool` from it).
    pub active: i64,
    /// Tokens issued before this (Unix seconds) are revoked.
    pub not_before: i64,
}

impl UserRecord {
    /// Whether the user may log in.
    pub fn is_active(&self) -> bool {
        self.active != 0
    }
}

/// What a cut-off changes besides revoking.
#[derive(Debug, Clone, Copy)]
enum CutOff<'a> {
    Deactivate,
    NewPassword { hash: &'a str },
}

impl Store {
    /// The user named `username`.
    pub async fn find_user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT username, password_hash, scopes, active, not_before FROM users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Inserts `user`, active; returns false if the name is taken.
    pub async fn insert_user(&self, user: &NewUserRecord) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO users (username, password_hash, scopes, active, not_before, created_at) \
             VALUES ($1, $2, $3, 1, 0, $4) ON CONFLICT (username) DO NOTHING",
        )
        .bind(&user.username)
        .bind(&user.password_hash)
        .bind(&user.scopes)
        .bind(user.created_at)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Deactivates `username`: ends every login and revokes every token issued
    /// before `epoch`. Returns false if there is no such user.
    pub async fn deactivate(&self, username: &str, epoch: Epoch) -> Result<bool, StoreError> {
        self.cut_off(username, CutOff::Deactivate, epoch).await
    }

    /// Replaces `username`'s password hash, ending every login and revoking
    /// every token issued before `epoch`.
    pub async fn change_password(
        &self,
        username: &str,
        password_hash: &str,
        epoch: Epoch,
    ) -> Result<bool, StoreError> {
        let change = CutOff::NewPassword {
            hash: password_hash,
        };
        self.cut_off(username, change, epoch).await
    }

    async fn cut_off(
        &self,
        username: &str,
        change: CutOff<'_>,
        epoch: Epoch,
    ) -> Result<bool, StoreError> {
        let written = retry_feed_write(|| self.cut_off_once(username, change, epoch)).await?;
        written.ok_or(StoreError::Contention("revocation feed"))
    }

    /// One try of [`Store::cut_off`]: `None` when the feed append lost its race.
    async fn cut_off_once(
        &self,
        username: &str,
        change: CutOff<'_>,
        epoch: Epoch,
    ) -> Result<Option<bool>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let updated = match change {
            CutOff::NewPassword { hash } => {
                sqlx::query(
                    "UPDATE users SET password_hash = $1, not_before = $2 WHERE username = $3",
                )
                .bind(hash)
                .bind(epoch.not_before)
                .bind(username)
                .execute(&mut *tx)
                .await?
            }
            CutOff::Deactivate => {
                sqlx::query("UPDATE users SET active = 0, not_before = $1 WHERE username = $2")
                    .bind(epoch.not_before)
                    .bind(username)
                    .execute(&mut *tx)
                    .await?
            }
        };
        if updated.rows_affected() == 0 {
            return Ok(Some(false));
        }
        let user = sessions::Families::OfUser(username);
        sessions::revoke_families(&mut *tx, user, epoch.not_before).await?;
        if appended(revocations::append_subject(&mut tx, username, epoch).await)?.is_none() {
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(true))
    }
}
