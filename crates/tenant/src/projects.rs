//! Projects: the worked example of a tenant resource (ARCHITECTURE.md, "Adding a tenant
//! resource"). Reads take any tenant-bound handle; every change takes the acting member, runs in
//! its own transaction and writes its audit entry (with before/after) in it.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{json, Value};
use tenantry_public::db::{DbError, OnConstraint};
use tenantry_public::{Page, UserId};
use tokio_postgres::Row;

use crate::audit::{Acting, Action, Audited, Entry};
use crate::binding::{TenantConn, TenantDb};
use crate::ids::ProjectId;
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

/// The columns every query returns, in the order [`Project::try_from`] reads them.
pub const COLUMNS: &str =
    "id, name, description, status, start_date, end_date, owner_id, created_at, updated_at";

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

impl Audited for Project {
    const KIND: &'static str = "project";

    fn audit_id(&self) -> String {
        self.id.to_string()
    }

    fn audit_json(&self) -> Value {
        json!({
            "name": self.name,
            "description": self.description,
            "status": self.status,
            "start_date": self.start_date,
            "end_date": self.end_date,
            "owner_id": self.owner_id,
        })
    }
}

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
    #[error(transparent)]
    Db(#[from] DbError),
}

/// The check constraint that keeps a project's dates in order (tenant migration V1).
const DATES_ORDERED: &str = "projects_dates_ordered";

/// Lists projects newest first (ids are time-ordered), after the keyset position `before`.
pub async fn list(
    db: &impl TenantDb,
    limit: i64,
    before: Option<ProjectId>,
) -> Result<Page<Project>, DbError> {
    let client = db.client();
    let fetch = Page::<Project>::fetch_limit(limit);
    let rows = match before {
        None => {
            let stmt = client
                .prepare_cached(&format!(
                    "select {COLUMNS} from projects order by id desc limit $1"
                ))
                .await?;
            client.query(&stmt, &[&fetch]).await?
        }
        Some(before) => {
            let stmt = client
                .prepare_cached(&format!(
                    "select {COLUMNS} from projects where id < $2 order by id desc limit $1"
                ))
                .await?;
            client.query(&stmt, &[&fetch, &before]).await?
        }
    };
    Page::from_rows(&rows, limit, |r| Project::try_from(r))
}

/// Creates a project owned by the acting member, audited as `project.created`.
pub async fn create(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    new: &NewProject,
) -> Result<Project, ProjectError> {
    let tx = conn.transaction().await?;
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
    acting
        .commit(tx, Entry::created(Action::ProjectCreated, &project))
        .await?;
    Ok(project)
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
    db.client()
        .query_opt(
            &format!("select {COLUMNS} from projects where id = $1 for update"),
            &[&id],
        )
        .await
        .map_err(DbError::from)?
        .as_ref()
        .map(Project::try_from)
        .transpose()?
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
    let tx = conn.transaction().await?;
    let before = lock(&tx, id).await?;
    let client = tx.client();
    let stmt = client
        .prepare_cached("delete from projects where id = $1")
        .await
        .map_err(DbError::from)?;
    client.execute(&stmt, &[&id]).await.map_err(DbError::from)?;
    acting
        .commit(tx, Entry::removed(Action::ProjectDeleted, &before))
        .await?;
    Ok(())
}
