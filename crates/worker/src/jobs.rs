//! Job types, their Redis key layout and their handlers (plain async functions, testable without apalis).

use std::time::Duration;

use apalis::prelude::{TaskSink, TaskSinkError};
use apalis_redis::RedisStorage;
use chrono::{DateTime, SecondsFormat, Utc};
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

/// How long the heartbeat key lives; a missing key means the worker is down.
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(5 * 60);

/// Redis key holding the RFC 3339 time of the last heartbeat: `{prefix}:worker:heartbeat`
/// (defined in `tenantry_public::jobs`, which the server and `tenantctl` read it through).
pub use tenantry_public::jobs::heartbeat_key;

/// Redis key holding the message of the last processed [`Ping`]: `{prefix}:worker:last_ping`.
#[must_use]
pub fn last_ping_key(prefix: &str) -> String {
    format!("{prefix}:worker:last_ping")
}

/// Name of the Redis-backed queue hosting [`Ping`] jobs: `{prefix}:jobs:noop`.
/// apalis-redis keeps all its keys for the queue under this name.
#[must_use]
pub fn noop_queue(prefix: &str) -> String {
    format!("{prefix}:jobs:noop")
}

/// Errors a job handler (or enqueueing a job) can fail with.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A Redis command failed.
    #[error("redis command failed: {0}")]
    Redis(#[from] redis::RedisError),
    /// Pushing a job onto a queue failed.
    #[error("could not enqueue job: {0}")]
    Enqueue(#[from] TaskSinkError<apalis_redis::Error>),
}

/// A trivial job carried through the Redis queue; proves the queue plumbing works.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// Free text, recorded in `{prefix}:worker:last_ping` when processed.
    pub message: String,
}

/// Heartbeat job: records `now` (RFC 3339, UTC) in `{prefix}:worker:heartbeat`
/// with a TTL of [`HEARTBEAT_TTL`].
///
/// # Errors
/// If the Redis write fails.
#[tracing::instrument(skip_all, err)]
pub async fn heartbeat(
    redis: &mut ConnectionManager,
    prefix: &str,
    now: DateTime<Utc>,
) -> Result<(), JobError> {
    let at = now.to_rfc3339_opts(SecondsFormat::Millis, true);
    redis
        .set_ex::<_, _, ()>(heartbeat_key(prefix), &at, HEARTBEAT_TTL.as_secs())
        .await?;
    tracing::info!(job = "heartbeat", %at, "heartbeat");
    Ok(())
}

/// Ping job: records the message in `{prefix}:worker:last_ping`.
///
/// # Errors
/// If the Redis write fails.
#[tracing::instrument(skip_all, err)]
pub async fn ping(redis: &mut ConnectionManager, prefix: &str, job: &Ping) -> Result<(), JobError> {
    redis
        .set::<_, _, ()>(last_ping_key(prefix), &job.message)
        .await?;
    tracing::info!(job = "ping", message = %job.message, "ping");
    Ok(())
}

/// The apalis-redis storage behind the `{prefix}:jobs:noop` queue, usable both
/// to push [`Ping`]s and (wrapped in a poll strategy) as a worker backend.
#[must_use]
pub fn noop_storage(redis: ConnectionManager, prefix: &str) -> RedisStorage<Ping> {
    let config = apalis_redis::Config::default().queue(noop_queue(prefix));
    RedisStorage::new(redis).with_config(config)
}

/// Pushes a [`Ping`] onto the `{prefix}:jobs:noop` queue.
///
/// # Errors
/// If the job cannot be encoded or Redis rejects the push.
#[tracing::instrument(skip_all, err)]
pub async fn enqueue_ping(
    redis: &ConnectionManager,
    prefix: &str,
    job: Ping,
) -> Result<(), JobError> {
    noop_storage(redis.clone(), prefix).push(job).await?;
    Ok(())
}
