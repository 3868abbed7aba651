//! API rate limits per plan, in Redis: every `/api/v1` request on a tenant host counts against
//! its company's plan (`plans.requests_per_hour`; null is unlimited), and a request that presents
//! an API key also against that key's own share of it; every request on the base host counts
//! against its client address (an IPv6 address by its /64) with `ANON_REQUESTS_PER_HOUR`.
//!
//! The algorithm is GCRA (a leaky bucket kept as one "theoretical arrival time" per key): a
//! quota `q` per hour is one request per `3600 s / q`, with the whole hourly quota as the burst,
//! so a fresh bucket admits `q` requests at once and refills continuously. One Lua script per
//! request checks every bucket of the request and, only when all admit it, advances them all
//! and counts the request in the pending usage hash (`tenantry_public::usage::Count`): no
//! read-then-write race, however many servers and requests run at once.
//!
//! Answers carry the IETF httpapi ratelimit-headers draft's fields: `RateLimit-Policy:
//! "hour";q=1000;w=3600` and `RateLimit: "hour";r=<remaining>;t=<seconds until the bucket is
//! full>` (a key's request also `"key"` items). Over the limit the request is answered 429
//! (problem+json) with `Retry-After` before any handler runs.
//!
//! Redis is reached through the throttles' [`RedisGuard`]: 50 ms per call at most, then the
//! request is served without limit (fail-open, logged and counted) and Redis is not asked again
//! for a second. `RATE_LIMITS=off` turns the limiter (and usage counting) off.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, ResponseError};
use chrono::Utc;
use redis::Script;
use std::time::Duration;
use tenantry_public::routing::Resolution;
use tenantry_public::usage::{self, Count, Granularity};
use tenantry_public::CompanyId;
use tenantry_tenant::api_keys;

use crate::auth::API_KEY_HEADER;
use crate::error::ApiError;
use crate::metrics;
use crate::throttle::{client_of, RedisGuard};

/// Limits that do not come from a plan, from configuration.
#[derive(Debug, Clone)]
pub struct RateLimitSettings {
    /// `RATE_LIMITS` (`on`, the default, or `off`).
    pub enabled: bool,
    /// Requests per hour per client address on the base host (`ANON_REQUESTS_PER_HOUR`).
    pub anonymous_per_hour: u32,
    /// Each API key's share of its plan's hourly quota, in percent
    /// (`RATE_LIMIT_KEY_SHARE_PERCENT`, default 50): one integration cannot use up the quota
    /// the organization's members share.
    pub key_share_percent: u32,
}

/// The window every quota is per.
pub const WINDOW: Duration = Duration::from_secs(3600);

/// The policy of the tenant's and the anonymous client's bucket in the headers.
pub const POLICY: &str = "hour";
/// The policy of an API key's own bucket in the headers.
pub const KEY_POLICY: &str = "key";

/// `RateLimit-Policy`: the quotas that apply to the request.
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`: what is left of them.
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// GCRA over KEYS[1..n] (ARGV[1] = n, ARGV[2] = window in µs, ARGV[2 + i] = quota of KEYS[i]).
/// When every bucket admits the request all are advanced and, if KEYS[n + 1] is given, the
/// usage fields ARGV[n + 3] and ARGV[n + 4] of that hash are counted; otherwise nothing changes.
/// Returns {wait µs (0: admitted), then per bucket remaining and seconds until full}.
const GCRA: &str = r"
local n = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tats, news, intervals = {}, {}, {}
local wait = 0
for i = 1, n do
  local interval = math.floor(window / tonumber(ARGV[2 + i]))
  if interval < 1 then interval = 1 end
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  local new = tat + interval
  if new - now > window and new - now - window > wait then wait = new - now - window end
  tats[i], news[i], intervals[i] = tat, new, interval
end
local out = {wait}
for i = 1, n do
  local at = news[i]
  if wait > 0 then
    at = tats[i]
  else
    redis.call('SET', KEYS[i], string.format('%d', at), 'PX', math.ceil((at - now) / 1000) + 1000)
  end
  local left = math.floor((window - (at - now)) / intervals[i])
  if left < 0 then left = 0 end
  out[#out + 1] = left
  out[#out + 1] = math.ceil((at - now) / 1000000)
end
if wait == 0 and #KEYS > n then
  redis.call('HINCRBY', KEYS[n + 1], ARGV[n + 3], 1)
  redis.call('HINCRBY', KEYS[n + 1], ARGV[n + 4], 1)
end
return out
";

/// One bucket a request counts against.
#[derive(Debug, Clone)]
struct Bucket {
    policy: &'static str,
    key: String,
    quota: u32,
}

/// A bucket's state after a request, as the headers report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketState {
    pub policy: &'static str,
    pub quota: u32,
    pub remaining: u64,
    /// Seconds until the bucket is full again.
    pub reset: u64,
}

/// What the limiter says about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Allowed(Vec<BucketState>),
    Limited {
        retry_after: u64,
        states: Vec<BucketState>,
    },
    /// Redis did not answer in time: served without limit (and without headers).
    FailedOpen,
}

pub struct RateLimiter {
    redis: RedisGuard,
    prefix: String,
    /// The pending usage hash (`usage::pending_key`), named once rather than per request.
    usage_key: String,
    settings: RateLimitSettings,
    script: Script,
}

/// Which buckets a request counts against, and whose usage it is.
struct Plan {
    scope: &'static str,
    buckets: Vec<Bucket>,
    company: Option<CompanyId>,
}

impl RateLimiter {
    pub fn new(client: redis::Client, prefix: &str, settings: RateLimitSettings) -> Self {
        Self {
            redis: RedisGuard::new("rate-limit", client),
            prefix: prefix.to_owned(),
            usage_key: usage::pending_key(prefix),
            settings,
            script: Script::new(GCRA),
        }
    }

    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    /// How many checks were served without limit because Redis failed (for tests).
    pub fn fail_opens(&self) -> u64 {
        self.redis.fail_opens()
    }

    fn plan(&self, req: &ServiceRequest) -> Option<Plan> {
        match req.extensions().get::<Resolution>()? {
            Resolution::Tenant(route) => {
                let company = route.company_id;
                let mut buckets = Vec::new();
                let mut scope = "tenant";
                // Null is unlimited: the request is only counted for usage.
                if let Some(quota) = route.requests_per_hour {
                    let quota = u32::try_from(quota).unwrap_or(0).max(1);
                    buckets.push(Bucket {
                        policy: POLICY,
                        key: format!("{}:rate-limit:tenant:{}", self.prefix, company.0),
                        quota,
                    });
                    // A key's own bucket is named by its public prefix (well-formed keys only;
                    // anything else counts against the organization alone, and is refused
                    // later by authentication).
                    let key = req
                        .headers()
                        .get(API_KEY_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| api_keys::parse_prefix(v.trim()));
                    if let Some(key) = key {
                        scope = "key";
                        let share = (u64::from(quota) * u64::from(self.settings.key_share_percent)
                            / 100)
                            .max(1);
                        buckets.push(Bucket {
                            policy: KEY_POLICY,
                            key: format!("{}:rate-limit:key:{}:{key}", self.prefix, company.0),
                            quota: u32::try_from(share).unwrap_or(u32::MAX),
                        });
                    }
                }
                Some(Plan {
                    scope,
                    buckets,
                    company: Some(company),
                })
            }
            Resolution::Public => {
                let ip = req.peer_addr()?.ip();
                Some(Plan {
                    scope: "anonymous",
                    buckets: vec![Bucket {
                        policy: POLICY,
                        key: format!("{}:rate-limit:ip:{}", self.prefix, client_of(ip)),
                        quota: self.settings.anonymous_per_hour,
                    }],
                    company: None,
                })
            }
            Resolution::Unknown => None,
        }
    }

    /// Checks and counts one request against `buckets` (and `company`'s usage) in one script.
    async fn check(&self, buckets: &[Bucket], company: Option<CompanyId>) -> Outcome {
        let now = Utc::now();
        let answer = self
            .redis
            .bounded(async {
                let mut conn = self.redis.conn().await?;
                let mut invocation = self.script.prepare_invoke();
                for bucket in buckets {
                    invocation.key(&bucket.key);
                }
                invocation.arg(buckets.len());
                invocation.arg(WINDOW.as_micros() as u64);
                for bucket in buckets {
                    invocation.arg(bucket.quota);
                }
                if let Some(company) = company {
                    invocation.key(&self.usage_key);
                    invocation.arg(Count::field(company, Granularity::Hour, now));
                    invocation.arg(Count::field(company, Granularity::Month, now));
                }
                invocation.invoke_async::<Vec<i64>>(&mut conn).await
            })
            .await;
        let Some(answer) = answer.filter(|a| a.len() == 1 + 2 * buckets.len()) else {
            return Outcome::FailedOpen;
        };
        let states = buckets
            .iter()
            .zip(answer[1..].chunks(2))
            .map(|(bucket, pair)| BucketState {
                policy: bucket.policy,
                quota: bucket.quota,
                remaining: pair[0].max(0) as u64,
                reset: pair[1].max(0) as u64,
            })
            .collect();
        match answer[0] {
            wait if wait > 0 => Outcome::Limited {
                retry_after: (wait as u64).div_ceil(1_000_000).max(1),
                states,
            },
            _ => Outcome::Allowed(states),
        }
    }
}

/// `RateLimit-Policy` and `RateLimit` for `states`; nothing when no bucket applies. Each value
/// is written into one buffer (this runs on every limited answer).
fn set_headers(headers: &mut actix_web::http::header::HeaderMap, states: &[BucketState]) {
    use std::fmt::Write as _;
    if states.is_empty() {
        return;
    }
    let mut policy = String::with_capacity(32 * states.len());
    let mut left = String::with_capacity(32 * states.len());
    for (i, s) in states.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        // Writing to a String cannot fail.
        let _ = write!(
            policy,
            "{sep}\"{}\";q={};w={}",
            s.policy,
            s.quota,
            WINDOW.as_secs()
        );
        let _ = write!(
            left,
            "{sep}\"{}\";r={};t={}",
            s.policy, s.remaining, s.reset
        );
    }
    for (name, value) in [(&RATELIMIT_POLICY, policy), (&RATELIMIT, left)] {
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(name.clone(), value);
        }
    }
}

/// Middleware inside Host resolution: counts the request, answers 429 when over a limit, and
/// adds the rate-limit headers to whatever the route answers.
pub async fn limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let limiter = req.app_data::<web::Data<RateLimiter>>().cloned();
    let Some(limiter) = limiter.filter(|l| l.enabled()) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let Some(plan) = limiter.plan(&req) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let outcome = limiter.check(&plan.buckets, plan.company).await;
    let decision = match &outcome {
        Outcome::Allowed(_) => "allowed",
        Outcome::Limited { .. } => "limited",
        Outcome::FailedOpen => "fail_open",
    };
    ::metrics::counter!(
        metrics::RATE_LIMIT_DECISIONS,
        "scope" => plan.scope,
        "decision" => decision
    )
    .increment(1);
    match outcome {
        Outcome::Limited {
            retry_after,
            states,
        } => {
            let which = states
                .iter()
                .find(|s| s.remaining == 0)
                .map_or(POLICY, |s| s.policy);
            let detail = match (plan.scope, which) {
                (_, KEY_POLICY) => "this API key used its share of the plan's hourly request quota",
                ("anonymous", _) => "too many requests from this address; try again later",
                _ => "this organization used its plan's hourly request quota",
            };
            let mut response = ApiError::TooManyRequests {
                detail: detail.into(),
                retry_after,
            }
            .error_response();
            set_headers(response.headers_mut(), &states);
            Ok(req.into_response(response))
        }
        Outcome::Allowed(states) => {
            let mut response = next.call(req).await?.map_into_boxed_body();
            set_headers(response.headers_mut(), &states);
            Ok(response)
        }
        Outcome::FailedOpen => next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body),
    }
}
