//! `POST /api/v1/auth/token`: email + password → access and refresh tokens. On a tenant host the
//! tokens are for that organization; on the base host they are account tokens, which can only
//! list organizations and switch into one.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use tenantry_public::memberships::{self, LoginCandidate};
use tenantry_public::{passwords, sessions, CompanyId, Email};
use tenantry_tenant::accounts;
use tenantry_tenant::audit::{Action, Actor, Entry};
use utoipa::{OpenApi, ToSchema};

use crate::auth::RequestOrigin;
use crate::error::ApiError;
use crate::fields::{self, Fields};
use crate::host::HostKind;
use crate::routes::resource;
use crate::state::AppState;
use crate::throttle::Verdict;
use crate::tokens::TokenResponse;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/auth/token").post(token));
}

#[derive(OpenApi)]
#[openapi(paths(token))]
pub struct Api;

#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenRequest {
    #[schema(example = "owner@acme.test")]
    #[schema(value_type = String, required = true, nullable = false)]
    pub email: Option<String>,
    #[schema(value_type = String, required = true, nullable = false)]
    pub password: Option<String>,
}

const BAD_CREDENTIALS: &str = "the email or password is incorrect";
const UNPROVEN: &str = "this account's email address is not verified, and the account was created \
     in another organization: open the link of your invitation or verification email, or reset \
     your password, to prove the address; then sign in again";

/// Logs in. Tenant host: a member's token for that organization. Base host: an account token.
#[utoipa::path(post, path = "/api/v1/auth/token", tag = "auth",
    request_body = TokenRequest,
    responses((status = 200, body = TokenResponse),
              (status = 401, description = "Wrong credentials, or not a member here"),
              (status = 403, description = "Right password, but the account's email address is not verified and the account was created in another organization"),
              (status = 429, description = "Too many failed logins for this account or from this address; see Retry-After")))]
pub async fn token(
    host: HostKind,
    state: web::Data<AppState>,
    body: web::Json<TokenRequest>,
    origin: RequestOrigin,
) -> Result<HttpResponse, ApiError> {
    let (email, password) = (
        fields::required("email", &body.email),
        fields::required("password", &body.password),
    )
        .collect()?;
    let origin = origin.0;
    // Counted before the password is checked, so parallel guesses cannot all pass.
    if let Verdict::Limited { retry_after } = state.login_throttle.attempt(email, origin.ip).await {
        return Err(ApiError::TooManyRequests {
            detail: "too many failed logins; try again later".into(),
            retry_after,
        });
    }

    // On the base host any active account may log in; the membership lookup is for a company
    // nobody belongs to, and its result is ignored.
    let company = host.company();
    // Something that is not an email names no account: no lookup (the password is still
    // checked against the fixed hash below, so the answer takes as long).
    let valid_email = Email::parse(email).ok();
    let candidate = match &valid_email {
        Some(email) => {
            let client = state.db.public().await?;
            memberships::find_login(
                client.client(),
                email.as_str(),
                company.unwrap_or(CompanyId(uuid::Uuid::nil())),
            )
            .await?
        }
        None => None,
    };
    // The connection is back in the pool before the slow part. Unknown emails are checked against
    // a fixed hash, so every failure takes as long as a wrong password.
    let stored = candidate.as_ref().map(|c| c.password_hash.clone());
    let ok = passwords::verify(password, stored).await?;
    let (user_id, tenant) = match (candidate, company) {
        (
            Some(LoginCandidate {
                user_id,
                user_active: true,
                ..
            }),
            None,
        ) if ok => (user_id, None),
        (
            Some(LoginCandidate {
                user_id,
                user_active: true,
                role: Some(role),
                proven: true,
                ..
            }),
            Some(company),
        ) if ok => (user_id, Some((company, role))),
        // The right password of a member whose address is not proven, outside the organization
        // the account was created in: whoever set that password may not be the address's owner.
        (
            Some(LoginCandidate {
                user_id,
                user_active: true,
                role: Some(_),
                proven: false,
                ..
            }),
            Some(_),
        ) if ok => {
            if let HostKind::Tenant(tenant) = &host {
                let entry =
                    Entry::new(Action::LoginFailed).after(json!({ "reason": "email_unverified" }));
                accounts::record(&state.db, tenant, Actor::User(user_id), &origin, entry).await?;
            }
            return Err(ApiError::Forbidden(UNPROVEN.into()));
        }
        (candidate, _) => {
            if let HostKind::Tenant(tenant) = &host {
                // Only this organization's own members are named: an account elsewhere (or
                // none) is anonymous, so the trail tells an admin nothing about other accounts.
                // The email is stored only when it is one, and then it is at most 254 characters.
                let actor = match candidate {
                    Some(c) if c.role.is_some() => Actor::User(c.user_id),
                    _ => Actor::Anonymous,
                };
                let after = match &valid_email {
                    Some(e) => json!({ "email": e.as_str() }),
                    None => json!({ "email": null, "email_invalid": true }),
                };
                let entry = Entry::new(Action::LoginFailed).after(after);
                accounts::record(&state.db, tenant, actor, &origin, entry).await?;
            }
            return Err(ApiError::Unauthorized(BAD_CREDENTIALS));
        }
    };
    state.login_throttle.succeeded(email, origin.ip).await;
    let (session, refresh) = {
        let client = state.db.public().await?;
        sessions::open(client.client(), user_id, company, &origin).await?
    };
    if let HostKind::Tenant(tenant) = &host {
        let entry = Entry::new(Action::LoginSucceeded).target("session", session.id);
        accounts::record(&state.db, tenant, Actor::User(user_id), &origin, entry).await?;
    }
    state.jwt.respond(user_id, tenant, &session, &refresh)
}
