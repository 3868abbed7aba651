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
    assert_eq!(config.usage_flush_every, Duration::from_secs(60));
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
    ]))
    .expect("overrides");
    assert_eq!(config.usage_flush_every, Duration::from_secs(5));
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
        (ENV_QUEUE_PREFIX, "bad prefix"),
        (ENV_QUEUE_PREFIX, "ends:"),
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
    use tenantry_public::names::{DomainName, Email, Password, Slug};
    use tenantry_public::plans::PlanCode;
    use tenantry_tenant::provision::{provision, NewTenant, Owner};

    let (database, client) = migrated_database().await;
    let db = tenantry_public::db::Db::connect(&database.url, &Default::default()).expect("pool");
    for slug in ["acme", "globex", "initech"] {
        provision(
            &db,
            &DomainName::parse("example.test").expect("domain"),
            NewTenant {
                name: format!("{slug} Inc"),
                slug: Slug::parse(slug).expect("slug"),
                plan: PlanCode::Free,
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
