//! Emailed account tokens: email verification and password reset, on any host (the base host or
//! a tenant's; links point back at the host the request came to).
//!
//! Password-reset requests answer 202 with the same body whether or not an account has the email,
//! so the endpoint cannot be used to learn who has an account.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use tenantry_public::account_tokens::{self, Purpose, TokenError};
use tenantry_public::db::DbError;
use tenantry_public::mail::{self, Email as Mail};
use tenantry_public::{
    memberships, passwords, sessions, users, DomainName, Email, Password, UserId,
};
use tenantry_tenant::audit::{self, Action, Actor, Entry};
use tenantry_tenant::TenantDb;
use utoipa::ToSchema;

use crate::auth::RequestOrigin;
use crate::error::{ApiError, Validator};
use crate::host::{request_host, HostKind};
use crate::state::AppState;
use crate::throttle::Verdict;

/// The front-end page a verification link opens (it posts the token to `/auth/verify-email`).
pub const VERIFY_EMAIL_PATH: &str = "/verify-email";
/// The front-end page a reset link opens (it posts the token and a new password to
/// `/auth/password-reset/confirm`).
pub const RESET_PASSWORD_PATH: &str = "/reset-password";

const RESET_ACCEPTED: &str =
    "if an active account has this email, a password-reset link has been sent to it";

#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenBody {
    /// The token from the emailed link.
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
    pub email: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResetAccepted {
    pub detail: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ResetConfirm {
    /// The token from the emailed link.
    pub token: Option<String>,
    /// 10 to 128 characters.
    pub new_password: Option<String>,
}

fn token_error(e: TokenError) -> ApiError {
    match e {
        TokenError::Unknown => ApiError::NotFound,
        TokenError::Used | TokenError::Expired => ApiError::Gone(e.to_string()),
    }
}

fn link_host(req: &HttpRequest) -> Result<DomainName, ApiError> {
    request_host(req)
        .and_then(|h| DomainName::from_host_header(h).ok())
        .ok_or_else(|| ApiError::BadRequest("the Host header is missing".into()))
}

/// Confirms the account's email address with the token from a verification email.
#[utoipa::path(post, path = "/api/v1/auth/verify-email", tag = "auth", request_body = TokenBody,
    responses((status = 200, body = Verified),
              (status = 404, description = "Unknown token", content_type = "application/problem+json"),
              (status = 410, description = "Token already used or expired", content_type = "application/problem+json"),
              (status = 422, description = "Token missing", content_type = "application/problem+json")))]
pub async fn verify_email(
    state: web::Data<AppState>,
    body: web::Json<TokenBody>,
    req: HttpRequest,
    origin: RequestOrigin,
) -> Result<HttpResponse, ApiError> {
    let mut v = Validator::new();
    let token = v.required("token", &body.token).map(str::trim);
    v.finish()?;
    let token = token.unwrap_or_default().to_owned();
    let account = in_account_tx(&state, &req, &origin, Action::EmailVerified, |db| {
        Box::pin(async move {
            let user = account_tokens::consume(db, Purpose::VerifyEmail, &token)
                .await?
                .map_err(token_error)?;
            users::mark_email_verified(db, user).await?;
            Ok(user)
        })
    })
    .await?;
    let account = {
        let client = state.db.public().await?;
        users::find_by_id(client.client(), account)
            .await?
            .ok_or(ApiError::NotFound)?
    };
    Ok(HttpResponse::Ok().json(Verified {
        email: account.email,
        email_verified: account.email_verified_at.is_some(),
    }))
}

/// Runs `work` (which spends a token and changes the account it names) in one transaction. On a
/// tenant host the transaction is on that tenant's connection, and when the account is a member
/// there the change is recorded in that tenant's audit trail, atomically. On the base host there
/// is no tenant trail to write to.
async fn in_account_tx<F>(
    state: &AppState,
    req: &HttpRequest,
    origin: &RequestOrigin,
    action: Action,
    work: F,
) -> Result<UserId, ApiError>
where
    F: for<'c> FnOnce(
        &'c tokio_postgres::Transaction<'c>,
    ) -> futures_util::future::BoxFuture<'c, Result<UserId, ApiError>>,
{
    match HostKind::from_request_sync(req)? {
        HostKind::Tenant(tenant) => {
            let mut conn = tenant.connect(&state.db).await?;
            let tx = conn.transaction().await?;
            let user = work(tx.client()).await?;
            let company = tenant.route().company_id;
            if memberships::find(&**tx.client(), user, company)
                .await?
                .is_some()
            {
                audit::record(
                    &tx,
                    Actor::User(user),
                    &origin.0,
                    Entry::new(action).target("user", user),
                )
                .await?;
            }
            tx.commit().await?;
            Ok(user)
        }
        HostKind::Public => {
            let mut client = state.db.public().await?;
            let tx = client.transaction().await.map_err(DbError::from)?;
            let user = work(&tx).await?;
            tx.commit().await.map_err(DbError::from)?;
            Ok(user)
        }
    }
}

/// Sends a password-reset link to the account with this email, if there is an active one. Always
/// 202 with the same body for a well-formed email.
#[utoipa::path(post, path = "/api/v1/auth/password-reset", tag = "auth", request_body = ResetRequest,
    responses((status = 202, body = ResetAccepted),
              (status = 422, description = "Not an email address", content_type = "application/problem+json"),
              (status = 429, description = "Too many requests for this email or from this address", content_type = "application/problem+json")))]
pub async fn request_reset(
    state: web::Data<AppState>,
    body: web::Json<ResetRequest>,
    req: HttpRequest,
    origin: RequestOrigin,
) -> Result<HttpResponse, ApiError> {
    let mut v = Validator::new();
    let email = v
        .required("email", &body.email)
        .and_then(|e| v.check("email", Email::parse(e)));
    v.finish()?;
    let email = email.ok_or_else(|| anyhow::anyhow!("validator passed with a missing field"))?;
    let host = link_host(&req)?;
    // Counted per submitted email (whether or not it has an account) and per address: a limit
    // says nothing about accounts, and nobody can flood an inbox with reset emails.
    if let Verdict::Limited { retry_after } = state
        .reset_throttle
        .check(email.as_str(), origin.0.ip)
        .await
    {
        return Err(ApiError::TooManyRequests {
            detail: "too many password-reset requests; try again later".into(),
            retry_after,
        });
    }
    state
        .reset_throttle
        .failed(email.as_str(), origin.0.ip)
        .await;
    let queued = {
        let mut client = state.db.public().await?;
        let tx = client.transaction().await.map_err(DbError::from)?;
        let queued = match users::find_by_email(&*tx, email.as_str()).await? {
            Some(user) if user.is_active => {
                let token = account_tokens::issue(&*tx, user.id, Purpose::PasswordReset).await?;
                let link = state
                    .settings
                    .link(host.as_str(), RESET_PASSWORD_PATH, token.expose());
                Some(
                    mail::enqueue(
                        &*tx,
                        &Mail::PasswordReset {
                            to: user.email,
                            link,
                        },
                    )
                    .await?,
                )
            }
            _ => None,
        };
        tx.commit().await.map_err(DbError::from)?;
        queued
    };
    state.mail.push(queued).await;
    Ok(HttpResponse::Accepted().json(ResetAccepted {
        detail: RESET_ACCEPTED.to_owned(),
    }))
}

/// Sets a new password with the token from a reset email, and ends every session of the account.
#[utoipa::path(post, path = "/api/v1/auth/password-reset/confirm", tag = "auth", request_body = ResetConfirm,
    responses((status = 204, description = "Password changed; every session ended"),
              (status = 404, description = "Unknown token", content_type = "application/problem+json"),
              (status = 410, description = "Token already used or expired", content_type = "application/problem+json"),
              (status = 422, description = "Token missing or password invalid", content_type = "application/problem+json")))]
pub async fn confirm_reset(
    state: web::Data<AppState>,
    body: web::Json<ResetConfirm>,
    req: HttpRequest,
    origin: RequestOrigin,
) -> Result<HttpResponse, ApiError> {
    let mut v = Validator::new();
    let token = v.required("token", &body.token).map(str::trim);
    let password = v
        .required("new_password", &body.new_password)
        .and_then(|p| v.check("new_password", Password::parse(p)));
    v.finish()?;
    let (Some(token), Some(password)) = (token, password) else {
        return Err(anyhow::anyhow!("validator passed with a missing field").into());
    };
    // Hashed before the transaction opens: no row lock is held during the slow part.
    let hash = passwords::hash(&password)
        .await
        .map_err(|e| ApiError::Unexpected(e.into()))?;
    let token = token.to_owned();
    let user = in_account_tx(&state, &req, &origin, Action::PasswordReset, |db| {
        Box::pin(async move {
            let user = account_tokens::consume(db, Purpose::PasswordReset, &token)
                .await?
                .map_err(token_error)?;
            users::set_password_hash(db, user, &hash).await?;
            // The link reached the inbox: the address is verified too.
            users::mark_email_verified(db, user).await?;
            sessions::revoke_all(db, user, None, "password reset").await?;
            Ok(user)
        })
    })
    .await?;
    tracing::info!(user = %user.0, "password reset");
    Ok(HttpResponse::NoContent().finish())
}
