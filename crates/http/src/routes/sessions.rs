//! Refresh, verify, logout, the caller's sessions, and switching from an account into an
//! organization.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tenantry_public::companies::CompanyStatus;
use tenantry_public::sessions::{self, RefreshError};
use tenantry_public::{companies, memberships, CompanyId, SessionId, Slug};
use tenantry_tenant::accounts;
use tenantry_tenant::audit::{Action, Actor, Entry};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::auth::{Caller, RequestOrigin};
use crate::error::ApiError;
use crate::fields::{self, Fields};
use crate::host::{HostKind, PublicHost};
use crate::routes::resource;
use crate::state::AppState;
use crate::tokens::TokenResponse;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/auth/token/refresh").post(refresh))
        .service(resource("/auth/token/verify").post(verify))
        .service(resource("/auth/logout").post(logout))
        .service(resource("/auth/sessions").get(list))
        .service(resource("/auth/sessions/{id}").delete(delete))
        .service(resource("/auth/switch").post(switch));
}

#[derive(OpenApi)]
#[openapi(paths(refresh, verify, logout, list, delete, switch))]
pub struct Api;

#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    #[schema(value_type = String, required = true, nullable = false)]
    pub refresh_token: Option<String>,
}

const INVALID_REFRESH: &str = "the refresh token is invalid, expired or revoked";

/// Exchanges a refresh token for a new access token and a new refresh token. The old refresh
/// token is spent; presented again within a few seconds (two tabs at once) while its successor
/// is unused, it gets the same successor; any other repeat revokes the whole session.
#[utoipa::path(post, path = "/api/v1/auth/token/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenResponse),
              (status = 401, description = "Invalid, spent or revoked")))]
pub async fn refresh(
    host: HostKind,
    state: web::Data<AppState>,
    body: web::Json<RefreshRequest>,
    origin: RequestOrigin,
) -> Result<HttpResponse, ApiError> {
    let (presented,) = (fields::required("refresh_token", &body.refresh_token),).collect()?;
    let mut client = state.db.public().await?;
    let rotated = match sessions::rotate(&mut client, presented, host.company(), &state.rotation)
        .await
    {
        Ok(r) => r,
        Err(RefreshError::Db(e)) => return Err(e.into()),
        Err(RefreshError::Reused { session, user }) => {
            drop(client);
            tracing::warn!(%session, "refresh token reuse; session revoked");
            if let HostKind::Tenant(tenant) = &host {
                let entry = Entry::new(Action::RefreshReused).target("session", session);
                accounts::record(&state.db, tenant, Actor::User(user), &origin.0, entry).await?;
            }
            return Err(ApiError::Unauthorized(INVALID_REFRESH));
        }
        Err(e) => {
            tracing::info!(reason = %e, "refresh refused");
            return Err(ApiError::Unauthorized(INVALID_REFRESH));
        }
    };
    drop(client);
    let tenant = rotated.session.company_id.zip(rotated.role);
    state.jwt.respond(
        rotated.session.user_id,
        tenant,
        &rotated.session,
        &rotated.secret,
    )
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct VerifyRequest {
    #[schema(value_type = String, required = true, nullable = false)]
    pub token: Option<String>,
}

/// Whether the token is active and, if so, its claims. An inactive token (its session has ended)
/// carries nothing else.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyResponse {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
}

/// Checks an access token for this host: 200 with its claims when valid and its session live,
/// 200 `{active: false}` when its session has ended (logout, revocation, password reset), 401
/// when the token itself is invalid, expired or for another host.
#[utoipa::path(post, path = "/api/v1/auth/token/verify", tag = "auth", request_body = VerifyRequest,
    responses((status = 200, body = VerifyResponse),
              (status = 401, description = "Invalid, expired, or for another host")))]
pub async fn verify(
    host: HostKind,
    state: web::Data<AppState>,
    body: web::Json<VerifyRequest>,
) -> Result<HttpResponse, ApiError> {
    let token = body.token.as_deref().unwrap_or_default();
    let claims = state
        .jwt
        .verify(token)
        .map_err(|_| ApiError::Unauthorized("the token is invalid or expired"))?;
    if claims.tenant.map(CompanyId) != host.company() {
        return Err(ApiError::Unauthorized(
            "the token is not valid on this host",
        ));
    }
    let live = match claims.sid {
        Some(session) => {
            let client = state.db.public().await?;
            sessions::is_live(client.client(), SessionId(session)).await?
        }
        None => false,
    };
    Ok(HttpResponse::Ok().json(if live {
        VerifyResponse {
            active: true,
            sub: Some(claims.sub),
            tenant: claims.tenant,
            role: claims.role,
            exp: Some(claims.exp),
        }
    } else {
        VerifyResponse {
            active: false,
            sub: None,
            tenant: None,
            role: None,
            exp: None,
        }
    }))
}

/// Ends the session a refresh token belongs to. 204 whether or not the token was known.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", request_body = RefreshRequest,
    responses((status = 204, description = "The session is over")))]
pub async fn logout(
    host: HostKind,
    state: web::Data<AppState>,
    body: web::Json<RefreshRequest>,
    origin: RequestOrigin,
) -> Result<HttpResponse, ApiError> {
    let (token,) = (fields::required("refresh_token", &body.refresh_token),).collect()?;
    let tenant = match &host {
        HostKind::Tenant(tenant) => Some(tenant),
        HostKind::Public => None,
    };
    accounts::logout(&state.db, tenant, token, &origin.0).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    #[schema(value_type = Uuid)]
    pub id: SessionId,
    /// The organization it was opened for; null for an account session.
    #[schema(value_type = Option<Uuid>)]
    pub company_id: Option<CompanyId>,
    pub created_at: DateTime<Utc>,
    /// The last refresh (or the login).
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The address the session was opened from.
    #[schema(example = "203.0.113.7")]
    pub ip: Option<String>,
    #[schema(example = "Mozilla/5.0 (X11; Linux x86_64)")]
    pub user_agent: Option<String>,
    /// True for the session of the token making this request.
    pub current: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    pub results: Vec<SessionView>,
}

/// The caller's active sessions, newest first.
#[utoipa::path(get, path = "/api/v1/auth/sessions", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = SessionList)))]
pub async fn list(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let client = state.db.public().await?;
    let results = sessions::list_active(client.client(), caller.user_id)
        .await?
        .into_iter()
        .map(|s| SessionView {
            current: Some(s.id) == caller.session_id,
            id: s.id,
            company_id: s.company_id,
            created_at: s.created_at,
            last_used_at: s.last_used_at,
            expires_at: s.expires_at,
            ip: s.ip,
            user_agent: s.user_agent,
        })
        .collect();
    Ok(HttpResponse::Ok().json(SessionList { results }))
}

/// Ends one of the caller's sessions: its refresh token stops working at once.
#[utoipa::path(delete, path = "/api/v1/auth/sessions/{id}", tag = "auth", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Session id")),
    responses((status = 204, description = "Revoked"),
              (status = 404, description = "No such active session of the caller")))]
pub async fn delete(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<SessionId>,
    origin: RequestOrigin,
) -> Result<HttpResponse, ApiError> {
    let revoked = accounts::revoke_session(
        &state.db,
        caller.active_tenant(),
        caller.user_id,
        *id,
        &origin.0,
    )
    .await?;
    if revoked {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SwitchRequest {
    #[schema(example = "acme")]
    #[schema(value_type = String, required = true, nullable = false)]
    pub slug: Option<String>,
}

/// Base host, account token: returns tokens for one of the caller's organizations.
#[utoipa::path(post, path = "/api/v1/auth/switch", tag = "auth", request_body = SwitchRequest,
    security(("bearer" = [])),
    responses((status = 200, body = TokenResponse),
              (status = 403, description = "Not an active member of that organization (or, for an account whose email is not verified, not the organization it was created in)")))]
pub async fn switch(
    caller: Caller,
    _: PublicHost,
    state: web::Data<AppState>,
    body: web::Json<SwitchRequest>,
    origin: RequestOrigin,
) -> Result<HttpResponse, ApiError> {
    let (slug,) = (fields::required("slug", &body.slug),).collect()?;
    // An account token outlives a logout or reset by up to 15 minutes: it must not mint a new
    // session after its own has ended.
    caller.require_live_session(&state.db).await?;
    let refused =
        || ApiError::Forbidden("you are not an active member of that organization".into());
    let slug = Slug::parse(slug).map_err(|_| refused())?;
    let client = state.db.public().await?;
    let company = companies::find_by_slug(client.client(), &slug)
        .await?
        .ok_or_else(refused)?;
    let role = memberships::active_role(client.client(), caller.user_id, company.id)
        .await?
        .ok_or_else(refused)?;
    if company.status != CompanyStatus::Active {
        return Err(ApiError::Forbidden(
            "that organization is not active".into(),
        ));
    }
    let (session, refresh) =
        sessions::open(client.client(), caller.user_id, Some(company.id), &origin.0).await?;
    state
        .jwt
        .respond(caller.user_id, Some((company.id, role)), &session, &refresh)
}
