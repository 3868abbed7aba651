//! The authenticated caller on a tenant host. Handlers that take [`TenantUser`] cannot forget
//! authentication, and the token is only accepted on the host of the tenant it was issued for.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use std::future::{ready, Ready};
use tenantry_public::memberships::Role;
use tenantry_public::UserId;
use tenantry_tenant::ActiveTenant;

use crate::error::ApiError;
use crate::host::Tenant;
use crate::state::AppState;

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
        let Tenant(tenant) = Tenant::from_request_sync(req)?;
        let state = req
            .app_data::<web::Data<AppState>>()
            .ok_or_else(|| anyhow::anyhow!("application state missing"))?;
        let token = bearer_token(req)?;
        let claims = state
            .jwt
            .verify(token)
            .map_err(|_| ApiError::Unauthorized("the access token is invalid or expired"))?;
        if claims.tenant != tenant.route().company_id.0 {
            return Err(ApiError::Forbidden(
                "this token was issued for another organization".into(),
            ));
        }
        let role = Role::parse(&claims.role)
            .map_err(|_| ApiError::Unauthorized("the access token is invalid or expired"))?;
        Ok(Self {
            tenant,
            user_id: UserId(claims.sub),
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
