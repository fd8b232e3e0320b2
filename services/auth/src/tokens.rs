//! Access tokens: minting (RFC 9068, `typ: at+jwt`) for users, for service clients
//! (client credentials) and by token exchange (RFC 8693: one hop, one audience
//! other than Auth, only the scopes the caller may delegate, an `act` claim
//! naming it), and the token responses.

use std::{sync::Arc, time::Duration};

use sha2::{Digest, Sha256};
use tokenmesh_interceptor::{Claims, SharedClock, Verifier};
use tokenmesh_proto::{
    auth::v1::TokenResponse,
    claims::v1::{AccessClaims, Actor},
    names::{ACCESS_TOKEN_TYPE, BEARER, LOGIN_CLIENT_ID, audience::AUTH},
};
use tokenmesh_server::{
    ACCESS_CLAIMS_VERSION, Caller, ClientCredentials, FieldViolation, random_token,
};

use crate::{
    AuthConfig, AuthServiceError,
    config::secs,
    store::{DelegationRecord, ServiceClient, Store},
};

/// SHA-256 of `text`, hex: how refresh tokens and client secrets (256-bit random
/// strings, no password-grade KDF needed) are stored.
pub(crate) fn hex_sha256(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

/// `bytes` in lowercase hex, one buffer.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut hex = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// What a minted access token says.
struct Mint<'a> {
    sub: &'a str,
    scope: &'a str,
    aud: Vec<String>,
    client_id: &'a str,
    act: Option<Actor>,
    /// The login the token is minted for (empty for service tokens).
    sid: &'a str,
    ttl: Duration,
    /// Never issued before this (the subject's revocation epoch).
    not_before: i64,
    /// Issued at this time rather than now: when the login or refresh read the
    /// clock, before the transaction a cut-off is ordered against.
    at: Option<i64>,
    /// Never valid after this.
    expires_by: Option<i64>,
}

/// A signed access token and its remaining lifetime.
#[derive(Debug)]
pub(crate) struct Minted {
    token: String,
    expires_in: i64,
}

impl Minted {
    /// The answer to a token request: this access token, `refresh_token` (empty
    /// for service and exchanged tokens) and the granted `scope`.
    pub(crate) fn response(self, refresh_token: String, scope: &str) -> TokenResponse {
        TokenResponse {
            access_token: self.token,
            token_type: BEARER.into(),
            expires_in: self.expires_in,
            refresh_token,
            scope: scope.to_owned(),
        }
    }
}

/// Auth's minting: the key ring that signs, the service clients, and Auth's own
/// verifier for the tokens presented to exchange.
#[derive(Debug)]
pub(crate) struct Tokens {
    store: Store,
    keys: Arc<tokenmesh_server::KeyRing>,
    verifier: Arc<Verifier<Caller>>,
    issuer: String,
    audiences: Vec<String>,
    access_token_ttl: Duration,
    exchange_token_ttl: Duration,
    clock: SharedClock,
}

impl Tokens {
    /// Minting with `keys` as `config` says; `verifier` checks subject tokens.
    pub(crate) fn new(
        store: Store,
        keys: Arc<tokenmesh_server::KeyRing>,
        verifier: Arc<Verifier<Caller>>,
        config: &AuthConfig,
    ) -> Self {
        Self {
            store,
            keys,
            verifier,
            issuer: config.issuer.clone(),
            audiences: config.audiences.clone(),
            access_token_ttl: config.access_token_ttl,
            exchange_token_ttl: config.exchange_token_ttl,
            clock: config.clock.clone(),
        }
    }

    fn mint(&self, mint: Mint<'_>) -> Result<Minted, AuthServiceError> {
        let now = self.clock.now_unix();
        // A token issued in the same second as a revocation must not be caught by
        // it: start at the subject's epoch.
        let issued = mint.at.unwrap_or(now).max(mint.not_before);
        let mut expires = issued + secs(mint.ttl);
        if let Some(cap) = mint.expires_by {
            expires = expires.min(cap);
        }
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: mint.sub.to_owned(),
            aud: mint.aud,
            exp: expires,
            iat: issued,
            nbf: issued,
            jti: random_token(16),
            scope: mint.scope.to_owned(),
            ver: ACCESS_CLAIMS_VERSION,
            client_id: mint.client_id.to_owned(),
            act: mint.act,
            sid: mint.sid.to_owned(),
        };
        let token = self.keys.signer().sign(ACCESS_TOKEN_TYPE, &claims)?;
        Ok(Minted {
            token,
            expires_in: expires - now,
        })
    }

    /// A user's access token for every user audience, for the login
    /// `session_id`, issued at `at` (when the login or refresh read the clock)
    /// but no earlier than the user's revocation epoch `not_before`.
    pub(crate) fn for_user(
        &self,
        username: &str,
        scope: &str,
        session_id: &str,
        not_before: i64,
        at: i64,
    ) -> Result<Minted, AuthServiceError> {
        self.mint(Mint {
            sub: username,
            scope,
            aud: self.audiences.clone(),
            client_id: LOGIN_CLIENT_ID,
            act: None,
            sid: session_id,
            ttl: self.access_token_ttl,
            not_before,
            at: Some(at),
            expires_by: None,
        })
    }

    /// Registers (or updates) a service client as `credentials` declare it, with
    /// what it may delegate; only the secret's hash is kept.
    pub(crate) async fn register_client(
        &self,
        credentials: &ClientCredentials,
    ) -> Result<(), AuthServiceError> {
        let declared = credentials.client;
        let client = ServiceClient {
            client_id: declared.id.to_owned(),
            secret_hash: hex_sha256(&credentials.secret),
            scopes: declared.scopes.join(" "),
            audiences: declared.audiences.join(" "),
        };
        let delegations: Vec<DelegationRecord> = declared
            .delegates
            .iter()
            .map(|delegation| DelegationRecord {
                audience: delegation.audience.to_owned(),
                scopes: delegation.scopes.join(" "),
            })
            .collect();
        Ok(self
            .store
            .upsert_service_client(&client, &delegations)
            .await?)
    }

    /// Client credentials: a token for `audience` with the client's scopes, and
    /// no refresh token (RFC 6749 §4.4.3).
    pub(crate) async fn for_service(
        &self,
        client_id: &str,
        secret: &str,
        audience: &str,
    ) -> Result<TokenResponse, AuthServiceError> {
        let client = self.store.service_client(client_id).await?;
        let Some(client) = client.filter(|client| client.secret_hash == hex_sha256(secret)) else {
            return Err(AuthServiceError::InvalidClientCredentials);
        };
        allows_audience(&client, audience)?;
        let access = self.mint(Mint {
            sub: client_id,
            scope: &client.scopes,
            aud: vec![audience.to_owned()],
            client_id,
            act: None,
            sid: "",
            ttl: self.access_token_ttl,
            not_before: 0,
            at: None,
            expires_by: None,
        })?;
        Ok(access.response(String::new(), &client.scopes))
    }

    /// Token exchange: `actor` (a service client) turns a user's `subject_token`
    /// into a token for `audience` that names it in `act`, carries only the
    /// user's scopes the actor may delegate to that audience, lives at most as
    /// long as the subject token, and carries no refresh token. Never for Auth
    /// itself, and never from a token that was exchanged already: one hop.
    pub(crate) async fn exchange(
        &self,
        actor: &Caller,
        subject_token: &str,
        audience: &str,
    ) -> Result<TokenResponse, AuthServiceError> {
        // A token for Auth could be exchanged again, or used at Auth itself.
        if audience == AUTH {
            return Err(FieldViolation::new(
                "audience",
                "an exchanged token is never issued for auth",
            )
            .into());
        }
        let client = self
            .store
            .service_client(actor.subject())
            .await?
            .filter(|client| client.client_id == actor.0.client_id)
            .ok_or(AuthServiceError::NotAServiceClient)?;
        let delegation = self
            .store
            .delegation(&client.client_id, audience)
            .await?
            .ok_or_else(|| AuthServiceError::AudienceNotAllowed(audience.to_owned()))?;
        // Auth's own verifier: only tokens for audience `auth` pass — a user's
        // login token, or a service's token for Auth (the delegation strips its
        // scopes).
        let subject = self
            .verifier
            .verify(subject_token)
            .await
            .map_err(AuthServiceError::InvalidSubjectToken)?;
        if subject.0.act.is_some() {
            return Err(FieldViolation::new(
                "subject_token",
                "already exchanged (has `act`); exchange the user's own token",
            )
            .into());
        }
        let scope = delegated_scope(subject.scope(), &delegation.scopes);
        let access = self.mint(Mint {
            sub: subject.subject(),
            scope: &scope,
            aud: vec![audience.to_owned()],
            client_id: &client.client_id,
            act: Some(Actor {
                sub: client.client_id.clone(),
            }),
            // Ending the subject's login ends what was exchanged from it too.
            sid: &subject.0.sid,
            ttl: self.exchange_token_ttl,
            not_before: subject.0.iat,
            at: None,
            expires_by: Some(subject.0.exp),
        })?;
        Ok(access.response(String::new(), &scope))
    }
}

/// The subject's scopes that the actor may delegate (both space-separated), in
/// the subject's order.
fn delegated_scope(subject: &str, delegable: &str) -> String {
    subject
        .split(' ')
        .filter(|scope| !scope.is_empty() && delegable.split(' ').any(|allowed| allowed == *scope))
        .collect::<Vec<_>>()
        .join(" ")
}

fn allows_audience(client: &ServiceClient, audience: &str) -> Result<(), AuthServiceError> {
    if client
        .audiences
        .split(' ')
        .any(|allowed| allowed == audience)
    {
        return Ok(());
    }
    Err(AuthServiceError::AudienceNotAllowed(audience.to_owned()))
}
