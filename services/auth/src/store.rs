//! Auth's tables — users, refresh-token families, the revocation feed, service
//! clients and signing keys — on SQLite or PostgreSQL with the same SQL.
//!
//! Every write transaction starts with a write, so that SQLite takes its write
//! lock up front (a read-then-write transaction can fail with "database is
//! locked" under concurrency) and PostgreSQL row locks order concurrent spends.

use sqlx::{Any, AnyPool, Transaction};

use crate::{AuthServiceError, password};

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Login name, unique.
    pub username: String,
    /// Plain text; only its argon2id hash is stored.
    pub password: String,
    /// Space-separated scopes granted at login.
    pub scopes: String,
}

/// A stored user.
#[derive(Debug, Clone)]
pub struct UserRecord {
    /// Login name.
    pub username: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Space-separated scopes.
    pub scopes: String,
    /// Deactivated users cannot log in.
    pub active: bool,
    /// Tokens issued before this (Unix seconds) are revoked.
    pub not_before: i64,
}

/// One revocation of the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// Stream position.
    pub seq: i64,
    /// Set for subject revocations.
    pub subject: String,
    /// Set for single-token revocations.
    pub jti: String,
    /// Subject revocations: tokens issued before this are revoked.
    pub not_before: i64,
    /// When the entry stops mattering.
    pub forget_after: i64,
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

/// A registered service client.
#[derive(Debug, Clone)]
pub struct ServiceClient {
    /// Its id, the `sub` of its tokens.
    pub client_id: String,
    /// SHA-256 of the secret, hex.
    pub secret_hash: String,
    /// Space-separated scopes it may hold.
    pub scopes: String,
    /// Space-separated audiences it may ask tokens for.
    pub audiences: String,
}

/// A stored signing key.
#[derive(Debug, Clone)]
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

/// Auth's storage.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
}

type UserRow = (String, String, String, i64, i64);

impl Store {
    /// Connects to `database_url` and brings the schema up to date.
    pub async fn open(database_url: &str) -> Result<Self, AuthServiceError> {
        let pool = tokenmesh_server::db::connect(database_url).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    /// The user named `username`.
    pub async fn find_user(&self, username: &str) -> Result<Option<UserRecord>, AuthServiceError> {
        let row: Option<UserRow> = sqlx::query_as(
            "SELECT username, password_hash, scopes, active, not_before FROM users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(
            |(username, password_hash, scopes, active, not_before)| UserRecord {
                username,
                password_hash,
                scopes,
                active: active != 0,
                not_before,
            },
        ))
    }

    /// Creates `user`; returns false if the name is taken.
    pub async fn create_user(&self, user: &NewUser) -> Result<bool, AuthServiceError> {
        let hash = password::hash(user.password.clone()).await?;
        let result = sqlx::query(
            "INSERT INTO users (username, password_hash, scopes, active, not_before, created_at) \
             VALUES ($1, $2, $3, 1, 0, $4) ON CONFLICT (username) DO NOTHING",
        )
        .bind(&user.username)
        .bind(hash)
        .bind(&user.scopes)
        .bind(tokenmesh_server::now_unix())
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Creates `user` unless the name is taken (without hashing when it is).
    pub async fn create_user_if_absent(&self, user: &NewUser) -> Result<bool, AuthServiceError> {
        if self.find_user(&user.username).await?.is_some() {
            return Ok(false);
        }
        self.create_user(user).await
    }

    /// Starts a login: a new refresh family holding one token.
    pub async fn start_family(
        &self,
        username: &str,
        family_id: &str,
        token_hash: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<(), AuthServiceError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO refresh_families (family_id, username, created_at) VALUES ($1, $2, $3)",
        )
        .bind(family_id)
        .bind(username)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        insert_refresh_token(&mut tx, family_id, token_hash, now, expires_at).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Spends the refresh token `token_hash` and, if it was live, stores
    /// `successor_hash` in its family — atomically: exactly one of concurrent
    /// spends wins. A second spend revokes the family.
    pub async fn spend_refresh_token(
        &self,
        token_hash: &str,
        successor_hash: &str,
        now: i64,
        successor_expires_at: i64,
    ) -> Result<Spend, AuthServiceError> {
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
        let row: Option<(String, i64, String, String, i64, i64)> = sqlx::query_as(
            "SELECT t.family_id, t.expires_at, f.username, u.scopes, u.not_before, \
                    CASE WHEN f.revoked_at IS NULL AND u.active = 1 THEN 0 ELSE 1 END \
             FROM refresh_tokens t \
             JOIN refresh_families f ON f.family_id = t.family_id \
             JOIN users u ON u.username = f.username \
             WHERE t.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((family_id, expires_at, username, scopes, not_before, dead)) = row else {
            return Ok(Spend::Unknown);
        };
        let outcome = if spent && dead == 0 {
            insert_refresh_token(
                &mut tx,
                &family_id,
                successor_hash,
                now,
                successor_expires_at,
            )
            .await?;
            Spend::Rotated {
                username,
                scopes,
                not_before,
            }
        } else if spent || dead == 1 {
            Spend::Revoked
        } else if expires_at <= now {
            Spend::Expired
        } else {
            revoke_family(&mut tx, &family_id, now).await?;
            Spend::Reused
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// Ends the login `token_hash` belongs to; false if there is no such token.
    pub async fn revoke_family_of(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<bool, AuthServiceError> {
        let result = sqlx::query(
            "UPDATE refresh_families SET revoked_at = $1 WHERE revoked_at IS NULL AND family_id = \
             (SELECT family_id FROM refresh_tokens WHERE token_hash = $2)",
        )
        .bind(now)
        .bind(token_hash)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Deactivates `username`: ends every login and revokes every token issued
    /// before `not_before`. Returns false if there is no such user.
    pub async fn deactivate(
        &self,
        username: &str,
        not_before: i64,
        forget_after: i64,
    ) -> Result<bool, AuthServiceError> {
        self.cut_off(username, None, not_before, forget_after).await
    }

    /// Replaces `username`'s password hash, ending every login and revoking
    /// every token issued before `not_before`.
    pub async fn change_password(
        &self,
        username: &str,
        password_hash: &str,
        not_before: i64,
        forget_after: i64,
    ) -> Result<bool, AuthServiceError> {
        self.cut_off(username, Some(password_hash), not_before, forget_after)
            .await
    }

    async fn cut_off(
        &self,
        username: &str,
        new_password_hash: Option<&str>,
        not_before: i64,
        forget_after: i64,
    ) -> Result<bool, AuthServiceError> {
        // The feed's cursor is MAX(seq) + 1: a concurrent writer may take the same
        // number, and then one of us retries.
        for _ in 0..5 {
            let mut tx = self.pool.begin().await?;
            let updated = match new_password_hash {
                Some(hash) => {
                    sqlx::query(
                        "UPDATE users SET password_hash = $1, not_before = $2 WHERE username = $3",
                    )
                    .bind(hash)
                    .bind(not_before)
                    .bind(username)
                    .execute(&mut *tx)
                    .await?
                }
                None => {
                    sqlx::query("UPDATE users SET active = 0, not_before = $1 WHERE username = $2")
                        .bind(not_before)
                        .bind(username)
                        .execute(&mut *tx)
                        .await?
                }
            };
            if updated.rows_affected() == 0 {
                return Ok(false);
            }
            sqlx::query("UPDATE refresh_families SET revoked_at = $1 WHERE username = $2 AND revoked_at IS NULL")
                .bind(not_before)
                .bind(username)
                .execute(&mut *tx)
                .await?;
            let inserted = sqlx::query(
                "INSERT INTO revocations (seq, subject, jti, not_before, forget_after) \
                 SELECT COALESCE(MAX(seq), 0) + 1, $1, '', $2, $3 FROM revocations",
            )
            .bind(username)
            .bind(not_before)
            .bind(forget_after)
            .execute(&mut *tx)
            .await;
            match inserted {
                Ok(_) => {
                    tx.commit().await?;
                    return Ok(true);
                }
                Err(error) if tokenmesh_server::db::is_unique_violation(&error) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(AuthServiceError::Contention("revocation feed"))
    }

    /// Revocations after `since` that still matter at `now`, in order.
    pub async fn revocations_since(
        &self,
        since: i64,
        now: i64,
        limit: i64,
    ) -> Result<Vec<Revocation>, AuthServiceError> {
        let rows: Vec<(i64, String, String, i64, i64)> = sqlx::query_as(
            "SELECT seq, subject, jti, not_before, forget_after FROM revocations \
             WHERE seq > $1 AND forget_after >= $2 ORDER BY seq LIMIT $3",
        )
        .bind(since)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(seq, subject, jti, not_before, forget_after)| Revocation {
                seq,
                subject,
                jti,
                not_before,
                forget_after,
            })
            .collect())
    }

    /// Registers (or replaces) a service client.
    pub async fn upsert_service_client(
        &self,
        client: &ServiceClient,
    ) -> Result<(), AuthServiceError> {
        sqlx::query(
            "INSERT INTO service_clients (client_id, secret_hash, scopes, audiences) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (client_id) DO UPDATE SET secret_hash = excluded.secret_hash, \
             scopes = excluded.scopes, audiences = excluded.audiences",
        )
        .bind(&client.client_id)
        .bind(&client.secret_hash)
        .bind(&client.scopes)
        .bind(&client.audiences)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The service client `client_id`.
    pub async fn service_client(
        &self,
        client_id: &str,
    ) -> Result<Option<ServiceClient>, AuthServiceError> {
        let row: Option<(String, String, String, String)> = sqlx::query_as(
            "SELECT client_id, secret_hash, scopes, audiences FROM service_clients WHERE client_id = $1",
        )
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(
            |(client_id, secret_hash, scopes, audiences)| ServiceClient {
                client_id,
                secret_hash,
                scopes,
                audiences,
            },
        ))
    }

    /// Keys still signing or still published at `now`, newest first.
    pub async fn live_keys(&self, now: i64) -> Result<Vec<StoredKey>, AuthServiceError> {
        let rows: Vec<(String, String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT kid, private_key_pem, created_at, retired_at FROM signing_keys \
             WHERE expires_at IS NULL OR expires_at > $1 ORDER BY created_at DESC, kid",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(kid, private_key_pem, created_at, retired_at)| StoredKey {
                kid,
                private_key_pem,
                created_at,
                retired_at,
            })
            .collect())
    }

    /// Makes `kid` the signing key, retiring the one that signed before: it stays
    /// published until `old_expires_at`. A key already stored is re-activated.
    pub async fn activate_key(
        &self,
        kid: &str,
        algorithm: &str,
        pem: &str,
        now: i64,
        old_expires_at: i64,
    ) -> Result<Option<String>, AuthServiceError> {
        let mut tx = self.pool.begin().await?;
        let retired: Vec<(String,)> = sqlx::query_as(
            "UPDATE signing_keys SET retired_at = $1, expires_at = $2 \
             WHERE retired_at IS NULL AND kid <> $3 RETURNING kid",
        )
        .bind(now)
        .bind(old_expires_at)
        .bind(kid)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, algorithm, private_key_pem, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (kid) DO UPDATE SET retired_at = NULL, expires_at = NULL, created_at = excluded.created_at",
        )
        .bind(kid)
        .bind(algorithm)
        .bind(pem)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(retired.into_iter().next().map(|(kid,)| kid))
    }
}

async fn insert_refresh_token(
    tx: &mut Transaction<'_, Any>,
    family_id: &str,
    token_hash: &str,
    now: i64,
    expires_at: i64,
) -> Result<(), AuthServiceError> {
    sqlx::query("INSERT INTO refresh_tokens (token_hash, family_id, issued_at, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(token_hash)
        .bind(family_id)
        .bind(now)
        .bind(expires_at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn revoke_family(
    tx: &mut Transaction<'_, Any>,
    family_id: &str,
    now: i64,
) -> Result<(), AuthServiceError> {
    sqlx::query(
        "UPDATE refresh_families SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(family_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
