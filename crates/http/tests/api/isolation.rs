//! Tenant isolation through the whole stack: pooled connections never carry one tenant's
//! search_path into another's request, and no id, token or Host reaches another tenant's rows.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};

async fn names(app: &TestApp, t: &TestTenant) -> Vec<String> {
    column(
        &app.get_json(t, "/api/v1/projects?limit=100", 200).await,
        "name",
    )
}

#[tokio::test]
async fn one_pooled_connection_alternating_50_tenants_and_public_routes() {
    let app = spawn_app_with(&[("DB_POOL_SIZE", "1")]).await;
    let mut tenants = Vec::new();
    for i in 0..50 {
        let t = app.tenant(&format!("t{i:02}")).await;
        let marker = json!({"name": format!("marker-{}", t.slug)});
        app.create_project(&t.host, &t.token, marker).await;
        tenants.push(t);
    }
    for round in 0..2 {
        for t in &tenants {
            assert_eq!(
                names(&app, t).await,
                vec![format!("marker-{}", t.slug)],
                "round {round}"
            );
            // Error paths on the same connection: a query that finds nothing, a check violation
            // raised by the database, and public routes in between.
            let missing = format!("/api/v1/projects/{}", uuid::Uuid::now_v7());
            problem(app.get_as(t, &missing).await, 404).await;
            problem(
                app.post_json(BASE, "/api/v1/register", &json!({"slug": "x"}), None)
                    .await,
                422,
            )
            .await;
            assert_eq!(app.get(BASE, "/ready", None).await.status(), 200);
        }
    }
    // Every tenant still has exactly its own marker in the database.
    for t in &tenants {
        let n: i64 = app
            .sql_one_with(
                &format!(
                    "select count(*) from \"tenant_{}\".projects where name = $1",
                    t.slug
                ),
                &[&format!("marker-{}", t.slug)],
            )
            .await;
        let all: i64 = app
            .sql_one(&format!(
                "select count(*) from \"tenant_{}\".projects",
                t.slug
            ))
            .await;
        assert_eq!((n, all), (1, 1), "{}", t.slug);
    }
}

#[tokio::test]
async fn two_hundred_concurrent_clients_on_two_tenants_never_cross() {
    // This test is about isolation, not capacity: let requests queue for a connection rather
    // than be turned away with 503 when the machine is busy.
    let app = spawn_app_with(&[("DB_POOL_SIZE", "8"), ("DB_POOL_TIMEOUT_MS", "30000")]).await;
    let a = app.tenant("alpha").await;
    let b = app.tenant("bravo").await;
    // A hundred projects each: past the starter plan's max_projects.
    app.sql("update public.companies set plan = 'enterprise'")
        .await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (t, prefix) = if i % 2 == 0 {
            (&a, "alpha")
        } else {
            (&b, "bravo")
        };
        let http = app.http.clone();
        let base = app.address.clone();
        let host = t.host.clone();
        let token = t.token.clone();
        tasks.push(tokio::spawn(async move {
            let marker = format!("{prefix}-{i}");
            let r = http
                .post(format!("{base}/api/v1/projects"))
                .header("Host", &host)
                .bearer_auth(&token)
                .json(&json!({"name": marker}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            let r = http
                .get(format!("{base}/api/v1/projects?limit=100"))
                .header("Host", &host)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let page: Value = r.json().await.unwrap();
            for p in page["results"].as_array().unwrap() {
                let name = p["name"].as_str().unwrap();
                assert!(
                    name.starts_with(&format!("{prefix}-")),
                    "{name} read through {host}"
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for (schema, prefix) in [("tenant_alpha", "alpha"), ("tenant_bravo", "bravo")] {
        let own: i64 = app
            .sql_one_with(
                &format!("select count(*) from \"{schema}\".projects where name like $1 || '-%'"),
                &[&prefix],
            )
            .await;
        let total: i64 = app
            .sql_one(&format!("select count(*) from \"{schema}\".projects"))
            .await;
        assert_eq!((own, total), (100, 100), "{schema}");
    }
}

#[tokio::test]
async fn another_tenants_ids_are_404_and_untouched() {
    let (app, a) = spawn_tenant("acme").await;
    let b = app.tenant("globex").await;
    let id = app.project(&a, "secret").await;
    let path = format!("/api/v1/projects/{id}");
    for (method, body) in [
        (Method::GET, None),
        (Method::PATCH, Some(json!({"name": "owned"}))),
        (Method::DELETE, None),
    ] {
        problem(app.call(method, &b.host, &path, body, &b.token).await, 404).await;
    }
    assert!(names(&app, &b).await.is_empty());
    assert_eq!(names(&app, &a).await, vec!["secret".to_owned()]);
}

#[tokio::test]
async fn database_unavailable_is_503_with_retry_after_and_recovers() {
    let app = spawn_app_with(&[("DB_POOL_SIZE", "2"), ("DB_POOL_TIMEOUT_MS", "300")]).await;
    let t = app.tenant("acme").await;
    assert_eq!(app.get_as(&t, "/api/v1/projects").await.status(), 200);

    let database = app.db_url.rsplit('/').next().unwrap().to_owned();
    let (admin, conn) =
        tokio_postgres::connect(&tenantry_testkit::admin_url(), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(conn);
    admin
        .batch_execute(&format!(
            "alter database \"{database}\" allow_connections false; \
             select pg_terminate_backend(pid) from pg_stat_activity where datname = '{database}';"
        ))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let r = app.get_as(&t, "/api/v1/projects").await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "answers quickly, never hangs"
    );
    let status = r.status();
    let retry_after = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let p: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status, 503, "{p}");
    assert_eq!(retry_after.as_deref(), Some("1"), "{p}");
    assert!(!p.to_string().contains(&database));

    admin
        .batch_execute(&format!(
            "alter database \"{database}\" allow_connections true"
        ))
        .await
        .unwrap();
    eventually("recovers", || async {
        app.get_as(&t, "/api/v1/projects").await.status() == 200
    })
    .await;
}
