//! A tenant moved between Citus workers while the API writes to it (`just test-citus`). On a
//! single server (`just test`) the same write load runs without a move, with the same checks.

use crate::helpers::spawn_app_with;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tenantry_tenant::migrate::{migrate_schemas, MigrateOptions, Outcome, Summary};

/// The node (`host:port`) holding `schema`'s tables on a Citus cluster.
async fn node_of(app: &crate::helpers::TestApp, schema: &str) -> String {
    let (client, connection) = tokio_postgres::connect(&app.db_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    tenantry_public::cluster::placements(&client)
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.schema == schema)
        .map(|p| p.node)
        .unwrap_or_else(|| panic!("{schema} is not a distributed schema"))
}

/// Four clients create projects in one tenant without pause while its schema moves to the other
/// worker (`citus_schema_move` in the mode `tenantctl tenant move` picks, which on the test
/// cluster is logical replication: writes go on during the copy). Afterwards every project the
/// API acknowledged (201) exists exactly once, nothing else was written, and no request answered a
/// status other than 201 or 503 (the documented window: a request that waited longer than
/// `DB_POOL_TIMEOUT_MS` for a connection while the move switched over; it wrote nothing). The
/// tenant is then on the other worker and still takes writes.
#[tokio::test]
async fn citus_a_tenant_moved_under_write_load_keeps_every_acknowledged_write() {
    let app = spawn_app_with(&[("RATE_LIMITS", "off"), ("DB_POOL_SIZE", "8")]).await;
    let t = app.tenant("moving").await;
    app.sql("update public.companies set plan = 'enterprise'")
        .await;
    let workers = tenantry_testkit::citus_workers();

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for k in 0..4 {
        let (http, base, host, token) = (
            app.http.clone(),
            app.address.clone(),
            t.host.clone(),
            t.token.clone(),
        );
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut statuses: HashMap<u16, usize> = HashMap::new();
            let mut i = 0;
            // At least 25 writes each, and on until the move is over.
            while i < 25 || !stop.load(Ordering::SeqCst) {
                let name = format!("w{k}-{i}");
                let r = http
                    .post(format!("{base}/api/v1/projects"))
                    .header("Host", &host)
                    .bearer_auth(&token)
                    .json(&json!({ "name": name }))
                    .send()
                    .await
                    .expect("the server answers");
                let status = r.status().as_u16();
                *statuses.entry(status).or_default() += 1;
                if status == 201 {
                    acknowledged.push(name);
                }
                i += 1;
            }
            (acknowledged, statuses)
        }));
    }

    if workers.is_empty() {
        // A single server: nothing to move; the load runs its minimum.
    } else {
        let from = node_of(&app, "tenant_moving").await;
        let to = workers.iter().find(|w| **w != from).unwrap().clone();
        let (host, port) = to.rsplit_once(':').unwrap();
        let port: i32 = port.parse().unwrap();
        // Some writes land before the move starts.
        while app
            .count("select count(*) from tenant_moving.projects")
            .await
            < 20
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let mode = {
            let client = app.db.get().await.unwrap();
            let client: &tokio_postgres::Client = &client;
            tenantry_public::cluster::move_mode(client).await.unwrap()
        };
        // The test cluster commits synchronously (scripts/services.sh), so the move is online.
        assert_eq!(mode, tenantry_public::cluster::MoveMode::Logical);
        app.sql_with(
            "select citus_schema_move('tenant_moving'::regnamespace, $1, $2, \
             shard_transfer_mode => $3::text::citus.shard_transfer_mode)",
            &[&host, &port, &mode.transfer_mode()],
        )
        .await;
        assert_eq!(node_of(&app, "tenant_moving").await, to);
    }
    stop.store(true, Ordering::SeqCst);

    let mut acknowledged = Vec::new();
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for c in clients {
        let (names, seen) = c.await.unwrap();
        acknowledged.extend(names);
        for (s, n) in seen {
            *statuses.entry(s).or_default() += n;
        }
    }
    assert!(
        statuses.keys().all(|s| *s == 201 || *s == 503),
        "only 201 and the brief 503 window: {statuses:?}"
    );
    assert!(acknowledged.len() >= 100, "{statuses:?}");

    // Every acknowledged write exactly once, and nothing that was not acknowledged.
    let rows: Vec<String> = app
        .sql_col_with("select name from tenant_moving.projects order by name", &[])
        .await;
    let mut expected = acknowledged.clone();
    expected.sort();
    assert_eq!(rows, expected, "{statuses:?}");

    // The moved tenant still reads and writes through the API.
    let r = app
        .post_json(
            &t.host,
            "/api/v1/projects",
            &json!({"name": "after"}),
            Some(&t.token),
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = app.get_as(&t, "/api/v1/projects?limit=1").await;
    assert_eq!(r.status(), 200);
}

/// The upgrade path from one server to a cluster (README, "Running on Citus"): tenants created
/// while the database was a single server, with data, become distributed schemas when the
/// citus extension arrives and `migrate-schemas` runs, with everything they held and the API
/// serving them throughout. On a single server (`just test`) the same run changes nothing.
#[tokio::test]
async fn citus_tenants_from_a_single_server_are_distributed_by_migrate_schemas() {
    let database = tenantry_testkit::fresh_plain_database().await;
    let app = crate::helpers::spawn_app_on(database, |url| url.to_owned(), &[]).await;
    let citus = tenantry_testkit::is_citus();

    // Two tenants with projects and tasks, on a database without Citus.
    let mut tenants = Vec::new();
    for slug in ["early1", "early2"] {
        let t = app.tenant(slug).await;
        for p in 0..3 {
            let project = app.project(&t, &format!("{slug}-p{p}")).await;
            for k in 0..2 {
                let r = app
                    .call(
                        reqwest::Method::POST,
                        &t.host,
                        "/api/v1/tasks",
                        Some(json!({"project_id": project, "title": format!("t{p}-{k}"),
                                    "assignee_id": t.owner_id})),
                        &t.token,
                    )
                    .await;
                assert_eq!(r.status(), 201);
            }
        }
        tenants.push(t);
    }
    let mut before = Vec::new();
    for t in &tenants {
        before.push((
            app.get_json(t, "/api/v1/projects?limit=100", 200).await,
            app.get_json(t, "/api/v1/tasks?limit=100", 200).await,
        ));
    }
    let users: i64 = app.count("select count(*) from public.users").await;

    // The operator installs Citus: the extension on the server, the workers added.
    let database = tenantry_testkit::TestDatabase {
        name: app.db_url.rsplit('/').next().unwrap().to_owned(),
        url: app.db_url.clone(),
    };
    tenantry_testkit::add_citus(&database).await;
    let db = app.domain_db();
    let run = |check| {
        let db = db.clone();
        async move {
            migrate_schemas(
                &db,
                &MigrateOptions {
                    check,
                    ..MigrateOptions::default()
                },
                &|_, _| {},
            )
            .await
            .unwrap()
        }
    };
    let outcomes = |s: &Summary| -> Vec<(String, Outcome)> {
        s.reports
            .iter()
            .map(|r| (r.name.clone(), r.outcome.clone()))
            .collect()
    };

    // --check names what the run would do, and does none of it.
    let s = run(true).await;
    if citus {
        assert!(!s.ok());
        assert_eq!(
            outcomes(&s),
            [
                ("public".into(), Outcome::NotDistributed),
                ("early1".into(), Outcome::NotDistributed),
                ("early2".into(), Outcome::NotDistributed)
            ]
        );
    } else {
        assert!(s.ok() && s.up_to_date == 3, "{s:?}");
    }

    // The run: public.users becomes a reference table, each tenant a distributed schema.
    let s = run(false).await;
    assert!(s.ok(), "{s:?}");
    let mut got = outcomes(&s);
    got.sort_by(|a, b| a.0.cmp(&b.0));
    if citus {
        assert_eq!(
            got,
            [
                ("early1".into(), Outcome::Distributed),
                ("early2".into(), Outcome::Distributed),
                ("public".into(), Outcome::Distributed),
            ]
        );
        assert_eq!((s.distributed, s.migrated, s.failed), (3, 0, 0));
        let workers = tenantry_testkit::citus_workers();
        for t in &tenants {
            let node = node_of(&app, &format!("tenant_{}", t.slug)).await;
            assert!(workers.contains(&node), "{} is on {node}", t.slug);
        }
        assert_eq!(
            app.sql_col_with::<String>(
                "select citus_table_type from citus_tables \
                  where table_name = 'public.users'::regclass",
                &[]
            )
            .await,
            ["reference"]
        );
    } else {
        assert_eq!(got, [("public".into(), Outcome::UpToDate)]);
        assert_eq!(s.up_to_date, 3);
    }

    // A second run has nothing to do, and says so in its check.
    let s = run(false).await;
    assert_eq!(
        (s.up_to_date, s.migrated, s.distributed, s.failed),
        (3, 0, 0, 0),
        "{s:?}"
    );
    assert!(run(true).await.ok());

    // Everything is still there and served as before: the same pages, the same accounts, logins.
    assert_eq!(app.count("select count(*) from public.users").await, users);
    for (t, (projects, tasks)) in tenants.iter().zip(&before) {
        assert_eq!(
            &app.get_json(t, "/api/v1/projects?limit=100", 200).await,
            projects
        );
        assert_eq!(
            &app.get_json(t, "/api/v1/tasks?limit=100", 200).await,
            tasks
        );
        let token = app
            .token(&t.host, &t.owner_email, &format!("password-of-{}", t.slug))
            .await;
        let r = app
            .post_json(
                &t.host,
                "/api/v1/projects",
                &json!({"name": "after"}),
                Some(&token),
            )
            .await;
        assert_eq!(r.status(), 201);
    }
    assert_eq!(
        app.count("select count(*) from tenant_early1.projects")
            .await,
        4
    );

    // A tenant signed up now is distributed from the start.
    let t = app.tenant("late").await;
    app.project(&t, "new").await;
    if citus {
        assert!(tenantry_testkit::citus_workers().contains(&node_of(&app, "tenant_late").await));
    }
}

/// Connects to `url` for the rest of the test.
async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// The race that made logical moves lose acknowledged writes, pinned down: a write committed
/// right before a logical-replication move blocks writes (held there through Citus's own
/// isolation-test gate, the advisory lock (44000, 55152) it takes after the copy and catch-up
/// under `citus.running_under_citus_test_suite`). With the workers committing synchronously, as
/// the test cluster does, the write is on the new node. With `synchronous_commit = off` on a
/// worker, Citus 13.2.2 loses such a write (its final catch-up stops at the source's WAL write
/// position, short of a commit still in WAL buffers: ARCHITECTURE, "Cluster topology (Citus)"),
/// and [`tenantry_public::cluster::move_mode`] then chooses `block_writes`. On a single server
/// (`just test`) there is nothing to move.
#[tokio::test]
async fn citus_a_write_just_before_a_logical_move_blocks_writes() {
    use tenantry_public::cluster::{move_mode, MoveMode};
    let workers = tenantry_testkit::citus_workers();
    if workers.is_empty() {
        return;
    }
    let database = tenantry_testkit::fresh_database().await;
    let admin = connect(&database.url).await;
    assert_eq!(move_mode(&admin).await.unwrap(), MoveMode::Logical);
    admin
        .batch_execute(
            "create schema gated; create table gated.items (id int primary key, v text); \
             select citus_schema_distribute('gated'); \
             insert into gated.items select g, 'x' from generate_series(1, 1000) g",
        )
        .await
        .unwrap();
    let placed = "select nodename || ':' || nodeport from citus_shards \
                  where table_name = 'gated.items'::regclass";
    let from: String = admin.query_one(placed, &[]).await.unwrap().get(0);
    let to = workers.iter().find(|w| **w != from).unwrap().clone();
    let (host, port) = to.rsplit_once(':').unwrap();
    let (host, port) = (host.to_owned(), port.parse::<i32>().unwrap());

    let gate = connect(&database.url).await;
    gate.batch_execute("select pg_advisory_lock(44000, 55152)")
        .await
        .unwrap();
    let mover = connect(&database.url).await;
    mover
        .batch_execute("set citus.running_under_citus_test_suite = on")
        .await
        .unwrap();
    let moving = tokio::spawn(async move {
        mover
            .execute(
                "select citus_schema_move('gated', $1, $2, shard_transfer_mode => 'auto')",
                &[&host, &port],
            )
            .await
    });
    // The move waits at the gate: copied, caught up, writes not blocked yet.
    let started = std::time::Instant::now();
    while admin
        .query_one(
            "select count(*) from pg_locks where locktype = 'advisory' and not granted \
               and classid = 44000 and objid = 55152",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
        == 0
    {
        assert!(
            started.elapsed().as_secs() < 120,
            "the move never reached the gate"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    admin
        .execute("insert into gated.items values (0, 'last')", &[])
        .await
        .unwrap();
    gate.batch_execute("select pg_advisory_unlock(44000, 55152)")
        .await
        .unwrap();
    moving.await.unwrap().unwrap();
    assert_eq!(
        admin
            .query_one(placed, &[])
            .await
            .unwrap()
            .get::<_, String>(0),
        to
    );
    assert_eq!(
        admin
            .query_one("select count(*) from gated.items where id = 0", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        1,
        "the write acknowledged just before the switch-over is on the new node"
    );

    // A worker committing asynchronously for this database: moves block writes instead.
    let worker = tenantry_testkit::with_database(
        &tenantry_testkit::with_host(&tenantry_testkit::admin_url(), &workers[0]),
        &database.name,
    );
    let set = |value: &'static str| {
        let (worker, name) = (worker.clone(), database.name.clone());
        async move {
            connect(&worker)
                .await
                .batch_execute(&format!(
                    "set citus.enable_ddl_propagation = off; \
                     alter database \"{name}\" set synchronous_commit = {value}"
                ))
                .await
                .unwrap();
        }
    };
    set("off").await;
    match move_mode(&connect(&database.url).await).await.unwrap() {
        MoveMode::BlockWrites { reason } => assert!(reason.contains(&workers[0]), "{reason}"),
        other => panic!("{other:?}"),
    }
    set("on").await;
    assert_eq!(
        move_mode(&connect(&database.url).await).await.unwrap(),
        MoveMode::Logical
    );
}
