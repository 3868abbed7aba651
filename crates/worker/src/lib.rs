//! Tenantry background worker: an apalis monitor running a heartbeat cron job and Redis-backed job queues.

pub mod config;
pub mod jobs;
pub mod mail;
pub mod metrics;
pub mod reports;
pub mod tenant_jobs;
pub mod usage;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use apalis::prelude::{
    BackendExt, Data, Event, Monitor, TaskSink, WorkerBuilder, WorkerBuilderExt, WorkerContext,
};
use apalis_cron::{CronScheduler, Tick};
use chrono::Utc;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;

pub use config::{Config, ConfigError, LogFormat};
pub use jobs::{
    enqueue_ping, heartbeat, heartbeat_key, last_ping_key, noop_queue, noop_storage, ping,
    JobError, Ping, HEARTBEAT_TTL,
};

/// How often queue workers poll Redis for new jobs. apalis-redis does not
/// notice jobs pushed by other processes unless it is polled.
pub const QUEUE_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How many jobs one poll fetches. A poll takes at most one batch, so a queue moves at most
/// `QUEUE_BATCH` jobs per [`QUEUE_POLL_INTERVAL`]: with apalis-redis' default of 10 a second,
/// the overdue check over 1,000 tenants and its 2,000 emails took 145 s (the bench).
pub const QUEUE_BATCH: usize = 100;
/// How long workers get to finish in-flight jobs after shutdown is requested.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// How many jobs of one queue a worker runs at once. Each holds a pooled PostgreSQL connection
/// while it runs, and the worker's pool ([`mail::POOL_SIZE`]) is shared by every queue, the
/// sweeps and the ticks: without a bound, a fan-out of 1,000 tenants starts 1,000 runs that wait
/// for 8 connections and fail on the pool's timeout.
pub const QUEUE_CONCURRENCY: usize = 3;
/// How often a queue worker tells Redis it is alive, and ([`QUEUE_MISSED_HEARTBEATS`]) how many
/// beats it may miss before another worker re-enqueues the jobs it had fetched. A worker fetches
/// up to [`QUEUE_BATCH`] due jobs at once and runs [`QUEUE_CONCURRENCY`] of them at a time, so a
/// killed worker can leave many fetched jobs behind: they run again within 15 s
/// (apalis-redis' defaults, 30 s × 10, left them for five minutes).
pub const QUEUE_HEARTBEAT: Duration = Duration::from_secs(5);
pub const QUEUE_MISSED_HEARTBEATS: usize = 3;

/// The settings every queue of the worker shares, for `queue`.
#[must_use]
pub fn queue_config(queue: impl AsRef<str>) -> apalis_redis::Config {
    apalis_redis::Config::default()
        .batch_size(QUEUE_BATCH)
        .heartbeat_interval(QUEUE_HEARTBEAT)
        .missed_heartbeats(QUEUE_MISSED_HEARTBEATS)
        .queue(queue)
}

/// Upper bound for establishing the initial Redis connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Name of the heartbeat cron worker (not stored in Redis).
#[must_use]
pub fn heartbeat_worker_name(prefix: &str) -> String {
    format!("{prefix}-heartbeat")
}

/// State shared with every job handler.
#[derive(Clone)]
struct JobContext {
    redis: ConnectionManager,
    prefix: Arc<str>,
}

/// Connects to Redis and checks the server answers.
///
/// # Errors
/// If the URL is invalid, the server is unreachable or does not answer `PING`.
#[tracing::instrument(skip_all, err)]
pub async fn connect(redis_url: &str) -> anyhow::Result<ConnectionManager> {
    let target = config::redact_url(redis_url);
    let client =
        redis::Client::open(redis_url).with_context(|| format!("invalid Redis URL {target}"))?;
    let manager_config = ConnectionManagerConfig::new().set_number_of_retries(3);
    let mut conn = tokio::time::timeout(
        CONNECT_TIMEOUT,
        ConnectionManager::new_with_config(client, manager_config),
    )
    .await
    .map_err(|_| anyhow::anyhow!("timed out after {CONNECT_TIMEOUT:?}"))
    .and_then(|res| res.map_err(anyhow::Error::from))
    .with_context(|| format!("cannot connect to Redis at {target}"))?;
    redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .with_context(|| format!("Redis at {target} did not answer PING"))?;
    Ok(conn)
}

async fn heartbeat_task(tick: Tick, mut ctx: Data<JobContext>) -> Result<(), JobError> {
    tracing::debug!(tick = tick.get_timestamp(), "heartbeat tick");
    let JobContext { redis, prefix } = &mut *ctx;
    metrics::timed(
        metrics::HEARTBEAT,
        jobs::heartbeat(redis, prefix, Utc::now()),
    )
    .await
}

async fn deliver_task(
    job: tenantry_public::mail::Deliver,
    mailer: Data<Arc<mail::Mailer>>,
) -> Result<(), mail::MailError> {
    let id = tenantry_public::mail::OutboxId(job.outbox_id);
    metrics::timed(metrics::DELIVER, mailer.deliver(id)).await
}

/// What the jobs that need PostgreSQL share.
#[derive(Clone)]
struct DbJobs {
    db: tenantry_public::db::Db,
    redis: ConnectionManager,
    prefix: Arc<str>,
    fanout_window: Duration,
    links: tenantry_public::links::Links,
    /// The daily `billing.period_end` run's links and past-due grace.
    billing: tenantry_tenant::subscription::PeriodEndSettings,
    /// Where a tenant job's emails are queued for delivery once its run committed.
    mailer: Arc<mail::Mailer>,
}

/// Queues committed outbox rows for delivery now. A failed push is only late: the mail sweep
/// relays every undelivered row.
async fn push_emails(
    mailer: &mail::Mailer,
    written: impl IntoIterator<Item = tenantry_public::mail::OutboxId>,
) {
    let mut storage = mailer.storage();
    for id in written {
        if let Err(error) = storage
            .push(tenantry_public::mail::Deliver { outbox_id: id.0 })
            .await
        {
            tracing::warn!(%error, "could not queue a job's email; the mail sweep will");
            break;
        }
    }
}

/// The weekly clean-up, on every worker's schedule: the platform part, the billing period ends,
/// the drop of deleted organizations past their grace period and the fan-out of the per-tenant
/// part, each done only by the worker that claims it (`tenantry_public::jobs::platform_cleanup`,
/// `tenantry_tenant::subscription::end_periods`, `tenantry_tenant::organization::drop_due`,
/// [`tenant_jobs::fan_out`]).
async fn cleanup_task(_tick: Tick, ctx: Data<DbJobs>) -> Result<(), tenant_jobs::TenantJobError> {
    let now = Utc::now();
    let week = tenantry_public::jobs::iso_week(now);
    metrics::timed(metrics::CLEANUP, async {
        tenantry_public::jobs::platform_cleanup(&ctx.db, now).await?;
        // Trials and periods that ended, past-due grace run out, trials ending soon: claimed
        // once per day like the clean-up; its emails go to delivery once each change committed.
        if let tenantry_public::jobs::Ran::Done(_, ends) =
            tenantry_tenant::subscription::end_periods(&ctx.db, &ctx.billing, now).await?
        {
            push_emails(&ctx.mailer, ends.emails).await;
        }
        // Deleted organizations whose grace period has passed: claimed once per day.
        tenantry_tenant::organization::drop_due(&ctx.db, now).await?;
        let day = now.date_naive().to_string();
        let fan = tenant_jobs::Fan {
            job: tenantry_tenant::jobs::TENANT_CLEANUP,
            period: &week,
            once_per: &day,
        };
        tenant_jobs::fan_out(
            &ctx.db,
            &ctx.redis,
            &ctx.prefix,
            fan,
            now,
            ctx.fanout_window,
        )
        .await
        .map(|_| ())
    })
    .await
}

/// The instant a tick was scheduled for: the same on every worker that fires it (their clocks
/// may differ a little), so it keys the tick's fan-out and runs.
fn tick_instant(tick: &Tick) -> chrono::DateTime<Utc> {
    i64::try_from(tick.get_timestamp())
        .ok()
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
        .unwrap_or_else(Utc::now)
}

/// A tick of a reminder job: one fan-out per tick (claimed by one worker), the tenants' runs
/// keyed by the tick's instant.
async fn reminder_fan_out(
    tick: &Tick,
    ctx: &DbJobs,
    job: &str,
) -> Result<(), tenant_jobs::TenantJobError> {
    let at = tick_instant(tick);
    let period = tenantry_tenant::reminders::due_period(at);
    let fan = tenant_jobs::Fan {
        job,
        period: &period,
        once_per: &period,
    };
    tenant_jobs::fan_out(&ctx.db, &ctx.redis, &ctx.prefix, fan, at, ctx.fanout_window)
        .await
        .map(|_| ())
}

/// The due reminders, on every worker's schedule (`WORKER_REMINDER_CRON`).
async fn reminder_task(tick: Tick, ctx: Data<DbJobs>) -> Result<(), tenant_jobs::TenantJobError> {
    metrics::timed(
        metrics::REMINDERS,
        reminder_fan_out(&tick, &ctx, tenantry_tenant::reminders::DUE_REMINDERS),
    )
    .await
}

/// The overdue digest's tick (`WORKER_OVERDUE_CRON`): every tenant is queued; each one's job
/// runs its local day's digest once its local time has reached 08:00
/// (`tenantry_tenant::reminders::run_overdue_digest`).
async fn overdue_task(tick: Tick, ctx: Data<DbJobs>) -> Result<(), tenant_jobs::TenantJobError> {
    metrics::timed(
        metrics::OVERDUE,
        reminder_fan_out(&tick, &ctx, tenantry_tenant::reminders::OVERDUE_DIGEST),
    )
    .await
}

async fn tenant_task(
    job: tenant_jobs::TenantJob,
    ctx: Data<DbJobs>,
) -> Result<(), tenant_jobs::TenantJobError> {
    let span = tracing::info_span!("tenant_job", job = %job.job, tenant = %job.company_id);
    let _entered = span.enter();
    let written = metrics::timed(
        metrics::TENANT_JOB,
        tenant_jobs::run(&ctx.db, &ctx.links, &job),
    )
    .await?;
    // The run committed: its emails go to delivery now.
    push_emails(&ctx.mailer, written).await;
    Ok(())
}

async fn report_task(
    job: tenantry_tenant::reports::ReportJob,
    mailer: Data<Arc<mail::Mailer>>,
) -> Result<(), tenantry_public::db::DbError> {
    let span = tracing::info_span!("report", tenant = %job.company_id, report = %job.report_id);
    let _entered = span.enter();
    metrics::timed(metrics::REPORT, async {
        reports::build(mailer.db(), Some(&mailer), &job, Utc::now())
            .await
            .map(|_| ())
    })
    .await
}

async fn ping_task(job: Ping, mut ctx: Data<JobContext>) -> Result<(), JobError> {
    let JobContext { redis, prefix } = &mut *ctx;
    metrics::timed(metrics::PING, jobs::ping(redis, prefix, &job)).await
}

fn log_event(worker: &str, event: &Event) {
    match event {
        Event::Error(error) => tracing::warn!(worker, %error, "job failed"),
        Event::Start | Event::Stop | Event::Exit => tracing::info!(worker, %event),
        _ => tracing::trace!(worker, %event),
    }
}

/// The first wait after Redis failed; each further failure doubles it, up to [`RETRY_MAX`].
pub const RETRY_MIN: Duration = Duration::from_millis(250);
/// The longest wait between two attempts to reach Redis.
pub const RETRY_MAX: Duration = Duration::from_secs(5);
/// Workers that ran this long before failing were healthy: the next wait starts again at
/// [`RETRY_MIN`].
const HEALTHY_ROUND: Duration = Duration::from_secs(30);

/// Exponential backoff between attempts to reach Redis: [`RETRY_MIN`], doubled, at most
/// [`RETRY_MAX`].
#[derive(Debug)]
struct Backoff {
    next: Duration,
    attempt: u32,
}

impl Backoff {
    fn new() -> Self {
        Self {
            next: RETRY_MIN,
            attempt: 0,
        }
    }

    /// The wait before the next attempt (and the number of this failure).
    fn fail(&mut self) -> (Duration, u32) {
        let wait = self.next;
        self.next = (self.next * 2).min(RETRY_MAX);
        self.attempt += 1;
        (wait, self.attempt)
    }

    fn reset(&mut self) {
        *self = Self::new();
    }
}

/// Waits until Redis answers `PING`, logging every failed attempt with the wait before the
/// next one.
async fn wait_for_redis(redis: &ConnectionManager, target: &str, backoff: &mut Backoff) {
    let mut failed = false;
    loop {
        let mut conn = redis.clone();
        let ping = tokio::time::timeout(
            CONNECT_TIMEOUT,
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await;
        let error = match ping {
            Ok(Ok(_)) => {
                if failed {
                    tracing::info!(redis = target, "Redis answers again");
                }
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {CONNECT_TIMEOUT:?}"),
        };
        failed = true;
        let (wait, attempt) = backoff.fail();
        tracing::warn!(
            redis = target,
            %error,
            attempt,
            retry_in_ms = wait.as_millis() as u64,
            "Redis unavailable; retrying"
        );
        tokio::time::sleep(wait).await;
    }
}

/// How one round of workers ended.
enum RoundEnd {
    /// Shutdown was requested and the workers stopped (or failed to stop: the error).
    Shutdown(anyhow::Result<()>),
    /// A worker failed (the others were stopped): Redis went away, most likely.
    Failed {
        error: String,
        /// The queue workers' registrations, to remove once Redis is back.
        queues: Vec<(apalis_redis::Config, String)>,
    },
}

/// Runs the worker until `shutdown` resolves, then stops all workers gracefully
/// (in-flight jobs get [`SHUTDOWN_GRACE`] to finish).
///
/// Workers: `{prefix}-heartbeat` (cron, [`jobs::heartbeat`]), a worker on the
/// Redis queue `{prefix}:jobs:noop` ([`Ping`] jobs) and, with a database, the email
/// queue and its sweep ([`mail`]), the clean-up, due-reminder and overdue-digest crons
/// (`{prefix}-cleanup`, `{prefix}-reminders`, `{prefix}-overdue`: fan-outs) and the tenant job
/// queue `{prefix}:jobs:tenant` ([`tenant_jobs`]). With `METRICS_ADDR` it serves `GET /metrics`
/// ([`metrics`]) while it runs.
///
/// Redis may be unreachable at start or go away at any time: the worker keeps running,
/// tries Redis again with exponential backoff ([`RETRY_MIN`] to [`RETRY_MAX`], every
/// failure logged) and starts its workers again, under new names, once Redis answers.
/// Emails whose queue push was lost meanwhile are re-queued by the sweep from the
/// outbox in PostgreSQL, so they are delayed, never lost.
///
/// # Errors
/// If the configuration is unusable (Redis URL, mail settings), `METRICS_ADDR` cannot be
/// bound, or workers do not stop
/// within [`SHUTDOWN_GRACE`].
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let target = config::redact_url(&config.redis_url);
    let client = redis::Client::open(config.redis_url.as_str())
        .with_context(|| format!("invalid Redis URL {target}"))?;
    // One connection manager for the process: it reconnects on its own after a failure, so
    // the mailer, the sweep and every round of workers keep using it.
    let redis = ConnectionManager::new_lazy_with_config(
        client,
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2),
    )
    .with_context(|| format!("cannot use Redis at {target}"))?;
    // Stops serving when `run` returns, however it returns.
    let _metrics = match &config.metrics_addr {
        Some(addr) => Some(metrics::serve(addr).await?),
        None => None,
    };
    let prefix: Arc<str> = Arc::from(config.queue_prefix.as_str());
    let ctx = JobContext {
        redis: redis.clone(),
        prefix: prefix.clone(),
    };
    let mailer = match &config.mail {
        Some(mail_config) => Some(Arc::new(mail::Mailer::new(
            mail_config,
            redis.clone(),
            &prefix,
        )?)),
        None => {
            tracing::warn!("DATABASE_URL is not set: this worker delivers no email");
            None
        }
    };
    // The sweep runs for the whole process, whatever Redis does; a failed sweep is logged
    // and tried again at the next interval.
    let sweeper = mailer.clone().map(|m| tokio::spawn(m.sweep_forever()));
    // Reports whose queue push was lost, or whose worker died, are built by this sweep.
    let report_sweeper = mailer
        .clone()
        .map(|m| tokio::spawn(reports::sweep_forever(m)));
    // Usage counts move to PostgreSQL on their own interval, whatever Redis does (a failed
    // flush is retried at the next one).
    let usage_flusher = mailer.as_ref().map(|m| {
        tokio::spawn(usage::flush_forever(
            redis.clone(),
            m.db().clone(),
            config.queue_prefix.clone(),
            config.usage_flush_every,
        ))
    });
    tracing::info!(
        prefix = %prefix,
        heartbeat_cron = config.heartbeat_schedule.source(),
        cleanup_cron = config.cleanup_schedule.source(),
        reminder_cron = config.reminder_schedule.source(),
        overdue_cron = config.overdue_schedule.source(),
        "worker started"
    );

    let mut shutdown = pin!(shutdown);
    let mut backoff = Backoff::new();
    let mut stale: Vec<(apalis_redis::Config, String)> = Vec::new();
    let result = loop {
        tokio::select! {
            () = wait_for_redis(&redis, &target, &mut backoff) => {}
            () = &mut shutdown => {
                tracing::info!("shutdown requested while waiting for Redis");
                break Ok(());
            }
        }
        // A failed round's registrations (the queues forget them only after minutes).
        let mut conn = redis.clone();
        for (queue_config, name) in stale.drain(..) {
            if let Err(error) = deregister_queue_worker(&mut conn, &queue_config, &name).await {
                tracing::debug!(%error, "could not deregister a failed queue worker");
            }
        }
        let began = tokio::time::Instant::now();
        match run_round(&config, &ctx, mailer.as_ref(), &mut shutdown).await {
            RoundEnd::Shutdown(result) => break result,
            RoundEnd::Failed { error, queues } => {
                stale = queues;
                if began.elapsed() >= HEALTHY_ROUND {
                    backoff.reset();
                }
                let (wait, attempt) = backoff.fail();
                tracing::error!(
                    %error,
                    attempt,
                    retry_in_ms = wait.as_millis() as u64,
                    "workers stopped on an error; starting them again once Redis answers"
                );
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = &mut shutdown => {
                        tracing::info!("shutdown requested while workers were stopped");
                        break Ok(());
                    }
                }
            }
        }
    };
    for sweeper in [&sweeper, &report_sweeper].into_iter().flatten() {
        sweeper.abort();
    }
    if let Some(flusher) = &usage_flusher {
        flusher.abort();
    }
    result
}

/// One round: every worker, under names of its own, until one fails or shutdown is requested.
async fn run_round(
    config: &Config,
    ctx: &JobContext,
    mailer: Option<&Arc<mail::Mailer>>,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) -> RoundEnd {
    let prefix = ctx.prefix.clone();
    // apalis-redis refuses to register a worker whose name was seen within the
    // last 5 minutes (and does not forget the name on a clean stop), so every
    // round of every process gets unique queue-worker names; replicas and restarts
    // therefore never clash.
    let instance = uuid::Uuid::new_v4().simple().to_string();
    let noop_worker_name = format!("{}:{instance}", noop_queue(&prefix));
    let mail_worker_name = format!("{}:{instance}", tenantry_public::mail::queue_name(&prefix));
    let mut queues = vec![(
        noop_storage(ctx.redis.clone(), &prefix)
            .get_config()
            .clone(),
        noop_worker_name.clone(),
    )];
    let tenant_worker_name = format!("{}:{instance}", tenant_jobs::tenant_queue(&prefix));
    let report_worker_name = format!(
        "{}:{instance}",
        tenantry_tenant::reports::queue_name(&prefix)
    );
    if let Some(mailer) = mailer {
        queues.push((
            mailer.storage().get_config().clone(),
            mail_worker_name.clone(),
        ));
        queues.push((
            tenant_jobs::tenant_storage(ctx.redis.clone(), &prefix)
                .get_config()
                .clone(),
            tenant_worker_name.clone(),
        ));
        queues.push((
            reports::report_storage(ctx.redis.clone(), &prefix)
                .get_config()
                .clone(),
            report_worker_name.clone(),
        ));
    }

    let mut monitor = Monitor::new()
        .on_event(|worker, event| log_event(worker.name(), event))
        .register({
            let ctx = ctx.clone();
            let schedule = config.heartbeat_schedule.clone();
            let name = heartbeat_worker_name(&prefix);
            move |_restarts| {
                WorkerBuilder::new(name.clone())
                    .backend(CronScheduler::new(schedule.clone()))
                    .data(ctx.clone())
                    .build(heartbeat_task)
            }
        })
        .register({
            let ctx = ctx.clone();
            let name = noop_worker_name;
            move |_restarts| {
                WorkerBuilder::new(name.clone())
                    .backend(
                        noop_storage(ctx.redis.clone(), &ctx.prefix)
                            .poll_with_interval(QUEUE_POLL_INTERVAL),
                    )
                    .data(ctx.clone())
                    .build(ping_task)
            }
        });
    if let Some(mailer) = mailer {
        let mailer = mailer.clone();
        let name = mail_worker_name;
        monitor = monitor.register(move |_restarts| {
            WorkerBuilder::new(name.clone())
                .backend(mailer.storage().poll_with_interval(QUEUE_POLL_INTERVAL))
                .data(mailer.clone())
                .concurrency(QUEUE_CONCURRENCY)
                .build(deliver_task)
        });
    }
    if let Some(mailer) = mailer {
        let mailer = mailer.clone();
        let redis = ctx.redis.clone();
        let prefix = prefix.clone();
        let name = report_worker_name;
        monitor = monitor.register(move |_restarts| {
            WorkerBuilder::new(name.clone())
                .backend(
                    reports::report_storage(redis.clone(), &prefix)
                        .poll_with_interval(QUEUE_POLL_INTERVAL),
                )
                .data(mailer.clone())
                .concurrency(QUEUE_CONCURRENCY)
                .build(report_task)
        });
    }
    if let Some(mailer) = mailer {
        let jobs = DbJobs {
            db: mailer.db().clone(),
            redis: ctx.redis.clone(),
            prefix: prefix.clone(),
            fanout_window: config.fanout_window,
            links: config.links.clone(),
            billing: tenantry_tenant::subscription::PeriodEndSettings {
                links: config.links.clone(),
                past_due_grace: config.past_due_grace,
            },
            mailer: mailer.clone(),
        };
        let schedule = config.cleanup_schedule.clone();
        let name = format!("{prefix}-cleanup");
        let cron_jobs = jobs.clone();
        monitor = monitor.register(move |_restarts| {
            WorkerBuilder::new(name.clone())
                .backend(CronScheduler::new(schedule.clone()))
                .data(cron_jobs.clone())
                .build(cleanup_task)
        });
        let (name, schedule, cron_jobs) = (
            format!("{prefix}-reminders"),
            config.reminder_schedule.clone(),
            jobs.clone(),
        );
        monitor = monitor.register(move |_restarts| {
            WorkerBuilder::new(name.clone())
                .backend(CronScheduler::new(schedule.clone()))
                .data(cron_jobs.clone())
                .build(reminder_task)
        });
        let (name, schedule, cron_jobs) = (
            format!("{prefix}-overdue"),
            config.overdue_schedule.clone(),
            jobs.clone(),
        );
        monitor = monitor.register(move |_restarts| {
            WorkerBuilder::new(name.clone())
                .backend(CronScheduler::new(schedule.clone()))
                .data(cron_jobs.clone())
                .build(overdue_task)
        });
        let name = tenant_worker_name;
        monitor = monitor.register(move |_restarts| {
            WorkerBuilder::new(name.clone())
                .backend(
                    tenant_jobs::tenant_storage(jobs.redis.clone(), &jobs.prefix)
                        .poll_with_interval(QUEUE_POLL_INTERVAL),
                )
                .data(jobs.clone())
                .concurrency(QUEUE_CONCURRENCY)
                .build(tenant_task)
        });
    }

    let monitor_ctx = monitor.context();
    let stop_all = monitor_ctx.clone();
    let monitor = monitor.should_restart(move |worker, error| {
        tracing::error!(worker = worker.name(), %error, "worker failed, stopping the others");
        let _ = stop_all.shutdown();
        false
    });

    let mut running = pin!(monitor.run());
    tokio::select! {
        res = &mut running => {
            // MonitorError's Display already includes its source; don't chain it twice.
            let error = match res {
                Err(e) => format!("worker stopped unexpectedly: {e}"),
                Ok(()) => "all workers stopped without a shutdown request".to_owned(),
            };
            return RoundEnd::Failed { error, queues };
        }
        () = shutdown => {
            tracing::info!("shutdown requested, stopping workers");
        }
    }
    RoundEnd::Shutdown(stop_round(monitor_ctx, running, ctx.redis.clone(), queues).await)
}

/// Stops a round's workers within [`SHUTDOWN_GRACE`] and removes their registrations.
async fn stop_round(
    monitor_ctx: apalis::prelude::MonitorContext,
    running: impl Future<Output = Result<(), apalis::prelude::MonitorError>>,
    mut redis: ConnectionManager,
    queues: Vec<(apalis_redis::Config, String)>,
) -> anyhow::Result<()> {
    monitor_ctx
        .shutdown()
        .context("could not signal workers to stop")?;
    tokio::time::timeout(SHUTDOWN_GRACE, running)
        .await
        .map_err(|_| anyhow::anyhow!("workers did not stop within {SHUTDOWN_GRACE:?}"))?
        .map_err(|e| anyhow::anyhow!("worker failed while stopping: {e}"))?;
    for (queue_config, name) in &queues {
        if let Err(error) = deregister_queue_worker(&mut redis, queue_config, name).await {
            tracing::warn!(%error, "could not deregister queue worker; apalis expires it later");
        }
    }
    Ok(())
}

/// Removes a cleanly stopped queue worker's registration from Redis.
///
/// apalis-redis 1.0 leaves the name in `{queue}:workers` (its clean-up removes
/// the wrong member) and never deletes `{queue}:workers:metadata:{name}`. If the
/// worker still owns in-flight jobs the registration is kept, so another worker
/// can re-enqueue them once this one counts as dead.
#[tracing::instrument(skip_all, err, fields(worker = name))]
async fn deregister_queue_worker(
    redis: &mut ConnectionManager,
    queue: &apalis_redis::Config,
    name: &str,
) -> Result<(), JobError> {
    let worker = WorkerContext::new(name);
    let inflight: u64 = redis.scard(queue.inflight_set_for(&worker)).await?;
    if inflight > 0 {
        tracing::warn!(
            inflight,
            "worker stopped with in-flight jobs; leaving them for orphan recovery"
        );
        return Ok(());
    }
    redis::pipe()
        .atomic()
        .zrem(queue.workers_set(), name)
        .del(queue.worker_metadata_key(&worker))
        .exec_async(redis)
        .await?;
    Ok(())
}
