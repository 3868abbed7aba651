//! Running refinery migrations inside a caller's transaction, and the public schema's own
//! migrations.
//!
//! refinery's own tokio-postgres driver opens and commits a transaction per call. Provisioning
//! must create a company, its schema and every tenant migration atomically, and migrate-schemas
//! must hold a per-schema lock and update `companies.schema_version` in the same transaction as the
//! migration itself, so both run refinery through [`InTransaction`] instead.

use refinery::{Migration, Report, Runner};
use refinery_core::traits::r#async::{AsyncMigrate, AsyncQuery, AsyncTransaction};
use std::future::Future;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio_postgres::{Client, Transaction};

use crate::db::DbError;

mod embedded {
    refinery::embed_migrations!("../../migrations-public");
}

/// The refinery history table; every schema (public and each tenant) has its own.
pub const HISTORY_TABLE: &str = "refinery_schema_history";

/// Advisory-lock namespace for migrations (first half of the two-int key).
pub const MIGRATION_LOCK_NAMESPACE: i32 = 0x7465_6e74; // "tent"

/// The public migrations compiled into this binary.
pub fn public_runner() -> Runner {
    embedded::migrations::runner()
}

/// The highest version among a runner's migrations.
pub fn head_of(runner: &Runner) -> i32 {
    runner
        .get_migrations()
        .iter()
        .map(Migration::version)
        .max()
        .unwrap_or(0)
}

/// How refinery's SQL reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statements {
    /// Each migration file and its history row in one round trip (the simple-query protocol
    /// runs several statements in one message, inside our transaction): plain PostgreSQL.
    PerFile,
    /// One statement per round trip: Citus forwards some DDL (e.g. `create index` in a
    /// distributed schema) to the worker as the whole query string it came in, and a worker
    /// refuses several commands in one.
    OneByOne,
}

/// Runs refinery's statements on a transaction the caller owns and will commit. Either way the
/// same statements run in the same order in the same transaction, so the schema and refinery's
/// history come out identical; only the number of round trips differs.
pub struct InTransaction<'a, 'b> {
    pub tx: &'a Transaction<'b>,
    pub statements: Statements,
}

impl AsyncTransaction for InTransaction<'_, '_> {
    type Error = tokio_postgres::Error;

    // The trait spells out `+ Send`; keeping the same shape here keeps that bound visible.
    #[allow(clippy::manual_async_fn)]
    fn execute<'s, T: Iterator<Item = &'s str> + Send + 's>(
        &'s mut self,
        queries: T,
    ) -> impl Future<Output = Result<usize, Self::Error>> + Send + 's {
        async move {
            let mut count = 0;
            match self.statements {
                Statements::PerFile => {
                    // refinery passes a migration's SQL and its history insert together. The
                    // separator ends a trailing line comment and an unterminated last statement;
                    // an empty statement is harmless.
                    let mut batch = String::new();
                    for query in queries {
                        batch.push_str(query);
                        batch.push_str("\n;\n");
                        count += 1;
                    }
                    if count > 0 {
                        self.tx.batch_execute(&batch).await?;
                    }
                }
                Statements::OneByOne => {
                    for query in queries {
                        for statement in statements(query) {
                            self.tx.batch_execute(statement).await?;
                        }
                        count += 1;
                    }
                }
            }
            Ok(count)
        }
    }
}

impl AsyncQuery<Vec<Migration>> for InTransaction<'_, '_> {
    #[allow(clippy::manual_async_fn)]
    fn query<'s>(
        &'s mut self,
        query: &'s str,
    ) -> impl Future<Output = Result<Vec<Migration>, Self::Error>> + Send + 's {
        async move {
            let rows = self.tx.query(query, &[]).await?;
            let mut applied = Vec::with_capacity(rows.len());
            for row in rows {
                let applied_on: String = row.try_get(2)?;
                let checksum: String = row.try_get(3)?;
                // refinery writes both columns itself. A row it cannot read gets checksum 0,
                // which refinery then reports as a divergent migration instead of re-running it.
                let applied_on = OffsetDateTime::parse(&applied_on, &Rfc3339)
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH);
                let checksum = checksum.parse::<u64>().unwrap_or_default();
                applied.push(Migration::applied(
                    row.try_get(0)?,
                    row.try_get(1)?,
                    applied_on,
                    checksum,
                ));
            }
            Ok(applied)
        }
    }
}

impl AsyncMigrate for InTransaction<'_, '_> {}

/// Splits SQL text into its statements at top-level semicolons, keeping string literals,
/// quoted identifiers, dollar-quoted bodies and comments whole. Pieces holding only
/// whitespace and comments are dropped; each statement keeps its terminating semicolon.
pub fn statements(sql: &str) -> Vec<&str> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i, mut code) = (0, 0, false);
    while i < bytes.len() {
        match bytes[i] {
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = sql[i..].find('\n').map_or(bytes.len(), |n| i + n + 1);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                // Block comments nest in PostgreSQL.
                let mut depth = 0;
                while i < bytes.len() {
                    if bytes[i..].starts_with(b"/*") {
                        depth += 1;
                        i += 2;
                    } else if bytes[i..].starts_with(b"*/") {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            quote @ (b'\'' | b'"') => {
                code = true;
                // A doubled quote inside is an escaped quote: scanning on finds the next one.
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    i += 1;
                }
                i += 1;
            }
            b'$' => {
                code = true;
                // $tag$ … $tag$ (the tag may be empty); a `$1` parameter has no closing `$`.
                let tag_end = sql[i + 1..]
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .map(|n| i + 1 + n);
                match tag_end {
                    Some(end) if bytes[end] == b'$' && !bytes[i + 1].is_ascii_digit() => {
                        let tag = &sql[i..=end];
                        i = sql[end + 1..]
                            .find(tag)
                            .map_or(bytes.len(), |n| end + 1 + n + tag.len());
                    }
                    _ => i += 1,
                }
            }
            b';' => {
                if code {
                    out.push(&sql[start..=i]);
                }
                i += 1;
                start = i;
                code = false;
            }
            c => {
                code |= !c.is_ascii_whitespace();
                i += 1;
            }
        }
    }
    if code {
        out.push(&sql[start..]);
    }
    out
}

/// Applies every pending migration of `runner` inside `tx`, against whatever `search_path` the
/// transaction has set. Nothing is committed here.
pub async fn run_in_transaction(
    tx: &Transaction<'_>,
    runner: &Runner,
    statements: Statements,
) -> Result<Report, refinery::Error> {
    let mut target = InTransaction { tx, statements };
    runner.run_async(&mut target).await
}

/// Why migrating a schema failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("migration failed: {0}")]
    Migration(#[from] refinery::Error),
}

impl From<tokio_postgres::Error> for MigrateError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(e.into())
    }
}

/// What [`migrate_public`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublicMigration {
    /// The versions applied.
    pub applied: Vec<i32>,
    /// Citus only: `public.users` was made a reference table by this run, after the fact
    /// (the database got the citus extension after public V12 ran; [`crate::cluster::distribute_public`]).
    pub distributed: bool,
}

/// Brings the public schema to head, under an advisory lock so concurrent runs queue up, and on
/// a Citus coordinator does what V12 does there if it has not been done (the citus extension came
/// after V12), in the same transaction.
pub async fn migrate_public(client: &mut Client) -> Result<PublicMigration, MigrateError> {
    let runner = public_runner();
    let tx = client.transaction().await?;
    tx.execute(
        "select pg_advisory_xact_lock($1, 0)",
        &[&MIGRATION_LOCK_NAMESPACE],
    )
    .await?;
    tx.batch_execute("set local search_path to public").await?;
    // Rare and small: one statement at a time on every topology, as Citus needs.
    let report = run_in_transaction(&tx, &runner, Statements::OneByOne).await?;
    let distributed = crate::cluster::distribute_public(&tx).await?;
    tx.commit().await?;
    Ok(PublicMigration {
        applied: report
            .applied_migrations()
            .iter()
            .map(Migration::version)
            .collect(),
        distributed,
    })
}

/// Where the public schema stands against the migrations compiled into this binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicStatus {
    pub applied: Option<i32>,
    pub head: i32,
}

impl PublicStatus {
    pub fn is_current(&self) -> bool {
        self.applied.is_some_and(|v| v >= self.head)
    }
}

/// Reads the public schema's applied version in one query.
pub async fn public_status(client: &Client) -> Result<PublicStatus, DbError> {
    let head = head_of(&public_runner());
    let exists: bool = client
        .query_one(
            "select to_regclass('public.refinery_schema_history') is not null",
            &[],
        )
        .await?
        .try_get(0)?;
    let applied = if exists {
        client
            .query_one(
                "select max(version) from public.refinery_schema_history",
                &[],
            )
            .await?
            .try_get(0)?
    } else {
        None
    };
    Ok(PublicStatus { applied, head })
}

#[cfg(test)]
mod tests {
    use super::{public_runner, statements};

    #[test]
    fn splits_at_top_level_semicolons() {
        let sql = "-- a comment; not a statement\ncreate table t (a text default 'x;y''z;');\n\
                   create function f() returns trigger language plpgsql as $$\nbegin\n  \
                   raise exception 'no; never';\nend\n$$;\n/* c; /* nested; */ */\n\
                   select $1, \"a;b\" from t;\n-- trailing comment;\n";
        let parts = statements(sql);
        assert_eq!(parts.len(), 3, "{parts:#?}");
        assert!(parts[0].trim_start().starts_with("-- a comment"));
        assert!(parts[0].ends_with("'x;y''z;');"));
        assert!(parts[1].contains("raise exception 'no; never';\nend\n$$;"));
        assert!(parts[2].trim_end().ends_with("from t;"));
        assert_eq!(statements("select 1"), vec!["select 1"]);
        assert!(statements("  -- nothing\n").is_empty());
    }

    #[test]
    fn every_public_migration_splits_into_whole_statements() {
        for migration in public_runner().get_migrations() {
            let sql = migration.sql().unwrap_or_default();
            let parts = statements(sql);
            assert!(!parts.is_empty(), "{}", migration.name());
            // Nothing but comments and whitespace is left out.
            let joined: String = parts.concat();
            assert!(sql.starts_with(&joined), "{}", migration.name());
            let rest = &sql[joined.len()..];
            assert!(statements(rest).is_empty(), "{}: {rest}", migration.name());
        }
    }
}
