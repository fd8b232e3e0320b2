//! Auth's tables: users and refresh tokens, on SQLite or PostgreSQL.

use sqlx::AnyPool;

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
}

/// A refresh token to store (by hash).
#[derive(Debug, Clone)]
pub struct NewRefreshToken<'a> {
    /// SHA-256 of the token, hex.
    pub token_hash: &'a str,
    /// The login this token descends from.
    pub family_id: &'a str,
    /// Owner.
    pub username: &'a str,
    /// Seconds since the epoch.
    pub issued_at: i64,
    /// Seconds since the epoch.
    pub expires_at: i64,
}

/// Auth's storage.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
}

impl Store {
    /// Connects to `database_url` and brings the schema up to date.
    pub async fn open(database_url: &str) -> Result<Self, AuthServiceError> {
        let pool = tokenmesh_server::db::connect(database_url).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    /// The user named `username`.
    pub async fn find_user(&self, username: &str) -> Result<Option<UserRecord>, AuthServiceError> {
        let row: Option<(String, String, String, i64)> = sqlx::query_as(
            "SELECT username, password_hash, scopes, active FROM users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        Ok(
            row.map(|(username, password_hash, scopes, active)| UserRecord {
                username,
                password_hash,
                scopes,
                active: active != 0,
            }),
        )
    }

    /// Creates `user` unless the name is taken; returns whether it was created.
    pub async fn create_user_if_absent(&self, user: &NewUser) -> Result<bool, AuthServiceError> {
        if self.find_user(&user.username).await?.is_some() {
            return Ok(false);
        }
        let hash = password::hash(user.password.clone()).await?;
        let result = sqlx::query(
            "INSERT INTO users (username, password_hash, scopes, active, created_at) \
             VALUES ($1, $2, $3, 1, $4) ON CONFLICT (username) DO NOTHING",
        )
        .bind(&user.username)
        .bind(hash)
        .bind(&user.scopes)
        .bind(tokenmesh_server::now_unix())
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Stores a refresh token's hash.
    pub async fn insert_refresh_token(
        &self,
        token: &NewRefreshToken<'_>,
    ) -> Result<(), AuthServiceError> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, family_id, username, issued_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token.token_hash)
        .bind(token.family_id)
        .bind(token.username)
        .bind(token.issued_at)
        .bind(token.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
