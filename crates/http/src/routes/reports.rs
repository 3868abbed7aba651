//! Project reports: `POST /projects/{id}/reports` asks the worker for one (202), `GET
//! /reports/{id}` tells where it is (and, once built, its summary and download link), `GET
//! /reports/{id}/download` sends its CSV. Anyone who may read the project may ask; a report is
//! readable by its requester and by the organization's admins and owners (404 for anyone else).

use actix_web::http::header::{self, ContentDisposition, DispositionParam, DispositionType};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tenantry_public::UserId;
use tenantry_tenant::access::Permission;
use tenantry_tenant::reports::{self, Report, ReportJob};
use tenantry_tenant::{ProjectId, ReportId};
use utoipa::{OpenApi, ToSchema};

use crate::auth::TenantRequest;
use crate::config::links;
use crate::error::ApiError;
use crate::export::CSV;
use crate::host::link_host;
use crate::routes::resource;
use crate::schema;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/projects/{id}/reports").post(request))
        .service(resource("/reports/{id}").get(get))
        .service(resource("/reports/{id}/download").get(download));
}

#[derive(OpenApi)]
#[openapi(paths(request, get, download))]
pub struct Api;

/// A project report.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportView {
    #[schema(value_type = Uuid)]
    pub id: ReportId,
    #[schema(value_type = Uuid)]
    pub project_id: ProjectId,
    /// Who asked for it.
    #[schema(value_type = Uuid)]
    pub requested_by: UserId,
    /// queued, running, done or failed.
    #[schema(schema_with = schema::report_status)]
    pub status: String,
    /// Why it failed (status failed).
    pub error: Option<String>,
    /// The project's figures when it was built (status done): `project` (id, name),
    /// `generated_at`, `task_count`, `tasks_by_status`, `tasks_by_priority`, `open`, `overdue`,
    /// `done_last_7_days`, `done_last_30_days`, `completion_ratio`, `next_due_task`, `team_size`.
    #[schema(value_type = Option<Object>)]
    pub summary: Option<serde_json::Value>,
    /// The CSV (status done): `/api/v1/reports/{id}/download`.
    pub download_url: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// After this the report is gone (410, then deleted by the weekly clean-up).
    pub expires_at: DateTime<Utc>,
}

impl From<Report> for ReportView {
    /// Every field named: one added to [`Report`] does not compile until the view decides.
    fn from(r: Report) -> Self {
        let Report {
            id,
            project_id,
            requested_by,
            status,
            error,
            summary,
            attempts: _,
            created_at,
            started_at: _,
            finished_at,
            expires_at,
        } = r;
        let done = status == reports::ReportStatus::Done;
        Self {
            id,
            project_id,
            requested_by,
            status: status.to_string(),
            error,
            summary: summary.filter(|_| done),
            download_url: done.then(|| format!("/api/v1/reports/{id}/download")),
            created_at,
            finished_at,
            expires_at,
        }
    }
}

/// Asks the worker for a report on the project: its tasks as CSV and its statistics. Anyone who
/// may read the project may (viewers and API keys included); audited as `report.requested`.
/// The requester gets an email with a link when it is ready.
#[utoipa::path(post, path = "/api/v1/projects/{id}/reports", tag = "reports",
    params(("id" = Uuid, Path, description = "Project id")), security(("bearer" = []), ("api_key" = [])),
    responses((status = 202, body = ReportView, description = "Queued; `Location` is the report",
                headers(("Location" = String, description = "/api/v1/reports/{id}"))),
              (status = 404, description = "No such project in this organization")))]
pub async fn request(
    cx: TenantRequest,
    id: web::Path<ProjectId>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    cx.require(Permission::ContentRead)?;
    // The email's link opens the report on the host this request came to (this tenant's).
    let host = link_host(&req)?;
    let settings = &cx.state.settings;
    let mut conn = cx.bound().await?;
    let report = reports::request(&mut conn, &cx.acting(), *id, Utc::now(), |report| {
        settings.page_link(host.as_str(), &format!("{}/{report}", links::REPORTS))
    })
    .await?;
    drop(conn);
    cx.state
        .mail
        .push_report(ReportJob {
            company_id: cx.acting().company,
            report_id: report.id,
        })
        .await;
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/api/v1/reports/{}", report.id)))
        .json(ReportView::from(report)))
}

/// A report: its status, and once done its summary and download link.
#[utoipa::path(get, path = "/api/v1/reports/{id}", tag = "reports",
    params(("id" = Uuid, Path, description = "Report id")), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = ReportView),
              (status = 404, description = "No such report in this organization, or another member's (for members and viewers)"),
              (status = 410, description = "The report expired (seven days after it was asked for)")))]
pub async fn get(cx: TenantRequest, id: web::Path<ReportId>) -> Result<HttpResponse, ApiError> {
    let conn = cx.connect(Permission::ContentRead).await?;
    let report = reports::get(&conn, *id, cx.user.user_id, cx.user.role, Utc::now()).await?;
    Ok(HttpResponse::Ok().json(ReportView::from(report)))
}

/// The report's CSV: `title,status,priority,assignee_email,due_at,completed_at`, one row per
/// task of the project, as an attachment.
#[utoipa::path(get, path = "/api/v1/reports/{id}/download", tag = "reports",
    params(("id" = Uuid, Path, description = "Report id")), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "The CSV", content_type = "text/csv", body = String,
                headers(("Content-Disposition" = String, description = "attachment; filename=\"report-{id}.csv\""))),
              (status = 404, description = "No such report in this organization, or another member's (for members and viewers)"),
              (status = 409, description = "The report is not done (queued, running or failed)"),
              (status = 410, description = "The report expired (seven days after it was asked for)")))]
pub async fn download(
    cx: TenantRequest,
    id: web::Path<ReportId>,
) -> Result<HttpResponse, ApiError> {
    let conn = cx.connect(Permission::ContentRead).await?;
    let (report, csv) = reports::csv(&conn, *id, cx.user.user_id, cx.user.role, Utc::now()).await?;
    drop(conn);
    Ok(HttpResponse::Ok()
        .content_type(CSV)
        .insert_header(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename(format!(
                "report-{}.csv",
                report.id
            ))],
        })
        .body(csv))
}
