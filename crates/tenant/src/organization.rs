//! The organization as a whole: its overview (name, plan, subscription, domains, settings), its
//! name and settings (`public.company_settings`), read on the tenant's bound connection and
//! changed audited in the tenant's trail (`organization.renamed`,
//! `organization.settings_changed`, with before and after), and its life's end: the owner's
//! deletion (suspended at once, dropped after [`DELETION_GRACE`]), an operator's restore within
//! the grace period, and the worker's drop once it has passed ([`drop_due`]).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use tenantry_public::companies::{self, Company, CompanyStatus, Deletion};
use tenantry_public::company_settings::{self, CompanySettings, SettingsPatch};
use tenantry_public::db::{Db, DbError};
use tenantry_public::domains::{self, Domain};
use tenantry_public::mail::{self, Email, OutboxId};
use tenantry_public::memberships::{self, Role};
use tenantry_public::passwords::{self, PasswordError};
use tenantry_public::subscriptions::{self, Subscription};
use tenantry_public::{users, CompanyId, Origin, Slug};

use crate::audit::{self, Acting, Action, Actor, Entry};
use crate::binding::{TenantConn, TenantDb};

pub use tenantry_public::companies::DELETION_GRACE;

crate::audit::audited!(CompanySettings, "organization", id: company_id, [timezone, reminder_lead_hours, completed_task_retention_days]);

/// The organization's name as the trail records a rename.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Named {
    company_id: CompanyId,
    name: String,
}

crate::audit::audited!(Named, "organization", id: company_id, [name]);

/// The company's life state as the trail records a deletion or a restore.
fn life(company: &Company) -> serde_json::Value {
    json!({
        "status": company.status.as_str(),
        "deletion_requested_at": company.deletion.map(|d| d.requested_at),
        "drop_after": company.deletion.map(|d| d.drop_after),
    })
}

/// Everything `GET /organization` shows.
#[derive(Debug, Clone)]
pub struct Overview {
    pub company: Company,
    pub subscription: Subscription,
    /// The primary first, then by name.
    pub domains: Vec<Domain>,
    pub settings: CompanySettings,
}

/// The organization's overview, read on the tenant's bound connection.
pub async fn overview(conn: &TenantConn, company: CompanyId) -> Result<Overview, DbError> {
    let pg = &***conn.client();
    let row = companies::find(pg, company)
        .await?
        .ok_or_else(|| DbError::Corrupt("the bound tenant's company row is missing".into()))?;
    Ok(Overview {
        company: row,
        subscription: subscriptions::get(pg, company).await?,
        domains: domains::of_company(pg, company).await?,
        settings: company_settings::get(pg, company).await?,
    })
}

/// Renames the acting member's company to `name` (already a valid display name), audited as
/// `organization.renamed` (before and after) in the same transaction. The same name writes
/// nothing and no entry. Like any change to `companies`, a rename notifies every server's
/// routing listener, which reloads this company's routes.
pub async fn rename(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    name: &str,
) -> Result<Overview, DbError> {
    {
        let tx = conn.transaction().await?;
        let pg = &**tx.client();
        let before = companies::lock(pg, acting.company)
            .await?
            .ok_or_else(|| DbError::Corrupt("the bound tenant's company row is missing".into()))?;
        if before.name != name {
            let after = companies::rename(pg, acting.company, name).await?;
            let named = |c: &Company| Named {
                company_id: c.id,
                name: c.name.clone(),
            };
            acting
                .commit(
                    tx,
                    Entry::changed(Action::OrganizationRenamed, &named(&before), &named(&after)),
                )
                .await?;
        }
    }
    overview(conn, acting.company).await
}

/// Why a deletion or a restore is refused.
#[derive(Debug, thiserror::Error)]
pub enum DeletionError {
    #[error("wrong password")]
    WrongPassword,
    /// The caller is no longer the active owner (the role in their token is stale).
    #[error("only the owner of this organization can delete it")]
    NotOwner,
    /// Another request deleted it first.
    #[error("this organization is already deleted")]
    AlreadyDeleted,
    /// `tenantctl tenant restore`: no company has this slug (or it was dropped).
    #[error("no tenant has the slug {0}")]
    NoSuchTenant(Slug),
    /// `tenantctl tenant restore`: the company was not deleted by its owner.
    #[error("{0} is not pending deletion (status {1}); nothing to restore")]
    NotPending(Slug, CompanyStatus),
    /// `tenantctl tenant restore`: the grace period is over; the worker drops it.
    #[error("{0}'s grace period ended at {1}; it can no longer be restored")]
    GraceOver(Slug, DateTime<Utc>),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A deletion as the owner asked for it.
#[derive(Debug, Clone, Copy)]
pub struct Deleted {
    pub deletion: Deletion,
    /// The owner's email, to push to the mail queue after commit.
    pub email: OutboxId,
}

/// The owner deletes their organization: confirmed with their `password` (checked before any
/// lock is taken: hashing is slow), then, under the company row lock, with the caller still its
/// active owner, in one transaction: the company is suspended and marked to be dropped at
/// `now + DELETION_GRACE`, `organization.deletion_requested` is recorded (the status and the
/// dates before and after) and the owner is emailed. The status change fires the routing
/// notification, so every server reloads the tenant's routes and its next request is 403.
pub async fn request_deletion(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    password: &str,
    now: DateTime<Utc>,
) -> Result<Deleted, DeletionError> {
    let stored = users::find_by_id(&***conn.client(), acting.user)
        .await?
        .map(|u| u.password_hash);
    if !passwords::verify(password, stored).await? {
        return Err(DeletionError::WrongPassword);
    }
    let tx = conn.transaction().await?;
    let pg = &**tx.client();
    let before = companies::lock(pg, acting.company)
        .await?
        .ok_or_else(|| DbError::Corrupt("the bound tenant's company row is missing".into()))?;
    if before.deletion.is_some() {
        return Err(DeletionError::AlreadyDeleted);
    }
    match memberships::get_member(pg, acting.company, acting.user, true).await? {
        Some(m) if m.is_active && m.role == Role::Owner => {}
        _ => return Err(DeletionError::NotOwner),
    }
    let after = companies::mark_for_deletion(pg, acting.company, now, now + DELETION_GRACE).await?;
    let deletion = after
        .deletion
        .ok_or_else(|| DbError::Corrupt("a deletion that left no mark".into()))?;
    let (to, organization) = mail::owner_of(pg, acting.company).await?;
    let email = mail::enqueue(
        pg,
        &Email::OrganizationDeleted {
            to,
            organization,
            drop_after: deletion.drop_after.to_rfc3339(),
        },
    )
    .await?;
    acting
        .commit(
            tx,
            Entry::new(Action::OrganizationDeletionRequested)
                .target("organization", acting.company)
                .before(life(&before))
                .after(life(&after)),
        )
        .await?;
    Ok(Deleted { deletion, email })
}

/// An operator restores a deleted organization within its grace period (`tenantctl tenant
/// restore`): under the company row lock (the worker's drop takes the same one), the deletion
/// mark is cleared and the company is active again, `organization.restored` is recorded in its
/// trail as the system with `origin` (the command), and the owner is emailed — in one
/// transaction on the tenant's binding. The email waits in the outbox for the worker's mail
/// sweep (the command has no queue client).
pub async fn restore(
    db: &Db,
    slug: &Slug,
    origin: &Origin,
    now: DateTime<Utc>,
) -> Result<Company, DeletionError> {
    let found = companies::find_by_slug(db.public().await?.client(), slug).await?;
    let Some(found) = found else {
        return Err(DeletionError::NoSuchTenant(slug.clone()));
    };
    let mut conn = TenantConn::acquire(db, &found.schema_name).await?;
    let tx = conn.transaction().await?;
    let pg = &**tx.client();
    let Some(before) = companies::lock(pg, found.id).await? else {
        return Err(DeletionError::NoSuchTenant(slug.clone()));
    };
    let Some(deletion) = before.deletion else {
        return Err(DeletionError::NotPending(slug.clone(), before.status));
    };
    if deletion.drop_after <= now {
        return Err(DeletionError::GraceOver(slug.clone(), deletion.drop_after));
    }
    let after = companies::restore(pg, found.id).await?;
    let (to, organization) = mail::owner_of(pg, found.id).await?;
    mail::enqueue(pg, &Email::OrganizationRestored { to, organization }).await?;
    audit::record(
        &tx,
        Actor::System,
        origin,
        Entry::new(Action::OrganizationRestored)
            .target("organization", found.id)
            .before(life(&before))
            .after(life(&after)),
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

/// The job name of the drop of deleted organizations whose grace period has passed.
pub const DROP_JOB: &str = "organization.drop";

/// What one [`drop_due`] run did: the slugs dropped, and those whose drop failed (with the
/// error), which the next day's run tries again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Drops {
    pub dropped: Vec<String>,
    pub failed: Vec<DropFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DropFailure {
    pub slug: String,
    pub error: String,
}

/// Drops every company whose `drop_after` has passed at `now` (schema and public rows,
/// [`crate::provision::drop_due_company`]: under the company row lock and the per-schema lock,
/// re-checked there, so a restore that committed first wins and a second run drops nothing
/// twice). Claimed once per UTC day in `public.job_runs` (job [`DROP_JOB`]), on the worker's
/// clean-up tick. A tenant whose drop fails is logged and counted in the run's outcome and the
/// others go on; the run itself fails only when the database cannot be reached.
pub async fn drop_due(
    db: &Db,
    now: DateTime<Utc>,
) -> Result<tenantry_public::jobs::Ran<Drops>, DbError> {
    use tenantry_public::jobs::{self, Ran, RunKey};
    let day = now.date_naive().to_string();
    let key = RunKey {
        job: DROP_JOB,
        company: None,
        period: &day,
    };
    let Some(id) = jobs::claim(db.public().await?.client(), key, now).await? else {
        return Ok(Ran::NotMine);
    };
    let result = async {
        let due = companies::due_for_drop(db.public().await?.client(), now).await?;
        let mut drops = Drops::default();
        for company in due {
            match crate::provision::drop_due_company(db, company.id, now).await {
                Ok(true) => {
                    tracing::info!(job = DROP_JOB, tenant = %company.slug, "tenant dropped");
                    drops.dropped.push(company.slug.to_string());
                }
                Ok(false) => {}
                Err(DbError::Unavailable(e)) => return Err(DbError::Unavailable(e)),
                Err(e) => {
                    // With its causes: a query error's own text is only "db error".
                    let error = tenantry_public::db::error_chain(&e);
                    tracing::warn!(job = DROP_JOB, tenant = %company.slug, error,
                        "dropping a tenant failed; the next run tries again");
                    drops.failed.push(DropFailure {
                        slug: company.slug.to_string(),
                        error,
                    });
                }
            }
        }
        jobs::done(db.public().await?.client(), id, &drops, now).await?;
        Ok::<_, DbError>(drops)
    }
    .await;
    match result {
        Ok(drops) => {
            tracing::info!(job = DROP_JOB, period = day, ?drops, "job run done");
            Ok(Ran::Done(id, drops))
        }
        Err(e) => {
            tracing::warn!(job = DROP_JOB, period = day, error = %e, "job run failed");
            jobs::fail(db, id, &e.to_string(), now).await?;
            Err(e)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The name has the form of one, but PostgreSQL's time zone database does not know it.
    #[error("no such time zone")]
    UnknownTimezone,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// The settings of this tenant's company.
pub async fn settings(conn: &TenantConn, company: CompanyId) -> Result<CompanySettings, DbError> {
    company_settings::get(&***conn.client(), company).await
}

/// Applies `patch` to the acting member's company, audited as `organization.settings_changed`
/// (before and after) in the same transaction. A patch that changes nothing writes nothing and
/// no entry.
pub async fn update_settings(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    patch: &SettingsPatch,
) -> Result<CompanySettings, SettingsError> {
    let tx = conn.transaction().await?;
    let pg = &**tx.client();
    // Before the lock: reading PostgreSQL's time zone database takes tens of milliseconds.
    if let Some(timezone) = &patch.timezone {
        if !company_settings::is_known_timezone(pg, timezone).await? {
            return Err(SettingsError::UnknownTimezone);
        }
    }
    let before = company_settings::lock(pg, acting.company).await?;
    let wanted = before.patched(patch);
    if wanted == before {
        return Ok(before);
    }
    let after = company_settings::store(pg, &wanted).await?;
    acting
        .commit(tx, Entry::changed(Action::SettingsChanged, &before, &after))
        .await?;
    Ok(after)
}
