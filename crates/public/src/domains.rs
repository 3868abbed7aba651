//! Domains: the hosts that route to a company (`public.domains`).
//!
//! Every company has `<slug>.BASE_DOMAIN` (its primary domain when it is created, and routed by
//! its slug whatever the table says) and may have its own names (`tasks.acme.com`). Exactly one
//! of a company's domains is primary: links in emails open it. Changes notify the routing
//! listeners through the table's trigger, so a server routes by them at once.
//!
//! A name is refused when it is `BASE_DOMAIN` itself (the public API), or any name under
//! `BASE_DOMAIN` other than the company's own `<slug>.BASE_DOMAIN` (those belong to the slug
//! namespace: `globex.BASE_DOMAIN` would shadow another tenant, `x.acme.BASE_DOMAIN` nothing
//! routes), or another company's domain.

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

use crate::db::DbError;
use crate::ids::CompanyId;
use crate::names::{DomainName, Slug};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    pub domain: String,
    pub is_primary: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// The base domain, or a name under it that is not the company's own slug host.
    #[error("{0}")]
    Reserved(&'static str),
    /// Another company routes by this name.
    #[error("the domain belongs to another organization")]
    TakenByOther,
    /// The company has no such domain.
    #[error("the organization has no such domain")]
    NotFound,
    /// The primary domain cannot be removed; make another one primary first.
    #[error("the primary domain cannot be removed: make another domain primary first")]
    Primary,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<tokio_postgres::Error> for DomainError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(e.into())
    }
}

/// Whether `company` (slug `slug`) may route by `name` under `base`, before asking the table.
pub fn check_name(name: &DomainName, base: &DomainName, slug: &Slug) -> Result<(), DomainError> {
    if name == base {
        return Err(DomainError::Reserved(
            "the base domain serves the public API and cannot be a tenant's domain",
        ));
    }
    let under_base = name
        .as_str()
        .strip_suffix(base.as_str())
        .is_some_and(|prefix| prefix.ends_with('.'));
    if under_base && name.subdomain_of(base) != Some(slug.as_str()) {
        return Err(DomainError::Reserved(
            "names under the base domain are the tenants' slug hosts: only the organization's own \
             <slug>.BASE_DOMAIN may be used",
        ));
    }
    Ok(())
}

const COLUMNS: &str = "domain, is_primary, created_at";

fn domain(row: &tokio_postgres::Row) -> Result<Domain, DbError> {
    Ok(Domain {
        domain: row.try_get(0)?,
        is_primary: row.try_get(1)?,
        created_at: row.try_get(2)?,
    })
}

/// A company's domains, the primary first, then by name.
pub async fn of_company(
    db: &impl GenericClient,
    company: CompanyId,
) -> Result<Vec<Domain>, DbError> {
    let sql = format!(
        "select {COLUMNS} from public.domains where company_id = $1 \
          order by is_primary desc, domain"
    );
    db.query(&sql, &[&company.0])
        .await?
        .iter()
        .map(domain)
        .collect()
}

/// Adds `name` to `company` (checked with [`check_name`] first). `Ok(None)` when the company
/// already has it: nothing changes.
pub async fn add(
    db: &impl GenericClient,
    company: CompanyId,
    name: &DomainName,
) -> Result<Option<Domain>, DomainError> {
    let sql = format!(
        "insert into public.domains (domain, company_id) values ($1, $2) \
         on conflict (domain) do nothing returning {COLUMNS}"
    );
    if let Some(row) = db.query_opt(&sql, &[&name.as_str(), &company.0]).await? {
        return Ok(Some(domain(&row)?));
    }
    let owner: Option<uuid::Uuid> = db
        .query_opt(
            "select company_id from public.domains where domain = $1",
            &[&name.as_str()],
        )
        .await?
        .map(|r| r.get(0));
    match owner {
        Some(owner) if owner == company.0 => Ok(None),
        // Gone again between the two statements: as good as taken, by a racing writer.
        _ => Err(DomainError::TakenByOther),
    }
}

/// Removes a domain of `company` that is not its primary one; returns it as it was.
pub async fn remove(
    db: &impl GenericClient,
    company: CompanyId,
    name: &DomainName,
) -> Result<Domain, DomainError> {
    let current = find(db, company, name).await?;
    if current.is_primary {
        return Err(DomainError::Primary);
    }
    db.execute(
        "delete from public.domains where domain = $1 and company_id = $2",
        &[&name.as_str(), &company.0],
    )
    .await?;
    Ok(current)
}

/// Makes `name` the company's only primary domain; returns the one that was primary before
/// (`None` if none was, or if `name` already was: then nothing changes). Call it inside a
/// transaction: the old primary is cleared before the new one is set, as the one-primary index
/// is checked row by row.
pub async fn make_primary(
    db: &impl GenericClient,
    company: CompanyId,
    name: &DomainName,
) -> Result<Option<Domain>, DomainError> {
    let current = find(db, company, name).await?;
    if current.is_primary {
        return Ok(None);
    }
    let sql = format!(
        "update public.domains set is_primary = false \
          where company_id = $1 and is_primary returning {COLUMNS}"
    );
    let previous = db
        .query_opt(&sql, &[&company.0])
        .await?
        .as_ref()
        .map(domain)
        .transpose()?;
    db.execute(
        "update public.domains set is_primary = true where domain = $1 and company_id = $2",
        &[&name.as_str(), &company.0],
    )
    .await?;
    Ok(previous)
}

/// One of the company's domains, locked for the rest of the transaction.
async fn find(
    db: &impl GenericClient,
    company: CompanyId,
    name: &DomainName,
) -> Result<Domain, DomainError> {
    let sql = format!(
        "select {COLUMNS} from public.domains where domain = $1 and company_id = $2 for update"
    );
    let row = db
        .query_opt(&sql, &[&name.as_str(), &company.0])
        .await?
        .ok_or(DomainError::NotFound)?;
    Ok(domain(&row)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str) -> Result<(), String> {
        let base = DomainName::parse("example.com").expect("valid");
        let slug = Slug::parse("acme").expect("valid");
        let name = DomainName::parse(name).expect("valid");
        check_name(&name, &base, &slug).map_err(|e| e.to_string())
    }

    #[test]
    fn names_under_the_base_domain_are_the_slug_hosts() {
        assert!(check("example.com").is_err());
        assert!(check("globex.example.com").is_err());
        assert!(check("app.acme.example.com").is_err());
        assert_eq!(check("acme.example.com"), Ok(()));
        assert_eq!(check("tasks.acme.com"), Ok(()));
        // A suffix match that is not a label boundary is not under the base domain.
        assert_eq!(check("notexample.com"), Ok(()));
    }
}
