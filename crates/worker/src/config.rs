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
/// When the weekly clean-up fires (cron with seconds; needs `DATABASE_URL`).
pub const ENV_CLEANUP_CRON: &str = tenantry_public::jobs::CLEANUP_SCHEDULE.var;
/// When the due reminders fire (cron with seconds; needs `DATABASE_URL`).
pub const ENV_REMINDER_CRON: &str = tenantry_public::jobs::REMINDER_SCHEDULE.var;
/// When the overdue digest checks which organizations have reached 08:00 local time.
pub const ENV_OVERDUE_CRON: &str = tenantry_public::jobs::OVERDUE_SCHEDULE.var;
/// Over how many seconds a fan-out spreads its tenants' jobs.
pub const ENV_FANOUT_WINDOW_SECS: &str = "WORKER_FANOUT_WINDOW_SECS";
/// The default fan-out window: ten minutes.
pub const DEFAULT_FANOUT_WINDOW_SECS: u64 = 600;

/// PostgreSQL URL: where the email outbox lives. Unset: the worker delivers no email.
pub const ENV_DATABASE_URL: &str = "DATABASE_URL";
/// SMTP server for email (lettre URL: `smtp://host:25`, `smtp://user:pass@host:587?tls=required`,
/// `smtps://host:465`).
pub const ENV_SMTP_URL: &str = "SMTP_URL";
/// Without `SMTP_URL`: write each email as an `.eml` file here and log its link (development).
pub const ENV_MAIL_DIR: &str = "MAIL_DIR";
/// The From header of every email.
pub const ENV_MAIL_FROM: &str = "MAIL_FROM";
/// `true` logs each `.eml` file's link and recipient (development only: a live token in a log).
pub const ENV_MAIL_LOG_LINKS: &str = "MAIL_LOG_LINKS";
/// Seconds between sweeps that re-queue undelivered emails (and their minimum age).
pub const ENV_MAIL_SWEEP_SECS: &str = "MAIL_SWEEP_SECS";
/// Where the worker serves `GET /metrics` (e.g. `127.0.0.1:9091`). Unset: no metrics listener.
pub const ENV_METRICS_ADDR: &str = "METRICS_ADDR";

/// Seconds between flushes of API usage counts from Redis to PostgreSQL (needs `DATABASE_URL`).
pub const ENV_USAGE_FLUSH_SECS: &str = "WORKER_USAGE_FLUSH_SECS";
/// The default usage flush interval: a minute.
pub const DEFAULT_USAGE_FLUSH_SECS: u64 = 60;
/// Environment variable with the days a past_due subscription keeps writing before the
/// organization becomes read-only (checked by the daily `billing.period_end` run).
pub const ENV_PAST_DUE_GRACE_DAYS: &str = tenantry_tenant::subscription::PAST_DUE_GRACE_VAR;
/// Default of [`ENV_PAST_DUE_GRACE_DAYS`].
pub const DEFAULT_PAST_DUE_GRACE_DAYS: u32 =
    tenantry_tenant::subscription::DEFAULT_PAST_DUE_GRACE_DAYS;

/// Default From header.
pub const DEFAULT_MAIL_FROM: &str = "Tenantry <no-reply@localhost>";
/// Default sweep interval.
pub const DEFAULT_MAIL_SWEEP_SECS: u64 = 30;

/// Default log filter when `RUST_LOG` is unset.
pub const DEFAULT_LOG_FILTER: &str = "info";
/// Default heartbeat schedule: second 0 of every minute (the `cron` crate format
/// has a leading seconds field: `sec min hour day-of-month month day-of-week [year]`).
pub const DEFAULT_HEARTBEAT_CRON: &str = "0 * * * * *";
/// Every day at 03:00 UTC. Every worker fires it; each part runs once per ISO week (the first
/// firing of the week runs it; later ones retry what failed), claimed in `public.job_runs`.
pub const DEFAULT_CLEANUP_CRON: &str = tenantry_public::jobs::CLEANUP_SCHEDULE.default;
/// Every 15 minutes: each tick reminds of the tasks due within the organization's lead time
/// that were not reminded of yet, so a reminder goes out at most 15 minutes late.
pub const DEFAULT_REMINDER_CRON: &str = tenantry_public::jobs::REMINDER_SCHEDULE.default;
/// Every 15 minutes: an organization's digest goes out at the first tick at or after 08:00 in
/// its time zone, so within 15 minutes of it in every zone (offsets are whole quarter hours).
pub const DEFAULT_OVERDUE_CRON: &str = tenantry_public::jobs::OVERDUE_SCHEDULE.default;
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
    /// `WORKER_CLEANUP_CRON`: when the weekly clean-up fires (default daily 03:00 UTC; it runs
    /// once per ISO week).
    pub cleanup_schedule: cron::Schedule,
    /// `WORKER_REMINDER_CRON`: when the due reminders fire (default every 15 minutes).
    pub reminder_schedule: cron::Schedule,
    /// `WORKER_OVERDUE_CRON`: when the overdue digest looks for organizations past 08:00 local
    /// time (default every 15 minutes; each runs once per local day).
    pub overdue_schedule: cron::Schedule,
    /// `BASE_DOMAIN`, `LINK_SCHEME` (or `PUBLIC_SCHEME`) and `LINK_PORT`, as the server reads
    /// them: the links in the worker's own emails (reminders, digests).
    pub links: tenantry_public::links::Links,
    /// `WORKER_FANOUT_WINDOW_SECS`: over how long a fan-out spreads its tenants (default 600 s).
    pub fanout_window: std::time::Duration,
    /// `WORKER_QUEUE_PREFIX`: prefix of every Redis key and queue (default `tenantry`).
    pub queue_prefix: String,
    /// Email delivery; `None` when `DATABASE_URL` is unset.
    pub mail: Option<MailConfig>,
    /// `WORKER_USAGE_FLUSH_SECS`: how often API usage counts move from Redis to PostgreSQL
    /// (default 60 s; only with `DATABASE_URL`).
    pub usage_flush_every: std::time::Duration,
    /// `BILLING_PAST_DUE_GRACE_DAYS`: how long a past_due subscription keeps writing before the
    /// daily `billing.period_end` run makes the organization read-only (default 7 days, 0–90).
    pub past_due_grace: chrono::Duration,
    /// `METRICS_ADDR`: where `GET /metrics` is served; `None` (the default) serves none, since
    /// only the operator knows which address stays internal.
    pub metrics_addr: Option<String>,
}

/// Where and how the worker delivers email.
#[derive(Clone)]
pub struct MailConfig {
    pub database_url: String,
    pub transport: MailTransport,
    /// A valid mailbox, e.g. `Tenantry <no-reply@example.com>`.
    pub from: String,
    pub sweep_every: std::time::Duration,
    /// `MAIL_LOG_LINKS`: log the links of `.eml` files (default false).
    pub log_links: bool,
}

/// `SMTP_URL` or `MAIL_DIR`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MailTransport {
    Smtp(String),
    Directory(std::path::PathBuf),
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

        let schedule = |var: &'static str, default: &str| {
            let expr = get(var).unwrap_or_else(|| default.to_owned());
            cron::Schedule::from_str(expr.trim()).map_err(|e| ConfigError::Invalid {
                var,
                reason: format!(
                    "`{expr}` is not a cron expression \
                     (format: `sec min hour day-of-month month day-of-week [year]`): {e}"
                ),
            })
        };
        let heartbeat_schedule = schedule(ENV_HEARTBEAT_CRON, DEFAULT_HEARTBEAT_CRON)?;
        let cleanup_schedule = schedule(ENV_CLEANUP_CRON, DEFAULT_CLEANUP_CRON)?;
        let reminder_schedule = schedule(ENV_REMINDER_CRON, DEFAULT_REMINDER_CRON)?;
        let overdue_schedule = schedule(ENV_OVERDUE_CRON, DEFAULT_OVERDUE_CRON)?;
        let links =
            tenantry_public::links::Links::from_lookup(get).map_err(|e| ConfigError::Invalid {
                var: e.var,
                reason: e.message,
            })?;
        let fanout_window = match get(ENV_FANOUT_WINDOW_SECS) {
            None => std::time::Duration::from_secs(DEFAULT_FANOUT_WINDOW_SECS),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|s| *s <= 86_400)
                .map(std::time::Duration::from_secs)
                .ok_or(ConfigError::Invalid {
                    var: ENV_FANOUT_WINDOW_SECS,
                    reason: format!("`{v}` is not a number of seconds from 0 to 86400"),
                })?,
        };

        let queue_prefix = get(ENV_QUEUE_PREFIX)
            .map(|p| p.trim().to_owned())
            .unwrap_or_else(|| DEFAULT_QUEUE_PREFIX.to_owned());
        validate_prefix(&queue_prefix)?;

        let usage_flush_every = match get(ENV_USAGE_FLUSH_SECS) {
            None => std::time::Duration::from_secs(DEFAULT_USAGE_FLUSH_SECS),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|s| (1..=3600).contains(s))
                .map(std::time::Duration::from_secs)
                .ok_or(ConfigError::Invalid {
                    var: ENV_USAGE_FLUSH_SECS,
                    reason: format!("`{v}` is not a number of seconds from 1 to 3600"),
                })?,
        };

        let past_due_grace = match get(ENV_PAST_DUE_GRACE_DAYS) {
            None => chrono::Duration::days(i64::from(DEFAULT_PAST_DUE_GRACE_DAYS)),
            Some(v) => v
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|d| (0..=90).contains(d))
                .map(chrono::Duration::days)
                .ok_or(ConfigError::Invalid {
                    var: ENV_PAST_DUE_GRACE_DAYS,
                    reason: format!("`{v}` is not a number of days from 0 to 90"),
                })?,
        };

        let mail = match get(ENV_DATABASE_URL) {
            None => None,
            Some(database_url) => Some(mail_config(database_url.trim().to_owned(), &get)?),
        };

        Ok(Self {
            redis_url,
            log_format,
            log_filter,
            heartbeat_schedule,
            cleanup_schedule,
            reminder_schedule,
            overdue_schedule,
            links,
            fanout_window,
            queue_prefix,
            mail,
            usage_flush_every,
            past_due_grace,
            metrics_addr: get(ENV_METRICS_ADDR).map(|a| a.trim().to_owned()),
        })
    }
}

fn mail_config(
    database_url: String,
    get: &impl Fn(&str) -> Option<String>,
) -> Result<MailConfig, ConfigError> {
    let transport = match (get(ENV_SMTP_URL), get(ENV_MAIL_DIR)) {
        (Some(url), _) => {
            let url = url.trim().to_owned();
            lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(&url).map_err(|e| {
                ConfigError::Invalid {
                    var: ENV_SMTP_URL,
                    reason: e.to_string(),
                }
            })?;
            MailTransport::Smtp(url)
        }
        (None, Some(dir)) => MailTransport::Directory(dir.trim().into()),
        (None, None) => {
            return Err(ConfigError::Invalid {
                var: ENV_SMTP_URL,
                reason: "with DATABASE_URL set, SMTP_URL (or MAIL_DIR for .eml files in \
                         development) is required"
                    .into(),
            })
        }
    };
    let from = get(ENV_MAIL_FROM).unwrap_or_else(|| DEFAULT_MAIL_FROM.to_owned());
    from.trim()
        .parse::<lettre::message::Mailbox>()
        .map_err(|e| ConfigError::Invalid {
            var: ENV_MAIL_FROM,
            reason: e.to_string(),
        })?;
    let sweep_secs = match get(ENV_MAIL_SWEEP_SECS) {
        None => DEFAULT_MAIL_SWEEP_SECS,
        Some(v) => {
            v.trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or(ConfigError::Invalid {
                    var: ENV_MAIL_SWEEP_SECS,
                    reason: "must be a whole number of seconds, at least 1".into(),
                })?
        }
    };
    let log_links = match get(ENV_MAIL_LOG_LINKS).as_deref().map(str::trim) {
        None | Some("" | "false" | "0") => false,
        Some("true" | "1") => true,
        Some(_) => {
            return Err(ConfigError::Invalid {
                var: ENV_MAIL_LOG_LINKS,
                reason: "must be true or false".into(),
            })
        }
    };
    Ok(MailConfig {
        database_url,
        transport,
        from: from.trim().to_owned(),
        sweep_every: std::time::Duration::from_secs(sweep_secs),
        log_links,
    })
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
            .field("cleanup_schedule", &self.cleanup_schedule.source())
            .field("reminder_schedule", &self.reminder_schedule.source())
            .field("overdue_schedule", &self.overdue_schedule.source())
            .field("links", &self.links)
            .field("queue_prefix", &self.queue_prefix)
            .field(
                "mail",
                &self.mail.as_ref().map(|m| match &m.transport {
                    MailTransport::Smtp(url) => format!("smtp {}", redact_url(url)),
                    MailTransport::Directory(dir) => format!("files in {}", dir.display()),
                }),
            )
            .field("usage_flush_every", &self.usage_flush_every)
            .field("past_due_grace_days", &self.past_due_grace.num_days())
            .field("metrics_addr", &self.metrics_addr)
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
