//! The worker's Prometheus metrics: job runs by job and outcome, and its own `GET /metrics`
//! listener on `METRICS_ADDR` (a small hyper server: the worker has no web framework).
//!
//! Every job handler runs through [`timed`], so a run is counted once it returns, with
//! `outcome` `ok` or `error` (a handler that panics or is cancelled at shutdown is not counted).
//! Labels take only fixed values: the job names below, never a tenant or a job's payload.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;

/// Counter of finished job runs, by `job` and `outcome` (`ok`, `error`).
pub const JOBS: &str = "jobs_total";
/// Histogram of job run time in seconds, by `job` and `outcome`.
pub const JOB_DURATION: &str = "job_duration_seconds";

/// The `job` label of the heartbeat cron job.
pub const HEARTBEAT: &str = "heartbeat";
/// The `job` label of [`Ping`](crate::Ping) jobs (`{prefix}:jobs:noop`).
pub const PING: &str = "ping";
/// The `job` label of email deliveries (`{prefix}:jobs:mail`).
pub const DELIVER: &str = "deliver";
/// The `job` label of the weekly platform clean-up.
pub const CLEANUP: &str = "cleanup";
/// The `job` label of the due reminders' ticks (their fan-out).
pub const REMINDERS: &str = "reminders";
/// The `job` label of the overdue digest's ticks (their fan-out).
pub const OVERDUE: &str = "overdue";
/// The `job` label of queued per-tenant jobs (`{prefix}:jobs:tenant`).
pub const TENANT_JOB: &str = "tenant_job";
/// The `job` label of project report builds (queued or swept).
pub const REPORT: &str = "report";

/// Run-time buckets (seconds): a Redis write takes milliseconds, an SMTP delivery up to many
/// seconds.
const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The text exposition format's content type.
pub const TEXT_FORMAT: &str = tenantry_public::exporter::TEXT_FORMAT;

/// The process's recorder ([`tenantry_public::exporter::recorder`]), with the job run-time
/// buckets.
///
/// # Errors
/// If another recorder is installed in this process, or the upkeep thread cannot start.
pub fn recorder() -> anyhow::Result<PrometheusHandle> {
    tenantry_public::exporter::recorder(JOB_DURATION, DURATION_BUCKETS, describe)
        .map_err(anyhow::Error::msg)
}

fn describe() {
    ::metrics::describe_counter!(JOBS, "Finished job runs by job and outcome.");
    ::metrics::describe_histogram!(
        JOB_DURATION,
        ::metrics::Unit::Seconds,
        "Job run time by job and outcome."
    );
}

/// Runs one job's handler and counts the run by its outcome.
pub async fn timed<T, E>(
    job: &'static str,
    run: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = Instant::now();
    let result = run.await;
    record(job, result.is_ok(), started.elapsed());
    result
}

fn record(job: &'static str, ok: bool, took: Duration) {
    let labels = [("job", job), ("outcome", if ok { "ok" } else { "error" })];
    ::metrics::counter!(JOBS, &labels).increment(1);
    ::metrics::histogram!(JOB_DURATION, &labels).record(took.as_secs_f64());
}

/// The metrics listener; it stops accepting when dropped.
pub struct MetricsListener {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsListener {
    /// The bound address (the port, when `METRICS_ADDR` asked for port 0).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Installs the recorder (once per process) and serves `GET /metrics` on `addr`
/// (`METRICS_ADDR`); every other request is 404.
///
/// # Errors
/// If the recorder cannot be installed or `addr` cannot be bound.
pub async fn serve(addr: &str) -> anyhow::Result<MetricsListener> {
    let handle = recorder()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on METRICS_ADDR {addr}"))?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, typically: wait rather than spin.
                    tracing::warn!(%error, "metrics listener cannot accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let answer = answer(&req, &handle);
                    async move { Ok::<_, Infallible>(answer) }
                });
                // The timer enables hyper's header-read timeout (30 s), so an idle client
                // cannot hold a connection open forever.
                if let Err(error) = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(%error, "metrics connection ended with an error");
                }
            });
        }
    });
    tracing::info!(addr = %local, "serving metrics");
    Ok(MetricsListener { addr: local, task })
}

fn answer(req: &Request<Incoming>, handle: &PrometheusHandle) -> Response<Full<Bytes>> {
    if req.method() == Method::GET && req.uri().path() == "/metrics" {
        let mut response = Response::new(Full::new(Bytes::from(handle.render())));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_FORMAT));
        response
    } else {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::NOT_FOUND;
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_counted_by_job_and_outcome() {
        let recorder = tenantry_public::exporter::builder(JOB_DURATION, DURATION_BUCKETS)
            .expect("buckets")
            .build_recorder();
        let handle = recorder.handle();
        ::metrics::with_local_recorder(&recorder, || {
            record(PING, true, Duration::from_millis(3));
            record(PING, true, Duration::from_millis(4));
            record(DELIVER, false, Duration::from_secs(2));
        });
        let text = handle.render();
        for line in [
            r#"jobs_total{job="ping",outcome="ok"} 2"#,
            r#"jobs_total{job="deliver",outcome="error"} 1"#,
            r#"job_duration_seconds_bucket{job="ping",outcome="ok",le="0.005"} 2"#,
            r#"job_duration_seconds_bucket{job="deliver",outcome="error",le="1"} 0"#,
            r#"job_duration_seconds_bucket{job="deliver",outcome="error",le="2.5"} 1"#,
            r#"job_duration_seconds_count{job="deliver",outcome="error"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
