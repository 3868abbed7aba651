//! Figures over the tenant's work: `GET /projects/{id}/statistics`, `GET /projects/statistics`
//! and `GET /dashboard`. Viewers read them all.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tenantry_tenant::access::Permission;
use tenantry_tenant::projects::ProjectStatus;
use tenantry_tenant::statistics::{
    self, Dashboard, DueTask, PlanLimits, ProjectStatistics, TaskFigures, TenantStatistics,
};
use tenantry_tenant::tasks::{TaskPriority, TaskStatus};
use tenantry_tenant::{ProjectId, TaskId};
use utoipa::{OpenApi, ToSchema};

use crate::auth::TenantRequest;
use crate::error::ApiError;
use crate::routes::resource;
use crate::views::TaskView;

/// Registered before `projects`, so `/projects/statistics` is not read as a project id.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/projects/statistics").get(tenant))
        .service(resource("/projects/{id}/statistics").get(project))
        .service(resource("/dashboard").get(dashboard));
}

#[derive(OpenApi)]
#[openapi(paths(project, tenant, dashboard))]
pub struct Api;

/// The count of `value` in a figure list (every value is in it; 0 otherwise).
fn count<T: PartialEq>(counts: &[(T, i64)], value: T) -> i64 {
    counts.iter().find(|(v, _)| *v == value).map_or(0, |c| c.1)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskStatusCounts {
    pub todo: i64,
    pub in_progress: i64,
    pub in_review: i64,
    pub done: i64,
    pub cancelled: i64,
}

impl From<&[(TaskStatus, i64)]> for TaskStatusCounts {
    fn from(c: &[(TaskStatus, i64)]) -> Self {
        Self {
            todo: count(c, TaskStatus::Todo),
            in_progress: count(c, TaskStatus::InProgress),
            in_review: count(c, TaskStatus::InReview),
            done: count(c, TaskStatus::Done),
            cancelled: count(c, TaskStatus::Cancelled),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskPriorityCounts {
    pub low: i64,
    pub medium: i64,
    pub high: i64,
    pub urgent: i64,
}

impl From<&[(TaskPriority, i64)]> for TaskPriorityCounts {
    fn from(c: &[(TaskPriority, i64)]) -> Self {
        Self {
            low: count(c, TaskPriority::Low),
            medium: count(c, TaskPriority::Medium),
            high: count(c, TaskPriority::High),
            urgent: count(c, TaskPriority::Urgent),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectStatusCounts {
    pub planned: i64,
    pub active: i64,
    pub completed: i64,
    pub archived: i64,
}

impl From<&[(ProjectStatus, i64)]> for ProjectStatusCounts {
    fn from(c: &[(ProjectStatus, i64)]) -> Self {
        Self {
            planned: count(c, ProjectStatus::Planned),
            active: count(c, ProjectStatus::Active),
            completed: count(c, ProjectStatus::Completed),
            archived: count(c, ProjectStatus::Archived),
        }
    }
}

/// The open task due soonest from now on.
#[derive(Debug, Serialize, ToSchema)]
pub struct DueTaskView {
    #[schema(value_type = Uuid)]
    pub id: TaskId,
    #[schema(value_type = Uuid)]
    pub project_id: ProjectId,
    pub title: String,
    pub due_at: DateTime<Utc>,
}

impl From<DueTask> for DueTaskView {
    fn from(t: DueTask) -> Self {
        let DueTask {
            id,
            project_id,
            title,
            due_at,
        } = t;
        Self {
            id,
            project_id,
            title,
            due_at,
        }
    }
}

/// Task figures of a project or of the whole organization.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskFiguresView {
    pub tasks_by_status: TaskStatusCounts,
    pub tasks_by_priority: TaskPriorityCounts,
    /// Neither done nor cancelled.
    pub open: i64,
    /// Open and due in the past.
    pub overdue: i64,
    pub done_last_7_days: i64,
    pub done_last_30_days: i64,
    /// Done tasks over every task but the cancelled ones; null without such tasks.
    #[schema(minimum = 0, maximum = 1)]
    pub completion_ratio: Option<f64>,
    /// The open task due soonest from now on; null when none is due.
    pub next_due_task: Option<DueTaskView>,
}

impl From<TaskFigures> for TaskFiguresView {
    fn from(f: TaskFigures) -> Self {
        let TaskFigures {
            by_status,
            by_priority,
            open,
            overdue,
            done_last_7_days,
            done_last_30_days,
            completion_ratio,
            next_due,
        } = f;
        Self {
            tasks_by_status: by_status.as_slice().into(),
            tasks_by_priority: by_priority.as_slice().into(),
            open,
            overdue,
            done_last_7_days,
            done_last_30_days,
            completion_ratio,
            next_due_task: next_due.map(Into::into),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectStatisticsView {
    #[serde(flatten)]
    pub tasks: TaskFiguresView,
    /// Members of the project's team, the owner included.
    pub team_size: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantStatisticsView {
    pub projects_by_status: ProjectStatusCounts,
    #[serde(flatten)]
    pub tasks: TaskFiguresView,
}

impl From<TenantStatistics> for TenantStatisticsView {
    fn from(s: TenantStatistics) -> Self {
        Self {
            projects_by_status: s.projects_by_status.as_slice().into(),
            tasks: s.tasks.into(),
        }
    }
}

/// A project's task figures and team size.
#[utoipa::path(get, path = "/api/v1/projects/{id}/statistics", tag = "projects",
    params(("id" = Uuid, Path, description = "Project id")), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = ProjectStatisticsView),
              (status = 404, description = "No such project in this organization")))]
pub async fn project(
    cx: TenantRequest,
    id: web::Path<ProjectId>,
) -> Result<HttpResponse, ApiError> {
    let conn = cx.connect(Permission::ContentRead).await?;
    let ProjectStatistics { tasks, team_size } = statistics::project(&conn, *id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(ProjectStatisticsView {
        tasks: tasks.into(),
        team_size,
    }))
}

/// Projects by status and the task figures across the organization.
#[utoipa::path(get, path = "/api/v1/projects/statistics", tag = "projects",
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = TenantStatisticsView)))]
pub async fn tenant(cx: TenantRequest) -> Result<HttpResponse, ApiError> {
    let conn = cx.connect(Permission::ContentRead).await?;
    let figures = statistics::tenant(&conn).await?;
    Ok(HttpResponse::Ok().json(TenantStatisticsView::from(figures)))
}

/// The caller's work.
#[derive(Debug, Serialize, ToSchema)]
pub struct MyWorkView {
    /// How many of the caller's tasks are open (`GET /tasks/mine` lists them).
    pub open: i64,
    pub overdue_count: i64,
    /// Open and due in the next 7 days.
    pub due_soon_count: i64,
    /// The caller's overdue tasks, most overdue first (at most 10).
    pub overdue: Vec<TaskView>,
    /// The caller's open tasks due in the next 7 days, soonest first (at most 10).
    pub due_soon: Vec<TaskView>,
    /// The caller's most recently completed tasks (at most 5).
    pub recently_completed: Vec<TaskView>,
}

/// The plan's limits; null is unlimited.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanLimitsView {
    #[schema(example = "starter")]
    pub plan: String,
    pub max_members: Option<i32>,
    pub max_projects: Option<i32>,
    pub max_storage_mb: Option<i32>,
    pub requests_per_hour: Option<i32>,
}

impl From<PlanLimits> for PlanLimitsView {
    fn from(l: PlanLimits) -> Self {
        let PlanLimits {
            plan,
            max_members,
            max_projects,
            max_storage_mb,
            requests_per_hour,
        } = l;
        Self {
            plan,
            max_members,
            max_projects,
            max_storage_mb,
            requests_per_hour,
        }
    }
}

/// The organization's figures.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationFiguresView {
    pub projects_by_status: ProjectStatusCounts,
    #[serde(flatten)]
    pub tasks: TaskFiguresView,
    /// Active members.
    pub members: i64,
    /// Bytes of the organization's documents (what `max_storage_mb` limits).
    pub storage_used_bytes: i64,
    pub limits: PlanLimitsView,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DashboardView {
    pub me: MyWorkView,
    pub organization: OrganizationFiguresView,
}

impl From<Dashboard> for DashboardView {
    fn from(d: Dashboard) -> Self {
        let Dashboard {
            my_open,
            my_overdue_count,
            my_due_soon_count,
            my_overdue,
            my_due_soon,
            my_recently_completed,
            organization,
            members,
            storage_used_bytes,
            limits,
        } = d;
        let views = |tasks: Vec<_>| tasks.into_iter().map(TaskView::from).collect();
        let organization = TenantStatisticsView::from(organization);
        Self {
            me: MyWorkView {
                open: my_open,
                overdue_count: my_overdue_count,
                due_soon_count: my_due_soon_count,
                overdue: views(my_overdue),
                due_soon: views(my_due_soon),
                recently_completed: views(my_recently_completed),
            },
            organization: OrganizationFiguresView {
                projects_by_status: organization.projects_by_status,
                tasks: organization.tasks,
                members,
                storage_used_bytes,
                limits: limits.into(),
            },
        }
    }
}

/// The caller's open, overdue, soon-due and recently completed tasks, and the organization's
/// projects, tasks, members, storage and plan limits: two statements in one round trip after
/// the connection's binding.
#[utoipa::path(get, path = "/api/v1/dashboard", tag = "dashboard",
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = DashboardView)))]
pub async fn dashboard(cx: TenantRequest) -> Result<HttpResponse, ApiError> {
    let conn = cx.connect(Permission::ContentRead).await?;
    let board = statistics::dashboard(&conn, cx.acting().company, cx.user.user_id).await?;
    Ok(HttpResponse::Ok().json(DashboardView::from(board)))
}
