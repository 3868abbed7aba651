//! Periodic jobs that run inside one tenant: which tenants a fan-out reaches, and running one
//! tenant's part of a job so that it happens once per period, in that tenant only, or is
//! recorded as skipped. A job names its tenant by company id (never by a schema name from the
//! queue): the schema comes from the company row read here, and the work only ever sees a
//! [`TenantTx`] bound to it.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::json;
use tenantry_public::companies::{self, CompanyStatus};
use tenantry_public::company_settings;
use tenantry_public::db::{Db, DbError};
use tenantry_public::jobs::{self, RunId, RunKey, RunStatus};
use tenantry_public::{CompanyId, Origin};

use crate::audit::{self, Action, Actor, Entry};
use crate::binding::{TenantConn, TenantDb, TenantTx};
use crate::migrate::tenant_head;
use deadpool_postgres::GenericClient;

/// One tenant's part of a periodic job.
pub trait TenantWork: Sync {
    /// The job's name in `public.job_runs`.
    const JOB: &'static str;
    /// What the run did, recorded as its outcome.
    type Outcome: Serialize + Send;

    /// The work for `company`, in its tenant's transaction (which also records the finished
    /// run).
    fn run(
        &self,
        tx: &TenantTx<'_>,
        company: CompanyId,
        origin: &Origin,
        now: DateTime<Utc>,
    ) -> impl std::future::Future<Output = Result<Self::Outcome, DbError>> + Send;
}

/// How one tenant's run went for this caller.
#[derive(Debug, Clone, PartialEq)]
pub enum TenantRun<T> {
    Done(RunId, T),
    /// Not run, and recorded so: the tenant is suspended, still provisioning, gone, or its schema
    /// is not at this binary's migrations.
    Skipped(RunId, String),
    /// Done, being done, or waiting out a retry's backoff elsewhere.
    NotMine,
}

/// The tenants a fan-out reaches: every tenant there is. The ones that may not run now
/// (suspended, provisioning, behind on migrations) are skipped, and recorded so, when their job
/// runs ([`run_for_tenant`] reads the company again then).
pub async fn tenants(db: &Db) -> Result<Vec<CompanyId>, DbError> {
    let conn = db.public().await?;
    Ok(companies::list(conn.client())
        .await?
        .into_iter()
        .map(|c| c.id)
        .collect())
}

/// Runs `work` for `company` in `period` at `now`, once: claims the run, re-reads the company
/// (so a tenant suspended or dropped since the fan-out is skipped, never run elsewhere), binds
/// its schema, and commits the work with the finished run in one transaction. A failure is
/// recorded on the run (retried by a later claim) and returned.
pub async fn run_for_tenant<W: TenantWork>(
    db: &Db,
    work: &W,
    company: CompanyId,
    period: &str,
    now: DateTime<Utc>,
) -> Result<TenantRun<W::Outcome>, DbError> {
    let key = RunKey {
        job: W::JOB,
        company: Some(company),
        period,
    };
    let public = db.public().await?;
    let Some(id) = jobs::claim(public.client(), key, now).await? else {
        return Ok(TenantRun::NotMine);
    };
    let found = companies::find(public.client(), company).await?;
    let skip = match &found {
        None => Some("the tenant is gone".to_owned()),
        Some(c) if c.status != CompanyStatus::Active => {
            Some(format!("the tenant is {}", c.status.as_str()))
        }
        Some(c) if c.schema_version != Some(tenant_head()) => Some(format!(
            "the tenant's schema is at {:?}, not {}",
            c.schema_version,
            tenant_head()
        )),
        Some(_) => None,
    };
    let (Some(company_row), None) = (found, &skip) else {
        let reason = skip.unwrap_or_default();
        let outcome = json!({ "skipped": reason });
        jobs::finish(
            public.client(),
            id,
            RunStatus::Skipped,
            Some(&outcome),
            None,
            now,
        )
        .await?;
        tracing::info!(job = W::JOB, tenant = %company, period, reason, "job run skipped");
        return Ok(TenantRun::Skipped(id, reason));
    };
    drop(public);
    let origin = Origin::new(
        None,
        Some(&format!(
            "tenantry-worker/{} {}",
            env!("CARGO_PKG_VERSION"),
            W::JOB
        )),
        Some(format!("job-{id}")),
    );
    let result = async {
        let mut conn = TenantConn::acquire(db, &company_row.schema_name).await?;
        let tx = conn.transaction().await?;
        let done = work.run(&tx, company, &origin, now).await?;
        jobs::done(&**tx.client(), id, &done, now).await?;
        tx.commit().await?;
        Ok::<_, DbError>(done)
    }
    .await;
    match result {
        Ok(done) => {
            tracing::info!(job = W::JOB, tenant = %company, period, "job run done");
            Ok(TenantRun::Done(id, done))
        }
        Err(e) => {
            let error = e.to_string();
            tracing::warn!(job = W::JOB, tenant = %company, period, %error, "job run failed");
            jobs::fail(db, id, &error, now).await?;
            Err(e)
        }
    }
}

/// The weekly clean-up inside one tenant: tasks done or cancelled longer ago than the
/// organization's `completed_task_retention_days` (none while it is null, the default; a
/// cancelled task's age is its last change), and invitations whose expiry is more than
/// [`INVITATION_RETENTION`] past (pending or not; the audit trail keeps what happened to them),
/// and project reports past their expiry (`reports::LIFETIME`).
/// Audited as `organization.cleaned_up` with the counts when anything went.
#[derive(Debug, Clone, Copy, Default)]
pub struct TenantCleanup;

/// The job name of the per-tenant weekly clean-up.
pub const TENANT_CLEANUP: &str = "cleanup.tenant";
/// How long an invitation is kept after it expired.
pub const INVITATION_RETENTION: Duration = Duration::days(90);

/// What one tenant's clean-up deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TenantCleanupOutcome {
    pub tasks: u64,
    pub invitations: u64,
    /// Project reports past their seven days.
    pub reports: u64,
}

impl TenantWork for TenantCleanup {
    const JOB: &'static str = TENANT_CLEANUP;
    type Outcome = TenantCleanupOutcome;

    async fn run(
        &self,
        tx: &TenantTx<'_>,
        company: CompanyId,
        origin: &Origin,
        now: DateTime<Utc>,
    ) -> Result<TenantCleanupOutcome, DbError> {
        let client = tx.client();
        let retention = company_settings::get(&**client, company)
            .await?
            .completed_task_retention_days;
        let tasks = match retention {
            None => 0,
            Some(days) => {
                let days = days.get();
                client
                    .execute(
                        "delete from tasks where status in ('done', 'cancelled') \
                           and coalesce(completed_at, updated_at) \
                               < $1::timestamptz - make_interval(days => $2)",
                        &[&now, &days],
                    )
                    .await?
            }
        };
        let invitations = client
            .execute(
                "delete from invitations where expires_at < $1",
                &[&(now - INVITATION_RETENTION)],
            )
            .await?;
        let reports = crate::reports::delete_expired(tx, now).await?;
        let outcome = TenantCleanupOutcome {
            tasks,
            invitations,
            reports,
        };
        if tasks + invitations + reports > 0 {
            let entry = Entry::new(Action::OrganizationCleanedUp)
                .after(serde_json::to_value(outcome).unwrap_or_default());
            audit::record(tx, Actor::System, origin, entry).await?;
        }
        Ok(outcome)
    }
}

/// A deterministic delay in `0..window` for `company`, so a fan-out over many tenants spreads
/// their runs over the window instead of starting them in the same second.
pub fn jitter(company: CompanyId, window: std::time::Duration) -> std::time::Duration {
    let secs = window.as_secs();
    if secs == 0 {
        return std::time::Duration::ZERO;
    }
    let bytes = company.0.as_bytes();
    let mut n = 0u64;
    for b in &bytes[8..] {
        n = (n << 8) | u64::from(*b);
    }
    std::time::Duration::from_secs(n % secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_stable_within_the_window_and_spreads() {
        let window = std::time::Duration::from_secs(600);
        let ids: Vec<CompanyId> = (0..200).map(|_| CompanyId::new()).collect();
        let delays: Vec<_> = ids.iter().map(|&c| jitter(c, window)).collect();
        assert!(delays.iter().all(|d| *d < window));
        assert_eq!(
            delays,
            ids.iter().map(|&c| jitter(c, window)).collect::<Vec<_>>()
        );
        let mut distinct = delays.clone();
        distinct.sort();
        distinct.dedup();
        assert!(
            distinct.len() > 100,
            "spread: {} distinct delays",
            distinct.len()
        );
        assert_eq!(
            jitter(ids[0], std::time::Duration::ZERO),
            std::time::Duration::ZERO
        );
    }
}
