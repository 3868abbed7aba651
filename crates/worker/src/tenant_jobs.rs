//! Per-tenant jobs: the fan-out that turns one scheduler tick into one queued job per ready
//! tenant (spread over a window), and the handler that runs a tenant's part (the weekly
//! clean-up, the due reminders, the overdue digest). A queued job names
//! its tenant by company id only; the schema comes from the company row when it runs
//! (`tenantry_tenant::jobs::run_for_tenant`).

use std::collections::HashSet;
use std::time::Duration;

use apalis::prelude::{TaskBuilder, TaskSink};
use apalis_redis::RedisStorage;
use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tenantry_public::db::{Db, DbError};
use tenantry_public::jobs::{self, RunKey};
use tenantry_public::links::Links;
use tenantry_public::mail::OutboxId;
use tenantry_public::CompanyId;
use tenantry_tenant::jobs::{self as tenant_jobs, TenantCleanup, TenantRun, TENANT_CLEANUP};
use tenantry_tenant::reminders::{self, DueReminders, OverdueRun, DUE_REMINDERS, OVERDUE_DIGEST};

/// One tenant's part of a periodic job, as queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantJob {
    /// The job (`cleanup.tenant`, `reminders.due`, `reminders.overdue`).
    pub job: String,
    pub company_id: CompanyId,
    /// The period the fan-out was for (the run's key), except for `reminders.overdue`, whose
    /// run's period is the tenant's local date, known only when it runs.
    pub period: String,
    /// The instant the run is for (the fan-out's `now`).
    pub at: DateTime<Utc>,
}

/// Errors of a fan-out or a tenant job.
#[derive(Debug, thiserror::Error)]
pub enum TenantJobError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("could not enqueue a tenant job: {0}")]
    Enqueue(String),
    #[error("no tenant job named {0:?}")]
    Unknown(String),
}

/// The queue of [`TenantJob`]s: `{prefix}:jobs:tenant`.
#[must_use]
pub fn tenant_queue(prefix: &str) -> String {
    format!("{prefix}:jobs:tenant")
}

#[must_use]
pub fn tenant_storage(redis: ConnectionManager, prefix: &str) -> RedisStorage<TenantJob> {
    let config = crate::queue_config(tenant_queue(prefix));
    RedisStorage::new(redis).with_config(config)
}

/// One fan-out: the job it queues, the period the queued runs are for, and the period the
/// fan-out itself is claimed once in (`{job}.fanout`).
#[derive(Debug, Clone, Copy)]
pub struct Fan<'a> {
    pub job: &'a str,
    pub period: &'a str,
    /// The weekly clean-up fans out once per UTC day (so a daily tick also re-queues the
    /// tenants whose run of the week failed or never happened); the reminder jobs once per tick
    /// (the tick's scheduled instant, the same on every worker).
    pub once_per: &'a str,
}

/// The fan-out `fan` at `now`: claimed once per `fan.once_per`, it queues one [`TenantJob`]
/// per tenant that has not finished `fan.period` (done or skipped), each delayed by its
/// tenant's jitter within `window`. Answers how many it queued, or `None` when another worker
/// has this fan-out.
pub async fn fan_out(
    db: &Db,
    redis: &ConnectionManager,
    prefix: &str,
    fan: Fan<'_>,
    now: DateTime<Utc>,
    window: Duration,
) -> Result<Option<usize>, TenantJobError> {
    let Fan {
        job,
        period,
        once_per,
    } = fan;
    let fanout = format!("{job}.fanout");
    let conn = db.public().await?;
    let key = RunKey {
        job: &fanout,
        company: None,
        period: once_per,
    };
    let Some(id) = jobs::claim(conn.client(), key, now).await? else {
        return Ok(None);
    };
    let finished: HashSet<CompanyId> = conn
        .client()
        .query(
            "select company_id from public.job_runs \
              where job = $1 and period = $2 and status in ('done', 'skipped') \
                and company_id is not null",
            &[&job, &period],
        )
        .await
        .map_err(DbError::from)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    drop(conn);
    let tenants: Vec<CompanyId> = tenant_jobs::tenants(db)
        .await?
        .into_iter()
        .filter(|c| !finished.contains(c))
        .collect();
    let mut storage = tenant_storage(redis.clone(), prefix);
    for &company_id in &tenants {
        let task = TaskBuilder::new(TenantJob {
            job: job.to_owned(),
            company_id,
            period: period.to_owned(),
            at: now,
        })
        .run_after(tenant_jobs::jitter(company_id, window))
        .build();
        if let Err(e) = storage.push_task(task).await {
            let error = e.to_string();
            jobs::fail(db, id, &error, now).await?;
            return Err(TenantJobError::Enqueue(error));
        }
    }
    let outcome = serde_json::json!({ "queued": tenants.len(), "period": period });
    jobs::done(db.public().await?.client(), id, &outcome, now).await?;
    tracing::info!(job, period, queued = tenants.len(), "fan-out done");
    Ok(Some(tenants.len()))
}

/// Runs one queued tenant job; `links` build the links in its emails.
///
/// Answers the outbox rows of the emails the run wrote, to be queued for delivery now that they
/// are committed (the mail sweep would relay them too, but only a batch per interval).
pub async fn run(db: &Db, links: &Links, job: &TenantJob) -> Result<Vec<OutboxId>, TenantJobError> {
    match job.job.as_str() {
        TENANT_CLEANUP => {
            tenant_jobs::run_for_tenant(db, &TenantCleanup, job.company_id, &job.period, job.at)
                .await?;
            Ok(Vec::new())
        }
        DUE_REMINDERS => {
            let work = DueReminders {
                links: links.clone(),
            };
            match tenant_jobs::run_for_tenant(db, &work, job.company_id, &job.period, job.at)
                .await?
            {
                TenantRun::Done(_, done) => Ok(done.outbox),
                _ => Ok(Vec::new()),
            }
        }
        OVERDUE_DIGEST => {
            match reminders::run_overdue_digest(db, links, job.company_id, job.at).await? {
                OverdueRun::Day(_, TenantRun::Done(_, done)) => Ok(done.outbox),
                _ => Ok(Vec::new()),
            }
        }
        other => Err(TenantJobError::Unknown(other.to_owned())),
    }
}
