//! Bad input of every kind gets a problem+json answer with the right status.

use crate::helpers::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn malformed_wrong_type_wrong_media_and_oversized_bodies() {
    let app = spawn_app().await;
    let url = "/api/v1/register";

    for (content_type, body, status, needle) in [
        ("application/json", "{\"name\": ", 400, "not valid JSON"),
        ("text/plain", "{}", 415, ""),
    ] {
        let r = app
            .request(Method::POST, BASE, url)
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        expect_problem(r, status, needle).await;
    }

    let r = app
        .post_json(BASE, url, &json!({"name": 42, "slug": ["x"]}), None)
        .await;
    expect_problem(r, 400, "wrong type").await;

    let big = json!({"name": "x".repeat(1024 * 1024 + 10)});
    let r = app.post_json(BASE, url, &big, None).await;
    problem(r, 413).await;
    assert_eq!(app.count("select count(*) from public.companies").await, 0);
}

#[tokio::test]
async fn unknown_paths_and_methods() {
    let app = spawn_app().await;
    problem(app.get(BASE, "/nope", None).await, 404).await;
    problem(app.get(BASE, "/api/v1/nope", None).await, 404).await;
    let r = app
        .request(Method::GET, BASE, "/api/v1/register")
        .send()
        .await
        .unwrap();
    problem(r, 405).await;
    let t = app.tenant("acme").await;
    let r = app
        .call(Method::PUT, &t.host, "/api/v1/projects", None, &t.token)
        .await;
    problem(r, 405).await;
    // An id that is not a UUID names nothing.
    let r = app.get_as(&t, "/api/v1/projects/not-a-uuid").await;
    problem(r, 404).await;
}

#[tokio::test]
async fn no_sql_or_schema_names_in_error_bodies() {
    let (app, t) = spawn_tenant("acme").await;
    // Make the tenant's table vanish behind the server's back: the answer is a generic 503.
    app.sql("drop table tenant_acme.projects cascade").await;
    let r = app.get_as(&t, "/api/v1/projects").await;
    assert!(r.headers().get("retry-after").is_some());
    let p = problem(r, 503).await;
    let text = p.to_string();
    for leak in ["tenant_acme", "projects", "relation", "select", "SQLSTATE"] {
        assert!(!text.contains(leak), "{leak} leaked: {text}");
    }
}

/// Every answer carries the security headers; API answers (success and error alike) are never
/// cached; the docs page has its own CSP that lets it load its own files.
#[tokio::test]
async fn security_headers_and_no_store_on_every_answer() {
    let (app, t) = spawn_tenant("acme").await;
    let answers = [
        ("api 200", app.get_as(&t, "/api/v1/projects").await),
        ("api 401", app.get(&t.host, "/api/v1/projects", None).await),
        (
            "api 404 host",
            app.get("nobody.example.test", "/api/v1/projects", None)
                .await,
        ),
        ("health", app.get(BASE, "/health", None).await),
        ("docs", app.get(BASE, "/api/docs/", None).await),
    ];
    for (what, r) in &answers {
        let h = r.headers();
        let get = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
        };
        assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
        assert_eq!(get("x-frame-options"), "DENY", "{what}");
        assert_eq!(get("referrer-policy"), "no-referrer", "{what}");
        assert!(
            get("content-security-policy").contains("frame-ancestors 'none'"),
            "{what}"
        );
        if what.starts_with("api") {
            assert_eq!(get("cache-control"), "no-store", "{what}");
        }
    }
    let docs_csp = answers[4].1.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(docs_csp.contains("default-src 'self'"), "{docs_csp}");
    let api_csp = answers[0].1.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(api_csp.starts_with("default-src 'none'"), "{api_csp}");
}

/// A method a path does not answer is 405 with an `Allow` header naming the ones it does.
#[tokio::test]
async fn method_not_allowed_names_the_allowed_methods() {
    let (app, t) = spawn_tenant("acme").await;
    for (method, path, allow) in [
        (Method::PUT, "/api/v1/projects", "GET, POST"),
        (
            Method::POST,
            "/api/v1/projects/00000000-0000-0000-0000-000000000000",
            "GET, PATCH, DELETE",
        ),
        (Method::GET, "/api/v1/auth/token", "POST"),
        (Method::DELETE, "/api/v1/audit-log", "GET"),
    ] {
        let r = app
            .request(method.clone(), &t.host, path)
            .bearer_auth(&t.token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.headers().get("allow").and_then(|v| v.to_str().ok()),
            Some(allow),
            "{method} {path}"
        );
        expect_problem(r, 405, "method not allowed").await;
    }
}
