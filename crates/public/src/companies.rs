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
}

pub(crate) const COLUMNS: &str =
    "id, name, slug, schema_name, plan, status, schema_version, created_at, updated_at";

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
