//! Periodic job runs claimed in PostgreSQL (`public.job_runs`): however many workers fire the
//! same schedule, a (job, tenant, period) runs once. A worker that claims a run and dies is
//! replaced after [`STALE_AFTER`]; a failed run is retried with backoff (1, 2, 4, … minutes)
//! until [`MAX_ATTEMPTS`], and then stays failed ("dead") for an operator to see and retry.
//! Time is always a parameter, never read here, so tests choose it.

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use tokio_postgres::GenericClient;

use crate::db::DbError;
use crate::CompanyId;

crate::typed_id!(
    /// A row of `public.job_runs` (bigserial).
    pub RunId: i64
);

crate::text_enum! {
    /// Where a run is.
    pub enum RunStatus {
        Running = "running",
        Done = "done",
        /// Nothing to do for this tenant (suspended, not ready, …): recorded, not retried.
        Skipped = "skipped",
        Failed = "failed",
    }
}

/// The Redis key where the worker's heartbeat job writes the RFC 3339 instant of its last beat
/// (with a five-minute expiry): `{prefix}:worker:heartbeat`. Here, not in the worker, so the
/// server's `/ready` and `tenantctl jobs list` read the same key without knowing the worker.
#[must_use]
pub fn heartbeat_key(prefix: &str) -> String {
    format!("{prefix}:worker:heartbeat")
}

/// A heartbeat value as the worker writes it, and its age at `now` (never negative: a clock a
/// little ahead of ours reads as zero). `None` for a value that is not RFC 3339.
#[must_use]
pub fn heartbeat_age(value: &str, now: DateTime<Utc>) -> Option<(DateTime<Utc>, Duration)> {
    let at = DateTime::parse_from_rfc3339(value.trim())
        .ok()?
        .with_timezone(&Utc);
    Some((at, (now - at).max(Duration::zero())))
}

/// A claim older than this whose run never finished is taken over by the next worker.
pub const STALE_AFTER: Duration = Duration::minutes(15);
/// Attempts after which a failed run is left failed (dead) until an operator retries it.
pub const MAX_ATTEMPTS: i32 = 5;

/// Which run: a job, its tenant (`None`: platform-wide) and its period (`2026-W49`,
/// `2026-12-02`, …, chosen by the job).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunKey<'a> {
    pub job: &'a str,
    pub company: Option<CompanyId>,
    pub period: &'a str,
}

/// Claims the run at `now`: `Some` when this caller is to run it — no row yet, a running claim
/// older than [`STALE_AFTER`], or a failed run whose backoff is over and that has attempts
/// left — and `None` when it is done, skipped, being run, dead, or waiting out its backoff.
/// The backoff is written `now - finished_at >= interval` (immutable operators) rather than
/// `finished_at + interval <= now` (stable): Citus accepts only immutable functions in the `where`
/// of an `on conflict` on its tables (README, "Running on Citus"). A retried run's `-infinity`
/// (which cannot be subtracted from) is over at once.
pub async fn claim(
    db: &impl GenericClient,
    key: RunKey<'_>,
    now: DateTime<Utc>,
) -> Result<Option<RunId>, DbError> {
    let stale = now - STALE_AFTER;
    let row = db
        .query_opt(
            "insert into public.job_runs (job, company_id, period, status, claimed_at) \
             values ($1, $2, $3, 'running', $4) \
             on conflict on constraint job_runs_once do update \
                set status = 'running', attempts = job_runs.attempts + 1, claimed_at = $4, \
                    finished_at = null \
              where (job_runs.status = 'running' and job_runs.claimed_at < $5) \
                 or (job_runs.status = 'failed' and job_runs.attempts < $6 \
                     and case when job_runs.finished_at = '-infinity' then true \
                              else $4 - job_runs.finished_at \
                                   >= make_interval(mins => 1 << (job_runs.attempts - 1)) end) \
             returning id",
            &[
                &key.job,
                &key.company,
                &key.period,
                &now,
                &stale,
                &MAX_ATTEMPTS,
            ],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Records how a claimed run ended: `done` or `skipped` with its outcome, or `failed` with the
/// error (retried by a later [`claim`] while attempts are left).
pub async fn finish(
    db: &impl GenericClient,
    id: RunId,
    status: RunStatus,
    outcome: Option<&Value>,
    error: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    db.execute(
        "update public.job_runs set status = $2, outcome = $3, last_error = $4, finished_at = $5 \
          where id = $1",
        &[&id, &status, &outcome, &error, &now],
    )
    .await?;
    Ok(())
}

/// [`finish`] as `done`, with `outcome` serialised.
pub async fn done(
    db: &impl GenericClient,
    id: RunId,
    outcome: &impl serde::Serialize,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    let outcome = serde_json::to_value(outcome).unwrap_or(Value::Null);
    finish(db, id, RunStatus::Done, Some(&outcome), None, now).await
}

/// [`finish`] as `failed` with `error`, on a connection of its own (the run's transaction has
/// rolled back).
pub async fn fail(
    db: &crate::db::Db,
    id: RunId,
    error: &str,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    let conn = db.public().await?;
    finish(conn.client(), id, RunStatus::Failed, None, Some(error), now).await
}

/// Makes a dead (or any failed) run claimable again at once, as a first attempt; `false` when
/// no failed run has that id.
pub async fn retry(db: &impl GenericClient, id: RunId) -> Result<bool, DbError> {
    let n = db
        .execute(
            "update public.job_runs set attempts = 1, finished_at = '-infinity' \
              where id = $1 and status = 'failed'",
            &[&id],
        )
        .await?;
    Ok(n == 1)
}

/// One job's runs, for `tenantctl jobs list`.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSummary {
    pub job: String,
    pub done: i64,
    pub skipped: i64,
    pub failed: i64,
    pub running: i64,
    pub last_claimed_at: Option<DateTime<Utc>>,
    pub last_finished_at: Option<DateTime<Utc>>,
}

/// Every job that ever ran, with its runs by status.
pub async fn summary(db: &impl GenericClient) -> Result<Vec<JobSummary>, DbError> {
    let rows = db
        .query(
            "select job, count(*) filter (where status = 'done'), \
                    count(*) filter (where status = 'skipped'), \
                    count(*) filter (where status = 'failed'), \
                    count(*) filter (where status = 'running'), \
                    max(claimed_at), max(finished_at) \
               from public.job_runs group by job order by job",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(JobSummary {
                job: r.try_get(0)?,
                done: r.try_get(1)?,
                skipped: r.try_get(2)?,
                failed: r.try_get(3)?,
                running: r.try_get(4)?,
                last_claimed_at: r.try_get(5)?,
                last_finished_at: r.try_get(6)?,
            })
        })
        .collect()
}

/// A failed run, for `tenantctl jobs failed`.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedRun {
    pub id: RunId,
    pub job: String,
    pub company: Option<CompanyId>,
    pub period: String,
    pub attempts: i32,
    pub dead: bool,
    pub last_error: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Every failed run, newest first; `dead` once its attempts are spent.
pub async fn failed(db: &impl GenericClient) -> Result<Vec<FailedRun>, DbError> {
    let rows = db
        .query(
            "select id, job, company_id, period, attempts, attempts >= $1, last_error, finished_at \
               from public.job_runs where status = 'failed' order by finished_at desc, id desc",
            &[&MAX_ATTEMPTS],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(FailedRun {
                id: r.try_get(0)?,
                job: r.try_get(1)?,
                company: r.try_get(2)?,
                period: r.try_get(3)?,
                attempts: r.try_get(4)?,
                dead: r.try_get(5)?,
                last_error: r.try_get(6)?,
                finished_at: r.try_get(7)?,
            })
        })
        .collect()
}

/// The job name of the platform-wide weekly clean-up.
pub const PLATFORM_CLEANUP: &str = "cleanup.platform";

/// How a scheduled run went for this caller.
#[derive(Debug, Clone, PartialEq)]
pub enum Ran<T> {
    /// This caller claimed the run and did it.
    Done(RunId, T),
    /// Another worker did it, is doing it, or it is dead or waiting out its backoff.
    NotMine,
}

/// The platform clean-up of the ISO week of `now` ([`crate::cleanup::platform`]), run only if
/// this caller claims it: the deletions and the finished run commit together, so a crash leaves
/// either nothing done (and the claim, taken over after [`STALE_AFTER`]) or everything. A
/// failure is recorded on the run (retried with backoff) and returned.
pub async fn platform_cleanup(
    db: &crate::db::Db,
    now: DateTime<Utc>,
) -> Result<Ran<crate::cleanup::PlatformCleanup>, DbError> {
    let period = iso_week(now);
    let key = RunKey {
        job: PLATFORM_CLEANUP,
        company: None,
        period: &period,
    };
    let Some(id) = claim(db.public().await?.client(), key, now).await? else {
        return Ok(Ran::NotMine);
    };
    let mut conn = db.public().await?;
    let result = async {
        let tx = conn.transaction().await?;
        let cleaned = crate::cleanup::platform(&*tx, now).await?;
        done(&*tx, id, &cleaned, now).await?;
        tx.commit().await?;
        Ok::<_, DbError>(cleaned)
    }
    .await;
    match result {
        Ok(cleaned) => {
            tracing::info!(job = PLATFORM_CLEANUP, period, ?cleaned, "job run done");
            Ok(Ran::Done(id, cleaned))
        }
        Err(e) => {
            tracing::warn!(job = PLATFORM_CLEANUP, period, error = %e, "job run failed");
            fail(db, id, &e.to_string(), now).await?;
            Err(e)
        }
    }
}

/// The ISO week of `now` as a period key (`2026-W49`).
pub fn iso_week(now: DateTime<Utc>) -> String {
    let week = now.iso_week();
    format!("{}-W{:02}", week.year(), week.week())
}

use chrono::Datelike as _;

#[cfg(test)]
mod tests {
    #[test]
    fn heartbeat_ages_are_read_from_rfc_3339() {
        let now: DateTime<Utc> = "2026-05-01T12:00:10Z".parse().unwrap_or_default();
        let (at, age) = heartbeat_age("2026-05-01T12:00:00.250Z", now).unwrap_or_default();
        assert_eq!(at.to_rfc3339(), "2026-05-01T12:00:00.250+00:00");
        assert_eq!(age, Duration::milliseconds(9750));
        let ahead = heartbeat_age("2026-05-01T12:00:11Z", now).map(|a| a.1);
        assert_eq!(ahead, Some(Duration::zero()));
        assert_eq!(heartbeat_age("yesterday", now), None);
        assert_eq!(heartbeat_key("t1"), "t1:worker:heartbeat");
    }

    use super::*;

    #[test]
    fn weeks_are_iso_weeks() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc));
        assert_eq!(
            at("2026-12-02T10:00:00Z").map(iso_week).ok(),
            Some("2026-W49".into())
        );
        // 1 January 2027 is a Friday: still week 53 of 2026.
        assert_eq!(
            at("2027-01-01T00:00:00Z").map(iso_week).ok(),
            Some("2026-W53".into())
        );
    }
}

/// The setting that schedules a periodic job: its environment variable and its default, a cron
/// expression with a leading seconds field (`sec min hour day-of-month month day-of-week`). The
/// worker fires the job on it; `tenantctl jobs list` shows the next firing from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleSetting {
    pub var: &'static str,
    pub default: &'static str,
}

/// The weekly clean-ups (platform and per tenant) and the billing period end: every day at 03:00
/// UTC; each part runs once per period, claimed here.
pub const CLEANUP_SCHEDULE: ScheduleSetting = ScheduleSetting {
    var: "WORKER_CLEANUP_CRON",
    default: "0 0 3 * * *",
};
/// The due reminders: every 15 minutes.
pub const REMINDER_SCHEDULE: ScheduleSetting = ScheduleSetting {
    var: "WORKER_REMINDER_CRON",
    default: "0 */15 * * * *",
};
/// The overdue digest's look for organizations past 08:00 local time: every 15 minutes.
pub const OVERDUE_SCHEDULE: ScheduleSetting = ScheduleSetting {
    var: "WORKER_OVERDUE_CRON",
    default: "0 */15 * * * *",
};
