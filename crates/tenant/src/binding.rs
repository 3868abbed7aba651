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
//!
//! Reads take one round trip ([`TenantConn::acquire_read`]): the binding and the first query go
//! out together, the binding ahead, and PostgreSQL runs them in that order, so the query runs
//! under the new path. The binding's answer is read first: if it failed, the query's rows are
//! dropped unread and the connection is discarded. PostgreSQL runs a pipelined statement even
//! after the one before it failed, so that first query is a [`SchemaSql`]: a `select` (it writes
//! nothing) whose text names its own tenant's schema, and no other — under whatever path, it can
//! only read the rows of the tenant it was made for.

use deadpool_postgres::Object;
use std::sync::Arc;
use tenantry_public::companies::CompanyStatus;
use tenantry_public::db::{Db, DbError};
use tenantry_public::routing::TenantRoute;
use tenantry_public::SchemaName;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

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

    /// Takes a pooled connection bound to `schema` and runs the read `sql` on it, in one round
    /// trip: the binding and `sql` are sent together, the binding first (see the module doc).
    /// `sql` is prepared on its second use on a connection and kept (bounded; before that it
    /// runs unnamed, in the same round trip), so each tenant's plan survives the others'
    /// requests on the same connection.
    pub async fn acquire_read(
        db: &Db,
        sql: &SchemaSql,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<(Self, Vec<Row>), DbError> {
        let (client, rows) = db
            .checkout_read(
                BIND_SQL,
                &[&sql.schema.quoted()],
                &sql.template,
                &sql.text,
                params,
            )
            .await?;
        Ok((
            Self {
                client,
                schema: sql.schema.clone(),
            },
            rows,
        ))
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

/// A read whose text names its tenant's schema, and only that one: made from a template that
/// writes `{schema}` where the schema goes (`select … from {schema}.projects …`), filled in with
/// the quoted [`SchemaName`]. It is the first query of [`TenantConn::acquire_read`], which
/// PostgreSQL runs even if the binding sent just before it failed; so the template is refused
/// unless
/// - it is one `select` (no `;`, no locking clause): a read that writes nothing;
/// - it says `{schema}` and names no schema of its own: no `"` (no quoted identifier at all) and
///   no `tenant_` (every tenant schema is `tenant_<slug>`, `Slug::schema_name`), so the only
///   tenant schema in the text is the one this value was made for.
///
/// Templates are constants of the code (tables and columns of `rows::Table`), never request text:
/// a refused template is a bug, [`DbError::Corrupt`].
#[derive(Debug, Clone)]
pub struct SchemaSql {
    schema: SchemaName,
    /// The text with `{schema}` in it: the statement's shape, the same for every tenant.
    template: String,
    text: String,
}

impl SchemaSql {
    pub fn new(template: &str, schema: &SchemaName) -> Result<Self, DbError> {
        let lower = template.to_ascii_lowercase();
        let refuse = |why: &str| Err(DbError::Corrupt(format!("schema-named statement {why}")));
        if !lower.trim_start().starts_with("select ") {
            return refuse("is not a select");
        }
        if lower.contains(';') || lower.contains(" for update") || lower.contains(" for share") {
            return refuse("is more than one read");
        }
        if !template.contains("{schema}") {
            return refuse("does not name its schema");
        }
        if template.contains('"') || lower.contains("tenant_") {
            return refuse("names a schema of its own");
        }
        Ok(Self {
            schema: schema.clone(),
            template: template.to_owned(),
            text: template.replace("{schema}", &schema.quoted()),
        })
    }

    /// The statement text, with the schema filled in.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn schema(&self) -> &SchemaName {
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

    /// This tenant's schema.
    pub fn schema(&self) -> &SchemaName {
        &self.0.schema
    }
}
