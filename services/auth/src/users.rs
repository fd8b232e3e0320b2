//! Users: password checks behind the login throttle, creation with checked input,
//! and the cut-offs — deactivation, password change — that end a user's logins
//! and revoke every token issued before them.

mod password;
pub(crate) mod throttle;

use std::sync::Arc;

use tokenmesh_interceptor::SharedClock;
use tokenmesh_proto::{auth::v1::User, names::audience};
use tokenmesh_server::{FieldViolation, paging::PageRequest, shown};

pub use throttle::ThrottleConfig;

use crate::{
    AuthServiceError,
    counters::{Counters, Throttled},
    revocations::Revocations,
    store::{NewUserRecord, Store, UserRecord},
};
use throttle::Throttle;

/// Shortest acceptable password.
const MIN_PASSWORD_LEN: usize = 8;
/// Longest username.
const MAX_USERNAME_LEN: usize = 64;

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

/// Auth's users.
#[derive(Debug)]
pub(crate) struct Users {
    store: Store,
    throttle: Throttle,
    clock: SharedClock,
    revocations: Arc<Revocations>,
    counters: Arc<Counters>,
}

impl Users {
    /// Users in `store`; cut-offs are recorded in `revocations`.
    pub(crate) fn new(
        store: Store,
        throttle: ThrottleConfig,
        clock: SharedClock,
        revocations: Arc<Revocations>,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            throttle: Throttle::new(throttle, store.clone(), clock.clone()),
            store,
            clock,
            revocations,
            counters,
        }
    }

    /// [`Users::authenticate`] for a login, which logs a refusal.
    pub(crate) async fn login(
        &self,
        username: &str,
        password: String,
    ) -> Result<UserRecord, AuthServiceError> {
        let result = self.authenticate(username, password).await;
        if let Err(AuthServiceError::InvalidCredentials) = &result {
            tracing::debug!(reason = "invalid credentials", "login refused");
        }
        result
    }

    /// The active user `username` if `password` is theirs. Unknown user, wrong
    /// password and deactivated user get one answer, and count alike against
    /// the throttle.
    pub(crate) async fn authenticate(
        &self,
        username: &str,
        password: String,
    ) -> Result<UserRecord, AuthServiceError> {
        // The slot is taken before any work: concurrent guesses cannot all pass
        // a check made before the first of them has failed.
        let attempt = match self.throttle.reserve(username).await? {
            Ok(attempt) => attempt,
            Err(retry_after) => {
                self.counters.throttled(Throttled::Login);
                return Err(AuthServiceError::Throttled { retry_after });
            }
        };
        let user = self.store.find_user(username).await?;
        let stored_hash = user.as_ref().map(|user| user.password_hash.clone());
        self.counters.password_checked();
        let matches = password::verify(password, stored_hash).await?;
        match user {
            Some(user) if matches && user.is_active() => {
                attempt.succeeded().await?;
                Ok(user)
            }
            _ => {
                if let Some(retry_after) = attempt.failed().await? {
                    tracing::debug!(?retry_after, "login throttled");
                }
                Err(AuthServiceError::InvalidCredentials)
            }
        }
    }

    /// Forgets the throttle's names untouched past their expiry.
    pub(crate) async fn prune_throttle(&self) -> Result<u64, AuthServiceError> {
        Ok(self.throttle.prune().await?)
    }

    /// Creates `user` after checking the name and the password's length.
    pub(crate) async fn create(&self, user: NewUser) -> Result<User, AuthServiceError> {
        valid_username(&user.username)?;
        self.not_reserved(&user.username).await?;
        valid_new_password("password", &user.password)?;
        let created = User {
            username: user.username.clone(),
            scopes: user.scopes.clone(),
            active: true,
        };
        if !insert(&self.store, &self.clock, user).await? {
            return Err(AuthServiceError::UserExists(created.username));
        }
        Ok(created)
    }

    /// A service's name — an audience, a registered service client's id, in
    /// any case — is not a username: a user's token would carry the `sub` of
    /// the service's own tokens.
    async fn not_reserved(&self, username: &str) -> Result<(), AuthServiceError> {
        let name = username.to_ascii_lowercase();
        let reserved = audience::USER_TOKEN.contains(&name.as_str())
            || self.store.service_client(&name).await?.is_some();
        if reserved {
            return Err(FieldViolation::new("username", "reserved for a service").into());
        }
        Ok(())
    }

    /// Deactivates `username`: its logins end and its tokens are revoked.
    pub(crate) async fn deactivate(&self, username: &str) -> Result<User, AuthServiceError> {
        let next_epoch = || self.revocations.epoch_now();
        let Some(epoch) = self.store.deactivate(username, next_epoch).await? else {
            return Err(AuthServiceError::UserNotFound(username.to_owned()));
        };
        self.revocations.subject_revoked(username, epoch);
        // An admin's act, rare: an audit line at INFO (the handler's span is DEBUG).
        tracing::info!(username = %shown(username), "user deactivated");
        let user = self.store.find_user(username).await?;
        Ok(User {
            username: username.to_owned(),
            scopes: user.map(|u| u.scopes).unwrap_or_default(),
            active: false,
        })
    }

    /// Lets the deactivated `username` log in again; tokens and logins the
    /// deactivation ended stay ended.
    pub(crate) async fn reactivate(&self, username: &str) -> Result<User, AuthServiceError> {
        let Some(user) = self.store.reactivate(username).await? else {
            return Err(AuthServiceError::UserNotFound(username.to_owned()));
        };
        tracing::info!("user reactivated");
        Ok(user.to_proto())
    }

    /// One page of users, in username order.
    pub(crate) async fn list(
        &self,
        page: &PageRequest,
    ) -> Result<(Vec<User>, String), AuthServiceError> {
        let after = page.after.as_deref().unwrap_or_default();
        let records = self.store.list_users(after, page.fetch_limit()).await?;
        let (records, next) = page.finish(records, |user| user.username.clone());
        Ok((records.iter().map(UserRecord::to_proto).collect(), next))
    }

    /// Replaces `username`'s password if `current` is right: its logins end and
    /// its tokens are revoked.
    pub(crate) async fn change_password(
        &self,
        username: &str,
        current: String,
        new: String,
    ) -> Result<(), AuthServiceError> {
        valid_new_password("new_password", &new)?;
        self.authenticate(username, current).await?;
        let hash = password::hash(new).await?;
        let next_epoch = || self.revocations.epoch_now();
        let Some(epoch) = self
            .store
            .change_password(username, &hash, next_epoch)
            .await?
        else {
            return Err(AuthServiceError::UserNotFound(username.to_owned()));
        };
        self.revocations.subject_revoked(username, epoch);
        tracing::info!(username = %shown(username), "password changed; tokens revoked");
        Ok(())
    }
}

/// Creates `user` unless the name is taken, without hashing when it is; the
/// demo seed's path, which checks no input.
pub(crate) async fn create_if_absent(
    store: &Store,
    clock: &SharedClock,
    user: NewUser,
) -> Result<bool, AuthServiceError> {
    if store.find_user(&user.username).await?.is_some() {
        return Ok(false);
    }
    insert(store, clock, user).await
}

/// Hashes `user`'s password and stores them; false if the name is taken.
async fn insert(
    store: &Store,
    clock: &SharedClock,
    user: NewUser,
) -> Result<bool, AuthServiceError> {
    let password_hash = password::hash(user.password).await?;
    let record = NewUserRecord {
        username: user.username,
        password_hash,
        scopes: user.scopes,
        created_at: clock.now_unix(),
    };
    Ok(store.insert_user(&record).await?)
}

fn valid_username(username: &str) -> Result<(), FieldViolation> {
    let name_ok = username.len() <= MAX_USERNAME_LEN
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if !name_ok {
        return Err(FieldViolation::new(
            "username",
            "at most 64 of A-Z a-z 0-9 . _ - @",
        ));
    }
    Ok(())
}

fn valid_new_password(field: &'static str, value: &str) -> Result<(), FieldViolation> {
    if value.chars().count() < MIN_PASSWORD_LEN {
        return Err(FieldViolation::new(field, "must be at least 8 characters"));
    }
    Ok(())
}
