//! `/api/v1/invitations` on a tenant host: admins invite people by email, list and revoke
//! invitations; the invited person accepts with the emailed token (no login needed).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tenantry_public::memberships::Role;
use tenantry_public::{Email, UserId};
use tenantry_tenant::access::{self, Permission};
use tenantry_tenant::invitations::{self, Invitation, InvitationStatus};
use tenantry_tenant::members::{Joined, MembershipError};
use tenantry_tenant::InvitationId;
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::{RequestOrigin, TenantRequest};
use crate::config::links;
use crate::error::ApiError;
use crate::fields::{self, Fields};
use crate::host::{link_host, Tenant};
use crate::pagination::{ListQuery, Page, PageParams, Paging};
use crate::routes::resource;
use crate::schema;
use crate::state::AppState;
use crate::throttle::Verdict;
use crate::views::{AccountFields, Invitee, MemberView};

pub fn configure(cfg: &mut web::ServiceConfig) {
    // `/invitations/accept` before `/invitations/{id}`, so it is never taken for an id.
    cfg.service(resource("/invitations").get(list).post(create))
        .service(resource("/invitations/accept").post(accept))
        .service(resource("/invitations/{id}").delete(delete));
}

#[derive(OpenApi)]
#[openapi(paths(create, list, delete, accept))]
pub struct Api;

#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationView {
    #[schema(value_type = Uuid)]
    pub id: InvitationId,
    pub email: String,
    #[schema(example = "member")]
    pub role: String,
    /// pending, accepted, expired or revoked.
    #[schema(example = "pending")]
    pub status: String,
    /// The user who sent it.
    #[schema(value_type = Option<Uuid>)]
    pub invited_by: Option<UserId>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
    #[schema(value_type = Option<Uuid>)]
    pub accepted_by: Option<UserId>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<Invitation> for InvitationView {
    /// Every field named: one added to [`Invitation`] does not compile until the view decides.
    fn from(invitation: Invitation) -> Self {
        let Invitation {
            id,
            email,
            role,
            status,
            invited_by,
            created_at,
            expires_at,
            accepted_at,
            accepted_by,
            revoked_at,
        } = invitation;
        Self {
            role: role.to_string(),
            status: status.to_string(),
            id,
            email,
            invited_by,
            created_at,
            expires_at,
            accepted_at,
            accepted_by,
            revoked_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct InvitationQuery {
    /// Only invitations in this status: pending, accepted, expired or revoked.
    #[param(schema_with = schema::invitation_status)]
    pub status: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AcceptInvitation {
    /// The token from the emailed link.
    #[schema(value_type = String, required = true, nullable = false)]
    pub token: Option<String>,
    /// For a new account, or one whose email was never verified (its password and name are then
    /// replaced, and its sessions and API keys end: whoever set them may not have owned the
    /// address). A verified account's password is never asked for here: the token proves the
    /// address, and checking a password would give anyone holding a link a second place to
    /// guess it.
    #[serde(flatten)]
    pub account: AccountFields,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptedView {
    pub member: MemberView,
    /// True when the account was created by this acceptance.
    pub account_created: bool,
    /// True when an account whose email was never verified took the accepted password and name.
    pub account_reclaimed: bool,
}

/// Invites someone by email: stores the invitation (the token only as its hash) and queues the
/// email with the accept link, in one transaction. The token is never returned here.
#[utoipa::path(post, path = "/api/v1/invitations", tag = "invitations",
    request_body = Invitee, security(("bearer" = [])),
    responses((status = 201, body = InvitationView),
              (status = 403, description = "Not admin, or a role above the caller's or owner"),
              (status = 409, description = "Already a member, or an invitation is pending for this email"),
              (status = 429, description = "Too many invitations to this address, or from this organization, this hour; see Retry-After")))]
pub async fn create(
    cx: TenantRequest,
    body: web::Json<Invitee>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    cx.require(Permission::InvitationsManage)?;
    let (email, role) = (
        fields::parse("email", &body.email, Email::parse),
        fields::parse("role", &body.role, Role::parse),
    )
        .collect()?;
    access::may_grant(cx.user.role, role)?;
    // Counted per address (by every organization) and per organization, before anything is
    // written: nobody floods an inbox, or everyone's inboxes, with invitations.
    let company = cx.user.tenant.route().company_id.to_string();
    let per_org = cx.state.settings.invitation_throttle.per_ip;
    if let Verdict::Limited { retry_after } = cx
        .state
        .invitation_throttle
        .attempt_with(email.as_str(), None, &[("org", &company, per_org)])
        .await
    {
        return Err(ApiError::TooManyRequests {
            detail: "too many invitations; try again later".into(),
            retry_after,
        });
    }
    // The link points at the host this request came to (already resolved to this tenant).
    let host = link_host(&req)?;
    let settings = &cx.state.settings;
    let mut conn = cx.bound().await?;
    let (invitation, email) = invitations::create(&mut conn, &cx.acting(), &email, role, |t| {
        settings.link(host.as_str(), links::ACCEPT_INVITATION, t)
    })
    .await?;
    drop(conn);
    cx.state.mail.push([email]).await;
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/api/v1/invitations/{}", invitation.id),
        ))
        .json(InvitationView::from(invitation)))
}

/// Lists invitations newest first (keyset pages), optionally of one status.
#[utoipa::path(get, path = "/api/v1/invitations", tag = "invitations", params(InvitationQuery, PageParams),
    security(("bearer" = [])),
    responses((status = 200, body = Page<InvitationView>),
              (status = 400, description = "Bad status, cursor or limit"),
              (status = 403, description = "Not admin")))]
pub async fn list(
    cx: TenantRequest,
    query: web::Query<InvitationQuery>,
    paging: Paging,
) -> Result<HttpResponse, ApiError> {
    cx.require(Permission::InvitationsManage)?;
    let status = fields::query("status", &query.status, InvitationStatus::parse)?;
    let page =
        paging.request::<InvitationId>(ListQuery::new("-created_at").filter("status", status))?;
    let conn = cx.bound().await?;
    let found = invitations::list(&conn, status, page.after().copied(), page.limit()).await?;
    drop(conn);
    Ok(HttpResponse::Ok().json(page.respond(found, |i| i.id, InvitationView::from)))
}

/// Revokes an invitation: its token stops working at once. Revoking a revoked one is a no-op.
#[utoipa::path(delete, path = "/api/v1/invitations/{id}", tag = "invitations",
    params(("id" = Uuid, Path, description = "Invitation id")), security(("bearer" = [])),
    responses((status = 204, description = "Revoked"),
              (status = 403, description = "Not admin"),
              (status = 404, description = "No such invitation in this organization"),
              (status = 409, description = "Already accepted")))]
pub async fn delete(
    cx: TenantRequest,
    id: web::Path<InvitationId>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = cx.connect(Permission::InvitationsManage).await?;
    invitations::revoke(&mut conn, &cx.acting(), *id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Accepts an invitation with its token (no login needed): joins the invited email's account,
/// creating it when there is none and remaking it when its email was never verified (full_name
/// and password then required), and marks the address verified. The token is single-use and only known on the host of the organization that sent it.
#[utoipa::path(post, path = "/api/v1/invitations/accept", tag = "invitations",
    request_body = AcceptInvitation,
    responses((status = 200, body = AcceptedView),
              (status = 403, description = "The organization's plan is full"),
              (status = 404, description = "Unknown token (or another organization's)"),
              (status = 409, description = "Already a member"),
              (status = 410, description = "The invitation was already accepted, revoked, or has expired"),
              (status = 422, description = "Missing token, or full_name/password missing or too weak for a new or unverified account")))]
pub async fn accept(
    state: web::Data<AppState>,
    tenant: Tenant,
    origin: RequestOrigin,
    body: web::Json<AcceptInvitation>,
) -> Result<HttpResponse, ApiError> {
    let tenant = tenant.0;
    let body = body.into_inner();
    let (token,) = (fields::required("token", &body.token).map(str::to_owned),).collect()?;

    // Checked first without locks, so a dead token costs no hashing; checked again under a lock.
    let invitation = {
        let conn = tenant.connect(&state.db).await?;
        invitations::find_by_token(&conn, &token)
            .await?
            .ok_or(ApiError::NotFound)?
    };
    if invitation.status != InvitationStatus::Pending {
        return Err(MembershipError::InvitationGone(invitation.status).into());
    }
    let new_account = body.account.for_email(&state.db, &invitation.email).await?;
    let mut conn = tenant.connect(&state.db).await?;
    let accepted = invitations::accept(
        &mut conn,
        tenant.route().company_id,
        &token,
        new_account,
        &origin.0,
    )
    .await?;
    drop(conn);
    state.mail.push([accepted.welcome]).await;
    Ok(HttpResponse::Ok().json(AcceptedView {
        member: accepted.member.into(),
        account_created: accepted.joined == Joined::Created,
        account_reclaimed: accepted.joined == Joined::Reclaimed,
    }))
}
