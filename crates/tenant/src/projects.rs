//! Projects: the worked example of a tenant resource (ARCHITECTURE.md, "Adding a tenant
//! resource"). Reads take any tenant-bound handle; every change takes the acting member, runs in
//! its own transaction and writes its audit entry (with before/after) in it.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use tenantry_public::db::{DbError, OnConstraint};
use tenantry_public::memberships;
use tenantry_public::{Page, UserId};
use tokio_postgres::Row;

use crate::audit::{Acting, Action, Entry};
use crate::binding::{TenantConn, TenantDb};
use crate::ids::ProjectId;
use crate::ordering::{Order, SortColumn, SortKind, SortValue};
use crate::rows;
use deadpool_postgres::GenericClient;
use futures_util::{Stream, StreamExt};
use tokio_postgres::types::ToSql;

/// The most characters a project name may have.
pub const MAX_NAME: usize = 200;
/// The most characters a project description may have.
pub const MAX_DESCRIPTION: usize = 10_000;

tenantry_public::text_enum! {
    /// Where a project is in its life.
    pub enum ProjectStatus {
        Planned = "planned",
        Active = "active",
        Completed = "completed",
        Archived = "archived",
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    pub id: ProjectId,
    pub name: String,
    pub description: String,
    pub status: ProjectStatus,
    pub start_date: Option<NaiveDate>,
    pub end_date: Option<NaiveDate>,
    pub owner_id: UserId,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The columns every query returns, in the order [`Project::try_from`] reads them.
pub const COLUMNS: &str =
    "id, name, description, status, start_date, end_date, owner_id, created_at, updated_at";

impl rows::Table for Project {
    const TABLE: &'static str = "projects";
    const COLUMNS: &'static str = COLUMNS;
}

impl TryFrom<&Row> for Project {
    type Error = DbError;

    fn try_from(row: &Row) -> Result<Self, DbError> {
        Ok(Self {
            id: row.try_get(0)?,
            name: row.try_get(1)?,
            description: row.try_get(2)?,
            status: row.try_get(3)?,
            start_date: row.try_get(4)?,
            end_date: row.try_get(5)?,
            owner_id: row.try_get(6)?,
            created_at: row.try_get(7)?,
            updated_at: row.try_get(8)?,
        })
    }
}

crate::audit::audited!(Project, "project", id: id, [name, description, status, start_date, end_date, owner_id]);

/// A validated new project; its owner is the acting member.
#[derive(Debug, Clone)]
pub struct NewProject {
    pub name: String,
    pub description: String,
    pub status: ProjectStatus,
    pub start_date: Option<NaiveDate>,
    pub end_date: Option<NaiveDate>,
}

/// A validated partial update; `None` leaves a field as it is, `Some(None)` clears a date.
#[derive(Debug, Clone, Default)]
pub struct ProjectPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub status: Option<ProjectStatus>,
    pub start_date: Option<Option<NaiveDate>>,
    pub end_date: Option<Option<NaiveDate>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("no such project in this organization")]
    NotFound,
    #[error("end_date is before start_date")]
    DatesOutOfOrder,
    /// The company's plan allows no more projects (`max_projects`).
    #[error("the {plan} plan allows at most {max} projects (max_projects); delete a project or upgrade the plan")]
    PlanLimit { plan: String, max: i32 },
    #[error(transparent)]
    Db(#[from] DbError),
}

/// The check constraint that keeps a project's dates in order (tenant migration V1).
const DATES_ORDERED: &str = "projects_dates_ordered";

tenantry_public::text_enum! {
    /// The columns `GET /projects` may be ordered by (each followed by the id, so the order is
    /// total and keyset pages are stable).
    pub enum ProjectSort {
        CreatedAt = "created_at",
        Name = "name",
        StartDate = "start_date",
        EndDate = "end_date",
        UpdatedAt = "updated_at",
    }
}

impl SortColumn for ProjectSort {
    const ALL: &'static [Self] = Self::ALL;

    fn as_str(self) -> &'static str {
        self.as_str()
    }

    fn expr(self) -> &'static str {
        self.as_str()
    }

    fn kind(self) -> SortKind {
        match self {
            Self::CreatedAt | Self::UpdatedAt => SortKind::Time,
            Self::Name => SortKind::Text,
            Self::StartDate | Self::EndDate => SortKind::Date,
        }
    }
}

/// A project list ordering; nulls (only `start_date` and `end_date` have them) come last in
/// both directions.
pub type ProjectOrder = Order<ProjectSort>;

impl Order<ProjectSort> {
    /// The default ordering: newest first.
    pub const NEWEST: Self = Order::desc(ProjectSort::CreatedAt);
}

impl Project {
    /// This project's value of the `sort` column.
    pub fn sort_value(&self, sort: ProjectSort) -> SortValue {
        match sort {
            ProjectSort::CreatedAt => SortValue::Time(Some(self.created_at)),
            ProjectSort::UpdatedAt => SortValue::Time(Some(self.updated_at)),
            ProjectSort::Name => SortValue::Text(Some(self.name.clone())),
            ProjectSort::StartDate => SortValue::Date(self.start_date),
            ProjectSort::EndDate => SortValue::Date(self.end_date),
        }
    }
}

/// Filters of the project list; empty or `None` means "any".
#[derive(Debug, Clone, Default)]
pub struct ProjectFilter {
    /// Any of these statuses.
    pub statuses: Vec<ProjectStatus>,
    pub owner: Option<UserId>,
    /// A case-insensitive part of the name or the description.
    pub search: Option<String>,
    /// Starting strictly after this date (projects without a start date are left out).
    pub start_after: Option<NaiveDate>,
    /// Starting strictly before this date (projects without a start date are left out).
    pub start_before: Option<NaiveDate>,
}

/// Lists projects in `order`, filtered, after the keyset position `after` (the sort value and
/// the id of the previous page's last row). A position whose value does not fit the ordering's
/// column is the caller's bug, refused as [`DbError::Corrupt`].
pub async fn list(
    db: &impl TenantDb,
    filter: &ProjectFilter,
    order: ProjectOrder,
    after: Option<&(SortValue, ProjectId)>,
    limit: i64,
) -> Result<Page<Project>, DbError> {
    let (keyset, order_by) = order.keyset_sql(6, 7);
    let sql = format!(
        "select {COLUMNS} from projects where {FILTERS} and {keyset} \
          order by {order_by} limit $8"
    );
    let statuses = statuses(filter);
    let keyset = order.keyset_params(after)?;
    let client = db.client();
    let stmt = client.prepare_cached(&sql).await?;
    let rows = client
        .query(
            &stmt,
            &[
                &statuses,
                &filter.owner,
                &filter.search,
                &filter.start_after,
                &filter.start_before,
                keyset.value(),
                keyset.id(),
                &Page::<Project>::fetch_limit(limit),
            ],
        )
        .await?;
    Page::from_rows(&rows, limit, |r| Project::try_from(r))
}

/// The project filters as SQL, on parameters `$1` to `$5`: the statuses ([`statuses`]), then
/// the filter's owner, search, start_after and start_before.
const FILTERS: &str = "($1::text[] is null or status = any($1)) \
    and ($2::uuid is null or owner_id = $2) \
    and ($3::text is null or strpos(lower(name), lower($3)) > 0 \
         or strpos(lower(description), lower($3)) > 0) \
    and ($4::date is null or start_date > $4) \
    and ($5::date is null or start_date < $5)";

fn statuses(filter: &ProjectFilter) -> Option<Vec<&'static str>> {
    (!filter.statuses.is_empty()).then(|| filter.statuses.iter().map(|s| s.as_str()).collect())
}

/// A project as an export row: the project and its owner's email.
pub type ExportedProject = (Project, Option<String>);

/// Every project the filter selects, in `order`, as a stream that holds `conn` until it ends
/// (rows come as the consumer takes them). Audited as `project.exported` with `described`
/// before the first row is read.
pub async fn export(
    mut conn: TenantConn,
    acting: &Acting<'_>,
    filter: &ProjectFilter,
    order: ProjectOrder,
    described: Value,
) -> Result<impl Stream<Item = Result<ExportedProject, DbError>> + 'static, DbError> {
    let tx = conn.transaction().await?;
    acting
        .commit(tx, Entry::new(Action::ProjectExported).after(described))
        .await?;
    let (_, order_by) = order.keyset_sql(6, 7);
    // The users subquery exposes `uid` and `email` only, so every other name is the project's.
    let sql = format!(
        "select {COLUMNS}, u.email from projects \
           left join (select id as uid, email from public.users) u on u.uid = owner_id \
          where {FILTERS} order by {order_by}"
    );
    let statuses = statuses(filter);
    let client = conn.client();
    let stmt = client.prepare_cached(&sql).await?;
    let params: [&(dyn ToSql + Sync); 5] = [
        &statuses,
        &filter.owner,
        &filter.search,
        &filter.start_after,
        &filter.start_before,
    ];
    let rows = client.query_raw(&stmt, params).await?;
    Ok(rows.map(move |row| {
        // The connection stays checked out (and bound) while the rows stream.
        let _bound = &conn;
        let row = row?;
        Ok((Project::try_from(&row)?, row.try_get(9)?))
    }))
}

/// Creates a project owned by the acting member, who joins its team as lead; audited as
/// `project.created`. The plan's `max_projects` is checked under the company row lock
/// ([`memberships::lock_company`], the one membership changes take), so of two concurrent
/// creates at the limit exactly one commits.
pub async fn create(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    new: &NewProject,
) -> Result<Project, ProjectError> {
    let tx = conn.transaction().await?;
    let seats = memberships::lock_company(&**tx.client(), acting.company)
        .await?
        .ok_or_else(|| DbError::Corrupt("the bound tenant's company row is missing".into()))?;
    if let Some(max) = seats.max_projects {
        // Counted after the lock is held: a concurrent create has committed or not started.
        if count(&tx).await? >= i64::from(max) {
            return Err(ProjectError::PlanLimit {
                plan: seats.plan,
                max,
            });
        }
    }
    let client = tx.client();
    let stmt = client
        .prepare_cached(&format!(
            "insert into projects (id, name, description, status, start_date, end_date, owner_id) \
             values ($1, $2, $3, $4, $5, $6, $7) returning {COLUMNS}"
        ))
        .await
        .map_err(DbError::from)?;
    let row = client
        .query_one(
            &stmt,
            &[
                &ProjectId::new(),
                &new.name,
                &new.description,
                &new.status,
                &new.start_date,
                &new.end_date,
                &acting.user,
            ],
        )
        .await
        .map_err(DbError::from)
        .on_constraint(DATES_ORDERED, || ProjectError::DatesOutOfOrder)?;
    let project = Project::try_from(&row)?;
    crate::teams::add_owner(&tx, &project).await?;
    acting
        .commit(tx, Entry::created(Action::ProjectCreated, &project))
        .await?;
    Ok(project)
}

/// How many projects the tenant has (the figure the plan's `max_projects` limits).
pub async fn count(db: &impl TenantDb) -> Result<i64, DbError> {
    Ok(db
        .client()
        .query_one("select count(*) from projects", &[])
        .await?
        .try_get(0)?)
}

pub async fn get(db: &impl TenantDb, id: ProjectId) -> Result<Option<Project>, DbError> {
    let client = db.client();
    let stmt = client
        .prepare_cached(&format!("select {COLUMNS} from projects where id = $1"))
        .await?;
    client
        .query_opt(&stmt, &[&id])
        .await?
        .as_ref()
        .map(Project::try_from)
        .transpose()
}

/// Locks one project for a change in `db`'s transaction.
async fn lock(db: &impl TenantDb, id: ProjectId) -> Result<Project, ProjectError> {
    rows::lock::<Project>(db, &id)
        .await?
        .ok_or(ProjectError::NotFound)
}

/// Applies a patch, audited as `project.updated` with the project before and after.
pub async fn update(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    id: ProjectId,
    patch: &ProjectPatch,
) -> Result<Project, ProjectError> {
    let tx = conn.transaction().await?;
    let before = lock(&tx, id).await?;
    let client = tx.client();
    let stmt = client
        .prepare_cached(&format!(
            "update projects set \
                name = coalesce($2, name), \
                description = coalesce($3, description), \
                status = coalesce($4, status), \
                start_date = case when $5 then $6 else start_date end, \
                end_date = case when $7 then $8 else end_date end, \
                updated_at = now() \
              where id = $1 returning {COLUMNS}"
        ))
        .await
        .map_err(DbError::from)?;
    let row = client
        .query_one(
            &stmt,
            &[
                &id,
                &patch.name,
                &patch.description,
                &patch.status,
                &patch.start_date.is_some(),
                &patch.start_date.flatten(),
                &patch.end_date.is_some(),
                &patch.end_date.flatten(),
            ],
        )
        .await
        .map_err(DbError::from)
        .on_constraint(DATES_ORDERED, || ProjectError::DatesOutOfOrder)?;
    let after = Project::try_from(&row)?;
    acting
        .commit(tx, Entry::changed(Action::ProjectUpdated, &before, &after))
        .await?;
    Ok(after)
}

/// Deletes a project, audited as `project.deleted` with the project as it was.
pub async fn delete(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    id: ProjectId,
) -> Result<(), ProjectError> {
    rows::delete::<Project>(conn, acting, &id, Action::ProjectDeleted)
        .await?
        .ok_or(ProjectError::NotFound)
}
