//! `tenantctl domain …`: a tenant's domains. Adding, removing and making primary are audited
//! in the tenant's trail (actor: system, user agent `tenantctl/<version> domain <verb>`), and
//! routed at once (the domains table notifies every server's routing listener).

use anyhow::bail;
use clap::Subcommand;
use serde::Serialize;
use std::process::ExitCode;
use tenantry_public::companies::{self, Company};
use tenantry_public::db::Db;
use tenantry_public::domains::{self, DomainError};
use tenantry_public::{DomainName, Origin, Slug};
use tenantry_tenant::domains::{self as changes, Changed};

#[derive(Subcommand)]
pub enum DomainCommand {
    /// A tenant's domains, the primary one first.
    List {
        slug: String,
        #[arg(long)]
        json: bool,
    },
    /// Route another domain to a tenant. Point its DNS at the servers first; the primary domain
    /// (the one links in emails open) stays as it is.
    Add {
        slug: String,
        domain: String,
        /// The base domain, under which only the tenant's own `<slug>.BASE_DOMAIN` may be used.
        #[arg(long, env = "BASE_DOMAIN", default_value = "localhost")]
        base_domain: String,
    },
    /// Stop routing a domain to a tenant. The primary domain cannot be removed: make another one
    /// primary first. `<slug>.BASE_DOMAIN` always routes by the slug, listed or not.
    Remove { slug: String, domain: String },
    /// Make one of a tenant's domains its primary domain: links in its emails open it.
    Primary { slug: String, domain: String },
}

/// Exit status when the name is refused (the HTTP API's 422).
const REFUSED: u8 = 3;
/// Exit status when another tenant has the domain (the HTTP API's 409).
const TAKEN: u8 = 4;

#[derive(Serialize)]
struct DomainRow {
    domain: String,
    is_primary: bool,
    created_at: String,
}

pub async fn run(db: &Db, cmd: DomainCommand) -> anyhow::Result<ExitCode> {
    let verb = match &cmd {
        DomainCommand::List { .. } => "list",
        DomainCommand::Add { .. } => "add",
        DomainCommand::Remove { .. } => "remove",
        DomainCommand::Primary { .. } => "primary",
    };
    let origin = Origin::command(&format!(
        "tenantctl/{} domain {verb}",
        env!("CARGO_PKG_VERSION")
    ));
    let changed = match cmd {
        DomainCommand::List { slug, json } => return list(db, &slug, json).await,
        DomainCommand::Add {
            slug,
            domain,
            base_domain,
        } => {
            let base = DomainName::parse(&base_domain)
                .map_err(|e| anyhow::anyhow!("BASE_DOMAIN {base_domain:?} {e}"))?;
            let (company, name) = target(db, &slug, &domain).await?;
            changes::add(db, &company, &base, &name, &origin)
                .await
                .map(|c| (company, name, c))
        }
        DomainCommand::Remove { slug, domain } => {
            let (company, name) = target(db, &slug, &domain).await?;
            changes::remove(db, &company, &name, &origin)
                .await
                .map(|c| (company, name, c))
        }
        DomainCommand::Primary { slug, domain } => {
            let (company, name) = target(db, &slug, &domain).await?;
            changes::make_primary(db, &company, &name, &origin)
                .await
                .map(|c| (company, name, c))
        }
    };
    let (company, name, changed) = match changed {
        Ok(done) => done,
        Err(e @ DomainError::Reserved(_)) => return refused(REFUSED, &e),
        Err(e @ DomainError::TakenByOther) => return refused(TAKEN, &e),
        Err(e @ (DomainError::NotFound | DomainError::Primary)) => bail!("{e}"),
        Err(DomainError::Db(e)) => return Err(e.into()),
    };
    let slug = &company.slug;
    match changed {
        Changed::Added(_) => println!("{name} now routes to {slug}"),
        Changed::AlreadyThere => println!("{name} already routes to {slug}; unchanged"),
        Changed::Removed(_) => println!("{name} no longer routes to {slug}"),
        Changed::MadePrimary { previous } => match previous {
            Some(p) => println!("{name} is now {slug}'s primary domain (was {})", p.domain),
            None => println!("{name} is now {slug}'s primary domain"),
        },
        Changed::AlreadyPrimary => println!("{name} is already {slug}'s primary domain"),
    }
    Ok(ExitCode::SUCCESS)
}

fn refused(code: u8, e: &DomainError) -> anyhow::Result<ExitCode> {
    eprintln!("tenantctl: {e}");
    Ok(ExitCode::from(code))
}

async fn company(db: &Db, slug: &str) -> anyhow::Result<Company> {
    let slug = Slug::parse(slug).map_err(|e| anyhow::anyhow!("{slug:?} {e}"))?;
    match companies::find_by_slug(db.public().await?.client(), &slug).await? {
        Some(company) => Ok(company),
        None => bail!("no tenant has the slug {slug}"),
    }
}

async fn target(db: &Db, slug: &str, domain: &str) -> anyhow::Result<(Company, DomainName)> {
    let name = DomainName::parse(domain).map_err(|e| anyhow::anyhow!("{domain:?} {e}"))?;
    Ok((company(db, slug).await?, name))
}

async fn list(db: &Db, slug: &str, json: bool) -> anyhow::Result<ExitCode> {
    let company = company(db, slug).await?;
    let rows: Vec<DomainRow> = domains::of_company(db.public().await?.client(), company.id)
        .await?
        .into_iter()
        .map(|d| DomainRow {
            domain: d.domain,
            is_primary: d.is_primary,
            created_at: d.created_at.to_rfc3339(),
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!("{:<48} {:<8} CREATED", "DOMAIN", "PRIMARY");
        for r in &rows {
            let primary = if r.is_primary { "yes" } else { "" };
            println!("{:<48} {:<8} {}", r.domain, primary, r.created_at);
        }
    }
    Ok(ExitCode::SUCCESS)
}
