//! Integration tests for tenantry-worker against a real Redis (`REDIS_URL` must be set).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use tenantry_worker::{
    config::{
        ENV_HEARTBEAT_CRON, ENV_LOG_FORMAT, ENV_METRICS_ADDR, ENV_QUEUE_PREFIX, ENV_REDIS_URL,
        ENV_RUST_LOG, ENV_USAGE_FLUSH_SECS,
    },
    Config, ConfigError, LogFormat, Ping,
};

fn redis_url() -> String {
    match std::env::var(ENV_REDIS_URL) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "REDIS_URL is not set: these tests need a real Redis server \
             (e.g. `redis-server --port 6390 --daemonize yes --save ''` and \
             `REDIS_URL=redis://127.0.0.1:6390/ cargo test -p tenantry-worker`)"
        ),
    }
}

/// A key prefix no other test (or test run) uses.
fn unique_prefix() -> String {
    format!("test-worker-{}", uuid::Uuid::new_v4().simple())
}

async fn redis() -> ConnectionManager {
    tenantry_worker::connect(&redis_url())
        .await
        .expect("connect to REDIS_URL")
}

/// Global apalis-redis registry of queues (written outside any prefix).
const APALIS_QUEUES_LIST: &str = "core:apalis:queues:list";

/// Deletes every key under `prefix`, and the queue's entry in apalis' global registry.
async fn cleanup(conn: &mut ConnectionManager, prefix: &str) {
    let keys: Vec<String> = conn
        .keys(format!("{prefix}:*"))
        .await
        .expect("list test keys");
    if !keys.is_empty() {
        conn.del::<_, ()>(keys).await.expect("delete test keys");
    }
    let workers_set = format!("{}:workers", tenantry_worker::noop_queue(prefix));
    conn.zrem::<_, _, ()>(APALIS_QUEUES_LIST, workers_set)
        .await
        .expect("deregister test queue");
}

/// Enqueues a [`Ping`] carrying `message`.
async fn ping(conn: &ConnectionManager, prefix: &str, message: &str) {
    let ping = Ping {
        message: message.to_owned(),
    };
    tenantry_worker::enqueue_ping(conn, prefix, ping)
        .await
        .expect("enqueue ping");
}

/// Runs the worker in a task until `stop` fires (or its sender is dropped).
fn spawn_worker(
    config: Config,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::spawn(tenantry_worker::run(config, async move {
        let _ = stop.await;
    }))
}

fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |key| map.get(key).cloned()
}

#[tokio::test]
async fn heartbeat_writes_rfc3339_timestamp_with_ttl() {
    let mut conn = redis().await;
    let prefix = unique_prefix();
    let now = Utc::now();

    tenantry_worker::heartbeat(&mut conn, &prefix, now)
        .await
        .expect("heartbeat job");

    let key = tenantry_worker::heartbeat_key(&prefix);
    assert_eq!(key, format!("{prefix}:worker:heartbeat"));
    let value: Option<String> = conn.get(&key).await.expect("GET heartbeat");
    let value = value.expect("heartbeat key is set");
    let parsed = DateTime::parse_from_rfc3339(&value).expect("heartbeat value is RFC 3339");
    assert_eq!(parsed.timestamp_millis(), now.timestamp_millis());
    let ttl: i64 = conn.ttl(&key).await.expect("TTL heartbeat");
    assert!(
        ttl > 0 && ttl <= 300,
        "heartbeat key should expire within 5 minutes, TTL is {ttl}"
    );

    cleanup(&mut conn, &prefix).await;
}

/// Polls `key` every 50 ms for up to 10 s until it equals `expected`; returns the last value.
async fn wait_for_value(
    conn: &mut ConnectionManager,
    key: &str,
    expected: &str,
    worker: &tokio::task::JoinHandle<anyhow::Result<()>>,
) -> Option<String> {
    wait_for_value_within(conn, key, expected, worker, Duration::from_secs(10)).await
}

/// Polls `key` every 50 ms for up to `limit` until it equals `expected`; returns the last value.
async fn wait_for_value_within(
    conn: &mut ConnectionManager,
    key: &str,
    expected: &str,
    worker: &tokio::task::JoinHandle<anyhow::Result<()>>,
    limit: Duration,
) -> Option<String> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let value: Option<String> = conn.get(key).await.unwrap_or(None);
        if value.as_deref() == Some(expected)
            || tokio::time::Instant::now() >= deadline
            || worker.is_finished()
        {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_processes_enqueued_pings_and_stops_on_shutdown() {
    let mut conn = redis().await;
    let prefix = unique_prefix();
    let config = Config::from_lookup(lookup(&[
        (ENV_REDIS_URL, &redis_url()),
        (ENV_QUEUE_PREFIX, &prefix),
    ]))
    .expect("config");
    let key = tenantry_worker::last_ping_key(&prefix);

    // Enqueued before the worker starts: picked up by the first fetch.
    let first = format!("before start {prefix}");
    ping(&conn, &prefix, &first).await;

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = spawn_worker(config, stop_rx);

    let seen_first = wait_for_value(&mut conn, &key, &first, &worker).await;
    // Enqueued while the worker idles: only found because the queue is polled.
    let second = format!("while running {prefix}");
    let seen_second = if seen_first.as_deref() == Some(first.as_str()) {
        ping(&conn, &prefix, &second).await;
        wait_for_value(&mut conn, &key, &second, &worker).await
    } else {
        None
    };

    stop_tx.send(()).ok();
    let result = tokio::time::timeout(Duration::from_secs(15), worker)
        .await
        .expect("run() returns promptly after shutdown")
        .expect("run() task did not panic");
    let registered_workers: u64 = conn
        .zcard(format!("{}:workers", tenantry_worker::noop_queue(&prefix)))
        .await
        .expect("ZCARD workers");
    cleanup(&mut conn, &prefix).await;

    assert_eq!(
        seen_first.as_deref(),
        Some(first.as_str()),
        "the ping enqueued before start was not processed within 10 s (run() result: {result:?})"
    );
    assert_eq!(
        seen_second.as_deref(),
        Some(second.as_str()),
        "the ping enqueued while running was not processed within 10 s (run() result: {result:?})"
    );
    result.expect("run() returns Ok after a graceful shutdown");
    assert_eq!(
        registered_workers, 0,
        "a cleanly stopped worker deregisters itself from the queue"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_waits_for_an_unreachable_redis_and_still_stops_on_shutdown() {
    // A port nothing listens on (yet): the worker must neither exit nor spin.
    let port = tenantry_testkit::services::free_port();
    let config = Config::new(format!("redis://127.0.0.1:{port}/")).expect("config");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = spawn_worker(config, stop_rx);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !worker.is_finished(),
        "run() gave up while Redis was unreachable: {:?}",
        worker.await
    );
    stop_tx.send(()).ok();
    let result = tokio::time::timeout(Duration::from_secs(5), worker)
        .await
        .expect("run() returns promptly after shutdown")
        .expect("run() task did not panic");
    result.expect("a shutdown while waiting for Redis is a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_started_before_redis_and_surviving_its_restart_processes_pings() {
    let mut redis = tenantry_testkit::services::PrivateRedis::start();
    redis.kill();
    let prefix = unique_prefix();
    let config = Config::from_lookup(lookup(&[
        (ENV_REDIS_URL, &redis.url()),
        (ENV_QUEUE_PREFIX, &prefix),
    ]))
    .expect("config");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = spawn_worker(config, stop_rx);
    let key = tenantry_worker::last_ping_key(&prefix);
    let mut seen = Vec::new();
    // Redis appears after the worker started; then it is killed (losing everything) and
    // comes back on the same port. Each time a ping pushed afterwards is processed.
    for round in ["started late", "restarted"] {
        tokio::time::sleep(Duration::from_millis(700)).await;
        if round == "restarted" {
            redis.kill();
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        redis.start_again();
        let mut conn = tenantry_worker::connect(&redis.url())
            .await
            .expect("connect to the private Redis");
        let message = format!("{round} {prefix}");
        ping(&conn, &prefix, &message).await;
        seen.push((
            message.clone(),
            wait_for_value_within(&mut conn, &key, &message, &worker, Duration::from_secs(20))
                .await,
        ));
    }
    stop_tx.send(()).ok();
    let result = tokio::time::timeout(Duration::from_secs(15), worker)
        .await
        .expect("run() returns promptly after shutdown")
        .expect("run() task did not panic");
    for (message, value) in &seen {
        assert_eq!(
            value.as_deref(),
            Some(message.as_str()),
            "not processed within 20 s (run() result: {result:?})"
        );
    }
    result.expect("run() returns Ok after a graceful shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_runs_are_counted_on_the_workers_metrics_listener() {
    let mut conn = redis().await;
    let prefix = unique_prefix();
    // `run` binds METRICS_ADDR itself, so the test cannot pass port 0 and learn the port.
    let metrics = format!("127.0.0.1:{}", tenantry_testkit::services::free_port());
    let config = Config::from_lookup(lookup(&[
        (ENV_REDIS_URL, &redis_url()),
        (ENV_QUEUE_PREFIX, &prefix),
        (ENV_METRICS_ADDR, &metrics),
    ]))
    .expect("config");
    assert_eq!(config.metrics_addr.as_deref(), Some(metrics.as_str()));
    let message = format!("counted {prefix}");
    ping(&conn, &prefix, &message).await;

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = spawn_worker(config, stop_rx);
    let key = tenantry_worker::last_ping_key(&prefix);
    let seen = wait_for_value(&mut conn, &key, &message, &worker).await;

    // The run is counted just after its Redis write: scrape until it shows (or 5 s pass).
    let http = reqwest::Client::new();
    let url = format!("http://{metrics}/metrics");
    let mut scraped = None;
    for _ in 0..100 {
        let Ok(r) = http.get(&url).send().await else {
            break;
        };
        let content_type = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = r.text().await.unwrap_or_default();
        let counted = text
            .lines()
            .filter_map(|l| l.strip_prefix(r#"jobs_total{job="ping",outcome="ok"} "#))
            .any(|v| v.parse::<f64>().is_ok_and(|n| n >= 1.0));
        scraped = Some((content_type, text));
        if counted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let other = http.get(format!("http://{metrics}/")).send().await;
    stop_tx.send(()).ok();
    let result = tokio::time::timeout(Duration::from_secs(15), worker)
        .await
        .expect("run() returns promptly after shutdown")
        .expect("run() task did not panic");
    // A new client: the old one's kept-alive connection may outlive the listener.
    let mut still_listening = true;
    for _ in 0..40 {
        if reqwest::Client::new().get(&url).send().await.is_err() {
            still_listening = false;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cleanup(&mut conn, &prefix).await;

    assert_eq!(seen.as_deref(), Some(message.as_str()), "{result:?}");
    result.expect("run() returns Ok after a graceful shutdown");
    let (content_type, text) = scraped.expect("the worker serves METRICS_ADDR while it runs");
    assert_eq!(
        content_type.as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(
        text.lines()
            .filter_map(|l| l.strip_prefix(r#"jobs_total{job="ping",outcome="ok"} "#))
            .any(|v| v.parse::<f64>().is_ok_and(|n| n >= 1.0)),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with(r#"job_duration_seconds_count{job="ping",outcome="ok"} "#)),
        "{text}"
    );
    assert!(
        !text.contains(&message) && !text.contains(&prefix),
        "{text}"
    );
    assert_eq!(other.expect("answered").status(), 404);
    assert!(!still_listening, "the listener stops with the worker");
}

#[test]
fn config_missing_redis_url_names_the_variable() {
    let err = Config::from_lookup(lookup(&[(ENV_LOG_FORMAT, "json")]))
        .expect_err("REDIS_URL is required");
    assert_eq!(err, ConfigError::Missing { var: "REDIS_URL" });
    assert!(err.to_string().contains("REDIS_URL"), "message: {err}");

    // An empty value counts as missing.
    let err = Config::from_lookup(lookup(&[(ENV_REDIS_URL, "  ")])).expect_err("empty REDIS_URL");
    assert!(err.to_string().contains("REDIS_URL"), "message: {err}");
}

#[test]
fn config_defaults_and_overrides() {
    let config = Config::from_lookup(lookup(&[(ENV_REDIS_URL, "redis://localhost:6379/")]))
        .expect("defaults");
    assert_eq!(config.redis_url, "redis://localhost:6379/");
    assert_eq!(config.log_format, LogFormat::Pretty);
    assert_eq!(config.log_filter, "info");
    assert_eq!(config.heartbeat_schedule.source(), "0 * * * * *");
    assert_eq!(config.queue_prefix, "tenantry");
    assert_eq!(config.reminder_schedule.source(), "0 */15 * * * *");
    assert_eq!(config.overdue_schedule.source(), "0 */15 * * * *");
    assert_eq!(
        config.links,
        tenantry_public::links::Links::new(
            tenantry_public::names::DomainName::parse("localhost").expect("domain")
        ),
        "links default to http://<tenant>.localhost"
    );
    assert_eq!(config.usage_flush_every, Duration::from_secs(60));
    assert_eq!(
        config.past_due_grace,
        chrono::Duration::days(7),
        "BILLING_PAST_DUE_GRACE_DAYS defaults to 7"
    );
    assert_eq!(
        config.metrics_addr, None,
        "no metrics listener unless METRICS_ADDR is set"
    );

    let config = Config::from_lookup(lookup(&[
        (ENV_REDIS_URL, "redis://:secret@localhost:6379/1"),
        (ENV_LOG_FORMAT, "JSON"),
        (ENV_RUST_LOG, "debug,apalis=warn"),
        (ENV_HEARTBEAT_CRON, "*/5 * * * * *"),
        (ENV_QUEUE_PREFIX, "t1"),
        (ENV_USAGE_FLUSH_SECS, "5"),
        ("BILLING_PAST_DUE_GRACE_DAYS", "3"),
    ]))
    .expect("overrides");
    assert_eq!(config.usage_flush_every, Duration::from_secs(5));
    assert_eq!(config.past_due_grace, chrono::Duration::days(3));
    for bad in ["0", "3601", "soon"] {
        let e = Config::from_lookup(lookup(&[
            (ENV_REDIS_URL, "redis://localhost:6379/"),
            (ENV_USAGE_FLUSH_SECS, bad),
        ]))
        .expect_err(bad);
        assert!(
            matches!(e, ConfigError::Invalid { var, .. } if var == ENV_USAGE_FLUSH_SECS),
            "{bad}: {e}"
        );
    }
    assert_eq!(config.log_format, LogFormat::Json);
    assert_eq!(config.log_filter, "debug,apalis=warn");
    assert_eq!(config.heartbeat_schedule.source(), "*/5 * * * * *");
    assert_eq!(config.queue_prefix, "t1");
    assert!(
        !format!("{config:?}").contains("secret"),
        "Debug output must not leak the Redis password"
    );
}

#[test]
fn config_invalid_values_name_the_variable() {
    let cases = [
        (ENV_REDIS_URL, "not a url"),
        (ENV_LOG_FORMAT, "xml"),
        (ENV_HEARTBEAT_CRON, "every minute"),
        (
            tenantry_worker::config::ENV_REMINDER_CRON,
            "every 15 minutes",
        ),
        (tenantry_worker::config::ENV_OVERDUE_CRON, "at eight"),
        ("LINK_PORT", "eighty"),
        ("LINK_SCHEME", "ftp"),
        ("BASE_DOMAIN", "not a domain"),
        (ENV_QUEUE_PREFIX, "bad prefix"),
        (ENV_QUEUE_PREFIX, "ends:"),
        ("BILLING_PAST_DUE_GRACE_DAYS", "a week"),
        ("BILLING_PAST_DUE_GRACE_DAYS", "91"),
    ];
    for (var, value) in cases {
        let mut vars = vec![(var, value)];
        if var != ENV_REDIS_URL {
            vars.push((ENV_REDIS_URL, "redis://localhost/"));
        }
        match Config::from_lookup(lookup(&vars)) {
            Err(ConfigError::Invalid { var: named, .. }) => assert_eq!(named, var),
            other => panic!("{var}={value:?}: expected Invalid, got {other:?}"),
        }
    }
}

#[test]
fn mail_links_are_logged_only_when_asked_for() {
    let base = [
        (ENV_REDIS_URL, "redis://localhost/"),
        ("DATABASE_URL", "postgres://localhost/tenantry"),
        ("MAIL_DIR", "/tmp/mail"),
    ];
    let log_links = |value: Option<&str>| {
        let mut vars = base.to_vec();
        vars.extend(value.map(|v| (tenantry_worker::config::ENV_MAIL_LOG_LINKS, v)));
        Config::from_lookup(lookup(&vars)).map(|c| c.mail.expect("mail").log_links)
    };
    assert!(!log_links(None).expect("valid"));
    assert!(!log_links(Some("false")).expect("valid"));
    assert!(log_links(Some("true")).expect("valid"));
    match log_links(Some("yes")) {
        Err(ConfigError::Invalid { var, .. }) => assert_eq!(var, "MAIL_LOG_LINKS"),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

/// Two workers firing the platform clean-up every second against one database run each ISO
/// week once: one `job_runs` row, done, however many ticks both saw.
#[tokio::test]
async fn two_workers_run_the_weekly_cleanup_once() {
    let (db, client) = migrated_database().await;
    let mail_dir = tempfile_dir();
    let prefix = unique_prefix();
    let url = redis_url();
    let vars = [
        (ENV_REDIS_URL, url.as_str()),
        ("DATABASE_URL", db.url.as_str()),
        ("MAIL_DIR", mail_dir.as_str()),
        (ENV_QUEUE_PREFIX, prefix.as_str()),
        ("WORKER_CLEANUP_CRON", "* * * * * *"),
    ];
    let workers = Workers::start(&vars, 2);
    // Both workers tick several times.
    let mut done = 0_i64;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        done = client
            .query_one(
                "select count(*) from public.job_runs where job = 'cleanup.platform' and status = 'done'",
                &[],
            )
            .await
            .expect("count runs")
            .get(0);
        if done > 0 {
            break;
        }
    }
    assert_eq!(done, 1, "the week's run happened");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let rows: i64 = client
        .query_one(
            "select count(*) from public.job_runs where job = 'cleanup.platform'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(rows, 1, "one run for the week, whatever the ticks");
    let attempts: i32 = client
        .query_one(
            "select attempts from public.job_runs where job = 'cleanup.platform'",
            &[],
        )
        .await
        .expect("attempts")
        .get(0);
    assert_eq!(attempts, 1, "never taken over");
    workers.stop(&prefix).await;
}

fn tempfile_dir() -> String {
    let dir = std::env::temp_dir().join(format!(
        "tenantry-worker-mail-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).expect("mail dir");
    dir.to_string_lossy().into_owned()
}

/// Two workers firing the weekly clean-up every second: one fan-out for the day, one run per
/// tenant for the week (a suspended tenant recorded as skipped), each never taken over, and the
/// expired invitations of every active tenant gone exactly once.
#[tokio::test]
async fn two_workers_fan_the_tenant_cleanup_out_once_per_tenant() {
    let (database, client) = migrated_database().await;
    let db = tenantry_public::db::Db::connect(&database.url, &Default::default()).expect("pool");
    for slug in ["acme", "globex", "initech"] {
        tenant_with_invitations(&db, &client, slug).await;
    }
    client
        .batch_execute("update public.companies set status = 'suspended' where slug = 'initech'")
        .await
        .expect("suspend");

    let mail_dir = tempfile_dir();
    let prefix = unique_prefix();
    let url = redis_url();
    let vars = [
        (ENV_REDIS_URL, url.as_str()),
        ("DATABASE_URL", database.url.as_str()),
        ("MAIL_DIR", mail_dir.as_str()),
        (ENV_QUEUE_PREFIX, prefix.as_str()),
        ("WORKER_CLEANUP_CRON", "* * * * * *"),
        ("WORKER_FANOUT_WINDOW_SECS", "0"),
    ];
    let workers = Workers::start(&vars, 2);
    let finished = "select count(*) from public.job_runs \
                     where job = 'cleanup.tenant' and status in ('done', 'skipped')";
    let mut n = 0_i64;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        n = client.query_one(finished, &[]).await.expect("count").get(0);
        if n == 3 {
            break;
        }
    }
    assert_eq!(n, 3, "every tenant's run finished");
    // More ticks change nothing.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let rows: Vec<(String, String, i32)> = client
        .query(
            "select coalesce(c.slug, '-'), r.status, r.attempts from public.job_runs r \
               left join public.companies c on c.id = r.company_id \
              where r.job = 'cleanup.tenant' order by 1",
            &[],
        )
        .await
        .expect("runs")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        [
            ("acme".to_owned(), "done".to_owned(), 1),
            ("globex".to_owned(), "done".to_owned(), 1),
            ("initech".to_owned(), "skipped".to_owned(), 1),
        ]
    );
    let fanouts: i64 = client
        .query_one(
            "select count(*) from public.job_runs where job = 'cleanup.tenant.fanout'",
            &[],
        )
        .await
        .expect("fan-outs")
        .get(0);
    assert_eq!(fanouts, 1, "one fan-out for the day");
    for (slug, left) in [("acme", 1_i64), ("globex", 1), ("initech", 2)] {
        let n: i64 = client
            .query_one(
                &format!("select count(*) from tenant_{slug}.invitations"),
                &[],
            )
            .await
            .expect("invitations")
            .get(0);
        assert_eq!(n, left, "{slug}");
    }
    workers.stop(&prefix).await;
}

/// Worker processes (as tasks) sharing one configuration.
struct Workers {
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    running: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Workers {
    fn start(vars: &[(&str, &str)], n: usize) -> Self {
        let mut workers = Self {
            stops: Vec::new(),
            running: Vec::new(),
        };
        for _ in 0..n {
            let config = Config::from_lookup(lookup(vars)).expect("config");
            let (stop, stopped) = tokio::sync::oneshot::channel();
            workers.stops.push(stop);
            workers.running.push(spawn_worker(config, stopped));
        }
        workers
    }

    /// Stops every worker, checks each stopped cleanly, and deletes the prefix's Redis keys.
    async fn stop(self, prefix: &str) {
        for stop in self.stops {
            let _ = stop.send(());
        }
        for worker in self.running {
            worker.await.expect("join").expect("worker stopped cleanly");
        }
        let mut conn = redis().await;
        cleanup(&mut conn, prefix).await;
    }
}

/// A fresh database with the public schema at head, and a client of the test's own on it.
async fn migrated_database() -> (tenantry_testkit::TestDatabase, tokio_postgres::Client) {
    let db = tenantry_testkit::fresh_database().await;
    let (mut client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    tenantry_public::migrate::migrate_public(&mut client)
        .await
        .expect("migrate public");
    (db, client)
}

// ---- Due reminders and the overdue digest ------------------------------------------------------

mod reminders {
    use super::*;
    use serde_json::Value;
    use tenantry_public::db::Db;
    use tenantry_public::links::Links;
    use tenantry_public::names::{DomainName, Email, Password, Slug};
    use tenantry_public::plans::PlanCode;
    use tenantry_public::CompanyId;
    use tenantry_tenant::jobs::{run_for_tenant, TenantRun};
    use tenantry_tenant::provision::{provision, NewTenant, Owner};
    use tenantry_tenant::reminders::{
        due_period, run_overdue_digest, DueReminders, DueRemindersOutcome, OverdueRun,
    };
    use uuid::Uuid;

    pub(super) fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("RFC 3339")
            .with_timezone(&Utc)
    }

    pub(super) fn links() -> Links {
        Links::new(DomainName::parse("example.test").expect("domain"))
    }

    /// A provisioned tenant (primary domain `{slug}.example.test`) in `timezone`, with its
    /// owner's id.
    pub(super) async fn tenant(
        db: &Db,
        client: &tokio_postgres::Client,
        slug: &str,
        timezone: &str,
    ) -> (CompanyId, Uuid) {
        let done = provision(
            db,
            &DomainName::parse("example.test").expect("domain"),
            NewTenant {
                name: format!("{slug} Inc"),
                slug: Slug::parse(slug).expect("slug"),
                plan: PlanCode::Professional,
                trial_from: None,
                owner: Owner::New {
                    email: Email::parse(&format!("owner@{slug}.test")).expect("email"),
                    password: Password::parse(&format!("password-of-{slug}")).expect("password"),
                    full_name: format!("Owner of {slug}"),
                },
            },
        )
        .await
        .expect("provision");
        client
            .execute(
                "update public.company_settings set timezone = $2 where company_id = $1",
                &[&done.company.id, &timezone],
            )
            .await
            .expect("timezone");
        (done.company.id, done.owner.id.0)
    }

    /// A member of `company`: `membership_active` false is a deactivated member,
    /// `account_active` false a deactivated account.
    pub(super) async fn member(
        client: &tokio_postgres::Client,
        company: CompanyId,
        email: &str,
        membership_active: bool,
        account_active: bool,
    ) -> Uuid {
        let id = Uuid::now_v7();
        client
            .execute(
                "insert into public.users (id, email, password_hash, full_name, email_verified_at, is_active) \
                 values ($1, $2, 'x', '', now(), $3)",
                &[&id, &email, &account_active],
            )
            .await
            .expect("user");
        client
            .execute(
                "insert into public.memberships (id, user_id, company_id, role, is_active) \
                 values ($1, $2, $3, 'member', $4)",
                &[&Uuid::now_v7(), &id, &company, &membership_active],
            )
            .await
            .expect("membership");
        id
    }

    /// A project of tenant `slug` owned and led by `lead`.
    pub(super) async fn project(
        client: &tokio_postgres::Client,
        slug: &str,
        name: &str,
        lead: Uuid,
    ) -> Uuid {
        let id = Uuid::now_v7();
        client
            .execute(
                &format!(
                    "insert into tenant_{slug}.projects (id, name, owner_id) values ($1, $2, $3)"
                ),
                &[&id, &name, &lead],
            )
            .await
            .expect("project");
        client
            .execute(
                &format!(
                    "insert into tenant_{slug}.project_members (project_id, user_id, role) \
                     values ($1, $2, 'lead')"
                ),
                &[&id, &lead],
            )
            .await
            .expect("lead");
        id
    }

    /// A task of `project` in tenant `slug`, created by `by`.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn task(
        client: &tokio_postgres::Client,
        slug: &str,
        project: Uuid,
        by: Uuid,
        title: &str,
        status: &str,
        assignee: Option<Uuid>,
        due_at: DateTime<Utc>,
    ) -> Uuid {
        let id = Uuid::now_v7();
        client
            .execute(
                &format!(
                    "insert into tenant_{slug}.tasks \
                       (id, project_id, title, status, assignee_id, created_by, due_at, completed_at) \
                     values ($1, $2, $3, $4, $5, $6, $7, case when $4 = 'done' then now() end)"
                ),
                &[&id, &project, &title, &status, &assignee, &by, &due_at],
            )
            .await
            .expect("task");
        id
    }

    /// Every queued email's payload about tasks (not the owners' welcome), oldest first.
    pub(super) async fn outbox(client: &tokio_postgres::Client) -> Vec<Value> {
        client
            .query(
                "select payload from public.outbox where payload->>'kind' <> 'welcome' order by id",
                &[],
            )
            .await
            .expect("outbox")
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    async fn remind(db: &Db, company: CompanyId, now: DateTime<Utc>) -> Option<u64> {
        let work = DueReminders { links: links() };
        match run_for_tenant(db, &work, company, &due_period(now), now)
            .await
            .expect("run")
        {
            TenantRun::Done(_, DueRemindersOutcome { reminders, .. }) => Some(reminders),
            TenantRun::Skipped(..) | TenantRun::NotMine => None,
        }
    }

    /// The due reminders: one email per task, due instant and assignee, to active members only,
    /// never for closed or unassigned tasks or in a suspended tenant; a changed due date or
    /// assignee re-arms it, and the reminder for what the task no longer is never goes out.
    #[tokio::test]
    async fn due_reminders_go_out_once_and_again_after_a_change() {
        let (database, client) = migrated_database().await;
        let db = Db::connect(&database.url, &Default::default()).expect("pool");
        let (acme, owner) = tenant(&db, &client, "acme", "Europe/Berlin").await;
        let ann = member(&client, acme, "ann@acme.test", true, true).await;
        let dan = member(&client, acme, "dan@acme.test", true, true).await;
        let bob = member(&client, acme, "bob@acme.test", false, true).await;
        let cat = member(&client, acme, "cat@acme.test", true, false).await;
        let launch = project(&client, "acme", "Launch", owner).await;
        let now = at("2026-05-01T12:00:00Z");
        let hours = |h: i64| now + chrono::Duration::hours(h);
        let ship = task(
            &client,
            "acme",
            launch,
            owner,
            "Ship it",
            "todo",
            Some(ann),
            hours(2),
        )
        .await;
        let later = task(
            &client,
            "acme",
            launch,
            owner,
            "Later",
            "in_progress",
            Some(ann),
            hours(30),
        )
        .await;
        let moved = task(
            &client,
            "acme",
            launch,
            owner,
            "Moved",
            "todo",
            Some(ann),
            hours(40),
        )
        .await;
        for (title, status, assignee) in [
            ("Done", "done", Some(ann)),
            ("Cancelled", "cancelled", Some(ann)),
            ("Nobody's", "todo", None),
            ("Deactivated member's", "todo", Some(bob)),
            ("Deactivated account's", "todo", Some(cat)),
        ] {
            task(
                &client,
                "acme",
                launch,
                owner,
                title,
                status,
                assignee,
                hours(3),
            )
            .await;
        }
        // Already overdue: too late for a reminder.
        task(
            &client,
            "acme",
            launch,
            owner,
            "Overdue",
            "todo",
            Some(ann),
            hours(-1),
        )
        .await;
        let (globex, globex_owner) = tenant(&db, &client, "globex", "UTC").await;
        let g = project(&client, "globex", "G", globex_owner).await;
        task(
            &client,
            "globex",
            g,
            globex_owner,
            "Suspended",
            "todo",
            Some(globex_owner),
            hours(2),
        )
        .await;
        client
            .execute(
                "update public.companies set status = 'suspended' where id = $1",
                &[&globex],
            )
            .await
            .expect("suspend");

        assert_eq!(
            remind(&db, acme, now).await,
            Some(1),
            "only Ship it is due within 24 h"
        );
        assert_eq!(remind(&db, acme, now).await, None, "the tick's run is done");
        assert_eq!(
            remind(&db, globex, now).await,
            None,
            "a suspended tenant is skipped"
        );
        let mails = outbox(&client).await;
        assert_eq!(mails.len(), 1, "{mails:?}");
        assert_eq!(mails[0]["kind"], "task_due");
        assert_eq!(mails[0]["to"], "ann@acme.test");
        assert_eq!(mails[0]["task_title"], "Ship it");
        assert_eq!(mails[0]["project"], "Launch");
        assert_eq!(mails[0]["organization"], "acme Inc");
        assert_eq!(mails[0]["due"], "2026-05-01 16:00 (Europe/Berlin)");
        assert_eq!(
            mails[0]["link"],
            format!("http://acme.example.test/tasks/{ship}")
        );
        let outcome: Value = client
            .query_one(
                "select outcome from public.job_runs where job = 'reminders.due' and company_id = $1",
                &[&acme],
            )
            .await
            .expect("run")
            .get(0);
        assert_eq!(outcome, serde_json::json!({ "reminders": 1 }));
        let skipped: String = client
            .query_one(
                "select status from public.job_runs where job = 'reminders.due' and company_id = $1",
                &[&globex],
            )
            .await
            .expect("run")
            .get(0);
        assert_eq!(skipped, "skipped");

        // The next ticks: nothing new.
        let tick = |m: i64| now + chrono::Duration::minutes(m);
        assert_eq!(remind(&db, acme, tick(15)).await, Some(0));
        // "Moved" is moved into the window before it was ever reminded: one reminder, for its
        // new due date; "Ship it" is moved to later the same day: reminded again; "Later" is
        // given to Dan: Dan is reminded once it is within the lead time.
        let exec = |sql: String| {
            let client = &client;
            async move { client.batch_execute(&sql).await.expect("change") }
        };
        exec(format!(
            "update tenant_acme.tasks set due_at = '2026-05-01T20:00:00Z' where id = '{moved}'"
        ))
        .await;
        exec(format!(
            "update tenant_acme.tasks set due_at = '2026-05-01T18:00:00Z' where id = '{ship}'"
        ))
        .await;
        exec(format!(
            "update tenant_acme.tasks set assignee_id = '{dan}' where id = '{later}'"
        ))
        .await;
        assert_eq!(remind(&db, acme, tick(30)).await, Some(2));
        assert_eq!(remind(&db, acme, tick(45)).await, Some(0));
        // A longer lead time reaches "Later" (due in 30 h), now Dan's.
        client
            .execute(
                "update public.company_settings set reminder_lead_hours = 48 where company_id = $1",
                &[&acme],
            )
            .await
            .expect("lead hours");
        assert_eq!(remind(&db, acme, tick(60)).await, Some(1));
        let sent: Vec<(String, String, String)> = outbox(&client)
            .await
            .iter()
            .map(|m| {
                (
                    m["to"].as_str().unwrap_or_default().to_owned(),
                    m["task_title"].as_str().unwrap_or_default().to_owned(),
                    m["due"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let sent: Vec<(&str, &str, &str)> = sent
            .iter()
            .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
            .collect();
        assert_eq!(
            sent,
            [
                (
                    "ann@acme.test",
                    "Ship it",
                    "2026-05-01 16:00 (Europe/Berlin)"
                ),
                (
                    "ann@acme.test",
                    "Ship it",
                    "2026-05-01 20:00 (Europe/Berlin)"
                ),
                ("ann@acme.test", "Moved", "2026-05-01 22:00 (Europe/Berlin)"),
                ("dan@acme.test", "Later", "2026-05-02 20:00 (Europe/Berlin)"),
            ]
        );
        // One notification row per email; none for Moved's old due date or Ann's "Later".
        let keys: Vec<(Uuid, Uuid, String)> = client
            .query(
                "select task_id, recipient_id, period_key from tenant_acme.notifications \
                  where kind = 'due_reminder' order by sent_at, period_key",
                &[],
            )
            .await
            .expect("notifications")
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        assert_eq!(keys.len(), 4, "{keys:?}");
        assert!(keys.contains(&(moved, ann, format!("2026-05-01T20:00:00.000000Z/{ann}"))));
        assert!(keys.contains(&(later, dan, format!("2026-05-02T18:00:00.000000Z/{dan}"))));
        assert!(!keys.iter().any(|(t, r, _)| *t == later && *r == ann));
    }

    /// Concurrent runs of different ticks (two workers, or a worker and `tenantctl`) at the same
    /// instant: each task's reminder still goes out once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_reminder_runs_send_each_reminder_once() {
        let (database, client) = migrated_database().await;
        let db = Db::connect(&database.url, &Default::default()).expect("pool");
        let (acme, owner) = tenant(&db, &client, "acme", "UTC").await;
        let p = project(&client, "acme", "P", owner).await;
        let now = at("2026-05-01T12:00:00Z");
        for i in 0..20 {
            task(
                &client,
                "acme",
                p,
                owner,
                &format!("T{i}"),
                "todo",
                Some(owner),
                now + chrono::Duration::minutes(30 + i),
            )
            .await;
        }
        let mut runs = Vec::new();
        for i in 0..6 {
            let db = db.clone();
            // Six different periods, so every run is claimed and all of them race.
            runs.push(tokio::spawn(async move {
                let work = DueReminders { links: links() };
                let period = format!("race-{i}");
                match run_for_tenant(&db, &work, acme, &period, now)
                    .await
                    .expect("run")
                {
                    TenantRun::Done(_, done) => done.reminders,
                    other => panic!("{other:?}"),
                }
            }));
        }
        let mut sent = 0;
        for run in runs {
            sent += run.await.expect("join");
        }
        assert_eq!(sent, 20, "the runs together sent each reminder once");
        assert_eq!(outbox(&client).await.len(), 20);
    }

    /// The overdue digest over two days of quarter-hour ticks, for an organization in Auckland
    /// (UTC+13 in December) and one in Los Angeles (UTC−8): each runs once per local day, at
    /// the first tick at or after 08:00 local (or at once when the first tick is later), none
    /// before; every run mails each active assignee one digest and each project lead one
    /// summary, and records its counts.
    #[tokio::test]
    async fn overdue_digest_runs_once_per_local_day_in_each_time_zone() {
        let (database, client) = migrated_database().await;
        let db = Db::connect(&database.url, &Default::default()).expect("pool");
        let mut orgs = Vec::new();
        for (slug, tz) in [
            ("auckland", "Pacific/Auckland"),
            ("angeles", "America/Los_Angeles"),
        ] {
            let (company, owner) = tenant(&db, &client, slug, tz).await;
            let ann = member(&client, company, &format!("ann@{slug}.test"), true, true).await;
            let bob = member(&client, company, &format!("bob@{slug}.test"), false, true).await;
            let web = project(&client, slug, "Web", owner).await;
            let app = project(&client, slug, "App", ann).await;
            let due = at("2026-12-05T12:00:00Z");
            task(
                &client,
                slug,
                web,
                owner,
                "Web overdue",
                "todo",
                Some(ann),
                due,
            )
            .await;
            task(
                &client,
                slug,
                app,
                owner,
                "App overdue",
                "in_review",
                Some(ann),
                due,
            )
            .await;
            task(&client, slug, web, owner, "Nobody's", "todo", None, due).await;
            task(&client, slug, web, owner, "Bob's", "todo", Some(bob), due).await;
            task(&client, slug, web, owner, "Done", "done", Some(ann), due).await;
            task(
                &client,
                slug,
                web,
                owner,
                "Future",
                "todo",
                Some(ann),
                at("2027-01-01T00:00:00Z"),
            )
            .await;
            orgs.push((slug, company));
        }
        let mut not_yet = Vec::new();
        let first = at("2026-12-07T10:00:00Z");
        for q in 0..(32 * 4) {
            let tick = first + chrono::Duration::minutes(15 * q);
            for (slug, company) in &orgs {
                match run_overdue_digest(&db, &links(), *company, tick)
                    .await
                    .expect("run")
                {
                    OverdueRun::NotYet => not_yet.push((*slug, tick)),
                    OverdueRun::Day(_, TenantRun::Done(..) | TenantRun::NotMine) => {}
                    OverdueRun::Day(_, other) => panic!("{other:?}"),
                }
            }
        }
        let runs: Vec<(String, String, DateTime<Utc>, String)> = client
            .query(
                "select c.slug, r.period, r.claimed_at, r.status from public.job_runs r \
                   join public.companies c on c.id = r.company_id \
                  where r.job = 'reminders.overdue' order by c.slug desc, r.claimed_at",
                &[],
            )
            .await
            .expect("runs")
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        let expected = [
            // 23:00 local on 7 December at the first tick: that day still gets its digest.
            ("auckland", "2026-12-07", "2026-12-07T10:00:00Z"),
            // 08:00 NZDT on 8 December.
            ("auckland", "2026-12-08", "2026-12-07T19:00:00Z"),
            // 08:00 PST on 7 and 8 December.
            ("angeles", "2026-12-07", "2026-12-07T16:00:00Z"),
            ("angeles", "2026-12-08", "2026-12-08T16:00:00Z"),
        ];
        assert_eq!(
            runs,
            expected
                .iter()
                .map(|(s, p, c)| ((*s).to_owned(), (*p).to_owned(), at(c), "done".to_owned()))
                .collect::<Vec<_>>()
        );
        // Before 08:00 local nothing was claimed: Auckland from its midnight (11:00Z) until
        // 19:00Z, Los Angeles from 10:00Z (02:00 local) until 16:00Z.
        assert!(not_yet.contains(&("auckland", at("2026-12-07T11:00:00Z"))));
        assert!(not_yet.contains(&("auckland", at("2026-12-07T18:45:00Z"))));
        assert!(not_yet.contains(&("angeles", at("2026-12-07T15:45:00Z"))));
        assert!(not_yet.contains(&("angeles", at("2026-12-08T15:45:00Z"))));
        assert!(not_yet.contains(&("auckland", at("2026-12-08T11:00:00Z"))));
        // Auckland: 11:00Z–18:45Z on the 7th and 11:00Z–17:45Z on the 8th; Los Angeles:
        // 10:00Z–15:45Z on the 7th and 08:00Z–15:45Z on the 8th.
        assert_eq!(not_yet.len(), 32 + 28 + 24 + 32, "{not_yet:?}");

        // Each run: Ann's digest (her two tasks), the owner's summary of Web (three overdue
        // tasks, Bob's and the unassigned one included) and Ann's summary of App.
        let mails: Vec<(String, String, String, bool, Vec<String>)> = outbox(&client)
            .await
            .iter()
            .map(|m| {
                assert_eq!(m["kind"], "overdue_digest");
                let titles = m["tasks"]
                    .as_array()
                    .expect("tasks")
                    .iter()
                    .map(|t| t["title"].as_str().unwrap_or_default().to_owned())
                    .collect();
                (
                    m["organization"].as_str().unwrap_or_default().to_owned(),
                    m["date"].as_str().unwrap_or_default().to_owned(),
                    m["to"].as_str().unwrap_or_default().to_owned(),
                    m["lead"].as_bool().unwrap_or_default(),
                    titles,
                )
            })
            .collect();
        assert_eq!(mails.len(), 4 * 3, "{mails:#?}");
        for (slug, date, _) in expected {
            let org = format!("{slug} Inc");
            let of = |to: &str, lead: bool| {
                mails
                    .iter()
                    .filter(|m| m.0 == org && m.1 == date && m.2 == to && m.3 == lead)
                    .map(|m| m.4.clone())
                    .collect::<Vec<_>>()
            };
            let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
            assert_eq!(
                of(&format!("ann@{slug}.test"), false),
                [strings(&["Web overdue", "App overdue"])],
                "{slug} {date}"
            );
            assert_eq!(
                of(&format!("ann@{slug}.test"), true),
                [strings(&["App overdue"])],
                "{slug} {date}"
            );
            assert_eq!(
                of(&format!("owner@{slug}.test"), true),
                [strings(&["Web overdue", "Nobody's", "Bob's"])],
                "{slug} {date}"
            );
            assert!(of(&format!("bob@{slug}.test"), false).is_empty());
        }
        // Days overdue count local dates: due 5 December 12:00Z is 6 December 01:00 in
        // Auckland (1 day before the 7th) and 5 December 04:00 in Los Angeles (2 days).
        assert_eq!(
            first_of_owners_digest(&client, "auckland Inc").await.0,
            serde_json::json!(1)
        );
        assert_eq!(
            first_of_owners_digest(&client, "angeles Inc").await,
            (serde_json::json!(2), serde_json::json!("ann@angeles.test"))
        );
        let outcome: Value = client
            .query_one(
                "select r.outcome from public.job_runs r join public.companies c on c.id = r.company_id \
                  where c.slug = 'angeles' and r.job = 'reminders.overdue' and r.period = '2026-12-07'",
                &[],
            )
            .await
            .expect("outcome")
            .get(0);
        assert_eq!(
            outcome,
            serde_json::json!({
                "date": "2026-12-07", "overdue_tasks": 4, "emails": 3,
                "digests": 1, "lead_summaries": 2,
            })
        );

        // A day run again (its run row gone, as after an operator's mistake) finds every
        // notification written and sends nothing.
        let (_, angeles) = orgs[1];
        client
            .execute(
                "delete from public.job_runs where company_id = $1 and period = '2026-12-08'",
                &[&angeles],
            )
            .await
            .expect("forget the run");
        match run_overdue_digest(&db, &links(), angeles, at("2026-12-08T20:00:00Z"))
            .await
            .expect("run")
        {
            OverdueRun::Day(_, TenantRun::Done(_, done)) => {
                assert_eq!((done.overdue_tasks, done.emails), (4, 0));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(outbox(&client).await.len(), 12);
    }

    /// The first task of the owner's summary of 7 December: its days overdue and assignee.
    async fn first_of_owners_digest(client: &tokio_postgres::Client, org: &str) -> (Value, Value) {
        let row = client
            .query_one(
                "select payload->'tasks'->0->'days_overdue', payload->'tasks'->0->'assignee' \
                   from public.outbox where payload->>'organization' = $1 \
                    and payload->>'date' = '2026-12-07' and payload->>'to' like 'owner@%'",
                &[&org],
            )
            .await
            .expect("digest");
        (row.get(0), row.get(1))
    }

    /// Two workers firing both reminder ticks every second against one tenant: one due reminder
    /// and one digest per recipient, one fan-out per tick, and each tick's run once.
    #[tokio::test]
    async fn two_workers_send_each_reminder_and_digest_once() {
        let (database, client) = migrated_database().await;
        let db = Db::connect(&database.url, &Default::default()).expect("pool");
        // A zone where it is 08:00 or later now, so today's digest is due.
        let tz = if Utc::now().format("%H").to_string().as_str() >= "08" {
            "UTC"
        } else {
            "Pacific/Auckland"
        };
        let (_, owner) = tenant(&db, &client, "acme", tz).await;
        let p = project(&client, "acme", "P", owner).await;
        let now = Utc::now();
        task(
            &client,
            "acme",
            p,
            owner,
            "Soon",
            "todo",
            Some(owner),
            now + chrono::Duration::hours(3),
        )
        .await;
        task(
            &client,
            "acme",
            p,
            owner,
            "Late",
            "todo",
            Some(owner),
            now - chrono::Duration::hours(30),
        )
        .await;

        let mail_dir = tempfile_dir();
        let prefix = unique_prefix();
        let url = redis_url();
        let vars = [
            (ENV_REDIS_URL, url.as_str()),
            ("DATABASE_URL", database.url.as_str()),
            ("MAIL_DIR", mail_dir.as_str()),
            (ENV_QUEUE_PREFIX, prefix.as_str()),
            ("WORKER_REMINDER_CRON", "* * * * * *"),
            ("WORKER_OVERDUE_CRON", "* * * * * *"),
            ("WORKER_FANOUT_WINDOW_SECS", "0"),
            ("BASE_DOMAIN", "example.test"),
        ];
        let workers = Workers::start(&vars, 2);
        let kinds = "select count(*) filter (where payload->>'kind' = 'task_due'), \
                            count(*) filter (where payload->>'kind' = 'overdue_digest') \
                       from public.outbox";
        let mut counts = (0_i64, 0_i64);
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let row = client.query_one(kinds, &[]).await.expect("count");
            counts = (row.get(0), row.get(1));
            if counts == (1, 2) {
                break;
            }
        }
        assert_eq!(
            counts,
            (1, 2),
            "one reminder; the owner's digest and lead summary"
        );
        // More ticks of both workers send nothing more.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let row = client.query_one(kinds, &[]).await.expect("count");
        assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (1, 2));
        let per_tick: Vec<(String, i64, i64)> = client
            .query(
                "select job, count(*), count(distinct period) from public.job_runs \
                  where job like 'reminders.%' group by job order by job",
                &[],
            )
            .await
            .expect("runs")
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        for (job, runs, periods) in &per_tick {
            assert_eq!(runs, periods, "{job}: one run per period");
        }
        let overdue_runs = per_tick
            .iter()
            .find(|(job, ..)| job == "reminders.overdue")
            .map(|(_, runs, _)| *runs);
        assert_eq!(overdue_runs, Some(1), "one digest run for the local day");
        // Delivered at once (a delivered row keeps only kind and recipient): the links are in
        // the written emails.
        let mut written = String::new();
        for _ in 0..50 {
            written = std::fs::read_dir(&mail_dir)
                .expect("mail dir")
                .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                .collect();
            if written.contains("http://acme.example.test/tasks/") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            written.contains("http://acme.example.test/tasks/"),
            "{written}"
        );
        workers.stop(&prefix).await;
    }

    /// A worker SIGKILLed in the middle of the overdue check's runs (spread over a window),
    /// then another started: every tenant's digest run is done once and every email (the
    /// owner's digest and lead summary) is in the outbox once — none lost, none twice.
    #[tokio::test]
    async fn a_worker_killed_mid_overdue_check_leaves_each_email_sent_once() {
        const TENANTS: usize = 6;
        let (database, client) = migrated_database().await;
        let db = Db::connect(&database.url, &Default::default()).expect("pool");
        // A zone where it is 08:00 or later now, so today's digest is due.
        let tz = if Utc::now().format("%H").to_string().as_str() >= "08" {
            "UTC"
        } else {
            "Pacific/Auckland"
        };
        for n in 0..TENANTS {
            let slug = format!("late{n}");
            let (_, owner) = tenant(&db, &client, &slug, tz).await;
            let p = project(&client, &slug, "P", owner).await;
            let due = Utc::now() - chrono::Duration::hours(30);
            task(&client, &slug, p, owner, "Late", "todo", Some(owner), due).await;
        }
        let mail_dir = tempfile_dir();
        let prefix = unique_prefix();
        let url = redis_url();
        let vars = [
            (ENV_REDIS_URL, url.as_str()),
            ("DATABASE_URL", database.url.as_str()),
            ("MAIL_DIR", mail_dir.as_str()),
            (ENV_QUEUE_PREFIX, prefix.as_str()),
            ("WORKER_OVERDUE_CRON", "* * * * * *"),
            // The tenants' runs spread over 20 seconds, so the kill lands between them.
            ("WORKER_FANOUT_WINDOW_SECS", "20"),
            ("BASE_DOMAIN", "example.test"),
        ];
        let done_runs = "select count(*) from public.job_runs \
                          where job = 'reminders.overdue' and status = 'done'";
        let second = kill_mid_run_then_finish(&client, &vars, done_runs, TENANTS as i64).await;
        let runs: Vec<(String, i32, i64)> = client
            .query(
                "select c.slug, r.attempts, count(*) over (partition by r.company_id) \
                   from public.job_runs r join public.companies c on c.id = r.company_id \
                  where r.job = 'reminders.overdue' and r.status = 'done' order by c.slug",
                &[],
            )
            .await
            .expect("runs")
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        let expected: Vec<(String, i32, i64)> =
            (0..TENANTS).map(|n| (format!("late{n}"), 1, 1)).collect();
        assert_eq!(
            runs, expected,
            "each tenant's day run once, never taken over"
        );
        // A delivered row keeps only its kind and recipient: each owner gets two (the digest
        // and the lead summary), and the notifications say which is which.
        let emails: Vec<(String, i64)> = client
            .query(
                "select payload->>'to', count(*) from public.outbox \
                  where payload->>'kind' = 'overdue_digest' group by 1 order by 1",
                &[],
            )
            .await
            .expect("emails")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let expected: Vec<(String, i64)> = (0..TENANTS)
            .map(|n| (format!("owner@late{n}.test"), 2))
            .collect();
        assert_eq!(emails, expected, "each digest and lead summary once");
        for n in 0..TENANTS {
            let keys = count(
                &client,
                &format!(
                    "select count(distinct period_key) from tenant_late{n}.notifications \
                      where kind = 'overdue_digest'"
                ),
            )
            .await;
            assert_eq!(
                keys, 2,
                "late{n}: the assignee's digest and the lead's summary"
            );
        }
        drop(second);
        let mut conn = redis().await;
        cleanup(&mut conn, &prefix).await;
    }
}

/// A `tenantry-worker` process (the real binary), killed when dropped.
struct WorkerProcess(std::process::Child);

impl WorkerProcess {
    fn spawn(vars: &[(&str, &str)]) -> Self {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tenantry-worker"));
        // No `.env` of the workspace: only what the test gives it.
        command
            .current_dir(std::env::temp_dir())
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit());
        for (k, v) in vars {
            command.env(k, v);
        }
        Self(command.spawn().expect("start tenantry-worker"))
    }

    /// SIGKILL: no shutdown, no clean-up, whatever it was doing.
    fn kill(mut self) {
        self.0.kill().expect("SIGKILL the worker");
        self.0.wait().expect("reap the worker");
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a worker with `vars`, SIGKILLs it once `done_runs` (a count of finished runs) is
/// above zero and asserts that came before all `total` were done, then starts another and waits
/// for all of them and a few more ticks. Answers the second worker, still running.
async fn kill_mid_run_then_finish(
    client: &tokio_postgres::Client,
    vars: &[(&str, &str)],
    done_runs: &str,
    total: i64,
) -> WorkerProcess {
    let first = WorkerProcess::spawn(vars);
    let mut done = 0;
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        done = count(client, done_runs).await;
        if done > 0 {
            break;
        }
    }
    assert!(done > 0, "the first worker fanned out and ran a tenant");
    first.kill();
    let at_kill = count(client, done_runs).await;
    assert!(
        at_kill < total,
        "the kill came mid-run ({at_kill} of {total} done)"
    );

    let second = WorkerProcess::spawn(vars);
    for _ in 0..400 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if count(client, done_runs).await == total {
            break;
        }
    }
    // A few more ticks of the second worker change nothing.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    second
}

/// Provisions tenant `slug` with one invitation expired long ago (the clean-up deletes it) and
/// one pending (it stays).
async fn tenant_with_invitations(
    db: &tenantry_public::db::Db,
    client: &tokio_postgres::Client,
    slug: &str,
) {
    use tenantry_public::names::{DomainName, Email, Password, Slug};
    use tenantry_public::plans::PlanCode;
    use tenantry_tenant::provision::{provision, NewTenant, Owner};
    provision(
        db,
        &DomainName::parse("example.test").expect("domain"),
        NewTenant {
            name: format!("{slug} Inc"),
            slug: Slug::parse(slug).expect("slug"),
            plan: PlanCode::Free,
            trial_from: None,
            owner: Owner::New {
                email: Email::parse(&format!("owner@{slug}.test")).expect("email"),
                password: Password::parse(&format!("password-of-{slug}")).expect("password"),
                full_name: String::new(),
            },
        },
    )
    .await
    .expect("provision");
    client
        .batch_execute(&format!(
            "insert into tenant_{slug}.invitations (id, email, role, token_hash, expires_at) \
               values (gen_random_uuid(), 'a@x.test', 'member', decode(repeat('01', 32), 'hex'), \
                       now() - interval '100 days'), \
                      (gen_random_uuid(), 'b@x.test', 'member', decode(repeat('02', 32), 'hex'), \
                       now() + interval '1 day')"
        ))
        .await
        .expect("invitations");
}

/// (slug, status, attempts) of every tenant clean-up run, by slug.
async fn tenant_runs(client: &tokio_postgres::Client) -> Vec<(String, String, i32)> {
    client
        .query(
            "select c.slug, r.status, r.attempts from public.job_runs r \
               join public.companies c on c.id = r.company_id \
              where r.job = 'cleanup.tenant' order by 1",
            &[],
        )
        .await
        .expect("runs")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.expect("count").get(0)
}

const DONE_RUNS: &str =
    "select count(*) from public.job_runs where job = 'cleanup.tenant' and status = 'done'";

/// A worker process SIGKILLed in the middle of a fan-out's runs (spread over a window), then
/// another started: every tenant's run is done exactly once (one claim each, never taken over),
/// none is lost (the queued runs wait in Redis for the next worker) and each tenant's expired
/// invitation is gone.
#[tokio::test]
async fn a_killed_worker_leaves_a_fan_out_that_the_next_worker_finishes_once() {
    const TENANTS: i64 = 6;
    let (database, client) = migrated_database().await;
    let db = tenantry_public::db::Db::connect(&database.url, &Default::default()).expect("pool");
    let slugs: Vec<String> = (0..TENANTS).map(|n| format!("tenant{n}")).collect();
    for slug in &slugs {
        tenant_with_invitations(&db, &client, slug).await;
    }
    let mail_dir = tempfile_dir();
    let prefix = unique_prefix();
    let url = redis_url();
    let vars = [
        (ENV_REDIS_URL, url.as_str()),
        ("DATABASE_URL", database.url.as_str()),
        ("MAIL_DIR", mail_dir.as_str()),
        (ENV_QUEUE_PREFIX, prefix.as_str()),
        ("WORKER_CLEANUP_CRON", "* * * * * *"),
        // The tenants' runs spread over 20 seconds, so the kill lands between them.
        ("WORKER_FANOUT_WINDOW_SECS", "20"),
    ];
    let second = kill_mid_run_then_finish(&client, &vars, DONE_RUNS, TENANTS).await;
    let runs = tenant_runs(&client).await;
    let expected: Vec<(String, String, i32)> = slugs
        .iter()
        .map(|s| (s.clone(), "done".to_owned(), 1))
        .collect();
    assert_eq!(runs, expected, "each tenant done once, never taken over");
    let fanouts: Vec<(String, i32)> = client
        .query(
            "select status, attempts from public.job_runs where job = 'cleanup.tenant.fanout'",
            &[],
        )
        .await
        .expect("fan-outs")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(fanouts, [("done".to_owned(), 1)], "one fan-out for the day");
    for slug in &slugs {
        let left = count(
            &client,
            &format!("select count(*) from tenant_{slug}.invitations"),
        )
        .await;
        assert_eq!(left, 1, "{slug}: the expired invitation went, once");
    }
    drop(second);
    let mut conn = redis().await;
    cleanup(&mut conn, &prefix).await;
}

/// The fan-out reads the tenants at each tick, not once at start: a tenant provisioned while the
/// worker runs is in the next day's fan-out. (The fan-out is claimed per calendar day; the test
/// turns the day over by moving today's claim to yesterday, since the process reads the real
/// clock.)
#[tokio::test]
async fn a_tenant_created_after_the_worker_started_is_in_the_next_fan_out() {
    let (database, client) = migrated_database().await;
    let db = tenantry_public::db::Db::connect(&database.url, &Default::default()).expect("pool");
    tenant_with_invitations(&db, &client, "early").await;
    let mail_dir = tempfile_dir();
    let prefix = unique_prefix();
    let url = redis_url();
    let vars = [
        (ENV_REDIS_URL, url.as_str()),
        ("DATABASE_URL", database.url.as_str()),
        ("MAIL_DIR", mail_dir.as_str()),
        (ENV_QUEUE_PREFIX, prefix.as_str()),
        ("WORKER_CLEANUP_CRON", "* * * * * *"),
        ("WORKER_FANOUT_WINDOW_SECS", "0"),
    ];
    let worker = WorkerProcess::spawn(&vars);
    let wait_for = |n: i64| {
        let client = &client;
        async move {
            // Up to 40 s: on a loaded machine a tick, the fan-out and the run take a while.
            for _ in 0..400 {
                if count(client, DONE_RUNS).await == n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    wait_for(1).await;
    assert_eq!(
        tenant_runs(&client).await,
        [("early".to_owned(), "done".to_owned(), 1)]
    );

    tenant_with_invitations(&db, &client, "late").await;
    // Ticks on the same day: the day's fan-out is done, so the new tenant waits for tomorrow.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(count(&client, DONE_RUNS).await, 1);
    // The day turns over.
    client
        .batch_execute(
            "update public.job_runs set period = (current_date - 1)::text \
              where job = 'cleanup.tenant.fanout'",
        )
        .await
        .expect("yesterday");
    wait_for(2).await;
    assert_eq!(
        tenant_runs(&client).await,
        [
            ("early".to_owned(), "done".to_owned(), 1),
            ("late".to_owned(), "done".to_owned(), 1),
        ],
        "the late tenant ran; the early one was not run again this week"
    );
    let late_left = count(&client, "select count(*) from tenant_late.invitations").await;
    assert_eq!(late_left, 1);
    drop(worker);
    let mut conn = redis().await;
    cleanup(&mut conn, &prefix).await;
}

/// Deleted organizations are dropped by `organization.drop` (on the clean-up tick) once their
/// grace period has passed, and not before: the schema and the company row go, another tenant
/// (and one still in its grace period) stays, a tenant whose drop fails is counted and does not
/// stop the others, and the next day's run drops it.
#[tokio::test]
async fn deleted_organizations_are_dropped_after_their_grace_and_not_before() {
    use tenantry_public::jobs::Ran;
    use tenantry_tenant::organization::{drop_due, DropFailure, DELETION_GRACE};
    let (database, client) = migrated_database().await;
    let db = tenantry_public::db::Db::connect(&database.url, &Default::default()).expect("pool");
    for slug in ["gone", "broken", "later", "kept"] {
        tenant_with_invitations(&db, &client, slug).await;
    }
    let deleted_at: DateTime<Utc> = "2026-11-02T10:00:00Z".parse().expect("instant");
    let delete = |slug: &'static str, at: DateTime<Utc>| {
        let client = &client;
        async move {
            client
                .execute(
                    "update public.companies set status = 'suspended', \
                            deletion_requested_at = $2, drop_after = $3 where slug = $1",
                    &[&slug, &at, &(at + DELETION_GRACE)],
                )
                .await
                .expect("mark for deletion")
        }
    };
    delete("gone", deleted_at).await;
    delete("broken", deleted_at).await;
    delete("later", deleted_at + chrono::Duration::days(10)).await;
    // A drop the database refuses (as any failure would), for one tenant only.
    client
        .batch_execute(
            "create function public.refuse_drop() returns trigger language plpgsql as $$ \
             begin if old.slug = 'broken' then raise exception 'refused for the test'; end if; \
             return old; end $$; \
             create trigger refuse_drop before delete on public.companies \
             for each row execute function public.refuse_drop();",
        )
        .await
        .expect("trigger");
    let schemas = || async {
        let rows = client
            .query(
                "select nspname::text from pg_catalog.pg_namespace \
                  where nspname like 'tenant\\_%' order by 1",
                &[],
            )
            .await
            .expect("schemas");
        rows.iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
    };
    let companies = || async {
        let rows = client
            .query("select slug from public.companies order by slug", &[])
            .await
            .expect("companies");
        rows.iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
    };
    let all = ["broken", "gone", "kept", "later"];

    // A day before the grace period ends: nothing.
    let early = deleted_at + DELETION_GRACE - chrono::Duration::days(1);
    match drop_due(&db, early).await.expect("run") {
        Ran::Done(_, drops) => assert_eq!(drops, Default::default()),
        Ran::NotMine => panic!("the day's run is this caller's"),
    }
    assert_eq!(companies().await, all);
    assert_eq!(
        schemas().await,
        [
            "tenant_broken",
            "tenant_gone",
            "tenant_kept",
            "tenant_later"
        ]
    );

    // Past it: `gone` is dropped; `broken` fails and is counted; the others stay.
    let due = deleted_at + DELETION_GRACE + chrono::Duration::hours(1);
    let Ran::Done(run, drops) = drop_due(&db, due).await.expect("run") else {
        panic!("the day's run is this caller's");
    };
    assert_eq!(drops.dropped, ["gone"]);
    assert_eq!(
        drops
            .failed
            .iter()
            .map(|f| f.slug.as_str())
            .collect::<Vec<_>>(),
        ["broken"]
    );
    assert!(
        matches!(&drops.failed[..], [DropFailure { error, .. }] if error.contains("refused for the test"))
    );
    assert_eq!(companies().await, ["broken", "kept", "later"]);
    assert_eq!(
        schemas().await,
        ["tenant_broken", "tenant_kept", "tenant_later"]
    );
    let kept: i64 = count(&client, "select count(*) from tenant_kept.invitations").await;
    assert_eq!(kept, 2, "another tenant's rows are untouched");
    let outcome: serde_json::Value = client
        .query_one(
            "select outcome from public.job_runs where id = $1 and status = 'done'",
            &[&run],
        )
        .await
        .expect("the run, done")
        .get(0);
    assert_eq!(outcome["dropped"], serde_json::json!(["gone"]));
    assert_eq!(outcome["failed"][0]["slug"], "broken");
    // The day's run is claimed once.
    assert_eq!(drop_due(&db, due).await.expect("run"), Ran::NotMine);

    // The next day, with the refusal gone, `broken` goes too; `later` is still in its grace.
    client
        .batch_execute("drop trigger refuse_drop on public.companies")
        .await
        .expect("drop trigger");
    let next = due + chrono::Duration::days(1);
    let Ran::Done(_, drops) = drop_due(&db, next).await.expect("run") else {
        panic!("the next day's run is this caller's");
    };
    assert_eq!(drops.dropped, ["broken"]);
    assert!(drops.failed.is_empty());
    assert_eq!(companies().await, ["kept", "later"]);
    assert_eq!(schemas().await, ["tenant_kept", "tenant_later"]);
}
