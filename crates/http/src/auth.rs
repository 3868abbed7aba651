//! The authenticated caller. Handlers that take [`Caller`] or [`TenantUser`] cannot forget
//! authentication, and a token is only accepted on the host it was issued for: a tenant token on
//! its company's hosts, an account token on the base host.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use std::future::{ready, Ready};
use tenantry_public::memberships::Role;
use tenantry_public::UserId;
use tenantry_tenant::ActiveTenant;
use uuid::Uuid;

use crate::error::ApiError;
use crate::host::HostKind;
use crate::state::AppState;
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
    pub user_id: UserId,
    pub role: Role,
}

impl TenantUser {
    /// Refuses viewers (and anyone else below member) for writes.
    pub fn require_write(&self) -> Result<(), ApiError> {
        if self.role.can_write() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "the {} role may not change this organization's data",
                self.role
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
