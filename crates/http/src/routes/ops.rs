//! Liveness and readiness.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde_json::json;
use std::time::Duration;
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

/// Ready to serve: the database answers, Redis answers and the public schema is at head.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses((status = 200, description = "Ready"),
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
    let redis = match tokio::time::timeout(Duration::from_secs(1), ping_redis(&state.redis)).await {
        Ok(Ok(())) => "ok",
        _ => "unavailable",
    };
    let checks = json!({"database": database, "redis": redis, "public_schema": public_schema});
    if database == "ok" && redis == "ok" && public_schema == "ok" {
        HttpResponse::Ok().json(json!({"status": "ready", "checks": checks}))
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
            }))
    }
}

async fn ping_redis(client: &redis::Client) -> redis::RedisResult<()> {
    let mut conn = client.get_multiplexed_async_connection().await?;
    redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .map(|_| ())
}
