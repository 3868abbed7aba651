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

/// Runs refinery's statements on a transaction the caller owns and will commit.
pub struct InTransaction<'a, 'b>(pub &'a Transaction<'b>);

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
            for query in queries {
                self.0.batch_execute(query).await?;
                count += 1;
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
            let rows = self.0.query(query, &[]).await?;
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

/// Applies every pending migration of `runner` inside `tx`, against whatever `search_path` the
/// transaction has set. Nothing is committed here.
pub async fn run_in_transaction(
    tx: &Transaction<'_>,
    runner: &Runner,
) -> Result<Report, refinery::Error> {
    let mut target = InTransaction(tx);
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

/// Brings the public schema to head, under an advisory lock so concurrent runs queue up.
/// Returns the versions applied.
pub async fn migrate_public(client: &mut Client) -> Result<Vec<i32>, MigrateError> {
    let runner = public_runner();
    let tx = client.transaction().await?;
    tx.execute(
        "select pg_advisory_xact_lock($1, 0)",
        &[&MIGRATION_LOCK_NAMESPACE],
    )
    .await?;
    tx.batch_execute("set local search_path to public").await?;
    let report = run_in_transaction(&tx, &runner).await?;
    tx.commit().await?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(Migration::version)
        .collect())
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
