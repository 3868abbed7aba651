//! Connection pools and the split between "the database is unavailable" and "the query failed".

use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime, Timeouts,
};
use moka::future::Cache;
use std::hash::{BuildHasher, RandomState};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{NoTls, Row, Statement};

/// How a pool is sized and how long a caller may wait for a connection.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_size: usize,
    /// How long a request waits for a free connection before it is told to retry later.
    pub wait_timeout: Duration,
    pub connect_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_size: 16,
            wait_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// What every public-schema checkout runs first: it verifies the connection and puts
/// `search_path` back to the server default, so no connection carries a tenant's schema to its
/// next user, whatever happened to the previous handle.
pub const RESET_SQL: &str = "reset search_path";

/// How many statements of [`Db::checkout_read`] are kept prepared per pooled connection, on
/// average: the cache holds `max_size` times this many in all. Each is a named prepared statement
/// in a PostgreSQL backend (with its plan) and a [`Statement`] here, so the bound is what keeps
/// 10,000 tenants from growing either side's memory.
pub const STATEMENTS_PER_CONNECTION: u64 = 128;

/// The database: a pool whose connections can only be taken through a statement that both
/// verifies the connection and sets its `search_path` — [`Db::public`] resets it, tenant handles
/// (in `tenantry-tenant`) set it to one tenant schema. There is no way to take a connection that
/// skips that first statement, so each checkout costs exactly one statement of overhead, sent
/// ahead of the caller's first query without waiting for its answer ([`Db::checkout_read`]).
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    /// The statements of [`Db::checkout_read`], per connection and text, bounded (least recently
    /// and least frequently used go first). An evicted [`Statement`] is dropped, and dropping it
    /// closes the prepared statement on its connection (tokio-postgres sends `Close`, the
    /// protocol's `DEALLOCATE`); entries of discarded connections are never hit again and age
    /// out the same way. Keyed by a hash of the connection (the pool's object id) and the text,
    /// the entry holding both: a hit for another
    /// connection or text (a hash collision) is a miss, so a statement never runs on another
    /// connection or for a text other than its own. A lookup allocates nothing.
    statements: Cache<StatementKey, Arc<Prepared>>,
    /// Keys that missed once lately (four times as many as `statements` holds): a statement is
    /// prepared and kept on its second miss, so a connection rotating over more tenants than it
    /// could keep runs each read unnamed in one round trip instead of preparing, using once and
    /// evicting. Hashes only: a collision can only make a statement be prepared one use early.
    missed: Cache<StatementKey, ()>,
    /// The hasher of [`StatementKey`]s (random per process).
    keys: RandomState,
    /// The parameter types of each statement shape (the text before its schema is filled in),
    /// learned from its first prepare: what an unnamed read declares. One entry per shape in the
    /// code, bounded all the same.
    shapes: Cache<String, Arc<[Type]>>,
}

/// A statement on one connection: a hash of the pool's object id and the text.
type StatementKey = u64;

/// A statement of [`Db::checkout_read`] prepared on one connection, with that connection's id and
/// its text.
struct Prepared {
    connection: deadpool::managed::ObjectId,
    text: Box<str>,
    statement: Statement,
}

impl Db {
    pub fn connect(database_url: &str, settings: &PoolSettings) -> Result<Self, DbError> {
        Ok(Self {
            pool: pool(database_url, settings)?,
            statements: Cache::new(settings.max_size as u64 * STATEMENTS_PER_CONNECTION),
            missed: Cache::new(4 * settings.max_size as u64 * STATEMENTS_PER_CONNECTION),
            shapes: Cache::new(1024),
            keys: RandomState::new(),
        })
    }

    /// A connection for public-schema work, with `search_path` at the server default.
    pub async fn public(&self) -> Result<PublicConn, DbError> {
        self.checkout_simple(RESET_SQL).await.map(PublicConn)
    }

    /// Takes a pooled connection and runs `first` (a prepared statement with `params`) on it.
    /// `first` must verify the connection and set its `search_path`. A connection that fails it
    /// at the connection level is discarded and one fresh connection is tried.
    pub async fn checkout(
        &self,
        first: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Object, DbError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let client = self.pool.get().await?;
            let result = match client.prepare_cached(first).await {
                Ok(stmt) => client.execute(&stmt, params).await.map(|_| ()),
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => return Ok(client),
                Err(e) if is_connection_error(&e) && attempt == 1 => {
                    tracing::debug!(error = %e, "discarding a dead pooled connection");
                    drop(Object::take(client));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Takes a pooled connection, runs `first` (as [`Db::checkout`]) and the read `query` on it
    /// in one round trip: both are sent before either answer is awaited (tokio-postgres
    /// pipelines requests on one connection, and PostgreSQL runs them in order), so `query` runs
    /// after `first` has set `search_path`. `query` (whose text is `shape` with its schema
    /// filled in) is prepared on its second use on a connection and kept in a bounded cache
    /// ([`STATEMENTS_PER_CONNECTION`]); that use costs a second round trip (the prepare, itself
    /// sent after `first`), and so does the first use of a shape in the process, which learns
    /// its parameter types. Other uses of an uncached statement run it unnamed (parse, plan and
    /// run in one message) in the one round trip.
    ///
    /// `first` decides: when it fails, the query's answer is dropped unread, the connection is
    /// discarded (its state is unknown), and a connection-level failure is retried once on a
    /// fresh connection. Since PostgreSQL still runs a pipelined statement after an earlier one
    /// failed, `query` must write nothing and must name the schema it reads (tenant callers use
    /// `tenantry_tenant::binding::SchemaSql`), so even then it could only have read its own
    /// tenant's rows.
    pub async fn checkout_read(
        &self,
        first: &str,
        params: &[&(dyn ToSql + Sync)],
        shape: &str,
        query: &str,
        query_params: &[&(dyn ToSql + Sync)],
    ) -> Result<(Object, Vec<Row>), DbError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let client = self.pool.get().await?;
            match self
                .pipelined(&client, first, params, shape, query, query_params)
                .await
            {
                Ok(rows) => return Ok((client, rows)),
                Err(Failed::First(e)) => {
                    // Whatever the query answered is never looked at, and the connection, whose
                    // path is now unknown, never goes back to the pool.
                    drop(Object::take(client));
                    if is_connection_error(&e) && attempt == 1 {
                        tracing::debug!(error = %e, "discarding a dead pooled connection");
                        continue;
                    }
                    return Err(e.into());
                }
                Err(Failed::Query(e)) if is_connection_error(&e) && attempt == 1 => {
                    tracing::debug!(error = %e, "discarding a dead pooled connection");
                    drop(Object::take(client));
                }
                Err(Failed::Query(e)) => return Err(e.into()),
            }
        }
    }

    /// `first` and `query` on `client`, sent back to back; `first`'s outcome is looked at first.
    async fn pipelined(
        &self,
        client: &Object,
        first: &str,
        params: &[&(dyn ToSql + Sync)],
        shape: &str,
        query: &str,
        query_params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Failed> {
        // Cached per connection by deadpool after its first use: no round trip.
        let first = client.prepare_cached(first).await.map_err(Failed::First)?;
        let connection = Object::id(client);
        let key = self.keys.hash_one((connection, query));
        let cached = self
            .statements
            .get(&key)
            .await
            .filter(|p| p.connection == connection && &*p.text == query)
            .map(|p| p.statement.clone());
        let unnamed = match (&cached, self.shapes.get(shape).await) {
            (None, Some(types)) if self.missed.get(&key).await.is_none() => {
                self.missed.insert(key, ()).await;
                Some(types)
            }
            _ => None,
        };
        // `join` polls `first` before `query`, and each sends its messages at its first poll:
        // both go out before anything is awaited, `first` ahead.
        let first = client.execute(&first, params);
        let query = async {
            if let Some(types) = unnamed {
                let typed: Vec<(&(dyn ToSql + Sync), Type)> = query_params
                    .iter()
                    .copied()
                    .zip(types.iter().cloned())
                    .collect();
                let rows = client.query_typed_raw(query, typed).await?;
                return collect(rows).await;
            }
            let statement = match cached {
                Some(statement) => statement,
                None => {
                    let statement = client.prepare(query).await?;
                    let prepared = Prepared {
                        connection,
                        text: query.into(),
                        statement: statement.clone(),
                    };
                    self.statements.insert(key, Arc::new(prepared)).await;
                    self.shapes
                        .insert(shape.to_owned(), statement.params().into())
                        .await;
                    statement
                }
            };
            let rows = client
                .query_raw(&statement, query_params.iter().copied())
                .await?;
            collect(rows).await
        };
        let (first, rows) = futures_util::future::join(first, query).await;
        first.map_err(Failed::First)?;
        rows.map_err(Failed::Query)
    }

    /// How many [`Db::checkout_read`] statements are cached now (for tests and metrics).
    pub async fn cached_statements(&self) -> u64 {
        self.statements.run_pending_tasks().await;
        self.statements.entry_count()
    }

    async fn checkout_simple(&self, first: &str) -> Result<Object, DbError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let client = self.pool.get().await?;
            match client.batch_execute(first).await {
                Ok(()) => return Ok(client),
                Err(e) if is_connection_error(&e) && attempt == 1 => {
                    tracing::debug!(error = %e, "discarding a dead pooled connection");
                    drop(Object::take(client));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Pool statistics, for logs and tests.
    pub fn status(&self) -> deadpool_postgres::Status {
        self.pool.status()
    }
}

/// The rows of a read, into a vector sized for a page at once (`Client::query` grows its vector
/// from empty: visible in the profile of the list load).
async fn collect(rows: tokio_postgres::RowStream) -> Result<Vec<Row>, tokio_postgres::Error> {
    use futures_util::TryStreamExt;
    let mut rows = std::pin::pin!(rows);
    let mut out = Vec::with_capacity(READ_ROWS);
    while let Some(row) = rows.try_next().await? {
        out.push(row);
    }
    Ok(out)
}

/// Rows a read's vector starts with room for: a default page and its look-ahead row.
const READ_ROWS: usize = 32;

/// Which of a pipelined checkout's two statements failed.
enum Failed {
    First(tokio_postgres::Error),
    Query(tokio_postgres::Error),
}

/// A pooled connection for public-schema work. Public tables are always written `public.x`.
pub struct PublicConn(Object);

impl PublicConn {
    /// The underlying client, for repository functions that take a `GenericClient`.
    pub fn client(&self) -> &tokio_postgres::Client {
        &self.0
    }
}

impl Deref for PublicConn {
    type Target = Object;
    fn deref(&self) -> &Object {
        &self.0
    }
}

impl DerefMut for PublicConn {
    fn deref_mut(&mut self) -> &mut Object {
        &mut self.0
    }
}

/// True when the connection itself is unusable: closed, broken, its session ended by the server
/// ([`is_session_lost`]), or left by its previous holder inside a failed transaction block
/// (SQLSTATE 25P02), where every statement would fail until a rollback that this checkout cannot
/// know is wanted.
fn is_connection_error(e: &tokio_postgres::Error) -> bool {
    (e.code().is_none() && e.as_db_error().is_none())
        || e.code().is_some_and(|c| is_session_lost(c.code()))
        || e.code().map(|c| c.code()) == Some(sqlstate::IN_FAILED_TRANSACTION)
}

/// SQLSTATEs with which the server ends a session rather than refusing a statement: it is
/// shutting down or restarting (57P01 `admin_shutdown` — what `pg_ctl stop -m fast` sends every
/// session, 57P02 `crash_shutdown`, 57P03 `cannot_connect_now`) or the connection failed
/// (class 08). The query was fine; the database was not there to run it.
fn is_session_lost(code: &str) -> bool {
    code.starts_with("08")
        || matches!(
            code,
            sqlstate::ADMIN_SHUTDOWN | sqlstate::CRASH_SHUTDOWN | sqlstate::CANNOT_CONNECT_NOW
        )
}

/// An error and all its causes, for messages that reach operators.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Builds a raw pool. Application code uses [`Db`]; tests use this for direct assertions.
/// Recycling only checks that the client is not closed: the real verification is the first
/// statement of every [`Db`] checkout, which also sets `search_path`.
pub fn pool(database_url: &str, settings: &PoolSettings) -> Result<Pool, DbError> {
    let pg_config: tokio_postgres::Config = database_url
        .parse()
        .map_err(|e: tokio_postgres::Error| DbError::Config(e.to_string()))?;
    let manager = Manager::from_config(
        pg_config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(settings.max_size)
        .runtime(Runtime::Tokio1)
        .timeouts(Timeouts {
            wait: Some(settings.wait_timeout),
            create: Some(settings.connect_timeout),
            recycle: Some(settings.connect_timeout),
        })
        .build()
        .map_err(|e| DbError::Config(e.to_string()))
}

/// A database failure, split by what a caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection could be had (pool exhausted, server down, connection lost): retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The server answered with an error.
    #[error(transparent)]
    Query(tokio_postgres::Error),
    /// The database URL or pool settings are unusable. Only for configuration.
    #[error("invalid database configuration: {0}")]
    Config(String),
    /// A stored row does not decode, or an invariant the schema should guarantee does not hold
    /// (a row vanished inside its own transaction, an update touched unexpected rows). A bug or
    /// corrupt data: never something a caller can fix by retrying.
    #[error("broken invariant: {0}")]
    Corrupt(String),
}

impl DbError {
    /// The SQLSTATE when the server answered with an error.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Query(e) => e.code().map(|c| c.code()),
            _ => None,
        }
    }

    /// The violated constraint's name, for integrity-constraint violations (SQLSTATE class 23:
    /// unique, check, foreign key, exclusion, not null).
    ///
    /// On a Citus cluster a violation on a worker's shard reaches the coordinator without the
    /// constraint field, its name only in the message and with the shard's suffix
    /// (`duplicate key value violates unique constraint "users_email_key_102008"`): the name is
    /// read from there, without the suffix, so callers match the same names on every topology.
    /// A violation on the shard of a Citus local table (public tables on the coordinator) has the
    /// field, with the shard's suffix: it goes too.
    /// A violation on the shard of a Citus local table (public tables on the coordinator) has the
    /// field, with the shard's suffix: it goes too.
    pub fn constraint(&self) -> Option<&str> {
        match self {
            Self::Query(e) if self.code().is_some_and(|c| c.starts_with("23")) => {
                let db = e.as_db_error()?;
                match db.constraint() {
                    // A Citus local table's shard on the coordinator: the shard's names.
                    Some(name) => Some(match (db.table(), name.rsplit_once('_')) {
                        (Some(table), Some((base, shard)))
                            if is_shard_id(shard) && table.ends_with(&format!("_{shard}")) =>
                        {
                            base
                        }
                        _ => name,
                    }),
                    None => shard_constraint(db.message()),
                }
            }
            _ => None,
        }
    }
}

/// The constraint named in a violation message from a Citus shard, without the shard id.
fn shard_constraint(message: &str) -> Option<&str> {
    let start = message.find("constraint \"")? + "constraint \"".len();
    let name = &message[start..start + message[start..].find('"')?];
    let (base, shard) = name.rsplit_once('_')?;
    (!base.is_empty() && is_shard_id(shard)).then_some(base)
}

fn is_shard_id(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Turns the violation of one named constraint into a domain error where the query runs, so no
/// caller matches SQLSTATEs by hand:
///
/// ```ignore
/// users::insert(db, email, hash, name).await.on_constraint("users_email_key", || AccountRace)?
/// ```
pub trait OnConstraint<T> {
    /// `f()` when the error violates `constraint`; every other error converts with `From`.
    fn on_constraint<E: From<DbError>>(
        self,
        constraint: &str,
        f: impl FnOnce() -> E,
    ) -> Result<T, E>;
}

impl<T> OnConstraint<T> for Result<T, DbError> {
    fn on_constraint<E: From<DbError>>(
        self,
        constraint: &str,
        f: impl FnOnce() -> E,
    ) -> Result<T, E> {
        match self {
            Err(e) if e.constraint() == Some(constraint) => Err(f()),
            other => other.map_err(E::from),
        }
    }
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        // An error without a SQLSTATE never reached the server's executor: I/O, a closed
        // connection, a timeout. Those are availability problems, not query problems, and so
        // is a session the server ended (a restart terminates every session mid-query).
        if is_decode_error(&e) {
            Self::Corrupt(error_chain(&e))
        } else if (e.code().is_none() && e.as_db_error().is_none())
            || e.code().is_some_and(|c| is_session_lost(c.code()))
        {
            Self::Unavailable(error_chain(&e))
        } else {
            Self::Query(e)
        }
    }
}

/// A row that did not convert into its Rust type (a wrong column type or an unknown text-enum
/// value): tokio-postgres reports these without a SQLSTATE, like I/O errors, but retrying will
/// not help. Its error kinds are private, so they are told apart by their fixed messages.
fn is_decode_error(e: &tokio_postgres::Error) -> bool {
    let text = e.to_string();
    text.starts_with("error deserializing column")
        || text.starts_with("invalid column")
        || text.starts_with("error serializing parameter")
}

impl From<PoolError> for DbError {
    /// Every pool error means no usable connection: a wait timeout, or a failure to connect or
    /// to recycle. Even a connect refused with a SQLSTATE (too many clients, database not
    /// accepting connections) is an availability problem, never a query problem.
    fn from(e: PoolError) -> Self {
        Self::Unavailable(error_chain(&e))
    }
}

/// SQLSTATEs this codebase reacts to.
pub mod sqlstate {
    pub const UNIQUE_VIOLATION: &str = "23505";
    pub const FOREIGN_KEY_VIOLATION: &str = "23503";
    pub const CHECK_VIOLATION: &str = "23514";
    pub const UNDEFINED_TABLE: &str = "42P01";
    pub const INVALID_SCHEMA_NAME: &str = "3F000";
    pub const DUPLICATE_SCHEMA: &str = "42P06";
    pub const SERIALIZATION_FAILURE: &str = "40001";
    pub const DEADLOCK_DETECTED: &str = "40P01";
    pub const IN_FAILED_TRANSACTION: &str = "25P02";
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    pub const CRASH_SHUTDOWN: &str = "57P02";
    pub const CANNOT_CONNECT_NOW: &str = "57P03";
}

#[cfg(test)]
mod tests {
    use super::shard_constraint;

    #[test]
    fn reads_a_shard_constraint_from_the_message() {
        assert_eq!(
            shard_constraint(
                "duplicate key value violates unique constraint \"users_email_key_102008\""
            ),
            Some("users_email_key")
        );
        assert_eq!(
            shard_constraint(
                "insert or update on table \"tasks_102030\" violates foreign key constraint \
                 \"tasks_project_id_fkey_102030\""
            ),
            Some("tasks_project_id_fkey")
        );
        assert_eq!(
            shard_constraint("violates check constraint \"plain\""),
            None
        );
        assert_eq!(shard_constraint("no name here"), None);
    }
}
