//! Hands committed outbox rows (and project reports, [`MailQueue::push_report`]) to the worker: one apalis [`Deliver`] job per row on the Redis
//! queue `{REDIS_PREFIX}:jobs:mail`, pushed only after the transaction that wrote the row has
//! committed (a rolled-back request has no row and pushes nothing).
//!
//! A push that fails (Redis down) is logged and otherwise ignored: the row is in the database,
//! and the worker's sweep re-queues rows that stay undelivered. Email is never lost to a Redis
//! outage, only delayed.

use apalis::prelude::TaskSink;
use apalis_redis::RedisStorage;
use redis::aio::ConnectionManager;
use std::sync::Arc;
use std::time::Duration;
use tenantry_public::mail::{queue_name, Deliver, OutboxId};
use tenantry_tenant::reports::{self, ReportJob};
use tokio::sync::OnceCell;

/// Upper bound for one push, so a hung Redis cannot hold a request.
const PUSH_TIMEOUT: Duration = Duration::from_secs(2);

pub struct MailQueue {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    queue: String,
    /// `{prefix}:jobs:report`: [`ReportJob`]s.
    reports: String,
}

impl MailQueue {
    pub fn new(client: redis::Client, prefix: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                conn: OnceCell::new(),
                queue: queue_name(prefix),
                reports: reports::queue_name(prefix),
            }),
        }
    }

    /// Queues a job for each row in the background; call after commit. The response does not
    /// wait for Redis, and a failure never fails the request.
    pub async fn push(&self, rows: impl IntoIterator<Item = OutboxId>) {
        let rows: Vec<OutboxId> = rows.into_iter().collect();
        if rows.is_empty() {
            return;
        }
        let inner = self.inner.clone();
        actix_web::rt::spawn(async move { inner.push(rows).await });
    }
}

impl MailQueue {
    /// Queues a report job in the background; call after the report's row committed. A failed
    /// push is logged only: the worker's report sweep builds reports left queued.
    pub async fn push_report(&self, job: ReportJob) {
        let inner = self.inner.clone();
        actix_web::rt::spawn(async move {
            let push = async {
                let conn = inner.connection().await?;
                let config = apalis_redis::Config::default().queue(&inner.reports);
                let mut storage: RedisStorage<ReportJob> =
                    RedisStorage::new(conn).with_config(config);
                storage.push(job).await.map_err(|e| anyhow::anyhow!("{e}"))
            };
            match tokio::time::timeout(PUSH_TIMEOUT, push).await {
                Ok(Ok(())) => tracing::debug!(report = %job.report_id, "report queued"),
                Ok(Err(error)) => {
                    tracing::warn!(report = %job.report_id, %error, "could not queue a report; the worker's sweep will")
                }
                Err(_) => {
                    tracing::warn!(report = %job.report_id, "queueing a report timed out; the worker's sweep will")
                }
            }
        });
    }
}

impl Inner {
    async fn connection(&self) -> anyhow::Result<ConnectionManager> {
        Ok(self
            .conn
            .get_or_try_init(|| ConnectionManager::new(self.client.clone()))
            .await?
            .clone())
    }

    async fn push(&self, rows: Vec<OutboxId>) {
        for row in rows {
            match tokio::time::timeout(PUSH_TIMEOUT, self.try_push(row)).await {
                Ok(Ok(())) => tracing::debug!(outbox_id = row.0, "email queued"),
                Ok(Err(error)) => {
                    tracing::warn!(outbox_id = row.0, %error, "could not queue an email; the worker's sweep will")
                }
                Err(_) => {
                    tracing::warn!(
                        outbox_id = row.0,
                        "queueing an email timed out; the worker's sweep will"
                    )
                }
            }
        }
    }

    async fn try_push(&self, row: OutboxId) -> anyhow::Result<()> {
        let conn = self.connection().await?;
        let config = apalis_redis::Config::default().queue(&self.queue);
        let mut storage: RedisStorage<Deliver> = RedisStorage::new(conn).with_config(config);
        storage
            .push(Deliver { outbox_id: row.0 })
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(())
    }
}
