//! `tenantctl jobs …`: the periodic job runs recorded in `public.job_runs`.

use chrono::{DateTime, SecondsFormat, Utc};
use clap::Subcommand;
use std::process::ExitCode;
use std::str::FromStr;
use tenantry_public::db::Db;
use tenantry_public::jobs::{
    self, Ran, RunId, CLEANUP_SCHEDULE, OVERDUE_SCHEDULE, PLATFORM_CLEANUP, REMINDER_SCHEDULE,
};
use tenantry_public::links::Links;
use tenantry_public::{companies, CompanyId, Slug};
use tenantry_tenant::jobs::{self as tenant_jobs, TenantCleanup, TenantRun, TENANT_CLEANUP};
use tenantry_tenant::organization::DROP_JOB;
use tenantry_tenant::reminders::{self, DueReminders, OverdueRun, DUE_REMINDERS, OVERDUE_DIGEST};
use tenantry_tenant::subscription::PERIOD_END_JOB;

#[derive(Subcommand)]
pub enum JobsCommand {
    /// Every job with its runs by status and its last run, and the age of the worker's newest
    /// heartbeat (read from Redis when `REDIS_URL` is given).
    List {
        /// Redis, where the worker writes its heartbeat.
        #[arg(long, env = "REDIS_URL", hide_env_values = true)]
        redis_url: Option<String>,
        /// The key prefix the worker and the server share (`WORKER_QUEUE_PREFIX` /
        /// `REDIS_PREFIX`).
        #[arg(long, env = "REDIS_PREFIX", default_value = "tenantry")]
        redis_prefix: String,
    },
    /// Run a job now, as the worker would at `--at` (default: now). A period already run (or
    /// being run) is not run again.
    Run {
        /// The job: `cleanup.platform`, `billing.period_end`, `organization.drop` (deleted
        /// organizations past their grace period), or `cleanup.tenant`, `reminders.due` or
        /// `reminders.overdue` with `--tenant`. The emails' links use `BASE_DOMAIN`,
        /// `LINK_SCHEME` and `LINK_PORT` as the worker does; `billing.period_end` reads
        /// `BILLING_PAST_DUE_GRACE_DAYS` (default 7) as the worker does. Emails are written to the
        /// outbox; the worker's mail sweep sends them.
        name: String,
        /// The tenant (slug) of a per-tenant job.
        #[arg(long)]
        tenant: Option<String>,
        /// The instant the run is for (RFC 3339); it picks the period.
        #[arg(long)]
        at: Option<DateTime<Utc>>,
    },
    /// Failed runs, newest first, with their last error (`dead` once retries are spent).
    Failed,
    /// Make a failed (or dead) run claimable again at once.
    Retry { id: RunId },
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "-".to_owned(),
        |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

/// The company of tenant `slug`.
async fn tenant_id(db: &Db, slug: &str) -> anyhow::Result<CompanyId> {
    let conn = db.public().await?;
    Ok(companies::find_by_slug(conn.client(), &Slug::parse(slug)?)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no tenant {slug:?}"))?
        .id)
}

/// Prints a tenant run that did no work.
fn not_done<T>(name: &str, slug: &str, period: &str, ran: &TenantRun<T>) {
    match ran {
        TenantRun::Done(..) => {}
        TenantRun::Skipped(id, why) => {
            println!("{name} {slug} {period} (run {id}): skipped: {why}");
        }
        TenantRun::NotMine => {
            println!("{name} {slug} {period}: already run, being run, or waiting to be retried");
        }
    }
}

/// `jobs run reminders.due|reminders.overdue --tenant SLUG [--at T]`: the tenant's run as the
/// worker's tick at `now` would make it.
async fn run_reminders(
    db: &Db,
    links: &Links,
    name: &str,
    slug: &str,
    company: CompanyId,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    if name == DUE_REMINDERS {
        let period = reminders::due_period(now);
        let work = DueReminders {
            links: links.clone(),
        };
        match tenant_jobs::run_for_tenant(db, &work, company, &period, now).await? {
            TenantRun::Done(id, done) => println!(
                "{name} {slug} {period} (run {id}): sent {} reminder(s)",
                done.reminders
            ),
            other => not_done(name, slug, &period, &other),
        }
        return Ok(());
    }
    match reminders::run_overdue_digest(db, links, company, now).await? {
        OverdueRun::NotYet => println!(
            "{name} {slug}: not yet 08:00 in the organization's time zone at {}; nothing run",
            time(Some(now))
        ),
        OverdueRun::Day(date, TenantRun::Done(id, done)) => println!(
            "{name} {slug} {date} (run {id}): {} overdue task(s), {} email(s): {} digest(s), {} lead summary(ies)",
            done.overdue_tasks, done.emails, done.digests, done.lead_summaries
        ),
        OverdueRun::Day(date, other) => not_done(name, slug, &date.to_string(), &other),
    }
    Ok(())
}

/// `jobs run billing.period_end [--at T]`: the day's run as the worker's tick at `now` would
/// make it (trials and periods ended, past-due grace run out, trial reminders).
async fn run_period_end(db: &Db, name: &str, now: DateTime<Utc>) -> anyhow::Result<()> {
    use tenantry_tenant::subscription::{
        end_periods, PeriodEndSettings, DEFAULT_PAST_DUE_GRACE_DAYS, PAST_DUE_GRACE_VAR,
    };
    let days = match std::env::var(PAST_DUE_GRACE_VAR) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|d| (0..=90).contains(d))
            .ok_or_else(|| {
                anyhow::anyhow!("{PAST_DUE_GRACE_VAR}: `{v}` is not a number of days from 0 to 90")
            })?,
        _ => i64::from(DEFAULT_PAST_DUE_GRACE_DAYS),
    };
    let settings = PeriodEndSettings {
        links: Links::from_lookup(|k| std::env::var(k).ok())?,
        past_due_grace: chrono::Duration::days(days),
    };
    let day = now.date_naive();
    match end_periods(db, &settings, now).await? {
        Ran::Done(id, e) => println!(
            "{name} {day} (run {id}): {} moved to free ({} over its limits, now read-only), \
             {} scheduled change(s) applied, {} past due beyond {days} day(s) made read-only, \
             {} trial reminder(s); {} email(s) queued",
            e.moved_to_free,
            e.payment_required,
            e.changes_applied,
            e.past_due_locked,
            e.trial_reminders,
            e.emails.len()
        ),
        Ran::NotMine => {
            println!("{name} {day}: already run, being run, or waiting to be retried")
        }
    }
    Ok(())
}

/// How long `jobs list` waits for Redis before it says so and goes on.
const REDIS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// `worker heartbeat: <instant> (<n>s ago)`, or why there is none. Redis is optional here: the
/// job runs are in PostgreSQL, and the line says when Redis was not asked or did not answer.
async fn heartbeat_line(redis_url: Option<&str>, prefix: &str, now: DateTime<Utc>) -> String {
    let Some(url) = redis_url else {
        return "worker heartbeat: unknown (REDIS_URL not set)".to_owned();
    };
    let key = jobs::heartbeat_key(prefix);
    let read = async {
        let client = redis::Client::open(url)?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("GET")
            .arg(&key)
            .query_async::<Option<String>>(&mut conn)
            .await
    };
    match tokio::time::timeout(REDIS_TIMEOUT, read).await {
        Ok(Ok(Some(value))) => match jobs::heartbeat_age(&value, now) {
            Some((at, age)) => format!(
                "worker heartbeat: {} ({}s ago)",
                at.to_rfc3339_opts(SecondsFormat::Secs, true),
                age.num_seconds()
            ),
            None => format!("worker heartbeat: unreadable value {value:?} in {key}"),
        },
        Ok(Ok(None)) => format!("worker heartbeat: none (no worker beat within 5 minutes; {key})"),
        Ok(Err(e)) => format!("worker heartbeat: unknown (Redis: {e})"),
        Err(_) => "worker heartbeat: unknown (Redis did not answer)".to_owned(),
    }
}

pub async fn run(db: &Db, cmd: JobsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        JobsCommand::List {
            redis_url,
            redis_prefix,
        } => {
            println!(
                "{}",
                heartbeat_line(redis_url.as_deref(), &redis_prefix, Utc::now()).await
            );
            let conn = db.public().await?;
            let jobs = jobs::summary(conn.client()).await?;
            let now = Utc::now();
            let daily = (CLEANUP_SCHEDULE, "daily 03:00 UTC");
            let quarter = |s| (s, "every 15 minutes");
            let known = [
                (PLATFORM_CLEANUP, daily, "once per ISO week"),
                (TENANT_CLEANUP, daily, "per tenant, once per ISO week"),
                (PERIOD_END_JOB, daily, "once per day"),
                (DROP_JOB, daily, "once per day"),
                (DUE_REMINDERS, quarter(REMINDER_SCHEDULE), "per tenant"),
                (
                    OVERDUE_DIGEST,
                    quarter(OVERDUE_SCHEDULE),
                    "per tenant once per local day from 08:00",
                ),
            ];
            println!(
                "{:<20} {:>6} {:>8} {:>7} {:>8}  {:<21} {:<21} {:<21} schedule",
                "job",
                "done",
                "skipped",
                "failed",
                "running",
                "last claimed",
                "last finished",
                "next run"
            );
            for (name, (setting, default_text), note) in known {
                let s = jobs.iter().find(|j| j.job == name);
                let (expr, shown) = match std::env::var(setting.var) {
                    Ok(expr) => (expr.clone(), expr),
                    Err(_) => (
                        setting.default.to_owned(),
                        format!("default {default_text}"),
                    ),
                };
                let next = cron::Schedule::from_str(expr.trim())
                    .ok()
                    .and_then(|c| c.after(&now).next());
                println!(
                    "{:<20} {:>6} {:>8} {:>7} {:>8}  {:<21} {:<21} {:<21} {} ({shown}; {note})",
                    name,
                    s.map_or(0, |s| s.done),
                    s.map_or(0, |s| s.skipped),
                    s.map_or(0, |s| s.failed),
                    s.map_or(0, |s| s.running),
                    time(s.and_then(|s| s.last_claimed_at)),
                    time(s.and_then(|s| s.last_finished_at)),
                    time(next),
                    setting.var,
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Run { name, tenant, at } => {
            let now = at.unwrap_or_else(Utc::now);
            if name == DUE_REMINDERS || name == OVERDUE_DIGEST {
                let slug = tenant.ok_or_else(|| anyhow::anyhow!("{name} needs --tenant SLUG"))?;
                let company = tenant_id(db, &slug).await?;
                let links = Links::from_lookup(|k| std::env::var(k).ok())?;
                run_reminders(db, &links, &name, &slug, company, now).await?;
                return Ok(ExitCode::SUCCESS);
            }
            if name == TENANT_CLEANUP {
                let slug = tenant.ok_or_else(|| anyhow::anyhow!("{name} needs --tenant SLUG"))?;
                let company = tenant_id(db, &slug).await?;
                let week = jobs::iso_week(now);
                let ran =
                    tenant_jobs::run_for_tenant(db, &TenantCleanup, company, &week, now).await?;
                match ran {
                    TenantRun::Done(id, done) => println!(
                        "{name} {slug} {week} (run {id}): deleted {} task(s), {} invitation(s) and {} report(s)",
                        done.tasks, done.invitations, done.reports
                    ),
                    other => not_done(&name, &slug, &week, &other),
                }
                return Ok(ExitCode::SUCCESS);
            }
            if name == PERIOD_END_JOB && tenant.is_none() {
                run_period_end(db, &name, now).await?;
                return Ok(ExitCode::SUCCESS);
            }
            if name == DROP_JOB && tenant.is_none() {
                let day = now.date_naive();
                match tenantry_tenant::organization::drop_due(db, now).await? {
                    Ran::Done(id, done) => {
                        println!(
                            "{name} {day} (run {id}): dropped {} tenant(s){}{}",
                            done.dropped.len(),
                            if done.dropped.is_empty() { "" } else { ": " },
                            done.dropped.join(", ")
                        );
                        for f in &done.failed {
                            eprintln!("tenantctl: {name}: dropping {} failed: {}", f.slug, f.error);
                        }
                        if !done.failed.is_empty() {
                            anyhow::bail!(
                                "{} tenant(s) could not be dropped; the next day's run tries again",
                                done.failed.len()
                            );
                        }
                    }
                    Ran::NotMine => {
                        println!("{name} {day}: already run, being run, or waiting to be retried")
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            if name != PLATFORM_CLEANUP || tenant.is_some() {
                anyhow::bail!(
                    "no job named {name:?}{}; the jobs are: {PLATFORM_CLEANUP}, {PERIOD_END_JOB}, {DROP_JOB}, \
                     {TENANT_CLEANUP} --tenant SLUG, {DUE_REMINDERS} --tenant SLUG, \
                     {OVERDUE_DIGEST} --tenant SLUG",
                    if tenant.is_some() {
                        " for a tenant"
                    } else {
                        ""
                    }
                );
            }
            match jobs::platform_cleanup(db, now).await? {
                Ran::Done(id, done) => {
                    println!(
                        "{name} {} (run {id}): deleted {} session(s), {} account token(s), {} delivered and {} undelivered outbox row(s)",
                        jobs::iso_week(now),
                        done.sessions,
                        done.account_tokens,
                        done.outbox_delivered,
                        done.outbox_undelivered
                    );
                }
                Ran::NotMine => println!(
                    "{name} {}: already run, being run, or waiting to be retried",
                    jobs::iso_week(now)
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Failed => {
            let conn = db.public().await?;
            for f in jobs::failed(conn.client()).await? {
                println!(
                    "{} {} {} tenant={} attempts={}{} at {}: {}",
                    f.id,
                    f.job,
                    f.period,
                    f.company.map_or_else(|| "-".to_owned(), |c| c.to_string()),
                    f.attempts,
                    if f.dead { " dead" } else { "" },
                    time(f.finished_at),
                    f.last_error.as_deref().unwrap_or("")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Retry { id } => {
            let conn = db.public().await?;
            if jobs::retry(conn.client(), id).await? {
                println!("run {id} will be retried at the job's next firing");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("tenantctl: no failed run {id}");
                Ok(ExitCode::FAILURE)
            }
        }
    }
}
