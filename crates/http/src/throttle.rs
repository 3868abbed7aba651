//! Failed-login throttling in Redis: fixed windows counted per account (the submitted email,
//! hashed, whether or not an account exists) and per client (the IP; for IPv6 its /64, which one
//! client controls as a whole). While either counter is at its limit, logins answer 429 with
//! `Retry-After` (the window's remaining time) without checking the password. Windows expire on
//! their own, so there is never a permanent lockout.
//!
//! An attempt is counted *before* the password is checked, in the same script that compares the
//! counters with their limits ([`LoginThrottle::attempt`]): of N parallel guesses at most the
//! limit get through, however long hashing takes. A successful login gives its count back
//! ([`LoginThrottle::succeeded`]: the account's counter is cleared, the client's decremented);
//! a failure keeps it.
//!
//! If Redis is unavailable or slow the throttle lets logins through after at most
//! [`REDIS_BUDGET`] per call, logs an error and counts a fail-open (also exported as
//! `throttle_fail_opens_total`): an outage of the cache must neither lock every user out nor
//! make every login hang. After such a failure the throttle does not ask Redis again for
//! [`REDIS_COOL_DOWN`] (every call fails open at once), so during an outage a request pays the
//! budget at most once per cool-down, not on every call. Every decision is counted in
//! `throttle_decisions_total`.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::error::ApiError;
use crate::metrics;

/// Limits, from configuration.
#[derive(Debug, Clone)]
pub struct ThrottleSettings {
    /// Failures per account (email) and window before logins for it are refused.
    pub per_account: u32,
    /// Failures per client IP and window before logins from it are refused.
    pub per_ip: u32,
    pub window: Duration,
}

/// The most time one throttle call may spend on Redis before it fails open.
pub const REDIS_BUDGET: Duration = Duration::from_millis(50);

/// After a call failed, how long every call fails open without asking Redis; the first call
/// after it tries Redis again.
pub const REDIS_COOL_DOWN: Duration = Duration::from_secs(1);

/// One lazily connected Redis connection with the fail-open rule every limiter in this crate
/// follows: each call within [`REDIS_BUDGET`], a failure logged and counted (as `what`, the
/// `throttle` label of `throttle_fail_opens_total`), then [`REDIS_COOL_DOWN`] without asking.
/// Shared by the throttles here and the rate limiter (`ratelimit`).
pub struct RedisGuard {
    /// What is limited, in logs, metrics and the Redis keys (`login-failures`, `rate-limit`, …).
    what: &'static str,
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    /// How many calls let the attempt through because Redis did not answer in time.
    fail_opens: AtomicU64,
    /// Until when calls fail open without asking Redis (set when a call failed).
    cool_down_until: Mutex<Option<Instant>>,
}

pub struct LoginThrottle {
    redis: RedisGuard,
    prefix: String,
    settings: ThrottleSettings,
    attempt: Script,
    refund: Script,
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

/// Check and count in one step. When any counter already reached its limit, returns the largest
/// remaining time (ms) among those and counts nothing; otherwise counts one on every key (a new
/// counter starts its window, ARGV[#KEYS + 1] ms) and returns -1.
const ATTEMPT: &str = r"
local wait = -1
for i, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  if count >= tonumber(ARGV[i]) then
    local ttl = redis.call('PTTL', key)
    if ttl > wait then wait = ttl end
  end
end
if wait >= 0 then return wait end
for _, key in ipairs(KEYS) do
  if redis.call('INCR', key) == 1 then
    redis.call('PEXPIRE', key, ARGV[#KEYS + 1])
  end
end
return -1
";

/// Gives back one counted attempt: the account counter (KEYS[1]) is cleared, the client's
/// (KEYS[2], if any) decremented, never below zero.
const REFUND: &str = r"
redis.call('DEL', KEYS[1])
if KEYS[2] and tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then
  redis.call('DECR', KEYS[2])
end
return 1
";

impl RedisGuard {
    pub fn new(what: &'static str, client: redis::Client) -> Self {
        Self {
            what,
            client,
            conn: OnceCell::new(),
            fail_opens: AtomicU64::new(0),
            cool_down_until: Mutex::new(None),
        }
    }

    /// The connection, made lazily (no I/O here): connecting and every answer are bounded by
    /// [`REDIS_BUDGET`], and a lost connection is re-established in the background.
    pub async fn conn(&self) -> Result<ConnectionManager, redis::RedisError> {
        self.conn
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(REDIS_BUDGET))
                    .set_response_timeout(Some(REDIS_BUDGET))
                    .set_number_of_retries(1);
                ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            })
            .await
            .cloned()
    }

    /// Runs one Redis call within [`REDIS_BUDGET`]; a failure or a timeout is logged, counted and
    /// answered with `None` (the caller fails open), and starts a [`REDIS_COOL_DOWN`] during
    /// which calls are answered with `None` at once.
    pub async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, redis::RedisError>>,
    ) -> Option<T> {
        if self.cooling_down() {
            self.fail_opens.fetch_add(1, Ordering::Relaxed);
            ::metrics::counter!(metrics::THROTTLE_FAIL_OPENS, "throttle" => self.what).increment(1);
            tracing::debug!(
                what = self.what,
                "throttle cooling down after a Redis failure; failing open"
            );
            return None;
        }
        let error = match tokio::time::timeout(REDIS_BUDGET, call).await {
            Ok(Ok(value)) => return Some(value),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} ms", REDIS_BUDGET.as_millis()),
        };
        self.fail_opens.fetch_add(1, Ordering::Relaxed);
        ::metrics::counter!(metrics::THROTTLE_FAIL_OPENS, "throttle" => self.what).increment(1);
        *self.cool_down() = Some(Instant::now() + REDIS_COOL_DOWN);
        tracing::error!(
            %error,
            what = self.what,
            cool_down_ms = REDIS_COOL_DOWN.as_millis() as u64,
            "throttle unavailable; failing open"
        );
        None
    }

    fn cool_down(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        // Holding an instant, the lock cannot be left half-changed by a panic: keep using it.
        self.cool_down_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a recent failure says not to ask Redis yet.
    fn cooling_down(&self) -> bool {
        let mut until = self.cool_down();
        match *until {
            Some(t) if Instant::now() < t => true,
            Some(_) => {
                *until = None;
                false
            }
            None => false,
        }
    }

    /// How many calls failed open since start (for metrics and tests).
    pub fn fail_opens(&self) -> u64 {
        self.fail_opens.load(Ordering::Relaxed)
    }
}

impl LoginThrottle {
    pub fn new(client: redis::Client, prefix: &str, settings: ThrottleSettings) -> Self {
        Self::counting("login-failures", client, prefix, settings)
    }

    /// The same fixed windows for another kind of event (e.g. password-reset requests, each
    /// counted by [`LoginThrottle::attempt`] and never given back).
    pub fn counting(
        what: &'static str,
        client: redis::Client,
        prefix: &str,
        settings: ThrottleSettings,
    ) -> Self {
        Self {
            redis: RedisGuard::new(what, client),
            prefix: prefix.to_owned(),
            settings,
            attempt: Script::new(ATTEMPT),
            refund: Script::new(REFUND),
        }
    }

    /// How many calls failed open since start (for metrics and tests).
    pub fn fail_opens(&self) -> u64 {
        self.redis.fail_opens()
    }

    fn account_key(&self, email: &str) -> String {
        self.scope_key("account", email)
    }

    /// The counter of `value` (any case, hashed: no address or id in Redis) in `scope`.
    fn scope_key(&self, scope: &str, value: &str) -> String {
        let digest = Sha256::digest(value.trim().to_lowercase().as_bytes());
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        format!("{}:{}:{scope}:{hex}", self.prefix, self.redis.what)
    }

    fn ip_key(&self, ip: IpAddr) -> String {
        format!("{}:{}:ip:{}", self.prefix, self.redis.what, client_of(ip))
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

    /// Counts an attempt for `email` from `ip`, unless either counter is at its limit: then the
    /// attempt must be refused (nothing is counted). Call it before checking the password.
    pub async fn attempt(&self, email: &str, ip: Option<IpAddr>) -> Verdict {
        self.attempt_with(email, ip, &[]).await
    }

    /// [`attempt`](Self::attempt) with more counters: each `(scope, value, limit)` is one more
    /// counter (e.g. `("org", company id, 100)`), all counted together or none.
    pub async fn attempt_with(
        &self,
        email: &str,
        ip: Option<IpAddr>,
        scopes: &[(&str, &str, u32)],
    ) -> Verdict {
        let (mut keys, mut limits) = self.keys(email, ip);
        for (scope, value, limit) in scopes {
            keys.push(self.scope_key(scope, value));
            limits.push(*limit);
        }
        self.count(keys, limits).await
    }

    async fn count(&self, keys: Vec<String>, limits: Vec<u32>) -> Verdict {
        let window_ms = self.settings.window.as_millis() as u64;
        let result = self
            .redis
            .bounded(async {
                let mut conn = self.redis.conn().await?;
                let mut invocation = self.attempt.prepare_invoke();
                for key in &keys {
                    invocation.key(key);
                }
                for limit in &limits {
                    invocation.arg(*limit);
                }
                invocation.arg(window_ms);
                invocation.invoke_async::<i64>(&mut conn).await
            })
            .await;
        let verdict = match result {
            Some(ms) if ms >= 0 => Verdict::Limited {
                retry_after: (ms as u64).div_ceil(1000).max(1),
            },
            _ => Verdict::Allowed,
        };
        let decision = match verdict {
            Verdict::Allowed => "allowed",
            Verdict::Limited { .. } => "limited",
        };
        ::metrics::counter!(
            metrics::THROTTLE_DECISIONS,
            "throttle" => self.redis.what,
            "decision" => decision
        )
        .increment(1);
        verdict
    }

    /// [`attempt`](Self::attempt) as an answer: 429 with `Retry-After` when limited. For every
    /// password check, not only logins (password change, ownership-transfer confirmation).
    pub async fn admit(&self, email: &str, ip: Option<IpAddr>) -> Result<(), ApiError> {
        match self.attempt(email, ip).await {
            Verdict::Allowed => Ok(()),
            Verdict::Limited { retry_after } => Err(ApiError::TooManyRequests {
                detail: "too many failed password checks; try again later".into(),
                retry_after,
            }),
        }
    }

    /// Gives back a successful login's attempt: the account's counter is cleared, the client's
    /// decremented.
    pub async fn succeeded(&self, email: &str, ip: Option<IpAddr>) {
        let (keys, _) = self.keys(email, ip);
        self.redis
            .bounded(async {
                let mut conn = self.redis.conn().await?;
                let mut invocation = self.refund.prepare_invoke();
                for key in &keys {
                    invocation.key(key);
                }
                invocation.invoke_async::<i64>(&mut conn).await
            })
            .await;
    }
}

/// The client an address stands for: an IPv4 address itself, an IPv6 address's /64 (one
/// subscriber's allocation: rotating through it must not buy more attempts).
pub fn client_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::client_of;

    #[test]
    fn ipv6_clients_are_their_64_and_ipv4_is_itself() {
        let a = client_of(
            "2001:db8:1:2:aaaa::1"
                .parse()
                .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
        );
        let b = client_of(
            "2001:db8:1:2:ffff:1:2:3"
                .parse()
                .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
        );
        let c = client_of(
            "2001:db8:1:3::1"
                .parse()
                .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
        );
        assert_eq!(a, "2001:db8:1:2::/64");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            client_of(
                "192.0.2.7"
                    .parse()
                    .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into())
            ),
            "192.0.2.7"
        );
        assert_eq!(
            client_of(
                "::ffff:192.0.2.7"
                    .parse()
                    .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into())
            ),
            "192.0.2.7"
        );
    }
}
