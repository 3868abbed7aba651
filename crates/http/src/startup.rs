//! Building the application: pools, the route table and its listener, the HTTP server (and the
//! metrics listener when `METRICS_ADDR` is set). Production (`main.rs`) and the tests use the
//! same [`Application::build`].

use actix_web::dev::{Server, ServerHandle};
use actix_web::http::header::ContentType;
use actix_web::middleware::{from_fn, Condition};
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::{bail, Context};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;
use tenantry_public::cluster;
use tenantry_public::db::{Db, PoolSettings};
use tenantry_public::migrate::public_status;
use tenantry_public::routing::{listen_for_changes, Router, RouterSettings};
use tenantry_public::sessions::Rotation;
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::config::Settings;
use crate::error::{json_error, path_error, query_error};
use crate::mailq::MailQueue;
use crate::metrics::MetricsServer;
use crate::ratelimit::RateLimiter;
use crate::state::AppState;
use crate::throttle::LoginThrottle;
use crate::tokens::JwtKeys;
use crate::{auth, cors, headers, host, ratelimit, routes, telemetry};

pub struct Application {
    port: u16,
    server: Server,
    listener_task: tokio::task::JoinHandle<()>,
    metrics: Option<MetricsServer>,
}

impl Application {
    /// Connects, checks the public schema is at head, binds the listener. Fails with a message
    /// saying what to do when the database is missing or behind.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let db = Db::connect(
            settings.database_url(),
            &PoolSettings {
                max_size: settings.db_pool_size,
                wait_timeout: settings.db_pool_timeout,
                connect_timeout: Duration::from_secs(5),
            },
        )?;
        {
            let client = db
                .public()
                .await
                .context("cannot connect to PostgreSQL at DATABASE_URL")?;
            // The coordinator of a Citus cluster serves the same queries (README, "Running on
            // Citus"); knowing which it is only goes to the log, and CLUSTER=citus turns a plain
            // server into a start-up error.
            let topology = cluster::detect(client.client(), settings.cluster).await?;
            tracing::info!(%topology, "database topology");
            let status = public_status(&client).await?;
            if !status.is_current() {
                bail!(
                    "the public schema is at version {} but this server needs version {}: run \
                     `just migrate-schemas` (or `tenantctl migrate-schemas`) first",
                    status.applied.map_or("none".to_owned(), |v| v.to_string()),
                    status.head
                );
            }
        }

        let router = Arc::new(Router::new(
            settings.base_domain.clone(),
            db.clone(),
            &RouterSettings {
                ttl: settings.routing_cache_ttl,
                max_entries: settings.routing_cache_size,
                max_negative_entries: settings.routing_cache_size,
                max_misses_per_sec: settings.routing_misses_per_sec,
                ..RouterSettings::default()
            },
        ));
        // Every tenant's hosts before the first request: a restarted server routes all of them
        // from memory at once (routing.rs). The listener loads the table right after its LISTEN
        // (so nothing is missed in between); a failure here is not fatal: until the table is
        // loaded, hosts are looked up one by one within ROUTING_MISSES_PER_SEC.
        let started = std::time::Instant::now();
        let (ready, loaded) = tokio::sync::oneshot::channel();
        let listener_task = tokio::spawn(listen_for_changes(
            settings.database_url().to_owned(),
            router.clone(),
            Some(ready),
        ));
        match tokio::time::timeout(Duration::from_secs(10), loaded).await {
            Ok(Ok(())) => tracing::info!(
                companies = router.companies(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "route table loaded"
            ),
            _ => {
                tracing::warn!("route table not loaded at start-up; hosts are looked up meanwhile")
            }
        }
        let redis = redis::Client::open(settings.redis_url())
            .context("REDIS_URL is not a valid Redis URL")?;
        let jwt = JwtKeys::with_previous(
            &settings.jwt_secret,
            settings.jwt_previous_secret.as_ref(),
            &settings.jwt_issuer,
            &settings.jwt_audience,
        );

        let listener = TcpListener::bind(&settings.bind_addr)
            .with_context(|| format!("cannot listen on BIND_ADDR {}", settings.bind_addr))?;
        let port = listener.local_addr()?.port();
        let workers = settings.http_workers;
        let login_throttle = LoginThrottle::new(
            redis.clone(),
            &settings.redis_prefix,
            settings.login_throttle.clone(),
        );
        let reset_throttle = LoginThrottle::counting(
            "password-resets",
            redis.clone(),
            &settings.redis_prefix,
            settings.reset_throttle.clone(),
        );
        let invitation_throttle = LoginThrottle::counting(
            "invitations",
            redis.clone(),
            &settings.redis_prefix,
            settings.invitation_throttle.clone(),
        );
        let signup_throttle = settings.signup_throttle.clone().map(|limits| {
            LoginThrottle::counting("signups", redis.clone(), &settings.redis_prefix, limits)
        });
        let mail = MailQueue::new(redis.clone(), &settings.redis_prefix);
        let metrics = settings
            .metrics_addr
            .as_deref()
            .map(|addr| MetricsServer::bind(addr, db.clone()))
            .transpose()?;
        // Successors are derived with a key of their own, domain-separated from the JWT secret.
        let rotation = Rotation {
            successor_key: Sha256::new()
                .chain_update(b"tenantry-refresh-successor:")
                .chain_update(settings.jwt_secret.expose_secret().as_bytes())
                .finalize()
                .to_vec(),
            grace: chrono::Duration::from_std(settings.refresh_grace)
                .unwrap_or(chrono::Duration::zero()),
        };
        let state = web::Data::new(AppState {
            db,
            router,
            redis,
            jwt,
            rotation,
            login_throttle,
            reset_throttle,
            invitation_throttle,
            signup_throttle,
            mail,
            settings,
        });
        let openapi = openapi_json()?;
        let mut server = HttpServer::new(move || build_app(state.clone(), openapi.clone()));
        if let Some(n) = workers {
            server = server.workers(n);
        }
        let server = server.shutdown_timeout(10).listen(listener)?.run();
        Ok(Self {
            port,
            server,
            listener_task,
            metrics,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The metrics listener's port, when `METRICS_ADDR` is set.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics.as_ref().map(MetricsServer::port)
    }

    /// A handle to stop the server gracefully.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGTERM/SIGINT (or [`ServerHandle::stop`]), draining in-flight requests.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = match self.metrics {
            Some(metrics) => metrics.serve_alongside(self.server).await,
            None => self.server.await,
        };
        self.listener_task.abort();
        result
    }
}

/// The OpenAPI document as JSON, built once and shared by every worker. Each worker holding its
/// own `OpenApi` (what `SwaggerUi::url` does) cost about 8 MiB of resident memory per worker.
/// Building it takes about 9 MiB at its peak for a 0.45 MB result, so it is built on a thread of
/// its own: what it frees goes back with that thread's allocator arena instead of staying in the
/// main heap under longer-lived allocations (another 7 MiB resident from start to stop).
fn openapi_json() -> anyhow::Result<web::Bytes> {
    let json = std::thread::scope(|s| {
        s.spawn(|| serde_json::to_vec(&crate::openapi::document()))
            .join()
            .map_err(|_| anyhow::anyhow!("building the OpenAPI document panicked"))
    })?
    .context("serializing the OpenAPI document")?;
    Ok(web::Bytes::from(json))
}

/// Where the OpenAPI document is served (and where the Swagger UI at `/api/docs/` reads it).
const OPENAPI_PATH: &str = "/api/openapi.json";

fn build_app(
    state: web::Data<AppState>,
    openapi: web::Bytes,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let max_body = state.settings.max_body_bytes;
    let bench_routes = state.settings.bench_routes;
    let metrics = state.settings.metrics_addr.is_some();
    // One rate limiter per worker thread: its Redis connection is then driven by the thread
    // whose requests use it (one connection shared by every worker costs two cross-thread
    // wake-ups per request, measurable on the list benchmark).
    let rate_limiter = web::Data::new(RateLimiter::new(
        state.redis.clone(),
        &state.settings.redis_prefix,
        state.settings.rate_limits.clone(),
    ));
    App::new()
        .app_data(state)
        .app_data(rate_limiter)
        .app_data(
            web::JsonConfig::default()
                .limit(max_body)
                .error_handler(|e, _| json_error(e).into()),
        )
        .app_data(web::PayloadConfig::default().limit(max_body))
        .app_data(web::QueryConfig::default().error_handler(|e, _| query_error(e).into()))
        .app_data(web::PathConfig::default().error_handler(|e, _| path_error(e).into()))
        // Inside the security headers (a preflight answer carries them too) and outside
        // routing and the Host middleware, so a preflight never resolves a Host or queries.
        .wrap(from_fn(cors::cors))
        .wrap(from_fn(headers::security_headers))
        .wrap(from_fn(telemetry::request_span))
        // Outermost, so every answer is counted with the status the client gets.
        .wrap(Condition::new(
            metrics,
            from_fn(crate::metrics::track_requests),
        ))
        .service(routes::resource("/health").get(routes::ops::health))
        .service(routes::resource("/ready").get(routes::ops::ready))
        .route(
            OPENAPI_PATH,
            web::get().to(move || {
                let body = openapi.clone();
                async move {
                    HttpResponse::Ok()
                        .content_type(ContentType::json())
                        .body(body)
                }
            }),
        )
        .service(SwaggerUi::new("/api/docs/{_:.*}").config(Config::new([OPENAPI_PATH])))
        .service(
            web::scope("/api/v1")
                // Inside Host resolution: the limits are the Host's tenant's (or the client's on
                // the base host); before every handler, so a request over them costs no query.
                .wrap(from_fn(ratelimit::limit))
                .wrap(from_fn(host::resolve_host))
                // Outermost, so a key in the URL is refused before anything looks at the Host.
                .wrap(from_fn(auth::refuse_keys_in_query))
                .configure(|cfg| routes::configure(cfg, bench_routes))
                .default_service(web::to(routes::not_found)),
        )
        .default_service(web::to(routes::not_found))
}
