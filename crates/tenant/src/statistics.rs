//! Figures over a tenant's tasks and projects: per project (`GET /projects/{id}/statistics`),
//! across the tenant (`GET /projects/statistics`) and the dashboard (`GET /dashboard`). Each is
//! read in as few statements as its answer allows: one for a project or the tenant, two for the
//! dashboard (sent together, so they share one round trip).

use chrono::{DateTime, Utc};
use std::sync::OnceLock;
use tenantry_public::db::DbError;
use tenantry_public::{CompanyId, UserId};
use tokio_postgres::Row;

use crate::binding::TenantDb;
use crate::ids::{ProjectId, TaskId};
use crate::projects::ProjectStatus;
use crate::tasks::{Task, TaskPriority, TaskStatus};
use deadpool_postgres::GenericClient;

/// A task that is neither done nor cancelled.
const OPEN: &str = "status not in ('done', 'cancelled')";

/// Task figures of a project or of the whole tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskFigures {
    /// Every status with its count (zeros included), in [`TaskStatus::ALL`] order.
    pub by_status: Vec<(TaskStatus, i64)>,
    /// Every priority with its count, in [`TaskPriority::ALL`] order.
    pub by_priority: Vec<(TaskPriority, i64)>,
    /// Neither done nor cancelled.
    pub open: i64,
    /// Open and due in the past.
    pub overdue: i64,
    pub done_last_7_days: i64,
    pub done_last_30_days: i64,
    /// Done tasks over all tasks but the cancelled ones; `None` when there are none.
    pub completion_ratio: Option<f64>,
    /// The open task due soonest from now on.
    pub next_due: Option<DueTask>,
}

/// A task named in a figure: enough to show and link it.
#[derive(Debug, Clone, PartialEq)]
pub struct DueTask {
    pub id: TaskId,
    pub project_id: ProjectId,
    pub title: String,
    pub due_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProjectStatistics {
    pub tasks: TaskFigures,
    /// Members of the project's team (the owner included).
    pub team_size: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TenantStatistics {
    /// Every project status with its count, in [`ProjectStatus::ALL`] order.
    pub projects_by_status: Vec<(ProjectStatus, i64)>,
    pub tasks: TaskFigures,
}

/// `count(*) filter (…)` for each value of a closed set (the values are the enum's own
/// spellings, never request text).
fn counts<'a>(column: &str, values: impl Iterator<Item = &'a str>) -> Vec<String> {
    values
        .map(|v| format!("count(*) filter (where {column} = '{v}')"))
        .collect()
}

/// The select list of [`TaskFigures`] over `tasks` rows (one aggregate row); then the next due
/// task from a lateral join named `n`.
fn figures_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let mut columns = counts("status", TaskStatus::ALL.iter().map(|s| s.as_str()));
        columns.extend(counts(
            "priority",
            TaskPriority::ALL.iter().map(|p| p.as_str()),
        ));
        columns.extend([
            format!("count(*) filter (where {OPEN})"),
            format!("count(*) filter (where {OPEN} and due_at < now())"),
            "count(*) filter (where completed_at >= now() - interval '7 days')".to_owned(),
            "count(*) filter (where completed_at >= now() - interval '30 days')".to_owned(),
        ]);
        columns.join(", ")
    })
}

/// How many columns [`figures_sql`] and the next-due join give.
const FIGURE_COLUMNS: usize = TaskStatus::ALL.len() + TaskPriority::ALL.len() + 4 + 4;

/// The aggregate of `tasks` where `scope` holds (a condition on `$1`), and the next due task.
fn figures_from(scope: &str) -> String {
    format!(
        "(select {figures} from tasks where {scope}) f \
         left join lateral (select id, project_id, title, due_at from tasks \
              where {scope} and {OPEN} and due_at >= now() order by due_at, id limit 1) n on true",
        figures = figures_sql()
    )
}

impl TaskFigures {
    /// Reads the columns `f.*, n.*` (see [`figures_from`]) starting at `at`.
    fn read(row: &Row, at: usize) -> Result<Self, DbError> {
        let mut i = at;
        let mut next = || -> Result<i64, DbError> {
            let v: i64 = row.try_get(i)?;
            i += 1;
            Ok(v)
        };
        let by_status = TaskStatus::ALL
            .iter()
            .map(|&s| Ok((s, next()?)))
            .collect::<Result<Vec<_>, DbError>>()?;
        let by_priority = TaskPriority::ALL
            .iter()
            .map(|&p| Ok((p, next()?)))
            .collect::<Result<Vec<_>, DbError>>()?;
        let (open, overdue, done_7, done_30) = (next()?, next()?, next()?, next()?);
        let at = at + TaskStatus::ALL.len() + TaskPriority::ALL.len() + 4;
        let next_due = match row.try_get::<_, Option<TaskId>>(at)? {
            Some(id) => Some(DueTask {
                id,
                project_id: row.try_get(at + 1)?,
                title: row.try_get(at + 2)?,
                due_at: row.try_get(at + 3)?,
            }),
            None => None,
        };
        let count = |s: TaskStatus| by_status.iter().find(|(x, _)| *x == s).map_or(0, |c| c.1);
        let total: i64 = by_status.iter().map(|(_, n)| n).sum();
        let counted = total - count(TaskStatus::Cancelled);
        #[allow(clippy::cast_precision_loss)]
        let completion_ratio =
            (counted > 0).then(|| count(TaskStatus::Done) as f64 / counted as f64);
        Ok(Self {
            by_status,
            by_priority,
            open,
            overdue,
            done_last_7_days: done_7,
            done_last_30_days: done_30,
            completion_ratio,
            next_due,
        })
    }
}

/// A project's figures, or `None` when the tenant has no such project.
pub async fn project(
    db: &impl TenantDb,
    id: ProjectId,
) -> Result<Option<ProjectStatistics>, DbError> {
    static SQL: OnceLock<String> = OnceLock::new();
    let sql = SQL.get_or_init(|| {
        format!(
            "select f.*, n.*, \
                 (select count(*) from project_members where project_id = $1), \
                 exists (select 1 from projects where id = $1) \
               from {}",
            figures_from("project_id = $1")
        )
    });
    let client = db.client();
    let stmt = client.prepare_cached(sql).await?;
    let row = client.query_one(&stmt, &[&id]).await?;
    if !row.try_get::<_, bool>(FIGURE_COLUMNS + 1)? {
        return Ok(None);
    }
    Ok(Some(ProjectStatistics {
        tasks: TaskFigures::read(&row, 0)?,
        team_size: row.try_get(FIGURE_COLUMNS)?,
    }))
}

/// The projects by status as a subquery `ps` (one pass over `projects`, a count per status).
fn projects_by_status_sql() -> String {
    let counts = counts("status", ProjectStatus::ALL.iter().map(|s| s.as_str())).join(", ");
    format!("(select {counts} from projects) ps")
}

fn read_projects_by_status(row: &Row, at: usize) -> Result<Vec<(ProjectStatus, i64)>, DbError> {
    ProjectStatus::ALL
        .iter()
        .enumerate()
        .map(|(i, &s)| Ok((s, row.try_get(at + i)?)))
        .collect()
}

/// The tenant's figures: projects by status and the task figures across every project.
pub async fn tenant(db: &impl TenantDb) -> Result<TenantStatistics, DbError> {
    static SQL: OnceLock<String> = OnceLock::new();
    let sql = SQL.get_or_init(|| {
        format!(
            "select f.*, n.*, ps.* from {} cross join {}",
            figures_from("true"),
            projects_by_status_sql()
        )
    });
    let client = db.client();
    let stmt = client.prepare_cached(sql).await?;
    let row = client.query_one(&stmt, &[]).await?;
    Ok(TenantStatistics {
        projects_by_status: read_projects_by_status(&row, FIGURE_COLUMNS)?,
        tasks: TaskFigures::read(&row, 0)?,
    })
}

/// The plan's limits as the dashboard shows them; `None` is unlimited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanLimits {
    pub plan: String,
    pub max_members: Option<i32>,
    pub max_projects: Option<i32>,
    pub max_storage_mb: Option<i32>,
    pub requests_per_hour: Option<i32>,
}

/// What `GET /dashboard` shows: the caller's work and the organization's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Dashboard {
    /// The caller's open tasks (a count; `GET /tasks/mine` lists them).
    pub my_open: i64,
    pub my_overdue_count: i64,
    pub my_due_soon_count: i64,
    /// The caller's overdue tasks, most overdue first (at most [`DASHBOARD_LIST`]).
    pub my_overdue: Vec<Task>,
    /// The caller's open tasks due in the next 7 days, soonest first (at most [`DASHBOARD_LIST`]).
    pub my_due_soon: Vec<Task>,
    /// The caller's tasks completed most recently (at most [`RECENTLY_COMPLETED`]).
    pub my_recently_completed: Vec<Task>,
    pub organization: TenantStatistics,
    /// Active members of the organization.
    pub members: i64,
    /// Bytes of the organization's documents (what `max_storage_mb` limits).
    pub storage_used_bytes: i64,
    pub limits: PlanLimits,
}

/// The most tasks the dashboard lists in "overdue" and "due soon".
pub const DASHBOARD_LIST: i64 = 10;
/// How many recently completed tasks the dashboard lists.
pub const RECENTLY_COMPLETED: i64 = 5;

/// The two statements of [`dashboard`], built once: the aggregate row (`$1` the company, `$2`
/// the caller) and the caller's three task lists (`$1` the caller).
fn dashboard_sql() -> &'static (String, String) {
    static SQL: OnceLock<(String, String)> = OnceLock::new();
    SQL.get_or_init(|| {
        // One pass over each table: the tenant's tasks (f, n), its projects (ps), the caller's open
        // tasks (mine, through the assignee index), and one row each of members, storage and plan.
        let figures_sql = format!(
            "select f.*, n.*, ps.*, mine.*, \
                 (select count(*) from public.memberships where company_id = $1 and is_active), \
                 (select coalesce(sum(size_bytes), 0)::bigint from documents), \
                 p.code, p.max_members, p.max_projects, p.max_storage_mb, p.requests_per_hour \
               from {from} \
               cross join {projects} \
               cross join (select count(*), \
                       count(*) filter (where due_at < now()), \
                       count(*) filter (where due_at >= now() and due_at < now() + interval '7 days') \
                     from tasks where assignee_id = $2 and {OPEN}) mine \
               join public.companies c on c.id = $1 \
               join public.plans p on p.code = c.plan",
            projects = projects_by_status_sql(),
            from = figures_from("true"),
        );
        let columns = crate::tasks::COLUMNS;
        let lists_sql = format!(
            "(select {columns}, 0 from tasks where assignee_id = $1 and {OPEN} and due_at < now() \
                order by due_at, id limit {DASHBOARD_LIST}) \
             union all \
             (select {columns}, 1 from tasks where assignee_id = $1 and {OPEN} \
                and due_at >= now() and due_at < now() + interval '7 days' \
                order by due_at, id limit {DASHBOARD_LIST}) \
             union all \
             (select {columns}, 2 from tasks where assignee_id = $1 and status = 'done' \
                order by completed_at desc, id desc limit {RECENTLY_COMPLETED})"
        );
        (figures_sql, lists_sql)
    })
}

/// The dashboard of `me` in `company`: two statements sent together on the bound connection
/// (one aggregate row; the three task lists), so the whole answer costs one round trip after the
/// binding.
pub async fn dashboard(
    db: &impl TenantDb,
    company: CompanyId,
    me: UserId,
) -> Result<Dashboard, DbError> {
    let (figures_sql, lists_sql) = dashboard_sql();
    let client = db.client();
    let (figures, lists) = tokio::try_join!(
        async {
            let stmt = client.prepare_cached(figures_sql).await?;
            client.query_one(&stmt, &[&company, &me]).await
        },
        async {
            let stmt = client.prepare_cached(lists_sql).await?;
            client.query(&stmt, &[&me]).await
        },
    )?;
    let at = FIGURE_COLUMNS;
    let projects = read_projects_by_status(&figures, at)?;
    let at = at + ProjectStatus::ALL.len();
    let mut sections: [Vec<Task>; 3] = Default::default();
    for row in &lists {
        let section: i32 = row.try_get(crate::tasks::COLUMN_COUNT)?;
        let slot = usize::try_from(section)
            .ok()
            .and_then(|s| sections.get_mut(s))
            .ok_or_else(|| DbError::Corrupt("a dashboard list row of no section".into()))?;
        slot.push(Task::try_from(row)?);
    }
    // Each branch of the union is ordered; the union keeps no order, so order again here.
    let [mut overdue, mut due_soon, mut completed] = sections;
    overdue.sort_by_key(|t| (t.due_at, t.id));
    due_soon.sort_by_key(|t| (t.due_at, t.id));
    completed.sort_by_key(|t| std::cmp::Reverse((t.completed_at, t.id)));
    Ok(Dashboard {
        my_open: figures.try_get(at)?,
        my_overdue_count: figures.try_get(at + 1)?,
        my_due_soon_count: figures.try_get(at + 2)?,
        my_overdue: overdue,
        my_due_soon: due_soon,
        my_recently_completed: completed,
        organization: TenantStatistics {
            projects_by_status: projects,
            tasks: TaskFigures::read(&figures, 0)?,
        },
        members: figures.try_get(at + 3)?,
        storage_used_bytes: figures.try_get(at + 4)?,
        limits: PlanLimits {
            plan: figures.try_get(at + 5)?,
            max_members: figures.try_get(at + 6)?,
            max_projects: figures.try_get(at + 7)?,
            max_storage_mb: figures.try_get(at + 8)?,
            requests_per_hour: figures.try_get(at + 9)?,
        },
    })
}
