//! Is this token valid for me? A [`Verifier`] checks one issuer's tokens: size,
//! header (`typ`, `crit`, `kid`), the signature with the algorithm pinned to the
//! key, then `iss`, `aud`, `exp`, `nbf`, required claims and the claims version.

use std::{collections::HashMap, marker::PhantomData, sync::Arc, time::Duration};

use jsonwebtoken::{Algorithm, Validation, errors::ErrorKind};
use serde::de::DeserializeOwned;

use crate::{AuthError, KeyStore, RevocationSet};

/// The typed payload of a token, as the layer needs to see it.
pub trait Claims: DeserializeOwned + Send + Sync + 'static {
    /// `sub`: who the token speaks for.
    fn subject(&self) -> &str;

    /// `scope`: space-separated scopes (RFC 9068 §2.2.3). None by default.
    fn scope(&self) -> &str {
        ""
    }

    /// `jti`: the token's unique id, for revocation. None by default.
    fn token_id(&self) -> &str {
        ""
    }

    /// `iat`: when the token was issued (Unix seconds), for subject revocation.
    fn issued_at(&self) -> i64 {
        0
    }

    /// Rejects a claims contract version this reader does not know.
    fn check_version(&self) -> Result<(), AuthError> {
        Ok(())
    }

    /// Whether `scope` lists `wanted`.
    fn has_scope(&self, wanted: &str) -> bool {
        self.scope().split(' ').any(|scope| scope == wanted)
    }
}

/// What a [`Verifier`] accepts.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// The one trusted `iss`.
    pub issuer: String,
    /// This service's name: `aud` must contain it.
    pub audience: String,
    /// The JOSE header `typ` this verifier accepts (`at+jwt` for access tokens);
    /// `application/` may prefix it, case does not matter (RFC 7515 §4.1.9).
    pub token_type: String,
    /// Clock skew allowed on `exp` and `nbf`; capped at 60 s.
    pub leeway: Duration,
    /// Longer tokens are refused before any parsing.
    pub max_token_bytes: usize,
}

impl VerifierConfig {
    /// Access tokens (`typ: at+jwt`) from `issuer` for `audience`, with the
    /// default leeway (30 s) and size limit (8 KiB).
    pub fn access_tokens(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            token_type: "at+jwt".into(),
            leeway: Duration::from_secs(30),
            max_token_bytes: 8 * 1024,
        }
    }

    /// The same issuer and audience, for tokens of another `typ`.
    pub fn with_token_type(mut self, token_type: impl Into<String>) -> Self {
        self.token_type = token_type.into();
        self
    }
}

const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::EdDSA,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

const MAX_LEEWAY: Duration = Duration::from_secs(60);

/// Verifies one issuer's tokens of one type into typed claims `C`.
pub struct Verifier<C> {
    config: VerifierConfig,
    keys: Arc<KeyStore>,
    /// One `Validation` per algorithm, each accepting only that algorithm.
    validations: HashMap<Algorithm, Validation>,
    revocations: Option<Arc<RevocationSet>>,
    _claims: PhantomData<fn() -> C>,
}

impl<C> std::fmt::Debug for Verifier<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("config", &self.config)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl<C: Claims> Verifier<C> {
    /// A verifier for `config`, trusting the keys in `keys`.
    pub fn new(config: VerifierConfig, keys: Arc<KeyStore>) -> Self {
        let leeway = config.leeway.min(MAX_LEEWAY).as_secs();
        let validations = ASYMMETRIC
            .into_iter()
            .map(|algorithm| {
                let mut validation = Validation::new(algorithm);
                validation.leeway = leeway;
                validation.validate_nbf = true;
                validation.set_issuer(&[&config.issuer]);
                validation.set_audience(&[&config.audience]);
                // jsonwebtoken skips absent `iss`/`aud`/`sub` unless required.
                validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
                (algorithm, validation)
            })
            .collect();
        Self {
            config,
            keys,
            validations,
            revocations: None,
            _claims: PhantomData,
        }
    }

    /// Also refuses tokens revoked in `revocations`.
    pub fn with_revocations(mut self, revocations: Arc<RevocationSet>) -> Self {
        self.revocations = Some(revocations);
        self
    }

    /// The keys this verifier trusts.
    pub fn keys(&self) -> &Arc<KeyStore> {
        &self.keys
    }

    /// Verifies `token` and returns its claims.
    pub async fn verify(&self, token: &str) -> Result<C, AuthError> {
        if token.len() > self.config.max_token_bytes {
            return Err(AuthError::TooLarge {
                limit: self.config.max_token_bytes,
            });
        }
        // decode_header refuses `alg: none` and unknown algorithms: they are not
        // variants of `Algorithm`.
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            AuthError::Malformed("not a JWS in compact form with a known alg".into())
        })?;
        // We implement no JWS extension, so any critical one must be refused
        // (RFC 7515 §4.1.11).
        if header.crit.is_some() {
            return Err(AuthError::UnsupportedCritical);
        }
        if !self.type_matches(header.typ.as_deref()) {
            return Err(AuthError::WrongType {
                expected: self.config.token_type.clone(),
            });
        }
        // `jwk`, `jku`, `x5u`, `x5c` are deliberately ignored: a token never
        // chooses the key that verifies it.
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Malformed("header lacks kid".into()))?;
        let key = self.keys.key(&kid).await.ok_or(AuthError::KeyUnknown)?;
        if header.alg != key.algorithm {
            return Err(AuthError::AlgorithmMismatch);
        }
        let validation = self
            .validations
            .get(&key.algorithm)
            .ok_or(AuthError::AlgorithmMismatch)?;
        let claims = jsonwebtoken::decode::<C>(token, &key.key, validation)
            .map_err(|error| map_jwt_error(error.kind()))?
            .claims;
        if claims.subject().is_empty() {
            return Err(AuthError::MissingClaim("sub".into()));
        }
        claims.check_version()?;
        if let Some(revocations) = &self.revocations
            && revocations.is_revoked(claims.subject(), claims.token_id(), claims.issued_at())
        {
            return Err(AuthError::Revoked);
        }
        Ok(claims)
    }

    fn type_matches(&self, typ: Option<&str>) -> bool {
        let Some(typ) = typ else { return false };
        let expected = self.config.token_type.as_str();
        let bare = match typ.get(..12) {
            Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &typ[12..],
            _ => typ,
        };
        bare.eq_ignore_ascii_case(expected)
    }
}

fn map_jwt_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_) => AuthError::InvalidSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            AuthError::AlgorithmMismatch
        }
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::IssuerMismatch,
        ErrorKind::InvalidAudience => AuthError::AudienceMismatch,
        ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(claim.clone()),
        ErrorKind::InvalidSubject => AuthError::Malformed("invalid sub".into()),
        ErrorKind::Json(_) => AuthError::Malformed("claims are not the expected JSON".into()),
        _ => AuthError::Malformed("undecodable token".into()),
    }
}
