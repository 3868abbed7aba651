//! `/api/v1/organization/*` on a tenant host: the organization as a whole (ownership transfer).

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use tenantry_public::UserId;
use tenantry_tenant::access::Permission;
use tenantry_tenant::accounts;
use tenantry_tenant::members::{self, MembershipError};
use utoipa::{OpenApi, ToSchema};

use crate::auth::TenantRequest;
use crate::error::ApiError;
use crate::fields::{self, Fields};
use crate::routes::resource;
use crate::schema;
use crate::views::MemberView;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/organization/transfer-ownership").post(transfer_ownership));
}

#[derive(OpenApi)]
#[openapi(paths(transfer_ownership))]
pub struct Api;

#[derive(Debug, Deserialize, ToSchema)]
pub struct TransferOwnership {
    /// The member who becomes the owner: active, with a verified email.
    #[schema(schema_with = schema::required_id, required = true)]
    pub user_id: Option<String>,
    /// The current owner's password, to confirm.
    #[schema(value_type = String, required = true, nullable = false)]
    pub password: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TransferResult {
    /// The caller, now an admin.
    pub previous_owner: MemberView,
    pub owner: MemberView,
}

/// Hands the owner role to another member; the caller becomes an admin. Owner only, with their
/// password. Existing tokens keep their roles until they expire; new tokens and refreshes carry
/// the new ones.
#[utoipa::path(post, path = "/api/v1/organization/transfer-ownership", tag = "organization",
    request_body = TransferOwnership, security(("bearer" = [])),
    responses((status = 200, body = TransferResult),
              (status = 403, description = "Not the owner, or wrong password"),
              (status = 404, description = "The target is not a member of this organization"),
              (status = 409, description = "The target's membership is deactivated or their email is unverified"),
              (status = 422, description = "Missing fields, or the target is the caller"),
              (status = 429, description = "Too many failed password checks; see Retry-After")))]
pub async fn transfer_ownership(
    cx: TenantRequest,
    body: web::Json<TransferOwnership>,
) -> Result<HttpResponse, ApiError> {
    cx.require(Permission::OwnershipTransfer)?;
    let (target, password) = (
        fields::parse("user_id", &body.user_id, |id| {
            id.parse::<UserId>().map_err(|_| "must be a user id (UUID)")
        }),
        fields::required("password", &body.password),
    )
        .collect()?;
    // The confirmation password is checked through the login throttle; only a wrong password
    // keeps its attempt.
    let email = accounts::find(&cx.state.db, cx.user.user_id)
        .await?
        .ok_or(ApiError::Unauthorized("the account no longer exists"))?
        .email;
    cx.state.login_throttle.admit(&email, cx.origin.ip).await?;
    let mut conn = cx.bound().await?;
    let done = members::transfer_ownership(&mut conn, &cx.acting(), target, password).await;
    if !matches!(done, Err(MembershipError::WrongPassword)) {
        cx.state
            .login_throttle
            .succeeded(&email, cx.origin.ip)
            .await;
    }
    let done = done?;
    Ok(HttpResponse::Ok().json(TransferResult {
        previous_owner: done.previous_owner.into(),
        owner: done.new_owner.into(),
    }))
}
