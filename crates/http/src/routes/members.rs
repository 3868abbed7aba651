//! `/api/v1/users` on a tenant host: the organization's members (list, read, add, change role,
//! remove, deactivate, activate). `{id}` is the user id; anyone who is not a member of this
//! organization is 404. `/api/v1/users/me` is the caller's own account (`routes::me`).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tenantry_public::memberships::{self, Member, MemberFilter, Role};
use tenantry_public::names::display_name;
use tenantry_public::{passwords, users, DomainName, Email, MembershipId, Password, UserId};
use tenantry_tenant::access::{self, Permission};
use tenantry_tenant::members::{self, Acting, MemberError, NewAccount};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::{RequestOrigin, TenantUser};
use crate::error::{ApiError, Validator};
use crate::host::request_host;
use crate::routes::projects::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::routes::verification::VERIFY_EMAIL_PATH;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    /// The user id.
    pub id: Uuid,
    pub email: String,
    pub full_name: String,
    #[schema(example = "member")]
    pub role: String,
    /// Whether the membership in this organization is active (not the account).
    pub is_active: bool,
    pub email_verified: bool,
    /// When the account joined this organization.
    pub joined_at: DateTime<Utc>,
}

impl From<Member> for MemberView {
    fn from(m: Member) -> Self {
        Self {
            id: m.user_id.0,
            email: m.email,
            full_name: m.full_name,
            role: m.role.as_str().to_owned(),
            is_active: m.is_active,
            email_verified: m.email_verified,
            joined_at: m.joined_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberPage {
    pub results: Vec<MemberView>,
    /// The next page's URL, or null on the last page.
    pub next: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct MemberQuery {
    /// Only members with this role: owner, admin, member or viewer.
    pub role: Option<String>,
    /// Case-insensitive part of the email or full name.
    pub search: Option<String>,
    /// Page size, 1 to 100 (default 20; larger values are capped at 100).
    pub limit: Option<String>,
    /// The opaque cursor from a previous page's `next`.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AddMember {
    #[schema(example = "ann@acme.test")]
    pub email: Option<String>,
    /// admin, member or viewer; at most the caller's own role.
    #[schema(example = "member")]
    pub role: Option<String>,
    /// Required when no account has this email (the account is created); ignored otherwise.
    pub full_name: Option<String>,
    /// Required (10 to 128 characters) when no account has this email; ignored otherwise, so
    /// an existing account's password is never changed or revealed.
    pub password: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChangeRole {
    /// admin, member or viewer; at most the caller's own role.
    #[schema(example = "admin")]
    pub role: Option<String>,
}

/// Parses `limit` as the list endpoints do: 1..=100, default 20, larger values capped.
pub(crate) fn parse_limit(raw: Option<&str>) -> Result<i64, ApiError> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if n >= 1 => Ok(n.min(MAX_LIMIT)),
            _ => Err(ApiError::BadRequest(
                "limit must be a whole number from 1 to 100".into(),
            )),
        },
    }
}

pub(crate) fn encode_cursor(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

pub(crate) fn decode_cursor(cursor: &str) -> Result<Uuid, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| Uuid::from_slice(&bytes).ok())
        .ok_or_else(|| ApiError::BadRequest("the cursor is not valid".into()))
}

/// The URL of the next page: this request's URL with `cursor` replaced.
pub(crate) fn next_url(req: &HttpRequest, cursor: Uuid) -> String {
    let mut query: Vec<(String, String)> =
        web::Query::<Vec<(String, String)>>::from_query(req.query_string())
            .map(|q| q.into_inner())
            .unwrap_or_default();
    query.retain(|(k, _)| k != "cursor");
    query.push(("cursor".into(), encode_cursor(cursor)));
    let qs = query
        .iter()
        .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
        .collect::<Vec<_>>()
        .join("&");
    format!(
        "{}://{}{}?{qs}",
        req.connection_info().scheme(),
        request_host(req).unwrap_or_default(),
        req.path(),
    )
}

fn encode_component(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The acting caller, for domain operations.
pub(crate) fn acting<'a>(user: &TenantUser, origin: &'a RequestOrigin) -> Acting<'a> {
    Acting {
        company: user.tenant.route().company_id,
        user: user.user_id,
        actor: user.actor,
        origin: &origin.0,
    }
}

/// The one place member errors become statuses.
pub(crate) fn member_error(e: MemberError) -> ApiError {
    match e {
        MemberError::NotFound => ApiError::NotFound,
        MemberError::AlreadyMember => {
            ApiError::conflict_on("email", "is already a member of this organization")
        }
        e @ (MemberError::PlanLimit { .. } | MemberError::Rule(_) | MemberError::NotAllowed(_)) => {
            ApiError::Forbidden(e.to_string())
        }
        MemberError::AccountRequired => {
            ApiError::validation("password", "is required to create a new account")
        }
        e @ MemberError::AccountRace => ApiError::Conflict {
            detail: e.to_string(),
            errors: Default::default(),
        },
        MemberError::TransferToSelf => {
            ApiError::validation("user_id", "must be another member of this organization")
        }
        MemberError::TargetInactive => {
            ApiError::conflict_on("user_id", "has a deactivated membership; activate it first")
        }
        MemberError::TargetUnverified => ApiError::conflict_on(
            "user_id",
            "has not verified their email address; only a verified member can become the owner",
        ),
        MemberError::Db(e) => e.into(),
    }
}

fn role_rule(e: access::RoleRuleError) -> ApiError {
    ApiError::Forbidden(e.to_string())
}

/// Lists the organization's members in the order they joined (keyset pages).
#[utoipa::path(get, path = "/api/v1/users", tag = "members", params(MemberQuery),
    security(("bearer" = [])),
    responses((status = 200, body = MemberPage),
              (status = 400, description = "Bad role, cursor or limit", content_type = "application/problem+json"),
              (status = 401, description = "No or bad token", content_type = "application/problem+json")))]
pub async fn list(
    user: TenantUser,
    state: web::Data<AppState>,
    query: web::Query<MemberQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    user.require(Permission::MembersRead)?;
    let limit = parse_limit(query.limit.as_deref())?;
    let role = query
        .role
        .as_deref()
        .map(|r| Role::parse(r).map_err(|e| ApiError::BadRequest(format!("role {e}"))))
        .transpose()?;
    let search = query
        .search
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    if search.as_ref().is_some_and(|s| s.chars().count() > 200) {
        return Err(ApiError::BadRequest(
            "search must be at most 200 characters".into(),
        ));
    }
    let after = query
        .cursor
        .as_deref()
        .map(decode_cursor)
        .transpose()?
        .map(MembershipId);
    let client = state.db.public().await?;
    let page = memberships::list(
        client.client(),
        user.tenant.route().company_id,
        &MemberFilter { role, search },
        after,
        limit,
    )
    .await?;
    drop(client);
    let next = match (page.has_more, page.members.last()) {
        (true, Some(last)) => Some(next_url(&req, last.membership_id.0)),
        _ => None,
    };
    Ok(HttpResponse::Ok().json(MemberPage {
        results: page.members.into_iter().map(MemberView::from).collect(),
        next,
    }))
}

/// One member of this organization.
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "members",
    params(("id" = Uuid, Path, description = "User id")), security(("bearer" = [])),
    responses((status = 200, body = MemberView),
              (status = 404, description = "Not a member of this organization", content_type = "application/problem+json")))]
pub async fn get(
    user: TenantUser,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    user.require(Permission::MembersRead)?;
    let client = state.db.public().await?;
    let member = memberships::get_member(
        client.client(),
        user.tenant.route().company_id,
        UserId(*id),
        false,
    )
    .await?
    .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(MemberView::from(member)))
}

/// Adds a member directly. An existing account just gets the membership; for a new email the
/// account is created too (full_name and password required). Counts against the plan's
/// `max_members` (403 when full).
#[utoipa::path(post, path = "/api/v1/users", tag = "members", request_body = AddMember,
    security(("bearer" = [])),
    responses((status = 201, body = MemberView),
              (status = 403, description = "Not admin, role above the caller's or owner, or the plan is full", content_type = "application/problem+json"),
              (status = 409, description = "Already a member", content_type = "application/problem+json"),
              (status = 422, description = "Invalid values, or password/full_name missing for a new account", content_type = "application/problem+json")))]
pub async fn create(
    user: TenantUser,
    origin: RequestOrigin,
    state: web::Data<AppState>,
    body: web::Json<AddMember>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    user.require(Permission::MembersManage)?;
    let mut v = Validator::new();
    let email = v
        .required("email", &body.email)
        .and_then(|e| v.check("email", Email::parse(e)));
    let role = v
        .required("role", &body.role)
        .and_then(|r| v.check("role", Role::parse(r)));
    v.finish()?;
    let (Some(email), Some(role)) = (email, role) else {
        return Err(anyhow::anyhow!("validator passed with a missing field").into());
    };
    access::may_grant(user.role, role).map_err(role_rule)?;

    let exists = {
        let client = state.db.public().await?;
        users::find_by_email(client.client(), email.as_str())
            .await?
            .is_some()
    };
    let new_account = if exists {
        None
    } else {
        let mut v = Validator::new();
        let password = match &body.password {
            None => {
                v.add("password", "is required to create a new account");
                None
            }
            Some(p) => v.check("password", Password::parse(p)),
        };
        let full_name = match &body.full_name {
            None => {
                v.add("full_name", "is required to create a new account");
                None
            }
            Some(n) => v.check("full_name", display_name(n, 200)),
        };
        v.finish()?;
        let (Some(password), Some(full_name)) = (password, full_name) else {
            return Err(anyhow::anyhow!("validator passed with a missing field").into());
        };
        // Hashed before any transaction opens: no lock is held during the slow part.
        let password_hash = passwords::hash(&password)
            .await
            .map_err(|e| ApiError::Unexpected(e.into()))?;
        Some(NewAccount {
            password_hash,
            full_name,
        })
    };
    // The verification link points at the host this request came to (this tenant's).
    let host = request_host(&req)
        .and_then(|h| DomainName::from_host_header(h).ok())
        .ok_or_else(|| ApiError::BadRequest("the Host header is missing".into()))?;
    let settings = &state.settings;
    let link = |token: &str| settings.link(host.as_str(), VERIFY_EMAIL_PATH, token);
    let mut conn = user.tenant.connect(&state.db).await?;
    let (member, verification) = members::add(
        &mut conn,
        &acting(&user, &origin),
        &email,
        role,
        new_account,
        &link,
    )
    .await
    .map_err(member_error)?;
    drop(conn);
    state.mail.push(verification).await;
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
              (status = 403, description = "Not allowed by the role rules", content_type = "application/problem+json"),
              (status = 404, description = "Not a member of this organization", content_type = "application/problem+json"),
              (status = 422, description = "Invalid role", content_type = "application/problem+json")))]
pub async fn update(
    user: TenantUser,
    origin: RequestOrigin,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: web::Json<ChangeRole>,
) -> Result<HttpResponse, ApiError> {
    user.require(Permission::MembersManage)?;
    let mut v = Validator::new();
    let role = v
        .required("role", &body.role)
        .and_then(|r| v.check("role", Role::parse(r)));
    v.finish()?;
    let Some(role) = role else {
        return Err(anyhow::anyhow!("validator passed with a missing field").into());
    };
    let mut conn = user.tenant.connect(&state.db).await?;
    let member = members::change_role(&mut conn, &acting(&user, &origin), UserId(*id), role)
        .await
        .map_err(member_error)?;
    Ok(HttpResponse::Ok().json(MemberView::from(member)))
}

/// Removes a member from this organization (the account stays). Their sessions here end at once.
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "members",
    params(("id" = Uuid, Path, description = "User id")), security(("bearer" = [])),
    responses((status = 204, description = "Removed"),
              (status = 403, description = "Not allowed by the role rules (owner, self, higher role)", content_type = "application/problem+json"),
              (status = 404, description = "Not a member of this organization", content_type = "application/problem+json")))]
pub async fn delete(
    user: TenantUser,
    origin: RequestOrigin,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    user.require(Permission::MembersManage)?;
    let mut conn = user.tenant.connect(&state.db).await?;
    members::remove(&mut conn, &acting(&user, &origin), UserId(*id))
        .await
        .map_err(member_error)?;
    Ok(HttpResponse::NoContent().finish())
}

/// Deactivates a membership: the member can no longer log in or refresh here (their sessions in
/// this organization end at once). The seat stays taken.
#[utoipa::path(post, path = "/api/v1/users/{id}/deactivate", tag = "members",
    params(("id" = Uuid, Path, description = "User id")), security(("bearer" = [])),
    responses((status = 200, body = MemberView),
              (status = 403, description = "Not allowed by the role rules (owner, self, higher role)", content_type = "application/problem+json"),
              (status = 404, description = "Not a member of this organization", content_type = "application/problem+json")))]
pub async fn deactivate(
    user: TenantUser,
    origin: RequestOrigin,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    set_active(user, origin, state, *id, false).await
}

/// Activates a deactivated membership again.
#[utoipa::path(post, path = "/api/v1/users/{id}/activate", tag = "members",
    params(("id" = Uuid, Path, description = "User id")), security(("bearer" = [])),
    responses((status = 200, body = MemberView),
              (status = 403, description = "Not allowed by the role rules", content_type = "application/problem+json"),
              (status = 404, description = "Not a member of this organization", content_type = "application/problem+json")))]
pub async fn activate(
    user: TenantUser,
    origin: RequestOrigin,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    set_active(user, origin, state, *id, true).await
}

async fn set_active(
    user: TenantUser,
    origin: RequestOrigin,
    state: web::Data<AppState>,
    id: Uuid,
    active: bool,
) -> Result<HttpResponse, ApiError> {
    user.require(Permission::MembersManage)?;
    let mut conn = user.tenant.connect(&state.db).await?;
    let member = members::set_active(&mut conn, &acting(&user, &origin), UserId(id), active)
        .await
        .map_err(member_error)?;
    Ok(HttpResponse::Ok().json(MemberView::from(member)))
}
