//! `/api/v1/users` on a tenant host: the organization's members (list, read, add, change role,
//! remove, deactivate, activate). `{id}` is the user id; anyone who is not a member of this
//! organization is 404. `/api/v1/users/me` is the caller's own account (`routes::me`).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use tenantry_public::memberships::{self, MemberFilter, Role};
use tenantry_public::{Email, MembershipId, UserId};
use tenantry_tenant::access::{self, Permission};
use tenantry_tenant::members;
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::TenantRequest;
use crate::config::links;
use crate::error::ApiError;
use crate::fields::{self, Fields};
use crate::host::link_host;
use crate::pagination::{ListQuery, Page, PageParams, Paging};
use crate::routes::resource;
use crate::schema;
use crate::views::{AccountFields, Invitee, MemberView};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/users").get(list).post(create))
        .service(
            resource("/users/{id}")
                .get(get)
                .patch(update)
                .delete(delete),
        )
        .service(resource("/users/{id}/deactivate").post(deactivate))
        .service(resource("/users/{id}/activate").post(activate));
}

#[derive(OpenApi)]
#[openapi(paths(list, get, create, update, delete, deactivate, activate))]
pub struct Api;

#[derive(Debug, Deserialize, IntoParams)]
pub struct MemberQuery {
    /// Only members with this role: owner, admin, member or viewer.
    #[param(schema_with = schema::role)]
    pub role: Option<String>,
    /// Case-insensitive part of the email or full name.
    #[param(schema_with = schema::search)]
    pub search: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AddMember {
    /// Who joins, with which role (as in an invitation).
    #[serde(flatten)]
    pub member: Invitee,
    /// The new account's name.
    #[schema(schema_with = schema::full_name, required = true)]
    pub full_name: Option<String>,
    /// The new account's password: 10 to 128 characters, not a common password, not containing
    /// the email's name.
    #[schema(schema_with = schema::new_password, required = true)]
    pub password: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChangeRole {
    /// admin, member or viewer; at most the caller's own role.
    #[schema(example = "admin")]
    #[schema(schema_with = schema::grantable_role, required = true)]
    pub role: Option<String>,
}

/// Lists the organization's members in the order they joined (keyset pages).
#[utoipa::path(get, path = "/api/v1/users", tag = "members", params(MemberQuery, PageParams),
    security(("bearer" = [])),
    responses((status = 200, body = Page<MemberView>),
              (status = 400, description = "Bad role, cursor or limit")))]
pub async fn list(
    cx: TenantRequest,
    query: web::Query<MemberQuery>,
    paging: Paging,
) -> Result<HttpResponse, ApiError> {
    cx.require(Permission::MembersRead)?;
    let role = fields::query("role", &query.role, Role::parse)?;
    let search = fields::query("search", &query.search, fields::search)?.filter(|s| !s.is_empty());
    let page = paging.request::<MembershipId>(
        ListQuery::new("joined_at")
            .filter("role", role)
            .filter("search", search.as_deref()),
    )?;
    let client = cx.state.db.public().await?;
    let members = memberships::list(
        client.client(),
        cx.user.tenant.route().company_id,
        &MemberFilter { role, search },
        page.after().copied(),
        page.limit(),
    )
    .await?;
    drop(client);
    Ok(HttpResponse::Ok().json(page.respond(members, |m| m.membership_id, MemberView::from)))
}

/// One member of this organization.
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "members",
    params(("id" = Uuid, Path, description = "User id")), security(("bearer" = [])),
    responses((status = 200, body = MemberView),
              (status = 404, description = "Not a member of this organization")))]
pub async fn get(cx: TenantRequest, id: web::Path<UserId>) -> Result<HttpResponse, ApiError> {
    cx.require(Permission::MembersRead)?;
    let client = cx.state.db.public().await?;
    let member = memberships::get_member(
        client.client(),
        cx.user.tenant.route().company_id,
        *id,
        false,
    )
    .await?
    .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(MemberView::from(member)))
}

/// Creates an account for a new email (full_name and password required; a verification email
/// goes to the address) and makes it a member. An email that already has an account is refused
/// with 409 and nothing about that account: it joins through an invitation, whose link proves
/// the address's owner wants to. Counts against the plan's `max_members` (403 when full).
#[utoipa::path(post, path = "/api/v1/users", tag = "members", request_body = AddMember,
    security(("bearer" = [])),
    responses((status = 201, body = MemberView),
              (status = 403, description = "Not admin, role above the caller's or owner, or the plan is full"),
              (status = 409, description = "Already a member, or the email has an account (invite it instead)"),
              (status = 422, description = "Invalid values, or password/full_name missing")))]
pub async fn create(
    cx: TenantRequest,
    body: web::Json<AddMember>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    cx.require(Permission::MembersManage)?;
    let body = body.into_inner();
    let (email, role) = (
        fields::parse("email", &body.member.email, Email::parse),
        fields::parse("role", &body.member.role, Role::parse),
    )
        .collect()?;
    access::may_grant(cx.user.role, role)?;
    let account = AccountFields {
        full_name: body.full_name,
        password: body.password,
    };
    let new_account = account.into_new_account(email.as_str()).await?;
    // The verification link points at the host this request came to (this tenant's).
    let host = link_host(&req)?;
    let settings = &cx.state.settings;
    let link = |token: &str| settings.link(host.as_str(), links::VERIFY_EMAIL, token);
    let mut conn = cx.bound().await?;
    let (member, emails) =
        members::add(&mut conn, &cx.acting(), &email, role, new_account, &link).await?;
    drop(conn);
    cx.state.mail.push(emails).await;
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/api/v1/users/{}", member.user_id),
        ))
        .json(MemberView::from(member)))
}

/// Changes a member's role. Nobody grants a role above their own, the owner role only moves by
/// transfer, and nobody changes the owner's or their own role here.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "members", request_body = ChangeRole,
    params(("id" = Uuid, Path, description = "User id")), security(("bearer" = [])),
    responses((status = 200, body = MemberView),
              (status = 403, description = "Not allowed by the role rules"),
              (status = 404, description = "Not a member of this organization"),
              (status = 422, description = "Invalid role")))]
pub async fn update(
    cx: TenantRequest,
    id: web::Path<UserId>,
    body: web::Json<ChangeRole>,
) -> Result<HttpResponse, ApiError> {
    cx.require(Permission::MembersManage)?;
    let (role,) = (fields::parse("role", &body.role, Role::parse),).collect()?;
    let mut conn = cx.bound().await?;
    let member = members::change_role(&mut conn, &cx.acting(), *id, role).await?;
    Ok(HttpResponse::Ok().json(MemberView::from(member)))
}

/// Removes a member from this organization (the account stays). Their sessions here end at once.
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "members",
    params(("id" = Uuid, Path, description = "User id")), security(("bearer" = [])),
    responses((status = 204, description = "Removed"),
              (status = 403, description = "Not allowed by the role rules (owner, self, higher role)"),
              (status = 404, description = "Not a member of this organization")))]
pub async fn delete(cx: TenantRequest, id: web::Path<UserId>) -> Result<HttpResponse, ApiError> {
    let mut conn = cx.connect(Permission::MembersManage).await?;
    members::remove(&mut conn, &cx.acting(), *id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Deactivates a membership: the member can no longer log in or refresh here (their sessions in
/// this organization end at once). The seat stays taken.
#[utoipa::path(post, path = "/api/v1/users/{id}/deactivate", tag = "members",
    params(("id" = Uuid, Path, description = "User id")), security(("bearer" = [])),
    responses((status = 200, body = MemberView),
              (status = 403, description = "Not allowed by the role rules (owner, self, higher role)"),
              (status = 404, description = "Not a member of this organization")))]
pub async fn deactivate(
    cx: TenantRequest,
    id: web::Path<UserId>,
) -> Result<HttpResponse, ApiError> {
    set_active(cx, *id, false).await
}

/// Activates a deactivated membership again.
#[utoipa::path(post, path = "/api/v1/users/{id}/activate", tag = "members",
    params(("id" = Uuid, Path, description = "User id")), security(("bearer" = [])),
    responses((status = 200, body = MemberView),
              (status = 403, description = "Not allowed by the role rules"),
              (status = 404, description = "Not a member of this organization")))]
pub async fn activate(cx: TenantRequest, id: web::Path<UserId>) -> Result<HttpResponse, ApiError> {
    set_active(cx, *id, true).await
}

async fn set_active(cx: TenantRequest, id: UserId, active: bool) -> Result<HttpResponse, ApiError> {
    let mut conn = cx.connect(Permission::MembersManage).await?;
    let member = members::set_active(&mut conn, &cx.acting(), id, active).await?;
    Ok(HttpResponse::Ok().json(MemberView::from(member)))
}
