//! Rate limits per plan: the headers, 429 exactly past the quota, the quota admitted exactly
//! under concurrency, buckets per tenant and per API key, the anonymous limit per address, usage
//! counted in Redis, and a Redis outage that costs no request more than the budget.
//!
//! A small quota is set on the `starter` plan (the one `register` picks) before the tenant's
//! host is first routed, so its cached route already carries it.

use redis::AsyncCommands;
use reqwest::{Method, Response};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tenantry_testkit::services::PrivateRedis;

use crate::helpers::*;

/// The app, its starter plan at `quota` requests per hour, and one tenant (whose owner's login
/// already counted once).
async fn tenant_with_quota(
    overrides: &[(&str, &str)],
    quota: i32,
    slug: &str,
) -> (TestApp, TestTenant) {
    let app = spawn_app_with(overrides).await;
    app.sql_with(
        "update public.plans set requests_per_hour = $1 where code = 'starter'",
        &[&quota],
    )
    .await;
    let t = app.tenant(slug).await;
    (app, t)
}

fn header(r: &Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `r` of the `policy` item of a `RateLimit` header.
fn remaining(r: &Response, policy: &str) -> u64 {
    let value = header(r, "ratelimit").expect("a RateLimit header");
    value
        .split(", ")
        .find(|item| item.starts_with(&format!("\"{policy}\";")))
        .and_then(|item| item.split(';').find_map(|p| p.strip_prefix("r=")))
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no {policy} item in {value:?}"))
}

async fn create_key(app: &TestApp, t: &TestTenant, name: &str) -> String {
    let r = app
        .post_json(
            &t.host,
            "/api/v1/api-keys",
            &json!({"name": name, "role": "member"}),
            Some(&t.token),
        )
        .await;
    let body = expect_json(r, 201).await;
    body["key"].as_str().expect("key").to_owned()
}

#[tokio::test]
async fn answers_carry_the_plans_policy_and_what_is_left() {
    let (app, t) = tenant_with_quota(&[], 1000, "headerco").await;
    let r = app.get_as(&t, "/api/v1/projects").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "ratelimit-policy").as_deref(),
        Some("\"hour\";q=1000;w=3600")
    );
    // The owner's login counted once, this request once.
    assert_eq!(remaining(&r, "hour"), 998);
    let value = header(&r, "ratelimit").unwrap_or_default();
    let reset: u64 = value
        .rsplit_once(";t=")
        .and_then(|(_, t)| t.parse().ok())
        .expect("t=");
    assert!(
        (1..=8).contains(&reset),
        "two requests take 7.2 s to refill: {value}"
    );
    // Errors are limited answers too.
    let r = app.get_as(&t, "/api/v1/no-such-resource").await;
    assert_eq!(r.status(), 404);
    assert_eq!(remaining(&r, "hour"), 997);

    // An unlimited plan sends no rate-limit fields.
    app.sql_with(
        "update public.companies set plan = 'enterprise' where id = $1::text::uuid",
        &[&t.company_id],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = app.get_as(&t, "/api/v1/projects").await;
        if header(&r, "ratelimit").is_none() {
            assert!(header(&r, "ratelimit-policy").is_none());
            break;
        }
        assert!(Instant::now() < deadline, "the plan change was not seen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_request_past_the_quota_is_429_with_retry_after_and_counts_nothing() {
    let (app, t) = tenant_with_quota(&[], 5, "quotaco").await;
    // The login took one of five.
    for left in (0..4).rev() {
        let r = app.get_as(&t, "/api/v1/projects").await;
        assert_eq!(r.status(), 200);
        assert_eq!(remaining(&r, "hour"), left);
    }
    for _ in 0..2 {
        let r = app.get_as(&t, "/api/v1/projects").await;
        assert_eq!(r.status(), 429);
        assert_eq!(
            header(&r, "content-type").as_deref(),
            Some("application/problem+json")
        );
        let retry: u64 = header(&r, "retry-after")
            .and_then(|v| v.parse().ok())
            .expect("Retry-After");
        // One request of five per hour comes back every 720 s.
        assert!((700..=720).contains(&retry), "Retry-After {retry}");
        assert_eq!(remaining(&r, "hour"), 0);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["status"], 429);
    }
    // Only the admitted requests are usage.
    let usage = pending_usage(&t).await;
    assert_eq!(usage, (5, 5), "hour and month");
}

/// The hour's and the month's pending counts of `t` in the app's Redis.
async fn pending_usage(t: &TestTenant) -> (i64, i64) {
    let client = redis::Client::open(tenantry_testkit::redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = conn.keys("test-*:usage:pending").await.unwrap();
    let mut found = (0, 0);
    for key in keys {
        let fields: Vec<(String, i64)> = conn.hgetall(&key).await.unwrap();
        for (field, count) in fields {
            if field.starts_with(&format!("{}|hour|", t.company_id)) {
                found.0 += count;
            } else if field.starts_with(&format!("{}|month|", t.company_id)) {
                found.1 += count;
            }
        }
    }
    found
}

#[tokio::test]
async fn concurrent_requests_at_the_boundary_admit_exactly_the_quota() {
    let (app, t) = tenant_with_quota(&[], 30, "raceco").await;
    let r = app.get_as(&t, "/api/v1/users/me").await;
    let left = remaining(&r, "hour") as usize;
    assert_eq!(left, 28);
    let sends = (0..left * 2).map(|_| app.get_as(&t, "/api/v1/users/me"));
    let answers = futures_util::future::join_all(sends).await;
    let ok = answers.iter().filter(|r| r.status() == 200).count();
    let limited = answers.iter().filter(|r| r.status() == 429).count();
    assert_eq!((ok, limited), (left, left));
}

#[tokio::test]
async fn each_api_key_has_its_own_share_and_the_tenant_its_own_quota() {
    // Keys get half the plan's quota each (the default share).
    let (app, t) = tenant_with_quota(&[], 12, "keyco").await;
    let other = app.tenant("otherco").await;
    let a = create_key(&app, &t, "integration a").await;
    let b = create_key(&app, &t, "integration b").await;
    // Tenant: login + two key creations = 3 of 12. Key a: 6 of its 6.
    for left in (0..6).rev() {
        let r = app
            .with_key(Method::GET, &t.host, "/api/v1/projects", &a)
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            header(&r, "ratelimit-policy").as_deref(),
            Some("\"hour\";q=12;w=3600, \"key\";q=6;w=3600")
        );
        assert_eq!(remaining(&r, "key"), left);
    }
    let r = app
        .with_key(Method::GET, &t.host, "/api/v1/projects", &a)
        .await;
    assert_eq!(r.status(), 429, "key a used its share");
    assert_eq!(remaining(&r, "key"), 0);
    assert_eq!(remaining(&r, "hour"), 3, "12 - 3 - 6");
    // Key b and the members go on.
    let r = app
        .with_key(Method::GET, &t.host, "/api/v1/projects", &b)
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(remaining(&r, "key"), 5);
    assert_eq!(remaining(&r, "hour"), 2);
    for left in (0..2).rev() {
        let r = app.get_as(&t, "/api/v1/projects").await;
        assert_eq!(r.status(), 200);
        assert_eq!(remaining(&r, "hour"), left);
    }
    // Now the organization's quota is used: members and key b alike are refused…
    assert_eq!(app.get_as(&t, "/api/v1/projects").await.status(), 429);
    let r = app
        .with_key(Method::GET, &t.host, "/api/v1/projects", &b)
        .await;
    assert_eq!(r.status(), 429);
    assert_eq!(remaining(&r, "hour"), 0);
    // …and another organization on the same plan is untouched.
    let r = app.get_as(&other, "/api/v1/projects").await;
    assert_eq!(r.status(), 200);
    assert_eq!(remaining(&r, "hour"), 10);
}

#[tokio::test]
async fn base_host_requests_are_limited_per_client_address() {
    let (app, t) = spawn_tenant_with(&[("ANON_REQUESTS_PER_HOUR", "3")], "anonco").await;
    // The tenant's registration was one of this address's three.
    for left in (0..2).rev() {
        let r = app.get(BASE, "/api/v1/users/me", None).await;
        assert_eq!(r.status(), 401);
        assert_eq!(
            header(&r, "ratelimit-policy").as_deref(),
            Some("\"hour\";q=3;w=3600")
        );
        assert_eq!(remaining(&r, "hour"), left);
    }
    let r = app.get(BASE, "/api/v1/users/me", None).await;
    assert_eq!(r.status(), 429);
    assert!(header(&r, "retry-after").is_some());
    let r = app
        .post_json(
            BASE,
            "/api/v1/register",
            &json!({"name": "Late", "slug": "late", "owner_email": "o@late.test",
                    "owner_password": "password-of-late", "plan": "starter"}),
            None,
        )
        .await;
    assert_eq!(r.status(), 429, "sign-ups too");
    // The tenant's host has its own quota.
    assert_eq!(app.get_as(&t, "/api/v1/projects").await.status(), 200);
}

#[tokio::test]
async fn rate_limits_off_sends_no_fields_and_limits_nothing() {
    let (app, t) = tenant_with_quota(&[("RATE_LIMITS", "off")], 1, "offco").await;
    for _ in 0..3 {
        let r = app.get_as(&t, "/api/v1/projects").await;
        assert_eq!(r.status(), 200);
        assert!(header(&r, "ratelimit").is_none());
    }
}

#[tokio::test]
async fn with_redis_down_requests_are_served_at_once_without_limits() {
    let mut redis = PrivateRedis::start();
    let url = redis.url();
    let (app, t) = tenant_with_quota(
        &[("REDIS_URL", &url), ("METRICS_ADDR", "127.0.0.1:0")],
        1000,
        "downco",
    )
    .await;
    let r = app.get_as(&t, "/api/v1/projects").await;
    assert!(
        header(&r, "ratelimit").is_some(),
        "limited while Redis is up"
    );
    redis.kill();
    for i in 0..20 {
        let started = Instant::now();
        let r = app.get_as(&t, "/api/v1/projects").await;
        let took = started.elapsed();
        assert_eq!(r.status(), 200, "request {i}");
        assert!(header(&r, "ratelimit").is_none(), "request {i} failed open");
        assert!(
            took < Duration::from_millis(100),
            "request {i} took {took:?} with Redis down"
        );
    }
    // Logged and counted: the fail-opens are in the metrics.
    let metrics = app
        .http
        .get(format!(
            "{}/metrics",
            app.metrics_address.as_deref().unwrap()
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "throttle_fail_opens_total{throttle=\"rate-limit\"}",
        "rate_limit_decisions_total{scope=\"tenant\",decision=\"fail_open\"}",
    ] {
        let line = metrics.lines().find(|l| l.starts_with(series));
        let count: f64 = line
            .and_then(|l| l.rsplit_once(' '))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in the metrics"));
        assert!(count >= 20.0, "{series} = {count}");
    }
    // Back: limited again (after the one-second cool-down).
    redis.start_again();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = app.get_as(&t, "/api/v1/projects").await;
        assert_eq!(r.status(), 200);
        if header(&r, "ratelimit").is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "limits never came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_worker_flush_moves_usage_to_postgresql_once() {
    let prefix = format!("test-usage-{}", uuid::Uuid::new_v4().simple());
    let (app, t) = tenant_with_quota(&[("REDIS_PREFIX", &prefix)], 1000, "usageco").await;
    for _ in 0..4 {
        assert_eq!(app.get_as(&t, "/api/v1/projects").await.status(), 200);
    }
    let company = tenantry_public::CompanyId(t.company_id.parse().unwrap());
    let db = tenantry_public::db::Db::connect(
        &app.db_url,
        &tenantry_public::db::PoolSettings::default(),
    )
    .unwrap();
    let used = || async {
        let conn = db.public().await.unwrap();
        tenantry_public::usage::requests_used(conn.client(), company, chrono::Utc::now())
            .await
            .unwrap()
    };
    assert_eq!(used().await.this_month, 0, "nothing flushed yet");

    let mut redis = tenantry_worker::connect(&tenantry_testkit::redis_url())
        .await
        .unwrap();
    let flushed = tenantry_worker::usage::flush(&mut redis, &db, &prefix)
        .await
        .unwrap();
    assert!(!flushed.repeated);
    // The owner's login and four lists.
    let usage = used().await;
    assert_eq!((usage.this_hour, usage.this_month), (5, 5));
    let pending: i64 = redis
        .exists(tenantry_public::usage::pending_key(&prefix))
        .await
        .unwrap();
    assert_eq!(pending, 0, "the flushed counts left Redis");

    // Nothing pending: nothing to do.
    let again = tenantry_worker::usage::flush(&mut redis, &db, &prefix)
        .await
        .unwrap();
    assert_eq!(again.batch, None);

    // A batch the worker added but could not delete (it died in between) is not added twice.
    let batch = flushed.batch.unwrap();
    let field = tenantry_public::usage::Count::field(
        company,
        tenantry_public::usage::Granularity::Month,
        chrono::Utc::now(),
    );
    let _: () = redis
        .hset_multiple(
            format!("{prefix}:usage:flushing"),
            &[("#batch", batch.as_str()), (field.as_str(), "5")],
        )
        .await
        .unwrap();
    let retried = tenantry_worker::usage::flush(&mut redis, &db, &prefix)
        .await
        .unwrap();
    assert!(retried.repeated);
    assert_eq!(used().await.this_month, 5);

    // Counts made since go on adding up; what was flushed is read from PostgreSQL alone.
    assert_eq!(app.get_as(&t, "/api/v1/projects").await.status(), 200);
    tenantry_worker::usage::flush(&mut redis, &db, &prefix)
        .await
        .unwrap();
    let usage = used().await;
    assert_eq!((usage.this_hour, usage.this_month), (6, 6));
}

/// The calls per command name in Redis's `INFO commandstats`.
async fn command_stats(redis: &mut redis::aio::MultiplexedConnection) -> Vec<(String, u64)> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(redis)
        .await
        .unwrap();
    let mut stats: Vec<(String, u64)> = info
        .lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .filter(|(name, _)| name != "info" && !name.starts_with("config"))
        .collect();
    stats.sort();
    stats
}

/// The limiter costs one round trip per request: one `EVALSHA` of the GCRA script (which also
/// counts the usage), nothing else — no script load once it is cached, no separate counter
/// call. Counted on a Redis of its own, with the commands the script runs inside it.
#[tokio::test]
async fn each_limited_request_is_one_redis_call() {
    let redis_server = PrivateRedis::start();
    let url = redis_server.url();
    let (app, t) = tenant_with_quota(&[("REDIS_URL", &url)], 1000, "tripco").await;
    // The first request loads the script (EVALSHA, NOSCRIPT, SCRIPT LOAD, EVALSHA).
    assert_eq!(app.get_as(&t, "/api/v1/projects").await.status(), 200);
    let mut redis = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async::<()>(&mut redis)
        .await
        .unwrap();
    let n = 10u64;
    for _ in 0..n {
        let r = app.get_as(&t, "/api/v1/projects").await;
        assert_eq!(r.status(), 200);
        assert!(header(&r, "ratelimit").is_some());
    }
    // Inside the script, per request: TIME, GET and SET of the one bucket, two HINCRBY of the
    // usage hash (Redis counts a script's own commands too).
    let expected: Vec<(String, u64)> = [
        ("evalsha", n),
        ("get", n),
        ("hincrby", 2 * n),
        ("set", n),
        ("time", n),
    ]
    .into_iter()
    .map(|(c, k)| (c.to_owned(), k))
    .collect();
    assert_eq!(command_stats(&mut redis).await, expected);
}
