//! Access tokens: HS256 JWTs with sub, tenant, role, iat, nbf, exp, iss and aud. Validation pins
//! the algorithm and requires every one of those claims.

use chrono::Utc;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How long an access token lives.
pub const ACCESS_TOKEN_TTL_SECS: i64 = 15 * 60;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: Uuid,
    /// The company the token is for; it is only accepted on that company's hosts.
    pub tenant: Uuid,
    pub role: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
}

/// Signing and verification keys with their fixed validation rules.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
}

impl JwtKeys {
    pub fn new(secret: &SecretString, issuer: &str, audience: &str) -> Self {
        let bytes = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        }
    }

    /// Issues an access token; returns it with its lifetime in seconds.
    pub fn issue(
        &self,
        user: Uuid,
        tenant: Uuid,
        role: &str,
    ) -> Result<(String, i64), jsonwebtoken::errors::Error> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user,
            tenant,
            role: role.to_owned(),
            iat: now,
            nbf: now,
            exp: now + ACCESS_TOKEN_TTL_SECS,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, ACCESS_TOKEN_TTL_SECS))
    }

    /// Signs arbitrary claims; tests use it to forge tokens that must be refused.
    pub fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
    }

    pub fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        decode::<Claims>(token, &self.decoding, &self.validation).map(|d| d.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> JwtKeys {
        JwtKeys::new(
            &SecretString::from("0123456789abcdef0123456789abcdef"),
            "iss",
            "aud",
        )
    }

    #[test]
    fn round_trip_and_rejections() {
        let k = keys();
        let (user, tenant) = (Uuid::new_v4(), Uuid::new_v4());
        let (token, ttl) = k.issue(user, tenant, "admin").expect("issue");
        assert_eq!(ttl, 900);
        let claims = k.verify(&token).expect("valid");
        assert_eq!(
            (claims.sub, claims.tenant, claims.role.as_str()),
            (user, tenant, "admin")
        );

        let other = JwtKeys::new(
            &SecretString::from("another-secret-another-secret-xx"),
            "iss",
            "aud",
        );
        assert!(other.verify(&token).is_err(), "wrong key");
        let wrong_aud = JwtKeys::new(
            &SecretString::from("0123456789abcdef0123456789abcdef"),
            "iss",
            "x",
        );
        assert!(wrong_aud.verify(&token).is_err(), "wrong audience");

        let now = Utc::now().timestamp();
        let base = claims.clone();
        let expired = Claims {
            exp: now - 60,
            iat: now - 1000,
            nbf: now - 1000,
            ..base.clone()
        };
        assert!(
            k.verify(&k.sign(&expired).expect("sign")).is_err(),
            "expired"
        );
        let future = Claims {
            nbf: now + 600,
            ..base.clone()
        };
        assert!(
            k.verify(&k.sign(&future).expect("sign")).is_err(),
            "nbf in the future"
        );
        let wrong_iss = Claims {
            iss: "evil".into(),
            ..base
        };
        assert!(
            k.verify(&k.sign(&wrong_iss).expect("sign")).is_err(),
            "wrong issuer"
        );

        // alg none: header {"alg":"none"}, same claims, empty signature.
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let parts: Vec<&str> = token.split('.').collect();
        let none = format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            parts[1]
        );
        assert!(k.verify(&none).is_err(), "alg none");
        let hs512 = encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
        )
        .expect("sign");
        assert!(k.verify(&hs512).is_err(), "other algorithm");
    }
}
