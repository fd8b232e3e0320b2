//! argon2id password hashes (PHC strings). Hashing is CPU-bound, so it runs on
//! the blocking pool, never on the async workers — and at most one hash per core
//! at a time: each takes 19 MiB, and an unbounded burst of logins grew the
//! blocking pool to ~60 threads and Auth to 4.2 GiB (measured by the load bench).

use std::sync::LazyLock;

use tokio::sync::Semaphore;

use argon2::{
    Argon2,
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
};

use crate::AuthServiceError;

/// Verified against when the user does not exist, so that an unknown username
/// costs the same time as a wrong password.
static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| hash_blocking("tokenmesh-timing-equaliser").unwrap_or_default());

/// One argon2id computation per core: more cannot finish sooner, only hold more
/// memory.
static HASHING: LazyLock<Semaphore> = LazyLock::new(|| {
    Semaphore::new(std::thread::available_parallelism().map_or(2, |cores| cores.get()))
});

/// Runs `work` on the blocking pool once a hashing slot is free.
async fn hashing<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, AuthServiceError> + Send + 'static,
) -> Result<T, AuthServiceError> {
    let _slot = HASHING
        .acquire()
        .await
        .map_err(|_| AuthServiceError::PasswordHash("hashing closed".into()))?;
    tokio::task::spawn_blocking(work).await?
}

fn hash_blocking(password: &str) -> Result<String, AuthServiceError> {
    let mut salt_bytes = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut salt_bytes);
    let salt = SaltString::encode_b64(&salt_bytes)
        .map_err(|e| AuthServiceError::PasswordHash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| AuthServiceError::PasswordHash(e.to_string()))
}

/// Hashes `password` with argon2id (the crate's default parameters, OWASP's
/// minimum: 19 MiB, 2 passes).
pub async fn hash(password: String) -> Result<String, AuthServiceError> {
    hashing(move || hash_blocking(&password)).await
}

/// Whether `password` matches `stored` (a PHC string); `None` checks against a
/// dummy hash and answers false, in the same time.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool, AuthServiceError> {
    hashing(move || {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| DUMMY_HASH.clone());
        let parsed = PasswordHash::new(&stored)
            .map_err(|e| AuthServiceError::PasswordHash(e.to_string()))?;
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok(known && matches)
    })
    .await
}
