//! `/api/v1/projects/{id}/members`: a project's team — list, add (or change a role), remove.
//! Reading takes `content.read`; changing takes `content.write` and, in the domain, being an
//! admin or owner of the organization or a lead of the project.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tenantry_public::UserId;
use tenantry_tenant::access::Permission;
use tenantry_tenant::teams::{self, TeamMember, TeamRole};
use tenantry_tenant::ProjectId;
use utoipa::{OpenApi, ToSchema};

use crate::auth::TenantRequest;
use crate::error::ApiError;
use crate::fields::{self, Fields};
use crate::routes::resource;
use crate::schema;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/projects/{id}/members").get(list).post(put))
        .service(resource("/projects/{id}/members/{user_id}").delete(remove));
}

#[derive(OpenApi)]
#[openapi(paths(list, put, remove))]
pub struct Api;

#[derive(Debug, Serialize, ToSchema)]
pub struct TeamMemberView {
    #[schema(value_type = Uuid)]
    pub project_id: ProjectId,
    #[schema(value_type = Uuid)]
    pub user_id: UserId,
    pub email: String,
    pub full_name: String,
    /// lead or contributor.
    #[schema(example = "contributor")]
    pub role: String,
    pub added_at: DateTime<Utc>,
}

impl From<TeamMember> for TeamMemberView {
    /// Every field named: one added to [`TeamMember`] does not compile until the view decides.
    fn from(member: TeamMember) -> Self {
        let TeamMember {
            project_id,
            user_id,
            email,
            full_name,
            role,
            added_at,
        } = member;
        Self {
            role: role.to_string(),
            project_id,
            user_id,
            email,
            full_name,
            added_at,
        }
    }
}

/// The whole team (a team is small: no pages).
#[derive(Debug, Serialize, ToSchema)]
pub struct TeamView {
    pub results: Vec<TeamMemberView>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PutTeamMember {
    /// An active member of this organization.
    #[schema(schema_with = schema::required_id, required = true)]
    pub user_id: Option<String>,
    /// lead or contributor.
    #[schema(schema_with = schema::team_role, required = true)]
    pub role: Option<String>,
}

/// One project's team: leads first, then in the order they joined.
#[utoipa::path(get, path = "/api/v1/projects/{id}/members", tag = "projects",
    params(("id" = Uuid, Path, description = "Project id")), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = TeamView),
              (status = 404, description = "No such project in this organization")))]
pub async fn list(cx: TenantRequest, id: web::Path<ProjectId>) -> Result<HttpResponse, ApiError> {
    let conn = cx.connect(Permission::ContentRead).await?;
    let team = teams::list(&conn, *id).await?;
    Ok(HttpResponse::Ok().json(TeamView {
        results: team.into_iter().map(TeamMemberView::from).collect(),
    }))
}

/// Puts an active member of the organization on the team, or gives a team member another role.
/// Project leads, admins and owners may.
#[utoipa::path(post, path = "/api/v1/projects/{id}/members", tag = "projects",
    request_body = PutTeamMember,
    params(("id" = Uuid, Path, description = "Project id")), security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = TeamMemberView, description = "Added to the team"),
              (status = 200, body = TeamMemberView, description = "Already on the team: the role is now the one given"),
              (status = 403, description = "Neither a lead of the project nor an admin or owner, or a viewer"),
              (status = 404, description = "No such project in this organization"),
              (status = 409, description = "The project owner stays lead"),
              (status = 422, description = "Invalid values, or the user is not an active member of this organization")))]
pub async fn put(
    cx: TenantRequest,
    id: web::Path<ProjectId>,
    body: web::Json<PutTeamMember>,
) -> Result<HttpResponse, ApiError> {
    cx.require(Permission::ContentWrite)?;
    let (user, role) = (
        fields::parse("user_id", &body.user_id, |u| {
            u.trim()
                .parse::<UserId>()
                .map_err(|_| "must be a user id (UUID)")
        }),
        fields::parse("role", &body.role, TeamRole::parse),
    )
        .collect()?;
    let mut conn = cx.bound().await?;
    let (member, added) =
        teams::put(&mut conn, &cx.acting(), cx.user.role, *id, user, role).await?;
    let view = TeamMemberView::from(member);
    Ok(if added {
        HttpResponse::Created()
            .insert_header((
                header::LOCATION,
                format!(
                    "/api/v1/projects/{}/members/{}",
                    view.project_id, view.user_id
                ),
            ))
            .json(view)
    } else {
        HttpResponse::Ok().json(view)
    })
}

/// Takes someone off the team (never the project owner) and unassigns their open tasks in the
/// project. Project leads, admins and owners may.
#[utoipa::path(delete, path = "/api/v1/projects/{id}/members/{user_id}", tag = "projects",
    params(("id" = Uuid, Path, description = "Project id"),
           ("user_id" = Uuid, Path, description = "User id of the team member")),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 204, description = "Removed; their open tasks in the project are unassigned"),
              (status = 403, description = "Neither a lead of the project nor an admin or owner, or a viewer"),
              (status = 404, description = "No such project in this organization, or not on its team"),
              (status = 409, description = "The project owner is always on the team")))]
pub async fn remove(
    cx: TenantRequest,
    path: web::Path<(ProjectId, UserId)>,
) -> Result<HttpResponse, ApiError> {
    cx.require(Permission::ContentWrite)?;
    let (project, user) = path.into_inner();
    let mut conn = cx.bound().await?;
    teams::remove(&mut conn, &cx.acting(), cx.user.role, project, user).await?;
    Ok(HttpResponse::NoContent().finish())
}
