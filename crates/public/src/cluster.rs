//! Cluster mode: whether the database is a single PostgreSQL server or the coordinator of a Citus
//! cluster (README, "Running on Citus"), and where each tenant schema lives on such a cluster.
//!
//! The same binaries run on both. What differs is done only when the citus extension is
//! installed: public migration V12 makes `public.users` a reference table, and migrating a tenant
//! schema that is not distributed yet (a new tenant's) makes it a distributed schema
//! ([`prepare_schema`], [`finish_schema`]).
//!
//! A database that was a single server first and got the citus extension later is converted by
//! the next `migrate-schemas` run: public V12 ran there as a no-op, so [`distribute_public`] does
//! its Citus part, and every tenant schema that is not in `pg_dist_schema` yet is distributed
//! under its lock (ARCHITECTURE, "Cluster topology (Citus)", upgrade path).

use tokio_postgres::GenericClient;

use crate::db::DbError;

/// The database's topology, detected at start-up ([`detect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// One PostgreSQL server.
    Single,
    /// A Citus coordinator: tenant schemas are distributed schemas on worker nodes.
    Citus,
}

impl Topology {
    pub fn is_citus(self) -> bool {
        self == Self::Citus
    }
}

impl std::fmt::Display for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Single => "single",
            Self::Citus => "citus",
        })
    }
}

/// What the operator asked for with `CLUSTER` (unset: detect).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClusterSetting {
    #[default]
    Detect,
    /// `CLUSTER=citus`: start only on a Citus coordinator.
    Citus,
}

impl ClusterSetting {
    /// Parses `CLUSTER`'s value: empty or `auto` detects, `citus` requires Citus.
    pub fn parse(value: &str) -> Result<Self, String> {
        match value.trim() {
            "" | "auto" => Ok(Self::Detect),
            "citus" => Ok(Self::Citus),
            other => Err(format!(
                "CLUSTER must be `citus` or empty (detect), not `{other}`"
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// `CLUSTER=citus` but the database has no citus extension.
    #[error(
        "CLUSTER=citus but the citus extension is not installed in DATABASE_URL's database \
         (is DATABASE_URL the Citus coordinator?)"
    )]
    NotCitus,
    #[error(transparent)]
    Db(#[from] DbError),
}

const HAS_CITUS: &str =
    "select exists (select 1 from pg_catalog.pg_extension where extname = 'citus')";

/// Where a tenant schema about to be migrated stands on the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaPlacement {
    /// Plain PostgreSQL: nothing to do.
    Single,
    /// Citus, and the schema is a distributed schema: its tables are on a worker, and new ones
    /// are created there.
    Distributed,
    /// Citus, and the schema is new (or plain): it is migrated as a plain schema and then
    /// distributed ([`finish_schema`]).
    ToDistribute,
}

/// Prepares the transaction that migrates `schema` (created or not yet) and says how to finish
/// it. On Citus, a schema that is not distributed yet is migrated as plain PostgreSQL tables,
/// also those with a foreign key to the reference table `public.users` (Citus would otherwise make
/// each a "Citus local table" as the key is created, and then refuse DDL that tenant migrations
/// contain: several `alter table` subcommands with `add constraint`, V8), and distributed whole
/// at the end. Tables of a distributed schema may keep their triggers
/// (`citus.enable_unsafe_triggers`: the audit log's append-only guard only raises errors, so
/// running it on the worker is safe). Later migrations of a distributed schema run there, under
/// Citus's DDL rules (ARCHITECTURE, "Adding a tenant resource").
#[tracing::instrument(skip_all, err)]
pub async fn prepare_schema(
    client: &impl GenericClient,
    schema: &crate::SchemaName,
) -> Result<SchemaPlacement, DbError> {
    let citus: bool = client.query_one(HAS_CITUS, &[]).await?.try_get(0)?;
    if !citus {
        return Ok(SchemaPlacement::Single);
    }
    let distributed: bool = client
        .query_one(
            "select exists (select 1 from pg_dist_schema \
                            where schemaid = to_regnamespace($1)::oid)",
            &[&schema.as_str()],
        )
        .await?
        .try_get(0)?;
    client
        .batch_execute("select pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true)")
        .await?;
    if distributed {
        return Ok(SchemaPlacement::Distributed);
    }
    client
        .batch_execute(
            "select pg_catalog.set_config('citus.enable_local_reference_table_foreign_keys', \
             'off', true)",
        )
        .await?;
    Ok(SchemaPlacement::ToDistribute)
}

/// Ends what [`prepare_schema`] began: a schema to distribute becomes a distributed schema (its
/// tables single-shard tables placed together on one worker, queries routed there by
/// `search_path`).
#[tracing::instrument(skip_all, err)]
pub async fn finish_schema(
    client: &impl GenericClient,
    schema: &crate::SchemaName,
    placement: SchemaPlacement,
) -> Result<(), DbError> {
    if placement == SchemaPlacement::ToDistribute {
        client
            .execute(
                "select citus_schema_distribute($1::text::regnamespace)",
                &[&schema.as_str()],
            )
            .await?;
        client
            .batch_execute(
                "select pg_catalog.set_config('citus.enable_local_reference_table_foreign_keys', \
                 'on', true)",
            )
            .await?;
    }
    Ok(())
}

/// Where the public schema stands on the cluster, read in one query on a single server and two
/// on Citus ([`public_placement`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicPlacement {
    /// Plain PostgreSQL: nothing to do.
    Single,
    /// Citus, and `public.users` is a reference table (public V12 ran on Citus, or
    /// [`distribute_public`] did its work since), or there is no `public.users` yet (V12 will
    /// make it one).
    Distributed,
    /// Citus, and `public.users` is still a plain table: the database was a single server when
    /// public V12 ran (a no-op there) and got the citus extension later.
    ToDistribute,
}

/// Reads where the public schema stands (see [`PublicPlacement`]).
#[tracing::instrument(skip_all, err)]
pub async fn public_placement(client: &impl GenericClient) -> Result<PublicPlacement, DbError> {
    let citus: bool = client.query_one(HAS_CITUS, &[]).await?.try_get(0)?;
    if !citus {
        return Ok(PublicPlacement::Single);
    }
    // A reference table has one shard copied to every node: partition method `n` (none) and
    // the two-phase-commit replication model `t`; a "Citus local table" has `n` and `s`.
    // (to_regclass: a database not migrated yet has no public.users.)
    let reference: bool = client
        .query_one(
            "select to_regclass('public.users') is null \
                    or exists (select 1 from pg_dist_partition \
                                where logicalrelid = to_regclass('public.users') \
                                  and partmethod = 'n' and repmodel = 't')",
            &[],
        )
        .await?
        .try_get(0)?;
    Ok(if reference {
        PublicPlacement::Distributed
    } else {
        PublicPlacement::ToDistribute
    })
}

/// What public V12 does on Citus, for a database that got the citus extension after V12 ran:
/// `public.users` becomes a reference table (its rows copied to every node) and loses the
/// `origin_company_id` key a reference table may not have, while the tables linked to it become
/// Citus local tables on the coordinator. V12 explains why. The caller holds the public
/// migration lock, so that two runs do not both try; returns whether it changed anything
/// (`false` on a single server and when it was done already).
#[tracing::instrument(skip_all, err)]
pub async fn distribute_public(client: &impl GenericClient) -> Result<bool, DbError> {
    if public_placement(client).await? != PublicPlacement::ToDistribute {
        return Ok(false);
    }
    client
        .batch_execute(
            "alter table public.users drop constraint if exists users_origin_company_id_fkey",
        )
        .await?;
    client
        .batch_execute("select create_reference_table('public.users')")
        .await?;
    Ok(true)
}

/// How a tenant schema is moved between nodes ([`move_mode`]): Citus's `shard_transfer_mode`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveMode {
    /// `auto`: logical replication. The tenant is copied while it serves reads and writes, and
    /// its writes wait only for the final switch-over (Citus checks that every table has a
    /// replica identity; tenant tables have primary keys).
    Logical,
    /// `block_writes`: the tenant's writes wait for the whole copy. Used where a logical move
    /// could lose acknowledged writes; `reason` says why.
    BlockWrites { reason: String },
}

impl MoveMode {
    /// The value of `citus_schema_move`'s `shard_transfer_mode`.
    pub fn transfer_mode(&self) -> &'static str {
        match self {
            Self::Logical => "auto",
            Self::BlockWrites { .. } => "block_writes",
        }
    }
}

/// Chooses how to move tenants: logical replication, unless a worker commits asynchronously
/// (`synchronous_commit = off` for the connections the coordinator makes to it). Citus ends a
/// logical move's final catch-up at the source's WAL *write* position (`pg_current_wal_lsn()`),
/// and an asynchronous commit made just before the move blocks writes may still sit beyond that
/// position in WAL buffers: the write was acknowledged, is never replicated, and goes with the
/// old shard (Citus 13.2.2; reproduced in `citus_a_write_just_before_a_logical_move_blocks_writes`).
/// A worker that cannot be asked counts as asynchronous.
#[tracing::instrument(skip_all, err)]
pub async fn move_mode(client: &impl GenericClient) -> Result<MoveMode, DbError> {
    let rows = client
        .query(
            "select nodename || ':' || nodeport, success, result \
               from run_command_on_workers($$show synchronous_commit$$) order by 1",
            &[],
        )
        .await?;
    let mut asynchronous = Vec::new();
    for row in &rows {
        let node: String = row.try_get(0)?;
        let success: bool = row.try_get(1)?;
        let result: String = row.try_get(2)?;
        if !success || result == "off" {
            asynchronous.push(node);
        }
    }
    Ok(if asynchronous.is_empty() {
        MoveMode::Logical
    } else {
        MoveMode::BlockWrites {
            reason: format!(
                "synchronous_commit is off (or unknown) on {}: a logical-replication move could \
                 lose writes committed just before its switch-over",
                asynchronous.join(", ")
            ),
        }
    })
}

/// Detects the topology: Citus when the citus extension is installed in the database.
/// `CLUSTER=citus` ([`ClusterSetting::Citus`]) turns a plain server into an error.
#[tracing::instrument(skip_all, err)]
pub async fn detect(
    client: &impl GenericClient,
    setting: ClusterSetting,
) -> Result<Topology, ClusterError> {
    let citus: bool = client
        .query_one(HAS_CITUS, &[])
        .await
        .map_err(DbError::from)?
        .try_get(0)
        .map_err(DbError::from)?;
    match (citus, setting) {
        (true, _) => Ok(Topology::Citus),
        (false, ClusterSetting::Citus) => Err(ClusterError::NotCitus),
        (false, ClusterSetting::Detect) => Ok(Topology::Single),
    }
}

/// One node of a Citus cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub host: String,
    pub port: i32,
    /// `coordinator` or `worker`.
    pub role: String,
    /// Tenant schemas placed on the node.
    pub tenants: i64,
    /// Bytes of the tenant schemas placed on the node.
    pub bytes: i64,
}

impl Node {
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// The active primary nodes with their tenant counts and sizes (from [`placements`]).
#[tracing::instrument(skip_all, err)]
pub async fn nodes(client: &impl GenericClient) -> Result<Vec<Node>, DbError> {
    let rows = client
        .query(
            "select nodename, nodeport, \
                    case when groupid = 0 then 'coordinator' else 'worker' end \
             from pg_dist_node where isactive and noderole = 'primary' order by groupid",
            &[],
        )
        .await?;
    let mut nodes = rows
        .iter()
        .map(|r| {
            Ok(Node {
                host: r.try_get(0)?,
                port: r.try_get(1)?,
                role: r.try_get(2)?,
                tenants: 0,
                bytes: 0,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
    for placement in placements(client).await? {
        if let Some(node) = nodes.iter_mut().find(|n| n.address() == placement.node) {
            node.tenants += 1;
            node.bytes += placement.bytes;
        }
    }
    Ok(nodes)
}

/// Where one tenant schema lives: `host:port` of its node, and its size in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub schema: String,
    pub node: String,
    pub bytes: i64,
}

/// The node of every distributed tenant schema (schemas without tables have no node yet).
#[tracing::instrument(skip_all, err)]
pub async fn placements(client: &impl GenericClient) -> Result<Vec<Placement>, DbError> {
    let rows = client
        .query(
            "select n.nspname::text, nd.nodename || ':' || nd.nodeport, \
                    coalesce(sum(css.size), 0)::int8 \
             from pg_dist_schema ts \
             join pg_namespace n on n.oid = ts.schemaid \
             join pg_dist_partition pa on pa.colocationid = ts.colocationid \
             join pg_dist_shard sh on sh.logicalrelid = pa.logicalrelid \
             join pg_dist_placement pl on pl.shardid = sh.shardid \
             join pg_dist_node nd on nd.groupid = pl.groupid and nd.noderole = 'primary' \
             left join citus_shard_sizes() css on css.shard_id = sh.shardid \
             group by 1, 2 order by 1",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Placement {
                schema: r.try_get(0)?,
                node: r.try_get(1)?,
                bytes: r.try_get(2)?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(Into::into)
}
