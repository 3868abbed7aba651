//! Moves API usage counts from Redis to PostgreSQL (`public.usage_counters`), so monthly usage
//! survives a Redis restart.
//!
//! The server's rate limiter counts each admitted request in the hash `{prefix}:usage:pending`
//! (fields as `tenantry_public::usage::Count::field` writes them). A flush renames that hash to
//! `{prefix}:usage:flushing` and names it with a new batch id (one script: requests counted
//! meanwhile start a new pending hash, none is lost), adds its counts in one transaction that
//! also records the batch id, and only then deletes the flushing hash. A flush that fails after
//! the rename leaves the flushing hash for the next one, which adds it again under the same id:
//! PostgreSQL adds each batch once (`usage::add_batch`), whichever step failed.

use chrono::{DateTime, Duration as Days, Utc};
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use std::time::Duration;
use tenantry_public::db::{Db, DbError};
use tenantry_public::usage::{self, pending_key, Count};

/// The hash field that names a flushing batch (never a count field: those start with a uuid).
const BATCH_FIELD: &str = "#batch";

/// Hourly counts are kept this long (monthly counts are kept).
pub const KEEP_HOURS: Days = Days::days(35);

/// Takes the pending hash for a flush, unless an earlier flush left one: returns the flushing
/// hash's fields (empty when there is nothing to flush).
const TAKE: &str = r"
if redis.call('EXISTS', KEYS[2]) == 0 then
  if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
  redis.call('RENAME', KEYS[1], KEYS[2])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
return redis.call('HGETALL', KEYS[2])
";

#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// What one flush did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flushed {
    /// The batch added (`None`: nothing was pending).
    pub batch: Option<String>,
    /// Counts in it (an hour's and a month's field per company and hour).
    pub counts: usize,
    /// Whether PostgreSQL had already added this batch (a retry).
    pub repeated: bool,
}

fn flushing_key(prefix: &str) -> String {
    format!("{prefix}:usage:flushing")
}

/// One flush of `prefix`'s pending counts (see the module documentation).
pub async fn flush(
    redis: &mut ConnectionManager,
    db: &Db,
    prefix: &str,
) -> Result<Flushed, FlushError> {
    let batch = uuid::Uuid::now_v7().to_string();
    let fields: Vec<(String, String)> = Script::new(TAKE)
        .key(pending_key(prefix))
        .key(flushing_key(prefix))
        .arg(BATCH_FIELD)
        .arg(&batch)
        .invoke_async(redis)
        .await?;
    let mut taken = None;
    let mut counts = Vec::with_capacity(fields.len());
    for (field, value) in fields {
        if field == BATCH_FIELD {
            taken = Some(value);
            continue;
        }
        match value.parse().ok().and_then(|n| Count::parse(&field, n)) {
            Some(count) => counts.push(count),
            None => tracing::warn!(%field, %value, "dropping an unreadable usage count"),
        }
    }
    let Some(batch) = taken else {
        return Ok(Flushed::default());
    };
    let fresh = {
        let mut conn = db.public().await?;
        usage::add_batch(&mut conn, &batch, &counts).await?
    };
    let _: () = redis.del(flushing_key(prefix)).await?;
    tracing::info!(%batch, counts = counts.len(), repeated = !fresh, "usage flushed");
    Ok(Flushed {
        batch: Some(batch),
        counts: counts.len(),
        repeated: !fresh,
    })
}

/// Flushes every `every` for the life of the process (a failure is logged and tried again at the
/// next tick), and forgets hourly counts older than [`KEEP_HOURS`] once an hour.
pub async fn flush_forever(mut redis: ConnectionManager, db: Db, prefix: String, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pruned: Option<DateTime<Utc>> = None;
    loop {
        ticks.tick().await;
        if let Err(error) = flush(&mut redis, &db, &prefix).await {
            tracing::warn!(%error, "usage flush failed; trying again at the next tick");
        }
        let now = Utc::now();
        if pruned.is_none_or(|at| now - at > Days::hours(1)) {
            match prune(&db, now).await {
                Ok(_) => pruned = Some(now),
                Err(error) => tracing::warn!(%error, "could not forget old hourly usage"),
            }
        }
    }
}

async fn prune(db: &Db, now: DateTime<Utc>) -> Result<u64, DbError> {
    let conn = db.public().await?;
    usage::forget_before(conn.client(), now - KEEP_HOURS).await
}
