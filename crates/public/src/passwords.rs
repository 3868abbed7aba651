//! Password hashing with argon2id (m = 19456 KiB, t = 2, p = 1), always off the async executor.
//!
//! Hashing runs on a fixed pool of threads, one per core, each owning one preallocated argon2
//! memory block (19 MiB) that it reuses for every hash and verification. Hashing therefore never
//! allocates its working memory on the hot path, at most one hash per core runs at a time (a
//! burst queues instead of starving the server of CPU), and the memory it holds is bounded by
//! the number of cores, not by how many threads ever hashed: before this pool each hash took a
//! fresh 19 MiB on whichever blocking thread ran it, and the allocator kept every such arena.

use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use rand::RngCore;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::oneshot;

use crate::names::Password;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// The hashing pool is gone (a hashing thread panicked or could not start).
    #[error("the password hashing pool is unavailable")]
    PoolGone,
}

/// The parameters of every new hash.
fn params() -> Params {
    // The parameters are constants; `Params::new` only fails for out-of-range values.
    #[allow(clippy::expect_used)]
    Params::new(19_456, 2, 1, None).expect("valid argon2 parameters")
}

const SALT_LEN: usize = 16;
const OUTPUT_LEN: usize = 32;

/// One unit of work for a hashing thread: it gets the thread's memory blocks.
type Job = Box<dyn FnOnce(&mut [Block]) + Send>;

/// The hashing threads and the queue that feeds them.
struct Pool {
    jobs: Mutex<Sender<Job>>,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let threads = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        for i in 0..threads {
            let queue = Arc::clone(&queue);
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || hashing_thread(&queue));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a password hashing thread");
            }
        }
        Pool {
            jobs: Mutex::new(jobs),
        }
    })
}

/// Runs jobs until the queue closes. The memory is allocated at the first job (an idle server
/// holds none) and kept for every later one.
fn hashing_thread(queue: &Mutex<Receiver<Job>>) {
    let mut blocks: Vec<Block> = Vec::new();
    loop {
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        if blocks.is_empty() {
            blocks = vec![Block::default(); params().block_count()];
        }
        job(&mut blocks);
    }
}

/// Runs `work` on a hashing thread with its memory, and waits for the answer.
async fn run<T: Send + 'static>(
    work: impl FnOnce(&mut [Block]) -> T + Send + 'static,
) -> Result<T, PasswordError> {
    let (tx, rx) = oneshot::channel();
    let job: Job = Box::new(move |blocks| {
        let _ = tx.send(work(blocks));
    });
    pool()
        .jobs
        .lock()
        .map_err(|_| PasswordError::PoolGone)?
        .send(job)
        .map_err(|_| PasswordError::PoolGone)?;
    rx.await.map_err(|_| PasswordError::PoolGone)
}

/// Hashes a new password into a PHC string.
pub async fn hash(password: &Password) -> Result<String, PasswordError> {
    let password = password.expose().to_owned();
    run(move |blocks| hash_with(blocks, &password)).await?
}

fn hash_with(blocks: &mut [Block], password: &str) -> Result<String, PasswordError> {
    let fail = |e: &dyn std::fmt::Display| PasswordError::Hash(e.to_string());
    let params = params();
    let mut salt = [0u8; SALT_LEN];
    rand::rng().fill_bytes(&mut salt);
    let mut out = [0u8; OUTPUT_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, blocks)
        .map_err(|e| fail(&e))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| fail(&e))?,
        salt: Some(Salt::new(&salt).map_err(|e| fail(&e))?),
        hash: Some(Output::new(&out).map_err(|e| fail(&e))?),
    };
    Ok(phc.to_string())
}

/// Checks `password` against a parsed PHC string, with the thread's memory when the stored
/// parameters fit in it (every hash this code makes), else with memory of its own.
fn verify_with(blocks: &mut [Block], password: &str, stored: &PasswordHash) -> bool {
    let (Some(salt), Some(expected)) = (&stored.salt, &stored.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        Algorithm::try_from(stored.algorithm.as_str()),
        Params::try_from(stored),
    ) else {
        return false;
    };
    let version = match stored.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let needed = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    let mut out = vec![0u8; expected.len()];
    let computed = match blocks.get_mut(..needed) {
        Some(memory) => argon2.hash_password_into_with_memory(
            password.as_bytes(),
            salt.as_ref(),
            &mut out,
            memory,
        ),
        None => argon2.hash_password_into(password.as_bytes(), salt.as_ref(), &mut out),
    };
    // `Output` compares in constant time.
    computed.is_ok() && Output::new(&out).is_ok_and(|o| o == *expected)
}

/// Checks a password against a stored PHC string. `None` as the stored hash (an unknown account)
/// still spends one full verification against a fixed hash, so both failures take the same time.
pub async fn verify(password: &str, stored: Option<String>) -> Result<bool, PasswordError> {
    let password = password.to_owned();
    let dummy = match &stored {
        Some(_) => None,
        None => Some(dummy_hash().await?),
    };
    run(move |blocks| {
        let known = stored.is_some();
        let stored = stored.or(dummy).unwrap_or_default();
        let Ok(parsed) = PasswordHash::new(&stored) else {
            return false;
        };
        verify_with(blocks, &password, &parsed) && known
    })
    .await
}

/// A hash of a fixed password, made once, for timing-equal answers about unknown accounts.
async fn dummy_hash() -> Result<String, PasswordError> {
    static DUMMY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    DUMMY
        .get_or_try_init(|| async {
            run(|blocks| hash_with(blocks, "tenantry-timing-equaliser")).await?
        })
        .await
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let pw = Password::parse("correct horse battery").expect("valid");
        let h = hash(&pw).await.expect("hash");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify("correct horse battery", Some(h.clone()))
            .await
            .expect("verify"));
        assert!(!verify("wrong horse battery", Some(h))
            .await
            .expect("verify"));
        assert!(!verify("tenantry-timing-equaliser", None)
            .await
            .expect("verify"));
        assert!(!verify("x", Some("$not-a-phc-string".into()))
            .await
            .expect("verify"));
    }

    /// Hashes made by the crate's own allocating API (and so by earlier versions of this code)
    /// still verify, including ones with other parameters.
    #[tokio::test]
    async fn hashes_made_elsewhere_verify() {
        use argon2::PasswordHasher;
        for params in [params(), Params::new(8_192, 1, 1, None).expect("params")] {
            let made = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password(b"an older password")
                .expect("hash")
                .to_string();
            assert!(verify("an older password", Some(made.clone()))
                .await
                .expect("verify"));
            assert!(!verify("another password", Some(made))
                .await
                .expect("verify"));
        }
    }
}
