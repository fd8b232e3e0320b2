//! Why a request was refused, and the one mapping of those reasons to gRPC
//! statuses: a code, a message that never echoes the token, and a
//! `google.rpc.ErrorInfo` detail whose stable `reason` a client can act on.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Every [`AuthError::reason`], for metrics.
pub(crate) const REASONS: [&str; 18] = [
    "TOKEN_MISSING",
    "TOKEN_MALFORMED",
    "TOKEN_TOO_LARGE",
    "TOKEN_TYPE_MISMATCH",
    "KEY_UNKNOWN",
    "SIGNATURE_INVALID",
    "TOKEN_EXPIRED",
    "TOKEN_NOT_YET_VALID",
    "TOKEN_LIFETIME_EXCEEDED",
    "ISSUER_MISMATCH",
    "AUDIENCE_MISMATCH",
    "CLAIM_MISSING",
    "TOKEN_REVOKED",
    "REVOCATIONS_STALE",
    "CLAIMS_VERSION_UNSUPPORTED",
    "INSUFFICIENT_SCOPE",
    "METHOD_NOT_ALLOWED",
    "METHOD_UNKNOWN",
];

/// `ErrorInfo.domain` of every status this crate produces.
pub const ERROR_DOMAIN: &str = "tokenmesh.dev";

/// Why a token or a request was refused. Messages name the problem, never the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `authorization` metadata.
    #[error("missing bearer token: send `authorization: Bearer <access_token>`")]
    Missing,
    /// More than one `authorization` value.
    #[error("more than one authorization value")]
    Duplicate,
    /// `authorization` present but not `Bearer <token>`.
    #[error("authorization is not a bearer token")]
    NotBearer,
    /// Longer than the configured limit; not parsed.
    #[error("token longer than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Not a well-formed JWS, or claims of the wrong shape.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// Header `typ` is not the one this verifier accepts.
    #[error("wrong token type: expected {expected}")]
    WrongType {
        /// The accepted `typ`.
        expected: String,
    },
    /// The header lists a critical extension this verifier does not implement.
    #[error("unsupported critical header parameter")]
    UnsupportedCritical,
    /// No trusted key has the token's `kid`.
    #[error("token signed by an unknown key")]
    KeyUnknown,
    /// The header's `alg` is not the algorithm pinned to the key.
    #[error("token algorithm does not match its key")]
    AlgorithmMismatch,
    /// The signature does not verify.
    #[error("invalid token signature")]
    InvalidSignature,
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    #[error("token issued in the future")]
    IssuedInFuture,
    /// `exp − iat` exceeds the issuer's maximum token lifetime.
    #[error("token lifetime exceeds {max_secs} s")]
    LifetimeTooLong {
        /// The maximum, in seconds.
        max_secs: i64,
    },
    /// `iss` is not the trusted issuer.
    #[error("token issuer is not trusted")]
    IssuerMismatch,
    /// `aud` does not name this service.
    #[error("token audience does not include this service")]
    AudienceMismatch,
    /// A required claim is absent.
    #[error("token lacks required claim `{0}`")]
    MissingClaim(String),
    /// The claims' contract version is not one this reader accepts.
    #[error("unsupported claims version {found}; this service reads {accepted}")]
    UnsupportedVersion {
        /// The version in the token.
        found: u32,
        /// The versions accepted, for the message.
        accepted: String,
    },
    /// The token, or every token of its subject issued before it, was revoked.
    #[error("token revoked")]
    Revoked,
    /// The issuer's revocations cannot be known here: the feed was never
    /// replayed, or has been silent past its bound. Fails closed.
    #[error("revocation {0}: try again later")]
    RevocationsStale(crate::Stale),
    /// The token is valid but lacks a scope this method requires.
    #[error("insufficient scope: this method requires `{0}`")]
    InsufficientScope(String),
    /// The method has no access rule: denied by default.
    #[error("method has no access rule")]
    NoRule,
    /// The path names no method of this server (a call sent to the wrong
    /// port, say): no scope would open it.
    #[error(
        "unknown method: this server does not serve it (`grpcurl <address> list` shows what it does)"
    )]
    UnknownMethod,
}

impl From<AuthError> for Status {
    fn from(error: AuthError) -> Self {
        let code = match error {
            AuthError::Missing
            | AuthError::Duplicate
            | AuthError::NotBearer
            | AuthError::TooLarge { .. }
            | AuthError::Malformed(_)
            | AuthError::WrongType { .. }
            | AuthError::UnsupportedCritical
            | AuthError::KeyUnknown
            | AuthError::AlgorithmMismatch
            | AuthError::InvalidSignature
            | AuthError::Expired
            | AuthError::NotYetValid
            | AuthError::IssuedInFuture
            | AuthError::LifetimeTooLong { .. }
            | AuthError::IssuerMismatch
            | AuthError::AudienceMismatch
            | AuthError::MissingClaim(_)
            | AuthError::Revoked
            | AuthError::UnsupportedVersion { .. } => Code::Unauthenticated,
            AuthError::InsufficientScope(_) | AuthError::NoRule => Code::PermissionDenied,
            AuthError::UnknownMethod => Code::Unimplemented,
            // The token may be fine: this service cannot tell now, and another
            // replica (or this one, later) may.
            AuthError::RevocationsStale(_) => Code::Unavailable,
        };
        let mut metadata = HashMap::new();
        match &error {
            AuthError::InsufficientScope(scope) => {
                metadata.insert("scope".to_owned(), scope.clone());
            }
            AuthError::TooLarge { limit } => {
                metadata.insert("limit".to_owned(), limit.to_string());
            }
            _ => {}
        }
        let details = ErrorDetails::with_error_info(error.reason(), ERROR_DOMAIN, metadata);
        Status::with_error_details(code, error.to_string(), details)
    }
}

impl AuthError {
    /// A short stable name for logs, metrics and `ErrorInfo.reason`. Clients
    /// branch on it: `TOKEN_EXPIRED` → refresh; `TOKEN_REVOKED`, `KEY_UNKNOWN`,
    /// `SIGNATURE_INVALID` → log in again; `INSUFFICIENT_SCOPE` → ask for access;
    /// `REVOCATIONS_STALE` → retry later or elsewhere, the token may be fine.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "TOKEN_MISSING",
            AuthError::Duplicate | AuthError::NotBearer => "TOKEN_MALFORMED",
            AuthError::TooLarge { .. } => "TOKEN_TOO_LARGE",
            AuthError::Malformed(_) | AuthError::UnsupportedCritical => "TOKEN_MALFORMED",
            AuthError::WrongType { .. } => "TOKEN_TYPE_MISMATCH",
            AuthError::KeyUnknown => "KEY_UNKNOWN",
            AuthError::AlgorithmMismatch | AuthError::InvalidSignature => "SIGNATURE_INVALID",
            AuthError::Expired => "TOKEN_EXPIRED",
            AuthError::NotYetValid | AuthError::IssuedInFuture => "TOKEN_NOT_YET_VALID",
            AuthError::LifetimeTooLong { .. } => "TOKEN_LIFETIME_EXCEEDED",
            AuthError::IssuerMismatch => "ISSUER_MISMATCH",
            AuthError::AudienceMismatch => "AUDIENCE_MISMATCH",
            AuthError::MissingClaim(_) => "CLAIM_MISSING",
            AuthError::Revoked => "TOKEN_REVOKED",
            AuthError::RevocationsStale(_) => "REVOCATIONS_STALE",
            AuthError::UnsupportedVersion { .. } => "CLAIMS_VERSION_UNSUPPORTED",
            AuthError::InsufficientScope(_) => "INSUFFICIENT_SCOPE",
            AuthError::NoRule => "METHOD_NOT_ALLOWED",
            AuthError::UnknownMethod => "METHOD_UNKNOWN",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_listed_for_metrics() {
        let all = [
            AuthError::Missing,
            AuthError::Duplicate,
            AuthError::NotBearer,
            AuthError::TooLarge { limit: 1 },
            AuthError::Malformed(String::new()),
            AuthError::WrongType {
                expected: String::new(),
            },
            AuthError::UnsupportedCritical,
            AuthError::KeyUnknown,
            AuthError::AlgorithmMismatch,
            AuthError::InvalidSignature,
            AuthError::Expired,
            AuthError::NotYetValid,
            AuthError::IssuedInFuture,
            AuthError::LifetimeTooLong { max_secs: 1 },
            AuthError::IssuerMismatch,
            AuthError::AudienceMismatch,
            AuthError::MissingClaim(String::new()),
            AuthError::UnsupportedVersion {
                found: 0,
                accepted: String::new(),
            },
            AuthError::Revoked,
            AuthError::RevocationsStale(crate::Stale::NotReplayed),
            AuthError::InsufficientScope(String::new()),
            AuthError::NoRule,
            AuthError::UnknownMethod,
        ];
        for error in all {
            assert!(REASONS.contains(&error.reason()), "{error:?}");
        }
    }
}
