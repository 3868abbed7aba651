//! `GET /metrics` on `METRICS_ADDR`: requests by route pattern and status (never a raw path, an
//! id or a tenant), the pool gauges, the routing-cache and throttle counters; the API itself
//! never serves `/metrics`.
//!
//! The recorder is process-global, so counts are compared as "at least": under `cargo test`
//! other tests of the same process add to them.

use reqwest::Response;

use crate::helpers::*;

const METRICS: (&str, &str) = ("METRICS_ADDR", "127.0.0.1:0");

async fn scrape_response(app: &TestApp, path: &str) -> Response {
    let base = app
        .metrics_address
        .as_deref()
        .expect("the app was spawned with METRICS_ADDR");
    app.http
        .get(format!("{base}{path}"))
        .send()
        .await
        .expect("scrape")
}

async fn scrape(app: &TestApp) -> String {
    let r = scrape_response(app, "/metrics").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    r.text().await.expect("text")
}

/// The value of the series `name` whose labels include every one of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(series, _)| {
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}').unwrap_or(rest)),
                None => (*series, ""),
            };
            series_name == name
                && labels
                    .iter()
                    .all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, value)| value.parse().expect("a sample value"))
}

/// [`sample`], counting a series not yet created as 0.
fn count(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(text, name, labels).unwrap_or(0.0)
}

#[tokio::test]
async fn requests_are_counted_by_route_pattern_and_status_never_by_path_or_tenant() {
    let (app, t) = spawn_tenant_with(&[METRICS], "metricsco").await;
    let id = app.project(&t, "Counted").await;
    for _ in 0..2 {
        let path = format!("/api/v1/projects/{id}");
        assert_eq!(app.status_of(&t.host, &path, &t.token).await, 200);
    }
    let missing = uuid::Uuid::new_v4().to_string();
    let path = format!("/api/v1/projects/{missing}");
    assert_eq!(app.status_of(&t.host, &path, &t.token).await, 404);
    let stray = format!("/no-such-page-{}", uuid::Uuid::new_v4().simple());
    assert_eq!(app.get(BASE, &stray, None).await.status(), 404);
    assert_eq!(
        app.get_as(&t, "/api/v1/no-such-resource").await.status(),
        404
    );

    let text = scrape(&app).await;
    let by_id = |status| {
        [
            ("method", "GET"),
            ("route", "/api/v1/projects/{id}"),
            ("status", status),
        ]
    };
    assert!(
        count(&text, "http_requests_total", &by_id("200")) >= 2.0,
        "{text}"
    );
    assert!(
        count(&text, "http_requests_total", &by_id("404")) >= 1.0,
        "{text}"
    );
    let created = [
        ("method", "POST"),
        ("route", "/api/v1/projects"),
        ("status", "201"),
    ];
    assert!(
        count(&text, "http_requests_total", &created) >= 1.0,
        "{text}"
    );
    let unmatched = [("method", "GET"), ("route", "unmatched"), ("status", "404")];
    assert!(
        count(&text, "http_requests_total", &unmatched) >= 2.0,
        "{text}"
    );

    // Latency: a histogram with buckets for the same series.
    assert!(
        count(&text, "http_request_duration_seconds_count", &by_id("200")) >= 2.0,
        "{text}"
    );
    let mut le_inf = by_id("200").to_vec();
    le_inf.push(("le", "+Inf"));
    assert!(
        count(&text, "http_request_duration_seconds_bucket", &le_inf) >= 2.0,
        "{text}"
    );
    let mut le_small = by_id("200").to_vec();
    le_small.push(("le", "0.005"));
    assert!(
        sample(&text, "http_request_duration_seconds_bucket", &le_small).is_some(),
        "the configured buckets, not summary quantiles: {text}"
    );

    for raw in [&id, &missing, &t.slug, &t.host, &stray, BASE] {
        assert!(!text.contains(raw), "{raw} in {text}");
    }
}

#[tokio::test]
async fn metrics_are_served_on_their_own_listener_only() {
    let (app, t) = spawn_tenant_with(&[METRICS], "metricsco").await;
    for host in [BASE, t.host.as_str()] {
        assert_eq!(
            app.get(host, "/metrics", None).await.status(),
            404,
            "{host}"
        );
    }
    assert_ne!(
        app.metrics_address.as_deref(),
        Some(app.address.as_str()),
        "a port of its own"
    );
    // The metrics listener answers `/metrics` and nothing else.
    for path in ["/", "/health", "/api/v1/projects", "/metrics/x"] {
        assert_eq!(scrape_response(&app, path).await.status(), 404, "{path}");
    }
    assert!(scrape(&app)
        .await
        .contains("# TYPE http_requests_total counter"));

    let plain = spawn_app().await;
    assert_eq!(plain.metrics_address, None, "no METRICS_ADDR, no listener");
}

#[tokio::test]
async fn pool_gauges_and_routing_cache_counters_are_scraped() {
    let (app, t) = spawn_tenant_with(&[METRICS, ("DB_POOL_SIZE", "3")], "gauged").await;
    let before = scrape(&app).await;
    assert_eq!(sample(&before, "db_pool_max_size", &[]), Some(3.0));
    let size = sample(&before, "db_pool_size", &[]).expect("db_pool_size");
    let available = sample(&before, "db_pool_available", &[]).expect("db_pool_available");
    assert!((1.0..=3.0).contains(&size), "{before}");
    assert!(available <= size, "{before}");
    assert!(
        sample(&before, "db_pool_waiting", &[]).is_some(),
        "{before}"
    );

    let hits = count(&before, "routing_cache_hits_total", &[]);
    let misses = count(&before, "routing_cache_misses_total", &[]);
    // The same host three times: a notification from the sign-up may still empty the cache
    // once, so at least one of them is answered from it.
    for _ in 0..3 {
        let r = app.get_as(&t, "/api/v1/projects").await;
        assert_eq!(r.status(), 200);
    }
    let nobody = "nobody-here.example.test";
    assert_eq!(
        app.get(nobody, "/api/v1/projects", None).await.status(),
        404
    );

    let after = scrape(&app).await;
    assert!(
        count(&after, "routing_cache_hits_total", &[]) >= hits + 1.0,
        "{after}"
    );
    assert!(
        count(&after, "routing_cache_misses_total", &[]) >= misses + 1.0,
        "{after}"
    );
    assert!(!after.contains("nobody-here"), "{after}");
}

#[tokio::test]
async fn throttle_decisions_and_redis_fail_opens_are_counted() {
    let (app, t) =
        spawn_tenant_with(&[METRICS, ("LOGIN_FAILURES_PER_ACCOUNT", "1")], "throttled").await;
    problem(
        app.login(&t.host, &t.owner_email, "wrong-password-1").await,
        401,
    )
    .await;
    problem(
        app.login(&t.host, &t.owner_email, "wrong-password-2").await,
        429,
    )
    .await;
    let text = scrape(&app).await;
    let decision = |d| [("throttle", "login-failures"), ("decision", d)];
    assert!(
        count(&text, "throttle_decisions_total", &decision("allowed")) >= 1.0,
        "{text}"
    );
    assert!(
        count(&text, "throttle_decisions_total", &decision("limited")) >= 1.0,
        "{text}"
    );

    // A second application in this process scrapes the same recorder, so its own fail-opens
    // are compared with what the first one's scrape saw.
    let fail_opens = [("throttle", "login-failures")];
    let before = count(&text, "throttle_fail_opens_total", &fail_opens);
    let (down, d) = spawn_tenant_with(
        &[METRICS, ("REDIS_URL", "redis://127.0.0.1:1/")],
        "unthrottled",
    )
    .await;
    let r = down
        .login(&d.host, &d.owner_email, "password-of-unthrottled")
        .await;
    assert_eq!(r.status(), 200, "the throttle fails open");
    let text = scrape(&down).await;
    assert!(
        count(&text, "throttle_fail_opens_total", &fail_opens) >= before + 1.0,
        "{text}"
    );
}
