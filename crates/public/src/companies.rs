//! Companies: one row per tenant in `public.companies`.

use chrono::{DateTime, Utc};
use tokio_postgres::{GenericClient, Row};

use crate::db::DbError;
use crate::ids::{CompanyId, UserId};
use crate::names::{SchemaName, Slug};

crate::text_enum! {
    /// Where a company is in its life.
    pub enum CompanyStatus {
        Provisioning = "provisioning",
        Active = "active",
        Suspended = "suspended",
    }
}

#[derive(Debug, Clone)]
pub struct Company {
    pub id: CompanyId,
    pub name: String,
    pub slug: Slug,
    pub schema_name: SchemaName,
    pub plan: String,
    pub status: CompanyStatus,
    pub schema_version: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Pending deletion: when the owner deleted the organization (it is suspended since), and
    /// when the worker drops it. Both set or both `None` (a CHECK holds them together).
    pub deletion: Option<Deletion>,
}

/// A company its owner deleted: suspended at `requested_at`, dropped by the worker once
/// `drop_after` has passed, restorable by an operator until then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deletion {
    pub requested_at: DateTime<Utc>,
    pub drop_after: DateTime<Utc>,
}

/// How long a deleted organization waits before the worker drops it (and an operator can
/// still restore it).
pub const DELETION_GRACE: chrono::Duration = chrono::Duration::days(30);

pub(crate) const COLUMNS: &str = "id, name, slug, schema_name, plan, status, schema_version, \
                                  created_at, updated_at, deletion_requested_at, drop_after";

impl TryFrom<&Row> for Company {
    type Error = DbError;

    fn try_from(row: &Row) -> Result<Self, DbError> {
        let slug: String = row.try_get("slug")?;
        let schema: String = row.try_get("schema_name")?;
        Ok(Self {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            slug: Slug::parse(&slug).map_err(|e| corrupt("slug", &slug, e.0))?,
            schema_name: SchemaName::parse(&schema)
                .map_err(|e| corrupt("schema_name", &schema, e.0))?,
            plan: row.try_get("plan")?,
            status: row.try_get("status")?,
            schema_version: row.try_get("schema_version")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            deletion: match (
                row.try_get("deletion_requested_at")?,
                row.try_get("drop_after")?,
            ) {
                (Some(requested_at), Some(drop_after)) => Some(Deletion {
                    requested_at,
                    drop_after,
                }),
                _ => None,
            },
        })
    }
}

fn corrupt(column: &str, value: &str, why: &str) -> DbError {
    DbError::Corrupt(format!("companies.{column} {value:?} {why}"))
}

pub async fn find(db: &impl GenericClient, id: CompanyId) -> Result<Option<Company>, DbError> {
    let sql = format!("select {COLUMNS} from public.companies where id = $1");
    db.query_opt(&sql, &[&id])
        .await?
        .as_ref()
        .map(Company::try_from)
        .transpose()
}

pub async fn find_by_slug(
    db: &impl GenericClient,
    slug: &Slug,
) -> Result<Option<Company>, DbError> {
    let sql = format!("select {COLUMNS} from public.companies where slug = $1");
    db.query_opt(&sql, &[&slug.as_str()])
        .await?
        .as_ref()
        .map(Company::try_from)
        .transpose()
}

pub async fn list(db: &impl GenericClient) -> Result<Vec<Company>, DbError> {
    let sql = format!("select {COLUMNS} from public.companies order by slug");
    db.query(&sql, &[])
        .await?
        .iter()
        .map(Company::try_from)
        .collect()
}

/// The companies `user` has a membership in (active or not), by slug.
pub async fn of_member(db: &impl GenericClient, user: UserId) -> Result<Vec<Company>, DbError> {
    let sql = format!(
        "select {COLUMNS} from public.companies c \
          where exists (select 1 from public.memberships m \
                         where m.company_id = c.id and m.user_id = $1) \
          order by slug"
    );
    db.query(&sql, &[&user.0])
        .await?
        .iter()
        .map(Company::try_from)
        .collect()
}

/// Locks the company row (`for update`) and reads it: what a deletion, a restore and the
/// worker's drop serialise on.
pub async fn lock(db: &impl GenericClient, id: CompanyId) -> Result<Option<Company>, DbError> {
    let sql = format!("select {COLUMNS} from public.companies where id = $1 for update");
    db.query_opt(&sql, &[&id])
        .await?
        .as_ref()
        .map(Company::try_from)
        .transpose()
}

/// Renames the company; returns the row as it is now.
pub async fn rename(
    db: &impl GenericClient,
    id: CompanyId,
    name: &str,
) -> Result<Company, DbError> {
    let sql = format!(
        "update public.companies set name = $2, updated_at = now() where id = $1 \
         returning {COLUMNS}"
    );
    Company::try_from(&db.query_one(&sql, &[&id, &name]).await?)
}

/// Suspends the company and marks it for deletion at `now`, to be dropped at `drop_after`.
pub async fn mark_for_deletion(
    db: &impl GenericClient,
    id: CompanyId,
    now: DateTime<Utc>,
    drop_after: DateTime<Utc>,
) -> Result<Company, DbError> {
    let sql = format!(
        "update public.companies set status = 'suspended', deletion_requested_at = $2, \
                drop_after = $3, updated_at = now() \
          where id = $1 returning {COLUMNS}"
    );
    Company::try_from(&db.query_one(&sql, &[&id, &now, &drop_after]).await?)
}

/// Clears the deletion mark and re-activates the company.
pub async fn restore(db: &impl GenericClient, id: CompanyId) -> Result<Company, DbError> {
    let sql = format!(
        "update public.companies set status = 'active', deletion_requested_at = null, \
                drop_after = null, updated_at = now() \
          where id = $1 returning {COLUMNS}"
    );
    Company::try_from(&db.query_one(&sql, &[&id]).await?)
}

/// The companies whose grace period has ended at `now`, oldest first.
pub async fn due_for_drop(
    db: &impl GenericClient,
    now: DateTime<Utc>,
) -> Result<Vec<Company>, DbError> {
    let sql = format!(
        "select {COLUMNS} from public.companies where drop_after <= $1 order by drop_after, id"
    );
    db.query(&sql, &[&now])
        .await?
        .iter()
        .map(Company::try_from)
        .collect()
}

/// Sets the status; returns false when no company has that slug.
pub async fn set_status(
    db: &impl GenericClient,
    slug: &Slug,
    status: CompanyStatus,
) -> Result<bool, DbError> {
    let n = db
        .execute(
            "update public.companies set status = $2, updated_at = now() where slug = $1",
            &[&slug.as_str(), &status.as_str()],
        )
        .await?;
    Ok(n == 1)
}

/// Records the tenant migration version a company's schema is at.
pub async fn set_schema_version(
    db: &impl GenericClient,
    id: CompanyId,
    version: i32,
) -> Result<(), DbError> {
    db.execute(
        "update public.companies set schema_version = $2, updated_at = now() \
         where id = $1 and schema_version is distinct from $2",
        &[&id.0, &version],
    )
    .await?;
    Ok(())
}
