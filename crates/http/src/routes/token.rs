//! `POST /api/v1/auth/token` on a tenant host: email + password → access token.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use tenantry_public::{memberships, passwords, users};
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

    let client = state.db.public().await?;
    let user = users::find_by_email(&***client, &email).await?;
    // Unknown emails are checked against a fixed hash, so both failures take as long.
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let ok = passwords::verify(&password, stored)
        .await
        .map_err(|e| ApiError::Unexpected(e.into()))?;
    let user = match user {
        Some(user) if ok && user.is_active => user,
        _ => return Err(ApiError::Unauthorized(BAD_CREDENTIALS)),
    };
    let membership = memberships::find(&***client, user.id, tenant.route().company_id).await?;
    let Some(membership) = membership.filter(|m| m.is_active) else {
        return Err(ApiError::Unauthorized(BAD_CREDENTIALS));
    };
    let (access_token, expires_in) = state
        .jwt
        .issue(
            user.id.0,
            tenant.route().company_id.0,
            membership.role.as_str(),
        )
        .map_err(|e| ApiError::Unexpected(e.into()))?;
    Ok(HttpResponse::Ok().json(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in,
    }))
}
