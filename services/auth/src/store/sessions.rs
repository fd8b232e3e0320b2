//! Sessions: one login's chain of refresh tokens (a family), stored as SHA-256
//! hashes. Spending a token rotates it atomically; spending one twice revokes
//! its family (reuse detection).

use sqlx::{Any, Executor, Transaction};

use super::{Store, StoreError, UserRecord};

/// A refresh token to store: its hash (the caller hashes) and lifetime.
#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    /// SHA-256 of the token, hex.
    pub token_hash: String,
    /// When it was issued (Unix seconds); for a spend, also the time of the spend.
    pub issued_at: i64,
    /// When it stops being accepted.
    pub expires_at: i64,
}

/// What presenting a refresh token led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spend {
    /// The token was live and is now spent; a successor was stored.
    Rotated {
        /// The owner.
        username: String,
        /// The owner's scopes, for the new access token.
        scopes: String,
        /// The owner's revocation epoch, for the new access token's `iat`.
        not_before: i64,
    },
    /// The token had been spent before: the family is now revoked.
    Reused,
    /// No such token.
    Unknown,
    /// The token expired.
    Expired,
    /// The family was revoked (logout, deactivation, password change, reuse).
    Revoked,
}

/// A presented token, its family and its owner, read inside the spend.
#[derive(Debug, sqlx::FromRow)]
struct Presented {
    family_id: String,
    expires_at: i64,
    username: String,
    scopes: String,
    not_before: i64,
    /// 1 if the family is revoked or the owner deactivated.
    dead: i64,
}

impl Store {
    /// Starts a login of `user` as read with the password it checked: a new
    /// refresh family `family_id` holding `first` — only if the user is still
    /// active with the same credential version and epoch (compare-and-set).
    /// The check locks the user's row until commit, so a concurrent cut-off
    /// either comes first (false: nothing is stored) or revokes this family.
    pub async fn start_family(
        &self,
        user: &UserRecord,
        family_id: &str,
        first: &NewRefreshToken,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let unchanged = sqlx::query(
            "UPDATE users SET credential_version = credential_version \
             WHERE username = $1 AND credential_version = $2 AND not_before = $3 AND active = 1",
        )
        .bind(&user.username)
        .bind(user.credential_version)
        .bind(user.not_before)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !unchanged {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO refresh_families (family_id, username, created_at) VALUES ($1, $2, $3)",
        )
        .bind(family_id)
        .bind(&user.username)
        .bind(first.issued_at)
        .execute(&mut *tx)
        .await?;
        insert_refresh_token(&mut tx, family_id, first).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Spends the refresh token `token_hash` at `successor.issued_at` and, if it
    /// was live, stores `successor` in its family — atomically: exactly one of
    /// concurrent spends wins. A second spend revokes the family.
    pub async fn spend_refresh_token(
        &self,
        token_hash: &str,
        successor: &NewRefreshToken,
    ) -> Result<Spend, StoreError> {
        let now = successor.issued_at;
        let mut tx = self.pool.begin().await?;
        let spent = sqlx::query(
            "UPDATE refresh_tokens SET spent_at = $1 \
             WHERE token_hash = $2 AND spent_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(token_hash)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if spent {
            // Lock the family until commit: a cut-off revoking it waits for this
            // rotation (and then revokes the successor too), or wins and this
            // spend finds the family dead below.
            sqlx::query(
                "UPDATE refresh_families SET revoked_at = NULL WHERE revoked_at IS NULL AND \
                 family_id = (SELECT family_id FROM refresh_tokens WHERE token_hash = $1)",
            )
            .bind(token_hash)
            .execute(&mut *tx)
            .await?;
        }
        let presented: Option<Presented> = sqlx::query_as(
            "SELECT t.family_id, t.expires_at, f.username, u.scopes, u.not_before, \
                    CASE WHEN f.revoked_at IS NULL AND u.active = 1 THEN 0 ELSE 1 END AS dead \
             FROM refresh_tokens t \
             JOIN refresh_families f ON f.family_id = t.family_id \
             JOIN users u ON u.username = f.username \
             WHERE t.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(presented) = presented else {
            return Ok(Spend::Unknown);
        };
        let outcome = if spent && presented.dead == 0 {
            insert_refresh_token(&mut tx, &presented.family_id, successor).await?;
            Spend::Rotated {
                username: presented.username,
                scopes: presented.scopes,
                not_before: presented.not_before,
            }
        } else if spent || presented.dead == 1 {
            Spend::Revoked
        } else if presented.expires_at <= now {
            Spend::Expired
        } else {
            revoke_families(&mut *tx, Families::Id(&presented.family_id), now).await?;
            Spend::Reused
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// Ends the login `token_hash` belongs to; false if there is no such token.
    pub async fn revoke_family_of(&self, token_hash: &str, now: i64) -> Result<bool, StoreError> {
        let ended = revoke_families(&self.pool, Families::OfToken(token_hash), now).await?;
        Ok(ended == 1)
    }
}

async fn insert_refresh_token(
    tx: &mut Transaction<'_, Any>,
    family_id: &str,
    token: &NewRefreshToken,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO refresh_tokens (token_hash, family_id, issued_at, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(&token.token_hash)
        .bind(family_id)
        .bind(token.issued_at)
        .bind(token.expires_at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Which logins to end.
#[derive(Debug, Clone, Copy)]
pub(super) enum Families<'a> {
    /// The family with this id.
    Id(&'a str),
    /// The family the refresh token with this hash belongs to.
    OfToken(&'a str),
    /// Every family of this user.
    OfUser(&'a str),
}

/// Ends the live families `which` names at `now`; returns how many.
pub(super) async fn revoke_families<'c>(
    executor: impl Executor<'c, Database = Any>,
    which: Families<'_>,
    now: i64,
) -> Result<u64, sqlx::Error> {
    let (sql, key) = match which {
        Families::Id(family_id) => (
            "UPDATE refresh_families SET revoked_at = $1 \
             WHERE revoked_at IS NULL AND family_id = $2",
            family_id,
        ),
        Families::OfToken(token_hash) => (
            "UPDATE refresh_families SET revoked_at = $1 WHERE revoked_at IS NULL AND family_id = \
             (SELECT family_id FROM refresh_tokens WHERE token_hash = $2)",
            token_hash,
        ),
        Families::OfUser(username) => (
            "UPDATE refresh_families SET revoked_at = $1 \
             WHERE revoked_at IS NULL AND username = $2",
            username,
        ),
    };
    let result = sqlx::query(sql)
        .bind(now)
        .bind(key)
        .execute(executor)
        .await?;
    Ok(result.rows_affected())
}
