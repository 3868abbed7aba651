//! The caller's own account: profile, password, and (base host) organizations.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tenantry_public::names::display_name;
use tenantry_public::{memberships, passwords, sessions, users, Password};
use tenantry_tenant::audit::{self, Action, Actor, Entry};
use tenantry_tenant::TenantDb;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{Caller, RequestOrigin};
use crate::error::{ApiError, Validator};
use crate::host::PublicHost;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationView {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub domain: Option<String>,
    pub plan: String,
    pub status: String,
    pub role: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationList {
    pub results: Vec<OrganizationView>,
}

/// Base host: the organizations the caller belongs to, with their role in each.
#[utoipa::path(get, path = "/api/v1/me/organizations", tag = "account", security(("bearer" = [])),
    responses((status = 200, body = OrganizationList)))]
pub async fn organizations(
    _: PublicHost,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let client = state.db.public().await?;
    let results = memberships::organizations(client.client(), caller.user_id)
        .await?
        .into_iter()
        .map(|o| OrganizationView {
            id: o.company_id.0,
            name: o.name,
            slug: o.slug,
            domain: o.domain,
            plan: o.plan,
            status: o.status,
            role: o.role.as_str().to_owned(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(OrganizationList { results }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeView {
    pub id: Uuid,
    pub email: String,
    pub full_name: String,
    pub email_verified_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The organization of a tenant token, with the caller's role in it.
    pub organization_id: Option<Uuid>,
    pub role: Option<String>,
}

fn view(user: users::User, caller: &Caller) -> MeView {
    MeView {
        id: user.id.0,
        email: user.email,
        full_name: user.full_name,
        email_verified_at: user.email_verified_at,
        created_at: user.created_at,
        organization_id: caller.tenant.as_ref().map(|(t, _)| t.route().company_id.0),
        role: caller.tenant.as_ref().map(|(_, r)| r.as_str().to_owned()),
    }
}

/// The caller's account.
#[utoipa::path(get, path = "/api/v1/users/me", tag = "account", security(("bearer" = [])),
    responses((status = 200, body = MeView)))]
pub async fn get(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let client = state.db.public().await?;
    let user = users::find_by_id(client.client(), caller.user_id)
        .await?
        .ok_or(ApiError::Unauthorized("the account no longer exists"))?;
    Ok(HttpResponse::Ok().json(view(user, &caller)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateMe {
    pub full_name: Option<String>,
}

/// Changes the caller's display name.
#[utoipa::path(patch, path = "/api/v1/users/me", tag = "account", request_body = UpdateMe,
    security(("bearer" = [])),
    responses((status = 200, body = MeView),
              (status = 422, description = "Invalid values", content_type = "application/problem+json")))]
pub async fn update(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<UpdateMe>,
) -> Result<HttpResponse, ApiError> {
    let mut v = Validator::new();
    let full_name = v
        .required("full_name", &body.full_name)
        .and_then(|n| v.check("full_name", display_name(n, 200)));
    v.finish()?;
    let client = state.db.public().await?;
    let user = users::set_full_name(
        client.client(),
        caller.user_id,
        &full_name.unwrap_or_default(),
    )
    .await?
    .ok_or(ApiError::Unauthorized("the account no longer exists"))?;
    Ok(HttpResponse::Ok().json(view(user, &caller)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChangePassword {
    pub current_password: Option<String>,
    /// 10 to 128 characters.
    pub new_password: Option<String>,
}

/// Changes the caller's password and ends every other session of the account.
#[utoipa::path(post, path = "/api/v1/users/me/password", tag = "account", request_body = ChangePassword,
    security(("bearer" = [])),
    responses((status = 204, description = "Changed; other sessions ended"),
              (status = 422, description = "Wrong current password or invalid new one", content_type = "application/problem+json")))]
pub async fn change_password(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<ChangePassword>,
    origin: RequestOrigin,
) -> Result<HttpResponse, ApiError> {
    let mut v = Validator::new();
    let current = v
        .required("current_password", &body.current_password)
        .map(str::to_owned);
    let new = v
        .required("new_password", &body.new_password)
        .and_then(|p| v.check("new_password", Password::parse(p)));
    v.finish()?;
    let (Some(current), Some(new)) = (current, new) else {
        return Err(anyhow::anyhow!("validator passed with a missing field").into());
    };
    let stored = {
        let client = state.db.public().await?;
        users::find_by_id(client.client(), caller.user_id)
            .await?
            .map(|u| u.password_hash)
    };
    let ok = passwords::verify(&current, stored)
        .await
        .map_err(|e| ApiError::Unexpected(e.into()))?;
    if !ok {
        return Err(ApiError::validation("current_password", "is incorrect"));
    }
    let hash = passwords::hash(&new)
        .await
        .map_err(|e| ApiError::Unexpected(e.into()))?;
    match &caller.tenant {
        Some((tenant, _)) => {
            // On a tenant host the change and its audit entry commit together.
            let mut conn = tenant.connect(&state.db).await?;
            let tx = conn.transaction().await?;
            users::set_password_hash(&**tx.client(), caller.user_id, &hash).await?;
            let ended = sessions::revoke_all(
                &**tx.client(),
                caller.user_id,
                caller.session_id,
                "password changed",
            )
            .await?;
            let entry = Entry::new(Action::PasswordChanged)
                .target("user", caller.user_id)
                .after(json!({ "other_sessions_ended": ended }));
            audit::record(&tx, Actor::User(caller.user_id), &origin.0, entry).await?;
            tx.commit().await?;
        }
        None => {
            let mut client = state.db.public().await?;
            let tx = client
                .transaction()
                .await
                .map_err(tenantry_public::db::DbError::from)?;
            users::set_password_hash(&*tx, caller.user_id, &hash).await?;
            sessions::revoke_all(&*tx, caller.user_id, caller.session_id, "password changed")
                .await?;
            tx.commit()
                .await
                .map_err(tenantry_public::db::DbError::from)?;
        }
    }
    Ok(HttpResponse::NoContent().finish())
}
