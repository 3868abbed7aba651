//! Host → tenant routing: every tenant's hosts in memory, kept current by notifications.
//!
//! Each server holds a route table of every company: its `public.domains` rows and its
//! `<slug>.BASE_DOMAIN` host. It is loaded whole in one query when the server starts (before it
//! accepts a connection) and kept current by [`listen_for_changes`]: every change to
//! `public.companies` or `public.domains` notifies `tenantry_routing` with the id of the company
//! that changed (public migration V13), and the listener reloads that company's routes alone;
//! a plan change, a payload it does not know, every (re)connection of the listener and a timer
//! ([`RouterSettings::ttl`], which bounds how long a change no trigger sees, such as a schema
//! dropped by hand, goes unnoticed) reload the whole table. A tenant's host is therefore never a
//! database lookup, however many tenants there are and however recently the server started.
//!
//! A host the table does not have is looked up in the database, because it may name a tenant
//! another server created a moment ago whose notification has not arrived yet. Those lookups are
//! cached apart ([`RouterSettings::ttl`] for a found tenant, [`RouterSettings::negative_ttl`] for
//! nothing), so a flood of random `*.BASE_DOMAIN` names costs a query each at most once, and they
//! are bounded per second ([`RouterSettings::max_misses_per_sec`]): past the bound an unknown host
//! answers "unavailable" (503 with `Retry-After`) instead of querying, while every tenant in the
//! table goes on being served.

use futures_util::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use moka::future::Cache;
use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};
use tokio_postgres::types::ToSql;
use tokio_postgres::AsyncMessage;

use crate::companies::CompanyStatus;
use crate::db::{Db, DbError};
use crate::ids::CompanyId;
use crate::names::{DomainName, SchemaName, Slug};

/// What a Host names.
#[derive(Debug, Clone)]
pub enum Resolution {
    /// `BASE_DOMAIN` itself: the public API.
    Public,
    /// A tenant, in whatever state it is in; the caller decides whether it may be served.
    Tenant(Arc<TenantRoute>),
    /// Nothing: answer 404 and never fall back to another tenant.
    Unknown,
}

/// Everything needed to serve a tenant request, as read from the public schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRoute {
    pub company_id: CompanyId,
    pub slug: Slug,
    pub schema: SchemaName,
    pub plan: String,
    /// The plan's `requests_per_hour` (`None`: unlimited), for the rate limiter. Plan changes
    /// reload the whole route table, so a route never keeps an old limit for long.
    pub requests_per_hour: Option<i32>,
    pub status: CompanyStatus,
    pub schema_version: Option<i32>,
    pub schema_exists: bool,
}

/// Routing settings.
#[derive(Debug, Clone)]
pub struct RouterSettings {
    /// Hosts found by a database lookup (not yet in the route table), remembered at most this
    /// many.
    pub max_entries: u64,
    /// How long a looked-up host is remembered, and how often the listener reloads the whole
    /// route table.
    pub ttl: Duration,
    /// Hosts that name nothing, remembered apart for `negative_ttl`. A tenant created since is
    /// found at once anyway: its notification puts it in the route table, which is read first.
    pub max_negative_entries: u64,
    pub negative_ttl: Duration,
    /// Lookups of hosts outside the route table per second, across all hosts; `0` is unbounded.
    pub max_misses_per_sec: u32,
}

impl Default for RouterSettings {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            ttl: Duration::from_secs(30),
            max_negative_entries: 10_000,
            negative_ttl: Duration::from_secs(5),
            max_misses_per_sec: 200,
        }
    }
}

/// Counter of Host resolutions answered without a query (the route table, or a cached lookup;
/// the `metrics` facade: the binary that installs a recorder exports it).
pub const CACHE_HITS: &str = "routing_cache_hits_total";
/// Counter of Host resolutions that queried the public schema (including failed queries).
pub const CACHE_MISSES: &str = "routing_cache_misses_total";
/// Gauge: companies in the route table.
pub const TABLE_COMPANIES: &str = "routing_table_companies";

/// Every company's routes, as of the last (re)load.
#[derive(Default)]
struct Table {
    /// `public.domains` rows.
    domains: HashMap<DomainName, Arc<TenantRoute>>,
    /// `<slug>.BASE_DOMAIN` of every company; a `domains` row of the same name wins, as in the
    /// database lookup.
    slug_hosts: HashMap<DomainName, Arc<TenantRoute>>,
}

impl Table {
    fn get(&self, host: &DomainName) -> Option<&Arc<TenantRoute>> {
        self.domains.get(host).or_else(|| self.slug_hosts.get(host))
    }

    fn insert(&mut self, base: &DomainName, loaded: Loaded) {
        let route = Arc::new(loaded.route);
        match DomainName::parse(&format!("{}.{base}", route.slug)) {
            Ok(host) => {
                self.slug_hosts.insert(host, route.clone());
            }
            // A slug is a valid label, so only an over-long name ends here: it has no slug host.
            Err(e) => tracing::warn!(slug = %route.slug, error = %e, "no slug host for a company"),
        }
        for domain in loaded.domains {
            self.domains.insert(domain, route.clone());
        }
    }

    fn remove(&mut self, companies: &HashSet<CompanyId>) {
        self.domains
            .retain(|_, r| !companies.contains(&r.company_id));
        self.slug_hosts
            .retain(|_, r| !companies.contains(&r.company_id));
    }

    fn companies(&self) -> usize {
        self.slug_hosts.len()
    }
}

/// One company's route and its `domains` rows, as loaded.
struct Loaded {
    route: TenantRoute,
    domains: Vec<DomainName>,
}

/// Resolves Hosts: from the route table, else (rarely) from the public schema.
pub struct Router {
    base: DomainName,
    db: Db,
    table: RwLock<Table>,
    /// Held while a reload queries and applies, so reloads apply in the order they read: a
    /// slower, older read never overwrites a newer one.
    reloading: tokio::sync::Mutex<()>,
    /// Bumped by every reload. A lookup that overlapped one may have read the state before it,
    /// so its answer is used once and not remembered.
    generation: AtomicU64,
    ttl: Duration,
    /// Hosts outside the table that a lookup found (a tenant whose notification is on its way).
    cache: Cache<DomainName, Resolution>,
    unknown: Cache<DomainName, ()>,
    misses: Option<DefaultDirectRateLimiter>,
}

/// Why a lookup put nothing in the lookup cache.
enum Miss {
    Unknown,
    /// Found, but a reload ran meanwhile: answer it, remember nothing.
    Overlapped(Resolution),
    Failed(DbError),
}

/// The answer for an unknown host past [`RouterSettings::max_misses_per_sec`].
const TOO_MANY_MISSES: &str = "too many lookups of unknown hosts; retry shortly";

/// Companies with their plan's limit, whether their schema exists and their `domains` rows.
/// Every company is loaded whatever its status: the caller of [`Router::resolve`] decides
/// whether a tenant may be served, and answers a suspended one 403, not 404.
macro_rules! routes_sql {
    () => {
        "select c.id, c.slug, c.schema_name, c.plan, p.requests_per_hour, c.status, \
                c.schema_version, n.oid is not null as schema_exists, \
                array(select d.domain from public.domains d where d.company_id = c.id) as domains \
           from public.companies c \
           join public.plans p on p.code = c.plan \
           left join pg_catalog.pg_namespace n on n.nspname = c.schema_name"
    };
}

/// Every company's routes.
const ROUTES_SQL: &str = routes_sql!();

/// [`ROUTES_SQL`] for some companies.
const ROUTES_OF_SQL: &str = concat!(routes_sql!(), " where c.id = any($1)");

/// One host, for hosts outside the table: its `domains` row first, else the company whose slug
/// is its label.
const RESOLVE_SQL: &str = "\
    select c.id, c.slug, c.schema_name, c.plan, p.requests_per_hour, c.status, c.schema_version, \
           exists (select 1 from pg_catalog.pg_namespace n where n.nspname = c.schema_name) \
             as schema_exists, \
           0 as priority \
      from public.domains d join public.companies c on c.id = d.company_id \
      join public.plans p on p.code = c.plan \
     where d.domain = $1 \
    union all \
    select c.id, c.slug, c.schema_name, c.plan, p.requests_per_hour, c.status, c.schema_version, \
           exists (select 1 from pg_catalog.pg_namespace n where n.nspname = c.schema_name), \
           1 \
      from public.companies c join public.plans p on p.code = c.plan \
     where c.slug = $2 \
    order by priority \
    limit 1";

/// Above this many companies in one burst of notifications the listener reloads everything:
/// one query either way, and removing them one by one costs more than rebuilding.
const MAX_PARTIAL_RELOAD: usize = 1_000;

impl Router {
    /// A router with an empty route table: [`listen_for_changes`] loads it (the server's start-up
    /// waits for that), or every host starts as a lookup.
    pub fn new(base: DomainName, db: Db, settings: &RouterSettings) -> Self {
        let cache = Cache::builder()
            .max_capacity(settings.max_entries)
            .time_to_live(settings.ttl)
            .build();
        let unknown = Cache::builder()
            .max_capacity(settings.max_negative_entries)
            .time_to_live(settings.negative_ttl)
            .build();
        let misses = NonZeroU32::new(settings.max_misses_per_sec)
            .map(|n| RateLimiter::direct(Quota::per_second(n)));
        Self {
            base,
            db,
            table: RwLock::new(Table::default()),
            reloading: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
            ttl: settings.ttl,
            cache,
            unknown,
            misses,
        }
    }

    pub fn base_domain(&self) -> &DomainName {
        &self.base
    }

    /// Resolves a normalised host. Concurrent lookups of one host share a single query.
    ///
    /// Counts [`CACHE_HITS`] (answered from the table or a cached lookup) or [`CACHE_MISSES`]
    /// (anything else, callers waiting on another's lookup included); the base domain is
    /// neither.
    pub async fn resolve(&self, host: &DomainName) -> Result<Resolution, DbError> {
        if *host == self.base {
            return Ok(Resolution::Public);
        }
        if let Some(route) = self.routed(host) {
            metrics::counter!(CACHE_HITS).increment(1);
            return Ok(Resolution::Tenant(route));
        }
        if let Some(found) = self.cache.get(host).await {
            metrics::counter!(CACHE_HITS).increment(1);
            return Ok(found);
        }
        if self.unknown.contains_key(host) {
            metrics::counter!(CACHE_HITS).increment(1);
            return Ok(Resolution::Unknown);
        }
        // Counted once per request that found nothing (waiters on a shared lookup too).
        metrics::counter!(CACHE_MISSES).increment(1);
        // An unknown host comes back as an error so the lookup cache never holds it; it is
        // remembered in its own cache instead.
        let load = async {
            let generation = self.generation.load(Ordering::Acquire);
            match self.load(host).await {
                Ok(Resolution::Unknown) => Err(Miss::Unknown),
                Ok(found) if self.generation.load(Ordering::Acquire) != generation => {
                    Err(Miss::Overlapped(found))
                }
                Ok(found) => Ok(found),
                Err(e) => Err(Miss::Failed(e)),
            }
        };
        match self.cache.try_get_with_by_ref(host, load).await {
            Ok(found) => Ok(found),
            Err(miss) => match &*miss {
                Miss::Unknown => {
                    self.unknown.insert(host.clone(), ()).await;
                    Ok(Resolution::Unknown)
                }
                // The reload that overlapped may have put the host in the table since.
                Miss::Overlapped(found) => Ok(self
                    .routed(host)
                    .map_or_else(|| found.clone(), Resolution::Tenant)),
                Miss::Failed(e @ DbError::Query(_)) => Err(DbError::Unavailable(e.to_string())),
                Miss::Failed(DbError::Unavailable(m)) => Err(DbError::Unavailable(m.clone())),
                Miss::Failed(DbError::Config(m)) => Err(DbError::Config(m.clone())),
                Miss::Failed(DbError::Corrupt(m)) => Err(DbError::Corrupt(m.clone())),
            },
        }
    }

    /// The host's route in the table.
    fn routed(&self, host: &DomainName) -> Option<Arc<TenantRoute>> {
        self.table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(host)
            .cloned()
    }

    /// Looks `host` up in the database, within the miss budget.
    async fn load(&self, host: &DomainName) -> Result<Resolution, DbError> {
        if let Some(misses) = &self.misses {
            if misses.check().is_err() {
                return Err(DbError::Unavailable(TOO_MANY_MISSES.into()));
            }
        }
        self.query(host).await
    }

    async fn query(&self, host: &DomainName) -> Result<Resolution, DbError> {
        // A slug is only looked up for `<label>.BASE_DOMAIN`, and only if the label is a valid
        // slug; anything else can match an explicit `domains` row only.
        let slug = host
            .subdomain_of(&self.base)
            .and_then(|label| Slug::parse(label).ok());
        let client = self.db.public().await?;
        let stmt = client.prepare_cached(RESOLVE_SQL).await?;
        let row = client
            .query_opt(&stmt, &[&host.as_str(), &slug.as_ref().map(Slug::as_str)])
            .await?;
        let Some(row) = row else {
            return Ok(Resolution::Unknown);
        };
        Ok(match route_of(&row)? {
            Some(route) => Resolution::Tenant(Arc::new(route)),
            None => Resolution::Unknown,
        })
    }

    /// Replaces the route table with every company's routes, read in one query. Returns the
    /// number of companies.
    #[tracing::instrument(skip_all, err)]
    pub async fn load_all(&self) -> Result<usize, DbError> {
        let _order = self.reloading.lock().await;
        let client = self.db.public().await?;
        // Row by row as they arrive: 10,000 rows are never held at once besides the table.
        let rows = client
            .query_raw(ROUTES_SQL, std::iter::empty::<&(dyn ToSql + Sync)>())
            .await?;
        futures_util::pin_mut!(rows);
        let mut table = Table::default();
        while let Some(row) = rows.next().await {
            if let Some(loaded) = loaded_of(&row?)? {
                table.insert(&self.base, loaded);
            }
        }
        drop(client);
        let companies = table.companies();
        let old = std::mem::replace(
            &mut *self.table.write().unwrap_or_else(PoisonError::into_inner),
            table,
        );
        // Freed after the lock is released: readers never wait for 10,000 routes to drop.
        drop(old);
        self.changed(companies);
        tracing::debug!(companies, "route table loaded");
        Ok(companies)
    }

    /// Reloads these companies' routes (a company that is gone loses its routes). Called by the
    /// listener for each notification, and by a request that changed a company, so that this
    /// server sees the change before it answers.
    #[tracing::instrument(skip_all, err)]
    pub async fn reload(&self, companies: &[CompanyId]) -> Result<(), DbError> {
        let _order = self.reloading.lock().await;
        let ids: Vec<uuid::Uuid> = companies.iter().map(|c| c.0).collect();
        let client = self.db.public().await?;
        let rows = client.query(ROUTES_OF_SQL, &[&ids]).await?;
        drop(client);
        let mut found = Vec::with_capacity(rows.len());
        for row in &rows {
            found.extend(loaded_of(row)?);
        }
        let size = {
            let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
            table.remove(&companies.iter().copied().collect());
            for loaded in found {
                table.insert(&self.base, loaded);
            }
            table.companies()
        };
        self.changed(size);
        Ok(())
    }

    /// After a reload: lookups in flight may have read the old state, and looked-up hosts may
    /// be stale.
    fn changed(&self, companies: usize) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.cache.invalidate_all();
        metrics::gauge!(TABLE_COMPANIES).set(companies as f64);
    }

    /// Companies in the route table.
    pub fn companies(&self) -> usize {
        self.table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .companies()
    }
}

/// A route read by any of the queries above. `None` (logged) when the row no longer passes
/// validation: such a company is never served.
fn route_of(row: &tokio_postgres::Row) -> Result<Option<TenantRoute>, DbError> {
    let slug: String = row.try_get("slug")?;
    let schema: String = row.try_get("schema_name")?;
    let (Ok(slug), Ok(schema)) = (Slug::parse(&slug), SchemaName::parse(&schema)) else {
        tracing::error!(%slug, "company row has an invalid slug or schema name");
        return Ok(None);
    };
    Ok(Some(TenantRoute {
        company_id: CompanyId(row.try_get("id")?),
        slug,
        schema,
        plan: row.try_get("plan")?,
        requests_per_hour: row.try_get("requests_per_hour")?,
        status: row.try_get("status")?,
        schema_version: row.try_get("schema_version")?,
        schema_exists: row.try_get("schema_exists")?,
    }))
}

/// A row of [`ROUTES_SQL`]. A `domains` row that is not a valid name routes nothing.
fn loaded_of(row: &tokio_postgres::Row) -> Result<Option<Loaded>, DbError> {
    let Some(route) = route_of(row)? else {
        return Ok(None);
    };
    let names: Vec<String> = row.try_get("domains")?;
    let mut domains = Vec::with_capacity(names.len());
    for name in names {
        match DomainName::parse(&name) {
            Ok(domain) => domains.push(domain),
            Err(e) => tracing::error!(%name, error = %e, "domains row is not a valid name"),
        }
    }
    Ok(Some(Loaded { route, domains }))
}

/// The channel the public-schema triggers notify on.
pub const ROUTING_CHANNEL: &str = "tenantry_routing";

/// What a burst of notifications asks the route table for.
#[derive(Debug, Default, PartialEq, Eq)]
struct Reload {
    all: bool,
    companies: HashSet<CompanyId>,
}

impl Reload {
    /// A payload is a company's id (companies and domains, V13); anything else (a plan change,
    /// or an older trigger's table name) reloads everything.
    fn add(&mut self, payload: &str) {
        match uuid::Uuid::parse_str(payload) {
            Ok(id) if !self.all => {
                self.companies.insert(CompanyId(id));
                if self.companies.len() > MAX_PARTIAL_RELOAD {
                    self.all = true;
                }
            }
            Ok(_) => {}
            Err(_) => self.all = true,
        }
        if self.all {
            self.companies.clear();
        }
    }

    async fn apply(self, router: &Router) -> Result<(), DbError> {
        if self.all {
            router.load_all().await.map(drop)
        } else {
            let ids: Vec<CompanyId> = self.companies.into_iter().collect();
            router.reload(&ids).await
        }
    }
}

/// Listens for routing changes on a dedicated connection and applies them to the route table,
/// reloading it whole on every (re)connection and every [`RouterSettings::ttl`]; reconnects with
/// back-off. Runs until the task is dropped.
///
/// `ready` is told once the table is first loaded: the server's start-up waits for it, so the
/// table is loaded once, by the listener, with nothing missed between the load and LISTEN.
pub async fn listen_for_changes(
    database_url: String,
    router: Arc<Router>,
    mut ready: Option<tokio::sync::oneshot::Sender<()>>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match listen_once(&database_url, &router, &mut backoff, &mut ready).await {
            Ok(()) => tracing::warn!("routing listener connection closed; reconnecting"),
            Err(e) => tracing::warn!(error = %e, "routing listener failed; reconnecting"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
        // Changes made while nobody listens are unknown to us: reload through the pool now (if
        // the database answers), so the table is never staler than one back-off, listener or
        // not.
        match router.load_all().await {
            Ok(_) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
            }
            Err(e) => tracing::debug!(error = %e, "route table reload without a listener failed"),
        }
    }
}

async fn listen_once(
    database_url: &str,
    router: &Router,
    backoff: &mut Duration,
    ready: &mut Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<(), DbError> {
    let (client, mut connection) =
        tokio_postgres::connect(database_url, tokio_postgres::NoTls).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    });
    client
        .batch_execute(&format!("listen {ROUTING_CHANNEL}"))
        .await?;
    // Anything that changed before LISTEN took effect is unknown to us.
    router.load_all().await?;
    if let Some(ready) = ready.take() {
        let _ = ready.send(());
    }
    *backoff = Duration::from_millis(200);
    tracing::debug!("routing listener ready");
    let mut next_full = Instant::now() + router.ttl;
    loop {
        let wait = next_full.saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait, rx.recv()).await {
            Err(_) => {
                router.load_all().await?;
                next_full = Instant::now() + router.ttl;
            }
            Ok(None) => break,
            Ok(Some(payload)) => {
                // Everything already delivered goes in one reload.
                let mut reload = Reload::default();
                reload.add(&payload);
                while let Ok(more) = rx.try_recv() {
                    reload.add(&more);
                }
                if reload.all {
                    next_full = Instant::now() + router.ttl;
                }
                reload.apply(router).await?;
            }
        }
    }
    drop(client);
    match driver.await {
        Ok(result) => result.map_err(DbError::from),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::{CompanyId, Reload, MAX_PARTIAL_RELOAD};

    #[test]
    fn payloads_name_companies_and_anything_else_reloads_everything() {
        let id = uuid::Uuid::new_v4();
        let mut reload = Reload::default();
        reload.add(&id.to_string());
        reload.add(&id.to_string());
        assert!(!reload.all);
        assert_eq!(reload.companies.len(), 1);
        assert!(reload.companies.contains(&CompanyId(id)));

        // A plan change (or an older trigger naming its table) reloads everything, and then
        // company ids add nothing.
        reload.add("plans");
        assert!(reload.all);
        assert!(reload.companies.is_empty());
        reload.add(&uuid::Uuid::new_v4().to_string());
        assert_eq!(
            reload,
            Reload {
                all: true,
                companies: Default::default()
            }
        );

        let mut many = Reload::default();
        for _ in 0..=MAX_PARTIAL_RELOAD {
            many.add(&uuid::Uuid::new_v4().to_string());
        }
        assert!(many.all && many.companies.is_empty());
    }
}
