//! Failed-login throttling in Redis: fixed windows counted per account (the submitted email,
//! hashed, whether or not an account exists) and per client IP. While either counter is at its
//! limit, logins answer 429 with `Retry-After` (the window's remaining time) without checking the
//! password. Windows expire on their own, so there is never a permanent lockout; a successful
//! login clears the account's counter.
//!
//! If Redis is unavailable the throttle lets logins through and logs an error: an outage of the
//! cache must not lock every user out.

use redis::aio::ConnectionManager;
use redis::Script;
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::time::Duration;
use tokio::sync::OnceCell;

/// Limits, from configuration.
#[derive(Debug, Clone)]
pub struct ThrottleSettings {
    /// Failures per account (email) and window before logins for it are refused.
    pub per_account: u32,
    /// Failures per client IP and window before logins from it are refused.
    pub per_ip: u32,
    pub window: Duration,
}

pub struct LoginThrottle {
    /// What is counted, in the Redis keys: `login-failures` or `password-resets`.
    what: &'static str,
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    prefix: String,
    settings: ThrottleSettings,
    check: Script,
    fail: Script,
}

/// Whether a login may be attempted now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Too many failures: try again in this many seconds.
    Limited {
        retry_after: u64,
    },
}

/// Returns the largest remaining time (ms) among the keys whose counter reached its limit, or -1.
const CHECK: &str = r"
local wait = -1
for i, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  if count >= tonumber(ARGV[i]) then
    local ttl = redis.call('PTTL', key)
    if ttl > wait then wait = ttl end
  end
end
return wait
";

/// Counts one failure on every key; a new counter starts its window.
const FAIL: &str = r"
for _, key in ipairs(KEYS) do
  if redis.call('INCR', key) == 1 then
    redis.call('PEXPIRE', key, ARGV[1])
  end
end
return 1
";

impl LoginThrottle {
    pub fn new(client: redis::Client, prefix: &str, settings: ThrottleSettings) -> Self {
        Self::counting("login-failures", client, prefix, settings)
    }

    /// The same fixed windows for another kind of event (e.g. password-reset requests, each
    /// recorded with [`LoginThrottle::failed`]).
    pub fn counting(
        what: &'static str,
        client: redis::Client,
        prefix: &str,
        settings: ThrottleSettings,
    ) -> Self {
        Self {
            what,
            client,
            conn: OnceCell::new(),
            prefix: prefix.to_owned(),
            settings,
            check: Script::new(CHECK),
            fail: Script::new(FAIL),
        }
    }

    async fn conn(&self) -> Result<ConnectionManager, redis::RedisError> {
        self.conn
            .get_or_try_init(|| ConnectionManager::new(self.client.clone()))
            .await
            .cloned()
    }

    fn account_key(&self, email: &str) -> String {
        let digest = Sha256::digest(email.trim().to_lowercase().as_bytes());
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        format!("{}:{}:account:{hex}", self.prefix, self.what)
    }

    fn ip_key(&self, ip: IpAddr) -> String {
        format!("{}:{}:ip:{ip}", self.prefix, self.what)
    }

    fn keys(&self, email: &str, ip: Option<IpAddr>) -> (Vec<String>, Vec<u32>) {
        let mut keys = vec![self.account_key(email)];
        let mut limits = vec![self.settings.per_account];
        if let Some(ip) = ip {
            keys.push(self.ip_key(ip));
            limits.push(self.settings.per_ip);
        }
        (keys, limits)
    }

    /// May `email` log in from `ip` now?
    pub async fn check(&self, email: &str, ip: Option<IpAddr>) -> Verdict {
        let (keys, limits) = self.keys(email, ip);
        let result: Result<i64, redis::RedisError> = async {
            let mut conn = self.conn().await?;
            let mut invocation = self.check.prepare_invoke();
            for key in &keys {
                invocation.key(key);
            }
            for limit in &limits {
                invocation.arg(*limit);
            }
            invocation.invoke_async(&mut conn).await
        }
        .await;
        match result {
            Ok(ms) if ms > 0 => Verdict::Limited {
                retry_after: (ms as u64).div_ceil(1000),
            },
            Ok(_) => Verdict::Allowed,
            Err(e) => {
                tracing::error!(error = %e, "login throttle unavailable; allowing the attempt");
                Verdict::Allowed
            }
        }
    }

    /// Records a failed login for `email` and `ip`.
    pub async fn failed(&self, email: &str, ip: Option<IpAddr>) {
        let (keys, _) = self.keys(email, ip);
        let window_ms = self.settings.window.as_millis() as u64;
        let result: Result<i64, redis::RedisError> = async {
            let mut conn = self.conn().await?;
            let mut invocation = self.fail.prepare_invoke();
            for key in &keys {
                invocation.key(key);
            }
            invocation.arg(window_ms);
            invocation.invoke_async(&mut conn).await
        }
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "could not record a failed login");
        }
    }

    /// Clears the account's failures after a successful login (the IP's stay).
    pub async fn succeeded(&self, email: &str) {
        let key = self.account_key(email);
        let result: Result<(), redis::RedisError> = async {
            let mut conn = self.conn().await?;
            redis::cmd("DEL").arg(&key).query_async(&mut conn).await
        }
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "could not clear login failures");
        }
    }
}
