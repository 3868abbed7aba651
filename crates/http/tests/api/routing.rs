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

/// Another server on the same database: a restart, as far as routing knows.
async fn spawn_beside(app: &TestApp, overrides: &[(&str, &str)]) -> TestApp {
    let second = build(&app.db_url, overrides)
        .await
        .expect("the second server builds");
    let address = format!("http://127.0.0.1:{}", second.port());
    tokio::spawn(second.run_until_stopped());
    TestApp {
        address,
        metrics_address: None,
        db_url: app.db_url.clone(),
        db: app.db.clone(),
        http: app.http.clone(),
        jwt: tenantry_http::tokens::JwtKeys::new(
            &secrecy::SecretString::from(JWT_SECRET),
            "tenantry",
            "tenantry-api",
        ),
    }
}

/// `n` active companies made in the database directly, as another server's sign-ups would be:
/// each with an owner, an (empty) schema at head, and every other one a `domains` row (the rest
/// are routed by their slug). Returns their hosts.
async fn companies_made_elsewhere(app: &TestApp, prefix: &str, n: usize) -> Vec<String> {
    let head = tenantry_tenant::tenant_head();
    app.sql(&format!(
        "begin;
         insert into public.users (id, email, password_hash)
              values (gen_random_uuid(), 'owner@{prefix}.test', 'not-a-hash');
         insert into public.companies (id, name, slug, schema_name, plan, status, schema_version)
              select gen_random_uuid(), '{prefix} ' || g, '{prefix}' || g, 'tenant_{prefix}' || g,
                     'free', 'active', {head}
                from generate_series(1, {n}) g;
         insert into public.memberships (id, user_id, company_id, role)
              select gen_random_uuid(), u.id, c.id, 'owner'
                from public.companies c, public.users u
               where c.slug like '{prefix}%' and u.email = 'owner@{prefix}.test';
         insert into public.domains (domain, company_id, is_primary)
              select c.slug || '.{BASE}', c.id, true from public.companies c
               where c.slug like '{prefix}%' and right(c.slug, 1) in ('0', '2', '4', '6', '8');
         do $$ declare s text; begin
             for s in select schema_name from public.companies where slug like '{prefix}%' loop
                 execute format('create schema %I', s);
             end loop;
         end $$;
         commit;"
    ))
    .await;
    (1..=n).map(|i| format!("{prefix}{i}.{BASE}")).collect()
}

/// The status of an anonymous `GET /api/v1/projects` on each host, all sent at once.
async fn statuses_at_once(app: &TestApp, hosts: &[String]) -> Vec<u16> {
    let requests = hosts.iter().map(|host| async move {
        app.get(host, "/api/v1/projects", None)
            .await
            .status()
            .as_u16()
    });
    futures_util::future::join_all(requests).await
}

/// A server started when many tenants exist routes every one of them at once, whatever its
/// budget for looking hosts up: they were loaded at start-up, not met one by one (a budget of
/// 1 lookup a second used to turn all but one of them into 503s). Unknown hosts still cost a
/// lookup each, within that budget.
#[tokio::test]
async fn a_restarted_server_routes_every_tenant_at_once() {
    let first = spawn_app_with(&[("ROUTING_MISSES_PER_SEC", "1")]).await;
    let hosts = companies_made_elsewhere(&first, "many", 60).await;
    let restarted = spawn_beside(&first, &[("ROUTING_MISSES_PER_SEC", "1")]).await;
    // Anonymous: 401 means the host named an active tenant (404: nothing; 503: not looked up).
    let statuses = statuses_at_once(&restarted, &hosts).await;
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");

    let unknown: Vec<String> = (0..5).map(|i| format!("nobody-{i}.{BASE}")).collect();
    let statuses = statuses_at_once(&restarted, &unknown).await;
    assert!(
        statuses.iter().all(|s| [404, 503].contains(s)),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&404),
        "one lookup within the budget: {statuses:?}"
    );
    assert!(statuses.contains(&503), "the rest past it: {statuses:?}");
    // Tenants are unaffected by the spent budget.
    let statuses = statuses_at_once(&restarted, &hosts).await;
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
}

/// Changes another server (or an operator's SQL) makes reach this server's route table through
/// their notifications, company by company: a new tenant is routed while its host is still
/// remembered as unknown, a suspension is 403, a deleted company is 404.
#[tokio::test]
async fn changes_made_elsewhere_reach_the_route_table() {
    let app = spawn_app().await;
    let host = format!("fresh1.{BASE}");
    // Remembered as unknown for 5 s: only the route table can answer otherwise before then.
    problem(app.get(&host, "/api/v1/projects", None).await, 404).await;
    let started = std::time::Instant::now();
    companies_made_elsewhere(&app, "fresh", 1).await;
    eventually("the new tenant is routed", || async {
        app.get(&host, "/api/v1/projects", None).await.status() == 401
    })
    .await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "routed through its notification, not after the unknown host was forgotten"
    );

    app.sql("update public.companies set status = 'suspended' where slug = 'fresh1'")
        .await;
    eventually("the suspension is seen", || async {
        app.get(&host, "/api/v1/projects", None).await.status() == 403
    })
    .await;
    app.sql("delete from public.companies where slug = 'fresh1'")
        .await;
    eventually("the deletion is seen", || async {
        app.get(&host, "/api/v1/projects", None).await.status() == 404
    })
    .await;
}

/// What no trigger sees (a schema dropped by hand) is seen at the next whole reload, every
/// `ROUTING_CACHE_TTL_SECS`.
#[tokio::test]
async fn the_route_table_is_reloaded_whole_every_ttl() {
    let app = spawn_app_with(&[("ROUTING_CACHE_TTL_SECS", "1")]).await;
    let hosts = companies_made_elsewhere(&app, "timed", 1).await;
    eventually("the tenant is routed", || async {
        app.get(&hosts[0], "/api/v1/projects", None).await.status() == 401
    })
    .await;
    app.sql("drop schema tenant_timed1").await;
    eventually("the missing schema is seen", || async {
        app.get(&hosts[0], "/api/v1/projects", None).await.status() == 503
    })
    .await;
}
