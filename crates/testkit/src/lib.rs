//! Test support: every test gets its own fresh database on the throwaway PostgreSQL server that
//! `just test` starts, and its own Redis key prefix. Nothing is shared between tests. The email
//! tests deliver to an in-process SMTP server ([`smtp::SmtpSink`]). Fault tests that stop or kill
//! a service run a private one ([`services::PrivatePostgres`], [`services::PrivateRedis`]).

#![allow(clippy::expect_used, clippy::panic)]

pub mod services;
pub mod smtp;

use tokio_postgres::NoTls;
use uuid::Uuid;

/// The server-level URL `just test` exports. Tests fail (never skip) without it.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "DATABASE_URL is not set: run the tests through `just test`, which starts a \
             throwaway PostgreSQL and Redis and exports DATABASE_URL and REDIS_URL"
        )
    })
}

/// The Redis URL `just test` exports. Tests fail (never skip) without it.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL")
        .unwrap_or_else(|_| panic!("REDIS_URL is not set: run the tests through `just test`"))
}

/// A key prefix no other test uses.
pub fn unique_prefix() -> String {
    format!("test-{}", Uuid::new_v4().simple())
}

/// A database created for one test.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

/// The Citus workers (`host:port`) when the tests run against a Citus cluster
/// (`CLUSTER=citus scripts/with-services.sh`, which exports `CITUS_WORKERS`), else none.
pub fn citus_workers() -> Vec<String> {
    if std::env::var("CLUSTER").as_deref() != Ok("citus") {
        return Vec::new();
    }
    std::env::var("CITUS_WORKERS")
        .unwrap_or_default()
        .split(',')
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether the tests run against a Citus cluster.
pub fn is_citus() -> bool {
    !citus_workers().is_empty()
}

/// Creates an empty database with a unique name and returns its URL.
///
/// Against a Citus cluster the database is a cluster of its own: it is created on the
/// coordinator and on every worker, each with the citus extension, and the coordinator
/// registers itself and the workers (Citus keeps its node list per database).
pub async fn fresh_database() -> TestDatabase {
    let database = fresh_plain_database().await;
    add_citus(&database).await;
    database
}

/// Creates an empty database with a unique name on the server `DATABASE_URL` names, without
/// the citus extension even against a Citus cluster: a single server that may become a Citus
/// coordinator later ([`add_citus`]), as a production database does when it outgrows one server.
pub async fn fresh_plain_database() -> TestDatabase {
    let admin = admin_url();
    let name = format!("t_{}", Uuid::new_v4().simple());
    execute(&admin, &format!("create database \"{name}\"")).await;
    let url = with_database(&admin, &name);
    TestDatabase { name, url }
}

/// Against a Citus cluster, makes `database` (made by [`fresh_plain_database`], whatever it holds
/// by now) the coordinator of a cluster of its own, as an operator does on a production server:
/// the database on every worker with the citus extension, then `create extension citus` on the
/// coordinator, which registers itself and the workers. Does nothing on a single server.
pub async fn add_citus(database: &TestDatabase) {
    let workers = citus_workers();
    if workers.is_empty() {
        return;
    }
    let (name, url) = (&database.name, &database.url);
    let admin = admin_url();
    for worker in &workers {
        let worker_admin = with_host(&admin, worker);
        execute(&worker_admin, &format!("create database \"{name}\"")).await;
        execute(
            &with_database(&worker_admin, name),
            "create extension citus",
        )
        .await;
    }
    let coordinator = host_port(&admin);
    let (host, port) = coordinator
        .rsplit_once(':')
        .expect("DATABASE_URL names host:port");
    // Replication slots are named after the operation id, and slots belong to the server,
    // not the database: each test database starts its operation ids somewhere else, so that
    // two tests moving tenants at once do not ask for the same slot.
    let first_operation = 1 + Uuid::new_v4().as_u128() % 1_000_000_000;
    execute(
        url,
        &format!(
            "create extension citus; select citus_set_coordinator_host('{host}', {port}); \
             select setval('pg_catalog.pg_dist_operationid_seq', {first_operation});"
        ),
    )
    .await;
    for worker in &workers {
        let (host, port) = worker
            .rsplit_once(':')
            .expect("CITUS_WORKERS holds host:port");
        // On a busy machine the coordinator's first connection to a worker's brand-new
        // database now and then fails ("failure on connection marked as essential"); adding
        // the node again is harmless, so it is tried up to five times.
        let add = format!("select citus_add_node('{host}', {port})");
        for attempt in 1..=5 {
            match try_execute(url, &add).await {
                Ok(()) => break,
                Err(e) if attempt == 5 => panic!("{add} on {url}: {e}"),
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
            }
        }
    }
}

/// Runs `sql` (simple protocol) on its own connection to `url`; the error's message if it fails.
async fn try_execute(url: &str, sql: &str) -> Result<(), String> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(connection);
    let result = client.batch_execute(sql).await.map_err(|e| {
        e.as_db_error()
            .map_or_else(|| e.to_string(), |db| db.message().to_owned())
    });
    drop(client);
    let _ = driver.await;
    result
}

/// Runs `sql` (simple protocol) on its own connection to `url`.
async fn execute(url: &str, sql: &str) {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to the test PostgreSQL server {url}: {e}"));
    let driver = tokio::spawn(connection);
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| match e.as_db_error() {
            Some(db) => panic!("{sql} on {url}: {}: {:?}", db.message(), db.where_()),
            None => panic!("{sql} on {url}: {e}"),
        });
    drop(client);
    let _ = driver.await;
}

/// The `host:port` of a `postgres://user@host:port/db` URL.
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split(['/', '?']).next().unwrap_or(rest);
    rest.rsplit_once('@').map_or(rest, |(_, h)| h).to_owned()
}

/// Replaces the `host:port` of a `postgres://` URL.
pub fn with_host(url: &str, host_port_new: &str) -> String {
    let old = host_port(url);
    url.replacen(&format!("@{old}"), &format!("@{host_port_new}"), 1)
}

/// Replaces the database name in a `postgres://` URL.
pub fn with_database(url: &str, database: &str) -> String {
    let (before_query, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = before_query.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match before_query[scheme_end..].find('/') {
        Some(i) => &before_query[..scheme_end + i],
        None => before_query,
    };
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}

#[cfg(test)]
mod tests {
    use super::{host_port, with_database, with_host};

    #[test]
    fn replaces_host() {
        assert_eq!(host_port("postgres://u@h:1/x?a=b"), "h:1");
        assert_eq!(
            with_host("postgres://u@h:1/x", "127.0.0.1:2"),
            "postgres://u@127.0.0.1:2/x"
        );
    }

    #[test]
    fn replaces_database() {
        assert_eq!(
            with_database("postgres://u@h:1/x", "y"),
            "postgres://u@h:1/y"
        );
        assert_eq!(with_database("postgres://u@h:1", "y"), "postgres://u@h:1/y");
        assert_eq!(
            with_database("postgres://u@h:1/x?a=b", "y"),
            "postgres://u@h:1/y?a=b"
        );
    }
}
