//! Projects: the worked example of a tenant resource (ARCHITECTURE.md, "Adding a tenant
//! resource"). Reads take any tenant-bound handle; every change takes the acting member, runs in
//! its own transaction and writes its audit entry (with before/after) in it.

use chrono::{DateTime, NaiveDate, Utc};
use tenantry_public::db::{DbError, OnConstraint};
use tenantry_public::memberships;
use tenantry_public::UserId;

use crate::audit::{Acting, Action, Entry};
use crate::binding::{TenantConn, TenantDb};
use crate::ids::ProjectId;
use crate::ordering::{Order, SortColumn, SortKind, SortValue, Window};
use crate::rows;
use deadpool_postgres::GenericClient;

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

rows::table!(
    Project, "projects", id: ProjectId, deleted: ProjectDeleted, not_found: ProjectError::NotFound,
    pub columns: [
        id,
        name,
        description,
        status,
        start_date,
        end_date,
        owner_id,
        created_at,
        updated_at,
    ]
);

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
/// A page of projects as [`list`] is asked for it.
pub type ProjectWindow = Window<ProjectSort, ProjectId>;

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

/// The project filters as SQL, on parameters `$1` to `$5`: the statuses by name (null for any),
/// then the owner, search, start_after and start_before.
const FILTERS: &str = "($1::text[] is null or status = any($1)) \
    and ($2::uuid is null or owner_id = $2) \
    and ($3::text is null or strpos(lower(name), lower($3)) > 0 \
         or strpos(lower(description), lower($3)) > 0) \
    and ($4::date is null or start_date > $4) \
    and ($5::date is null or start_date < $5)";

impl rows::Listed for Project {
    type Filter = ProjectFilter;
    type Sort = ProjectSort;
    const FILTERS: &'static str = FILTERS;

    fn params(filter: &ProjectFilter) -> rows::Params {
        let statuses: Vec<&'static str> = filter.statuses.iter().map(|s| s.as_str()).collect();
        vec![
            Box::new((!statuses.is_empty()).then_some(statuses)),
            Box::new(filter.owner),
            Box::new(filter.search.clone()),
            Box::new(filter.start_after),
            Box::new(filter.start_before),
        ]
    }
}

impl rows::Exported for Project {
    const EXPORTED: Action = Action::ProjectExported;
    const USER_COLUMN: &'static str = "owner_id";
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

/// Applies a patch, audited as `project.updated` with the project before and after.
pub async fn update(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    id: ProjectId,
    patch: &ProjectPatch,
) -> Result<Project, ProjectError> {
    let tx = conn.transaction().await?;
    let before = rows::lock::<Project>(&tx, &id).await?;
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
