//! `tenantctl cluster …` and `tenantctl tenant move`: where tenants live on a Citus cluster and
//! moving them between nodes (README, "Running on Citus"). Each tenant schema is a distributed
//! schema that lives whole on one node; moving it is Citus's `citus_schema_move` with logical
//! replication: reads and writes go on during the copy, writes wait only for the switch-over. Where
//! a worker commits asynchronously (`synchronous_commit = off`), moves block the tenant's writes
//! for the whole copy instead, as such a logical move can lose acknowledged writes
//! ([`cluster::move_mode`]; ARCHITECTURE, "Cluster topology (Citus)").

use anyhow::{bail, Context};
use clap::Subcommand;
use serde::Serialize;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tenantry_public::cluster::{self, ClusterSetting, Topology};
use tenantry_public::companies;
use tenantry_public::db::Db;
use tenantry_public::Slug;

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// The cluster's nodes with their tenant counts and sizes.
    Nodes {
        #[arg(long)]
        json: bool,
    },
    /// Even out tenants across the workers (Citus's rebalancer; each tenant schema moves whole).
    Rebalance {
        /// Print the moves it would make and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// The topology, or an error saying that the command needs Citus.
pub async fn require_citus(db: &Db, setting: ClusterSetting) -> anyhow::Result<()> {
    let client = db.public().await?;
    match cluster::detect(client.client(), setting).await? {
        Topology::Citus => Ok(()),
        Topology::Single => bail!(
            "this command needs a Citus cluster, and DATABASE_URL's database has no citus \
             extension (README, \"Running on Citus\")"
        ),
    }
}

fn size(bytes: i64) -> String {
    const UNITS: [&str; 4] = ["B", "kB", "MB", "GB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[derive(Serialize)]
struct NodeRow {
    node: String,
    role: String,
    tenants: i64,
    bytes: i64,
}

pub async fn run(
    db: &Db,
    setting: ClusterSetting,
    cmd: ClusterCommand,
) -> anyhow::Result<ExitCode> {
    require_citus(db, setting).await?;
    match cmd {
        ClusterCommand::Nodes { json } => {
            let client = db.public().await?;
            let nodes = cluster::nodes(client.client()).await?;
            let rows: Vec<NodeRow> = nodes
                .iter()
                .map(|n| NodeRow {
                    node: n.address(),
                    role: n.role.clone(),
                    tenants: n.tenants,
                    bytes: n.bytes,
                })
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<28} {:<12} {:>8} {:>10}",
                    "NODE", "ROLE", "TENANTS", "SIZE"
                );
                for r in &rows {
                    println!(
                        "{:<28} {:<12} {:>8} {:>10}",
                        r.node,
                        r.role,
                        r.tenants,
                        size(r.bytes)
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Rebalance { dry_run } => rebalance(db, dry_run).await,
    }
}

/// One schema move of a rebalance plan.
struct PlannedMove {
    schema: String,
    from: String,
    to: String,
}

/// The rebalancer's plan, one line per tenant schema (Citus lists every shard of the schema's
/// colocation group; they move together).
async fn plan(db: &Db) -> anyhow::Result<Vec<PlannedMove>> {
    let client = db.public().await?;
    let rows = client
        .query(
            "select distinct n.nspname::text, p.sourcename || ':' || p.sourceport, \
                    p.targetname || ':' || p.targetport \
             from get_rebalance_table_shards_plan() p \
             join pg_class c on c.oid = p.table_name \
             join pg_namespace n on n.oid = c.relnamespace \
             order by 1",
            &[],
        )
        .await
        .context("get_rebalance_table_shards_plan")?;
    rows.iter()
        .map(|r| {
            Ok(PlannedMove {
                schema: r.try_get(0)?,
                from: r.try_get(1)?,
                to: r.try_get(2)?,
            })
        })
        .collect()
}

async fn rebalance(db: &Db, dry_run: bool) -> anyhow::Result<ExitCode> {
    let moves = plan(db).await?;
    if moves.is_empty() {
        println!("balanced: no moves needed");
        return Ok(ExitCode::SUCCESS);
    }
    for m in &moves {
        println!("{} {} -> {}", m.schema, m.from, m.to);
    }
    if dry_run {
        println!("{} moves planned (dry run: nothing moved)", moves.len());
        return Ok(ExitCode::SUCCESS);
    }
    let started = Instant::now();
    let client = db.public().await?;
    // The rebalancer runs the moves of the plan above, each as `tenant move` does.
    let mode = cluster::move_mode(client.client()).await?;
    announce(&mode);
    client
        .execute(
            "select rebalance_table_shards(shard_transfer_mode => $1::text::citus.shard_transfer_mode)",
            &[&mode.transfer_mode()],
        )
        .await
        .context("rebalance_table_shards")?;
    println!(
        "rebalanced: {} moves in {:.1}s",
        moves.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// Says how the tenants will move, and why not online where it is not.
fn announce(mode: &cluster::MoveMode) {
    match mode {
        cluster::MoveMode::Logical => {
            println!("online move (logical replication): writes wait only for the switch-over");
        }
        cluster::MoveMode::BlockWrites { reason } => {
            println!("blocking writes during the copy (block_writes): {reason}");
        }
    }
}

/// `tenantctl tenant move SLUG --to HOST:PORT`.
pub async fn move_tenant(
    db: &Db,
    setting: ClusterSetting,
    slug: &str,
    to: &str,
) -> anyhow::Result<ExitCode> {
    require_citus(db, setting).await?;
    let slug = Slug::parse(slug).map_err(|e| anyhow::anyhow!("{slug:?} {e}"))?;
    let (host, port) = to
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_owned(), p.parse::<i32>().ok()?)))
        .with_context(|| format!("--to {to:?} must be HOST:PORT of a cluster node"))?;
    let client = db.public().await?;
    let company = companies::find_by_slug(client.client(), &slug)
        .await?
        .with_context(|| format!("no tenant has the slug {slug}"))?;
    let schema = company.schema_name;
    let nodes = cluster::nodes(client.client()).await?;
    if !nodes.iter().any(|n| n.host == host && n.port == port) {
        let known: Vec<String> = nodes.iter().map(|n| n.address()).collect();
        bail!(
            "{to} is not a node of this cluster (nodes: {})",
            known.join(", ")
        );
    }
    let from = cluster::placements(client.client())
        .await?
        .into_iter()
        .find(|p| p.schema == schema.as_str());
    let Some(from) = from else {
        bail!(
            "{slug}'s schema {schema} is not a distributed schema yet (created before Citus was \
             installed): `tenantctl migrate-schemas` distributes it"
        );
    };
    if from.node == format!("{host}:{port}") {
        println!("{slug} is already on {to}; nothing to move");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "moving {slug} ({schema}, {}) from {} to {to}",
        size(from.bytes),
        from.node
    );
    let mode = cluster::move_mode(client.client()).await?;
    announce(&mode);

    // Progress from a second connection while the move runs on the first.
    let started = Instant::now();
    let watcher = {
        let db = db.clone();
        tokio::spawn(async move {
            let Ok(client) = db.public().await else {
                return;
            };
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let copied: Option<i64> = client
                    .query_opt(
                        "select sum(target_shard_size)::int8 from get_rebalance_progress()",
                        &[],
                    )
                    .await
                    .ok()
                    .flatten()
                    .and_then(|r| r.try_get(0).ok());
                match copied {
                    Some(bytes) => eprintln!(
                        "  {:>6.1}s  copied {} of {}",
                        started.elapsed().as_secs_f64(),
                        size(bytes),
                        size(from.bytes)
                    ),
                    None => eprintln!("  {:>6.1}s  moving…", started.elapsed().as_secs_f64()),
                }
            }
        })
    };
    let moved = client
        .execute(
            "select citus_schema_move($1::text::regnamespace, $2, $3, \
             shard_transfer_mode => $4::text::citus.shard_transfer_mode)",
            &[&schema.as_str(), &host, &port, &mode.transfer_mode()],
        )
        .await;
    watcher.abort();
    moved.with_context(|| format!("citus_schema_move {schema} to {to}"))?;
    println!(
        "moved {slug} to {to} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
