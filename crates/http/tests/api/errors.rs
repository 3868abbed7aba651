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
    let r = app
        .get(&t.host, "/api/v1/projects/not-a-uuid", Some(&t.token))
        .await;
    problem(r, 404).await;
}

#[tokio::test]
async fn no_sql_or_schema_names_in_error_bodies() {
    let (app, t) = spawn_tenant("acme").await;
    // Make the tenant's table vanish behind the server's back: the answer is a generic 503.
    app.sql("drop table tenant_acme.projects").await;
    let r = app.get(&t.host, "/api/v1/projects", Some(&t.token)).await;
    assert!(r.headers().get("retry-after").is_some());
    let p = problem(r, 503).await;
    let text = p.to_string();
    for leak in ["tenant_acme", "projects", "relation", "select", "SQLSTATE"] {
        assert!(!text.contains(leak), "{leak} leaked: {text}");
    }
}
