//! Project reports (`reports`, tenant migration V10): a member asks for one
//! ([`request`]), the worker builds it ([`run`]: the project's tasks as CSV and its statistics as
//! JSON), and for [`LIFETIME`] the requester (and the organization's admins and owners) can read
//! it and download the CSV.
//!
//! The row is the request's durable record: it is committed before anything goes to Redis, whose
//! [`ReportJob`] (company id and report id, never a schema name) only wakes a worker early. The
//! worker's sweep ([`pending`]) finds reports still queued after [`SWEEP_AFTER`] and reports left
//! running by a worker that died ([`STALE_AFTER`]), so a lost push or a killed worker delays a
//! report, never loses it. A build claims the row with one conditional update, so two workers
//! (the queue and a sweep) never both build one report.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tenantry_public::companies::{self, CompanyStatus};
use tenantry_public::db::{Db, DbError};
use tenantry_public::mail::{self, Email, OutboxId};
use tenantry_public::memberships::Role;
use tenantry_public::{CompanyId, UserId};
use tokio_postgres::Row;

use crate::audit::{Acting, Action, Entry};
use crate::binding::{TenantConn, TenantDb, TenantTx};
use crate::ids::{ProjectId, ReportId};
use crate::migrate::tenant_head;
use crate::statistics::{self, ProjectStatistics, TaskFigures};
use crate::tasks::{self, Task};
use deadpool_postgres::GenericClient;

tenantry_public::text_enum! {
    /// Where a report is.
    pub enum ReportStatus {
        /// Asked for; no worker has started it.
        Queued = "queued",
        /// A worker is building it.
        Running = "running",
        /// Built: its CSV and summary can be read.
        Done = "done",
        /// Could not be built (`error` says why).
        Failed = "failed",
    }
}

/// How long a report can be read after it was asked for; the weekly clean-up deletes it after.
pub const LIFETIME: Duration = Duration::days(7);
/// A report still queued this long after it was asked for is built by the worker's sweep (its
/// queue push was lost, or Redis was down).
pub const SWEEP_AFTER: Duration = Duration::minutes(1);
/// A report running this long is taken over: the worker building it died.
pub const STALE_AFTER: Duration = Duration::minutes(15);
/// Builds started before a report is given up as failed.
pub const MAX_ATTEMPTS: i32 = 3;

/// The queued job: build report `report_id` of company `company_id`. Only ids: the worker reads
/// the company (and its schema) from PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportJob {
    pub company_id: CompanyId,
    pub report_id: ReportId,
}

/// The Redis queue of [`ReportJob`]s: `{prefix}:jobs:report` (here, so the server that pushes
/// and the worker that pops share it without knowing each other).
#[must_use]
pub fn queue_name(prefix: &str) -> String {
    format!("{prefix}:jobs:report")
}

/// A report as its readers see it (the CSV is read apart: [`csv`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub id: ReportId,
    pub project_id: ProjectId,
    pub requested_by: UserId,
    pub status: ReportStatus,
    pub error: Option<String>,
    /// The project's statistics when it was built (status done).
    pub summary: Option<Value>,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, project_id, requested_by, status, error, summary, attempts, \
     created_at, started_at, finished_at, expires_at";

impl TryFrom<&Row> for Report {
    type Error = DbError;

    fn try_from(row: &Row) -> Result<Self, DbError> {
        Ok(Self {
            id: row.try_get(0)?,
            project_id: row.try_get(1)?,
            requested_by: row.try_get(2)?,
            status: row.try_get(3)?,
            error: row.try_get(4)?,
            summary: row.try_get(5)?,
            attempts: row.try_get(6)?,
            created_at: row.try_get(7)?,
            started_at: row.try_get(8)?,
            finished_at: row.try_get(9)?,
            expires_at: row.try_get(10)?,
        })
    }
}

crate::audit::audited!(Report, "report", id: id, [project_id, requested_by, status, expires_at]);

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("no such project in this organization")]
    ProjectNotFound,
    /// No such report, or one the caller may not read (another member's, for a member who is
    /// neither admin nor owner): the two are not told apart.
    #[error("no such report")]
    NotFound,
    /// Past its [`LIFETIME`]; the weekly clean-up deletes it.
    #[error("the report expired at {0}")]
    Expired(DateTime<Utc>),
    /// The CSV was asked for before the report was built (or after it failed).
    #[error("the report is {0}, not done")]
    NotReady(ReportStatus),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Asks for a report on `project` as `acting.user` at `now`: a `queued` row expiring
/// [`LIFETIME`] later, whose ready email will link to `link(id)`, audited as `report.requested`.
/// The caller queues a [`ReportJob`] after this commits.
pub async fn request(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    project: ProjectId,
    now: DateTime<Utc>,
    link: impl FnOnce(ReportId) -> String,
) -> Result<Report, ReportError> {
    let tx = conn.transaction().await?;
    // Key share: the project cannot be deleted under the insert (nor can it vanish after the
    // check, which would make the insert's foreign key fail as a 500).
    let found = tx
        .client()
        .query_opt(
            "select 1 from projects where id = $1 for key share",
            &[&project],
        )
        .await
        .map_err(DbError::from)?;
    if found.is_none() {
        return Err(ReportError::ProjectNotFound);
    }
    let id = ReportId::new();
    let row = tx
        .client()
        .query_one(
            &format!(
                "insert into reports (id, project_id, requested_by, link, created_at, expires_at) \
                 values ($1, $2, $3, $4, $5, $6) returning {COLUMNS}"
            ),
            &[
                &id,
                &project,
                &acting.user,
                &link(id),
                &now,
                &(now + LIFETIME),
            ],
        )
        .await
        .map_err(DbError::from)?;
    let report = Report::try_from(&row)?;
    acting
        .commit(tx, Entry::created(Action::ReportRequested, &report))
        .await?;
    Ok(report)
}

/// Report `id` as `viewer` (with `role`) may read it at `now`: its requester, or an admin or
/// owner; anyone else gets [`ReportError::NotFound`], as for a report that does not exist.
pub async fn get(
    db: &impl TenantDb,
    id: ReportId,
    viewer: UserId,
    role: Role,
    now: DateTime<Utc>,
) -> Result<Report, ReportError> {
    let report = db
        .client()
        .query_opt(
            &format!("select {COLUMNS} from reports where id = $1"),
            &[&id],
        )
        .await
        .map_err(DbError::from)?
        .as_ref()
        .map(Report::try_from)
        .transpose()?
        .filter(|r| r.requested_by == viewer || role.at_least(Role::Admin))
        .ok_or(ReportError::NotFound)?;
    if report.expires_at <= now {
        return Err(ReportError::Expired(report.expires_at));
    }
    Ok(report)
}

/// The CSV of report `id`, read as [`get`] reads the report; [`ReportError::NotReady`] until
/// it is done.
pub async fn csv(
    db: &impl TenantDb,
    id: ReportId,
    viewer: UserId,
    role: Role,
    now: DateTime<Utc>,
) -> Result<(Report, String), ReportError> {
    let report = get(db, id, viewer, role, now).await?;
    if report.status != ReportStatus::Done {
        return Err(ReportError::NotReady(report.status));
    }
    let row = db
        .client()
        .query_opt("select csv from reports where id = $1", &[&id])
        .await
        .map_err(DbError::from)?
        .ok_or(ReportError::NotFound)?;
    let csv: Option<String> = row.try_get(0).map_err(DbError::from)?;
    let csv = csv.ok_or_else(|| DbError::Corrupt(format!("report {id} is done without a CSV")))?;
    Ok((report, csv))
}

/// The columns of a report's CSV, in order.
pub const CSV_HEADER: [&str; 6] = [
    "title",
    "status",
    "priority",
    "assignee_email",
    "due_at",
    "completed_at",
];

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The project's tasks as CSV ([`CSV_HEADER`]), in the order they were created, written by
/// [`crate::csv`] as every export is.
async fn tasks_csv(db: &impl TenantDb, project: ProjectId) -> Result<(String, usize), DbError> {
    let rows = db
        .client()
        .query(
            &format!(
                "select {}, u.email from tasks \
                   left join (select id as uid, email from public.users) u on u.uid = assignee_id \
                  where project_id = $1 order by created_at, id",
                tasks::COLUMNS
            ),
            &[&project],
        )
        .await?;
    let mut out = String::with_capacity(64 + rows.len() * 100);
    crate::csv::header(&mut out, &CSV_HEADER);
    for row in &rows {
        let task = Task::try_from(row)?;
        let email: Option<String> = row.try_get(tasks::COLUMN_COUNT)?;
        crate::csv::record(&mut out, |r| {
            r.text(&task.title)
                .text(task.status.as_str())
                .text(task.priority.as_str())
                .cell(email.as_deref())
                .cell(task.due_at.map(rfc3339))
                .cell(task.completed_at.map(rfc3339));
        });
    }
    Ok((out, rows.len()))
}

/// The summary stored with a report: the project, when it was built, its task count and its
/// statistics (the figures of `GET /projects/{id}/statistics`, in the same shape).
fn summary(
    project: ProjectId,
    name: &str,
    stats: &ProjectStatistics,
    tasks: usize,
    now: DateTime<Utc>,
) -> Value {
    let f: &TaskFigures = &stats.tasks;
    let counts =
        |c: Vec<(String, i64)>| Value::Object(c.into_iter().map(|(k, v)| (k, json!(v))).collect());
    json!({
        "project": {"id": project, "name": name},
        "generated_at": rfc3339(now),
        "task_count": tasks,
        "tasks_by_status": counts(f.by_status.iter().map(|(s, n)| (s.as_str().to_owned(), *n)).collect()),
        "tasks_by_priority": counts(f.by_priority.iter().map(|(p, n)| (p.as_str().to_owned(), *n)).collect()),
        "open": f.open,
        "overdue": f.overdue,
        "done_last_7_days": f.done_last_7_days,
        "done_last_30_days": f.done_last_30_days,
        "completion_ratio": f.completion_ratio,
        "next_due_task": f.next_due.as_ref().map(|t| json!({
            "id": t.id, "project_id": t.project_id, "title": t.title, "due_at": rfc3339(t.due_at),
        })),
        "team_size": stats.team_size,
    })
}

/// What one [`run`] of a report job did.
#[derive(Debug, Clone, PartialEq)]
pub enum Built {
    /// Built; the requester's email is this outbox row (none when the requester is no longer an
    /// active member).
    Done(Option<OutboxId>),
    /// Recorded as failed with this reason.
    Failed(String),
    /// Nothing to do here: built, failed, expired or gone already, being built by another worker,
    /// or its tenant cannot run jobs now (suspended, provisioning, schema not at this binary's
    /// head; the sweep comes back to it).
    NotMine,
}

/// Builds report `id` of `company` at `now`, once. Reads the company (its schema comes from the
/// row, never from the queue), claims the report (`queued`, or `running` past [`STALE_AFTER`])
/// as `running` in its own transaction, then builds the CSV and the summary, stores them, marks
/// the report done and writes the requester's email to the outbox, in one transaction. A build
/// that fails is recorded as `failed` with its reason; one started [`MAX_ATTEMPTS`] times
/// without finishing (its workers died) fails too. A database that goes away mid-build leaves
/// the report `running`, for the sweep to take over.
pub async fn run(
    db: &Db,
    company: CompanyId,
    id: ReportId,
    now: DateTime<Utc>,
) -> Result<Built, DbError> {
    let public = db.public().await?;
    let Some(row) = companies::find(public.client(), company).await? else {
        return Ok(Built::NotMine);
    };
    drop(public);
    if row.status != CompanyStatus::Active || row.schema_version != Some(tenant_head()) {
        return Ok(Built::NotMine);
    }
    let mut conn = TenantConn::acquire(db, &row.schema_name).await?;
    let claimed = conn
        .client()
        .query_opt(
            "update reports set status = 'running', started_at = $2, attempts = attempts + 1 \
              where id = $1 and expires_at > $2 \
                and (status = 'queued' \
                     or (status = 'running' \
                         and started_at < $2::timestamptz - make_interval(secs => $3))) \
              returning attempts",
            &[&id, &now, &secs(STALE_AFTER)],
        )
        .await?;
    let Some(claimed) = claimed else {
        return Ok(Built::NotMine);
    };
    let attempts: i32 = claimed.try_get(0)?;
    if attempts > MAX_ATTEMPTS {
        let reason = format!("gave up after {MAX_ATTEMPTS} attempts that did not finish");
        fail(&conn, id, &reason, now).await?;
        return Ok(Built::Failed(reason));
    }
    let tx = conn.transaction().await?;
    match build(&tx, company, id, now).await {
        Ok(Ok(outbox)) => {
            tx.commit().await?;
            tracing::info!(tenant = %company, report = %id, "report built");
            Ok(Built::Done(outbox))
        }
        Ok(Err(reason)) => {
            drop(tx);
            fail(&conn, id, &reason, now).await?;
            Ok(Built::Failed(reason))
        }
        Err(e) => {
            drop(tx);
            if matches!(e, DbError::Unavailable(_)) {
                return Err(e);
            }
            let reason = e.to_string();
            tracing::warn!(tenant = %company, report = %id, error = %reason, "report failed");
            // The database may refuse this too; the report then stays running for the sweep.
            fail(&conn, id, "the report could not be built", now).await?;
            Ok(Built::Failed(reason))
        }
    }
}

/// The build inside its transaction: `Ok(Err(reason))` for a report that cannot be built.
async fn build(
    tx: &TenantTx<'_>,
    company: CompanyId,
    id: ReportId,
    now: DateTime<Utc>,
) -> Result<Result<Option<OutboxId>, String>, DbError> {
    let client = tx.client();
    let facts = client
        .query_one(
            "select r.project_id, p.name, r.requested_by, r.link, r.expires_at, u.email, c.name \
               from reports r join projects p on p.id = r.project_id \
               join public.users u on u.id = r.requested_by \
               join public.companies c on c.id = $2 \
              where r.id = $1 for update of r",
            &[&id, &company],
        )
        .await?;
    let project: ProjectId = facts.try_get(0)?;
    let name: String = facts.try_get(1)?;
    let requester: UserId = facts.try_get(2)?;
    let link: String = facts.try_get(3)?;
    let expires_at: DateTime<Utc> = facts.try_get(4)?;
    let Some(stats) = statistics::project(tx, project).await? else {
        return Ok(Err("the project is gone".to_owned()));
    };
    let (csv, count) = tasks_csv(tx, project).await?;
    let summary = summary(project, &name, &stats, count, now);
    client
        .execute(
            "update reports set status = 'done', csv = $2, summary = $3, finished_at = $4, \
                    error = null \
              where id = $1",
            &[&id, &csv, &summary, &now],
        )
        .await?;
    // A requester who left the organization since cannot open the link: no email then.
    if !crate::teams::is_active_member(tx, company, requester).await? {
        return Ok(Ok(None));
    }
    let email = Email::ReportReady {
        to: facts.try_get(5)?,
        organization: facts.try_get(6)?,
        project: name,
        expires_at: rfc3339(expires_at),
        link,
    };
    Ok(Ok(Some(mail::enqueue(&**client, &email).await?)))
}

/// Records report `id` as failed with `reason` (outside the build's rolled-back transaction).
async fn fail(
    db: &impl TenantDb,
    id: ReportId,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    db.client()
        .execute(
            "update reports set status = 'failed', error = left($2, 2000), finished_at = $3 \
              where id = $1 and status = 'running'",
            &[&id, &reason, &now],
        )
        .await?;
    Ok(())
}

/// A duration as `make_interval(secs => …)` takes it.
fn secs(d: Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

/// The reports of this tenant the worker's sweep builds at `now`: queued for longer than
/// [`SWEEP_AFTER`], or running for longer than [`STALE_AFTER`]; not expired.
pub async fn pending(db: &impl TenantDb, now: DateTime<Utc>) -> Result<Vec<ReportId>, DbError> {
    Ok(db
        .client()
        .query(
            "select id from reports \
              where status in ('queued', 'running') and expires_at > $1 \
                and ((status = 'queued' \
                      and created_at < $1::timestamptz - make_interval(secs => $2)) \
                  or (status = 'running' \
                      and started_at < $1::timestamptz - make_interval(secs => $3))) \
              order by created_at limit 100",
            &[&now, &secs(SWEEP_AFTER), &secs(STALE_AFTER)],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Every report the sweep should build now, across the tenants that may run jobs (active, at
/// this binary's head), each named by company id. One statement per such tenant, on its own
/// binding; a tenant whose query fails is logged and skipped.
pub async fn sweep(db: &Db, now: DateTime<Utc>) -> Result<Vec<ReportJob>, DbError> {
    let public = db.public().await?;
    let tenants = companies::list(public.client()).await?;
    drop(public);
    let mut jobs = Vec::new();
    for company in tenants {
        if company.status != CompanyStatus::Active || company.schema_version != Some(tenant_head())
        {
            continue;
        }
        let found = async {
            let conn = TenantConn::acquire(db, &company.schema_name).await?;
            pending(&conn, now).await
        }
        .await;
        match found {
            Ok(ids) => jobs.extend(ids.into_iter().map(|report_id| ReportJob {
                company_id: company.id,
                report_id,
            })),
            // The database as a whole is gone: stop here, the next sweep tries again.
            Err(e @ DbError::Unavailable(_)) => return Err(e),
            // One tenant's trouble does not keep the others' reports waiting.
            Err(error) => {
                tracing::warn!(tenant = %company.id, %error, "report sweep skipped a tenant");
            }
        }
    }
    Ok(jobs)
}

/// Deletes the reports that expired before `now` (the weekly clean-up); answers how many.
pub async fn delete_expired(db: &impl TenantDb, now: DateTime<Utc>) -> Result<u64, DbError> {
    Ok(db
        .client()
        .execute("delete from reports where expires_at <= $1", &[&now])
        .await?)
}
