//! The caller's own account: profile, password, and (base host) organizations.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tenantry_public::names::display_name;
use tenantry_public::{memberships, users, CompanyId, Password, UserId};
use tenantry_tenant::accounts::{self, AccountError};
use utoipa::{OpenApi, ToSchema};

use crate::auth::{Caller, RequestOrigin};
use crate::error::ApiError;
use crate::fields::{self, Fields};
use crate::host::PublicHost;
use crate::routes::resource;
use crate::schema;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    // Before `members`, so `/users/me` is never taken for a member id.
    cfg.service(resource("/me/organizations").get(organizations))
        .service(resource("/users/me").get(get).patch(update))
        .service(resource("/users/me/password").post(change_password));
}

#[derive(OpenApi)]
#[openapi(paths(organizations, get, update, change_password))]
pub struct Api;

#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationView {
    #[schema(value_type = Uuid)]
    pub id: CompanyId,
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
    caller: Caller,
    _: PublicHost,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let client = state.db.public().await?;
    let results = memberships::organizations(client.client(), caller.user_id)
        .await?
        .into_iter()
        .map(|o| OrganizationView {
            id: o.company_id,
            name: o.name,
            slug: o.slug,
            domain: o.domain,
            plan: o.plan,
            status: o.status,
            role: o.role.to_string(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(OrganizationList { results }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeView {
    #[schema(value_type = Uuid)]
    pub id: UserId,
    pub email: String,
    pub full_name: String,
    pub email_verified_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The organization of a tenant token, with the caller's role in it.
    #[schema(value_type = Option<Uuid>)]
    pub organization_id: Option<CompanyId>,
    pub role: Option<String>,
}

fn view(user: users::User, caller: &Caller) -> MeView {
    MeView {
        id: user.id,
        email: user.email,
        full_name: user.full_name,
        email_verified_at: user.email_verified_at,
        created_at: user.created_at,
        organization_id: caller.active_tenant().map(|t| t.route().company_id),
        role: caller.tenant.as_ref().map(|(_, r)| r.to_string()),
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
    #[schema(schema_with = schema::full_name, required = true)]
    pub full_name: Option<String>,
}

/// Changes the caller's display name.
#[utoipa::path(patch, path = "/api/v1/users/me", tag = "account", request_body = UpdateMe,
    security(("bearer" = [])),
    responses((status = 200, body = MeView)))]
pub async fn update(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<UpdateMe>,
) -> Result<HttpResponse, ApiError> {
    let (full_name,) = (fields::parse("full_name", &body.full_name, |n| {
        display_name(n, schema::MAX_PERSON_NAME)
    }),)
        .collect()?;
    let client = state.db.public().await?;
    let user = users::set_full_name(client.client(), caller.user_id, &full_name)
        .await?
        .ok_or(ApiError::Unauthorized("the account no longer exists"))?;
    Ok(HttpResponse::Ok().json(view(user, &caller)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChangePassword {
    #[schema(value_type = String, required = true, nullable = false)]
    pub current_password: Option<String>,
    /// 10 to 128 characters.
    #[schema(schema_with = schema::new_password, required = true)]
    pub new_password: Option<String>,
}

/// Changes the caller's password and ends every other session of the account.
#[utoipa::path(post, path = "/api/v1/users/me/password", tag = "account", request_body = ChangePassword,
    security(("bearer" = [])),
    responses((status = 204, description = "Changed; other sessions ended"),
              (status = 429, description = "Too many failed password checks for this account or from this address; see Retry-After"),
              (status = 422, description = "Wrong current password or invalid new one")))]
pub async fn change_password(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<ChangePassword>,
    origin: RequestOrigin,
) -> Result<HttpResponse, ApiError> {
    caller.require_live_session(&state.db).await?;
    let email = accounts::find(&state.db, caller.user_id)
        .await?
        .ok_or(ApiError::Unauthorized("the account no longer exists"))?
        .email;
    let (current, new) = (
        fields::required("current_password", &body.current_password),
        fields::parse("new_password", &body.new_password, |p| {
            Password::parse_for(p, &email)
        }),
    )
        .collect()?;
    // The current password is checked through the login throttle: this is no place to guess it.
    state.login_throttle.admit(&email, origin.0.ip).await?;
    let changed = accounts::change_password(
        &state.db,
        caller.active_tenant(),
        caller.user_id,
        caller.session_id,
        current,
        &new,
        &origin.0,
    )
    .await;
    // Only a wrong current password keeps its attempt.
    if !matches!(changed, Err(AccountError::WrongPassword)) {
        state.login_throttle.succeeded(&email, origin.0.ip).await;
    }
    changed?;
    Ok(HttpResponse::NoContent().finish())
}
