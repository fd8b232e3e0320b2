//! Sessions: one login's chain of refresh tokens (a family), stored as SHA-256
//! hashes. Spending a token rotates it atomically; spending one twice revokes
//! its family and, on the feed, the access tokens minted from it (reuse
//! detection). A login ends at an absolute cap however often it refreshes.

use sqlx::{Any, Executor, Transaction};

use tokenmesh_server::{
    db::{appended, retry_feed_write},
    group_commit::{BoxFuture, Job},
};

use super::{Store, StoreError, UserRecord, revocations};

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

/// The limits a spend or an end applies, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct SessionRules {
    /// A login ends this long after it started, however often it refreshes.
    pub max_lifetime: i64,
    /// A session revocation matters this long after it (until every access
    /// token minted from the session has expired).
    pub revocation_lifetime: i64,
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
        /// The login (refresh family), the new access token's `sid`.
        family_id: String,
    },
    /// The token had been spent before: the family and its access tokens are
    /// now revoked (a session revocation on the feed).
    Reused {
        /// The login ended.
        family_id: String,
        /// When the session revocation stops mattering.
        forget_after: i64,
    },
    /// No such token.
    Unknown,
    /// The token expired, or its login reached its absolute cap.
    Expired,
    /// The family was revoked (logout, deactivation, password change, reuse).
    Revoked,
}

/// A presented token that was not live, its family and its owner, read inside
/// the spend.
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
    /// was live and its login within `rules.max_lifetime`, stores `successor` in
    /// its family (expiring no later than the login) — atomically: exactly one
    /// of concurrent spends wins. A second spend revokes the family and appends
    /// the session's revocation to the feed. Concurrent spends are committed
    /// together ([`tokenmesh_server::group_commit`]); each is answered after
    /// its commit.
    pub async fn spend_refresh_token(
        &self,
        token_hash: &str,
        successor: &NewRefreshToken,
        rules: SessionRules,
    ) -> Result<Spend, StoreError> {
        let spent = retry_feed_write(|| async {
            let rotation = Rotation {
                token_hash: token_hash.to_owned(),
                successor: successor.clone(),
                rules,
            };
            match self.rotations.run(rotation).await {
                Ok(spend) => Ok(Some(spend)),
                Err(RotationError::LostFeedRace) => Ok(None),
                Err(RotationError::Database(error)) => Err(StoreError::Database(error)),
            }
        })
        .await?;
        spent.ok_or(StoreError::Contention("revocation feed"))
    }

    /// Ends the login `token_hash` belongs to at `now` and appends the
    /// session's revocation to the feed; its family id and when the
    /// revocation may be forgotten, or `None` if there was no live login.
    pub async fn end_family_of(
        &self,
        token_hash: &str,
        now: i64,
        rules: SessionRules,
    ) -> Result<Option<(String, i64)>, StoreError> {
        let ended = retry_feed_write(|| self.end_once(token_hash, now, rules)).await?;
        ended.ok_or(StoreError::Contention("revocation feed"))
    }

    /// One try of [`Store::end_family_of`]: `None` when the feed append lost
    /// its race.
    async fn end_once(
        &self,
        token_hash: &str,
        now: i64,
        rules: SessionRules,
    ) -> Result<Option<Option<(String, i64)>>, StoreError> {
        let mut tx = self.pool.begin().await?;
        if revoke_families(&mut *tx, Families::OfToken(token_hash), now).await? == 0 {
            return Ok(Some(None));
        }
        let family_id: String =
            sqlx::query_scalar("SELECT family_id FROM refresh_tokens WHERE token_hash = $1")
                .bind(token_hash)
                .fetch_one(&mut *tx)
                .await?;
        let forget_after = now.saturating_add(rules.revocation_lifetime);
        let appended_row = revocations::append_session(&mut tx, &family_id, forget_after).await;
        if appended(appended_row)?.is_none() {
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(Some((family_id, forget_after))))
    }
}

async fn insert_refresh_token(
    tx: &mut Transaction<'_, Any>,
    family_id: &str,
    token: &NewRefreshToken,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO refresh_tokens (token_hash, family_id, issued_at, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(&token.token_hash)
        .bind(family_id)
        .bind(token.issued_at)
        .bind(token.expires_at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// One spend of a refresh token, run by the rotations' writer in a group's
/// transaction (see [`Store::spend_refresh_token`]).
#[derive(Debug)]
pub(super) struct Rotation {
    token_hash: String,
    successor: NewRefreshToken,
    rules: SessionRules,
}

/// Why a [`Rotation`] failed; either rolls back its whole transaction.
#[derive(Debug, thiserror::Error)]
pub(super) enum RotationError {
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Another writer took the revocation feed's sequence number: try again.
    #[error("the revocation feed's append lost its race")]
    LostFeedRace,
}

impl Job for Rotation {
    type Output = Spend;
    type Error = RotationError;

    fn run<'a>(
        &'a self,
        tx: &'a mut Transaction<'static, Any>,
    ) -> BoxFuture<'a, Result<Spend, RotationError>> {
        Box::pin(spend(tx, &self.token_hash, &self.successor, self.rules))
    }
}

/// A family locked by a spend, with its owner, as the spend read them.
#[derive(Debug, sqlx::FromRow)]
struct LockedFamily {
    /// When the login started.
    created_at: i64,
    username: String,
    scopes: String,
    not_before: i64,
    /// The owner's `users.active`.
    active: i64,
}

/// Spends `token_hash` in `tx` (see [`Store::spend_refresh_token`]). A live
/// token costs three statements on SQLite: spend it, lock and read its family
/// and owner, store the successor (PostgreSQL first shares the owner's row).
async fn spend(
    tx: &mut Transaction<'static, Any>,
    token_hash: &str,
    successor: &NewRefreshToken,
    rules: SessionRules,
) -> Result<Spend, RotationError> {
    let now = successor.issued_at;
    let family_id: Option<String> = sqlx::query_scalar(
        "UPDATE refresh_tokens SET spent_at = $1 \
         WHERE token_hash = $2 AND spent_at IS NULL AND expires_at > $1 RETURNING family_id",
    )
    .bind(now)
    .bind(token_hash)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(family_id) = family_id else {
        return refuse(tx, token_hash, successor, rules).await;
    };
    if tx.backend_name() == "PostgreSQL" {
        // The group holds its families' locks until it commits, and a cut-off
        // locks the user's row and then each of the user's families: had this
        // group another family of the user's, each would wait for the other.
        // Sharing the user's row first makes the cut-off wait before it takes
        // any family. (SQLite has one writer connection: nothing to order.)
        sqlx::query(
            "SELECT 1 FROM users WHERE username = \
             (SELECT username FROM refresh_families WHERE family_id = $1) FOR SHARE",
        )
        .bind(&family_id)
        .execute(&mut **tx)
        .await?;
    }
    // Lock the family until commit: a cut-off revoking it waits for this
    // rotation (and then revokes the successor too), or wins and the family
    // is no longer live here (no row).
    let family: Option<LockedFamily> = sqlx::query_as(
        "UPDATE refresh_families SET revoked_at = NULL \
         WHERE revoked_at IS NULL AND family_id = $1 \
         RETURNING created_at, username, \
           (SELECT u.scopes FROM users u WHERE u.username = refresh_families.username) AS scopes, \
           (SELECT u.not_before FROM users u WHERE u.username = refresh_families.username) AS not_before, \
           (SELECT u.active FROM users u WHERE u.username = refresh_families.username) AS active",
    )
    .bind(&family_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(family) = family.filter(|family| family.active == 1) else {
        return Ok(Spend::Revoked);
    };
    let login_ends = family.created_at.saturating_add(rules.max_lifetime);
    if now >= login_ends {
        return Ok(Spend::Expired);
    }
    let successor = NewRefreshToken {
        expires_at: successor.expires_at.min(login_ends),
        ..successor.clone()
    };
    insert_refresh_token(tx, &family_id, &successor).await?;
    Ok(Spend::Rotated {
        username: family.username,
        scopes: family.scopes,
        not_before: family.not_before,
        family_id,
    })
}

/// The answer to a token that was not live at `successor.issued_at`: unknown,
/// expired, revoked, or spent before — a reuse, which revokes its family and
/// appends the session's revocation to the feed.
async fn refuse(
    tx: &mut Transaction<'static, Any>,
    token_hash: &str,
    successor: &NewRefreshToken,
    rules: SessionRules,
) -> Result<Spend, RotationError> {
    let now = successor.issued_at;
    let presented: Option<Presented> = sqlx::query_as(
        "SELECT t.family_id, t.expires_at, f.username, u.scopes, u.not_before, \
                CASE WHEN f.revoked_at IS NULL AND u.active = 1 THEN 0 ELSE 1 END AS dead \
         FROM refresh_tokens t \
         JOIN refresh_families f ON f.family_id = t.family_id \
         JOIN users u ON u.username = f.username \
         WHERE t.token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(presented) = presented else {
        return Ok(Spend::Unknown);
    };
    if presented.dead == 1 {
        return Ok(Spend::Revoked);
    }
    if presented.expires_at <= now {
        return Ok(Spend::Expired);
    }
    // Spent before. By this very spend if its successor is stored: a group
    // whose commit reported a failure that did take place, run again alone.
    let successor_family: Option<String> =
        sqlx::query_scalar("SELECT family_id FROM refresh_tokens WHERE token_hash = $1")
            .bind(&successor.token_hash)
            .fetch_optional(&mut **tx)
            .await?;
    if successor_family.as_ref() == Some(&presented.family_id) {
        return Ok(Spend::Rotated {
            username: presented.username,
            scopes: presented.scopes,
            not_before: presented.not_before,
            family_id: presented.family_id,
        });
    }
    let forget_after = now.saturating_add(rules.revocation_lifetime);
    revoke_families(&mut **tx, Families::Id(&presented.family_id), now).await?;
    let appended_row = revocations::append_session(tx, &presented.family_id, forget_after).await;
    if appended(appended_row)?.is_none() {
        return Err(RotationError::LostFeedRace);
    }
    Ok(Spend::Reused {
        family_id: presented.family_id,
        forget_after,
    })
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
