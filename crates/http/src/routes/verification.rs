//! Emailed account tokens: email verification and password reset, on any host (the base host or
//! a tenant's; links point back at the host the request came to).
//!
//! Password-reset requests answer 202 with the same body whether or not an account has the email,
//! so the endpoint cannot be used to learn who has an account.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use tenantry_public::account_tokens::{self, Purpose};
use tenantry_public::{Email, Password};
use tenantry_tenant::accounts;
use utoipa::{OpenApi, ToSchema};

use crate::auth::RequestOrigin;
use crate::config::links;
use crate::error::ApiError;
use crate::fields::{self, Fields};
use crate::host::{link_host, HostKind};
use crate::routes::resource;
use crate::schema;
use crate::state::AppState;
use crate::throttle::Verdict;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/auth/verify-email").post(verify_email))
        .service(resource("/auth/password-reset").post(request_reset))
        .service(resource("/auth/password-reset/confirm").post(confirm_reset));
}

#[derive(OpenApi)]
#[openapi(paths(verify_email, request_reset, confirm_reset))]
pub struct Api;

const RESET_ACCEPTED: &str =
    "if an active account has this email, a password-reset link has been sent to it";

#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenBody {
    /// The token from the emailed link.
    #[schema(value_type = String, required = true, nullable = false)]
    pub token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Verified {
    pub email: String,
    pub email_verified: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ResetRequest {
    #[schema(example = "ann@acme.test")]
    #[schema(schema_with = schema::email, required = true)]
    pub email: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResetAccepted {
    pub detail: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ResetConfirm {
    /// The token from the emailed link.
    #[schema(value_type = String, required = true, nullable = false)]
    pub token: Option<String>,
    /// 10 to 128 characters.
    #[schema(schema_with = schema::new_password, required = true)]
    pub new_password: Option<String>,
}

/// The tenant whose trail records an account change made on this host (none on the base host).
fn trail(req: &HttpRequest) -> Result<Option<tenantry_tenant::ActiveTenant>, ApiError> {
    Ok(match HostKind::from_request_sync(req)? {
        HostKind::Tenant(tenant) => Some(tenant),
        HostKind::Public => None,
    })
}

/// Confirms the account's email address with the token from a verification email.
#[utoipa::path(post, path = "/api/v1/auth/verify-email", tag = "auth", request_body = TokenBody,
    responses((status = 200, body = Verified),
              (status = 404, description = "Unknown token"),
              (status = 410, description = "Token already used or expired"),
              (status = 422, description = "Token missing")))]
pub async fn verify_email(
    state: web::Data<AppState>,
    body: web::Json<TokenBody>,
    req: HttpRequest,
    origin: RequestOrigin,
) -> Result<HttpResponse, ApiError> {
    let (token,) = (fields::required("token", &body.token),).collect()?;
    let tenant = trail(&req)?;
    let account =
        accounts::verify_email(&state.db, tenant.as_ref(), token.trim(), &origin.0).await?;
    Ok(HttpResponse::Ok().json(Verified {
        email: account.email,
        email_verified: account.email_verified_at.is_some(),
    }))
}

/// Sends a password-reset link to the account with this email, if there is an active one. Always
/// 202 with the same body for a well-formed email.
#[utoipa::path(post, path = "/api/v1/auth/password-reset", tag = "auth", request_body = ResetRequest,
    responses((status = 202, body = ResetAccepted),
              (status = 422, description = "Not an email address"),
              (status = 429, description = "Too many requests for this email, from this address or on this organization's host; see Retry-After")))]
pub async fn request_reset(
    state: web::Data<AppState>,
    body: web::Json<ResetRequest>,
    req: HttpRequest,
    origin: RequestOrigin,
) -> Result<HttpResponse, ApiError> {
    let (email,) = (fields::parse("email", &body.email, Email::parse),).collect()?;
    let host = link_host(&req)?;
    // Counted per submitted email (whether or not it has an account), per client address and,
    // on a tenant host, per organization: a limit says nothing about accounts, and nobody can
    // flood an inbox, or an organization's members, with reset emails.
    let company = trail(&req)?.map(|tenant| tenant.route().company_id.to_string());
    let org = company
        .as_deref()
        .map(|c| ("org", c, state.settings.resets_per_org));
    if let Verdict::Limited { retry_after } = state
        .reset_throttle
        .attempt_with(email.as_str(), origin.0.ip, org.as_slice())
        .await
    {
        return Err(ApiError::TooManyRequests {
            detail: "too many password-reset requests; try again later".into(),
            retry_after,
        });
    }
    let settings = &state.settings;
    let link = |token: &str| settings.link(host.as_str(), links::RESET_PASSWORD, token);
    let queued = account_tokens::request_password_reset(&state.db, &email, &link).await?;
    state.mail.push(queued).await;
    Ok(HttpResponse::Accepted().json(ResetAccepted {
        detail: RESET_ACCEPTED.to_owned(),
    }))
}

/// Sets a new password with the token from a reset email, and ends every session of the account.
#[utoipa::path(post, path = "/api/v1/auth/password-reset/confirm", tag = "auth", request_body = ResetConfirm,
    responses((status = 204, description = "Password changed; every session ended"),
              (status = 403, description = "The account is deactivated"),
              (status = 404, description = "Unknown token"),
              (status = 410, description = "Token already used or expired"),
              (status = 422, description = "Token missing or password invalid")))]
pub async fn confirm_reset(
    state: web::Data<AppState>,
    body: web::Json<ResetConfirm>,
    req: HttpRequest,
    origin: RequestOrigin,
) -> Result<HttpResponse, ApiError> {
    let (token, password) = (
        fields::required("token", &body.token),
        fields::required("new_password", &body.new_password),
    )
        .collect()?;
    let token = token.trim();
    // The new password must not contain the account's email name; an unknown token is answered
    // by the reset itself.
    let email = {
        let client = state.db.public().await?;
        account_tokens::account_email(client.client(), Purpose::PasswordReset, token).await?
    };
    let (password,) = (fields::check(
        "new_password",
        Password::parse_for(password, email.as_deref().unwrap_or_default()),
    ),)
        .collect()?;
    let tenant = trail(&req)?;
    let user =
        accounts::reset_password(&state.db, tenant.as_ref(), token, &password, &origin.0).await?;
    tracing::info!(%user, "password reset");
    Ok(HttpResponse::NoContent().finish())
}
