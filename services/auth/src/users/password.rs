//! argon2id password hashes (PHC strings). Hashing is CPU-bound, so it runs on a
//! fixed pool of one thread per core, never on the async workers; each thread
//! keeps its 19 MiB of argon2 blocks across hashes, so a burst of logins costs
//! no more memory than one hash per core (Auth's RSS stays flat under load).

use std::{
    panic::AssertUnwindSafe,
    sync::{LazyLock, Mutex, OnceLock, mpsc},
};

use argon2::{
    Algorithm, Argon2, Block, Params, Version,
    password_hash::{self, Output, ParamsString, PasswordHash, SaltString},
};
use tokio::sync::oneshot;

use crate::AuthServiceError;

/// A hash or a verification, run on a pool thread with that thread's blocks.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// The hashing threads' queue: one thread per core, since more cannot finish
/// sooner, only hold more memory (an unbounded burst of logins on the blocking
/// pool once grew Auth to 4.2 GiB).
static POOL: LazyLock<mpsc::Sender<Job>> = LazyLock::new(|| {
    let (sender, receiver) = mpsc::channel::<Job>();
    let receiver = std::sync::Arc::new(Mutex::new(receiver));
    let threads = std::thread::available_parallelism().map_or(2, |cores| cores.get());
    for index in 0..threads {
        let receiver = receiver.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("argon2-{index}"))
            .spawn(move || {
                let mut memory = Vec::new();
                loop {
                    // The guard is dropped before the job runs: the other
                    // threads keep taking jobs meanwhile.
                    let job = receiver.lock().map(|queue| queue.recv());
                    let Ok(Ok(job)) = job else { return };
                    // A panicking job answers nobody (its caller sees the pool
                    // error) but must not take the thread with it.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut memory)));
                }
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "could not start a password hashing thread");
        }
    }
    sender
});

/// Verified against when the user does not exist, so that an unknown username
/// costs the same time as a wrong password.
static DUMMY_HASH: OnceLock<String> = OnceLock::new();

/// Runs `work` on a hashing thread, with that thread's argon2 blocks.
async fn hashing<T: Send + 'static>(
    work: impl FnOnce(&mut Vec<Block>) -> Result<T, AuthServiceError> + Send + 'static,
) -> Result<T, AuthServiceError> {
    let stopped = || AuthServiceError::PasswordHash("hashing pool stopped".into());
    let (answer, answered) = oneshot::channel();
    POOL.send(Box::new(move |memory: &mut Vec<Block>| {
        let _ = answer.send(work(memory));
    }))
    .map_err(|_| stopped())?;
    answered.await.map_err(|_| stopped())?
}

fn phc_error(error: impl std::fmt::Display) -> AuthServiceError {
    AuthServiceError::PasswordHash(error.to_string())
}

/// `memory`, grown to the blocks `params` needs (kept for the next hash).
fn blocks<'m>(memory: &'m mut Vec<Block>, params: &Params) -> &'m mut [Block] {
    if memory.len() < params.block_count() {
        memory.resize(params.block_count(), Block::default());
    }
    &mut memory[..params.block_count()]
}

fn hash_with(password: &[u8], memory: &mut Vec<Block>) -> Result<String, AuthServiceError> {
    let mut salt_bytes = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut salt_bytes);
    let salt = SaltString::encode_b64(&salt_bytes).map_err(phc_error)?;
    let argon2 = Argon2::default();
    let params = argon2.params();
    let hash = Output::init_with(Params::DEFAULT_OUTPUT_LEN, |out| {
        argon2
            .hash_password_into_with_memory(password, &salt_bytes, out, blocks(memory, params))
            .map_err(password_hash::Error::from)
    })
    .map_err(phc_error)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(phc_error)?,
        salt: Some(salt.as_salt()),
        hash: Some(hash),
    };
    Ok(phc.to_string())
}

/// Whether `password` hashes to `stored` under `stored`'s own algorithm,
/// version and parameters (what `PasswordVerifier` does, on `memory`).
fn verify_with(
    password: &[u8],
    stored: &str,
    memory: &mut Vec<Block>,
) -> Result<bool, AuthServiceError> {
    let parsed = PasswordHash::new(stored).map_err(phc_error)?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Ok(false);
    };
    let params = Params::try_from(&parsed).map_err(phc_error)?;
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(phc_error)?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(phc_error)?
        .unwrap_or_default();
    let mut salt_buffer = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_buffer).map_err(phc_error)?;
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let computed = Output::init_with(expected.len(), |out| {
        argon2
            .hash_password_into_with_memory(password, salt, out, blocks(memory, &params))
            .map_err(password_hash::Error::from)
    })
    .map_err(phc_error)?;
    // `Output`'s equality is constant-time.
    Ok(computed == expected)
}

/// Hashes `password` with argon2id (the crate's default parameters, OWASP's
/// minimum: 19 MiB, 2 passes).
pub async fn hash(password: String) -> Result<String, AuthServiceError> {
    hashing(move |memory| hash_with(password.as_bytes(), memory)).await
}

/// Whether `password` matches `stored` (a PHC string); `None` checks against a
/// dummy hash and answers false, in the same time.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool, AuthServiceError> {
    hashing(move |memory| {
        let known = stored.is_some();
        let stored = match stored {
            Some(stored) => stored,
            None => DUMMY_HASH
                .get_or_init(|| {
                    hash_with(b"tokenmesh-timing-equaliser", memory).unwrap_or_default()
                })
                .clone(),
        };
        let matches = verify_with(password.as_bytes(), &stored, memory)?;
        Ok(known && matches)
    })
    .await
}

#[cfg(test)]
mod tests {
    use argon2::PasswordVerifier;

    use super::*;

    #[tokio::test]
    async fn hashes_verify_both_ways_with_the_argon2_crate() {
        let ours = hash("correct horse".into()).await.expect("hash");
        let parsed = PasswordHash::new(&ours).expect("a PHC string");
        assert_eq!(parsed.algorithm, Algorithm::Argon2id.ident());
        Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .expect("the crate verifies our hash");
        let theirs = argon2::PasswordHasher::hash_password(
            &Argon2::new(
                Algorithm::Argon2id,
                Version::V0x13,
                Params::new(8, 1, 1, None).expect("params"),
            ),
            b"battery staple",
            &SaltString::encode_b64(b"sixteen byte sal").expect("salt"),
        )
        .expect("hash")
        .to_string();
        assert!(
            verify("battery staple".into(), Some(theirs.clone()))
                .await
                .expect("verify")
        );
        assert!(
            !verify("battery stapler".into(), Some(theirs))
                .await
                .expect("verify")
        );
        assert!(
            verify("correct horse".into(), Some(ours.clone()))
                .await
                .expect("verify")
        );
        assert!(!verify("correct horse".into(), None).await.expect("verify"));
    }
}
