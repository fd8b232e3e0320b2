//! Auth's signing keys: the shared [`KeyRing`] over Auth's `signing_keys`
//! table, so every replica signs with the same key; a retired key stays
//! published for the access-token lifetime plus the grace. Auth's own key
//! source reads the ring, reloading it first.

use std::sync::Arc;

use futures::{FutureExt, future::BoxFuture};
use jsonwebtoken::jwk::JwkSet;
use tokenmesh_interceptor::{KeySource, KeySourceError};
use tokenmesh_proto::auth::v1::RotateSigningKeyResponse;
pub use tokenmesh_server::SigningKeys;
use tokenmesh_server::{KeyRing, KeyRingError, RingConfig, jwk_to_jose};

use crate::{AuthConfig, AuthServiceError, store::Store};

impl From<KeyRingError> for AuthServiceError {
    fn from(error: KeyRingError) -> Self {
        match error {
            KeyRingError::Store(error) => Self::Store(error),
            KeyRingError::KeyEncryption(error) => Self::KeyEncryption(error),
            KeyRingError::Signing(error) => Self::Signing(error),
            KeyRingError::NoSigningKey => Self::NoSigningKey,
        }
    }
}

/// Opens Auth's key ring over `store` (see [`KeyRing::open`]): new keys use
/// `config.signing_algorithm`; a retired key stays published for the
/// access-token lifetime plus `config.retired_key_grace`.
pub(crate) async fn open_ring(
    store: &Store,
    keys: SigningKeys,
    config: &AuthConfig,
) -> Result<Arc<KeyRing>, AuthServiceError> {
    let ring = RingConfig {
        algorithm: config.signing_algorithm,
        publish_retired_for: config.access_token_ttl + config.retired_key_grace,
        clock: config.clock.clone(),
    };
    Ok(KeyRing::open(store.signing_keys(), keys, ring).await?)
}

/// Rotates Auth's key, answered as RotateSigningKey answers.
pub(crate) async fn rotate(ring: &KeyRing) -> Result<RotateSigningKeyResponse, AuthServiceError> {
    let rotated = ring.rotate().await?;
    Ok(RotateSigningKeyResponse {
        kid: rotated.kid,
        retired_kid: rotated.retired_kid.unwrap_or_default(),
        retired_kid_expires_at: rotated.retired_kid_expires_at,
    })
}

/// Auth's own published keys as a key source, so Auth verifies its tokens with
/// the same machinery as every other service, rotation included. Each fetch
/// (scheduled, or on an unknown `kid`: a key another replica just rotated to)
/// re-reads the store first, so this replica then signs with that key too.
#[derive(Debug, Clone)]
pub struct OwnKeys(pub Arc<KeyRing>);

impl KeySource for OwnKeys {
    fn fetch(&self) -> BoxFuture<'_, Result<JwkSet, KeySourceError>> {
        async move {
            if let Err(error) = self.0.reload().await {
                tracing::warn!(%error, "reloading signing keys failed; keeping the last ones read");
            }
            let keys = self
                .0
                .published()
                .iter()
                .filter_map(|jwk| jwk_to_jose(jwk).ok())
                .collect();
            Ok(JwkSet { keys })
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use sqlx::migrate::Migrator;
    use tokenmesh_server::db::{connect, sqlite_url};

    use tokenmesh_server::{KeyEncryptionKey, SigningKey};

    use super::*;
    use crate::AuthService;

    const FIRST_MIGRATION: &str = "0001_users_and_refresh_tokens.sql";

    /// A database as the version before sealing left it: the first migration
    /// only, and `pem` stored in plaintext as its signing key.
    async fn database_of_the_earlier_version(dir: &Path, url: &str, kid: &str, pem: &str) {
        let migrations = dir.join("migrations");
        std::fs::create_dir(&migrations).expect("migrations dir");
        std::fs::write(
            migrations.join(FIRST_MIGRATION),
            include_str!("../migrations/0001_users_and_refresh_tokens.sql"),
        )
        .expect("first migration");
        let pool = connect(url, crate::store::SCHEMA).await.expect("connects");
        Migrator::new(migrations.as_path())
            .await
            .expect("migrator")
            .run(&pool)
            .await
            .expect("first migration runs");
        sqlx::query(
            "INSERT INTO signing_keys (kid, algorithm, private_key_pem, created_at) \
             VALUES ($1, 'EdDSA', $2, 1)",
        )
        .bind(kid)
        .bind(pem)
        .execute(&pool)
        .await
        .expect("plaintext key stored");
        pool.close().await;
    }

    fn files_holding(dir: &Path, needles: &[&str]) -> Vec<String> {
        let mut found = Vec::new();
        for suffix in ["", "-wal", "-shm"] {
            let path = dir.join(format!("auth.db{suffix}"));
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            for needle in needles {
                if bytes
                    .windows(needle.len())
                    .any(|window| window == needle.as_bytes())
                {
                    found.push(format!("auth.db{suffix}"));
                }
            }
        }
        found
    }

    #[tokio::test]
    async fn keys_an_earlier_version_stored_in_plaintext_are_sealed_leaving_no_trace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = sqlite_url(&dir.path().join("auth.db"));
        let (key, pem) = SigningKey::generate().expect("key");
        // Each line of the PEM's base64 body (a line break may split the rest).
        let lines: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        database_of_the_earlier_version(dir.path(), &url, key.kid(), &pem).await;
        assert_eq!(
            files_holding(dir.path(), &lines),
            ["auth.db", "auth.db"],
            "the earlier version's file holds the key"
        );

        let kek = |byte| KeyEncryptionKey::from_bytes(&[byte; 32], Path::new("kek")).expect("kek");
        let open = |kek| async {
            let store = Store::open(&url).await.expect("store opens and migrates");
            let keys = SigningKeys {
                kek,
                import: Vec::new(),
            };
            AuthService::open(store, keys, AuthConfig::new("issuer")).await
        };
        let auth = open(kek(1)).await.expect("opens");
        assert_eq!(auth.signing_key().kid(), key.kid(), "the same key signs");
        assert_eq!(files_holding(dir.path(), &lines), Vec::<String>::new());
        drop(auth);

        let again = open(kek(1)).await.expect("reopens with its KEK");
        assert_eq!(again.signing_key().kid(), key.kid());
        drop(again);
        let error = open(kek(2)).await.expect_err("another KEK");
        assert_eq!(
            error.to_string(),
            format!(
                "signing key {}: cannot be decrypted with the key-encryption key kek: not \
                 the key that encrypted it, or the stored key was altered",
                key.kid()
            )
        );
    }
}
