//! Tenant-bound connections: the only way to reach tenant tables.
//!
//! A [`TenantConn`] can only be made by binding a pooled connection to a [`SchemaName`]; binding
//! sets the session `search_path` to that schema alone, so an unqualified table name resolves in
//! that tenant or nowhere (public tables are always written `public.x`). Tenant repository
//! functions take `&impl TenantDb`, which only [`TenantConn`] and [`TenantTx`] implement.
//!
//! Architecture invariant: the next user of a pooled connection never inherits a tenant's
//! `search_path`. Two things hold it up, and either alone would be enough: every binding sets the
//! path before the first tenant query, and the pool runs `reset search_path` on every connection
//! it hands out (see [`tenantry_public::db::RECYCLE_SQL`]), whatever happened to the previous
//! handle (success, error, panic, a cancelled future, a rolled-back transaction).

use deadpool_postgres::{Object, Pool};
use std::sync::Arc;
use tenantry_public::companies::CompanyStatus;
use tenantry_public::db::DbError;
use tenantry_public::routing::TenantRoute;
use tenantry_public::SchemaName;

use crate::migrate::tenant_head;

mod sealed {
    pub trait Sealed {}
}

/// Something tenant queries can run on: a bound connection or a transaction on one.
pub trait TenantDb: sealed::Sealed + Sync {
    type Client: deadpool_postgres::GenericClient + Sync;
    fn client(&self) -> &Self::Client;
    fn schema(&self) -> &SchemaName;
}

/// A pooled connection whose `search_path` is one tenant's schema.
pub struct TenantConn {
    client: Object,
    schema: SchemaName,
}

const BIND_SQL: &str = "select pg_catalog.set_config('search_path', $1, false)";

impl TenantConn {
    /// Binds a pooled connection to `schema`. The schema name travels as a bind parameter, already
    /// quoted as an identifier.
    pub async fn bind(client: Object, schema: &SchemaName) -> Result<Self, DbError> {
        let stmt = client.prepare_cached(BIND_SQL).await?;
        client.execute(&stmt, &[&schema.quoted()]).await?;
        Ok(Self {
            client,
            schema: schema.clone(),
        })
    }

    /// Takes a connection from `pool` and binds it.
    pub async fn acquire(pool: &Pool, schema: &SchemaName) -> Result<Self, DbError> {
        let client = pool.get().await?;
        Self::bind(client, schema).await
    }

    /// Starts a transaction on the bound connection. Dropping it without commit rolls back.
    pub async fn transaction(&mut self) -> Result<TenantTx<'_>, DbError> {
        let tx = self.client.transaction().await?;
        Ok(TenantTx {
            tx,
            schema: &self.schema,
        })
    }
}

impl sealed::Sealed for TenantConn {}
impl TenantDb for TenantConn {
    type Client = Object;
    fn client(&self) -> &Object {
        &self.client
    }
    fn schema(&self) -> &SchemaName {
        &self.schema
    }
}

/// A transaction on a tenant-bound connection.
pub struct TenantTx<'a> {
    tx: deadpool_postgres::Transaction<'a>,
    schema: &'a SchemaName,
}

impl TenantTx<'_> {
    pub async fn commit(self) -> Result<(), DbError> {
        self.tx.commit().await.map_err(DbError::from)
    }
}

impl sealed::Sealed for TenantTx<'_> {}
impl<'a> TenantDb for TenantTx<'a> {
    type Client = deadpool_postgres::Transaction<'a>;
    fn client(&self) -> &Self::Client {
        &self.tx
    }
    fn schema(&self) -> &SchemaName {
        self.schema
    }
}

/// Why a tenant that exists may not be served right now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantUnavailable {
    #[error("this organization is suspended")]
    Suspended,
    #[error("this organization is still being set up")]
    Provisioning,
    #[error("this organization's data is not available")]
    SchemaMissing,
    #[error("this organization's data is being upgraded")]
    SchemaBehind,
}

/// A tenant that may be served: active, schema present and at this binary's head.
#[derive(Debug, Clone)]
pub struct ActiveTenant(Arc<TenantRoute>);

impl ActiveTenant {
    pub fn check(route: Arc<TenantRoute>) -> Result<Self, TenantUnavailable> {
        match route.status {
            CompanyStatus::Suspended => return Err(TenantUnavailable::Suspended),
            CompanyStatus::Provisioning => return Err(TenantUnavailable::Provisioning),
            CompanyStatus::Active => {}
        }
        if !route.schema_exists {
            return Err(TenantUnavailable::SchemaMissing);
        }
        if route.schema_version.unwrap_or(0) < tenant_head() {
            return Err(TenantUnavailable::SchemaBehind);
        }
        Ok(Self(route))
    }

    pub fn route(&self) -> &TenantRoute {
        &self.0
    }

    /// Takes a pooled connection bound to this tenant's schema.
    pub async fn connect(&self, pool: &Pool) -> Result<TenantConn, DbError> {
        TenantConn::acquire(pool, &self.0.schema).await
    }
}
