//! Connection pools and the split between "the database is unavailable" and "the query failed".

use deadpool_postgres::{
    Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime, Timeouts,
};
use std::time::Duration;
use tokio_postgres::NoTls;

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

/// The statement run on every connection handed back out of the pool. It both verifies that the
/// connection is alive and puts `search_path` back to the server default, so no connection can
/// carry a tenant's schema to its next user even if a handle was dropped mid-request.
pub const RECYCLE_SQL: &str = "reset search_path";

/// Builds a pool. No connection is opened until first use.
pub fn pool(database_url: &str, settings: &PoolSettings) -> Result<Pool, DbError> {
    let pg_config: tokio_postgres::Config = database_url
        .parse()
        .map_err(|e: tokio_postgres::Error| DbError::Config(e.to_string()))?;
    let manager = Manager::from_config(
        pg_config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Custom(RECYCLE_SQL.to_owned()),
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
    #[error("invalid database configuration: {0}")]
    Config(String),
}

impl DbError {
    /// The SQLSTATE when the server answered with an error.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Query(e) => e.code().map(|c| c.code()),
            _ => None,
        }
    }

    /// The violated constraint's name, for unique and check violations.
    pub fn constraint(&self) -> Option<&str> {
        match self {
            Self::Query(e) => e.as_db_error().and_then(|d| d.constraint()),
            _ => None,
        }
    }
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        // An error without a SQLSTATE never reached the server's executor: I/O, a closed
        // connection, a timeout. Those are availability problems, not query problems.
        if e.code().is_none() && e.as_db_error().is_none() {
            Self::Unavailable(e.to_string())
        } else {
            Self::Query(e)
        }
    }
}

impl From<PoolError> for DbError {
    /// Every pool error means no usable connection: a wait timeout, or a failure to connect or
    /// to recycle. Even a connect refused with a SQLSTATE (too many clients, database not
    /// accepting connections) is an availability problem, never a query problem.
    fn from(e: PoolError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

/// SQLSTATEs this codebase reacts to.
pub mod sqlstate {
    pub const UNIQUE_VIOLATION: &str = "23505";
    pub const FOREIGN_KEY_VIOLATION: &str = "23503";
    pub const CHECK_VIOLATION: &str = "23514";
    pub const UNDEFINED_TABLE: &str = "42P01";
    pub const INVALID_SCHEMA_NAME: &str = "3F000";
    pub const SERIALIZATION_FAILURE: &str = "40001";
    pub const DEADLOCK_DETECTED: &str = "40P01";
}
