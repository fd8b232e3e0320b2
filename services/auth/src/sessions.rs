//! Sessions: the refresh token a login starts, its rotation on every refresh with
//! reuse detection (a replayed token ends the whole login), and logout. Refresh
//! tokens are opaque random strings, stored only as SHA-256 hashes.

use std::time::Duration;

use tokenmesh_interceptor::SharedClock;
use tokenmesh_server::random_token;

use crate::{
    AuthServiceError,
    config::secs,
    store::{NewRefreshToken, Spend, Store, UserRecord},
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
    /// When the spend read the clock, before its transaction: the new access
    /// token is issued no later, so a cut-off ordered after it revokes it.
    pub(crate) checked_at: i64,
}

/// A login that committed: its first refresh token and when it read the clock
/// (before its transaction).
#[derive(Debug)]
pub(crate) struct Started {
    /// The first refresh token of the family.
    pub(crate) refresh_token: String,
    /// See [`Owner::checked_at`].
    pub(crate) checked_at: i64,
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

    /// Starts a login of `user`, as read when its password was checked; refuses
    /// it (as bad credentials) if a cut-off committed since.
    pub(crate) async fn start(&self, user: &UserRecord) -> Result<Started, AuthServiceError> {
        let (token, record) = self.new_refresh_token();
        if !self
            .store
            .start_family(user, &random_token(16), &record)
            .await?
        {
            tracing::info!(
                reason = "credentials changed during the login",
                "login refused"
            );
            return Err(AuthServiceError::InvalidCredentials);
        }
        Ok(Started {
            refresh_token: token,
            checked_at: record.issued_at,
        })
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
                    checked_at: record.issued_at,
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
