//! The authenticated caller. Handlers that take [`Caller`] or [`TenantUser`] cannot forget
//! authentication, and a token is only accepted on the host it was issued for: a tenant token on
//! its company's hosts, an account token on the base host.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use std::future::{ready, Ready};
use tenantry_public::memberships::Role;
use tenantry_public::UserId;
use tenantry_tenant::access::{self, Permission};
use tenantry_tenant::audit::{Actor, Origin};
use tenantry_tenant::ActiveTenant;
use uuid::Uuid;

use crate::error::ApiError;
use crate::host::HostKind;
use crate::state::AppState;
use crate::telemetry::RequestId;
use crate::tokens::Claims;

const INVALID: &str = "the access token is invalid or expired";

/// Any authenticated caller on the host its token belongs to.
pub struct Caller {
    pub user_id: UserId,
    /// The tenant and role for a tenant token; `None` for an account token on the base host.
    pub tenant: Option<(ActiveTenant, Role)>,
    pub session_id: Option<Uuid>,
}

impl Caller {
    fn extract(req: &HttpRequest) -> Result<Self, ApiError> {
        let host = HostKind::from_request_sync(req)?;
        let state = req
            .app_data::<web::Data<AppState>>()
            .ok_or_else(|| anyhow::anyhow!("application state missing"))?;
        let claims: Claims = state
            .jwt
            .verify(bearer_token(req)?)
            .map_err(|_| ApiError::Unauthorized(INVALID))?;
        let tenant = match (host, claims.tenant) {
            (HostKind::Tenant(tenant), Some(company)) if company == tenant.route().company_id.0 => {
                let role = claims
                    .role
                    .as_deref()
                    .and_then(|r| Role::parse(r).ok())
                    .ok_or(ApiError::Unauthorized(INVALID))?;
                Some((tenant, role))
            }
            (HostKind::Tenant(_), Some(_)) => {
                return Err(ApiError::Forbidden(
                    "this token was issued for another organization".into(),
                ))
            }
            (HostKind::Tenant(_), None) => {
                return Err(ApiError::Forbidden(
                    "an account token is only accepted on the base host; switch to this organization first"
                        .into(),
                ))
            }
            (HostKind::Public, Some(_)) => {
                return Err(ApiError::Forbidden(
                    "this token was issued for an organization; use that organization's host".into(),
                ))
            }
            (HostKind::Public, None) => None,
        };
        Ok(Self {
            user_id: UserId(claims.sub),
            tenant,
            session_id: claims.sid,
        })
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Self::extract(req))
    }
}

/// A member of the Host's tenant, authenticated with a token for that tenant.
pub struct TenantUser {
    pub tenant: ActiveTenant,
    /// The account responsible for what this caller does (for an API key: its creator).
    pub user_id: UserId,
    pub role: Role,
    /// Who acts, as the audit trail records it (a user, or an API key).
    pub actor: Actor,
    /// The session of the access token (none for API keys).
    pub session_id: Option<Uuid>,
}

impl TenantUser {
    /// Checks the permission matrix (`tenantry_tenant::access`): 403 when the role lacks it.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if access::allows(self.role, permission) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "the {} role may not do this ({} requires {} or above)",
                self.role,
                permission.as_str(),
                permission.minimum_role()
            )))
        }
    }

    fn extract(req: &HttpRequest) -> Result<Self, ApiError> {
        // Tenant routes do not exist on the base host.
        if let HostKind::Public = HostKind::from_request_sync(req)? {
            return Err(ApiError::NotFound);
        }
        let caller = Caller::extract(req)?;
        let Some((tenant, role)) = caller.tenant else {
            return Err(ApiError::NotFound);
        };
        Ok(Self {
            tenant,
            user_id: caller.user_id,
            role,
            actor: Actor::User(caller.user_id),
            session_id: caller.session_id,
        })
    }
}

fn bearer_token(req: &HttpRequest) -> Result<&str, ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized("an access token is required"))?
        .to_str()
        .map_err(|_| ApiError::Unauthorized("the Authorization header is malformed"))?;
    let (scheme, token) = value.split_once(' ').ok_or(ApiError::Unauthorized(
        "the Authorization header is malformed",
    ))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::Unauthorized(
            "the Authorization header must use the Bearer scheme",
        ));
    }
    Ok(token.trim())
}

impl FromRequest for TenantUser {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Self::extract(req))
    }
}

/// Where the request came from, for the audit trail: the peer address (the server does not trust
/// forwarding headers), the user agent and the request id.
pub struct RequestOrigin(pub Origin);

impl RequestOrigin {
    pub fn of(req: &HttpRequest) -> Origin {
        Origin {
            ip: req.peer_addr().map(|a| a.ip()),
            user_agent: req
                .headers()
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            request_id: req.extensions().get::<RequestId>().map(|r| r.0.clone()),
        }
    }
}

impl FromRequest for RequestOrigin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(Self(Self::of(req))))
    }
}
