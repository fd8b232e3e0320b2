//! Is this token valid for me? A [`Verifier`] checks one issuer's tokens: size,
//! header (`typ`, `crit`, `kid`), the signature with the algorithm pinned to the
//! key, then `iss`, `aud`, `exp`, `nbf`, `iat`, lifetime, required claims and the
//! claims version — once per token: repeats are answered from a verified-token cache.

use std::{
    collections::HashMap,
    marker::PhantomData,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{Algorithm, Validation, errors::ErrorKind};
use serde::de::DeserializeOwned;

use crate::{
    AuthError, KeyStore, RevocationSet, VerificationKey,
    cache::{Verified, VerifiedCache},
};

/// The typed payload of a token, as the layer needs to see it.
pub trait Claims: DeserializeOwned + Send + Sync + 'static {
    /// `sub`: who the token speaks for.
    fn subject(&self) -> &str;

    /// `exp` (Unix seconds). Already checked by the verifier; it bounds how long
    /// the verified token may be served from the cache.
    fn expires_at(&self) -> i64;

    /// `scope`: space-separated scopes (RFC 9068 §2.2.3). None by default.
    fn scope(&self) -> &str {
        ""
    }

    /// `jti`: the token's unique id, for revocation. None by default.
    fn token_id(&self) -> &str {
        ""
    }

    /// `iat`: when the token was issued (Unix seconds), for subject revocation,
    /// the maximum lifetime and the "not issued in the future" check; 0 if absent.
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
    /// Clock skew allowed on `exp`, `nbf` and `iat`; capped at 60 s.
    pub leeway: Duration,
    /// Longer tokens are refused before any parsing.
    pub max_token_bytes: usize,
    /// Tokens whose `exp − iat` exceeds this are refused (and must carry `iat`);
    /// `None`: no limit.
    pub max_lifetime: Option<Duration>,
    /// How many verified tokens to remember; 0 turns the cache off.
    pub cache_capacity: usize,
}

impl VerifierConfig {
    /// Access tokens (`typ: at+jwt`) from `issuer` for `audience`, with the
    /// defaults: leeway 30 s, size limit 8 KiB, maximum lifetime 24 h, a cache of
    /// 10 000 verified tokens.
    pub fn access_tokens(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            token_type: "at+jwt".into(),
            leeway: Duration::from_secs(30),
            max_token_bytes: 8 * 1024,
            max_lifetime: Some(Duration::from_secs(24 * 60 * 60)),
            cache_capacity: 10_000,
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
    /// `config.leeway`, capped, in seconds.
    leeway: i64,
    revocations: Option<Arc<RevocationSet>>,
    cache: Option<VerifiedCache<C>>,
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
        let cache = VerifiedCache::new(config.cache_capacity);
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
            leeway: i64::try_from(leeway).unwrap_or(0),
            revocations: None,
            cache,
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

    /// How many verified tokens the cache holds.
    pub fn cached(&self) -> usize {
        self.cache.as_ref().map_or(0, VerifiedCache::len)
    }

    /// Verifies `token` and returns its claims. A token verified before is
    /// answered from the cache while it is unexpired, its key still trusted and
    /// it is not revoked since.
    pub async fn verify(&self, token: &str) -> Result<Arc<C>, AuthError> {
        if token.len() > self.config.max_token_bytes {
            return Err(AuthError::TooLarge {
                limit: self.config.max_token_bytes,
            });
        }
        let Some(cache) = &self.cache else {
            let (claims, _) = self.verify_uncached(token).await?;
            return Ok(Arc::new(claims));
        };
        let digest = VerifiedCache::<C>::digest(token);
        if let Some(hit) = cache.get(&digest) {
            if now_unix() <= hit.expires_at.saturating_add(self.leeway)
                && self.keys.trusts(&hit.key)
            {
                self.check_revoked(&hit.claims)?;
                return Ok(hit.claims);
            }
            // Expired or its key retired: verify afresh, which says why.
            cache.remove(&digest);
        }
        let (claims, key) = self.verify_uncached(token).await?;
        let claims = Arc::new(claims);
        let expires_at = claims.expires_at();
        cache.insert(
            digest,
            Verified {
                claims: claims.clone(),
                key,
                expires_at,
            },
        );
        Ok(claims)
    }

    async fn verify_uncached(&self, token: &str) -> Result<(C, Arc<VerificationKey>), AuthError> {
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
        self.check_times(&claims)?;
        claims.check_version()?;
        self.check_revoked(&claims)?;
        Ok((claims, key))
    }

    /// What jsonwebtoken leaves to us: `iat` not in the future, and `exp − iat`
    /// within the maximum lifetime.
    fn check_times(&self, claims: &C) -> Result<(), AuthError> {
        let issued_at = claims.issued_at();
        if issued_at > now_unix().saturating_add(self.leeway) {
            return Err(AuthError::IssuedInFuture);
        }
        if let Some(max) = self.config.max_lifetime {
            if issued_at == 0 {
                return Err(AuthError::MissingClaim("iat".into()));
            }
            let max_secs = i64::try_from(max.as_secs()).unwrap_or(i64::MAX);
            if claims.expires_at().saturating_sub(issued_at) > max_secs {
                return Err(AuthError::LifetimeTooLong { max_secs });
            }
        }
        Ok(())
    }

    fn check_revoked(&self, claims: &C) -> Result<(), AuthError> {
        match &self.revocations {
            Some(revocations)
                if revocations.is_revoked(
                    claims.subject(),
                    claims.token_id(),
                    claims.issued_at(),
                ) =>
            {
                Err(AuthError::Revoked)
            }
            _ => Ok(()),
        }
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

/// Seconds since the Unix epoch.
fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
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
