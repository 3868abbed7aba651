//! `/api/v1/projects`: list (keyset pages), create, read, update, delete, in the caller's tenant.
//! The worked example of a tenant resource (ARCHITECTURE.md, "Adding a tenant resource").

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tenantry_public::UserId;
use tenantry_tenant::access::Permission;
use tenantry_tenant::projects::{
    self, NewProject, Project, ProjectFilter, ProjectOrder, ProjectPatch, ProjectStatus,
    MAX_DESCRIPTION, MAX_NAME,
};
use tenantry_tenant::{rows, ProjectId};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::TenantRequest;
use crate::error::ApiError;
use crate::export::ExportParams;
use crate::fields::{self, Field, Fields};
use crate::pagination::{self, ListQuery, Page, PageParams, Paging, SortKey};
use crate::routes::resource;
use crate::schema;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/projects").get(list).post(create))
        .service(resource("/projects/export").get(export))
        .service(
            resource("/projects/{id}")
                .get(get)
                .patch(update)
                .delete(delete),
        );
}

#[derive(OpenApi)]
#[openapi(paths(list, export, create, get, update, delete))]
pub struct Api;

#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectView {
    #[schema(value_type = Uuid)]
    pub id: ProjectId,
    pub name: String,
    pub description: String,
    #[schema(example = "planned")]
    pub status: String,
    pub start_date: Option<NaiveDate>,
    pub end_date: Option<NaiveDate>,
    #[schema(value_type = Uuid)]
    pub owner_id: UserId,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Project> for ProjectView {
    fn from(p: Project) -> Self {
        Self {
            id: p.id,
            name: p.name,
            description: p.description,
            status: p.status.to_string(),
            start_date: p.start_date,
            end_date: p.end_date,
            owner_id: p.owner_id,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateProject {
    #[schema(example = "Website relaunch")]
    #[schema(schema_with = schema::project_name, required = true)]
    pub name: Option<String>,
    #[schema(schema_with = schema::project_description)]
    pub description: Option<String>,
    /// planned (default), active, completed or archived.
    #[schema(schema_with = schema::project_status)]
    pub status: Option<String>,
    /// YYYY-MM-DD
    #[schema(schema_with = schema::date)]
    pub start_date: Option<String>,
    /// YYYY-MM-DD, not before start_date
    #[schema(schema_with = schema::date)]
    pub end_date: Option<String>,
}

impl TryFrom<CreateProject> for NewProject {
    type Error = ApiError;

    fn try_from(b: CreateProject) -> Result<Self, ApiError> {
        let (name, description, status, (start_date, end_date)) = (
            fields::name("name", &b.name, MAX_NAME),
            fields::text("description", &b.description, MAX_DESCRIPTION),
            fields::parse_opt("status", &b.status, ProjectStatus::parse),
            dates(
                b.start_date.as_deref().map(Some),
                b.end_date.as_deref().map(Some),
            ),
        )
            .collect()?;
        Ok(NewProject {
            name,
            description: description.unwrap_or_default(),
            status: status.unwrap_or(ProjectStatus::Planned),
            start_date: start_date.flatten(),
            end_date: end_date.flatten(),
        })
    }
}

/// Absent fields stay as they are; `null` clears a date.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateProject {
    #[schema(schema_with = schema::project_name_or_null)]
    pub name: Option<String>,
    #[schema(schema_with = schema::project_description)]
    pub description: Option<String>,
    #[schema(schema_with = schema::project_status)]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "fields::present")]
    #[schema(schema_with = schema::date)]
    pub start_date: Option<Option<String>>,
    #[serde(default, deserialize_with = "fields::present")]
    #[schema(schema_with = schema::date)]
    pub end_date: Option<Option<String>>,
}

impl TryFrom<UpdateProject> for ProjectPatch {
    type Error = ApiError;

    fn try_from(b: UpdateProject) -> Result<Self, ApiError> {
        let (name, description, status, (start_date, end_date)) = (
            fields::parse_opt("name", &b.name, |n| {
                tenantry_public::names::display_name(n, MAX_NAME)
            }),
            fields::text("description", &b.description, MAX_DESCRIPTION),
            fields::parse_opt("status", &b.status, ProjectStatus::parse),
            dates(
                b.start_date.as_ref().map(Option::as_deref),
                b.end_date.as_ref().map(Option::as_deref),
            ),
        )
            .collect()?;
        Ok(ProjectPatch {
            name,
            description,
            status,
            start_date,
            end_date,
        })
    }
}

/// Start and end dates: absent (`None`), cleared (`Some(None)`) or set; when both are set the
/// end must not be before the start.
type DateChange = Option<Option<NaiveDate>>;

fn dates(
    start: Option<Option<&str>>,
    end: Option<Option<&str>>,
) -> Field<(DateChange, DateChange)> {
    let parse = |field: &str, value: Option<Option<&str>>| -> Field<DateChange> {
        value
            .map(|v| v.map(|d| fields::date(field, d)).transpose())
            .transpose()
    };
    let (start, end) = (parse("start_date", start), parse("end_date", end));
    if let (Ok(Some(Some(s))), Ok(Some(Some(e)))) = (&start, &end) {
        if e < s {
            return Err(fields::invalid("end_date", "must not be before start_date"));
        }
    }
    match (start, end) {
        (Ok(s), Ok(e)) => Ok((s, e)),
        (s, e) => {
            let mut errors = s.err().unwrap_or_default();
            errors.extend(e.err().unwrap_or_default());
            Err(errors)
        }
    }
}

/// The project list's filters and ordering, for the OpenAPI document. The handler reads the
/// query string itself ([`list_request`]): `status` may be repeated, which a struct cannot take.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProjectQuery {
    /// Only projects in any of these statuses: repeat `status=`, or give a comma list.
    #[param(schema_with = schema::project_statuses, style = Form, explode)]
    pub status: Option<Vec<String>>,
    /// Only projects owned by this member (user id).
    #[param(schema_with = schema::id)]
    pub owner: Option<String>,
    /// A case-insensitive part of the name or the description (at most 200 characters).
    #[param(schema_with = schema::search)]
    pub search: Option<String>,
    /// Only projects starting after this date (YYYY-MM-DD; projects without one are left out).
    #[param(schema_with = schema::date_filter)]
    pub start_after: Option<String>,
    /// Only projects starting before this date (YYYY-MM-DD; projects without one are left out).
    #[param(schema_with = schema::date_filter)]
    pub start_before: Option<String>,
    /// The order: a column, `-` first for descending (default `-created_at`); ties by id, and
    /// projects without the date last.
    #[param(schema_with = schema::project_ordering)]
    pub ordering: Option<String>,
}

/// The query parameters of the project list besides `limit` and `cursor`.
const FILTERS: [&str; 6] = [
    "status",
    "owner",
    "search",
    "start_after",
    "start_before",
    "ordering",
];

/// The most characters of `search`.
const MAX_SEARCH: usize = 200;

/// The filters and the ordering from the query string: 400 naming the parameter when one is
/// bad. A blank `search` is the same as none; other blank values are bad.
fn list_request(query: &str) -> Result<(ProjectFilter, ProjectOrder), ApiError> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(query)
        .map_err(crate::error::query_error)?
        .into_inner();
    let mut filter = ProjectFilter::default();
    let mut order = ProjectOrder::NEWEST;
    let bad = |name: &str, message: String| ApiError::BadRequest(format!("{name} {message}"));
    for (name, value) in &pairs {
        let value = value.trim();
        // A blank search is no search; any other blank value is a bad one, as the schema says.
        if value.is_empty() && name != "search" {
            if FILTERS.contains(&name.as_str()) {
                return Err(bad(name, "must not be empty".into()));
            }
            continue;
        }
        match name.as_str() {
            "search" if value.is_empty() => {}
            "status" => {
                for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let status =
                        ProjectStatus::parse(part).map_err(|e| bad("status", e.to_string()))?;
                    if !filter.statuses.contains(&status) {
                        filter.statuses.push(status);
                    }
                }
            }
            "owner" => {
                filter.owner = Some(
                    value
                        .parse::<UserId>()
                        .map_err(|_| bad("owner", "must be a user id (UUID)".into()))?,
                );
            }
            "search" => {
                if value.chars().count() > MAX_SEARCH {
                    return Err(bad(
                        "search",
                        format!("must be at most {MAX_SEARCH} characters"),
                    ));
                }
                if value.contains('\0') {
                    return Err(bad("search", "must not contain NUL characters".into()));
                }
                filter.search = Some(value.to_owned());
            }
            "start_after" | "start_before" => {
                let date = NaiveDate::parse_from_str(value, "%Y-%m-%d")
                    .map_err(|_| bad(name, "must be a date in YYYY-MM-DD form".into()))?;
                if name == "start_after" {
                    filter.start_after = Some(date);
                } else {
                    filter.start_before = Some(date);
                }
            }
            "ordering" => {
                order = pagination::ordering(value)?;
            }
            _ => {}
        }
    }
    // Listed in one order whatever order they were given in, so equal filters make equal
    // cursors and `next` links.
    filter
        .statuses
        .sort_by_key(|s| ProjectStatus::ALL.iter().position(|a| a == s));
    Ok((filter, order))
}

/// The list a cursor is bound to, and `next` repeats: the ordering and the normalised filters.
fn list_query(f: &ProjectFilter, order: ProjectOrder) -> ListQuery {
    let statuses = (!f.statuses.is_empty()).then(|| {
        f.statuses
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",")
    });
    let ordering = (order != ProjectOrder::NEWEST).then(|| order.name());
    ListQuery::new(order.name())
        .filter("status", statuses)
        .filter("owner", f.owner)
        .filter("search", f.search.as_deref())
        .filter("start_after", f.start_after)
        .filter("start_before", f.start_before)
        .filter("ordering", ordering)
}

/// Lists the tenant's projects: filters, an ordering, keyset pages.
#[utoipa::path(get, path = "/api/v1/projects", tag = "projects", params(ProjectQuery, PageParams),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Page<ProjectView>),
              (status = 400, description = "A bad filter, ordering, cursor or limit (the problem names the parameter)")))]
pub async fn list(
    cx: TenantRequest,
    req: HttpRequest,
    paging: Paging,
) -> Result<HttpResponse, ApiError> {
    cx.require(Permission::ContentRead)?;
    let (filter, order) = list_request(req.query_string())?;
    let page = paging.request::<SortKey<ProjectId>>(list_query(&filter, order))?;
    let window = page.window(order)?;
    let (conn, found) = cx.first_page::<Project>(&filter, &window).await?;
    drop(conn);
    Ok(HttpResponse::Ok().json(page.respond(
        found,
        |p| pagination::sort_key(&p.sort_value(order.sort), p.id),
        ProjectView::from,
    )))
}

/// The columns of a project export, in order.
const EXPORT_HEADER: [&str; 10] = [
    "id",
    "name",
    "description",
    "status",
    "start_date",
    "end_date",
    "owner_id",
    "owner_email",
    "created_at",
    "updated_at",
];

/// Every project the filters select, as CSV (`Accept: text/csv` or `format=csv`), streamed row
/// by row with a header row; cells that a spreadsheet would run as a formula are neutralised.
/// Viewers may export; each export is audited (`project.exported`, with its filters).
#[utoipa::path(get, path = "/api/v1/projects/export", tag = "projects",
    params(ProjectQuery, ExportParams), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, content_type = "text/csv", body = String,
                description = "RFC 4180 CSV with a header row; `Content-Disposition: attachment; filename=\"projects-YYYY-MM-DD.csv\"`"),
              (status = 400, description = "A bad filter, ordering or format (the problem names the parameter)"),
              (status = 406, description = "`Accept` admits no text/csv")))]
pub async fn export(cx: TenantRequest, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    cx.require(Permission::ContentRead)?;
    crate::export::negotiate(&req)?;
    let (filter, order) = list_request(req.query_string())?;
    let described = list_query(&filter, order).describe();
    let conn = cx.bound().await?;
    let rows = rows::export::<Project>(conn, &cx.acting(), &filter, order, described).await?;
    let time = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Ok(crate::export::respond(
        "projects",
        &EXPORT_HEADER,
        rows,
        move |(p, email), r| {
            r.cell(Some(p.id))
                .text(&p.name)
                .text(&p.description)
                .text(p.status.as_str())
                .cell(p.start_date)
                .cell(p.end_date)
                .cell(Some(p.owner_id))
                .cell(email.as_deref())
                .text(&time(p.created_at))
                .text(&time(p.updated_at));
        },
    ))
}

/// Creates a project owned by the caller. Viewers may not.
#[utoipa::path(post, path = "/api/v1/projects", tag = "projects", request_body = CreateProject,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = ProjectView),
              (status = 403, description = "Viewer, or the plan's `max_projects` is reached (`type` ends in `plan-limit`)")))]
pub async fn create(
    cx: TenantRequest,
    body: web::Json<CreateProject>,
) -> Result<HttpResponse, ApiError> {
    cx.require(Permission::ContentWrite)?;
    let new = NewProject::try_from(body.into_inner())?;
    let mut conn = cx.bound().await?;
    let project = projects::create(&mut conn, &cx.acting(), &new).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/projects/{}", project.id)))
        .json(ProjectView::from(project)))
}

/// One project of this tenant.
#[utoipa::path(get, path = "/api/v1/projects/{id}", tag = "projects",
    params(("id" = Uuid, Path, description = "Project id")), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = ProjectView),
              (status = 404, description = "No such project in this organization")))]
pub async fn get(cx: TenantRequest, id: web::Path<ProjectId>) -> Result<HttpResponse, ApiError> {
    let project: Project = cx.row(Permission::ContentRead, &id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(ProjectView::from(project)))
}

/// Changes some fields of a project. Viewers may not.
#[utoipa::path(patch, path = "/api/v1/projects/{id}", tag = "projects", request_body = UpdateProject,
    params(("id" = Uuid, Path, description = "Project id")), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = ProjectView),
              (status = 403, description = "Viewer"),
              (status = 404, description = "No such project in this organization")))]
pub async fn update(
    cx: TenantRequest,
    id: web::Path<ProjectId>,
    body: web::Json<UpdateProject>,
) -> Result<HttpResponse, ApiError> {
    cx.require(Permission::ContentWrite)?;
    let patch = ProjectPatch::try_from(body.into_inner())?;
    let mut conn = cx.bound().await?;
    let project = projects::update(&mut conn, &cx.acting(), *id, &patch).await?;
    Ok(HttpResponse::Ok().json(ProjectView::from(project)))
}

/// Deletes a project. Viewers may not.
#[utoipa::path(delete, path = "/api/v1/projects/{id}", tag = "projects",
    params(("id" = Uuid, Path, description = "Project id")), security(("bearer" = []), ("api_key" = [])),
    responses((status = 204, description = "Deleted"),
              (status = 403, description = "Viewer"),
              (status = 404, description = "No such project in this organization")))]
pub async fn delete(cx: TenantRequest, id: web::Path<ProjectId>) -> Result<HttpResponse, ApiError> {
    let mut conn = cx.connect(Permission::ContentWrite).await?;
    rows::delete::<Project>(&mut conn, &cx.acting(), *id).await?;
    Ok(HttpResponse::NoContent().finish())
}
