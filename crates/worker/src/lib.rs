//! Tenantry background worker: an apalis monitor running a heartbeat cron job and Redis-backed job queues.

pub mod config;
pub mod jobs;
pub mod mail;
pub mod metrics;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use apalis::prelude::{BackendExt, Data, Event, Monitor, WorkerBuilder, WorkerContext};
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
pub const QUEUE_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How long workers get to finish in-flight jobs after shutdown is requested.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
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

/// Runs the worker until `shutdown` resolves, then stops all workers gracefully
/// (in-flight jobs get [`SHUTDOWN_GRACE`] to finish).
///
/// Workers: `{prefix}-heartbeat` (cron, [`jobs::heartbeat`]) and a worker on the
/// Redis queue `{prefix}:jobs:noop` ([`Ping`] jobs). With `METRICS_ADDR` it serves
/// `GET /metrics` ([`metrics`]) while it runs.
///
/// # Errors
/// If Redis is unreachable at start-up, `METRICS_ADDR` cannot be bound, a worker fails (e.g. Redis errors while
/// fetching jobs; the remaining workers are then stopped too), or workers do not
/// stop within [`SHUTDOWN_GRACE`].
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let redis = connect(&config.redis_url).await?;
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
    // apalis-redis refuses to register a worker whose name was seen within the
    // last 5 minutes (and does not forget the name on a clean stop), so every
    // process gets a unique queue-worker name; replicas therefore never clash.
    let instance = uuid::Uuid::new_v4().simple().to_string();
    let noop_worker_name = format!("{}:{instance}", noop_queue(&prefix));

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
    let mail_worker_name = format!("{}:{instance}", tenantry_public::mail::queue_name(&prefix));

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
            let name = noop_worker_name.clone();
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
    if let Some(mailer) = &mailer {
        let mailer = mailer.clone();
        let name = mail_worker_name.clone();
        monitor = monitor.register(move |_restarts| {
            WorkerBuilder::new(name.clone())
                .backend(mailer.storage().poll_with_interval(QUEUE_POLL_INTERVAL))
                .data(mailer.clone())
                .build(deliver_task)
        });
    }
    let sweeper = mailer.clone().map(|m| tokio::spawn(m.sweep_forever()));

    // A worker that fails takes the whole process down (an orchestrator restarts
    // it) instead of leaving the other workers running alone.
    let monitor_ctx = monitor.context();
    let stop_all = monitor_ctx.clone();
    let monitor = monitor.should_restart(move |worker, error| {
        tracing::error!(worker = worker.name(), %error, "worker failed, stopping");
        let _ = stop_all.shutdown();
        false
    });

    tracing::info!(
        prefix = %prefix,
        heartbeat_cron = config.heartbeat_schedule.source(),
        "worker started"
    );

    let mut running = pin!(monitor.run());
    tokio::select! {
        res = &mut running => {
            // MonitorError's Display already includes its source; don't chain it twice.
            res.map_err(|e| anyhow::anyhow!("worker stopped unexpectedly: {e}"))?;
            anyhow::bail!("all workers stopped without a shutdown request");
        }
        () = shutdown => {
            tracing::info!("shutdown requested, stopping workers");
        }
    }
    if let Some(sweeper) = &sweeper {
        sweeper.abort();
    }
    monitor_ctx
        .shutdown()
        .context("could not signal workers to stop")?;
    tokio::time::timeout(SHUTDOWN_GRACE, running)
        .await
        .map_err(|_| anyhow::anyhow!("workers did not stop within {SHUTDOWN_GRACE:?}"))?
        .map_err(|e| anyhow::anyhow!("worker failed while stopping: {e}"))?;

    let mut redis = redis;
    let mut queues = vec![(
        noop_storage(redis.clone(), &prefix).get_config().clone(),
        noop_worker_name,
    )];
    if let Some(mailer) = &mailer {
        queues.push((mailer.storage().get_config().clone(), mail_worker_name));
    }
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
