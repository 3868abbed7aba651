//! Tenant-bound connections: the only way to reach tenant tables.
//!
//! A [`TenantConn`] can only be made by binding a pooled connection to a [`SchemaName`]; binding
//! sets the session `search_path` to that schema alone, so an unqualified table name resolves in
//! that tenant or nowhere (public tables are always written `public.x`). Tenant repository
//! functions take `&impl TenantDb`, which only [`TenantConn`] and [`TenantTx`] implement.
//!
//! Architecture invariant: the next user of a pooled connection never inherits a tenant's
//! `search_path`. Connections only leave the pool through [`Db::checkout`], whose first statement
//! sets the path: a tenant handle sets it to its schema, [`Db::public`] resets it to the server
//! default. So whatever happened to the previous handle (success, error, panic, a cancelled
//! future, a rolled-back transaction), nothing runs on the connection before the path is set
//! for the new user. That first statement is also the connection's liveness check.

use deadpool_postgres::Object;
use std::sync::Arc;
use tenantry_public::companies::CompanyStatus;
use tenantry_public::db::{Db, DbError};
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
    /// Takes a pooled connection whose first statement sets `search_path` to `schema` alone.
    /// The schema name travels as a bind parameter, already quoted as an identifier.
    pub async fn acquire(db: &Db, schema: &SchemaName) -> Result<Self, DbError> {
        let client = db.checkout(BIND_SQL, &[&schema.quoted()]).await?;
        Ok(Self {
            client,
            schema: schema.clone(),
        })
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
    pub async fn connect(&self, db: &Db) -> Result<TenantConn, DbError> {
        TenantConn::acquire(db, &self.0.schema).await
    }
}
