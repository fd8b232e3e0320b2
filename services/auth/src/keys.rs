//! Auth's signing keys, stored in the database so every replica signs with the
//! same key: the newest unretired key signs; a retired key stays published until
//! the last token it signed has expired, and never signs again. Private keys are
//! sealed under the key-encryption key before they reach the store. Rotation is
//! a row, picked up by every replica within a reload interval.

use std::{collections::HashMap, sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use futures::{FutureExt, future::BoxFuture};
use jsonwebtoken::jwk::JwkSet;
use tokenmesh_interceptor::{KeySource, KeySourceError, SharedClock};
use tokenmesh_proto::auth::v1::{Jwk, RotateSigningKeyResponse};
use tokenmesh_server::{
    KeyEncryptionKey, SigningAlgorithm, SigningKey, SigningKeyError, jwk_to_jose,
};

use crate::{
    AuthConfig, AuthServiceError,
    config::secs,
    store::{Added, NewSigningKey, Store, StoredKey},
};

/// Where Auth's signing keys come from when it opens.
#[derive(Debug)]
pub struct SigningKeys {
    /// Seals private keys before they are stored, and opens them.
    pub kek: KeyEncryptionKey,
    /// Keys to import, in order (`--auth-signing-key`): each is stored and made
    /// the signing key the first time its id is seen, and left alone after
    /// that — even once rotated out or expired.
    pub import: Vec<SigningKey>,
}

/// The keys Auth signs with and publishes.
#[derive(Debug)]
pub struct KeyRing {
    vault: Vault,
    algorithm: SigningAlgorithm,
    state: ArcSwap<RingState>,
}

#[derive(Debug)]
struct RingState {
    signer: Arc<SigningKey>,
    published: Vec<Arc<SigningKey>>,
}

/// The store's keys, sealed on the way in and opened on the way out.
#[derive(Debug)]
struct Vault {
    store: Store,
    kek: KeyEncryptionKey,
    /// How long a retired key stays published: the access-token lifetime plus
    /// the verifiers' maximum leeway.
    publish_retired_for: Duration,
    clock: SharedClock,
}

impl KeyRing {
    /// Seals keys an earlier version stored in plaintext, imports `keys.import`
    /// (each once), generates a first key if none signs, and loads the keys
    /// that sign or are published. New keys use `config.signing_algorithm`; a
    /// retired key stays published for the access-token lifetime plus
    /// `config.retired_key_grace`.
    pub async fn open(
        store: Store,
        keys: SigningKeys,
        config: &AuthConfig,
    ) -> Result<Arc<Self>, AuthServiceError> {
        let vault = Vault {
            store,
            kek: keys.kek,
            publish_retired_for: config.access_token_ttl + config.retired_key_grace,
            clock: config.clock.clone(),
        };
        vault.seal_plaintext_keys().await?;
        for key in &keys.import {
            match vault.add(key).await?.0 {
                Added::Activated { retired } => {
                    tracing::info!(kid = key.kid(), ?retired, "imported signing key")
                }
                Added::AlreadyStored => {
                    tracing::info!(
                        kid = key.kid(),
                        "signing key imported before: left as stored"
                    )
                }
            }
        }
        if !vault.store.has_signing_key().await? {
            let (key, _) = SigningKey::generate_with(config.signing_algorithm)?;
            vault.add(&key).await?;
            tracing::info!(kid = key.kid(), "generated the first signing key");
        }
        let state = vault.read(None).await?;
        Ok(Arc::new(Self {
            vault,
            algorithm: config.signing_algorithm,
            state: ArcSwap::from_pointee(state),
        }))
    }

    /// Re-reads the stored keys (another replica or `tokenmesh keys rotate` may
    /// have rotated).
    pub async fn reload(&self) -> Result<(), AuthServiceError> {
        let current = self.state.load();
        let state = self.vault.read(Some(&current)).await?;
        self.state.store(Arc::new(state));
        Ok(())
    }

    /// The key that signs now.
    pub fn signer(&self) -> Arc<SigningKey> {
        self.state.load().signer.clone()
    }

    /// The public keys verifiers must trust now.
    pub fn published(&self) -> Vec<Jwk> {
        self.state
            .load()
            .published
            .iter()
            .map(|key| key.public_jwk().clone())
            .collect()
    }

    /// Signs with a fresh key from now on; the old one stays published until every
    /// token it signed has expired.
    pub async fn rotate(&self) -> Result<RotateSigningKeyResponse, AuthServiceError> {
        let (key, _) = SigningKey::generate_with(self.algorithm)?;
        let (added, expires) = self.vault.add(&key).await?;
        let retired = match added {
            Added::Activated { retired } => retired,
            // A fresh key's id is new: nothing to retire if it was not.
            Added::AlreadyStored => None,
        };
        self.reload().await?;
        tracing::info!(kid = key.kid(), retired = ?retired, "signing key rotated");
        Ok(RotateSigningKeyResponse {
            kid: key.kid().to_owned(),
            retired_kid: retired.unwrap_or_default(),
            retired_kid_expires_at: expires,
        })
    }
}

impl Vault {
    /// Seals, in place, the keys stored in plaintext before keys were sealed,
    /// and purges the old pages of an SQLite file.
    async fn seal_plaintext_keys(&self) -> Result<(), AuthServiceError> {
        let plaintext = self.store.plaintext_keys().await?;
        if plaintext.is_empty() {
            return Ok(());
        }
        for stored in &plaintext {
            let key = SigningKey::from_pem(&stored.plaintext_pem)?;
            check_kid(&stored.kid, &key)?;
            let sealed = self
                .kek
                .seal(&stored.kid, stored.plaintext_pem.as_bytes())?;
            self.store.seal_plaintext_key(&stored.kid, &sealed).await?;
        }
        self.store.purge_old_pages().await?;
        tracing::warn!(
            count = plaintext.len(),
            "encrypted signing keys an earlier version stored in plaintext; backups taken \
             before still hold them: rotate the signing key (`tokenmesh keys rotate`)"
        );
        Ok(())
    }

    /// Stores `key`, sealed, and makes it the signing key unless its id was
    /// stored before. Returns what the store did and when a key it retired
    /// stops being published.
    async fn add(&self, key: &SigningKey) -> Result<(Added, i64), AuthServiceError> {
        let now = self.clock.now_unix();
        let expires = now + secs(self.publish_retired_for);
        let sealed = self.kek.seal(key.kid(), key.pem().as_bytes())?;
        let stored = NewSigningKey {
            kid: key.kid(),
            algorithm: key.algorithm().as_str(),
            sealed_private_key: &sealed,
        };
        let added = self.store.add_signing_key(stored, now, expires).await?;
        Ok((added, expires))
    }

    /// The keys that sign or are published now; keys `current` holds are not
    /// decrypted again.
    async fn read(&self, current: Option<&RingState>) -> Result<RingState, AuthServiceError> {
        let live = self.store.live_keys(self.clock.now_unix()).await?;
        let known: HashMap<&str, &Arc<SigningKey>> = current
            .into_iter()
            .flat_map(|state| state.published.iter().chain(std::iter::once(&state.signer)))
            .map(|key| (key.kid(), key))
            .collect();
        let mut published = Vec::with_capacity(live.len());
        let mut signer = None;
        for stored in &live {
            let key = match known.get(stored.kid.as_str()) {
                Some(key) => Arc::clone(key),
                None => Arc::new(self.unseal(stored)?),
            };
            if signer.is_none() && stored.retired_at.is_none() {
                signer = Some(key.clone());
            }
            published.push(key);
        }
        let signer = signer
            .or_else(|| current.map(|state| state.signer.clone()))
            .ok_or(AuthServiceError::NoSigningKey)?;
        Ok(RingState { signer, published })
    }

    /// Decrypts a stored key; it must be the key its id names.
    fn unseal(&self, stored: &StoredKey) -> Result<SigningKey, AuthServiceError> {
        let pem = self.kek.open(&stored.kid, &stored.sealed_private_key)?;
        let pem = String::from_utf8(pem).map_err(|_| {
            SigningKeyError::Invalid(format!("the key stored as {} is not PEM", stored.kid))
        })?;
        let key = SigningKey::from_pem(&pem)?;
        check_kid(&stored.kid, &key)?;
        Ok(key)
    }
}

/// Refuses a stored key whose thumbprint is not the id it is stored under.
fn check_kid(kid: &str, key: &SigningKey) -> Result<(), SigningKeyError> {
    if key.kid() == kid {
        return Ok(());
    }
    Err(SigningKeyError::Invalid(format!(
        "the key stored as {kid} has thumbprint {}",
        key.kid()
    )))
}

/// Auth's own published keys as a key source, so Auth verifies its tokens with
/// the same machinery as every other service, rotation included.
#[derive(Debug, Clone)]
pub struct OwnKeys(pub Arc<KeyRing>);

impl KeySource for OwnKeys {
    fn fetch(&self) -> BoxFuture<'_, Result<JwkSet, KeySourceError>> {
        let keys = self
            .0
            .published()
            .iter()
            .filter_map(|jwk| jwk_to_jose(jwk).ok())
            .collect();
        async move { Ok(JwkSet { keys }) }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use sqlx::migrate::Migrator;
    use tokenmesh_server::db::{connect, sqlite_url};

    use super::*;
    use crate::{AuthService, store::Store};

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
