//! Tenant migrations and `migrate-schemas`: public first, then every tenant schema in parallel
//! with bounded concurrency.
//!
//! Each schema migrates in one transaction that takes an advisory lock on that schema, applies
//! refinery's pending migrations with `search_path` set to the schema (so its history table
//! lives inside it), and records the result in `public.companies.schema_version`. Two concurrent
//! runs therefore queue per schema and never apply a migration twice, a failure leaves that
//! schema exactly as it was, and a no-op run needs one query to know nothing is pending.
//!
//! On a Citus coordinator "pending" also covers a schema that is not a distributed schema yet: a
//! tenant created while the database was a single server, before the citus extension came. The
//! same run distributes it under the same lock (outcome [`Outcome::Distributed`]), after public has
//! been brought to what V12 does on Citus ([`tenantry_public::cluster::distribute_public`]).

use futures_util::stream::{self, StreamExt};
use refinery::{Migration, Runner};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tenantry_public::cluster;
use tenantry_public::db::{Db, DbError};
use tenantry_public::ids::CompanyId;
use tenantry_public::migrate::{
    migrate_public, public_status, run_in_transaction, MigrateError, Statements,
    MIGRATION_LOCK_NAMESPACE,
};
use tenantry_public::{SchemaName, Slug};
use tokio_postgres::Transaction;

mod embedded {
    refinery::embed_migrations!("../../migrations-tenant");
}

/// The tenant migrations compiled into this binary.
pub fn tenant_runner() -> Runner {
    embedded::migrations::runner()
}

/// The highest tenant migration compiled into this binary.
pub fn tenant_head() -> i32 {
    static HEAD: OnceLock<i32> = OnceLock::new();
    *HEAD.get_or_init(|| tenantry_public::migrate::head_of(&tenant_runner()))
}

/// Takes the schema's advisory lock for the rest of `tx`. Migrating and dropping a schema both
/// take it first, so they never interleave.
pub async fn lock_schema(tx: &Transaction<'_>, schema: &SchemaName) -> Result<(), MigrateError> {
    tx.execute(
        "select pg_advisory_xact_lock($1, hashtext($2))",
        &[&MIGRATION_LOCK_NAMESPACE, &schema.as_str()],
    )
    .await?;
    Ok(())
}

/// What [`migrate_schema_in`] did to one schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaMigration {
    /// The versions applied.
    pub applied: Vec<i32>,
    /// The version the schema is now at.
    pub version: i32,
    /// Citus only: the schema was not a distributed schema and now is.
    pub distributed: bool,
}

/// Creates `schema` if needed and brings it to head inside `tx`; on Citus it also makes it a
/// distributed schema if it is not one yet. The caller holds the schema's lock
/// ([`lock_schema`]). Commits nothing.
pub async fn migrate_schema_in(
    tx: &Transaction<'_>,
    schema: &SchemaName,
) -> Result<SchemaMigration, MigrateError> {
    // On Citus a schema that is not distributed yet is migrated plain, then distributed.
    let placement = cluster::prepare_schema(tx, schema).await?;
    tx.batch_execute(&format!("create schema if not exists {}", schema.quoted()))
        .await?;
    tx.execute(
        "select pg_catalog.set_config('search_path', $1, true)",
        &[&schema.quoted()],
    )
    .await?;
    // Citus keeps the one-statement path for every tenant schema, new or distributed.
    let statements = match placement {
        cluster::SchemaPlacement::Single => Statements::PerFile,
        cluster::SchemaPlacement::Distributed | cluster::SchemaPlacement::ToDistribute => {
            Statements::OneByOne
        }
    };
    let report = run_in_transaction(tx, &tenant_runner(), statements).await?;
    let version: Option<i32> = tx
        .query_one("select max(version) from refinery_schema_history", &[])
        .await?
        .try_get(0)?;
    cluster::finish_schema(tx, schema, placement).await?;
    Ok(SchemaMigration {
        applied: report
            .applied_migrations()
            .iter()
            .map(Migration::version)
            .collect(),
        version: version.unwrap_or(0),
        distributed: placement == cluster::SchemaPlacement::ToDistribute,
    })
}

/// What to migrate and how.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// Schemas migrated at once.
    pub jobs: usize,
    /// Only this tenant (public is still brought to head first).
    pub tenant: Option<Slug>,
    /// Change nothing; report what is behind.
    pub check: bool,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        Self {
            jobs: 4,
            tenant: None,
            check: false,
        }
    }
}

/// What happened to one schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Migrations were applied; the schema is now at `to`. `distributed`: on Citus the schema
    /// was not a distributed schema and now is (for public: `public.users` was made a reference
    /// table after the fact).
    Migrated {
        from: Option<i32>,
        to: i32,
        applied: Vec<i32>,
        distributed: bool,
    },
    /// Citus only: the schema was at head but not a distributed schema (a tenant created before
    /// the citus extension was installed), and now is one; for public: `public.users` was made a
    /// reference table.
    Distributed,
    /// Nothing was pending.
    UpToDate,
    /// `--check` only: the schema is behind head at this version.
    Behind { version: Option<i32> },
    /// `--check` only, Citus only: the schema is at head but not distributed yet (it lives on the
    /// coordinator); for public: `public.users` is not a reference table yet.
    NotDistributed,
    /// `--check` only: the company's schema does not exist.
    Missing,
    /// Migrating failed; the schema is unchanged.
    Failed { error: String },
    /// The tenant was dropped while the run waited for its lock; nothing was done.
    Dropped,
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct SchemaReport {
    /// `public` or the tenant's slug.
    pub name: String,
    pub schema: String,
    pub outcome: Outcome,
    pub duration: Duration,
}

/// The totals at the end of a run.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub migrated: usize,
    /// Schemas made distributed (Citus) by this run, whether or not migrations were applied to
    /// them too (those also count in `migrated`).
    pub distributed: usize,
    pub up_to_date: usize,
    pub behind: usize,
    pub failed: usize,
    /// Tenants dropped by someone else during the run.
    pub dropped: usize,
    pub tenants: usize,
    pub duration: Duration,
    pub reports: Vec<SchemaReport>,
}

impl Summary {
    /// True when the run should exit zero.
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.behind == 0
    }

    fn add(&mut self, report: SchemaReport) {
        match &report.outcome {
            Outcome::Migrated { distributed, .. } => {
                self.migrated += 1;
                self.distributed += usize::from(*distributed);
            }
            Outcome::Distributed => self.distributed += 1,
            Outcome::UpToDate => self.up_to_date += 1,
            Outcome::Behind { .. } | Outcome::Missing | Outcome::NotDistributed => self.behind += 1,
            Outcome::Failed { .. } => self.failed += 1,
            Outcome::Dropped => self.dropped += 1,
        }
        self.reports.push(report);
    }
}

/// Errors that stop a run before any tenant is looked at.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("migrating the public schema failed: {0}")]
    Public(MigrateError),
    #[error("no tenant has the slug {0}")]
    UnknownTenant(String),
}

struct Candidate {
    id: CompanyId,
    slug: String,
    schema: SchemaName,
    version: Option<i32>,
    exists: bool,
    /// Always true on a single server.
    distributed: bool,
}

/// Runs migrate-schemas. `progress` is called once per schema as it finishes, with the number of
/// schemas that will be reported in total.
pub async fn migrate_schemas(
    db: &Db,
    options: &MigrateOptions,
    progress: &(dyn Fn(&SchemaReport, usize) + Sync),
) -> Result<Summary, RunError> {
    let started = Instant::now();
    let mut summary = Summary::default();

    // Public first: tenant migrations may reference public tables.
    let t = Instant::now();
    let mut client = db.public().await?;
    let status = public_status(&client).await?;
    let placement = cluster::public_placement(client.client()).await?;
    let undistributed = placement == cluster::PublicPlacement::ToDistribute;
    let public_outcome = if status.is_current() && !undistributed {
        Outcome::UpToDate
    } else if options.check {
        if status.is_current() {
            Outcome::NotDistributed
        } else {
            Outcome::Behind {
                version: status.applied,
            }
        }
    } else {
        match migrate_public(&mut client).await {
            Ok(done) if done.applied.is_empty() && done.distributed => Outcome::Distributed,
            Ok(done) if done.applied.is_empty() => Outcome::UpToDate,
            Ok(done) => Outcome::Migrated {
                from: status.applied,
                to: status.head,
                applied: done.applied,
                distributed: done.distributed,
            },
            Err(e) => return Err(RunError::Public(e)),
        }
    };
    let citus = placement != cluster::PublicPlacement::Single;

    // Without a public schema there are no companies to look at; --check reports public alone.
    if options.check && status.applied.is_none() {
        let report = SchemaReport {
            name: "public".into(),
            schema: "public".into(),
            outcome: public_outcome,
            duration: t.elapsed(),
        };
        progress(&report, 1);
        summary.add(report);
        summary.duration = started.elapsed();
        return Ok(summary);
    }

    let head = tenant_head();
    let rows = client
        .query(
            if citus {
                CANDIDATES_CITUS
            } else {
                CANDIDATES_SINGLE
            },
            &[&options.tenant.as_ref().map(Slug::as_str)],
        )
        .await
        .map_err(DbError::from)?;
    drop(client);
    if let Some(slug) = &options.tenant {
        if rows.is_empty() {
            return Err(RunError::UnknownTenant(slug.to_string()));
        }
    }

    let mut pending = Vec::new();
    for row in &rows {
        let schema: String = row.try_get(2).map_err(DbError::from)?;
        let candidate = Candidate {
            id: CompanyId(row.try_get(0).map_err(DbError::from)?),
            slug: row.try_get(1).map_err(DbError::from)?,
            schema: SchemaName::parse(&schema)
                .map_err(|e| DbError::Corrupt(format!("companies.schema_name {schema:?} {e}")))?,
            version: row.try_get(3).map_err(DbError::from)?,
            exists: row.try_get(4).map_err(DbError::from)?,
            distributed: row.try_get(5).map_err(DbError::from)?,
        };
        if candidate.exists && candidate.version == Some(head) && candidate.distributed {
            summary.up_to_date += 1;
        } else {
            pending.push(candidate);
        }
    }
    summary.tenants = rows.len();
    let total = 1 + pending.len();

    let public_report = SchemaReport {
        name: "public".into(),
        schema: "public".into(),
        outcome: public_outcome,
        duration: t.elapsed(),
    };
    progress(&public_report, total);
    summary.add(public_report);

    if options.check {
        for c in pending {
            let report = SchemaReport {
                name: c.slug,
                schema: c.schema.to_string(),
                outcome: if !c.exists {
                    Outcome::Missing
                } else if c.version != Some(head) {
                    Outcome::Behind { version: c.version }
                } else {
                    Outcome::NotDistributed
                },
                duration: Duration::ZERO,
            };
            progress(&report, total);
            summary.add(report);
        }
    } else {
        let mut results = stream::iter(pending)
            .map(|c| migrate_one(db, c))
            .buffer_unordered(options.jobs.max(1));
        while let Some(report) = results.next().await {
            progress(&report, total);
            summary.add(report);
        }
    }
    summary.duration = started.elapsed();
    Ok(summary)
}

/// Every company with its schema's state, in one query. On Citus `pg_dist_schema` says which
/// schemas are distributed (the catalog exists only there).
const CANDIDATES_SINGLE: &str = "select c.id, c.slug, c.schema_name, c.schema_version, \
            n.oid is not null, true \
       from public.companies c \
       left join pg_catalog.pg_namespace n on n.nspname = c.schema_name \
      where $1::text is null or c.slug = $1 \
      order by c.slug";
const CANDIDATES_CITUS: &str = "select c.id, c.slug, c.schema_name, c.schema_version, \
            n.oid is not null, \
            exists (select 1 from pg_catalog.pg_dist_schema d where d.schemaid = n.oid) \
       from public.companies c \
       left join pg_catalog.pg_namespace n on n.nspname = c.schema_name \
      where $1::text is null or c.slug = $1 \
      order by c.slug";

#[tracing::instrument(skip_all, fields(tenant = %c.slug))]
async fn migrate_one(db: &Db, c: Candidate) -> SchemaReport {
    let started = Instant::now();
    let outcome = match try_migrate_one(db, &c).await {
        Ok(None) => Outcome::Dropped,
        // A tenant from before Citus came: at head, now distributed.
        Ok(Some(done)) if done.applied.is_empty() && done.distributed => Outcome::Distributed,
        // Another run got here first, or schema_version was stale: nothing to apply.
        Ok(Some(done)) if done.applied.is_empty() => Outcome::UpToDate,
        Ok(Some(done)) => Outcome::Migrated {
            from: c.version,
            to: done.version,
            applied: done.applied,
            distributed: done.distributed,
        },
        Err(e) => {
            tracing::warn!(error = %e, "tenant migration failed");
            Outcome::Failed {
                error: tenantry_public::db::error_chain(&e),
            }
        }
    };
    SchemaReport {
        name: c.slug,
        schema: c.schema.to_string(),
        outcome,
        duration: started.elapsed(),
    }
}

/// `Ok(None)` when the company was dropped while this run waited for the schema's lock.
async fn try_migrate_one(db: &Db, c: &Candidate) -> Result<Option<SchemaMigration>, MigrateError> {
    let mut client = db.public().await?;
    let tx = client.transaction().await?;
    lock_schema(&tx, &c.schema).await?;
    // Checked under the lock: a concurrent drop_tenant holds the same lock while it deletes.
    let still_there = tx
        .query_opt(
            "select 1 from public.companies where id = $1 and schema_name = $2 for update",
            &[&c.id.0, &c.schema.as_str()],
        )
        .await?
        .is_some();
    if !still_there {
        return Ok(None);
    }
    let done = migrate_schema_in(&tx, &c.schema).await?;
    tenantry_public::companies::set_schema_version(&*tx, c.id, done.version).await?;
    tx.commit().await?;
    Ok(Some(done))
}
