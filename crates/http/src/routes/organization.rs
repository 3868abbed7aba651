//! `/api/v1/organization/*` on a tenant host: the organization as a whole (ownership transfer).

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use tenantry_public::{passwords, users, UserId};
use tenantry_tenant::access::Permission;
use tenantry_tenant::members;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{RequestOrigin, TenantUser};
use crate::error::{ApiError, Validator};
use crate::routes::members::{acting, member_error, MemberView};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
pub struct TransferOwnership {
    /// The member who becomes the owner: active, with a verified email.
    pub user_id: Option<String>,
    /// The current owner's password, to confirm.
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
              (status = 403, description = "Not the owner, or wrong password", content_type = "application/problem+json"),
              (status = 404, description = "The target is not a member of this organization", content_type = "application/problem+json"),
              (status = 409, description = "The target's membership is deactivated or their email is unverified", content_type = "application/problem+json"),
              (status = 422, description = "Missing fields, or the target is the caller", content_type = "application/problem+json")))]
pub async fn transfer_ownership(
    user: TenantUser,
    origin: RequestOrigin,
    state: web::Data<AppState>,
    body: web::Json<TransferOwnership>,
) -> Result<HttpResponse, ApiError> {
    user.require(Permission::OwnershipTransfer)?;
    let mut v = Validator::new();
    let target = v.required("user_id", &body.user_id).and_then(|id| {
        v.check(
            "user_id",
            Uuid::parse_str(id).map_err(|_| "must be a user id (UUID)"),
        )
    });
    let password = v.required("password", &body.password).map(str::to_owned);
    v.finish()?;
    let (Some(target), Some(password)) = (target, password) else {
        return Err(anyhow::anyhow!("validator passed with a missing field").into());
    };

    // Re-authentication, before any lock is taken (hashing is slow).
    let stored = {
        let client = state.db.public().await?;
        users::find_by_id(client.client(), user.user_id)
            .await?
            .map(|u| u.password_hash)
    };
    let ok = passwords::verify(&password, stored)
        .await
        .map_err(|e| ApiError::Unexpected(e.into()))?;
    if !ok {
        return Err(ApiError::Forbidden(
            "the password is incorrect; confirm the transfer with your own password".into(),
        ));
    }

    let mut conn = user.tenant.connect(&state.db).await?;
    let done = members::transfer_ownership(&mut conn, &acting(&user, &origin), UserId(target))
        .await
        .map_err(member_error)?;
    Ok(HttpResponse::Ok().json(TransferResult {
        previous_owner: done.previous_owner.into(),
        owner: done.new_owner.into(),
    }))
}
