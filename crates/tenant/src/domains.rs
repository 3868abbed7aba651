//! A company's domains changed by an operator (`tenantctl domain …`): each change is written in
//! `public.domains` and audited in the tenant's own trail (actor: system, origin: the command)
//! in one transaction on the tenant's bound connection, under the company's row lock, so two
//! concurrent changes of one company's domains run one after the other.

use serde_json::json;
use tenantry_public::companies::Company;
use tenantry_public::db::{Db, DbError};
use tenantry_public::domains::{self, Domain, DomainError};
use tenantry_public::{DomainName, Origin};

use crate::audit::{self, Action, Actor, Entry};
use crate::binding::{TenantConn, TenantDb, TenantTx};

/// What a change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    Added(Domain),
    /// The company already had the domain: nothing changed, nothing audited.
    AlreadyThere,
    Removed(Domain),
    /// The domain is primary now; the one that was before, if any.
    MadePrimary {
        previous: Option<Domain>,
    },
    /// The domain was already primary.
    AlreadyPrimary,
}

/// Adds `name` to `company`, refusing the base domain, other names under it and another
/// company's domain.
pub async fn add(
    db: &Db,
    company: &Company,
    base: &DomainName,
    name: &DomainName,
    origin: &Origin,
) -> Result<Changed, DomainError> {
    domains::check_name(name, base, &company.slug)?;
    let mut conn = TenantConn::acquire(db, &company.schema_name).await?;
    let tx = locked(&mut conn, company).await?;
    let Some(added) = domains::add(&**tx.client(), company.id, name).await? else {
        return Ok(Changed::AlreadyThere);
    };
    let entry = Entry::new(Action::DomainAdded)
        .target("domain", &added.domain)
        .after(json!({"domain": added.domain, "is_primary": added.is_primary}));
    commit(tx, origin, entry).await?;
    Ok(Changed::Added(added))
}

/// Removes a domain of `company` that is not its primary one.
pub async fn remove(
    db: &Db,
    company: &Company,
    name: &DomainName,
    origin: &Origin,
) -> Result<Changed, DomainError> {
    let mut conn = TenantConn::acquire(db, &company.schema_name).await?;
    let tx = locked(&mut conn, company).await?;
    let removed = domains::remove(&**tx.client(), company.id, name).await?;
    let entry = Entry::new(Action::DomainRemoved)
        .target("domain", &removed.domain)
        .before(json!({"domain": removed.domain, "is_primary": removed.is_primary}));
    commit(tx, origin, entry).await?;
    Ok(Changed::Removed(removed))
}

/// Makes `name` the company's primary domain (the host its emails' links open).
pub async fn make_primary(
    db: &Db,
    company: &Company,
    name: &DomainName,
    origin: &Origin,
) -> Result<Changed, DomainError> {
    let mut conn = TenantConn::acquire(db, &company.schema_name).await?;
    let tx = locked(&mut conn, company).await?;
    let pg = &**tx.client();
    let before: Vec<Domain> = domains::of_company(pg, company.id).await?;
    if before
        .iter()
        .any(|d| d.is_primary && d.domain == name.as_str())
    {
        return Ok(Changed::AlreadyPrimary);
    }
    let previous = domains::make_primary(pg, company.id, name).await?;
    let entry = Entry::new(Action::DomainMadePrimary)
        .target("domain", name)
        .before(json!({"primary": previous.as_ref().map(|d| &d.domain)}))
        .after(json!({"primary": name.as_str()}));
    commit(tx, origin, entry).await?;
    Ok(Changed::MadePrimary { previous })
}

/// A transaction holding `company`'s row lock (the lock every membership change takes too).
async fn locked<'c>(conn: &'c mut TenantConn, company: &Company) -> Result<TenantTx<'c>, DbError> {
    let tx = conn.transaction().await?;
    tx.client()
        .execute(
            "select 1 from public.companies where id = $1 for no key update",
            &[&company.id.0],
        )
        .await?;
    Ok(tx)
}

async fn commit(tx: TenantTx<'_>, origin: &Origin, entry: Entry) -> Result<(), DbError> {
    audit::record(&tx, Actor::System, origin, entry).await?;
    tx.commit().await
}
