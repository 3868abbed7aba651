//! Password hashing with argon2id (m = 19456 KiB, t = 2, p = 1), always off the async executor.

use argon2::{Algorithm, Argon2, Params, Version};
use argon2::{PasswordHash, PasswordHasher, PasswordVerifier};
use std::sync::OnceLock;
use tokio::sync::Semaphore;

use crate::names::Password;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("password hashing task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

fn argon2() -> Argon2<'static> {
    // The parameters are constants; `Params::new` only fails for out-of-range values.
    #[allow(clippy::expect_used)]
    let params = Params::new(19_456, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// At most one argon2 computation per core at a time. Each takes 19 MiB and tens of
/// milliseconds of CPU; without a bound, a burst of logins would queue hundreds of them on the
/// blocking pool, starve everything else of CPU and grow memory with every thread involved.
fn permits() -> &'static Semaphore {
    static PERMITS: OnceLock<Semaphore> = OnceLock::new();
    PERMITS.get_or_init(|| {
        Semaphore::new(std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get))
    })
}

async fn run_limited<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, PasswordError> {
    // The semaphore is never closed, so acquiring cannot fail; hold the permit while the blocking
    // task runs.
    let _permit = permits().acquire().await.ok();
    Ok(tokio::task::spawn_blocking(work).await?)
}

/// Hashes a new password into a PHC string.
pub async fn hash(password: &Password) -> Result<String, PasswordError> {
    let password = password.expose().to_owned();
    run_limited(move || hash_blocking(&password)).await?
}

fn hash_blocking(password: &str) -> Result<String, PasswordError> {
    PasswordHasher::<PasswordHash>::hash_password(&argon2(), password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Checks a password against a stored PHC string. `None` as the stored hash (an unknown account)
/// still spends one full verification against a fixed hash, so both failures take the same time.
pub async fn verify(password: &str, stored: Option<String>) -> Result<bool, PasswordError> {
    let password = password.to_owned();
    run_limited(move || {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| dummy_hash().to_owned());
        let Ok(parsed) = PasswordHash::new(&stored) else {
            return Ok(false);
        };
        let ok = argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok(ok && known)
    })
    .await?
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        hash_blocking("tenantry-timing-equaliser").unwrap_or_else(|_| String::from("$invalid"))
    })
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
    }
}
