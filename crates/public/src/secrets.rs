//! Bearer secrets handed to one party once and stored only as a hash: refresh tokens, invitation
//! tokens, email-verification and password-reset tokens. Each kind has its own recognisable prefix
//! (`rt_`, `inv_`, …) so a leaked secret can be identified by secret scanners and by people.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::fmt;

/// A freshly generated secret: `prefix` + 32 random bytes (256 bits) in base64url. Its `Debug`
/// never shows the value; [`Secret::expose`] is the one way to read it.
pub struct Secret(String);

impl Secret {
    pub fn generate(prefix: &str) -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// The secret that follows `from`, derived with `key` (HMAC-SHA256): 256 bits that only the
    /// holder of `key` can compute, the same each time for the same `from`. Used for refresh
    /// tokens, so a repeat of a just-spent token can be answered with the same successor.
    pub fn derive(prefix: &str, key: &[u8], from: &str) -> Self {
        use hmac::{Hmac, Mac};
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
            unreachable!("HMAC takes keys of any length")
        };
        mac.update(from.as_bytes());
        let bytes = mac.finalize().into_bytes();
        Self(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What the database keeps: [`hash`] of the secret.
    pub fn hash(&self) -> Vec<u8> {
        hash(&self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// SHA-256 of a presented secret, to look it up. A fast hash is right here: the secrets carry 256
/// random bits, so there is nothing to brute-force.
pub fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_random_prefixed_and_hashed() {
        let a = Secret::generate("rt_");
        let b = Secret::generate("rt_");
        assert_ne!(a.expose(), b.expose());
        assert!(a.expose().starts_with("rt_"));
        // 32 bytes of randomness, base64url without padding: 43 characters.
        assert_eq!(a.expose().len(), 3 + 43);
        assert_eq!(a.hash(), hash(a.expose()));
        assert_eq!(a.hash().len(), 32);
        assert_eq!(format!("{a:?}"), "Secret(***)");
    }
}
