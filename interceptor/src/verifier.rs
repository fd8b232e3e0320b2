//! Is this token valid for me? A [`Verifier`] checks one issuer's tokens: size,
//! header (`typ`, `crit`, `kid`), the signature with the algorithm pinned to the
//! key, then `iss`, `aud`, `exp`, `nbf`, `iat`, lifetime, required claims and the
//! claims version — once per token: repeats are answered from a verified-token cache.

use std::{collections::HashMap, marker::PhantomData, sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, Validation, errors::ErrorKind};
use serde::de::DeserializeOwned;

use crate::{
    Allowed, AuthError, KeyStore, RevocationSet, SharedClock, VerificationKey,
    cache::{TokenDigest, Verified, VerifiedCache},
    system_clock,
};

/// The typed payload of a token, as the layer needs to see it.
pub trait Claims: DeserializeOwned + Send + Sync + 'static {
    /// `sub`: who the token speaks for.
    fn subject(&self) -> &str;

    /// `exp` (Unix seconds). Already checked by the verifier; it bounds how long
    /// the verified token may be served from the cache.
    fn expires_at(&self) -> i64;

    /// `nbf` (Unix seconds); return 0 when the token has none. Required, so that
    /// no claims type silently skips the check.
    fn not_before(&self) -> i64;

    /// `scope`: space-separated scopes (RFC 9068 §2.2.3). None by default.
    fn scope(&self) -> &str {
        ""
    }

    /// `jti`: the token's unique id, for revocation. None by default.
    fn token_id(&self) -> &str {
        ""
    }

    /// `sid`: the session (login) the token belongs to, for session revocation.
    /// None by default.
    fn session_id(&self) -> &str {
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

/// What a [`Verifier`] accepts from one trusted issuer.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// The issuer's `iss`.
    pub issuer: String,
    /// This service's names: `aud` must contain one of them.
    pub audiences: Vec<String>,
    /// The JOSE header `typ` accepted from this issuer (`at+jwt` for access
    /// tokens); `application/` may prefix it, case does not matter (RFC 7515
    /// §4.1.9). Distinct types per issuer stop one kind of token being replayed
    /// as another.
    pub token_type: String,
    /// The algorithms accepted from this issuer. Each key is also pinned to its
    /// own algorithm: a token is accepted only if both agree.
    pub algorithms: Vec<Algorithm>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`; capped at 60 s.
    pub leeway: Duration,
    /// Longer tokens are refused before any parsing.
    pub max_token_bytes: usize,
    /// Tokens whose `exp − iat` exceeds this are refused (and must carry `iat`);
    /// `None`: no limit.
    pub max_lifetime: Option<Duration>,
}

impl VerifierConfig {
    /// Access tokens (`typ: at+jwt`) from `issuer` for `audience`, with the
    /// defaults: every asymmetric algorithm, leeway 30 s, size limit 8 KiB,
    /// maximum lifetime 24 h.
    pub fn access_tokens(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audiences: vec![audience.into()],
            token_type: "at+jwt".into(),
            algorithms: ASYMMETRIC.to_vec(),
            leeway: Duration::from_secs(30),
            max_token_bytes: 8 * 1024,
            max_lifetime: Some(Duration::from_secs(24 * 60 * 60)),
        }
    }

    /// The same issuer and audience, for tokens of another `typ`.
    pub fn with_token_type(mut self, token_type: impl Into<String>) -> Self {
        self.token_type = token_type.into();
        self
    }

    /// Only these algorithms (never a symmetric one: those are dropped).
    pub fn with_algorithms(mut self, algorithms: &[Algorithm]) -> Self {
        self.algorithms = algorithms
            .iter()
            .copied()
            .filter(|algorithm| ASYMMETRIC.contains(algorithm))
            .collect();
        self
    }

    /// Whether a header `typ` names this issuer's token type.
    fn type_matches(&self, typ: Option<&str>) -> bool {
        let Some(typ) = typ else { return false };
        let bare = match typ.get(..12) {
            Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &typ[12..],
            _ => typ,
        };
        bare.eq_ignore_ascii_case(&self.token_type)
    }
}

/// Every algorithm a verifier accepts (and the default set): the asymmetric
/// JWS algorithms. HMAC and `none` are never accepted.
pub const ASYMMETRIC: [Algorithm; 9] = [
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

/// The most leeway a verifier allows on `exp` and `nbf`, whatever it is
/// configured with: what issuers add to a token's life before its key, its
/// revocation or its feed entries may be forgotten.
pub const MAX_LEEWAY: Duration = Duration::from_secs(60);

/// How many verified tokens a [`Verifier`] remembers unless told otherwise.
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

/// One trusted issuer: what it may send, and the keys that verify it.
struct Issuer {
    config: VerifierConfig,
    keys: Arc<KeyStore>,
    /// One `Validation` per accepted algorithm, each accepting only that one.
    validations: HashMap<Algorithm, Validation>,
    /// `config.leeway`, capped, in seconds.
    leeway: i64,
}

impl Issuer {
    fn new(config: VerifierConfig, keys: Arc<KeyStore>) -> Self {
        let leeway = config.leeway.min(MAX_LEEWAY).as_secs();
        let validations = config
            .algorithms
            .iter()
            .map(|&algorithm| {
                let mut validation = Validation::new(algorithm);
                validation.leeway = leeway;
                // `exp` and `nbf` are checked against the verifier's clock (see
                // `check_times`); jsonwebtoken would read the system time.
                validation.validate_exp = false;
                validation.validate_nbf = false;
                validation.set_issuer(&[&config.issuer]);
                validation.set_audience(&config.audiences);
                // jsonwebtoken skips absent `iss`/`aud`/`sub` unless required.
                validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
                // The verifier checks the signature itself, before this
                // validation runs, with the key parsed once (`VerificationKey`);
                // this validation is used for nothing else. (Deprecated to steer
                // callers to `insecure_decode`, which would skip these checks.)
                #[allow(deprecated)]
                validation.insecure_disable_signature_validation();
                (algorithm, validation)
            })
            .collect();
        Self {
            config,
            keys,
            validations,
            leeway: i64::try_from(leeway).unwrap_or(0),
        }
    }
}

/// Verifies the tokens of one or more trusted issuers into typed claims `C`.
pub struct Verifier<C> {
    /// Never empty.
    issuers: Vec<Issuer>,
    /// The largest size limit of any issuer, checked before any parsing.
    max_token_bytes: usize,
    revocations: Option<Arc<RevocationSet>>,
    cache: Option<VerifiedCache<C>>,
    clock: SharedClock,
    _claims: PhantomData<fn() -> C>,
}

impl<C> std::fmt::Debug for Verifier<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let issuers: Vec<&VerifierConfig> = self.issuers.iter().map(|i| &i.config).collect();
        f.debug_struct("Verifier")
            .field("issuers", &issuers)
            .finish_non_exhaustive()
    }
}

impl<C: Claims> Verifier<C> {
    /// A verifier for `config`, trusting the keys in `keys`, with a cache of
    /// [`DEFAULT_CACHE_CAPACITY`] verified tokens.
    pub fn new(config: VerifierConfig, keys: Arc<KeyStore>) -> Self {
        Self {
            max_token_bytes: config.max_token_bytes,
            issuers: vec![Issuer::new(config, keys)],
            revocations: None,
            cache: VerifiedCache::new(DEFAULT_CACHE_CAPACITY),
            clock: system_clock(),
            _claims: PhantomData,
        }
    }

    /// Also trusts another issuer, with its own settings and keys. A token is
    /// matched to the issuer holding its `kid`; that issuer's `iss`, audiences,
    /// `typ`, algorithms and limits then apply.
    pub fn trust(mut self, config: VerifierConfig, keys: Arc<KeyStore>) -> Self {
        self.max_token_bytes = self.max_token_bytes.max(config.max_token_bytes);
        self.issuers.push(Issuer::new(config, keys));
        self
    }

    /// Also refuses tokens revoked in `revocations`.
    pub fn with_revocations(mut self, revocations: Arc<RevocationSet>) -> Self {
        self.revocations = Some(revocations);
        self
    }

    /// Reads the time from `clock` (tests move a [`crate::ManualClock`]).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Remembers up to `capacity` verified tokens (0: no cache).
    pub fn with_cache_capacity(mut self, capacity: usize) -> Self {
        self.cache = VerifiedCache::new(capacity);
        self
    }

    /// The keys of the first issuer.
    pub fn keys(&self) -> &Arc<KeyStore> {
        &self.issuers[0].keys
    }

    /// How many verified tokens the cache holds.
    pub fn cached(&self) -> usize {
        self.cache.as_ref().map_or(0, VerifiedCache::len)
    }

    /// Verifies `token` and returns its claims. A token verified before is
    /// answered from the cache while it is unexpired, its key still trusted and
    /// it is not revoked since.
    pub async fn verify(&self, token: &str) -> Result<Arc<C>, AuthError> {
        self.verify_counted(token).await.map(|(claims, _)| claims)
    }

    /// [`Verifier::verify`], also saying whether the signature was checked
    /// ([`Allowed::Verified`]) or the token came from the cache ([`Allowed::Cached`]).
    pub async fn verify_counted(&self, token: &str) -> Result<(Arc<C>, Allowed), AuthError> {
        match self.lookup(token)? {
            Lookup::Hit(claims) => Ok((claims, Allowed::Cached)),
            Lookup::Miss(digest) => Ok((self.verify_miss(token, digest).await?, Allowed::Verified)),
        }
    }

    /// The cache's answer for `token`, without waiting: its claims if it was
    /// verified before and is still unexpired, its key still trusted and it is
    /// not revoked since; else a miss to hand to [`Verifier::verify_miss`].
    pub(crate) fn lookup(&self, token: &str) -> Result<Lookup<C>, AuthError> {
        if token.len() > self.max_token_bytes {
            return Err(AuthError::TooLarge {
                limit: self.max_token_bytes,
            });
        }
        let Some(cache) = &self.cache else {
            return Ok(Lookup::Miss(None));
        };
        let digest = VerifiedCache::<C>::digest(token);
        if let Some(hit) = cache.get(&digest) {
            let issuer = &self.issuers[hit.issuer];
            if self.clock.now_unix() <= hit.expires_at.saturating_add(issuer.leeway)
                && issuer.keys.trusts(&hit.key)
            {
                self.check_revoked(&hit.claims)?;
                return Ok(Lookup::Hit(hit.claims));
            }
            // Expired or its key retired: verify afresh, which says why.
            cache.remove(&digest);
        }
        Ok(Lookup::Miss(Some(digest)))
    }

    /// Verifies a token [`Verifier::lookup`] missed, and caches it under `digest`.
    pub(crate) async fn verify_miss(
        &self,
        token: &str,
        digest: Option<TokenDigest>,
    ) -> Result<Arc<C>, AuthError> {
        let (claims, verified_by) = self.verify_uncached(token).await?;
        let claims = Arc::new(claims);
        if let (Some(cache), Some(digest)) = (&self.cache, digest) {
            cache.insert(
                digest,
                Verified {
                    expires_at: claims.expires_at(),
                    claims: claims.clone(),
                    key: verified_by.key,
                    issuer: verified_by.issuer,
                },
            );
        }
        Ok(claims)
    }

    async fn verify_uncached(&self, token: &str) -> Result<(C, VerifiedBy), AuthError> {
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
        let typ = header.typ.as_deref();
        if !self.issuers.iter().any(|i| i.config.type_matches(typ)) {
            return Err(self.wrong_type(0));
        }
        // `jwk`, `jku`, `x5u`, `x5c` are deliberately ignored: a token never
        // chooses the key that verifies it.
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Malformed("header lacks kid".into()))?;
        let (index, key) = self.find_key(&kid).await.ok_or(AuthError::KeyUnknown)?;
        let issuer = &self.issuers[index];
        if !issuer.config.type_matches(typ) {
            return Err(self.wrong_type(index));
        }
        if token.len() > issuer.config.max_token_bytes {
            return Err(AuthError::TooLarge {
                limit: issuer.config.max_token_bytes,
            });
        }
        if header.alg != key.algorithm {
            return Err(AuthError::AlgorithmMismatch);
        }
        let validation = issuer
            .validations
            .get(&key.algorithm)
            .ok_or(AuthError::AlgorithmMismatch)?;
        // The signature, with the key parsed once; then jsonwebtoken parses and
        // checks the claims (its own signature check is off: see `Issuer::new`).
        let (message, signature) = token
            .rsplit_once('.')
            .ok_or_else(|| AuthError::Malformed("undecodable token".into()))?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| AuthError::Malformed("undecodable token".into()))?;
        if !key.verifies(message.as_bytes(), &signature) {
            return Err(AuthError::InvalidSignature);
        }
        let claims = jsonwebtoken::decode::<C>(token, &key.key, validation)
            .map_err(|error| map_jwt_error(error.kind()))?
            .claims;
        if claims.subject().is_empty() {
            return Err(AuthError::MissingClaim("sub".into()));
        }
        check_times(issuer, &claims, self.clock.now_unix())?;
        claims.check_version()?;
        self.check_revoked(&claims)?;
        Ok((claims, VerifiedBy { issuer: index, key }))
    }

    /// The issuer holding `kid`, and the key. Sets already in memory are
    /// searched first; only then may each remote store refetch (single-flight,
    /// rate-limited).
    async fn find_key(&self, kid: &str) -> Option<(usize, Arc<VerificationKey>)> {
        let held = self
            .issuers
            .iter()
            .enumerate()
            .find_map(|(index, issuer)| issuer.keys.current().get(kid).map(|key| (index, key)));
        if held.is_some() {
            return held;
        }
        for (index, issuer) in self.issuers.iter().enumerate() {
            if let Some(key) = issuer.keys.key(kid).await {
                return Some((index, key));
            }
        }
        None
    }

    fn wrong_type(&self, issuer: usize) -> AuthError {
        AuthError::WrongType {
            expected: self.issuers[issuer].config.token_type.clone(),
        }
    }

    /// The revocations this verifier checks (health follows their feed).
    pub fn revocations(&self) -> Option<&Arc<RevocationSet>> {
        self.revocations.as_ref()
    }

    fn check_revoked(&self, claims: &C) -> Result<(), AuthError> {
        let Some(revocations) = &self.revocations else {
            return Ok(());
        };
        revocations.current().map_err(AuthError::RevocationsStale)?;
        let (subject, jti, iat) = (claims.subject(), claims.token_id(), claims.issued_at());
        if revocations.is_revoked(subject, jti, claims.session_id(), iat) {
            return Err(AuthError::Revoked);
        }
        Ok(())
    }
}

/// What the verified-token cache knows of a token.
pub(crate) enum Lookup<C> {
    /// Verified before, and still good.
    Hit(Arc<C>),
    /// To verify; its cache key (`None` without a cache).
    Miss(Option<TokenDigest>),
}

/// Which issuer and key verified a token.
struct VerifiedBy {
    issuer: usize,
    key: Arc<VerificationKey>,
}

/// Times, against `now` and within the issuer's leeway: `exp` not passed, `nbf`
/// reached, `iat` not in the future, and `exp − iat` within the issuer's maximum
/// lifetime. jsonwebtoken has already checked that `exp` is present.
fn check_times<C: Claims>(issuer: &Issuer, claims: &C, now: i64) -> Result<(), AuthError> {
    if now > claims.expires_at().saturating_add(issuer.leeway) {
        return Err(AuthError::Expired);
    }
    if claims.not_before() > now.saturating_add(issuer.leeway) {
        return Err(AuthError::NotYetValid);
    }
    let issued_at = claims.issued_at();
    if issued_at > now.saturating_add(issuer.leeway) {
        return Err(AuthError::IssuedInFuture);
    }
    if let Some(max) = issuer.config.max_lifetime {
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
