//! A [`KeySet`]: the keys of one issuer by `kid`, each pinned to the one
//! algorithm it verifies, built from a JWKS. Keys whose type, curve or `alg`
//! do not agree are dropped, never guessed.

use std::{collections::HashMap, fmt, sync::Arc};

use aws_lc_rs::signature::{self as lc, ParsedPublicKey};
use jsonwebtoken::{
    Algorithm, DecodingKey, DecodingKeyKind,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm},
};

/// A public key trusted to verify tokens, and the one algorithm it verifies.
pub struct VerificationKey {
    /// The key id tokens name in their header.
    pub kid: String,
    /// The only algorithm accepted with this key, whatever a token's header says.
    pub algorithm: Algorithm,
    /// The key material.
    pub key: DecodingKey,
    /// The key parsed once for `algorithm` (jsonwebtoken's backend parses it
    /// again for every signature: an RSA key's Montgomery setup, an EC point's
    /// validation). `None` if it does not parse: it verifies nothing.
    parsed: Option<ParsedPublicKey>,
}

impl VerificationKey {
    /// `key`, trusted under `kid` for `algorithm` only.
    pub fn new(kid: impl Into<String>, algorithm: Algorithm, key: DecodingKey) -> Self {
        Self {
            kid: kid.into(),
            algorithm,
            parsed: parse(algorithm, &key),
            key,
        }
    }

    /// Whether `signature` signs `message` under this key and its algorithm.
    pub(crate) fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        self.parsed
            .as_ref()
            .is_some_and(|key| key.verify_sig(message, signature).is_ok())
    }
}

/// `key` parsed by aws-lc-rs for `algorithm`, the verification jsonwebtoken's
/// `aws_lc_rs` backend would do (the same parameters), minus the parsing per call.
fn parse(algorithm: Algorithm, key: &DecodingKey) -> Option<ParsedPublicKey> {
    let rsa = |params: &'static lc::RsaParameters| match key.kind() {
        DecodingKeyKind::RsaModulusExponent { n, e } => lc::RsaPublicKeyComponents { n, e }
            .to_parsed_public_key(params)
            .ok(),
        DecodingKeyKind::SecretOrDer(der) => ParsedPublicKey::new(params, der).ok(),
    };
    let raw = |algorithm: &'static dyn lc::VerificationAlgorithm| match key.kind() {
        DecodingKeyKind::SecretOrDer(bytes) => ParsedPublicKey::new(algorithm, bytes).ok(),
        DecodingKeyKind::RsaModulusExponent { .. } => None,
    };
    match algorithm {
        Algorithm::EdDSA => raw(&lc::ED25519),
        Algorithm::ES256 => raw(&lc::ECDSA_P256_SHA256_FIXED),
        Algorithm::ES384 => raw(&lc::ECDSA_P384_SHA384_FIXED),
        Algorithm::RS256 => rsa(&lc::RSA_PKCS1_2048_8192_SHA256),
        Algorithm::RS384 => rsa(&lc::RSA_PKCS1_2048_8192_SHA384),
        Algorithm::RS512 => rsa(&lc::RSA_PKCS1_2048_8192_SHA512),
        Algorithm::PS256 => rsa(&lc::RSA_PSS_2048_8192_SHA256),
        Algorithm::PS384 => rsa(&lc::RSA_PSS_2048_8192_SHA384),
        Algorithm::PS512 => rsa(&lc::RSA_PSS_2048_8192_SHA512),
        // Symmetric: never trusted.
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => None,
    }
}

impl fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// An immutable set of trusted keys, by `kid`.
#[derive(Debug, Default, Clone)]
pub struct KeySet {
    keys: HashMap<String, Arc<VerificationKey>>,
    /// The JWK each key came from, to recognise it in the next fetch.
    jwks: HashMap<String, Jwk>,
}

impl KeySet {
    /// Builds a set from explicit keys.
    pub fn new(keys: impl IntoIterator<Item = VerificationKey>) -> Self {
        let keys = keys
            .into_iter()
            .map(|key| (key.kid.clone(), Arc::new(key)))
            .collect();
        Self {
            keys,
            jwks: HashMap::new(),
        }
    }

    /// Builds a set from a JWKS, keeping only asymmetric signing keys whose
    /// algorithm is stated or implied by their curve. Keys that cannot be used are
    /// skipped and logged, so one odd key does not take the others down with it.
    pub fn from_jwks(jwks: &JwkSet) -> Self {
        let mut set = Self::default();
        for jwk in &jwks.keys {
            match key_from_jwk(jwk) {
                Ok(key) => {
                    set.jwks.insert(key.kid.clone(), jwk.clone());
                    set.keys.insert(key.kid.clone(), Arc::new(key));
                }
                Err(reason) => tracing::warn!(kid = ?jwk.common.key_id, reason, "skipping JWK"),
            }
        }
        set
    }

    /// Keeps `previous`'s instance of every key that is unchanged, so that tokens
    /// verified with it stay cached across refreshes; a key that is gone or whose
    /// material changed is retired, and its cached tokens with it.
    pub(crate) fn carry_over(mut self, previous: &KeySet) -> Self {
        for (kid, jwk) in &self.jwks {
            if previous.jwks.get(kid) == Some(jwk)
                && let Some(key) = previous.keys.get(kid)
            {
                self.keys.insert(kid.clone(), key.clone());
            }
        }
        self
    }

    /// Whether `key` is still this set's key for its `kid`.
    pub(crate) fn holds(&self, key: &Arc<VerificationKey>) -> bool {
        self.keys
            .get(&key.kid)
            .is_some_and(|held| Arc::ptr_eq(held, key))
    }

    /// The key with this id.
    pub fn get(&self, kid: &str) -> Option<Arc<VerificationKey>> {
        self.keys.get(kid).cloned()
    }

    /// How many keys the set holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn key_from_jwk(jwk: &Jwk) -> Result<VerificationKey, &'static str> {
    let kid = jwk.common.key_id.clone().ok_or("no kid")?;
    // The algorithm comes from the key, never from a token: stated by `alg`, or
    // implied by a curve that has exactly one signature algorithm.
    let implied = match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Some(Algorithm::EdDSA)
        }
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
            Some(Algorithm::ES256)
        }
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P384 => {
            Some(Algorithm::ES384)
        }
        AlgorithmParameters::RSA(_) => None,
        AlgorithmParameters::OctetKey(_) => return Err("symmetric keys are never trusted"),
        _ => return Err("unsupported key type"),
    };
    let stated = match jwk.common.key_algorithm {
        Some(KeyAlgorithm::HS256 | KeyAlgorithm::HS384 | KeyAlgorithm::HS512) => {
            return Err("symmetric algorithms are never trusted");
        }
        Some(KeyAlgorithm::ES256) => Some(Algorithm::ES256),
        Some(KeyAlgorithm::ES384) => Some(Algorithm::ES384),
        Some(KeyAlgorithm::RS256) => Some(Algorithm::RS256),
        Some(KeyAlgorithm::RS384) => Some(Algorithm::RS384),
        Some(KeyAlgorithm::RS512) => Some(Algorithm::RS512),
        Some(KeyAlgorithm::PS256) => Some(Algorithm::PS256),
        Some(KeyAlgorithm::PS384) => Some(Algorithm::PS384),
        Some(KeyAlgorithm::PS512) => Some(Algorithm::PS512),
        Some(KeyAlgorithm::EdDSA) => Some(Algorithm::EdDSA),
        Some(_) => return Err("not a signature algorithm"),
        None => None,
    };
    let algorithm = match (stated, implied) {
        (Some(stated), Some(implied)) if stated != implied => {
            return Err("alg does not match the key's curve");
        }
        (Some(alg), _) | (None, Some(alg)) => alg,
        (None, None) => return Err("RSA key without alg"),
    };
    let family_matches = matches!(
        (&jwk.algorithm, algorithm),
        (
            AlgorithmParameters::RSA(_),
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512
        ) | (
            AlgorithmParameters::RSA(_),
            Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512
        ) | (
            AlgorithmParameters::EllipticCurve(_),
            Algorithm::ES256 | Algorithm::ES384
        ) | (AlgorithmParameters::OctetKeyPair(_), Algorithm::EdDSA)
    );
    if !family_matches {
        return Err("alg does not match the key type");
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| "invalid key material")?;
    Ok(VerificationKey::new(kid, algorithm, key))
}
