//! `/api/v1/invitations` on a tenant host: admins invite people by email, list and revoke
//! invitations; the invited person accepts with the emailed token (no login needed).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tenantry_public::memberships::Role;
use tenantry_public::names::display_name;
use tenantry_public::{passwords, users, DomainName, Email, Password};
use tenantry_tenant::access::{self, Permission};
use tenantry_tenant::invitations::{
    self, Invitation, InvitationError, InvitationId, InvitationStatus,
};
use tenantry_tenant::members::NewAccount;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::{RequestOrigin, TenantUser};
use crate::error::{ApiError, Validator};
use crate::host::{request_host, Tenant};
use crate::routes::members::{acting, decode_cursor, next_url, parse_limit, MemberView};
use crate::state::AppState;

/// The path of the accept page linked from invitation emails.
pub const ACCEPT_PATH: &str = "/accept-invitation";

#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationView {
    pub id: Uuid,
    pub email: String,
    #[schema(example = "member")]
    pub role: String,
    /// pending, accepted, expired or revoked.
    #[schema(example = "pending")]
    pub status: String,
    /// The user who sent it.
    pub invited_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub accepted_by: Option<Uuid>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<Invitation> for InvitationView {
    fn from(i: Invitation) -> Self {
        Self {
            id: i.id.0,
            email: i.email,
            role: i.role.as_str().to_owned(),
            status: i.status.as_str().to_owned(),
            invited_by: i.invited_by.map(|u| u.0),
            created_at: i.created_at,
            expires_at: i.expires_at,
            accepted_at: i.accepted_at,
            accepted_by: i.accepted_by.map(|u| u.0),
            revoked_at: i.revoked_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationPage {
    pub results: Vec<InvitationView>,
    /// The next page's URL, or null on the last page.
    pub next: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct InvitationQuery {
    /// Only invitations in this status: pending, accepted, expired or revoked.
    pub status: Option<String>,
    /// Page size, 1 to 100 (default 20; larger values are capped at 100).
    pub limit: Option<String>,
    /// The opaque cursor from a previous page's `next`.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateInvitation {
    #[schema(example = "ann@acme.test")]
    pub email: Option<String>,
    /// admin, member or viewer; at most the caller's own role.
    #[schema(example = "member")]
    pub role: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AcceptInvitation {
    /// The token from the emailed link.
    pub token: Option<String>,
    /// Required when no account has the invited email; ignored otherwise.
    pub full_name: Option<String>,
    /// Required (10 to 128 characters) when no account has the invited email. Ignored for an
    /// existing account: the token proves the address, and checking a password here would give
    /// anyone holding a link a second place to guess it.
    pub password: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptedView {
    pub member: MemberView,
    /// True when the account was created by this acceptance.
    pub account_created: bool,
}

/// The one place invitation errors become statuses.
fn invitation_error(e: InvitationError) -> ApiError {
    match e {
        InvitationError::NotFound => ApiError::NotFound,
        e @ InvitationError::Gone(_) => ApiError::Gone(e.to_string()),
        e @ InvitationError::AlreadyAccepted => ApiError::Conflict {
            detail: e.to_string(),
            errors: Default::default(),
        },
        InvitationError::PendingExists => ApiError::conflict_on(
            "email",
            "already has a pending invitation; revoke it to send a new one",
        ),
        InvitationError::AlreadyMember => {
            ApiError::conflict_on("email", "is already a member of this organization")
        }
        e @ (InvitationError::PlanLimit { .. }
        | InvitationError::Rule(_)
        | InvitationError::NotAllowed(_)) => ApiError::Forbidden(e.to_string()),
        InvitationError::AccountRequired => {
            ApiError::validation("password", "is required to create a new account")
        }
        e @ InvitationError::AccountRace => ApiError::Conflict {
            detail: e.to_string(),
            errors: Default::default(),
        },
        InvitationError::Db(e) => e.into(),
    }
}

/// Invites someone by email: stores the invitation (the token only as its hash) and queues the
/// email with the accept link, in one transaction. The token is never returned here.
#[utoipa::path(post, path = "/api/v1/invitations", tag = "invitations",
    request_body = CreateInvitation, security(("bearer" = [])),
    responses((status = 201, body = InvitationView),
              (status = 403, description = "Not admin, or a role above the caller's or owner", content_type = "application/problem+json"),
              (status = 409, description = "Already a member, or an invitation is pending for this email", content_type = "application/problem+json"),
              (status = 422, description = "Invalid values", content_type = "application/problem+json")))]
pub async fn create(
    user: TenantUser,
    origin: RequestOrigin,
    state: web::Data<AppState>,
    body: web::Json<CreateInvitation>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    user.require(Permission::InvitationsManage)?;
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
    access::may_grant(user.role, role).map_err(|e| ApiError::Forbidden(e.to_string()))?;
    // The link points at the host this request came to (already resolved to this tenant).
    let host = request_host(&req)
        .and_then(|h| DomainName::from_host_header(h).ok())
        .ok_or_else(|| ApiError::BadRequest("the Host header is missing".into()))?;
    let settings = &state.settings;
    let mut conn = user.tenant.connect(&state.db).await?;
    let (invitation, email) =
        invitations::create(&mut conn, &acting(&user, &origin), &email, role, |t| {
            settings.link(host.as_str(), ACCEPT_PATH, t)
        })
        .await
        .map_err(invitation_error)?;
    drop(conn);
    state.mail.push([email]).await;
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/api/v1/invitations/{}", invitation.id),
        ))
        .json(InvitationView::from(invitation)))
}

/// Lists invitations newest first (keyset pages), optionally of one status.
#[utoipa::path(get, path = "/api/v1/invitations", tag = "invitations", params(InvitationQuery),
    security(("bearer" = [])),
    responses((status = 200, body = InvitationPage),
              (status = 400, description = "Bad status, cursor or limit", content_type = "application/problem+json"),
              (status = 403, description = "Not admin", content_type = "application/problem+json")))]
pub async fn list(
    user: TenantUser,
    state: web::Data<AppState>,
    query: web::Query<InvitationQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    user.require(Permission::InvitationsManage)?;
    let limit = parse_limit(query.limit.as_deref())?;
    let status = query
        .status
        .as_deref()
        .map(|s| {
            InvitationStatus::parse(s).map_err(|e| ApiError::BadRequest(format!("status {e}")))
        })
        .transpose()?;
    let before = query
        .cursor
        .as_deref()
        .map(decode_cursor)
        .transpose()?
        .map(InvitationId);
    let conn = user.tenant.connect(&state.db).await?;
    let page = invitations::list(&conn, status, before, limit).await?;
    drop(conn);
    let next = match (page.has_more, page.invitations.last()) {
        (true, Some(last)) => Some(next_url(&req, last.id.0)),
        _ => None,
    };
    Ok(HttpResponse::Ok().json(InvitationPage {
        results: page
            .invitations
            .into_iter()
            .map(InvitationView::from)
            .collect(),
        next,
    }))
}

/// Revokes an invitation: its token stops working at once. Revoking a revoked one is a no-op.
#[utoipa::path(delete, path = "/api/v1/invitations/{id}", tag = "invitations",
    params(("id" = Uuid, Path, description = "Invitation id")), security(("bearer" = [])),
    responses((status = 204, description = "Revoked"),
              (status = 403, description = "Not admin", content_type = "application/problem+json"),
              (status = 404, description = "No such invitation in this organization", content_type = "application/problem+json"),
              (status = 409, description = "Already accepted", content_type = "application/problem+json")))]
pub async fn delete(
    user: TenantUser,
    origin: RequestOrigin,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    user.require(Permission::InvitationsManage)?;
    let mut conn = user.tenant.connect(&state.db).await?;
    invitations::revoke(&mut conn, &acting(&user, &origin), InvitationId(*id))
        .await
        .map_err(invitation_error)?;
    Ok(HttpResponse::NoContent().finish())
}

/// Accepts an invitation with its token (no login needed): joins the invited email's account,
/// creating it when there is none (full_name and password then required), and marks the address
/// verified. The token is single-use and only known on the host of the organization that sent it.
#[utoipa::path(post, path = "/api/v1/invitations/accept", tag = "invitations",
    request_body = AcceptInvitation,
    responses((status = 200, body = AcceptedView),
              (status = 403, description = "The organization's plan is full", content_type = "application/problem+json"),
              (status = 404, description = "Unknown token (or another organization's)", content_type = "application/problem+json"),
              (status = 409, description = "Already a member", content_type = "application/problem+json"),
              (status = 410, description = "The invitation was already accepted, revoked, or has expired", content_type = "application/problem+json"),
              (status = 422, description = "Missing token, or full_name/password missing or too weak for a new account", content_type = "application/problem+json")))]
pub async fn accept(
    tenant: Tenant,
    origin: RequestOrigin,
    state: web::Data<AppState>,
    body: web::Json<AcceptInvitation>,
) -> Result<HttpResponse, ApiError> {
    let tenant = tenant.0;
    let mut v = Validator::new();
    let token = v.required("token", &body.token).map(str::to_owned);
    v.finish()?;
    let token = token.unwrap_or_default();

    // Checked first without locks, so a dead token costs no hashing; checked again under a lock.
    let invitation = {
        let conn = tenant.connect(&state.db).await?;
        invitations::find_by_token(&conn, &token)
            .await?
            .ok_or(ApiError::NotFound)?
    };
    if invitation.status != InvitationStatus::Pending {
        return Err(invitation_error(InvitationError::Gone(invitation.status)));
    }
    let exists = {
        let client = state.db.public().await?;
        users::find_by_email(client.client(), &invitation.email)
            .await?
            .is_some()
    };
    let new_account = if exists {
        None
    } else {
        let mut v = Validator::new();
        let full_name = v
            .required("full_name", &body.full_name)
            .and_then(|n| v.check("full_name", display_name(n, 200)));
        let password = v
            .required("password", &body.password)
            .and_then(|p| v.check("password", Password::parse(p)));
        v.finish()?;
        let (Some(full_name), Some(password)) = (full_name, password) else {
            return Err(anyhow::anyhow!("validator passed with a missing field").into());
        };
        let password_hash = passwords::hash(&password)
            .await
            .map_err(|e| ApiError::Unexpected(e.into()))?;
        Some(NewAccount {
            password_hash,
            full_name,
        })
    };
    let mut conn = tenant.connect(&state.db).await?;
    let accepted = invitations::accept(
        &mut conn,
        tenant.route().company_id,
        &token,
        new_account,
        &origin.0,
    )
    .await
    .map_err(invitation_error)?;
    Ok(HttpResponse::Ok().json(AcceptedView {
        member: accepted.member.into(),
        account_created: accepted.account_created,
    }))
}
