//! Provisioning: a new company, its domain, its schema at head, its owner account and membership,
//! all in one transaction. A failure anywhere leaves nothing behind: no schema, no rows.

use chrono::{DateTime, Utc};
use tenantry_public::account_tokens;
use tenantry_public::companies::{self, Company};
use tenantry_public::db::{sqlstate, Db, DbError};
use tenantry_public::ids::CompanyId;
use tenantry_public::mail::OutboxId;
use tenantry_public::memberships::{self, Role};
use tenantry_public::migrate::MigrateError;
use tenantry_public::passwords::{self, PasswordError};
use tenantry_public::plans::PlanCode;
use tenantry_public::subscriptions;
use tenantry_public::users::{self, User};
use tenantry_public::{DomainName, Email, Password, Slug, UserId};

use crate::migrate::{lock_schema, migrate_schema_in};

/// A validated signup.
#[derive(Debug, Clone)]
pub struct NewTenant {
    /// Already validated with [`tenantry_public::names::display_name`].
    pub name: String,
    pub slug: Slug,
    pub plan: PlanCode,
    /// `Some(now)`: the plan starts as a [`subscriptions::TRIAL_DAYS`]-day trial from `now`
    /// (self-service sign-up on a paid plan); `None`: it is simply active (free, or an operator's
    /// `tenantctl tenant create`).
    pub trial_from: Option<DateTime<Utc>>,
    pub owner: Owner,
}

/// Who owns a new tenant.
#[derive(Debug, Clone)]
pub enum Owner {
    /// A new account, created with the tenant. An email that already has an account is refused
    /// ([`ProvisionError::OwnerCredentials`]) whatever the password: sign-up never checks an
    /// existing account's password, so it cannot be used to guess one.
    New {
        email: Email,
        password: Password,
        full_name: String,
    },
    /// An existing account, authenticated by the caller (an account token): the same person
    /// owning another organization.
    Existing(UserId),
}

/// A tenant ready to serve.
#[derive(Debug, Clone)]
pub struct Provisioned {
    pub company: Company,
    pub domain: String,
    pub owner: User,
    /// The owner's welcome email (outbox row), written with the membership.
    pub welcome: OutboxId,
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("the slug is already taken")]
    SlugTaken,
    #[error("the domain is already taken")]
    DomainTaken,
    /// The email belongs to an existing account (which signs in to create an organization).
    #[error("an account with this email exists")]
    OwnerCredentials,
    /// The existing account named as owner is gone or deactivated.
    #[error("the owner's account is not active")]
    OwnerInactive,
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Migrate(MigrateError),
    #[error(transparent)]
    Password(#[from] PasswordError),
}

impl From<tokio_postgres::Error> for ProvisionError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::from_db(e.into())
    }
}

impl From<MigrateError> for ProvisionError {
    fn from(e: MigrateError) -> Self {
        match e {
            MigrateError::Db(db) => Self::from_db(db),
            other => Self::Migrate(other),
        }
    }
}

impl ProvisionError {
    fn from_db(e: DbError) -> Self {
        match e.constraint() {
            Some("companies_slug_key" | "companies_schema_name_key") => Self::SlugTaken,
            Some("domains_pkey") => Self::DomainTaken,
            // A concurrent signup created the same owner account first.
            Some(users::EMAIL_KEY) => Self::OwnerCredentials,
            // A schema of that name exists without a company: treat the name as taken.
            _ if e.code() == Some(sqlstate::DUPLICATE_SCHEMA) => Self::SlugTaken,
            _ => Self::Db(e),
        }
    }
}

/// Creates a tenant. `base` is `BASE_DOMAIN`; the tenant's primary domain is `<slug>.<base>`.
pub async fn provision(
    db: &Db,
    base: &DomainName,
    new: NewTenant,
) -> Result<Provisioned, ProvisionError> {
    provision_inner(db, base, new, None)
        .await
        .map(|(done, _)| done)
}

/// [`provision`], and when the owner's account is new, a verification token and email (in the
/// same transaction). `link` turns the token into the URL to mail. Returns the outbox row to push.
pub async fn provision_and_verify(
    db: &Db,
    base: &DomainName,
    new: NewTenant,
    link: &(dyn Fn(&str) -> String + Sync),
) -> Result<(Provisioned, Option<OutboxId>), ProvisionError> {
    provision_inner(db, base, new, Some(link)).await
}

#[tracing::instrument(skip_all, fields(tenant = %new.slug))]
async fn provision_inner(
    db: &Db,
    base: &DomainName,
    new: NewTenant,
    link: Option<&(dyn Fn(&str) -> String + Sync)>,
) -> Result<(Provisioned, Option<OutboxId>), ProvisionError> {
    // All password work happens before the transaction opens, so row locks are held for
    // milliseconds only. A new owner's password is hashed even when its email turns out to have
    // an account (refused inside the transaction), so both answers take as long.
    let password_hash = match &new.owner {
        Owner::New { password, .. } => Some(passwords::hash(password).await?),
        Owner::Existing(_) => None,
    };
    let domain = format!("{}.{}", new.slug, base);
    let schema = new.slug.schema_name();
    let company_id = CompanyId::new();

    let mut client = db.public().await?;
    let tx = client.transaction().await?;

    // The slug's unique index serialises concurrent signups of one slug: the second waits here
    // for the first to commit, then fails with a unique violation.
    tx.execute(
        "insert into public.companies (id, name, slug, schema_name, plan, status) \
         values ($1, $2, $3, $4, $5, 'provisioning')",
        &[
            &company_id.0,
            &new.name,
            &new.slug.as_str(),
            &schema.as_str(),
            &new.plan.as_str(),
        ],
    )
    .await?;
    // The company's trigger made its subscription, active on the plan; a trial says so.
    if let Some(now) = new.trial_from {
        subscriptions::start_trial(&*tx, company_id, new.plan, now).await?;
    }
    tx.execute(
        "insert into public.domains (domain, company_id, is_primary) values ($1, $2, true)",
        &[&domain, &company_id.0],
    )
    .await?;

    tx.batch_execute(&format!("create schema {}", schema.quoted()))
        .await?;
    lock_schema(&tx, &schema).await?;
    let version = migrate_schema_in(&tx, &schema).await?.version;

    let mut verification = None;
    let owner = match (&new.owner, password_hash) {
        (Owner::Existing(user), _) => users::find_by_id(&*tx, *user)
            .await?
            .filter(|u| u.is_active)
            .ok_or(ProvisionError::OwnerInactive)?,
        // An email that has an account violates its unique index here (also when a concurrent
        // signup created it since): OwnerCredentials, and everything here rolls back.
        (
            Owner::New {
                email, full_name, ..
            },
            Some(hash),
        ) => {
            let owner = users::insert(&*tx, email, &hash, full_name, company_id)
                .await
                .map_err(ProvisionError::from_db)?;
            if let Some(link) = link {
                verification = Some(account_tokens::send_verification(&*tx, &owner, link).await?);
            }
            owner
        }
        (Owner::New { .. }, None) => {
            return Err(DbError::Corrupt("no password hash for a new owner".into()).into())
        }
    };
    memberships::insert(&*tx, owner.id, company_id, Role::Owner)
        .await
        .map_err(ProvisionError::from_db)?;
    let welcome = memberships::welcome(&*tx, company_id, owner.id, Role::Owner).await?;

    tx.execute(
        "update public.companies set status = 'active', schema_version = $2, updated_at = now() \
         where id = $1",
        &[&company_id.0, &version],
    )
    .await?;
    let company = companies::find_by_slug(&*tx, &new.slug)
        .await?
        .ok_or_else(|| DbError::Corrupt("company vanished inside its own transaction".into()))?;
    tx.commit().await?;
    Ok((
        Provisioned {
            company,
            domain,
            owner,
            welcome,
        },
        verification,
    ))
}

/// Drops a tenant: its schema and every public row that belongs to it, in one transaction.
/// Returns false when no company has that slug.
pub async fn drop_tenant(db: &Db, slug: &Slug) -> Result<bool, DbError> {
    let mut client = db.public().await?;
    let tx = client.transaction().await?;
    let Some(company) = companies::find_by_slug(&*tx, slug).await? else {
        return Ok(false);
    };
    drop_in(tx, &company).await?;
    Ok(true)
}

/// The worker's drop of a deleted organization ([`crate::organization::drop_due`]): like
/// [`drop_tenant`], but only while the company, read under its row lock, is still marked for
/// deletion with `drop_after` at or before `now`. False when it is gone or no longer due (an
/// operator restored it first), so a second run drops nothing.
pub async fn drop_due_company(db: &Db, id: CompanyId, now: DateTime<Utc>) -> Result<bool, DbError> {
    let mut client = db.public().await?;
    let tx = client.transaction().await?;
    let Some(company) = companies::lock(&*tx, id).await? else {
        return Ok(false);
    };
    if company.deletion.is_none_or(|d| d.drop_after > now) {
        return Ok(false);
    }
    drop_in(tx, &company).await?;
    Ok(true)
}

/// Drops `company`'s schema (under the per-schema lock migrations and provisioning take) and its
/// company row (every public row of it cascades), and commits.
async fn drop_in(tx: deadpool_postgres::Transaction<'_>, company: &Company) -> Result<(), DbError> {
    lock_schema(&tx, &company.schema_name)
        .await
        .map_err(|e| match e {
            MigrateError::Db(db) => db,
            other => DbError::Corrupt(other.to_string()),
        })?;
    tx.batch_execute(&format!(
        "drop schema if exists {} cascade",
        company.schema_name.quoted()
    ))
    .await?;
    // The foreign key does this on a single server; on Citus it is gone (public migration V12:
    // a reference table cannot set null through a key to a local table).
    tx.execute(
        "update public.users set origin_company_id = null where origin_company_id = $1",
        &[&company.id.0],
    )
    .await?;
    tx.execute(
        "delete from public.companies where id = $1",
        &[&company.id.0],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
