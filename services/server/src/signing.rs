//! A service's own signing key — Ed25519 (default), ECDSA P-256 or RSA-2048 — kept
//! as PKCS#8 PEM, named by its RFC 7638 thumbprint, published as a JWK, used to
//! sign JWTs of one `typ` or another.

use std::{fmt, path::Path, str::FromStr};

use aws_lc_rs::{
    encoding::AsDer,
    rand::SystemRandom,
    rsa::{KeyPair as RsaKeyPair, KeySize},
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{
    Algorithm, EncodingKey, Header,
    jwk::{
        AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, KeyAlgorithm,
        OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse, ThumbprintHash,
    },
};
use serde::Serialize;
use tokenmesh_proto::auth::v1 as proto;

use crate::private_file::{ExposedFile, PrivateFileError, read_private_file, write_private_file};

/// Why a signing key could not be loaded, created or used.
#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    /// Reading or writing the key file.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file is open to group or others.
    #[error(transparent)]
    Exposed(#[from] ExposedFile),
    /// Not a PEM `PRIVATE KEY` of a supported kind.
    #[error("not a PKCS#8 PEM Ed25519, P-256 or RSA (2048+ bit) private key: {0}")]
    Invalid(String),
    /// Signing failed.
    #[error("signing: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// The signature algorithms tokenmesh signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SigningAlgorithm {
    /// Ed25519 (RFC 8037): small, fast, deterministic. The default.
    #[default]
    EdDSA,
    /// ECDSA with P-256 and SHA-256.
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit keys.
    RS256,
}

impl SigningAlgorithm {
    /// The JOSE `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDSA => "EdDSA",
            Self::ES256 => "ES256",
            Self::RS256 => "RS256",
        }
    }

    fn jose(self) -> Algorithm {
        match self {
            Self::EdDSA => Algorithm::EdDSA,
            Self::ES256 => Algorithm::ES256,
            Self::RS256 => Algorithm::RS256,
        }
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SigningAlgorithm {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "EdDSA" => Ok(Self::EdDSA),
            "ES256" => Ok(Self::ES256),
            "RS256" => Ok(Self::RS256),
            other => Err(format!(
                "unsupported signing algorithm {other}: use EdDSA, ES256 or RS256"
            )),
        }
    }
}

/// A private signing key and its public JWK.
pub struct SigningKey {
    kid: String,
    algorithm: SigningAlgorithm,
    encoding: EncodingKey,
    public_jwk: proto::Jwk,
    pem: String,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

fn invalid(error: impl fmt::Display) -> SigningKeyError {
    SigningKeyError::Invalid(error.to_string())
}

impl SigningKey {
    /// A fresh Ed25519 key, and its PKCS#8 PEM to keep.
    pub fn generate() -> Result<(Self, String), SigningKeyError> {
        Self::generate_with(SigningAlgorithm::EdDSA)
    }

    /// A fresh key for `algorithm`, and its PKCS#8 PEM to keep.
    pub fn generate_with(algorithm: SigningAlgorithm) -> Result<(Self, String), SigningKeyError> {
        let rng = SystemRandom::new();
        let pkcs8 = match algorithm {
            SigningAlgorithm::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(invalid)?
                .as_ref()
                .to_vec(),
            SigningAlgorithm::ES256 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(invalid)?
                    .as_ref()
                    .to_vec()
            }
            SigningAlgorithm::RS256 => RsaKeyPair::generate(KeySize::Rsa2048)
                .map_err(invalid)?
                .as_der()
                .map_err(invalid)?
                .as_ref()
                .to_vec(),
        };
        let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8));
        Ok((Self::from_pem(&pem)?, pem))
    }

    /// Parses a PKCS#8 PEM private key: Ed25519 (v1 as `openssl genpkey` writes,
    /// or v2), P-256, or RSA of 2048 bits or more.
    pub fn from_pem(pem_text: &str) -> Result<Self, SigningKeyError> {
        let parsed = pem::parse(pem_text).map_err(invalid)?;
        if parsed.tag() != "PRIVATE KEY" {
            return Err(SigningKeyError::Invalid(format!(
                "PEM label is {}",
                parsed.tag()
            )));
        }
        let der = parsed.contents();
        let (algorithm, encoding, jwk) =
            if let Ok(pair) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
                let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
                (
                    SigningAlgorithm::EdDSA,
                    EncodingKey::from_ed_der(der),
                    ed25519_jwk(&x),
                )
            } else if EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).is_ok() {
                let encoding = EncodingKey::from_ec_pem(pem_text.as_bytes())?;
                let jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256)?;
                (SigningAlgorithm::ES256, encoding, jwk)
            } else if let Ok(pair) = RsaKeyPair::from_pkcs8(der) {
                if pair.public_modulus_len() < 256 {
                    return Err(SigningKeyError::Invalid(
                        "RSA keys must have at least 2048 bits".into(),
                    ));
                }
                let encoding = EncodingKey::from_rsa_pem(pem_text.as_bytes())?;
                let jwk = Jwk::from_encoding_key(&encoding, Algorithm::RS256)?;
                (SigningAlgorithm::RS256, encoding, jwk)
            } else {
                return Err(SigningKeyError::Invalid("unrecognised key".into()));
            };
        let kid = jwk.thumbprint(ThumbprintHash::SHA256);
        let public_jwk = proto_jwk(&jwk, &kid, algorithm).map_err(invalid)?;
        Ok(Self {
            kid,
            algorithm,
            encoding,
            public_jwk,
            pem: pem_text.to_owned(),
        })
    }

    /// Loads the key at `path`, or creates an Ed25519 one there (mode 0600) if
    /// there is none.
    pub fn load_or_generate(path: &Path) -> Result<Self, SigningKeyError> {
        Self::load_or_generate_with(path, SigningAlgorithm::EdDSA)
    }

    /// Loads the key at `path`, or creates one for `algorithm` there (mode 0600)
    /// if there is none. A key file open to group or others is refused.
    pub fn load_or_generate_with(
        path: &Path,
        algorithm: SigningAlgorithm,
    ) -> Result<Self, SigningKeyError> {
        let io = |source| SigningKeyError::Io {
            path: path.display().to_string(),
            source,
        };
        match Self::load(path) {
            Err(SigningKeyError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                let (key, pem) = Self::generate_with(algorithm)?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                write_private_file(path, pem.as_bytes()).map_err(io)?;
                tracing::info!(path = %path.display(), kid = %key.kid, "generated signing key");
                Ok(key)
            }
            loaded => loaded,
        }
    }

    /// Loads the key at `path`; it must exist, readable by its owner only.
    pub fn load(path: &Path) -> Result<Self, SigningKeyError> {
        let pem = read_private_file(path).map_err(|error| match error {
            PrivateFileError::Io { source, .. } => SigningKeyError::Io {
                path: path.display().to_string(),
                source,
            },
            PrivateFileError::Exposed(exposed) => SigningKeyError::Exposed(exposed),
        })?;
        let pem = String::from_utf8(pem).map_err(|_| invalid("not UTF-8 text"))?;
        Self::from_pem(&pem)
    }

    /// The key id: the RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    /// The private key as PKCS#8 PEM, to store.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The public key as a JWK, for a JWKS.
    pub fn public_jwk(&self) -> &proto::Jwk {
        &self.public_jwk
    }

    /// Signs `claims` as a compact JWS with header `typ` and this key's `kid`.
    pub fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, SigningKeyError> {
        let mut header = Header::new(self.algorithm.jose());
        header.typ = Some(typ.to_owned());
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }
}

fn ed25519_jwk(x: &str) -> Jwk {
    Jwk {
        common: CommonParameters {
            public_key_use: Some(PublicKeyUse::Signature),
            key_algorithm: Some(KeyAlgorithm::EdDSA),
            ..Default::default()
        },
        algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
            key_type: OctetKeyPairType::OctetKeyPair,
            curve: EllipticCurve::Ed25519,
            x: x.to_owned(),
        }),
    }
}

/// The proto form of a public JWK: its members as JSON, plus `kid`, `alg`, `use`.
fn proto_jwk(
    jwk: &Jwk,
    kid: &str,
    algorithm: SigningAlgorithm,
) -> Result<proto::Jwk, serde_json::Error> {
    let json = serde_json::to_value(jwk)?;
    let member = |name: &str| {
        json.get(name)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    Ok(proto::Jwk {
        kty: member("kty"),
        crv: member("crv"),
        x: member("x"),
        y: member("y"),
        n: member("n"),
        e: member("e"),
        kid: kid.to_owned(),
        alg: algorithm.as_str().to_owned(),
        r#use: "sig".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8037 appendix A.1/A.3: the Ed25519 example key and its thumbprint.
    #[test]
    fn kid_is_the_rfc_7638_thumbprint() {
        let jwk = ed25519_jwk("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
        assert_eq!(
            jwk.thumbprint(ThumbprintHash::SHA256),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn every_algorithm_generates_signs_and_reloads() {
        for algorithm in [
            SigningAlgorithm::EdDSA,
            SigningAlgorithm::ES256,
            SigningAlgorithm::RS256,
        ] {
            let (key, pem) = SigningKey::generate_with(algorithm).expect("generated");
            let reloaded = SigningKey::from_pem(&pem).expect("reloaded");
            assert_eq!(
                (reloaded.kid(), reloaded.algorithm()),
                (key.kid(), algorithm)
            );
            let jwk = crate::jwk_to_jose(key.public_jwk()).expect("jose jwk");
            assert_eq!(
                jwk.thumbprint(ThumbprintHash::SHA256),
                key.kid(),
                "{algorithm}"
            );
            let token = key
                .sign("at+jwt", &serde_json::json!({"sub": "x"}))
                .expect("signs");
            let mut validation = jsonwebtoken::Validation::new(algorithm.jose());
            validation.required_spec_claims.clear();
            validation.validate_exp = false;
            let decoding = jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("decoding key");
            jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation)
                .expect("verifies");
        }
    }

    #[test]
    fn openssl_pkcs8_v1_pem_loads_and_generated_keys_round_trip() {
        // `openssl genpkey -algorithm ED25519` output (PKCS#8 v1), the RFC 8037 key.
        let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n";
        let key = SigningKey::from_pem(pem).expect("v1 key loads");
        assert_eq!(
            key.public_jwk().x,
            "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        );

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys/signing.pem");
        let first = SigningKey::load_or_generate(&path).expect("generated");
        let again = SigningKey::load_or_generate(&path).expect("reloaded");
        assert_eq!(first.kid(), again.kid());
        assert_ne!(first.kid(), key.kid());
    }

    #[test]
    fn rsa_pem_is_refused() {
        let error = SigningKey::from_pem(
            "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        )
        .expect_err("not Ed25519");
        assert!(error.to_string().contains("RSA PRIVATE KEY"), "{error}");
        assert_eq!(
            "HS256".parse::<SigningAlgorithm>().expect_err("symmetric"),
            "unsupported signing algorithm HS256: use EdDSA, ES256 or RS256"
        );
    }
}
