//! A service's own signing key: Ed25519, kept as PKCS#8 PEM, named by its RFC 7638
//! thumbprint, published as a JWK, used to sign JWTs of one `typ` or another.

use std::{fmt, io::Write, path::Path};

use aws_lc_rs::{
    rand::SystemRandom,
    signature::{Ed25519KeyPair, KeyPair},
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
    /// Not a PEM `PRIVATE KEY`, or not an Ed25519 PKCS#8 key.
    #[error("not an Ed25519 PKCS#8 PEM private key: {0}")]
    Invalid(String),
    /// Signing failed.
    #[error("signing: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// An Ed25519 private key and its public JWK.
pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    public_jwk: proto::Jwk,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh key, and its PKCS#8 PEM to keep.
    pub fn generate() -> Result<(Self, String), SigningKeyError> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| SigningKeyError::Invalid("key generation failed".into()))?;
        let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()));
        Ok((Self::from_pkcs8_der(pkcs8.as_ref())?, pem))
    }

    /// Parses a PKCS#8 PEM Ed25519 key (v1 as `openssl genpkey` writes, or v2).
    pub fn from_pem(pem_text: &str) -> Result<Self, SigningKeyError> {
        let parsed = pem::parse(pem_text).map_err(|e| SigningKeyError::Invalid(e.to_string()))?;
        if parsed.tag() != "PRIVATE KEY" {
            return Err(SigningKeyError::Invalid(format!(
                "PEM label is {}",
                parsed.tag()
            )));
        }
        Self::from_pkcs8_der(parsed.contents())
    }

    fn from_pkcs8_der(der: &[u8]) -> Result<Self, SigningKeyError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|e| SigningKeyError::Invalid(e.to_string()))?;
        let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        let kid = thumbprint(&x);
        let public_jwk = proto::Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x,
            kid: kid.clone(),
            alg: "EdDSA".into(),
            r#use: "sig".into(),
            ..Default::default()
        };
        Ok(Self {
            kid,
            encoding: EncodingKey::from_ed_der(der),
            public_jwk,
        })
    }

    /// Loads the key at `path`, or creates one there (mode 0600) if there is none.
    pub fn load_or_generate(path: &Path) -> Result<Self, SigningKeyError> {
        let io = |source| SigningKeyError::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(pem) => Self::from_pem(&pem),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let (key, pem) = Self::generate()?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(path).map_err(io)?;
                file.write_all(pem.as_bytes()).map_err(io)?;
                tracing::info!(path = %path.display(), kid = %key.kid, "generated signing key");
                Ok(key)
            }
            Err(error) => Err(io(error)),
        }
    }

    /// Loads the key at `path`; it must exist.
    pub fn load(path: &Path) -> Result<Self, SigningKeyError> {
        let pem = std::fs::read_to_string(path).map_err(|source| SigningKeyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_pem(&pem)
    }

    /// The key id: the RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK, for a JWKS.
    pub fn public_jwk(&self) -> &proto::Jwk {
        &self.public_jwk
    }

    /// Signs `claims` as a compact JWS with header `typ` and this key's `kid`.
    pub fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, SigningKeyError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(typ.to_owned());
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }
}

fn thumbprint(x: &str) -> String {
    let jwk = Jwk {
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
    };
    jwk.thumbprint(ThumbprintHash::SHA256)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8037 appendix A.1/A.3: the Ed25519 example key and its thumbprint.
    #[test]
    fn kid_is_the_rfc_7638_thumbprint() {
        assert_eq!(
            thumbprint("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
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
    }
}
