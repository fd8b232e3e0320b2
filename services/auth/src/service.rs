//! The `tokenmesh.auth.v1.AuthService` handlers: each checks its request and hands
//! the work to the concern that owns it (users, sessions, tokens, keys,
//! revocations).

use tokenmesh_interceptor::Claims;
use tokenmesh_proto::auth::v1::{
    ChangePasswordRequest, ChangePasswordResponse, CreateUserRequest, DeactivateUserRequest,
    ExchangeTokenRequest, GetJwksRequest, IssueServiceTokenRequest, Jwks, ListUsersRequest,
    ListUsersResponse, LoginRequest, LogoutRequest, LogoutResponse, ReactivateUserRequest,
    RefreshRequest, RotateSigningKeyRequest, RotateSigningKeyResponse, TokenResponse, User,
    WatchRevocationsRequest, auth_service_server,
};
use tokenmesh_server::{bounded, caller, paging::PageRequest, required, shown};
use tonic::{Request, Response, Status};
use tracing::instrument;

use crate::{
    AuthService, AuthServiceError, NewUser, counters::Throttled, revocations::RevocationStream,
};

#[tonic::async_trait]
impl auth_service_server::AuthService for AuthService {
    #[instrument(level = "debug", skip_all, fields(username = %shown(&request.get_ref().username)))]
    async fn login(
        &self,
        request: Request<LoginRequest>,
    ) -> Result<Response<TokenResponse>, Status> {
        let LoginRequest { username, password } = request.into_inner();
        required("username", &username)?;
        required("password", &password)?;
        let user = self.inner.users.login(&username, password).await?;
        // Commits only if no cut-off did since the password was checked.
        let started = self.inner.sessions.start(&user).await?;
        let access = self.inner.tokens.for_user(
            &user.username,
            &user.scopes,
            &started.session_id,
            user.not_before,
            started.checked_at,
        )?;
        tracing::debug!("login");
        Ok(Response::new(
            access.response(started.refresh_token, &user.scopes),
        ))
    }

    #[instrument(level = "debug", skip_all)]
    async fn refresh(
        &self,
        request: Request<RefreshRequest>,
    ) -> Result<Response<TokenResponse>, Status> {
        let limits = &self.inner.limits;
        limits
            .refresh(Throttled::Refresh, request.remote_addr())
            .await?;
        let presented = &request.get_ref().refresh_token;
        required("refresh_token", presented)?;
        let (successor, owner) = self.inner.sessions.rotate(presented).await?;
        // The spend read the owner's scopes and epoch in its transaction.
        let access = self.inner.tokens.for_user(
            &owner.username,
            &owner.scopes,
            &owner.session_id,
            owner.not_before,
            owner.checked_at,
        )?;
        Ok(Response::new(access.response(successor, &owner.scopes)))
    }

    #[instrument(level = "debug", skip_all)]
    async fn logout(
        &self,
        request: Request<LogoutRequest>,
    ) -> Result<Response<LogoutResponse>, Status> {
        let limits = &self.inner.limits;
        limits
            .refresh(Throttled::Logout, request.remote_addr())
            .await?;
        let presented = &request.get_ref().refresh_token;
        required("refresh_token", presented)?;
        let ended = self.inner.sessions.end(presented).await?;
        tracing::debug!(ended, "logout");
        Ok(Response::new(LogoutResponse {}))
    }

    #[instrument(level = "debug", skip_all, fields(username = %shown(&request.get_ref().username)))]
    async fn create_user(
        &self,
        request: Request<CreateUserRequest>,
    ) -> Result<Response<User>, Status> {
        let CreateUserRequest {
            username,
            password,
            scopes,
        } = request.into_inner();
        required("username", &username)?;
        bounded("password", &password)?;
        bounded("scopes", &scopes)?;
        let user = NewUser {
            username,
            password,
            scopes,
        };
        Ok(Response::new(self.inner.users.create(user).await?))
    }

    #[instrument(level = "debug", skip_all, fields(username = %shown(&request.get_ref().username)))]
    async fn deactivate_user(
        &self,
        request: Request<DeactivateUserRequest>,
    ) -> Result<Response<User>, Status> {
        let username = &request.get_ref().username;
        required("username", username)?;
        Ok(Response::new(self.inner.users.deactivate(username).await?))
    }

    #[instrument(level = "debug", skip_all, fields(username = %shown(&request.get_ref().username)))]
    async fn reactivate_user(
        &self,
        request: Request<ReactivateUserRequest>,
    ) -> Result<Response<User>, Status> {
        let username = &request.get_ref().username;
        required("username", username)?;
        Ok(Response::new(self.inner.users.reactivate(username).await?))
    }

    #[instrument(level = "debug", skip_all)]
    async fn list_users(
        &self,
        request: Request<ListUsersRequest>,
    ) -> Result<Response<ListUsersResponse>, Status> {
        let ListUsersRequest {
            page_size,
            page_token,
        } = request.get_ref();
        let page = PageRequest::parse(*page_size, page_token).map_err(AuthServiceError::from)?;
        let (users, next_page_token) = self.inner.users.list(&page).await?;
        Ok(Response::new(ListUsersResponse {
            users,
            next_page_token,
        }))
    }

    #[instrument(level = "debug", skip_all)]
    async fn change_password(
        &self,
        request: Request<ChangePasswordRequest>,
    ) -> Result<Response<ChangePasswordResponse>, Status> {
        let caller = caller(&request)?;
        let ChangePasswordRequest {
            current_password,
            new_password,
        } = request.into_inner();
        required("current_password", &current_password)?;
        bounded("new_password", &new_password)?;
        self.inner
            .users
            .change_password(caller.subject(), current_password, new_password)
            .await?;
        Ok(Response::new(ChangePasswordResponse {}))
    }

    #[instrument(level = "debug", skip_all, fields(client_id = %shown(&request.get_ref().client_id), audience = %shown(&request.get_ref().audience)))]
    async fn issue_service_token(
        &self,
        request: Request<IssueServiceTokenRequest>,
    ) -> Result<Response<TokenResponse>, Status> {
        let IssueServiceTokenRequest {
            client_id,
            client_secret,
            audience,
        } = request.get_ref();
        required("client_id", client_id)?;
        required("client_secret", client_secret)?;
        required("audience", audience)?;
        self.inner.limits.service_token(client_id).await?;
        let tokens = &self.inner.tokens;
        Ok(Response::new(
            tokens
                .for_service(client_id, client_secret, audience)
                .await?,
        ))
    }

    #[instrument(level = "debug", skip_all, fields(audience = %shown(&request.get_ref().audience)))]
    async fn exchange_token(
        &self,
        request: Request<ExchangeTokenRequest>,
    ) -> Result<Response<TokenResponse>, Status> {
        let actor = caller(&request)?;
        let ExchangeTokenRequest {
            subject_token,
            audience,
        } = request.get_ref();
        required("subject_token", subject_token)?;
        required("audience", audience)?;
        let tokens = &self.inner.tokens;
        Ok(Response::new(
            tokens.exchange(&actor, subject_token, audience).await?,
        ))
    }

    #[instrument(level = "debug", skip_all)]
    async fn get_jwks(&self, _request: Request<GetJwksRequest>) -> Result<Response<Jwks>, Status> {
        Ok(Response::new(Jwks {
            keys: self.public_jwks(),
        }))
    }

    #[instrument(level = "debug", skip_all)]
    async fn rotate_signing_key(
        &self,
        _request: Request<RotateSigningKeyRequest>,
    ) -> Result<Response<RotateSigningKeyResponse>, Status> {
        Ok(Response::new(self.rotate_signing_key().await?))
    }

    type WatchRevocationsStream = RevocationStream;

    #[instrument(level = "debug", skip_all, fields(since = request.get_ref().since))]
    async fn watch_revocations(
        &self,
        request: Request<WatchRevocationsRequest>,
    ) -> Result<Response<Self::WatchRevocationsStream>, Status> {
        let since = request.get_ref().since;
        let expires_at = caller(&request)?.expires_at();
        Ok(Response::new(
            self.inner.revocations.stream(since, expires_at),
        ))
    }
}

#[cfg(test)]
mod tests;
