//! `POST /api/v1/auth/token`: email + password → access and refresh tokens. On a tenant host the
//! tokens are for that organization; on the base host they are account tokens, which can only
//! list organizations and switch into one.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tenantry_public::memberships::{self, LoginCandidate, Role};
use tenantry_public::sessions::{self, Origin, RefreshSecret, Session};
use tenantry_public::{passwords, CompanyId, UserId};
use tenantry_tenant::audit::{self, Action, Actor, Entry};
use utoipa::ToSchema;

use crate::auth::RequestOrigin;
use crate::error::{ApiError, Validator};
use crate::host::HostKind;
use crate::state::AppState;
use crate::throttle::Verdict;

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
    /// Opaque, single use: exchange it at `/api/v1/auth/token/refresh` for a new pair.
    pub refresh_token: String,
}

pub(crate) const BAD_CREDENTIALS: &str = "the email or password is incorrect";

/// Where a request came from, for the sessions list. The peer address only: forwarding headers
/// are client-controlled.
pub(crate) fn origin(req: &HttpRequest) -> Origin {
    Origin {
        ip: req.peer_addr().map(|a| a.ip().to_string()),
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(512).collect()),
    }
}

/// Issues the access token for a session and wraps it with the refresh token.
pub(crate) fn respond(
    state: &AppState,
    user: UserId,
    tenant: Option<(CompanyId, Role)>,
    session: &Session,
    refresh: &RefreshSecret,
) -> Result<HttpResponse, ApiError> {
    let (access_token, expires_in) = state
        .jwt
        .issue(
            user.0,
            tenant.map(|(c, r)| (c.0, r.as_str())),
            Some(session.id),
        )
        .map_err(|e| ApiError::Unexpected(e.into()))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in,
            refresh_token: refresh.expose().to_owned(),
        }))
}

/// Logs in. Tenant host: a member's token for that organization. Base host: an account token.
#[utoipa::path(post, path = "/api/v1/auth/token", tag = "auth",
    request_body = TokenRequest,
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, description = "Wrong credentials, or not a member here", content_type = "application/problem+json"),
        (status = 429, description = "Too many failed logins for this account or from this address; see Retry-After", content_type = "application/problem+json"),
        (status = 422, description = "Missing fields", content_type = "application/problem+json"),
    ))]
pub async fn token(
    host: HostKind,
    state: web::Data<AppState>,
    body: web::Json<TokenRequest>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let mut v = Validator::new();
    let email = v.required("email", &body.email).map(str::to_owned);
    let password = v.required("password", &body.password).map(str::to_owned);
    v.finish()?;
    let (Some(email), Some(password)) = (email, password) else {
        return Err(ApiError::Unauthorized(BAD_CREDENTIALS));
    };
    let origin = RequestOrigin::of(&req);
    if let Verdict::Limited { retry_after } = state.login_throttle.check(&email, origin.ip).await {
        return Err(ApiError::TooManyRequests {
            detail: "too many failed logins; try again later".into(),
            retry_after,
        });
    }

    // On the base host any active account may log in; the membership lookup is for a company
    // nobody belongs to, and its result is ignored.
    let company = host.company();
    let candidate = {
        let client = state.db.public().await?;
        memberships::find_login(
            client.client(),
            &email,
            company.unwrap_or(CompanyId(uuid::Uuid::nil())),
        )
        .await?
    };
    // The connection is back in the pool before the slow part. Unknown emails are checked against
    // a fixed hash, so every failure takes as long as a wrong password.
    let stored = candidate.as_ref().map(|c| c.password_hash.clone());
    let ok = passwords::verify(&password, stored)
        .await
        .map_err(|e| ApiError::Unexpected(e.into()))?;
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
                ..
            }),
            Some(company),
        ) if ok => (user_id, Some((company, role))),
        (candidate, _) => {
            state.login_throttle.failed(&email, origin.ip).await;
            if let HostKind::Tenant(tenant) = &host {
                let actor = candidate.map_or(Actor::Anonymous, |c| Actor::User(c.user_id));
                let entry = Entry::new(Action::LoginFailed).after(json!({ "email": email }));
                let conn = tenant.connect(&state.db).await?;
                audit::record(&conn, actor, &origin, entry).await?;
            }
            return Err(ApiError::Unauthorized(BAD_CREDENTIALS));
        }
    };
    state.login_throttle.succeeded(&email).await;
    let (session, refresh) = {
        let client = state.db.public().await?;
        sessions::open(client.client(), user_id, company, &self::origin(&req)).await?
    };
    if let HostKind::Tenant(tenant) = &host {
        let entry = Entry::new(Action::LoginSucceeded).target("session", session.id);
        let conn = tenant.connect(&state.db).await?;
        audit::record(&conn, Actor::User(user_id), &origin, entry).await?;
    }
    respond(&state, user_id, tenant, &session, &refresh)
}
