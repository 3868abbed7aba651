//! Prometheus metrics: the process's recorder, request counts and latencies by route pattern,
//! the pool gauges read at scrape time, and the `GET /metrics` listener on `METRICS_ADDR` — a
//! server of its own, so the API never answers `/metrics`.
//!
//! Other modules record through the `metrics` facade (`throttle` here, the routing cache in
//! `tenantry_public::routing`); without an installed recorder (no `METRICS_ADDR`) the facade
//! does nothing. Labels only ever take values from fixed sets (methods, route patterns, status
//! codes, throttle kinds): never a raw path, an id or a tenant, so the number of series stays
//! bounded whatever clients send.

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use std::future::Future;
use std::net::TcpListener;
use std::time::{Duration, Instant};
use tenantry_public::db::Db;
use tenantry_public::routing;

/// Counter of answered requests, by `method`, `route` and `status`.
pub const HTTP_REQUESTS: &str = "http_requests_total";
/// Histogram of request latency in seconds (first byte of the request to the answer's head),
/// by `method`, `route` and `status`.
pub const HTTP_REQUEST_DURATION: &str = "http_request_duration_seconds";
/// Gauge: the pool's configured maximum (`DB_POOL_SIZE`).
pub const DB_POOL_MAX_SIZE: &str = "db_pool_max_size";
/// Gauge: connections the pool holds now (idle and in use).
pub const DB_POOL_SIZE: &str = "db_pool_size";
/// Gauge: idle connections ready to be checked out.
pub const DB_POOL_AVAILABLE: &str = "db_pool_available";
/// Gauge: callers waiting for a connection.
pub const DB_POOL_WAITING: &str = "db_pool_waiting";
/// Counter of throttle checks, by `throttle` (`login-failures`, `password-resets`, `signups`)
/// and `decision` (`allowed`, `limited`). A fail-open is `allowed`.
pub const THROTTLE_DECISIONS: &str = "throttle_decisions_total";
/// Counter of throttle calls that let the request through because Redis failed or did not
/// answer within the budget, by `throttle`.
pub const THROTTLE_FAIL_OPENS: &str = "throttle_fail_opens_total";
/// Counter of rate-limit checks by scope (`tenant`, `key`, `anonymous`) and decision
/// (`allowed`, `limited`, `fail_open`); fail-opens are also in [`THROTTLE_FAIL_OPENS`] as
/// `throttle="rate-limit"`.
pub const RATE_LIMIT_DECISIONS: &str = "rate_limit_decisions_total";

/// The `route` of a request that matched no route (404s of unknown paths, scanners): one
/// series for all of them instead of one per path.
pub const UNMATCHED: &str = "unmatched";

/// Latency buckets (seconds): the Prometheus client defaults, which span a cached read (a few
/// ms) to a password hash under load (seconds).
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The text exposition format's content type.
pub const CONTENT_TYPE: &str = tenantry_public::exporter::TEXT_FORMAT;

/// The process's recorder ([`tenantry_public::exporter::recorder`]), with the request latency
/// buckets: a second [`Application`](crate::Application) in the same process (the test suite
/// under `cargo test`) scrapes the same recorder instead of failing to install its own.
pub fn recorder() -> anyhow::Result<PrometheusHandle> {
    tenantry_public::exporter::recorder(HTTP_REQUEST_DURATION, LATENCY_BUCKETS, describe)
        .map_err(anyhow::Error::msg)
}

/// The `# HELP` lines. Descriptions only reach a recorder installed before they are given.
fn describe() {
    use ::metrics::{describe_counter, describe_histogram, Unit};
    describe_counter!(
        HTTP_REQUESTS,
        "Answered HTTP requests by method, route pattern and status."
    );
    describe_histogram!(
        HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "HTTP request latency by method, route pattern and status."
    );
    describe_counter!(
        routing::CACHE_HITS,
        "Host resolutions answered without a query (the route table, or a remembered lookup of a host outside it)."
    );
    describe_counter!(
        routing::CACHE_MISSES,
        "Host resolutions of hosts outside the route table that query the public schema (or wait on a lookup already under way)."
    );
    ::metrics::describe_gauge!(
        routing::TABLE_COMPANIES,
        "Companies in the route table (every tenant's hosts, held in memory)."
    );
    describe_counter!(
        THROTTLE_DECISIONS,
        "Throttle checks by throttle and decision (allowed, limited)."
    );
    describe_counter!(
        THROTTLE_FAIL_OPENS,
        "Throttle calls let through because Redis failed or was too slow."
    );
    describe_counter!(
        RATE_LIMIT_DECISIONS,
        "API rate-limit checks by scope (tenant, key, anonymous) and decision (allowed, limited, fail_open)."
    );
}

/// Middleware (outermost): counts and times every answer by method, route pattern and status.
pub async fn track_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = method_label(req.method());
    let result = next.call(req).await;
    let (route, status) = match &result {
        Ok(response) => (route_label(response.request()), response.status()),
        // Handlers' and extractors' errors are answers by now; only a middleware failing on its
        // own ends here, and the request (with its match) is gone with it.
        Err(e) => (UNMATCHED.to_owned(), e.as_response_error().status_code()),
    };
    record(method, route, status, started.elapsed());
    result
}

fn record(method: &'static str, route: String, status: StatusCode, took: Duration) {
    let labels = [
        ("method", method.to_owned()),
        ("route", route),
        ("status", status.as_u16().to_string()),
    ];
    ::metrics::counter!(HTTP_REQUESTS, &labels).increment(1);
    ::metrics::histogram!(HTTP_REQUEST_DURATION, &labels).record(took.as_secs_f64());
}

/// The route pattern the request matched (`/api/v1/projects/{id}`), or [`UNMATCHED`].
fn route_label(req: &HttpRequest) -> String {
    req.match_pattern().unwrap_or_else(|| UNMATCHED.to_owned())
}

/// The standard methods by name; anything else a client invents is `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// What a scrape needs: the recorder and the pool whose gauges are read at scrape time.
struct Scrape {
    handle: PrometheusHandle,
    db: Db,
}

async fn scrape(scrape: web::Data<Scrape>) -> HttpResponse {
    let mut text = scrape.handle.render();
    pool_gauges(&mut text, scrape.db.status());
    HttpResponse::Ok().content_type(CONTENT_TYPE).body(text)
}

/// The pool's gauges, read now and written straight into this scrape rather than set on the
/// process-global recorder: they belong to this application's pool, whatever else runs in the
/// process.
fn pool_gauges(text: &mut String, status: deadpool_postgres::Status) {
    use std::fmt::Write as _;
    for (name, help, value) in [
        (
            DB_POOL_MAX_SIZE,
            "Maximum size of the PostgreSQL pool.",
            status.max_size,
        ),
        (
            DB_POOL_SIZE,
            "Connections in the PostgreSQL pool.",
            status.size,
        ),
        (
            DB_POOL_AVAILABLE,
            "Idle connections in the PostgreSQL pool.",
            status.available,
        ),
        (
            DB_POOL_WAITING,
            "Callers waiting for a pooled connection.",
            status.waiting,
        ),
    ] {
        // Writing to a String cannot fail.
        let _ = write!(
            text,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n\n"
        );
    }
}

/// The metrics listener: `GET /metrics` and nothing else (404), on one worker thread, without
/// signal handling of its own (it stops with the API server).
pub struct MetricsServer {
    port: u16,
    server: Server,
}

impl MetricsServer {
    /// Installs the recorder (once per process) and binds `addr` (`METRICS_ADDR`).
    pub fn bind(addr: &str, db: Db) -> anyhow::Result<Self> {
        let handle = recorder()?;
        let listener = TcpListener::bind(addr)
            .with_context(|| format!("cannot listen on METRICS_ADDR {addr}"))?;
        let port = listener.local_addr()?.port();
        let scrape_data = web::Data::new(Scrape { handle, db });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(scrape_data.clone())
                .route("/metrics", web::get().to(scrape))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)?
        .run();
        Ok(Self { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves while `api` runs, then stops and returns `api`'s result.
    pub async fn serve_alongside(
        self,
        api: impl Future<Output = std::io::Result<()>>,
    ) -> std::io::Result<()> {
        let handle = self.server.handle();
        let metrics = tokio::spawn(self.server);
        let result = api.await;
        handle.stop(false).await;
        match metrics.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "metrics listener failed"),
            Err(e) => tracing::warn!(error = %e, "metrics listener panicked"),
            Ok(Ok(())) => {}
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_gauges_are_written_in_the_text_format() {
        let mut text = String::new();
        pool_gauges(
            &mut text,
            deadpool_postgres::Status {
                max_size: 16,
                size: 3,
                available: 2,
                waiting: 0,
            },
        );
        assert!(
            text.starts_with(
                "# HELP db_pool_max_size Maximum size of the PostgreSQL pool.\n\
                 # TYPE db_pool_max_size gauge\n\
                 db_pool_max_size 16\n\n"
            ),
            "{text}"
        );
        for line in ["db_pool_size 3", "db_pool_available 2", "db_pool_waiting 0"] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
    }

    #[test]
    fn invented_methods_share_one_label() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let invented = Method::from_bytes(b"BREW").unwrap_or(Method::GET);
        assert_eq!(method_label(&invented), "other");
    }
}
