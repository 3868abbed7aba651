//! `tenantctl`: the operator command. `migrate-schemas` brings public and every tenant schema to
//! head; `tenant …` creates, lists, suspends, activates, restores (an owner's deletion), drops
//! and seeds tenants (`seed`); `user …` deactivates and re-activates accounts; `domain …` manages
//! tenants' domains; `jobs …` the periodic jobs' runs.

mod cluster;
mod domain;
mod jobs;
mod seed;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;
use tenantry_public::cluster::{self as cluster_topology, ClusterSetting};
use tenantry_public::companies::{self, CompanyStatus};
use tenantry_public::db::{Db, PoolSettings};
use tenantry_public::migrate::public_status;
use tenantry_public::names::display_name;
use tenantry_public::plans::PlanCode;
use tenantry_public::{sessions, users};
use tenantry_public::{DomainName, Email, Origin, Password, Slug};
use tenantry_tenant::members;
use tenantry_tenant::migrate::{migrate_schemas, MigrateOptions, Outcome, SchemaReport};
use tenantry_tenant::organization;
use tenantry_tenant::provision::{drop_tenant, provision, NewTenant, Owner, ProvisionError};
use tenantry_tenant::TenantConn;

#[derive(Parser)]
#[command(
    name = "tenantctl",
    version,
    about = "Operate Tenantry: migrations and tenants"
)]
struct Cli {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// `citus` refuses to run unless DATABASE_URL is a Citus coordinator; unset detects it.
    #[arg(long, env = "CLUSTER", default_value = "", hide_default_value = true,
          value_parser = |v: &str| ClusterSetting::parse(v))]
    cluster: ClusterSetting,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Migrate the public schema, then every tenant schema, in parallel.
    MigrateSchemas(MigrateArgs),
    /// Create, list, suspend, activate, restore, drop or seed tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Deactivate or re-activate an account (in every organization).
    #[command(subcommand)]
    User(UserCommand),
    /// The periodic jobs' runs: list, run one now, failed runs, retry.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// A tenant's domains: list, add, remove, make primary. Changes are routed at once and
    /// audited in the tenant's trail.
    ///
    /// Exit status 3: the name is refused (the base domain, or a name under it that is not the
    /// tenant's own `<slug>.BASE_DOMAIN`); 4: another tenant has the domain; 1: anything else.
    #[command(subcommand)]
    Domain(domain::DomainCommand),
    /// A Citus cluster's nodes and rebalancing (README, "Running on Citus").
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
}

#[derive(Subcommand)]
enum UserCommand {
    /// Deactivate an account: its sessions end, its refresh tokens and the API keys it created stop
    /// working at once, and it cannot log in. Access tokens already issued expire within 15 min.
    /// In every organization it is a member of, its open tasks are unassigned (audited there as
    /// `task.unassigned`, user agent `tenantctl/<version> user deactivate`).
    Deactivate { email: String },
    /// Re-activate a deactivated account.
    Activate { email: String },
}

#[derive(Args)]
struct MigrateArgs {
    /// Schemas migrated at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    jobs: u16,
    /// Only this tenant (public is still migrated first).
    #[arg(long)]
    tenant: Option<String>,
    /// Change nothing; exit non-zero naming every schema behind head or missing.
    #[arg(long)]
    check: bool,
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant with its schema, domain and owner.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        slug: String,
        #[arg(long)]
        owner_email: String,
        #[arg(long, env = "TENANTCTL_OWNER_PASSWORD", hide_env_values = true)]
        owner_password: String,
        #[arg(long, default_value = "")]
        owner_full_name: String,
        #[arg(long, default_value = "free")]
        plan: String,
        /// Base domain for the tenant's primary domain.
        #[arg(long, env = "BASE_DOMAIN", default_value = "localhost")]
        base_domain: String,
        /// Succeed without changes when the slug already exists.
        #[arg(long)]
        exists_ok: bool,
    },
    /// List tenants.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Move a tenant to another node of a Citus cluster (citus_schema_move; reads go on, writes wait).
    Move {
        slug: String,
        /// The node, as `tenantctl cluster nodes` lists it.
        #[arg(long, value_name = "HOST:PORT")]
        to: String,
    },
    /// Suspend a tenant: its hosts answer 403.
    Suspend { slug: String },
    /// Re-activate a suspended tenant (not one its owner deleted: that is `restore`).
    Activate { slug: String },
    /// Undo an owner's deletion within its grace period: the tenant is active again and will
    /// not be dropped; audited in its trail (`organization.restored`, user agent
    /// `tenantctl/<version> tenant restore`) and its owner emailed.
    Restore { slug: String },
    /// Drop a tenant's schema and every row of it. Irreversible.
    Drop {
        slug: String,
        /// Confirm.
        #[arg(long)]
        yes: bool,
    },
    /// Fill a tenant with demo data: members, projects with teams, tasks and notes.
    ///
    /// Deterministic for the same arguments (dates are relative to today). Re-running skips
    /// members that exist and adds projects again (none with --if-empty).
    Seed(seed::SeedArgs),
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let _ = dotenvy::dotenv();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tenantctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let jobs = match &cli.command {
        Command::MigrateSchemas(a) => usize::from(a.jobs),
        Command::Tenant(_)
        | Command::User(_)
        | Command::Jobs(_)
        | Command::Domain(_)
        | Command::Cluster(_) => 1,
    };
    let db = Db::connect(
        &cli.database_url,
        &PoolSettings {
            max_size: jobs + 1,
            wait_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
        },
    )?;
    match cli.command {
        Command::MigrateSchemas(args) => migrate(&db, args).await,
        Command::Tenant(cmd) => {
            require_public_at_head(&db).await?;
            tenant(&db, cli.cluster, cmd).await
        }
        Command::Cluster(cmd) => {
            require_public_at_head(&db).await?;
            cluster::run(&db, cli.cluster, cmd).await
        }
        Command::User(cmd) => {
            require_public_at_head(&db).await?;
            user(&db, cmd).await
        }
        Command::Jobs(cmd) => {
            require_public_at_head(&db).await?;
            jobs::run(&db, cmd).await
        }
        Command::Domain(cmd) => {
            require_public_at_head(&db).await?;
            domain::run(&db, cmd).await
        }
    }
}

async fn require_public_at_head(db: &Db) -> anyhow::Result<()> {
    let client = db
        .public()
        .await
        .context("cannot connect to DATABASE_URL")?;
    let status = public_status(&client).await?;
    if !status.is_current() {
        bail!("the public schema is behind head: run `tenantctl migrate-schemas` first");
    }
    Ok(())
}

async fn migrate(db: &Db, args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let tenant = args
        .tenant
        .as_deref()
        .map(|s| Slug::parse(s).map_err(|e| anyhow::anyhow!("--tenant {s:?} {e}")))
        .transpose()?;
    let options = MigrateOptions {
        jobs: usize::from(args.jobs),
        tenant,
        check: args.check,
    };
    let tty = std::io::stderr().is_terminal();
    let bar = ProgressBar::hidden();
    if tty {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
    }
    let progress = |report: &SchemaReport, total: usize| {
        bar.set_length(total as u64);
        bar.inc(1);
        let line = describe(report);
        // On a TTY only problems get their own line; elsewhere every schema does.
        let problem = matches!(
            report.outcome,
            Outcome::Failed { .. }
                | Outcome::Behind { .. }
                | Outcome::Missing
                | Outcome::NotDistributed
        );
        if !tty {
            // A hidden progress bar drops what it is asked to print: off a terminal, every
            // schema's line goes straight to stdout.
            println!("{line}");
        } else if problem {
            bar.println(line);
        } else {
            bar.set_message(report.name.clone());
        }
    };
    let summary = migrate_schemas(db, &options, &progress)
        .await
        .context("migrate-schemas")?;
    bar.finish_and_clear();
    let verb = if args.check {
        "behind, missing or not distributed"
    } else {
        "failed"
    };
    println!(
        "summary: {} schemas (public + {} tenants): migrated {}, up to date {}, {}{} {}; {:.3}s",
        summary.tenants + 1,
        summary.tenants,
        summary.migrated,
        summary.up_to_date,
        // Citus only, and only when this run distributed something (a database that got the
        // citus extension after its tenants were created).
        if summary.distributed > 0 {
            format!("distributed {}, ", summary.distributed)
        } else {
            String::new()
        },
        if args.check {
            summary.behind
        } else {
            summary.failed
        },
        verb,
        summary.duration.as_secs_f64()
    );
    if summary.ok() {
        Ok(ExitCode::SUCCESS)
    } else {
        let names: Vec<&str> = summary
            .reports
            .iter()
            .filter(|r| {
                matches!(
                    r.outcome,
                    Outcome::Failed { .. }
                        | Outcome::Behind { .. }
                        | Outcome::Missing
                        | Outcome::NotDistributed
                )
            })
            .map(|r| r.name.as_str())
            .collect();
        eprintln!("tenantctl: {verb}: {}", names.join(", "));
        Ok(ExitCode::FAILURE)
    }
}

fn describe(r: &SchemaReport) -> String {
    let ms = r.duration.as_secs_f64() * 1000.0;
    match &r.outcome {
        Outcome::Migrated {
            from,
            to,
            applied,
            distributed,
        } => format!(
            "{:<24} migrated {} -> {} (applied {:?}){} in {ms:.1} ms",
            r.name,
            from.map_or("none".into(), |v| v.to_string()),
            to,
            applied,
            if *distributed { " and distributed" } else { "" }
        ),
        Outcome::Distributed if r.name == "public" => format!(
            "{:<24} distributed (public.users made a reference table) in {ms:.1} ms",
            r.name
        ),
        Outcome::Distributed => format!(
            "{:<24} distributed ({} is now a distributed schema) in {ms:.1} ms",
            r.name, r.schema
        ),
        Outcome::NotDistributed => format!(
            "{:<24} NOT DISTRIBUTED (created before Citus; migrate-schemas distributes it)",
            r.name
        ),
        Outcome::UpToDate => format!("{:<24} up to date", r.name),
        Outcome::Behind { version } => format!(
            "{:<24} BEHIND (at {})",
            r.name,
            version.map_or("none".into(), |v| v.to_string())
        ),
        Outcome::Missing => format!("{:<24} MISSING schema {}", r.name, r.schema),
        Outcome::Failed { error } => format!("{:<24} FAILED: {error}", r.name),
        Outcome::Dropped => format!("{:<24} dropped during the run; skipped", r.name),
    }
}

#[derive(Serialize)]
struct TenantRow {
    slug: String,
    name: String,
    schema: String,
    plan: String,
    status: String,
    /// When the worker drops a tenant its owner deleted (RFC 3339); null otherwise.
    drop_after: Option<String>,
    schema_version: Option<i32>,
    created_at: String,
    /// The node (`host:port`) on a Citus cluster; absent on a single server.
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<String>,
}

async fn tenant(db: &Db, setting: ClusterSetting, cmd: TenantCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TenantCommand::Create {
            name,
            slug,
            owner_email,
            owner_password,
            owner_full_name,
            plan,
            base_domain,
            exists_ok,
        } => {
            let new = NewTenant {
                name: display_name(&name, 200).map_err(|e| anyhow::anyhow!("--name {e}"))?,
                slug: Slug::parse(&slug).map_err(|e| anyhow::anyhow!("--slug {slug:?} {e}"))?,
                plan: PlanCode::parse(&plan).map_err(|e| anyhow::anyhow!("--plan {e}"))?,
                // An operator's company is simply active on its plan (no trial).
                trial_from: None,
                owner: Owner::New {
                    email: Email::parse(&owner_email)
                        .map_err(|e| anyhow::anyhow!("--owner-email {e}"))?,
                    password: Password::parse(&owner_password)
                        .map_err(|e| anyhow::anyhow!("--owner-password {e}"))?,
                    full_name: owner_full_name.trim().to_owned(),
                },
            };
            let base = DomainName::parse(&base_domain)
                .map_err(|e| anyhow::anyhow!("BASE_DOMAIN {base_domain:?} {e}"))?;
            match provision(db, &base, new).await {
                Ok(done) => {
                    println!(
                        "created {} ({}) at {} with owner {}",
                        done.company.slug, done.company.name, done.domain, done.owner.email
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(ProvisionError::SlugTaken) if exists_ok => {
                    println!("{slug} already exists; unchanged");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Err(anyhow::Error::new(e).context(format!("creating {slug}"))),
            }
        }
        TenantCommand::List { json } => {
            let client = db.public().await?;
            let citus = cluster_topology::detect(client.client(), setting)
                .await?
                .is_citus();
            let placements = if citus {
                cluster_topology::placements(client.client()).await?
            } else {
                Vec::new()
            };
            let node_of = |schema: &str| {
                citus.then(|| {
                    placements
                        .iter()
                        .find(|p| p.schema == schema)
                        .map_or_else(|| "-".to_owned(), |p| p.node.clone())
                })
            };
            let rows: Vec<TenantRow> = companies::list(client.client())
                .await?
                .into_iter()
                .map(|c| TenantRow {
                    slug: c.slug.to_string(),
                    name: c.name,
                    schema: c.schema_name.to_string(),
                    plan: c.plan,
                    status: c.status.as_str().to_owned(),
                    drop_after: c.deletion.map(|d| d.drop_after.to_rfc3339()),
                    schema_version: c.schema_version,
                    created_at: c.created_at.to_rfc3339(),
                    node: node_of(c.schema_name.as_str()),
                })
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                // The NODE column only on a Citus cluster.
                let node = |n: &str| {
                    if citus {
                        format!("{n:<22} ")
                    } else {
                        String::new()
                    }
                };
                println!(
                    "{:<24} {:<28} {:<12} {:>7}  {:<28} {}NAME",
                    "SLUG",
                    "STATUS",
                    "PLAN",
                    "VERSION",
                    "SCHEMA",
                    node("NODE")
                );
                for r in &rows {
                    let status = match &r.drop_after {
                        Some(at) => format!("{} (drops {})", r.status, &at[..10]),
                        None => r.status.clone(),
                    };
                    println!(
                        "{:<24} {:<28} {:<12} {:>7}  {:<28} {}{}",
                        r.slug,
                        status,
                        r.plan,
                        r.schema_version.map_or("-".into(), |v| v.to_string()),
                        r.schema,
                        node(r.node.as_deref().unwrap_or("-")),
                        r.name
                    );
                }
                println!("{} tenants", rows.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        TenantCommand::Move { slug, to } => cluster::move_tenant(db, setting, &slug, &to).await,
        TenantCommand::Suspend { slug } => set_status(db, &slug, CompanyStatus::Suspended).await,
        TenantCommand::Activate { slug } => set_status(db, &slug, CompanyStatus::Active).await,
        TenantCommand::Restore { slug } => {
            let slug = Slug::parse(&slug).map_err(|e| anyhow::anyhow!("{slug:?} {e}"))?;
            let origin = Origin::command(&format!(
                "tenantctl/{} tenant restore",
                env!("CARGO_PKG_VERSION")
            ));
            let restored = organization::restore(db, &slug, &origin, chrono::Utc::now()).await?;
            println!(
                "{slug} is active again; its deletion is cancelled and its owner will be emailed"
            );
            debug_assert!(restored.deletion.is_none());
            Ok(ExitCode::SUCCESS)
        }
        TenantCommand::Drop { slug, yes } => {
            let slug = Slug::parse(&slug).map_err(|e| anyhow::anyhow!("{slug:?} {e}"))?;
            if !yes {
                bail!("dropping {slug} deletes its schema and all its data: pass --yes to confirm");
            }
            if drop_tenant(db, &slug).await? {
                println!("dropped {slug}");
                Ok(ExitCode::SUCCESS)
            } else {
                bail!("no tenant has the slug {slug}")
            }
        }
        TenantCommand::Seed(args) => seed::seed(db, args).await,
    }
}

async fn set_status(db: &Db, slug: &str, status: CompanyStatus) -> anyhow::Result<ExitCode> {
    let slug = Slug::parse(slug).map_err(|e| anyhow::anyhow!("{slug:?} {e}"))?;
    let client = db.public().await?;
    if status == CompanyStatus::Active {
        let pending = companies::find_by_slug(client.client(), &slug)
            .await?
            .and_then(|c| c.deletion);
        if let Some(d) = pending {
            bail!(
                "{slug} was deleted by its owner and is dropped after {}; use `tenantctl tenant \
                 restore {slug}` to cancel the deletion",
                d.drop_after.to_rfc3339()
            );
        }
    }
    if companies::set_status(client.client(), &slug, status).await? {
        println!("{slug} is now {}", status.as_str());
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("no tenant has the slug {slug}")
    }
}

async fn user(db: &Db, cmd: UserCommand) -> anyhow::Result<ExitCode> {
    let (email, active) = match cmd {
        UserCommand::Deactivate { email } => (email, false),
        UserCommand::Activate { email } => (email, true),
    };
    let mut client = db.public().await?;
    let tx = client.transaction().await?;
    let Some(id) = users::set_active_by_email(&*tx, email.trim(), active).await? else {
        bail!("no account has the email {email}");
    };
    let ended = if active {
        0
    } else {
        sessions::revoke_all(&*tx, id, None, "account deactivated").await?
    };
    tx.commit().await?;
    if active {
        println!("{email} is active again");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{email} is deactivated; {ended} session(s) ended");
    // Then, in each organization, in its own schema and trail: the account is inactive from
    // here on, so no new assignment can follow these.
    let companies = companies::of_member(client.client(), id).await?;
    drop(client);
    let origin = Origin::command(&format!(
        "tenantctl/{} user deactivate",
        env!("CARGO_PKG_VERSION")
    ));
    let mut failed = Vec::new();
    for company in &companies {
        let unassigned = async {
            let mut conn = TenantConn::acquire(db, &company.schema_name).await?;
            members::unassign_deactivated_account(&mut conn, company.id, id, &origin).await
        };
        match unassigned.await {
            Ok(n) => println!("{}: {n} open task(s) unassigned", company.slug),
            Err(e) => {
                eprintln!(
                    "tenantctl: {}: unassigning open tasks failed: {e}",
                    company.slug
                );
                failed.push(company.slug.to_string());
            }
        }
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        bail!(
            "the account is deactivated, but its open tasks are still assigned in {}; run the \
             command again to finish",
            failed.join(", ")
        )
    }
}
