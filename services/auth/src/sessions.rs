//! Sessions: the refresh token a login starts, its rotation on every refresh with
//! reuse detection (a replayed token ends the whole login and its access
//! tokens), its absolute cap, and logout. Refresh tokens are opaque random
//! strings, stored only as SHA-256 hashes; the family id is the `sid` claim.

use std::{sync::Arc, time::Duration};

use tokenmesh_interceptor::SharedClock;
use tokenmesh_server::random_token;

use crate::{
    AuthConfig, AuthServiceError,
    config::secs,
    revocations::Revocations,
    store::{NewRefreshToken, SessionRules, Spend, Store, UserRecord},
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
    /// The login, the new access token's `sid`.
    pub(crate) session_id: String,
}

/// A login that committed: its first refresh token and when it read the clock
/// (before its transaction).
#[derive(Debug)]
pub(crate) struct Started {
    /// The first refresh token of the family.
    pub(crate) refresh_token: String,
    /// See [`Owner::checked_at`].
    pub(crate) checked_at: i64,
    /// The login (the family's id), the access token's `sid`.
    pub(crate) session_id: String,
}

/// Auth's logins.
#[derive(Debug)]
pub(crate) struct Sessions {
    store: Store,
    clock: SharedClock,
    refresh_token_ttl: Duration,
    rules: SessionRules,
    revocations: Arc<Revocations>,
}

impl Sessions {
    /// Sessions in `store` as `config` says; ended sessions are recorded in
    /// `revocations`.
    pub(crate) fn new(store: Store, config: &AuthConfig, revocations: Arc<Revocations>) -> Self {
        Self {
            store,
            clock: config.clock.clone(),
            refresh_token_ttl: config.refresh_token_ttl,
            rules: SessionRules {
                max_lifetime: secs(config.session_max_lifetime),
                revocation_lifetime: config.revocation_lifetime(),
            },
            revocations,
        }
    }

    /// Starts a login of `user`, as read when its password was checked; refuses
    /// it (as bad credentials) if a cut-off committed since.
    pub(crate) async fn start(&self, user: &UserRecord) -> Result<Started, AuthServiceError> {
        let (token, record) = self.new_refresh_token();
        let session_id = random_token(16);
        if !self.store.start_family(user, &session_id, &record).await? {
            tracing::debug!(
                reason = "credentials changed during the login",
                "login refused"
            );
            return Err(AuthServiceError::InvalidCredentials);
        }
        Ok(Started {
            refresh_token: token,
            checked_at: record.issued_at,
            session_id,
        })
    }

    /// Spends `presented` and returns its successor and owner; refuses an
    /// unknown, expired, revoked or reused token with one answer, the reason
    /// only in the log (reuse revokes the login and its access tokens).
    pub(crate) async fn rotate(
        &self,
        presented: &str,
    ) -> Result<(String, Owner), AuthServiceError> {
        let (successor, record) = self.new_refresh_token();
        let spend = self
            .store
            .spend_refresh_token(&hex_sha256(presented), &record, self.rules)
            .await?;
        let reason = match spend {
            Spend::Rotated {
                username,
                scopes,
                not_before,
                family_id,
            } => {
                let owner = Owner {
                    username,
                    scopes,
                    not_before,
                    checked_at: record.issued_at,
                    session_id: family_id,
                };
                return Ok((successor, owner));
            }
            Spend::Reused {
                family_id,
                forget_after,
            } => {
                self.revocations.session_revoked(&family_id, forget_after);
                tracing::warn!(reason = "refresh token reuse", "session revoked");
                "reused"
            }
            Spend::Unknown => "unknown",
            Spend::Expired => "expired",
            Spend::Revoked => "revoked",
        };
        tracing::debug!(reason, "refresh refused");
        Err(AuthServiceError::RefreshRefused(reason))
    }

    /// Ends the login `presented` belongs to, and the access tokens minted for
    /// it; false if there was none live.
    pub(crate) async fn end(&self, presented: &str) -> Result<bool, AuthServiceError> {
        let now = self.clock.now_unix();
        let ended = self
            .store
            .end_family_of(&hex_sha256(presented), now, self.rules)
            .await?;
        let Some((family_id, forget_after)) = ended else {
            return Ok(false);
        };
        self.revocations.session_revoked(&family_id, forget_after);
        Ok(true)
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
