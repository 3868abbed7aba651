//! Project reports in the worker: the `{prefix}:jobs:report` queue the server pushes a
//! [`ReportJob`] onto after the report's row committed, and the sweep that builds reports whose
//! push was lost or whose worker died (`tenantry_tenant::reports::sweep`). Both end in
//! `tenantry_tenant::reports::run`, which claims the row, so a report is built once whichever
//! path reaches it first; the ready email then goes to the mail queue like every other.

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::TaskSink;
use apalis_redis::RedisStorage;
use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;
use tenantry_public::db::{Db, DbError};
use tenantry_public::mail::Deliver;
use tenantry_tenant::reports::{self, Built, ReportJob};

use crate::mail::Mailer;

/// How often the sweep looks for reports left queued or running.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The apalis-redis storage behind `{prefix}:jobs:report`.
#[must_use]
pub fn report_storage(redis: ConnectionManager, prefix: &str) -> RedisStorage<ReportJob> {
    let config = crate::queue_config(reports::queue_name(prefix));
    RedisStorage::new(redis).with_config(config)
}

/// Builds one report at `now` and queues its email. A failed push of the email is only logged:
/// the outbox row is committed, and the mail sweep queues it.
///
/// # Errors
/// The database's, when the report could not even be claimed or recorded (it stays for the
/// sweep).
pub async fn build(
    db: &Db,
    mailer: Option<&Mailer>,
    job: &ReportJob,
    now: DateTime<Utc>,
) -> Result<Built, DbError> {
    let built = reports::run(db, job.company_id, job.report_id, now).await?;
    if let (Built::Done(Some(outbox)), Some(mailer)) = (&built, mailer) {
        if let Err(error) = mailer
            .storage()
            .push(Deliver {
                outbox_id: outbox.0,
            })
            .await
        {
            tracing::warn!(outbox_id = outbox.0, %error, "could not queue a report email; the mail sweep will");
        }
    }
    Ok(built)
}

/// One sweep at `now`: builds every report left queued past `reports::SWEEP_AFTER` or running
/// past `reports::STALE_AFTER`, one after the other; answers how many it built or failed.
///
/// # Errors
/// An unavailable database (the reports left stay for the next sweep); a report that fails
/// otherwise is logged and the sweep goes on.
pub async fn sweep(db: &Db, mailer: Option<&Mailer>, now: DateTime<Utc>) -> Result<usize, DbError> {
    let jobs = reports::sweep(db, now).await?;
    let mut finished = 0;
    for job in &jobs {
        match build(db, mailer, job, now).await {
            Ok(Built::Done(_) | Built::Failed(_)) => finished += 1,
            Ok(Built::NotMine) => {}
            Err(e @ DbError::Unavailable(_)) => return Err(e),
            // This report stays for the next sweep; the others go on.
            Err(error) => {
                tracing::warn!(tenant = %job.company_id, report = %job.report_id, %error, "report sweep could not build a report");
            }
        }
    }
    if finished > 0 {
        tracing::info!(finished, "report sweep built reports left behind");
    }
    Ok(finished)
}

/// Sweeps every [`SWEEP_EVERY`] until the task is dropped.
pub async fn sweep_forever(mailer: Arc<Mailer>) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Err(error) = sweep(mailer.db(), Some(&mailer), Utc::now()).await {
            tracing::warn!(%error, "report sweep failed");
        }
    }
}
