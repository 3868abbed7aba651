//! Access tokens: HS256 JWTs with sub, iat, nbf, exp, iss, aud, a session id, and — for tenant
//! tokens — the company and role. Validation pins the algorithm and requires every registered
//! claim. Keys carry a `kid`: a keyring holds the current key and, during a rotation, the previous
//! one, so rotating `JWT_SECRET` logs nobody out early; an unknown `kid` is refused.

use actix_web::http::header;
use actix_web::HttpResponse;
use chrono::Utc;
use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tenantry_public::memberships::Role;
use tenantry_public::sessions::{RefreshSecret, Session};
use tenantry_public::{CompanyId, UserId};
use uuid::Uuid;

/// The answer to a login, a refresh or a switch: an access token and the session's next
/// refresh token.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    #[schema(example = 900)]
    pub expires_in: i64,
    /// Opaque, single use: exchange it at `/api/v1/auth/token/refresh` for a new pair.
    pub refresh_token: String,
}

impl JwtKeys {
    /// Issues the access token for `session` (of `user`, in `tenant` with its role, or an account
    /// session) and answers it with the refresh token, never cached.
    pub fn respond(
        &self,
        user: UserId,
        tenant: Option<(CompanyId, Role)>,
        session: &Session,
        refresh: &RefreshSecret,
    ) -> Result<HttpResponse, crate::error::ApiError> {
        let (access_token, expires_in) = self
            .issue(
                user.0,
                tenant.map(|(c, r)| (c.0, r.as_str())),
                Some(session.id.0),
            )
            .map_err(|e| crate::error::ApiError::Unexpected(e.into()))?;
        Ok(HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(TokenResponse {
                access_token,
                token_type: "Bearer",
                expires_in,
                refresh_token: refresh.expose().to_owned(),
            }))
    }
}

/// How long an access token lives.
pub const ACCESS_TOKEN_TTL_SECS: i64 = 15 * 60;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: Uuid,
    /// The company the token is for; it is only accepted on that company's hosts. `None` for an
    /// account token, which is only accepted on the base host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<Uuid>,
    /// The role in `tenant`; `None` for an account token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The login session this token belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<Uuid>,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
}

struct Key {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl Key {
    fn new(secret: &SecretString) -> Self {
        let bytes = secret.expose_secret().as_bytes();
        // The kid names the key without revealing it: a prefix of a domain-separated hash.
        let digest = Sha256::new()
            .chain_update(b"tenantry-jwt-kid:")
            .chain_update(bytes)
            .finalize();
        let kid = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        Self {
            kid,
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
        }
    }
}

/// Why a token was refused. Callers answer 401 for all of them alike.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token names no key or an unknown key")]
    UnknownKey,
    #[error(transparent)]
    Invalid(#[from] jsonwebtoken::errors::Error),
}

/// The signing keyring with its fixed validation rules.
pub struct JwtKeys {
    current: Key,
    previous: Option<Key>,
    validation: Validation,
    issuer: String,
    audience: String,
}

impl JwtKeys {
    pub fn new(secret: &SecretString, issuer: &str, audience: &str) -> Self {
        Self::with_previous(secret, None, issuer, audience)
    }

    /// A keyring that signs with `current` and still accepts tokens signed with `previous`.
    pub fn with_previous(
        current: &SecretString,
        previous: Option<&SecretString>,
        issuer: &str,
        audience: &str,
    ) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = 5;
        Self {
            current: Key::new(current),
            previous: previous.map(Key::new),
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        }
    }

    /// The `kid` new tokens are signed with.
    pub fn current_kid(&self) -> &str {
        &self.current.kid
    }

    /// Issues an access token; returns it with its lifetime in seconds.
    pub fn issue(
        &self,
        user: Uuid,
        tenant: Option<(Uuid, &str)>,
        session: Option<Uuid>,
    ) -> Result<(String, i64), jsonwebtoken::errors::Error> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user,
            tenant: tenant.map(|(t, _)| t),
            role: tenant.map(|(_, r)| r.to_owned()),
            sid: session,
            iat: now,
            nbf: now,
            exp: now + ACCESS_TOKEN_TTL_SECS,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        Ok((self.sign(&claims)?, ACCESS_TOKEN_TTL_SECS))
    }

    /// Signs arbitrary claims with the current key; tests use it to forge tokens that must be
    /// refused.
    pub fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.current.kid.clone());
        encode(&header, claims, &self.current.encoding)
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = decode_header(token)?;
        let kid = header.kid.as_deref().ok_or(TokenError::UnknownKey)?;
        let key = if kid == self.current.kid {
            &self.current
        } else {
            match &self.previous {
                Some(previous) if kid == previous.kid => previous,
                _ => return Err(TokenError::UnknownKey),
            }
        };
        Ok(decode::<Claims>(token, &key.decoding, &self.validation)?.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn keys() -> JwtKeys {
        JwtKeys::new(&SecretString::from(SECRET), "iss", "aud")
    }

    #[test]
    fn round_trip_and_rejections() {
        let k = keys();
        let (user, tenant, sid) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let (token, ttl) = k
            .issue(user, Some((tenant, "admin")), Some(sid))
            .expect("issue");
        assert_eq!(ttl, 900);
        let claims = k.verify(&token).expect("valid");
        assert_eq!(
            (
                claims.sub,
                claims.tenant,
                claims.role.as_deref(),
                claims.sid
            ),
            (user, Some(tenant), Some("admin"), Some(sid))
        );
        assert_eq!(
            decode_header(&token).expect("header").kid.as_deref(),
            Some(k.current_kid())
        );

        let other = JwtKeys::new(
            &SecretString::from("another-secret-another-secret-xx"),
            "iss",
            "aud",
        );
        assert!(other.verify(&token).is_err(), "unknown kid");
        let wrong_aud = JwtKeys::new(&SecretString::from(SECRET), "iss", "x");
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

        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let parts: Vec<&str> = token.split('.').collect();
        let header = format!(
            r#"{{"alg":"none","typ":"JWT","kid":"{}"}}"#,
            k.current_kid()
        );
        let none = format!("{}.{}.", b64.encode(header), parts[1]);
        assert!(k.verify(&none).is_err(), "alg none");
        let mut h512 = Header::new(Algorithm::HS512);
        h512.kid = Some(k.current_kid().to_owned());
        let hs512 =
            encode(&h512, &claims, &EncodingKey::from_secret(SECRET.as_bytes())).expect("sign");
        assert!(k.verify(&hs512).is_err(), "other algorithm");
        let no_kid = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("sign");
        assert!(k.verify(&no_kid).is_err(), "no kid");
    }

    #[test]
    fn rotation_keeps_previous_tokens_valid() {
        let old = keys();
        let (token, _) = old.issue(Uuid::new_v4(), None, None).expect("issue");
        let new_secret = SecretString::from("fedcba9876543210fedcba9876543210");
        let rotated =
            JwtKeys::with_previous(&new_secret, Some(&SecretString::from(SECRET)), "iss", "aud");
        assert!(
            rotated.verify(&token).is_ok(),
            "old token still valid during the overlap"
        );
        assert_ne!(rotated.current_kid(), old.current_kid());
        let after_overlap = JwtKeys::new(&new_secret, "iss", "aud");
        assert!(after_overlap.verify(&token).is_err(), "old key retired");
    }
}
