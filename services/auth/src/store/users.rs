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
    /// Bumped by every cut-off: a login commits only if it is unchanged.
    pub credential_version: i64,
}

impl UserRecord {
    /// Whether the user may log in.
    pub fn is_active(&self) -> bool {
        self.active != 0
    }

    /// The user as the API shows it: no hash, no epochs.
    pub fn to_proto(&self) -> tokenmesh_proto::auth::v1::User {
        tokenmesh_proto::auth::v1::User {
            username: self.username.clone(),
            scopes: self.scopes.clone(),
            active: self.is_active(),
        }
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
            "SELECT username, password_hash, scopes, active, not_before, credential_version \
             FROM users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Up to `limit` users after `after`, in username order.
    pub async fn list_users(&self, after: &str, limit: i64) -> Result<Vec<UserRecord>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT username, password_hash, scopes, active, not_before, credential_version \
             FROM users WHERE username > $1 ORDER BY username LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Lets `username` log in again (`None`: no such user). Only the flag
    /// changes: `not_before` and the revoked refresh families stay, so nothing
    /// the deactivation ended comes back.
    pub async fn reactivate(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        Ok(sqlx::query_as(
            "UPDATE users SET active = 1 WHERE username = $1 \
             RETURNING username, password_hash, scopes, active, not_before, credential_version",
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
    /// before the epoch it returns (`None`: no such user). See [`Store::cut_off`].
    pub async fn deactivate(
        &self,
        username: &str,
        next_epoch: impl Fn() -> Epoch,
    ) -> Result<Option<Epoch>, StoreError> {
        self.cut_off(username, CutOff::Deactivate, next_epoch).await
    }

    /// Replaces `username`'s password hash, ending every login and revoking
    /// every token issued before the epoch it returns (`None`: no such user).
    pub async fn change_password(
        &self,
        username: &str,
        password_hash: &str,
        next_epoch: impl Fn() -> Epoch,
    ) -> Result<Option<Epoch>, StoreError> {
        let change = CutOff::NewPassword {
            hash: password_hash,
        };
        self.cut_off(username, change, next_epoch).await
    }

    /// A cut-off, ordered against every login and refresh in flight:
    /// 1. bump the credential version, which locks the user's row until commit:
    ///    a login that read the old version either committed before (its family
    ///    is then revoked below) or fails its compare-and-set after;
    /// 2. revoke the user's families, which waits for refreshes holding them
    ///    (on PostgreSQL a group of refreshes shares the user's row, so the
    ///    cut-off waits for it at step 1 instead and never holds a family the
    ///    group still needs);
    /// 3. only then read the clock (`next_epoch`) for the epoch, so that every
    ///    token minted by a login or refresh that won the race is older;
    /// 4. raise `not_before` to it, strictly above the previous epoch (two
    ///    cut-offs in one second must not share one).
    async fn cut_off(
        &self,
        username: &str,
        change: CutOff<'_>,
        next_epoch: impl Fn() -> Epoch,
    ) -> Result<Option<Epoch>, StoreError> {
        let next_epoch = &next_epoch;
        let written = retry_feed_write(|| self.cut_off_once(username, change, next_epoch)).await?;
        written.ok_or(StoreError::Contention("revocation feed"))
    }

    /// One try of [`Store::cut_off`]: `None` when the feed append lost its race.
    async fn cut_off_once(
        &self,
        username: &str,
        change: CutOff<'_>,
        next_epoch: &impl Fn() -> Epoch,
    ) -> Result<Option<Option<Epoch>>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let updated = match change {
            CutOff::NewPassword { hash } => sqlx::query(
                "UPDATE users SET password_hash = $1, credential_version = credential_version + 1 \
                     WHERE username = $2",
            )
            .bind(hash)
            .bind(username)
            .execute(&mut *tx)
            .await?,
            CutOff::Deactivate => {
                sqlx::query(
                    "UPDATE users SET active = 0, credential_version = credential_version + 1 \
                     WHERE username = $1",
                )
                .bind(username)
                .execute(&mut *tx)
                .await?
            }
        };
        if updated.rows_affected() == 0 {
            return Ok(Some(None));
        }
        let user = sessions::Families::OfUser(username);
        sessions::revoke_families(&mut *tx, user, next_epoch().not_before).await?;
        let candidate = next_epoch();
        let not_before: i64 = sqlx::query_scalar(
            "UPDATE users SET not_before = \
               CASE WHEN not_before >= $1 THEN not_before + 1 ELSE $1 END \
             WHERE username = $2 RETURNING not_before",
        )
        .bind(candidate.not_before)
        .bind(username)
        .fetch_one(&mut *tx)
        .await?;
        let epoch = Epoch {
            not_before,
            forget_after: candidate.forget_after + (not_before - candidate.not_before),
        };
        if appended(revocations::append_subject(&mut tx, username, epoch).await)?.is_none() {
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(Some(epoch)))
    }
}
