//! Liveness and readiness.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use chrono::{SecondsFormat, Utc};
use serde_json::json;
use std::time::Duration;
use tenantry_public::jobs::{heartbeat_age, heartbeat_key};
use tenantry_public::migrate::public_status;

use crate::state::AppState;

/// Liveness and readiness, outside `/api/v1` (registered by `startup`, before Host routing).
#[derive(utoipa::OpenApi)]
#[openapi(paths(health, ready))]
pub struct Api;

/// The process is alive. Touches nothing else.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "The process is alive")))]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready to serve: the database answers, Redis answers and the public schema is at head. The
/// body also tells the newest worker heartbeat (`worker.heartbeat_at`, `worker.heartbeat_age_secs`,
/// both null when no worker beat within five minutes); a missing worker does not make the server
/// unready.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses((status = 200, description = "Ready; `worker` tells the age of the newest worker heartbeat"),
              (status = 503, description = "A dependency is down or the public schema is behind")))]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let (database, public_schema) = match state.db.public().await {
        Ok(client) => match public_status(&client).await {
            Ok(s) if s.is_current() => ("ok", "ok"),
            Ok(_) => ("ok", "behind"),
            Err(_) => ("error", "unknown"),
        },
        Err(_) => ("unavailable", "unknown"),
    };
    let key = heartbeat_key(&state.settings.redis_prefix);
    let (redis, heartbeat) =
        match tokio::time::timeout(Duration::from_secs(1), ping_redis(&state.redis, &key)).await {
            Ok(Ok(heartbeat)) => ("ok", heartbeat),
            _ => ("unavailable", None),
        };
    let checks = json!({"database": database, "redis": redis, "public_schema": public_schema});
    // Information, not a gate: the API serves without a worker (emails and jobs wait in
    // PostgreSQL until one runs), so a missing or old heartbeat never makes it unready.
    let worker = match heartbeat
        .as_deref()
        .and_then(|v| heartbeat_age(v, Utc::now()))
    {
        Some((at, age)) => json!({
            "heartbeat_at": at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "heartbeat_age_secs": age.num_seconds(),
        }),
        None => json!({"heartbeat_at": null, "heartbeat_age_secs": null}),
    };
    if database == "ok" && redis == "ok" && public_schema == "ok" {
        HttpResponse::Ok().json(json!({"status": "ready", "checks": checks, "worker": worker}))
    } else {
        HttpResponse::ServiceUnavailable()
            .content_type("application/problem+json")
            .insert_header((header::RETRY_AFTER, "5"))
            .json(json!({
                "type": "urn:tenantry:problem:not-ready",
                "title": "Service Unavailable",
                "status": 503,
                "detail": "a dependency is not ready",
                "checks": checks,
                "worker": worker,
            }))
    }
}

/// Pings Redis and reads the worker's heartbeat (`None`: no worker beat within its expiry).
async fn ping_redis(client: &redis::Client, heartbeat: &str) -> redis::RedisResult<Option<String>> {
    let mut conn = client.get_multiplexed_async_connection().await?;
    redis::cmd("PING").query_async::<String>(&mut conn).await?;
    redis::cmd("GET")
        .arg(heartbeat)
        .query_async::<Option<String>>(&mut conn)
        .await
}
