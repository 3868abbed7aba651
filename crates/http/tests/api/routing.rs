//! Host → tenant routing: normalisation, unknown hosts, tenant states, cache invalidation.

use crate::helpers::*;

/// The status of `GET /api/v1/projects` on `host` with `token`.
async fn projects_status(app: &TestApp, host: &str, token: &str) -> u16 {
    app.get(host, "/api/v1/projects", Some(token))
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn hosts_are_normalised() {
    let (app, t) = spawn_tenant("acme").await;
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
    let (app, t) = spawn_tenant("acme").await;
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
    let (app, t) = spawn_tenant("acme").await;
    app.sql_with(
        "insert into public.domains (domain, company_id) values ('projects.acme-corp.test', $1::text::uuid)",
        &[&t.company_id],
    )
    .await;
    eventually("custom domain routes", || async {
        projects_status(&app, "projects.acme-corp.test", &t.token).await == 200
    })
    .await;
}

#[tokio::test]
async fn suspended_is_403_provisioning_and_behind_are_503_and_changes_apply_without_restart() {
    let (app, t) = spawn_tenant("acme").await;
    assert_eq!(projects_status(&app, &t.host, &t.token).await, 200);
    let seen = |what: &'static str, status: u16| {
        let (app, t) = (&app, &t);
        eventually(what, move || async move {
            projects_status(app, &t.host, &t.token).await == status
        })
    };

    app.sql("update public.companies set status = 'suspended' where slug = 'acme'")
        .await;
    seen("suspension is seen", 403).await;
    problem(app.get_as(&t, "/api/v1/projects").await, 403).await;
    problem(
        app.login(&t.host, &t.owner_email, "password-of-acme").await,
        403,
    )
    .await;

    app.sql("update public.companies set status = 'provisioning' where slug = 'acme'")
        .await;
    seen("provisioning is seen", 503).await;
    let r = app.get_as(&t, "/api/v1/projects").await;
    assert!(r.headers().get("retry-after").is_some());
    problem(r, 503).await;

    app.sql(
        "update public.companies set status = 'active', schema_version = 0 where slug = 'acme'",
    )
    .await;
    eventually("schema behind head is seen", || async {
        let r = app.get_as(&t, "/api/v1/projects").await;
        r.status() == 503
            && r.json::<serde_json::Value>().await.unwrap()["detail"]
                .as_str()
                .unwrap()
                .contains("upgraded")
    })
    .await;

    app.sql_with(
        "update public.companies set schema_version = $1 where slug = 'acme'",
        &[&tenantry_tenant::tenant_head()],
    )
    .await;
    seen("active again", 200).await;

    app.sql("drop schema tenant_acme cascade").await;
    seen("missing schema is seen", 503).await;
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
    assert_eq!(projects_status(&app, &t.host, &t.token).await, 200);
}

/// Random `*.BASE_DOMAIN` names cost one lookup each, within a budget per second: past it an
/// uncached host answers 503 with `Retry-After`, while a cached tenant and an unknown host seen
/// before (remembered apart) answer as ever.
#[tokio::test]
async fn lookups_of_unknown_hosts_are_remembered_and_bounded() {
    let (app, t) = spawn_tenant_with(&[("ROUTING_MISSES_PER_SEC", "5")], "acme").await;
    // Seen once: remembered as unknown.
    problem(
        app.get("seen.example.test", "/api/v1/projects", None).await,
        404,
    )
    .await;
    let mut statuses = Vec::new();
    for i in 0..30 {
        let host = format!("random-{i}.example.test");
        let r = app.get(&host, "/api/v1/projects", None).await;
        if r.status() == 503 {
            assert!(r.headers().contains_key("retry-after"), "{host}");
        }
        statuses.push(r.status().as_u16());
    }
    assert!(
        statuses.iter().all(|s| [404, 503].contains(s)),
        "{statuses:?}"
    );
    let refused = statuses.iter().filter(|s| **s == 503).count();
    assert!(
        refused >= 15,
        "most of a burst of 30 past a budget of 5/s: {statuses:?}"
    );
    // Still within the flood: a known tenant, even once a routing change empties the cache,
    // and the remembered unknown host.
    assert_eq!(projects_status(&app, &t.host, &t.token).await, 200);
    app.sql("update public.companies set name = 'Acme Renamed' where slug = 'acme'")
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(projects_status(&app, &t.host, &t.token).await, 200);
    problem(
        app.get("seen.example.test", "/api/v1/projects", None).await,
        404,
    )
    .await;
}

/// Domains changed the way `tenantctl domain` changes them route at once, are listed to admins,
/// and are refused when they are the base domain, another slug host or another tenant's.
#[tokio::test]
async fn operator_domain_changes_route_at_once_and_are_listed() {
    use tenantry_public::domains::DomainError;
    use tenantry_public::{companies, DomainName, Origin, Slug};
    use tenantry_tenant::domains::{self as changes, Changed};

    let (app, t) = spawn_tenant("acme").await;
    let globex = app.tenant("globex").await;
    let db = app.domain_db();
    let find = |slug: &'static str| {
        let db = db.clone();
        async move {
            let slug = Slug::parse(slug).unwrap();
            companies::find_by_slug(db.public().await.unwrap().client(), &slug)
                .await
                .unwrap()
                .unwrap()
        }
    };
    let (acme, globex_co) = (find("acme").await, find("globex").await);
    let base = DomainName::parse(BASE).unwrap();
    let name = |s: &str| DomainName::parse(s).unwrap();
    let origin = Origin::command("tests");
    let custom = name("tasks.acme-corp.test");

    let added = changes::add(&db, &acme, &base, &custom, &origin)
        .await
        .unwrap();
    assert!(
        matches!(added, Changed::Added(ref d) if !d.is_primary),
        "{added:?}"
    );
    eventually("the added domain routes", || async {
        projects_status(&app, custom.as_str(), &t.token).await == 200
    })
    .await;
    let again = changes::add(&db, &acme, &base, &custom, &origin)
        .await
        .unwrap();
    assert_eq!(again, Changed::AlreadyThere);

    for refused in [BASE, "globex.example.test", "x.acme.example.test"] {
        let e = changes::add(&db, &acme, &base, &name(refused), &origin).await;
        assert!(
            matches!(e, Err(DomainError::Reserved(_))),
            "{refused}: {e:?}"
        );
    }
    let e = changes::add(&db, &globex_co, &base, &custom, &origin).await;
    assert!(matches!(e, Err(DomainError::TakenByOther)), "{e:?}");

    // Primary moves: the old primary is listed second, and the new one cannot be removed.
    let made = changes::make_primary(&db, &acme, &custom, &origin)
        .await
        .unwrap();
    assert!(
        matches!(made, Changed::MadePrimary { previous: Some(ref p) } if p.domain == t.host),
        "{made:?}"
    );
    let list = app.get_json(&t, "/api/v1/organization/domains", 200).await;
    assert_eq!(
        column(&list, "domain"),
        [custom.to_string(), t.host.clone()]
    );
    assert_eq!(list["results"][0]["is_primary"], true);
    assert_eq!(list["results"][1]["is_primary"], false);
    let e = changes::remove(&db, &acme, &custom, &origin).await;
    assert!(matches!(e, Err(DomainError::Primary)), "{e:?}");
    // Globex's list is its own.
    let theirs = app
        .get_json(&globex, "/api/v1/organization/domains", 200)
        .await;
    assert_eq!(column(&theirs, "domain"), vec![globex.host.clone()]);

    changes::make_primary(&db, &acme, &name(&t.host), &origin)
        .await
        .unwrap();
    let removed = changes::remove(&db, &acme, &custom, &origin).await.unwrap();
    assert!(matches!(removed, Changed::Removed(_)), "{removed:?}");
    eventually("the removed domain no longer routes", || async {
        projects_status(&app, custom.as_str(), &t.token).await == 404
    })
    .await;
    let e = changes::remove(&db, &acme, &custom, &origin).await;
    assert!(matches!(e, Err(DomainError::NotFound)), "{e:?}");
    // The slug host routes whatever the table says.
    assert_eq!(projects_status(&app, &t.host, &t.token).await, 200);

    let schema = app
        .sql_one_with::<String>(
            "select schema_name from public.companies where slug = 'acme'",
            &[],
        )
        .await;
    assert_eq!(
        app.audit_actions(&schema)
            .await
            .into_iter()
            .filter(|a| a.starts_with("domain."))
            .collect::<Vec<_>>(),
        // Refused and no-op changes wrote nothing.
        [
            "domain.added",
            "domain.primary_changed",
            "domain.primary_changed",
            "domain.removed"
        ]
    );
}
