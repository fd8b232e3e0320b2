//! Private keys encrypted at rest: AES-256-GCM (aws-lc-rs) under a
//! key-encryption key (KEK) that lives in a file of its own, never in the
//! database. A sealed key is `base64(nonce ‖ ciphertext ‖ tag)` with a fresh
//! random 96-bit nonce; the associated data binds it to its key id, so a sealed
//! key moved to another row does not open.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use aws_lc_rs::{
    aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey},
    rand::{SecureRandom, SystemRandom},
};
use base64::{Engine, engine::general_purpose::STANDARD};

use crate::private_file::{ExposedFile, PrivateFileError, read_private_file, write_private_file};

/// Length of a key-encryption key: AES-256.
const KEK_LEN: usize = 32;

/// Why a key-encryption key could not be used, or a sealed key not opened.
/// Every variant names the key-encryption key's file.
#[derive(Debug, thiserror::Error)]
pub enum KekError {
    /// Reading or creating the file failed.
    #[error("key-encryption key {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Group or others may read or write the file.
    #[error(transparent)]
    Exposed(#[from] ExposedFile),
    /// The file does not hold 32 bytes in base64.
    #[error(
        "key-encryption key {}: not 32 bytes in base64 (make one with \
         `(umask 077; openssl rand -base64 32 > FILE)`)",
        path.display()
    )]
    Malformed {
        /// The file.
        path: PathBuf,
    },
    /// The file is missing, but the store holds keys sealed under some KEK:
    /// generating a new one would only hide the mistake.
    #[error(
        "key-encryption key {} does not exist, but the database holds signing keys \
         encrypted under one: give that key (--key-encryption-key FILE)",
        path.display()
    )]
    Missing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A sealed key did not open: another KEK sealed it, or it was altered.
    #[error(
        "signing key {kid}: cannot be decrypted with the key-encryption key {}: \
         not the key that encrypted it, or the stored key was altered",
        path.display()
    )]
    Undecryptable {
        /// The sealed key's id.
        kid: String,
        /// The KEK tried.
        path: PathBuf,
    },
    /// The system random generator or the cipher failed.
    #[error("key-encryption key {}: {operation} failed", path.display())]
    Crypto {
        /// The file.
        path: PathBuf,
        /// What failed.
        operation: &'static str,
    },
}

/// The key that encrypts private keys at rest.
pub struct KeyEncryptionKey {
    key: LessSafeKey,
    path: PathBuf,
}

impl fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyEncryptionKey")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl KeyEncryptionKey {
    /// Loads the KEK in `path`: 32 bytes in base64, the file 0600.
    pub fn load(path: &Path) -> Result<Self, KekError> {
        let text = read_private_file(path).map_err(|error| match error {
            PrivateFileError::Io { path, source } => KekError::Io { path, source },
            PrivateFileError::Exposed(exposed) => KekError::Exposed(exposed),
        })?;
        let text = std::str::from_utf8(&text).map_err(|_| KekError::Malformed {
            path: path.to_owned(),
        })?;
        Self::from_base64(text, path)
    }

    /// The KEK in `text`, 32 bytes in base64, named `source` in messages (a
    /// file, or the variable it came from).
    pub fn from_base64(text: &str, source: &Path) -> Result<Self, KekError> {
        let malformed = || KekError::Malformed {
            path: source.to_owned(),
        };
        let bytes = STANDARD.decode(text.trim()).map_err(|_| malformed())?;
        if bytes.len() != KEK_LEN {
            return Err(malformed());
        }
        Self::from_bytes(&bytes, source)
    }

    /// Loads the KEK in `path`, or creates a random one there (0600) when there
    /// is none: another process creating it at the same time wins, and its key
    /// is loaded.
    pub fn load_or_create(path: &Path) -> Result<Self, KekError> {
        match Self::load(path) {
            Err(KekError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Self::create(path)
            }
            loaded => loaded,
        }
    }

    /// Creates a random KEK in `path` (0600); fails if the file exists, unless
    /// another process just created it, whose key is then loaded.
    pub fn create(path: &Path) -> Result<Self, KekError> {
        let mut bytes = [0u8; KEK_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| KekError::Crypto {
                path: path.to_owned(),
                operation: "generating a key",
            })?;
        let text = format!("{}\n", STANDARD.encode(bytes));
        match write_private_file(path, text.as_bytes()) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "generated a key-encryption key");
                Self::from_bytes(&bytes, path)
            }
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Self::load(path),
            Err(source) => Err(KekError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// A KEK from raw bytes, named `path` in messages (tests, or keys kept
    /// elsewhere than a file).
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, KekError> {
        let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| KekError::Malformed {
            path: path.to_owned(),
        })?;
        Ok(Self {
            key: LessSafeKey::new(key),
            path: path.to_owned(),
        })
    }

    /// Where this KEK came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Encrypts `plaintext`, the private key named `kid`: base64 of
    /// nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, kid: &str, plaintext: &[u8]) -> Result<String, KekError> {
        let crypto = |operation| KekError::Crypto {
            path: self.path.clone(),
            operation,
        };
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| crypto("generating a nonce"))?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + plaintext.len() + AES_256_GCM.tag_len());
        sealed.extend_from_slice(&nonce);
        let mut in_out = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated_data(kid)),
                &mut in_out,
            )
            .map_err(|_| crypto("encrypting"))?;
        sealed.extend_from_slice(&in_out);
        Ok(STANDARD.encode(sealed))
    }

    /// Decrypts what [`KeyEncryptionKey::seal`] made of the key named `kid`.
    pub fn open(&self, kid: &str, sealed: &str) -> Result<Vec<u8>, KekError> {
        let undecryptable = || KekError::Undecryptable {
            kid: kid.to_owned(),
            path: self.path.clone(),
        };
        let mut bytes = STANDARD.decode(sealed).map_err(|_| undecryptable())?;
        if bytes.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(undecryptable());
        }
        let nonce =
            Nonce::try_assume_unique_for_key(&bytes[..NONCE_LEN]).map_err(|_| undecryptable())?;
        let plaintext = self
            .key
            .open_in_place(
                nonce,
                Aad::from(associated_data(kid)),
                &mut bytes[NONCE_LEN..],
            )
            .map_err(|_| undecryptable())?;
        Ok(plaintext.to_vec())
    }
}

/// What a sealed key is bound to: its purpose, the format's version, its id.
fn associated_data(kid: &str) -> Vec<u8> {
    format!("tokenmesh signing key v1 {kid}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_keys_open_only_with_their_kek_and_their_kid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kek");
        let kek = KeyEncryptionKey::load_or_create(&path).expect("created");
        let again = KeyEncryptionKey::load_or_create(&path).expect("loaded");
        let sealed = kek.seal("kid-1", b"private key").expect("sealed");
        assert_eq!(again.open("kid-1", &sealed).expect("opens"), b"private key");
        assert_ne!(
            kek.seal("kid-1", b"private key").expect("sealed"),
            sealed,
            "a fresh nonce every time"
        );
        let other = KeyEncryptionKey::from_bytes(&[7; 32], Path::new("other")).expect("kek");
        for (kek, kid, sealed) in [
            (&other, "kid-1", sealed.as_str()),
            (&kek, "kid-2", sealed.as_str()),
            (&kek, "kid-1", "AAAA"),
            (&kek, "kid-1", "not base64!"),
        ] {
            let error = kek.open(kid, sealed).expect_err("does not open");
            assert_eq!(
                error.to_string(),
                format!(
                    "signing key {kid}: cannot be decrypted with the key-encryption key {}: \
                     not the key that encrypted it, or the stored key was altered",
                    kek.path().display()
                )
            );
        }
    }

    #[test]
    fn a_kek_file_must_hold_32_bytes_in_base64() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, contents) in [
            ("short", "AAAA\n"),
            ("text", "correct horse battery staple"),
        ] {
            let path = dir.path().join(name);
            write_private_file(&path, contents.as_bytes()).expect("written");
            let error = KeyEncryptionKey::load(&path).expect_err("malformed");
            assert_eq!(
                error.to_string(),
                format!(
                    "key-encryption key {}: not 32 bytes in base64 (make one with \
                     `(umask 077; openssl rand -base64 32 > FILE)`)",
                    path.display()
                )
            );
        }
        let path = dir.path().join("openssl");
        let text = format!("{}\n", STANDARD.encode([1u8; 32]));
        write_private_file(&path, text.as_bytes()).expect("written");
        KeyEncryptionKey::load(&path).expect("openssl rand -base64 32 output loads");
    }
}
