//! A service's signing keys, stored in its database so that every replica signs
//! with the same key: the newest unretired key signs; a retired key stays
//! published until the last token it signed has expired, and never signs again.
//! Private keys are sealed under the key-encryption key before they reach the
//! store. Rotation is a row, picked up by every replica at its next reload.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use arc_swap::ArcSwap;
use tokenmesh_interceptor::SharedClock;
use tokenmesh_proto::auth::v1::Jwk;

use crate::{
    KekError, KeyEncryptionKey, SigningAlgorithm, SigningKey, SigningKeyError,
    db::StoreError,
    key_table::{Added, KeyTable, NewSigningKey, StoredKey},
};

/// Why the key ring could not open, reload or rotate.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    /// The key table failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The key-encryption key could not seal or open a key.
    #[error(transparent)]
    KeyEncryption(#[from] KekError),
    /// A key could not be generated or parsed.
    #[error(transparent)]
    Signing(#[from] SigningKeyError),
    /// No key signs (the store holds none that is not retired).
    #[error("no signing key")]
    NoSigningKey,
}

/// Where a ring's keys come from when it opens.
#[derive(Debug)]
pub struct SigningKeys {
    /// Seals private keys before they are stored, and opens them.
    pub kek: KeyEncryptionKey,
    /// Keys to import, in order: each is stored and made the signing key the
    /// first time its id is seen, and left alone after that — even once
    /// rotated out or expired.
    pub import: Vec<SigningKey>,
}

/// How a ring makes and retires keys.
#[derive(Debug, Clone)]
pub struct RingConfig {
    /// The algorithm of keys it generates.
    pub algorithm: SigningAlgorithm,
    /// How long a retired key stays published: the longest lifetime of what
    /// it signed plus the verifiers' maximum leeway.
    pub publish_retired_for: Duration,
    /// Where it reads the time.
    pub clock: SharedClock,
}

/// What [`KeyRing::rotate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    /// The key that signs from now on.
    pub kid: String,
    /// The key it retired, if any signed.
    pub retired_kid: Option<String>,
    /// When the retired key stops being published (Unix seconds).
    pub retired_kid_expires_at: i64,
}

/// The keys a service signs with and publishes.
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

/// The table's keys, sealed on the way in and opened on the way out.
#[derive(Debug)]
struct Vault {
    table: KeyTable,
    kek: KeyEncryptionKey,
    publish_retired_for: Duration,
    clock: SharedClock,
}

impl KeyRing {
    /// Seals keys an earlier version stored in plaintext, imports `keys.import`
    /// (each once), generates a first key if none signs — exactly one replica
    /// does: the others sign with its key — and loads the keys that sign or are
    /// published. A stored key `keys.kek` cannot open is an error: the replica
    /// was given another key-encryption key than the one that sealed it.
    pub async fn open(
        table: KeyTable,
        keys: SigningKeys,
        config: RingConfig,
    ) -> Result<Arc<Self>, KeyRingError> {
        let vault = Vault {
            table,
            kek: keys.kek,
            publish_retired_for: config.publish_retired_for,
            clock: config.clock,
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
        if !vault.table.has_signing_key().await? {
            let (key, _) = SigningKey::generate_with(config.algorithm)?;
            if vault.add_first(&key).await? {
                tracing::info!(kid = key.kid(), "generated the first signing key");
            } else {
                tracing::info!("another replica generated the first signing key: signing with it");
            }
        }
        let state = vault.read(None).await?;
        Ok(Arc::new(Self {
            vault,
            algorithm: config.algorithm,
            state: ArcSwap::from_pointee(state),
        }))
    }

    /// Re-reads the stored keys (another replica or `tokenmesh keys rotate` may
    /// have rotated).
    pub async fn reload(&self) -> Result<(), KeyRingError> {
        let current = self.state.load();
        let state = self.vault.read(Some(&current)).await?;
        self.state.store(Arc::new(state));
        Ok(())
    }

    /// Reloads at once when `rotated` ticks (another replica's rotation, told
    /// through the database; a closed receiver is never woken), else every
    /// `interval`, until the ring is dropped.
    pub fn spawn_reloader(
        self: &Arc<Self>,
        interval: Duration,
        mut rotated: tokio::sync::watch::Receiver<u64>,
    ) -> tokio::task::JoinHandle<()> {
        let ring = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    Ok(()) = rotated.changed() => {}
                }
                let Some(ring) = ring.upgrade() else {
                    return;
                };
                if let Err(error) = ring.reload().await {
                    tracing::warn!(%error, "reloading signing keys failed");
                }
            }
        })
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

    /// Signs with a fresh key from now on; the old one stays published until
    /// everything it signed has expired.
    pub async fn rotate(&self) -> Result<Rotated, KeyRingError> {
        let (key, _) = SigningKey::generate_with(self.algorithm)?;
        let (added, expires) = self.vault.add(&key).await?;
        let retired = match added {
            Added::Activated { retired } => retired,
            // A fresh key's id is new: nothing to retire if it was not.
            Added::AlreadyStored => None,
        };
        self.reload().await?;
        tracing::info!(kid = key.kid(), retired = ?retired, "signing key rotated");
        Ok(Rotated {
            kid: key.kid().to_owned(),
            retired_kid: retired,
            retired_kid_expires_at: expires,
        })
    }
}

impl Vault {
    /// Seals, in place, the keys stored in plaintext before keys were sealed,
    /// and purges the old pages of an SQLite file.
    async fn seal_plaintext_keys(&self) -> Result<(), KeyRingError> {
        let plaintext = self.table.plaintext_keys().await?;
        if plaintext.is_empty() {
            return Ok(());
        }
        for stored in &plaintext {
            let key = SigningKey::from_pem(&stored.plaintext_pem)?;
            check_kid(&stored.kid, &key)?;
            let sealed = self
                .kek
                .seal(&stored.kid, stored.plaintext_pem.as_bytes())?;
            self.table.seal_plaintext_key(&stored.kid, &sealed).await?;
        }
        self.table.purge_old_pages().await?;
        tracing::warn!(
            count = plaintext.len(),
            "encrypted signing keys an earlier version stored in plaintext; backups taken \
             before still hold them: rotate the signing key (`tokenmesh keys rotate`)"
        );
        Ok(())
    }

    /// `key` sealed, as the table stores it.
    fn seal(&self, key: &SigningKey) -> Result<String, KeyRingError> {
        Ok(self.kek.seal(key.kid(), key.pem().as_bytes())?)
    }

    /// Stores `key`, sealed, and makes it the signing key unless its id was
    /// stored before. Returns what the table did and when a key it retired
    /// stops being published.
    async fn add(&self, key: &SigningKey) -> Result<(Added, i64), KeyRingError> {
        let now = self.clock.now_unix();
        let expires = now.saturating_add(secs(self.publish_retired_for));
        let sealed = self.seal(key)?;
        let stored = new_key(key, &sealed);
        let added = self.table.add_signing_key(stored, now, expires).await?;
        Ok((added, expires))
    }

    /// Stores `key`, sealed, as the first signing key; `false` if a key signs
    /// already (another replica's, stored a moment ago).
    async fn add_first(&self, key: &SigningKey) -> Result<bool, KeyRingError> {
        let sealed = self.seal(key)?;
        let stored = new_key(key, &sealed);
        Ok(self
            .table
            .add_first_signing_key(stored, self.clock.now_unix())
            .await?)
    }

    /// The keys that sign or are published now; keys `current` holds are not
    /// decrypted again.
    async fn read(&self, current: Option<&RingState>) -> Result<RingState, KeyRingError> {
        let live = self.table.live_keys(self.clock.now_unix()).await?;
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
            .ok_or(KeyRingError::NoSigningKey)?;
        Ok(RingState { signer, published })
    }

    /// Decrypts a stored key; it must be the key its id names.
    fn unseal(&self, stored: &StoredKey) -> Result<SigningKey, KeyRingError> {
        let pem = self.kek.open(&stored.kid, &stored.sealed_private_key)?;
        let pem = String::from_utf8(pem).map_err(|_| {
            SigningKeyError::Invalid(format!("the key stored as {} is not PEM", stored.kid))
        })?;
        let key = SigningKey::from_pem(&pem)?;
        check_kid(&stored.kid, &key)?;
        Ok(key)
    }
}

fn new_key<'a>(key: &'a SigningKey, sealed: &'a str) -> NewSigningKey<'a> {
    NewSigningKey {
        kid: key.kid(),
        algorithm: key.algorithm().as_str(),
        sealed_private_key: sealed,
    }
}

fn secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
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

/// The key-encryption key's file in the data dir, when none is given: one
/// file, so that services sharing a data dir (`tokenmesh up`) share it.
pub const KEY_ENCRYPTION_KEY_FILE: &str = "key-encryption-key";

/// The key-encryption key `args` give (a file, or the key itself in
/// `TOKENMESH_KEY_ENCRYPTION_KEY`), or the data dir's [`KEY_ENCRYPTION_KEY_FILE`] —
/// generated there only while `table` holds no sealed key: a database copied
/// without its KEK, or a replica started in a data dir of its own, is refused
/// rather than handed a key that cannot open what is stored.
pub async fn key_encryption_key(
    args: &crate::args::KekArgs,
    data_dir: &Path,
    table: &KeyTable,
) -> Result<KeyEncryptionKey, KeyRingError> {
    if let Some(text) = &args.key_encryption_key_base64 {
        let source = Path::new("$TOKENMESH_KEY_ENCRYPTION_KEY");
        return Ok(KeyEncryptionKey::from_base64(&text.0, source)?);
    }
    if let Some(path) = &args.key_encryption_key {
        return Ok(KeyEncryptionKey::load(path)?);
    }
    let path = data_dir.join(KEY_ENCRYPTION_KEY_FILE);
    match KeyEncryptionKey::load(&path) {
        Err(KekError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            if table.has_sealed_keys().await? {
                return Err(KekError::Missing { path }.into());
            }
            Ok(KeyEncryptionKey::create(&path)?)
        }
        loaded => Ok(loaded?),
    }
}

/// A key file an earlier version kept in plaintext in the data dir: its key is
/// imported into the database once ([`SigningKeys::import`]), then the file is
/// removed.
#[derive(Debug)]
pub struct LegacyKeyFile {
    path: PathBuf,
    key: Option<SigningKey>,
}

impl LegacyKeyFile {
    /// Reads `file` in `data_dir` (0600), if it is there.
    pub fn read(data_dir: &Path, file: &str) -> Result<Self, SigningKeyError> {
        let path = data_dir.join(file);
        let key = match SigningKey::load(&path) {
            Ok(key) => Some(key),
            Err(SigningKeyError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                None
            }
            Err(error) => return Err(error),
        };
        Ok(Self { path, key })
    }

    /// Its key, to import (none when there is no file).
    pub fn take_key(&mut self) -> Option<SigningKey> {
        self.key.take()
    }

    /// Removes the file, once its key (`what`: "signing key", "grant key") is in
    /// the database, encrypted.
    pub fn remove(self, what: &str) -> Result<(), crate::StartError> {
        if !self.path.exists() {
            return Ok(());
        }
        std::fs::remove_file(&self.path).map_err(crate::StartError::io(format!(
            "removing {} (imported into the database, encrypted)",
            self.path.display()
        )))?;
        tracing::warn!(
            path = %self.path.display(),
            "imported the {what} file of an earlier version into the database, encrypted, and removed the file"
        );
        Ok(())
    }
}
