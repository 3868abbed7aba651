//! `/api/v1/projects`: list (keyset pages), create, read, update, delete, in the caller's tenant.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use tenantry_public::names::display_name;
use tenantry_tenant::access::Permission;
use tenantry_tenant::projects::{
    self, NewProject, Project, ProjectError, ProjectPatch, ProjectStatus,
};
use tenantry_tenant::ProjectId;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::TenantUser;
use crate::error::{ApiError, Validator};
use crate::host::request_host;
use crate::state::AppState;

pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 100;
const MAX_DESCRIPTION: usize = 10_000;

#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectView {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    #[schema(example = "planned")]
    pub status: String,
    pub start_date: Option<NaiveDate>,
    pub end_date: Option<NaiveDate>,
    pub owner_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Project> for ProjectView {
    fn from(p: Project) -> Self {
        Self {
            id: p.id.0,
            name: p.name,
            description: p.description,
            status: p.status.as_str().to_owned(),
            start_date: p.start_date,
            end_date: p.end_date,
            owner_id: p.owner_id.0,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectPage {
    pub results: Vec<ProjectView>,
    /// The next page's URL, or null on the last page.
    pub next: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// Page size, 1 to 100 (default 20; larger values are capped at 100).
    pub limit: Option<String>,
    /// The opaque cursor from a previous page's `next`.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateProject {
    #[schema(example = "Website relaunch")]
    pub name: Option<String>,
    pub description: Option<String>,
    /// planned (default), active, completed or archived.
    pub status: Option<String>,
    /// YYYY-MM-DD
    pub start_date: Option<String>,
    /// YYYY-MM-DD, not before start_date
    pub end_date: Option<String>,
}

/// Absent fields stay as they are; `null` clears a date.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateProject {
    pub name: Option<String>,
    pub description: Option<String>,
    pub status: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub start_date: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub end_date: Option<Option<String>>,
}

/// Tells an explicit `null` (`Some(None)`) from an absent field (`None`, via `#[serde(default)]`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn parse_date(s: &str) -> Result<NaiveDate, &'static str> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| "must be a date in YYYY-MM-DD form")
}

fn encode_cursor(id: ProjectId) -> String {
    URL_SAFE_NO_PAD.encode(id.0.as_bytes())
}

fn decode_cursor(cursor: &str) -> Result<ProjectId, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| Uuid::from_slice(&bytes).ok())
        .map(ProjectId)
        .ok_or_else(|| ApiError::BadRequest("the cursor is not valid".into()))
}

fn not_found_or(e: ProjectError) -> ApiError {
    match e {
        ProjectError::DatesOutOfOrder => {
            ApiError::validation("end_date", "must not be before start_date")
        }
        ProjectError::Db(db) => db.into(),
    }
}

/// Lists the tenant's projects, newest first.
#[utoipa::path(get, path = "/api/v1/projects", tag = "projects", params(ListQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = ProjectPage),
              (status = 400, description = "Bad cursor or query", content_type = "application/problem+json"),
              (status = 401, description = "No or bad token", content_type = "application/problem+json")))]
pub async fn list(
    user: TenantUser,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    user.require(Permission::ContentRead)?;
    let limit = match query.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if n >= 1 => n.min(MAX_LIMIT),
            _ => {
                return Err(ApiError::BadRequest(
                    "limit must be a whole number from 1 to 100".into(),
                ))
            }
        },
    };
    let before = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let conn = user.tenant.connect(&state.db).await?;
    let page = projects::list(&conn, limit, before).await?;
    let next = match (page.has_more, page.projects.last()) {
        (true, Some(last)) => Some(format!(
            "{}://{}{}?limit={}&cursor={}",
            req.connection_info().scheme(),
            request_host(&req).unwrap_or_default(),
            req.path(),
            limit,
            encode_cursor(last.id)
        )),
        _ => None,
    };
    Ok(HttpResponse::Ok().json(ProjectPage {
        results: page.projects.into_iter().map(ProjectView::from).collect(),
        next,
    }))
}

/// Creates a project owned by the caller. Viewers may not.
#[utoipa::path(post, path = "/api/v1/projects", tag = "projects", request_body = CreateProject,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = ProjectView),
              (status = 403, description = "Viewer", content_type = "application/problem+json"),
              (status = 422, description = "Invalid values", content_type = "application/problem+json")))]
pub async fn create(
    user: TenantUser,
    state: web::Data<AppState>,
    body: web::Json<CreateProject>,
) -> Result<HttpResponse, ApiError> {
    user.require(Permission::ContentWrite)?;
    let mut v = Validator::new();
    let name = v
        .required("name", &body.name)
        .and_then(|n| v.check("name", display_name(n, 200)));
    let description = match &body.description {
        None => Some(String::new()),
        Some(d) if d.chars().count() > MAX_DESCRIPTION => {
            v.add("description", "must be at most 10000 characters");
            None
        }
        Some(d) => Some(d.clone()),
    };
    let status = match &body.status {
        None => Some(ProjectStatus::Planned),
        Some(s) => v.check("status", ProjectStatus::parse(s)),
    };
    let start_date = body
        .start_date
        .as_deref()
        .map(|d| v.check("start_date", parse_date(d)));
    let end_date = body
        .end_date
        .as_deref()
        .map(|d| v.check("end_date", parse_date(d)));
    if let (Some(Some(s)), Some(Some(e))) = (start_date, end_date) {
        if e < s {
            v.add("end_date", "must not be before start_date");
        }
    }
    v.finish()?;
    let (Some(name), Some(description), Some(status)) = (name, description, status) else {
        return Err(anyhow::anyhow!("validator passed with a missing field").into());
    };
    let new = NewProject {
        name,
        description,
        status,
        start_date: start_date.flatten(),
        end_date: end_date.flatten(),
        owner_id: user.user_id,
    };
    let conn = user.tenant.connect(&state.db).await?;
    let project = projects::create(&conn, &new).await.map_err(not_found_or)?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/projects/{}", project.id)))
        .json(ProjectView::from(project)))
}

/// One project of this tenant.
#[utoipa::path(get, path = "/api/v1/projects/{id}", tag = "projects",
    params(("id" = Uuid, Path, description = "Project id")), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = ProjectView),
              (status = 404, description = "No such project in this organization", content_type = "application/problem+json")))]
pub async fn get(
    user: TenantUser,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    user.require(Permission::ContentRead)?;
    let conn = user.tenant.connect(&state.db).await?;
    let project = projects::get(&conn, ProjectId(*id))
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(ProjectView::from(project)))
}

/// Changes some fields of a project. Viewers may not.
#[utoipa::path(patch, path = "/api/v1/projects/{id}", tag = "projects", request_body = UpdateProject,
    params(("id" = Uuid, Path, description = "Project id")), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = ProjectView),
              (status = 403, description = "Viewer", content_type = "application/problem+json"),
              (status = 404, description = "No such project in this organization", content_type = "application/problem+json"),
              (status = 422, description = "Invalid values", content_type = "application/problem+json")))]
pub async fn update(
    user: TenantUser,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: web::Json<UpdateProject>,
) -> Result<HttpResponse, ApiError> {
    user.require(Permission::ContentWrite)?;
    let mut v = Validator::new();
    let name = body
        .name
        .as_deref()
        .and_then(|n| v.check("name", display_name(n, 200)));
    let description = match &body.description {
        Some(d) if d.chars().count() > MAX_DESCRIPTION => {
            v.add("description", "must be at most 10000 characters");
            None
        }
        other => other.clone(),
    };
    let status = body
        .status
        .as_deref()
        .and_then(|s| v.check("status", ProjectStatus::parse(s)));
    let mut date = |field: &str, value: &Option<Option<String>>| match value {
        None => None,
        Some(None) => Some(None),
        Some(Some(d)) => v.check(field, parse_date(d)).map(Some),
    };
    let start_date = date("start_date", &body.start_date);
    let end_date = date("end_date", &body.end_date);
    v.finish()?;
    let patch = ProjectPatch {
        name,
        description,
        status,
        start_date,
        end_date,
    };
    let conn = user.tenant.connect(&state.db).await?;
    let project = projects::update(&conn, ProjectId(*id), &patch)
        .await
        .map_err(not_found_or)?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(ProjectView::from(project)))
}

/// Deletes a project. Viewers may not.
#[utoipa::path(delete, path = "/api/v1/projects/{id}", tag = "projects",
    params(("id" = Uuid, Path, description = "Project id")), security(("bearer" = []), ("api_key" = [])),
    responses((status = 204, description = "Deleted"),
              (status = 403, description = "Viewer", content_type = "application/problem+json"),
              (status = 404, description = "No such project in this organization", content_type = "application/problem+json")))]
pub async fn delete(
    user: TenantUser,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    user.require(Permission::ContentWrite)?;
    let conn = user.tenant.connect(&state.db).await?;
    if projects::delete(&conn, ProjectId(*id)).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound)
    }
}
