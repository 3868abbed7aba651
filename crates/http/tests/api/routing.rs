//! Host → tenant routing: normalisation, unknown hosts, tenant states, cache invalidation.

use crate::helpers::*;
use reqwest::Method;

#[tokio::test]
async fn hosts_are_normalised() {
    let app = spawn_app().await;
    let t = app.tenant("acme").await;
    for host in [
        "ACME.Example.Test",
        "acme.example.test.",
        "acme.example.test:8080",
        "Acme.EXAMPLE.test.:443",
    ] {
        let r = app.get(host, "/api/v1/projects", Some(&t.token)).await;
        assert_eq!(r.status(), 200, "{host}");
    }
    for host in [
        "acme..example.test",
        "acme.example.test:port",
        "acme example",
        "[::1]:80",
        "acme.example.test:",
    ] {
        let r = app.get(host, "/api/v1/projects", Some(&t.token)).await;
        problem(r, 400).await;
    }
}

#[tokio::test]
async fn unknown_hosts_are_404_never_another_tenant() {
    let app = spawn_app().await;
    let t = app.tenant("acme").await;
    for host in [
        "nope.example.test",
        "acme.other.test",
        "x.acme.example.test",
        "example.org",
        "acme",
    ] {
        let r = app.get(host, "/api/v1/projects", Some(&t.token)).await;
        problem(r, 404).await;
        let r = app.login(host, &t.owner_email, "password-of-acme").await;
        problem(r, 404).await;
    }
    // The base host is public: tenant routes are not there.
    problem(app.get(BASE, "/api/v1/projects", Some(&t.token)).await, 404).await;
}

#[tokio::test]
async fn custom_domains_route_to_their_tenant() {
    let app = spawn_app().await;
    let t = app.tenant("acme").await;
    app.sql(&format!(
        "insert into public.domains (domain, company_id) values ('projects.acme-corp.test', '{}')",
        t.company_id
    ))
    .await;
    eventually("custom domain routes", || async {
        app.get(
            "projects.acme-corp.test",
            "/api/v1/projects",
            Some(&t.token),
        )
        .await
        .status()
            == 200
    })
    .await;
}

#[tokio::test]
async fn suspended_is_403_provisioning_and_behind_are_503_and_changes_apply_without_restart() {
    let app = spawn_app().await;
    let t = app.tenant("acme").await;
    assert_eq!(
        app.get(&t.host, "/api/v1/projects", Some(&t.token))
            .await
            .status(),
        200
    );

    app.sql("update public.companies set status = 'suspended' where slug = 'acme'")
        .await;
    eventually("suspension is seen", || async {
        app.get(&t.host, "/api/v1/projects", Some(&t.token))
            .await
            .status()
            == 403
    })
    .await;
    problem(
        app.get(&t.host, "/api/v1/projects", Some(&t.token)).await,
        403,
    )
    .await;
    problem(
        app.login(&t.host, &t.owner_email, "password-of-acme").await,
        403,
    )
    .await;

    app.sql("update public.companies set status = 'provisioning' where slug = 'acme'")
        .await;
    eventually("provisioning is seen", || async {
        app.get(&t.host, "/api/v1/projects", Some(&t.token))
            .await
            .status()
            == 503
    })
    .await;
    let r = app.get(&t.host, "/api/v1/projects", Some(&t.token)).await;
    assert!(r.headers().get("retry-after").is_some());
    problem(r, 503).await;

    app.sql(
        "update public.companies set status = 'active', schema_version = 0 where slug = 'acme'",
    )
    .await;
    eventually("schema behind head is seen", || async {
        let r = app.get(&t.host, "/api/v1/projects", Some(&t.token)).await;
        r.status() == 503
            && r.json::<serde_json::Value>().await.unwrap()["detail"]
                .as_str()
                .unwrap()
                .contains("upgraded")
    })
    .await;

    app.sql(&format!(
        "update public.companies set schema_version = {} where slug = 'acme'",
        tenantry_tenant::tenant_head()
    ))
    .await;
    eventually("active again", || async {
        app.get(&t.host, "/api/v1/projects", Some(&t.token))
            .await
            .status()
            == 200
    })
    .await;

    app.sql("drop schema tenant_acme cascade").await;
    eventually("missing schema is seen", || async {
        app.get(&t.host, "/api/v1/projects", Some(&t.token))
            .await
            .status()
            == 503
    })
    .await;
}

#[tokio::test]
async fn a_new_tenant_is_routable_at_once() {
    let app = spawn_app().await;
    // Warm the negative cache for the host first.
    problem(
        app.get("fresh.example.test", "/api/v1/projects", None)
            .await,
        404,
    )
    .await;
    let t = app.tenant("fresh").await;
    let r = app
        .request(Method::GET, &t.host, "/api/v1/projects")
        .bearer_auth(&t.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
