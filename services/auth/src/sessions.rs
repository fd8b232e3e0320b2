//! Sessions: the refresh token a login starts, its rotation on every refresh with
//! reuse detection (a replayed token ends the whole login), and logout. Refresh
//! tokens are opaque random strings, stored only as SHA-256 hashes.

use std::time::Duration;

use tokenmesh_interceptor::SharedClock;
use tokenmesh_server::random_token;

use crate::{
    AuthServiceError,
    config::secs,
    store::{NewRefreshToken, Spend, Store},
    tokens::hex_sha256,
};

/// Whom a rotated refresh token belongs to, read in the spend's transaction.
#[derive(Debug)]
pub(crate) struct Owner {
    /// The user.
    pub(crate) username: String,
    /// Their scopes now.
    pub(crate) scopes: String,
    /// Their revocation epoch now.
    pub(crate) not_before: i64,
}

/// Auth's logins.
#[derive(Debug)]
pub(crate) struct Sessions {
    store: Store,
    clock: SharedClock,
    refresh_token_ttl: Duration,
}

impl Sessions {
    /// Sessions in `store` whose refresh tokens live `refresh_token_ttl`.
    pub(crate) fn new(store: Store, clock: SharedClock, refresh_token_ttl: Duration) -> Self {
        Self {
            store,
            clock,
            refresh_token_ttl,
        }
    }

    /// Starts a login of `username`; returns its first refresh token.
    pub(crate) async fn start(&self, username: &str) -> Result<String, AuthServiceError> {
        let (token, record) = self.new_refresh_token();
        self.store
            .start_family(username, &random_token(16), &record)
            .await?;
        Ok(token)
    }

    /// Spends `presented` and returns its successor and owner; refuses an
    /// unknown, expired, revoked or reused token (reuse revokes the login).
    pub(crate) async fn rotate(
        &self,
        presented: &str,
    ) -> Result<(String, Owner), AuthServiceError> {
        let (successor, record) = self.new_refresh_token();
        let spend = self
            .store
            .spend_refresh_token(&hex_sha256(presented), &record)
            .await?;
        match spend {
            Spend::Rotated {
                username,
                scopes,
                not_before,
            } => Ok((
                successor,
                Owner {
                    username,
                    scopes,
                    not_before,
                },
            )),
            Spend::Unknown => Err(AuthServiceError::RefreshRefused("unknown")),
            Spend::Expired => Err(AuthServiceError::RefreshRefused("expired")),
            Spend::Revoked => Err(AuthServiceError::RefreshRefused("revoked")),
            Spend::Reused => {
                tracing::warn!(reason = "refresh token reuse", "session revoked");
                Err(AuthServiceError::RefreshRefused(
                    "reused: the session is revoked",
                ))
            }
        }
    }

    /// Ends the login `presented` belongs to; false if there was none live.
    pub(crate) async fn end(&self, presented: &str) -> Result<bool, AuthServiceError> {
        let now = self.clock.now_unix();
        Ok(self
            .store
            .revoke_family_of(&hex_sha256(presented), now)
            .await?)
    }

    /// A fresh refresh token and the record that stores it.
    fn new_refresh_token(&self) -> (String, NewRefreshToken) {
        let token = random_token(32);
        let issued_at = self.clock.now_unix();
        let record = NewRefreshToken {
            token_hash: hex_sha256(&token),
            issued_at,
            expires_at: issued_at + secs(self.refresh_token_ttl),
        };
        (token, record)
    }
}
