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

/// Creates an empty database with a unique name and returns its URL.
pub async fn fresh_database() -> TestDatabase {
    let admin = admin_url();
    let (client, connection) = tokio_postgres::connect(&admin, NoTls)
        .await
        .expect("connect to the test PostgreSQL server (DATABASE_URL)");
    let driver = tokio::spawn(connection);
    let name = format!("t_{}", Uuid::new_v4().simple());
    client
        .batch_execute(&format!("create database \"{name}\""))
        .await
        .expect("create test database");
    drop(client);
    let _ = driver.await;
    let url = with_database(&admin, &name);
    TestDatabase { name, url }
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
    use super::with_database;

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
