//! `POST /api/v1/auth/token` on a tenant host: email + password → access token.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use tenantry_public::memberships::{self, LoginCandidate};
use tenantry_public::passwords;
use utoipa::ToSchema;

use crate::error::{ApiError, Validator};
use crate::host::Tenant;
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenRequest {
    #[schema(example = "owner@acme.test")]
    pub email: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    #[schema(example = 900)]
    pub expires_in: i64,
}

const BAD_CREDENTIALS: &str = "the email or password is incorrect";

/// Exchanges a member's email and password for an access token for this organization.
#[utoipa::path(post, path = "/api/v1/auth/token", tag = "auth",
    request_body = TokenRequest,
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, description = "Wrong credentials, or not a member here", content_type = "application/problem+json"),
        (status = 422, description = "Missing fields", content_type = "application/problem+json"),
    ))]
pub async fn token(
    Tenant(tenant): Tenant,
    state: web::Data<AppState>,
    body: web::Json<TokenRequest>,
) -> Result<HttpResponse, ApiError> {
    let mut v = Validator::new();
    let email = v.required("email", &body.email).map(str::to_owned);
    let password = v.required("password", &body.password).map(str::to_owned);
    v.finish()?;
    let (Some(email), Some(password)) = (email, password) else {
        return Err(ApiError::Unauthorized(BAD_CREDENTIALS));
    };

    let candidate = {
        let client = state.db.public().await?;
        memberships::find_login(client.client(), &email, tenant.route().company_id).await?
    };
    // The connection is back in the pool before the slow part. Unknown emails are checked against
    // a fixed hash, so every failure takes as long as a wrong password.
    let stored = candidate.as_ref().map(|c| c.password_hash.clone());
    let ok = passwords::verify(&password, stored)
        .await
        .map_err(|e| ApiError::Unexpected(e.into()))?;
    let (user_id, role) = match candidate {
        Some(LoginCandidate {
            user_id,
            user_active: true,
            role: Some(role),
            ..
        }) if ok => (user_id, role),
        _ => return Err(ApiError::Unauthorized(BAD_CREDENTIALS)),
    };
    let (access_token, expires_in) = state
        .jwt
        .issue(user_id.0, tenant.route().company_id.0, role.as_str())
        .map_err(|e| ApiError::Unexpected(e.into()))?;
    Ok(HttpResponse::Ok().json(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in,
    }))
}
