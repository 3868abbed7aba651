//! Typed configuration, loaded once at start-up from the environment. A missing or invalid
//! variable stops start-up with a message naming it; secrets never print.

use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use std::time::Duration;
use tenantry_public::cluster::ClusterSetting;
use tenantry_public::DomainName;

use crate::cors::CorsPolicy;
use crate::ratelimit::RateLimitSettings;
use crate::throttle::ThrottleSettings;

/// The front-end pages that emailed links open; each posts the link's token back to the API.
pub mod links {
    /// Posts the token to `/auth/verify-email`.
    pub const VERIFY_EMAIL: &str = "/verify-email";
    /// Posts the token and a new password to `/auth/password-reset/confirm`.
    pub const RESET_PASSWORD: &str = "/reset-password";
    /// Posts the token (and, for a new account, a name and password) to `/invitations/accept`.
    pub const ACCEPT_INVITATION: &str = "/accept-invitation";
    /// One task: `/tasks/{id}` (a reminder's link), reading `/api/v1/tasks/{id}`.
    pub const TASKS: &str = tenantry_public::links::TASKS_PATH;
    /// One project report: `/reports/{id}` (the "report ready" email's link), reading
    /// `/api/v1/reports/{id}`.
    pub const REPORTS: &str = "/reports";
    /// The organization's subscription and invoices (subscription notices link here).
    pub const BILLING: &str = tenantry_public::links::BILLING_PATH;
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// A URL scheme this server is reached with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    /// `http` for a base domain that only exists in development (`localhost`, `*.localhost`,
    /// `*.test`: reserved names no certificate authority signs for), `https` for any other.
    pub fn default_for(base_domain: &DomainName) -> Self {
        // One rule for the server's links and the worker's (`tenantry_public::links`).
        if tenantry_public::links::is_development_domain(base_domain) {
            Scheme::Http
        } else {
            Scheme::Https
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything the server needs, read from the environment.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: SecretString,
    /// `CLUSTER`: unset detects a Citus coordinator at start-up; `citus` refuses to start on
    /// anything else (README, "Running on Citus").
    pub cluster: ClusterSetting,
    pub redis_url: SecretString,
    pub base_domain: DomainName,
    pub bind_addr: String,
    pub jwt_secret: SecretString,
    /// The key being rotated out: tokens it signed stay valid until they expire.
    pub jwt_previous_secret: Option<SecretString>,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub log_format: LogFormat,
    pub db_pool_size: usize,
    pub db_pool_timeout: Duration,
    pub max_body_bytes: usize,
    /// The largest uploaded file (`DOCUMENT_MAX_BYTES`, default 25 MiB); larger uploads are 413
    /// and nothing is stored.
    pub document_max_bytes: usize,
    pub http_workers: Option<usize>,
    /// How often the route table (every tenant's hosts, in memory) is reloaded whole, and how
    /// long a host looked up outside it is remembered (`ROUTING_CACHE_TTL_SECS`, default 30).
    pub routing_cache_ttl: Duration,
    /// Hosts outside the route table remembered after a lookup, found and unknown apart
    /// (`ROUTING_CACHE_SIZE`, default 100,000). The route table itself holds every company.
    pub routing_cache_size: u64,
    /// Database lookups of hosts outside the route table per second (`ROUTING_MISSES_PER_SEC`,
    /// default 200; 0 is unbounded): past it such a host answers 503, and every tenant in the
    /// table is unaffected.
    pub routing_misses_per_sec: u32,
    /// How long a just-spent refresh token may be presented again and get the same successor
    /// (`REFRESH_REUSE_GRACE_SECS`, default 10; 0 turns the grace off).
    pub refresh_grace: Duration,
    /// Prefix of every Redis key the server writes (`REDIS_PREFIX`, default `tenantry`).
    pub redis_prefix: String,
    /// Failed-login throttling (`LOGIN_FAILURES_PER_ACCOUNT`, `LOGIN_FAILURES_PER_IP`,
    /// `LOGIN_THROTTLE_WINDOW_SECS`).
    pub login_throttle: ThrottleSettings,
    /// Password-reset requests (`PASSWORD_RESETS_PER_ACCOUNT`, `PASSWORD_RESETS_PER_IP`, per hour).
    pub reset_throttle: ThrottleSettings,
    /// Password-reset requests per hour on one organization's hosts (`PASSWORD_RESETS_PER_ORG`,
    /// default 100), on top of `reset_throttle`.
    pub resets_per_org: u32,
    /// Invitations sent per hour to one address, by any organization (`per_account`:
    /// `INVITATIONS_PER_ADDRESS`, default 5) and by one organization (`per_ip`:
    /// `INVITATIONS_PER_ORG`, default 100).
    pub invitation_throttle: ThrottleSettings,
    /// Sign-ups per hour per client (`SIGNUP_RATE_PER_HOUR`, default 20) and in all
    /// (`SIGNUP_GLOBAL_RATE_PER_HOUR`, default 2000); `None` when the per-client rate is 0.
    pub signup_throttle: Option<ThrottleSettings>,
    /// API rate limits per plan and per anonymous client (`RATE_LIMITS`, default `on`;
    /// `ANON_REQUESTS_PER_HOUR`, default 300; `RATE_LIMIT_KEY_SHARE_PERCENT`, default 50).
    pub rate_limits: RateLimitSettings,
    /// The scheme clients reach this server with, in front of any TLS-terminating proxy
    /// (`PUBLIC_SCHEME`; [`Scheme::default_for`] the base domain). `https` sends
    /// `Strict-Transport-Security` on every answer.
    pub public_scheme: Scheme,
    /// Scheme of links in emails (`LINK_SCHEME`; defaults to `PUBLIC_SCHEME`).
    pub link_scheme: Scheme,
    /// Port of links in emails (`LINK_PORT`; none by default, i.e. the scheme's default port).
    pub link_port: Option<u16>,
    /// Browser origins that may call the API (`CORS_ALLOWED_ORIGINS`, comma-separated origins
    /// and `https://*.example.com` patterns; unset: CORS off) and whether with credentials
    /// (`CORS_ALLOW_CREDENTIALS`, default off).
    pub cors: CorsPolicy,
    /// Serves `/api/v1/_bench/*` routes used by `just bench`. Never enable in production.
    pub bench_routes: bool,
    /// Where `GET /metrics` (Prometheus text) is served, apart from the API (`METRICS_ADDR`,
    /// e.g. `127.0.0.1:9090`). Unset: no metrics listener and no recorder, because metrics
    /// belong on an address the operator chose to keep internal, never on the API by default.
    pub metrics_addr: Option<String>,
    /// `BILLING_WEBHOOK_SECRET`: the billing provider's webhook signing secret. Unset, the
    /// webhook route answers 404 (billing is not served).
    pub billing_webhook_secret: Option<SecretString>,
    /// `BILLING_WEBHOOK_PREVIOUS_SECRET`: also accepted while the provider's secret is rotated.
    pub billing_webhook_previous_secret: Option<SecretString>,
}

/// A configuration problem, naming the variable.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

fn err(var: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        message: message.into(),
    }
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads configuration through `get`, so tests need not touch the process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |var: &'static str| {
            get(var)
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| err(var, "is required but not set"))
        };
        let parsed = |var: &'static str, default: u64| -> Result<u64, ConfigError> {
            match get(var) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| err(var, format!("must be a whole number, got {v:?}"))),
            }
        };

        let base_domain = get("BASE_DOMAIN").unwrap_or_else(|| "localhost".into());
        let base_domain = DomainName::parse(&base_domain)
            .map_err(|e| err("BASE_DOMAIN", format!("{base_domain:?} {e}")))?;
        let jwt_secret = required("JWT_SECRET")?;
        if jwt_secret.len() < 32 {
            return Err(err("JWT_SECRET", "must be at least 32 bytes"));
        }
        let jwt_previous_secret = get("JWT_PREVIOUS_SECRET").filter(|v| !v.trim().is_empty());
        if jwt_previous_secret.as_ref().is_some_and(|s| s.len() < 32) {
            return Err(err("JWT_PREVIOUS_SECRET", "must be at least 32 bytes"));
        }
        let cluster = ClusterSetting::parse(&get("CLUSTER").unwrap_or_default())
            .map_err(|m| err("CLUSTER", m))?;
        let log_format = match get("LOG_FORMAT").as_deref().map(str::trim) {
            None | Some("") | Some("pretty") | Some("text") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(err(
                    "LOG_FORMAT",
                    format!("must be json or pretty, got {other:?}"),
                ))
            }
        };
        let db_pool_size = parsed("DB_POOL_SIZE", 16)?;
        if db_pool_size == 0 {
            return Err(err("DB_POOL_SIZE", "must be at least 1"));
        }
        let http_workers = match parsed("HTTP_WORKERS", 0)? {
            0 => None,
            n => Some(n as usize),
        };
        let scheme = |var: &'static str, default: Scheme| match get(var).as_deref().map(str::trim) {
            None | Some("") => Ok(default),
            Some("http") => Ok(Scheme::Http),
            Some("https") => Ok(Scheme::Https),
            Some(other) => Err(err(var, format!("must be http or https, got {other:?}"))),
        };
        let public_scheme = scheme("PUBLIC_SCHEME", Scheme::default_for(&base_domain))?;
        // Emailed links open this server's hosts, so they use its scheme unless `LINK_SCHEME`
        // says otherwise (the pages they open are served some other way).
        let link_scheme = scheme("LINK_SCHEME", public_scheme)?;
        let flag = |var: &'static str| match get(var).as_deref().map(str::trim) {
            None | Some("" | "false" | "0") => Ok(false),
            Some("true" | "1") => Ok(true),
            Some(other) => Err(err(var, format!("must be true or false, got {other:?}"))),
        };
        let cors = CorsPolicy::parse(&get("CORS_ALLOWED_ORIGINS").unwrap_or_default())
            .map_err(|message| err("CORS_ALLOWED_ORIGINS", message))?;
        let cors = match flag("CORS_ALLOW_CREDENTIALS")? {
            false => cors,
            true if cors.is_enabled() => cors.with_credentials(),
            true => {
                return Err(err(
                    "CORS_ALLOW_CREDENTIALS",
                    "is true but CORS_ALLOWED_ORIGINS lists no origin",
                ))
            }
        };
        let link_port =
            match get("LINK_PORT").as_deref().map(str::trim) {
                None | Some("") => None,
                Some(v) => Some(v.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                    err("LINK_PORT", format!("must be a port number, got {v:?}"))
                })?),
            };
        let redis_prefix = get("REDIS_PREFIX")
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "tenantry".into());
        if !redis_prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_:.".contains(&b))
        {
            return Err(err(
                "REDIS_PREFIX",
                "may only contain letters, digits, '-', '_', ':' and '.'",
            ));
        }
        let at_least_one = |var: &'static str, default: u64| -> Result<u32, ConfigError> {
            match parsed(var, default)? {
                0 => Err(err(var, "must be at least 1")),
                n => u32::try_from(n).map_err(|_| err(var, "is too large")),
            }
        };
        let login_throttle = ThrottleSettings {
            per_account: at_least_one("LOGIN_FAILURES_PER_ACCOUNT", 5)?,
            per_ip: at_least_one("LOGIN_FAILURES_PER_IP", 50)?,
            window: Duration::from_secs(u64::from(at_least_one(
                "LOGIN_THROTTLE_WINDOW_SECS",
                900,
            )?)),
        };
        // Sign-ups per client address and, across all clients, per hour. `0` per client turns
        // the sign-up throttle off (benchmarks and load tests that create thousands of tenants).
        let signup_throttle = match parsed("SIGNUP_RATE_PER_HOUR", 20)? {
            0 => None,
            per_client => Some(ThrottleSettings {
                per_account: at_least_one("SIGNUP_GLOBAL_RATE_PER_HOUR", 2000)?,
                per_ip: u32::try_from(per_client)
                    .map_err(|_| err("SIGNUP_RATE_PER_HOUR", "is too large"))?,
                window: Duration::from_secs(3600),
            }),
        };
        let reset_throttle = ThrottleSettings {
            per_account: at_least_one("PASSWORD_RESETS_PER_ACCOUNT", 3)?,
            per_ip: at_least_one("PASSWORD_RESETS_PER_IP", 20)?,
            window: Duration::from_secs(3600),
        };
        let resets_per_org = at_least_one("PASSWORD_RESETS_PER_ORG", 100)?;
        let invitation_throttle = ThrottleSettings {
            per_account: at_least_one("INVITATIONS_PER_ADDRESS", 5)?,
            per_ip: at_least_one("INVITATIONS_PER_ORG", 100)?,
            window: Duration::from_secs(3600),
        };
        let rate_limits = RateLimitSettings {
            enabled: match get("RATE_LIMITS").as_deref().map(str::trim) {
                None | Some("" | "on" | "true" | "1") => true,
                Some("off" | "false" | "0") => false,
                Some(other) => {
                    return Err(err(
                        "RATE_LIMITS",
                        format!("must be on or off, got {other:?}"),
                    ))
                }
            },
            anonymous_per_hour: at_least_one("ANON_REQUESTS_PER_HOUR", 300)?,
            key_share_percent: match at_least_one("RATE_LIMIT_KEY_SHARE_PERCENT", 50)? {
                n @ 1..=100 => n,
                _ => {
                    return Err(err(
                        "RATE_LIMIT_KEY_SHARE_PERCENT",
                        "must be between 1 and 100",
                    ))
                }
            },
        };
        let secret = |var: &'static str| -> Result<Option<SecretString>, ConfigError> {
            match get(var)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
            {
                None => Ok(None),
                Some(v) if v.len() < 16 => Err(err(var, "must be at least 16 bytes")),
                Some(v) => Ok(Some(SecretString::from(v))),
            }
        };
        let billing_webhook_secret = secret("BILLING_WEBHOOK_SECRET")?;
        let billing_webhook_previous_secret = secret("BILLING_WEBHOOK_PREVIOUS_SECRET")?;
        if billing_webhook_previous_secret.is_some() && billing_webhook_secret.is_none() {
            return Err(err(
                "BILLING_WEBHOOK_PREVIOUS_SECRET",
                "is set but BILLING_WEBHOOK_SECRET is not",
            ));
        }
        Ok(Self {
            billing_webhook_secret,
            billing_webhook_previous_secret,
            rate_limits,
            redis_prefix,
            login_throttle,
            signup_throttle,
            reset_throttle,
            resets_per_org,
            invitation_throttle,
            public_scheme,
            link_scheme,
            link_port,
            cors,
            cluster,
            database_url: SecretString::from(required("DATABASE_URL")?),
            redis_url: SecretString::from(required("REDIS_URL")?),
            base_domain,
            bind_addr: get("BIND_ADDR").unwrap_or_else(|| "127.0.0.1:8080".into()),
            jwt_secret: SecretString::from(jwt_secret),
            jwt_previous_secret: jwt_previous_secret.map(SecretString::from),
            jwt_issuer: get("JWT_ISSUER").unwrap_or_else(|| "tenantry".into()),
            jwt_audience: get("JWT_AUDIENCE").unwrap_or_else(|| "tenantry-api".into()),
            log_format,
            db_pool_size: db_pool_size as usize,
            db_pool_timeout: Duration::from_millis(parsed("DB_POOL_TIMEOUT_MS", 1000)?),
            max_body_bytes: parsed("MAX_BODY_BYTES", 1024 * 1024)? as usize,
            document_max_bytes: parsed("DOCUMENT_MAX_BYTES", 25 * 1024 * 1024)? as usize,
            http_workers,
            routing_cache_ttl: Duration::from_secs(parsed("ROUTING_CACHE_TTL_SECS", 30)?),
            routing_cache_size: parsed("ROUTING_CACHE_SIZE", 100_000)?,
            routing_misses_per_sec: u32::try_from(parsed("ROUTING_MISSES_PER_SEC", 200)?)
                .map_err(|_| err("ROUTING_MISSES_PER_SEC", "must be at most 4294967295"))?,
            refresh_grace: Duration::from_secs(parsed("REFRESH_REUSE_GRACE_SECS", 10)?),
            bench_routes: matches!(get("TENANTRY_BENCH_ROUTES").as_deref(), Some("1" | "true")),
            metrics_addr: get("METRICS_ADDR")
                .map(|a| a.trim().to_owned())
                .filter(|a| !a.is_empty()),
        })
    }

    /// A link for an email: `{scheme}://{host}[:port]{path}?token={token}` (`path` is one of
    /// [`links`]), where `host` is one of
    /// the Host names this server answers (the tenant's, or the base domain).
    pub fn link(&self, host: &str, path: &str, token: &str) -> String {
        format!("{}?token={token}", self.page_link(host, path))
    }

    /// A link for an email that carries no token: `{scheme}://{host}[:port]{path}`, the host as
    /// for [`link`](Self::link).
    pub fn page_link(&self, host: &str, path: &str) -> String {
        match self.link_port {
            Some(port) => format!("{}://{host}:{port}{path}", self.link_scheme),
            None => format!("{}://{host}{path}", self.link_scheme),
        }
    }

    pub fn database_url(&self) -> &str {
        self.database_url.expose_secret()
    }

    pub fn redis_url(&self) -> &str {
        self.redis_url.expose_secret()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn missing_variables_are_named() {
        let e = Settings::from_lookup(lookup(&[
            ("REDIS_URL", "redis://x"),
            ("JWT_SECRET", SECRET),
        ]))
        .expect_err("DATABASE_URL is missing");
        assert_eq!(e.var, "DATABASE_URL");
        let e = Settings::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://x"),
            ("REDIS_URL", "r"),
        ]))
        .expect_err("JWT_SECRET is missing");
        assert_eq!(e.var, "JWT_SECRET");
        let e = Settings::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://x"),
            ("REDIS_URL", "r"),
            ("JWT_SECRET", SECRET),
            ("DB_POOL_SIZE", "many"),
        ]))
        .expect_err("bad number");
        assert_eq!(e.var, "DB_POOL_SIZE");
    }

    /// The required variables and `extra`.
    fn with(extra: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let mut pairs = vec![
            ("DATABASE_URL", "postgres://x"),
            ("REDIS_URL", "redis://x"),
            ("JWT_SECRET", SECRET),
        ];
        pairs.extend_from_slice(extra);
        Settings::from_lookup(lookup(&pairs))
    }

    #[test]
    fn public_scheme_defaults_by_base_domain_and_link_scheme_follows() {
        for (base, expected) in [
            (None, Scheme::Http),
            (Some("localhost"), Scheme::Http),
            (Some("acme.localhost"), Scheme::Http),
            (Some("example.test"), Scheme::Http),
            (Some("example.com"), Scheme::Https),
            (Some("testing.example.com"), Scheme::Https),
            (Some("localhost.example.com"), Scheme::Https),
        ] {
            let s = with(
                &base
                    .map(|b| ("BASE_DOMAIN", b))
                    .into_iter()
                    .collect::<Vec<_>>(),
            )
            .expect("valid");
            assert_eq!(s.public_scheme, expected, "{base:?}");
            assert_eq!(s.link_scheme, expected, "{base:?}");
        }
        let s =
            with(&[("BASE_DOMAIN", "example.test"), ("PUBLIC_SCHEME", "https")]).expect("valid");
        assert_eq!(s.public_scheme, Scheme::Https);
        assert_eq!(s.link_scheme, Scheme::Https, "links follow PUBLIC_SCHEME");
        assert_eq!(
            s.link("acme.example.test", links::VERIFY_EMAIL, "t"),
            "https://acme.example.test/verify-email?token=t"
        );
        let s = with(&[("BASE_DOMAIN", "example.com"), ("LINK_SCHEME", "http")]).expect("valid");
        assert_eq!(s.public_scheme, Scheme::Https);
        assert_eq!(s.link_scheme, Scheme::Http, "LINK_SCHEME still wins");
    }

    #[test]
    fn invalid_schemes_are_named() {
        for var in ["PUBLIC_SCHEME", "LINK_SCHEME"] {
            let e = with(&[(var, "ftp")]).expect_err(var);
            assert_eq!(e.var, var);
            assert!(e.to_string().contains("\"ftp\""), "{e}");
        }
    }

    #[test]
    fn cors_is_off_unless_origins_are_listed() {
        let s = with(&[]).expect("valid");
        assert!(!s.cors.is_enabled());
        let s = with(&[("CORS_ALLOWED_ORIGINS", "  ")]).expect("valid");
        assert!(!s.cors.is_enabled());
        let s = with(&[(
            "CORS_ALLOWED_ORIGINS",
            "https://app.example.com,https://*.example.com",
        )])
        .expect("valid");
        assert!(s.cors.is_enabled());
        assert!(!s.cors.allows_credentials());
        assert!(s.cors.allows("https://acme.example.com"));
        assert!(!s.cors.allows("https://evilexample.com"));
    }

    #[test]
    fn invalid_cors_origins_refuse_start_up_naming_the_variable() {
        for bad in [
            "*",
            "https://app.example.com/",
            "app.example.com",
            "https://a.*.example.com",
            "https://app.example.com,,https://b.example.com",
        ] {
            let e = with(&[("CORS_ALLOWED_ORIGINS", bad)]).expect_err(bad);
            assert_eq!(e.var, "CORS_ALLOWED_ORIGINS", "{bad}");
            assert!(e.to_string().starts_with("CORS_ALLOWED_ORIGINS: "), "{e}");
        }
    }

    #[test]
    fn cors_credentials_need_origins_and_a_boolean() {
        let origins = ("CORS_ALLOWED_ORIGINS", "https://app.example.com");
        let s = with(&[origins, ("CORS_ALLOW_CREDENTIALS", "true")]).expect("valid");
        assert!(s.cors.allows_credentials());
        let s = with(&[origins, ("CORS_ALLOW_CREDENTIALS", "false")]).expect("valid");
        assert!(!s.cors.allows_credentials());
        let e = with(&[origins, ("CORS_ALLOW_CREDENTIALS", "yes")]).expect_err("not a boolean");
        assert_eq!(e.var, "CORS_ALLOW_CREDENTIALS");
        let e = with(&[("CORS_ALLOW_CREDENTIALS", "true")]).expect_err("no origins");
        assert_eq!(e.var, "CORS_ALLOW_CREDENTIALS");
    }

    #[test]
    fn rate_limits_are_on_by_default_and_named_when_invalid() {
        let s = with(&[]).expect("valid");
        assert!(s.rate_limits.enabled);
        assert_eq!(s.rate_limits.anonymous_per_hour, 300);
        assert_eq!(s.rate_limits.key_share_percent, 50);
        let s = with(&[("RATE_LIMITS", "off"), ("ANON_REQUESTS_PER_HOUR", "7")]).expect("valid");
        assert!(!s.rate_limits.enabled);
        assert_eq!(s.rate_limits.anonymous_per_hour, 7);
        for (var, bad) in [
            ("RATE_LIMITS", "sometimes"),
            ("ANON_REQUESTS_PER_HOUR", "0"),
            ("RATE_LIMIT_KEY_SHARE_PERCENT", "101"),
        ] {
            let e = with(&[(var, bad)]).expect_err(bad);
            assert_eq!(e.var, var);
        }
    }

    #[test]
    fn defaults_and_secrets() {
        let s = Settings::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://u:pw@h/db"),
            ("REDIS_URL", "redis://h"),
            ("JWT_SECRET", SECRET),
            ("BASE_DOMAIN", "Example.COM."),
        ]))
        .expect("valid");
        assert_eq!(s.base_domain.as_str(), "example.com");
        assert_eq!(s.bind_addr, "127.0.0.1:8080");
        assert_eq!(s.max_body_bytes, 1024 * 1024);
        assert_eq!(
            s.metrics_addr, None,
            "no metrics listener unless METRICS_ADDR is set"
        );
        let printed = format!("{s:?}");
        assert!(
            !printed.contains(SECRET) && !printed.contains("pw@"),
            "{printed}"
        );
    }
}
