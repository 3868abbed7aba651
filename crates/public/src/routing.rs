//! Host → tenant routing with an in-process cache.
//!
//! The cache is bounded and entries live for a short TTL; on top of that every change to
//! `public.companies` or `public.domains` fires a `tenantry_routing` notification (a trigger in the
//! public migrations) and [`listen_for_changes`] empties the cache when one arrives. In the steady
//! state a request is routed without a database round trip.
//!
//! Hosts that name nothing are remembered apart, briefly ([`RouterSettings::negative_ttl`]), so a
//! flood of random `*.BASE_DOMAIN` names can neither evict real tenants from the cache nor cost a
//! query each more than once; and lookups of uncached hosts are bounded per second
//! ([`RouterSettings::max_misses_per_sec`]): past the bound an uncached host answers "unavailable"
//! (503 with `Retry-After`) instead of querying, while cached tenants, and hosts that named a
//! tenant within the last hour, go on being served.

use futures_util::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use moka::future::Cache;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
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
    /// notify like company changes, so a cached route never keeps an old limit for long.
    pub requests_per_hour: Option<i32>,
    pub status: CompanyStatus,
    pub schema_version: Option<i32>,
    pub schema_exists: bool,
}

/// Routing cache settings.
#[derive(Debug, Clone)]
pub struct RouterSettings {
    /// Hosts that name a tenant, remembered for `ttl`.
    pub max_entries: u64,
    pub ttl: Duration,
    /// Hosts that name nothing, remembered apart for `negative_ttl` (a tenant created since is
    /// found at once anyway: every routing change empties both caches).
    pub max_negative_entries: u64,
    pub negative_ttl: Duration,
    /// Lookups of uncached hosts per second, across all hosts; `0` is unbounded.
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

/// Counter of Host resolutions answered from the cache (the `metrics` facade; the binary that
/// installs a recorder exports it).
pub const CACHE_HITS: &str = "routing_cache_hits_total";
/// Counter of Host resolutions that queried the public schema (including failed queries).
pub const CACHE_MISSES: &str = "routing_cache_misses_total";

/// Resolves Hosts against the public schema, caching the answers.
pub struct Router {
    base: DomainName,
    db: Db,
    cache: Cache<DomainName, Resolution>,
    unknown: Cache<DomainName, ()>,
    /// Hosts that named a tenant within the last hour: their lookups are outside the miss budget,
    /// so a flood of unknown names never stops real tenants from being routed after a routing
    /// change empties the cache. Never an answer, so never emptied.
    known: Cache<DomainName, ()>,
    misses: Option<DefaultDirectRateLimiter>,
}

/// Why a lookup put nothing in the tenant cache.
enum Miss {
    Unknown,
    Failed(DbError),
}

/// The answer for an uncached host past [`RouterSettings::max_misses_per_sec`].
const TOO_MANY_MISSES: &str = "too many lookups of unknown hosts; retry shortly";

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

impl Router {
    pub fn new(base: DomainName, db: Db, settings: &RouterSettings) -> Self {
        let cache = Cache::builder()
            .max_capacity(settings.max_entries)
            .time_to_live(settings.ttl)
            .build();
        let unknown = Cache::builder()
            .max_capacity(settings.max_negative_entries)
            .time_to_live(settings.negative_ttl)
            .build();
        let known = Cache::builder()
            .max_capacity(settings.max_entries)
            .time_to_live(Duration::from_secs(3600))
            .build();
        let misses = NonZeroU32::new(settings.max_misses_per_sec)
            .map(|n| RateLimiter::direct(Quota::per_second(n)));
        Self {
            base,
            db,
            cache,
            unknown,
            known,
            misses,
        }
    }

    pub fn base_domain(&self) -> &DomainName {
        &self.base
    }

    /// Resolves a normalised host. Concurrent misses for one host share a single query.
    ///
    /// Counts [`CACHE_HITS`] (answered from either cache) or [`CACHE_MISSES`] (anything else,
    /// callers waiting on another's lookup included); the base domain is neither: it is never
    /// cached.
    pub async fn resolve(&self, host: &DomainName) -> Result<Resolution, DbError> {
        if *host == self.base {
            return Ok(Resolution::Public);
        }
        if let Some(found) = self.cache.get(host).await {
            metrics::counter!(CACHE_HITS).increment(1);
            return Ok(found);
        }
        if self.unknown.contains_key(host) {
            metrics::counter!(CACHE_HITS).increment(1);
            return Ok(Resolution::Unknown);
        }
        // Counted once per request that found nothing cached (waiters on a shared lookup too).
        metrics::counter!(CACHE_MISSES).increment(1);
        // An unknown host comes back as an error so the tenant cache never holds it; it is
        // remembered in its own cache instead.
        let load = async {
            match self.load(host).await {
                Ok(Resolution::Unknown) => Err(Miss::Unknown),
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
                Miss::Failed(e @ DbError::Query(_)) => Err(DbError::Unavailable(e.to_string())),
                Miss::Failed(DbError::Unavailable(m)) => Err(DbError::Unavailable(m.clone())),
                Miss::Failed(DbError::Config(m)) => Err(DbError::Config(m.clone())),
                Miss::Failed(DbError::Corrupt(m)) => Err(DbError::Corrupt(m.clone())),
            },
        }
    }

    /// Looks `host` up in the database, within the miss budget.
    async fn load(&self, host: &DomainName) -> Result<Resolution, DbError> {
        if let Some(misses) = &self.misses {
            if !self.known.contains_key(host) && misses.check().is_err() {
                return Err(DbError::Unavailable(TOO_MANY_MISSES.into()));
            }
        }
        let found = self.query(host).await?;
        if let Resolution::Tenant(_) = found {
            self.known.insert(host.clone(), ()).await;
        }
        Ok(found)
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
        let slug: String = row.try_get("slug")?;
        let schema: String = row.try_get("schema_name")?;
        let status: CompanyStatus = row.try_get("status")?;
        let (Ok(slug), Ok(schema)) = (Slug::parse(&slug), SchemaName::parse(&schema)) else {
            // A row that no longer passes validation is never served.
            tracing::error!(%slug, "company row has an invalid slug or schema name");
            return Ok(Resolution::Unknown);
        };
        Ok(Resolution::Tenant(Arc::new(TenantRoute {
            company_id: CompanyId(row.try_get("id")?),
            slug,
            schema,
            plan: row.try_get("plan")?,
            requests_per_hour: row.try_get("requests_per_hour")?,
            status,
            schema_version: row.try_get("schema_version")?,
            schema_exists: row.try_get("schema_exists")?,
        })))
    }

    /// Drops every cached answer.
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
        self.unknown.invalidate_all();
    }
}

/// The channel the public-schema triggers notify on.
pub const ROUTING_CHANNEL: &str = "tenantry_routing";

/// Listens for routing changes on a dedicated connection and empties the router's cache on each,
/// reconnecting with back-off. Runs until the task is dropped.
pub async fn listen_for_changes(database_url: String, router: Arc<Router>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match listen_once(&database_url, &router).await {
            Ok(()) => tracing::warn!("routing listener connection closed; reconnecting"),
            Err(e) => tracing::warn!(error = %e, "routing listener failed; reconnecting"),
        }
        // While disconnected, changes may be missed: forget everything and rely on the TTL
        // only for the seconds until the listener is back.
        router.invalidate_all();
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

async fn listen_once(database_url: &str, router: &Router) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) =
        tokio_postgres::connect(database_url, tokio_postgres::NoTls).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(_)) => {
                    if tx.send(()).is_err() {
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
    router.invalidate_all();
    tracing::debug!("routing listener ready");
    while rx.recv().await.is_some() {
        router.invalidate_all();
    }
    drop(client);
    match driver.await {
        Ok(result) => result,
        Err(_) => Ok(()),
    }
}
