//! A tenant moved between Citus workers while the API writes to it (`just test-citus`). On a
//! single server (`just test`) the same write load runs without a move, with the same checks.

use crate::helpers::spawn_app_with;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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
/// worker (`citus_schema_move` in `block_writes` mode, as `tenantctl tenant move` does). Afterwards every project the API
/// acknowledged (201) exists exactly once, nothing else was written, and no request answered a
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
        app.sql_with(
            "select citus_schema_move('tenant_moving'::regnamespace, $1, $2, \
             shard_transfer_mode => 'block_writes')",
            &[&host, &port],
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
