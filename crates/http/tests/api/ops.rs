//! Health, readiness, OpenAPI, start-up refusal.

use crate::helpers::*;

#[tokio::test]
async fn health_and_ready() {
    let app = spawn_app().await;
    let r = app.get("anything.invalid", "/health", None).await;
    assert_eq!(r.status(), 200);
    let r = app.get(BASE, "/ready", None).await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["checks"]["database"], "ok");
    assert_eq!(body["checks"]["redis"], "ok");
    assert_eq!(body["checks"]["public_schema"], "ok");
    assert!(r_has_request_id(&app).await);
}

async fn r_has_request_id(app: &TestApp) -> bool {
    let r = app
        .request(reqwest::Method::GET, BASE, "/health")
        .header("X-Request-Id", "abc-123")
        .send()
        .await
        .unwrap();
    r.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        == Some("abc-123")
}

#[tokio::test]
async fn ready_is_503_when_redis_is_down() {
    let app = build_and_spawn(&[("REDIS_URL", "redis://127.0.0.1:1/")]).await;
    let r = app.get(BASE, "/ready", None).await;
    assert!(r.headers().get("retry-after").is_some());
    let body = problem(r, 503).await;
    assert_eq!(body["checks"]["redis"], "unavailable");
    assert_eq!(body["checks"]["database"], "ok");
}

async fn build_and_spawn(overrides: &[(&str, &str)]) -> TestApp {
    spawn_app_with(overrides).await
}

#[tokio::test]
async fn refuses_to_start_when_public_schema_is_behind() {
    let database = tenantry_testkit::fresh_database().await;
    let err = build(&database.url, &[])
        .await
        .err()
        .expect("must refuse to start");
    let message = format!("{err:#}");
    assert!(message.contains("migrate-schemas"), "{message}");
}

#[tokio::test]
async fn openapi_documents_every_route_and_docs_are_served() {
    let app = spawn_app().await;
    let r = app.get(BASE, "/api/openapi.json", None).await;
    assert_eq!(r.status(), 200);
    let doc: serde_json::Value = r.json().await.unwrap();
    let paths = doc["paths"].as_object().expect("paths");
    let mut expected = vec![
        ("get".to_owned(), "/health".to_owned()),
        ("get".to_owned(), "/ready".to_owned()),
    ];
    expected.extend(registered_routes());
    assert!(
        expected.len() > 15,
        "the route table was read: {expected:?}"
    );
    let missing: Vec<_> = expected
        .iter()
        .filter(|(m, path)| paths.get(path).and_then(|p| p.get(m)).is_none())
        .collect();
    assert!(missing.is_empty(), "undocumented routes: {missing:?}");
    // The platform's own answers are in the contract of every operation they apply to, and every
    // error answer documents the problem body.
    let mut gaps = Vec::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            let responses = op["responses"].as_object().expect("responses");
            let mut wanted = Vec::new();
            if path.starts_with("/api/v1/") {
                wanted.extend(["400", "404", "429", "503"]);
                // Rate limits: every answer may carry the fields, a 429 also Retry-After.
                for (status, response) in responses {
                    for header in ["RateLimit-Policy", "RateLimit"] {
                        if response["headers"].get(header).is_none() {
                            gaps.push(format!("{method} {path}: {status} without {header}"));
                        }
                    }
                }
                if responses
                    .get("429")
                    .is_some_and(|r| r["headers"].get("Retry-After").is_none())
                {
                    gaps.push(format!("{method} {path}: 429 without Retry-After"));
                }
            }
            if op.get("requestBody").is_some() {
                wanted.extend(["400", "413", "415"]);
            }
            if op
                .get("security")
                .is_some_and(|s| s.as_array().is_some_and(|s| !s.is_empty()))
            {
                wanted.push("401");
            }
            for status in wanted {
                if !responses.contains_key(status) {
                    gaps.push(format!("{method} {path}: no {status}"));
                }
            }
            for (status, response) in responses {
                let problem = &response["content"]["application/problem+json"]["schema"]["$ref"];
                if status.as_str() >= "400" && problem != "#/components/schemas/Problem" {
                    gaps.push(format!("{method} {path}: {status} without a problem body"));
                }
            }
        }
    }
    assert!(gaps.is_empty(), "{gaps:#?}");
    let r = app.get(BASE, "/api/docs/", None).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("swagger"), "Swagger UI page");
}

/// Every (method, path) registered under `/api/v1` by the route modules (`src/routes/*.rs`, each
/// registering its own paths with `resource("…")`), read from their source, so a route added
/// without an OpenAPI entry fails the test above. Bench-only routes are skipped.
fn registered_routes() -> Vec<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/routes");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("src/routes")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    let mut routes = Vec::new();
    for file in files {
        let source = std::fs::read_to_string(&file).expect("route module source");
        for chunk in source.split("resource(\"").skip(1) {
            let path = chunk.split('"').next().expect("path literal");
            if path.starts_with("/_bench") {
                continue;
            }
            // This resource's own builder calls: up to the next resource or the end of `configure`.
            let body = chunk.split("resource(").next().unwrap_or(chunk);
            let body = body.split("\n}\n").next().unwrap_or(body);
            for method in ["get", "post", "put", "patch", "delete"] {
                if body.contains(&format!(".{method}(")) {
                    routes.push((method.to_owned(), format!("/api/v1{path}")));
                }
            }
        }
    }
    routes
}

#[tokio::test]
async fn ready_tells_the_worker_heartbeat_age_and_stays_ready_without_one() {
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let app = spawn_app_with(&[("REDIS_PREFIX", &prefix)]).await;
    // No worker: ready all the same, with no heartbeat.
    let r = app.get(BASE, "/ready", None).await;
    let body = expect_json(r, 200).await;
    assert_eq!(body["status"], "ready");
    assert!(body["worker"]["heartbeat_at"].is_null(), "{body}");
    assert!(body["worker"]["heartbeat_age_secs"].is_null(), "{body}");

    // A worker beat 42 seconds ago (as `tenantry_worker::heartbeat` writes it).
    let url = tenantry_testkit::redis_url();
    let mut redis = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let at = chrono::Utc::now() - chrono::Duration::seconds(42);
    let stamp = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    redis::cmd("SET")
        .arg(format!("{prefix}:worker:heartbeat"))
        .arg(&stamp)
        .arg("EX")
        .arg(60)
        .query_async::<()>(&mut redis)
        .await
        .unwrap();
    let r = app.get(BASE, "/ready", None).await;
    let body = expect_json(r, 200).await;
    assert_eq!(body["worker"]["heartbeat_at"], stamp.as_str());
    let age = body["worker"]["heartbeat_age_secs"].as_i64().unwrap();
    assert!((42..=45).contains(&age), "{body}");
}
