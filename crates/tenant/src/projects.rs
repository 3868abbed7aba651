//! Projects: the first tenant resource. Every function takes a tenant-bound handle.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use tenantry_public::db::{sqlstate, DbError};
use tenantry_public::names::NameError;
use tenantry_public::UserId;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::binding::TenantDb;
use deadpool_postgres::GenericClient;

/// A row of a tenant's `projects` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProjectId(pub Uuid);

impl fmt::Display for ProjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProjectStatus {
    Planned,
    Active,
    Completed,
    Archived,
}

impl ProjectStatus {
    pub fn parse(input: &str) -> Result<Self, NameError> {
        match input {
            "planned" => Ok(Self::Planned),
            "active" => Ok(Self::Active),
            "completed" => Ok(Self::Completed),
            "archived" => Ok(Self::Archived),
            _ => Err(NameError(
                "must be one of planned, active, completed, archived",
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Planned => "planned",
            Self::Active => "active",
            Self::Completed => "completed",
            Self::Archived => "archived",
        }
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

const COLUMNS: &str =
    "id, name, description, status, start_date, end_date, owner_id, created_at, updated_at";

impl TryFrom<&Row> for Project {
    type Error = DbError;

    fn try_from(row: &Row) -> Result<Self, DbError> {
        let status: String = row.try_get(3)?;
        Ok(Self {
            id: ProjectId(row.try_get(0)?),
            name: row.try_get(1)?,
            description: row.try_get(2)?,
            status: ProjectStatus::parse(&status)
                .map_err(|e| DbError::Config(format!("projects.status {e}")))?,
            start_date: row.try_get(4)?,
            end_date: row.try_get(5)?,
            owner_id: UserId(row.try_get(6)?),
            created_at: row.try_get(7)?,
            updated_at: row.try_get(8)?,
        })
    }
}

/// A validated new project.
#[derive(Debug, Clone)]
pub struct NewProject {
    pub name: String,
    pub description: String,
    pub status: ProjectStatus,
    pub start_date: Option<NaiveDate>,
    pub end_date: Option<NaiveDate>,
    pub owner_id: UserId,
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
    #[error("end_date is before start_date")]
    DatesOutOfOrder,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<tokio_postgres::Error> for ProjectError {
    fn from(e: tokio_postgres::Error) -> Self {
        let e = DbError::from(e);
        if e.code() == Some(sqlstate::CHECK_VIOLATION)
            && e.constraint() == Some("projects_dates_ordered")
        {
            Self::DatesOutOfOrder
        } else {
            Self::Db(e)
        }
    }
}

/// One page, newest first, and whether more follow.
#[derive(Debug, Clone)]
pub struct Page {
    pub projects: Vec<Project>,
    pub has_more: bool,
}

/// Lists projects newest first (ids are time-ordered), after the keyset position `before`.
pub async fn list(
    db: &impl TenantDb,
    limit: i64,
    before: Option<ProjectId>,
) -> Result<Page, DbError> {
    let client = db.client();
    let rows = match before {
        None => {
            let stmt = client
                .prepare_cached(&format!(
                    "select {COLUMNS} from projects order by id desc limit $1"
                ))
                .await?;
            client.query(&stmt, &[&(limit + 1)]).await?
        }
        Some(before) => {
            let stmt = client
                .prepare_cached(&format!(
                    "select {COLUMNS} from projects where id < $2 order by id desc limit $1"
                ))
                .await?;
            client.query(&stmt, &[&(limit + 1), &before.0]).await?
        }
    };
    let has_more = rows.len() as i64 > limit;
    let projects = rows
        .iter()
        .take(limit as usize)
        .map(Project::try_from)
        .collect::<Result<_, _>>()?;
    Ok(Page { projects, has_more })
}

pub async fn create(db: &impl TenantDb, new: &NewProject) -> Result<Project, ProjectError> {
    let client = db.client();
    let stmt = client
        .prepare_cached(&format!(
            "insert into projects (id, name, description, status, start_date, end_date, owner_id) \
             values ($1, $2, $3, $4, $5, $6, $7) returning {COLUMNS}"
        ))
        .await?;
    let row = client
        .query_one(
            &stmt,
            &[
                &Uuid::now_v7(),
                &new.name,
                &new.description,
                &new.status.as_str(),
                &new.start_date,
                &new.end_date,
                &new.owner_id.0,
            ],
        )
        .await?;
    Ok(Project::try_from(&row)?)
}

pub async fn get(db: &impl TenantDb, id: ProjectId) -> Result<Option<Project>, DbError> {
    let client = db.client();
    let stmt = client
        .prepare_cached(&format!("select {COLUMNS} from projects where id = $1"))
        .await?;
    client
        .query_opt(&stmt, &[&id.0])
        .await?
        .as_ref()
        .map(Project::try_from)
        .transpose()
}

/// Applies a patch; `Ok(None)` when no such project exists in this tenant.
pub async fn update(
    db: &impl TenantDb,
    id: ProjectId,
    patch: &ProjectPatch,
) -> Result<Option<Project>, ProjectError> {
    let client = db.client();
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
        .await?;
    let row = client
        .query_opt(
            &stmt,
            &[
                &id.0,
                &patch.name,
                &patch.description,
                &patch.status.map(ProjectStatus::as_str),
                &patch.start_date.is_some(),
                &patch.start_date.flatten(),
                &patch.end_date.is_some(),
                &patch.end_date.flatten(),
            ],
        )
        .await?;
    Ok(row.as_ref().map(Project::try_from).transpose()?)
}

/// Deletes a project; false when no such project exists in this tenant.
pub async fn delete(db: &impl TenantDb, id: ProjectId) -> Result<bool, DbError> {
    let client = db.client();
    let stmt = client
        .prepare_cached("delete from projects where id = $1")
        .await?;
    Ok(client.execute(&stmt, &[&id.0]).await? == 1)
}
