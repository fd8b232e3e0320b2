//! Auth's calls as the mesh tests make them, and the one way they assert a
//! refusal: its code and its exact message.

use tokenmesh_interceptor::ERROR_DOMAIN;
use tokenmesh_proto::auth::v1::{
    IssueServiceTokenRequest, LoginRequest, RefreshRequest, TokenResponse,
    auth_service_client::AuthServiceClient,
};
use tonic::{Code, Request, Status, transport::Channel};
use tonic_types::StatusExt;

use crate::{Mesh, bearer_value, client_secret};

/// Login with `username` and `password`.
pub async fn login(
    auth: &mut AuthServiceClient<Channel>,
    username: &str,
    password: &str,
) -> Result<TokenResponse, Status> {
    auth.login(LoginRequest {
        username: username.into(),
        password: password.into(),
    })
    .await
    .map(|response| response.into_inner())
}

/// A service token of `mesh`'s demo client `client` for `audience`, from the
/// Auth replica at `auth`.
pub async fn service_token(
    auth: &mut AuthServiceClient<Channel>,
    mesh: &Mesh,
    client: &str,
    audience: &str,
) -> String {
    auth.issue_service_token(IssueServiceTokenRequest {
        client_id: client.into(),
        client_secret: client_secret(mesh, client),
        audience: audience.into(),
    })
    .await
    .expect("service token")
    .into_inner()
    .access_token
}

/// Refresh with `token`.
pub async fn refresh(
    auth: &mut AuthServiceClient<Channel>,
    token: &str,
) -> Result<TokenResponse, Status> {
    auth.refresh(RefreshRequest {
        refresh_token: token.into(),
    })
    .await
    .map(|response| response.into_inner())
}

/// `message` sent with `authorization: Bearer <token>`.
pub fn with_bearer<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", bearer_value(token));
    request
}

/// `result` is a refusal with exactly `code` and `message`.
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, message: &str) {
    let status = result.expect_err(message);
    assert_eq!((status.code(), status.message()), (code, message));
}

/// `result` is a refusal by the auth layer: `code`, exactly `message`, and a
/// `google.rpc.ErrorInfo` naming `reason` in tokenmesh's domain.
#[track_caller]
pub fn assert_refused_by_layer<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    reason: &str,
    message: &str,
) {
    refusal_info(result, code, reason, message);
}

/// `result` is a service's refusal, as [`assert_refused_by_layer`] says, whose
/// `ErrorInfo` carries exactly `metadata`.
#[track_caller]
pub fn assert_refusal<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    reason: &str,
    message: &str,
    metadata: &[(&str, &str)],
) {
    let info = refusal_info(result, code, reason, message);
    let expected: std::collections::HashMap<String, String> = metadata
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    assert_eq!(info.metadata, expected, "{message}");
}

/// Asserts `result` is refused with `code`, exactly `message`, and an
/// `ErrorInfo` naming `reason` in tokenmesh's domain; that `ErrorInfo`.
#[track_caller]
fn refusal_info<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    reason: &str,
    message: &str,
) -> tonic_types::ErrorInfo {
    let status = result.expect_err(message);
    let info = status.get_details_error_info().expect("error info");
    assert_eq!(
        (
            status.code(),
            status.message(),
            info.reason.as_str(),
            info.domain.as_str()
        ),
        (code, message, reason, ERROR_DOMAIN)
    );
    info
}

/// `result` is Auth's throttle refusal: `RESOURCE_EXHAUSTED`, a `RetryInfo`
/// delay, and a message `"{what}; retry in N s"` naming that delay in whole
/// seconds rounded up. Returns the delay.
#[track_caller]
pub fn assert_throttled<T: std::fmt::Debug>(
    result: Result<T, Status>,
    what: &str,
) -> std::time::Duration {
    let status = result.expect_err(what);
    let delay = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .expect("RetryInfo with a delay");
    let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    assert_eq!(
        (status.code(), status.message()),
        (
            Code::ResourceExhausted,
            format!("{what}; retry in {seconds} s").as_str()
        )
    );
    delay
}
