//! Typed worker configuration, parsed from environment variables (or any key lookup).

use std::fmt;
use std::str::FromStr;

use redis::IntoConnectionInfo;

/// Environment variable holding the Redis connection URL (required).
pub const ENV_REDIS_URL: &str = "REDIS_URL";
/// Environment variable selecting the log output format: `json` or `pretty`.
pub const ENV_LOG_FORMAT: &str = "LOG_FORMAT";
/// Environment variable holding the `tracing` env-filter directives.
pub const ENV_RUST_LOG: &str = "RUST_LOG";
/// Environment variable holding the heartbeat cron expression.
pub const ENV_HEARTBEAT_CRON: &str = "WORKER_HEARTBEAT_CRON";
/// Environment variable holding the prefix of every Redis key and queue the worker uses.
pub const ENV_QUEUE_PREFIX: &str = "WORKER_QUEUE_PREFIX";

/// Default log filter when `RUST_LOG` is unset.
pub const DEFAULT_LOG_FILTER: &str = "info";
/// Default heartbeat schedule: second 0 of every minute (the `cron` crate format
/// has a leading seconds field: `sec min hour day-of-month month day-of-week [year]`).
pub const DEFAULT_HEARTBEAT_CRON: &str = "0 * * * * *";
/// Default Redis key / queue prefix.
pub const DEFAULT_QUEUE_PREFIX: &str = "tenantry";

/// Why the configuration could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A required variable is unset or empty.
    #[error("missing required environment variable {var}")]
    Missing {
        /// Name of the variable.
        var: &'static str,
    },
    /// A variable is set but its value is unusable.
    #[error("invalid value for environment variable {var}: {reason}")]
    Invalid {
        /// Name of the variable.
        var: &'static str,
        /// What is wrong with it (never echoes secrets).
        reason: String,
    },
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable output (the default).
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "pretty" => Ok(Self::Pretty),
            "json" => Ok(Self::Json),
            other => Err(format!("expected `json` or `pretty`, got `{other}`")),
        }
    }
}

/// Worker configuration. Library code receives it as an argument; only
/// [`Config::from_env`] reads the process environment.
#[derive(Clone)]
pub struct Config {
    /// `REDIS_URL`: Redis connection URL, e.g. `redis://127.0.0.1:6379/`.
    pub redis_url: String,
    /// `LOG_FORMAT`: `json` or `pretty` (default `pretty`).
    pub log_format: LogFormat,
    /// `RUST_LOG`: env-filter directives (default `info`).
    pub log_filter: String,
    /// `WORKER_HEARTBEAT_CRON`: when the heartbeat job runs (default every minute).
    pub heartbeat_schedule: cron::Schedule,
    /// `WORKER_QUEUE_PREFIX`: prefix of every Redis key and queue (default `tenantry`).
    pub queue_prefix: String,
}

impl Config {
    /// A configuration with the given Redis URL and defaults for everything else.
    ///
    /// # Errors
    /// If `redis_url` is not a usable Redis URL.
    pub fn new(redis_url: impl Into<String>) -> Result<Self, ConfigError> {
        let redis_url = redis_url.into();
        Self::from_lookup(|key| (key == ENV_REDIS_URL).then(|| redis_url.clone()))
    }

    /// Reads the configuration from the process environment.
    ///
    /// # Errors
    /// If `REDIS_URL` is missing or any variable has an invalid value.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|key| std::env::var_os(key).map(|v| v.to_string_lossy().into_owned()))
    }

    /// Builds the configuration from a key lookup (`None` or an empty value means unset).
    /// [`Config::from_env`] passes the process environment; tests pass a map.
    ///
    /// # Errors
    /// If `REDIS_URL` is missing or any variable has an invalid value.
    pub fn from_lookup<F>(lookup: F) -> Result<Self, ConfigError>
    where
        F: Fn(&str) -> Option<String>,
    {
        let get = |var: &str| lookup(var).filter(|v| !v.trim().is_empty());

        let redis_url = get(ENV_REDIS_URL).ok_or(ConfigError::Missing { var: ENV_REDIS_URL })?;
        let redis_url = redis_url.trim().to_owned();
        // Validate the URL now so a typo stops start-up. The error text from redis
        // does not include the URL, so credentials are never echoed.
        redis_url
            .as_str()
            .into_connection_info()
            .map_err(|e| ConfigError::Invalid {
                var: ENV_REDIS_URL,
                reason: e.to_string(),
            })?;

        let log_format = match get(ENV_LOG_FORMAT) {
            Some(v) => v.parse().map_err(|reason| ConfigError::Invalid {
                var: ENV_LOG_FORMAT,
                reason,
            })?,
            None => LogFormat::default(),
        };

        let log_filter = get(ENV_RUST_LOG).unwrap_or_else(|| DEFAULT_LOG_FILTER.to_owned());
        tracing_subscriber::EnvFilter::try_new(&log_filter).map_err(|e| ConfigError::Invalid {
            var: ENV_RUST_LOG,
            reason: e.to_string(),
        })?;

        let cron_expr =
            get(ENV_HEARTBEAT_CRON).unwrap_or_else(|| DEFAULT_HEARTBEAT_CRON.to_owned());
        let heartbeat_schedule =
            cron::Schedule::from_str(cron_expr.trim()).map_err(|e| ConfigError::Invalid {
                var: ENV_HEARTBEAT_CRON,
                reason: format!(
                    "`{cron_expr}` is not a cron expression \
                     (format: `sec min hour day-of-month month day-of-week [year]`): {e}"
                ),
            })?;

        let queue_prefix = get(ENV_QUEUE_PREFIX)
            .map(|p| p.trim().to_owned())
            .unwrap_or_else(|| DEFAULT_QUEUE_PREFIX.to_owned());
        validate_prefix(&queue_prefix)?;

        Ok(Self {
            redis_url,
            log_format,
            log_filter,
            heartbeat_schedule,
            queue_prefix,
        })
    }
}

fn validate_prefix(prefix: &str) -> Result<(), ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid {
        var: ENV_QUEUE_PREFIX,
        reason: reason.to_owned(),
    };
    if prefix.chars().any(char::is_whitespace) {
        return Err(invalid("must not contain whitespace"));
    }
    if prefix.ends_with(':') {
        return Err(invalid(
            "must not end with `:` (it is added as the separator)",
        ));
    }
    Ok(())
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("redis_url", &redact_url(&self.redis_url))
            .field("log_format", &self.log_format)
            .field("log_filter", &self.log_filter)
            .field("heartbeat_schedule", &self.heartbeat_schedule.source())
            .field("queue_prefix", &self.queue_prefix)
            .finish()
    }
}

/// The URL with any `user:password@` part replaced, safe to log.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}
