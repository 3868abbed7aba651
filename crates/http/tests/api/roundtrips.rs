//! Database round trips per request, counted on the wire: the app talks to PostgreSQL through a
//! proxy that reads the protocol's messages in both directions.
//!
//! A round trip is a wait for the server: the proxy counts one whenever the app starts a request
//! while nothing it sent before is still unanswered (every request the app sends ends in `Sync`
//! or is a simple `Query`, and each is answered by one `ReadyForQuery`). Requests sent back to
//! back, before an answer came (tokio-postgres pipelining), make one round trip together.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::helpers::*;
use serde_json::json;

/// A TCP proxy in front of the test PostgreSQL server that counts round trips.
struct CountingProxy {
    port: u16,
    round_trips: Arc<AtomicU64>,
    /// The message types the app sent since start-up, `|` where a round trip began: what a
    /// failed assertion shows.
    trace: Arc<Mutex<String>>,
}

impl CountingProxy {
    /// Listens on a free port and forwards every connection to `upstream` (`host:port`).
    fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let round_trips = Arc::new(AtomicU64::new(0));
        let counter = round_trips.clone();
        let trace = Arc::new(Mutex::new(String::new()));
        let log = trace.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let link = Arc::new(Link::default());
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (up, counter, log) = (link.clone(), counter.clone(), log.clone());
                std::thread::spawn(move || frontend(client, server, &up, &counter, &log));
                std::thread::spawn(move || backend(s2, c2, &link));
            }
        });
        Self {
            port,
            round_trips,
            trace,
        }
    }

    fn count(&self) -> u64 {
        self.round_trips.load(Ordering::SeqCst)
    }

    /// The trace since the last call.
    fn take_trace(&self) -> String {
        std::mem::take(&mut *self.trace.lock().unwrap())
    }
}

/// One proxied connection's state, shared by its two directions.
#[derive(Default)]
struct Link {
    /// The server said `ReadyForQuery` once: start-up and authentication are over.
    ready: AtomicBool,
    /// Requests sent (`Sync`, `Query`) minus answers received (`ReadyForQuery`).
    outstanding: AtomicI64,
}

/// Reads one message: its type byte (none for the start-up message) and body.
fn message(from: &mut TcpStream, typed: bool) -> Option<Vec<u8>> {
    let mut head = vec![0u8; if typed { 5 } else { 4 }];
    from.read_exact(&mut head).ok()?;
    let len_at = usize::from(typed);
    let len = i32::from_be_bytes(head[len_at..len_at + 4].try_into().unwrap()) as usize;
    let mut body = vec![0u8; len - 4];
    from.read_exact(&mut body).ok()?;
    head.extend(body);
    Some(head)
}

/// App → PostgreSQL: counts a round trip for each message sent while nothing is outstanding.
fn frontend(
    mut app: TcpStream,
    mut pg: TcpStream,
    link: &Link,
    round_trips: &AtomicU64,
    trace: &Mutex<String>,
) {
    let mut typed = false;
    // Messages sent since the last `Sync`.
    let mut unsynced = false;
    while let Some(m) = message(&mut app, typed) {
        if typed && link.ready.load(Ordering::SeqCst) {
            let mut trace = trace.lock().unwrap();
            // A request's messages up to its `Sync` belong to one round trip.
            if link.outstanding.load(Ordering::SeqCst) == 0 && !unsynced && m[0] != b'X' {
                round_trips.fetch_add(1, Ordering::SeqCst);
                trace.push('|');
            }
            trace.push(char::from(m[0]));
            unsynced = !matches!(m[0], b'S' | b'Q');
            if !unsynced {
                link.outstanding.fetch_add(1, Ordering::SeqCst);
            }
        }
        typed = true;
        if pg.write_all(&m).is_err() {
            break;
        }
    }
    let _ = pg.shutdown(Shutdown::Both);
}

/// PostgreSQL → app: each `ReadyForQuery` answers one outstanding request.
fn backend(mut pg: TcpStream, mut app: TcpStream, link: &Link) {
    while let Some(m) = message(&mut pg, true) {
        if m[0] == b'Z' && !link.ready.swap(true, Ordering::SeqCst) {
            // The end of start-up, which answers no request of ours.
        } else if m[0] == b'Z' {
            link.outstanding.fetch_sub(1, Ordering::SeqCst);
        }
        if app.write_all(&m).is_err() {
            break;
        }
    }
    let _ = app.shutdown(Shutdown::Both);
}

/// The app on one pooled connection and one worker, talking to PostgreSQL through the proxy.
async fn proxied_app() -> (TestApp, CountingProxy) {
    let admin = tenantry_testkit::admin_url();
    let config: tokio_postgres::Config = admin.parse().unwrap();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        other => panic!("the test PostgreSQL server is not on TCP: {other:?}"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let proxy = CountingProxy::start(format!("{host}:{port}"));
    let through = format!("127.0.0.1:{}", proxy.port);
    let app = spawn_app_via(
        |url| url.replacen(&format!("{host}:{port}"), &through, 1),
        &[("DB_POOL_SIZE", "1"), ("HTTP_WORKERS", "1")],
    )
    .await;
    (app, proxy)
}

/// The fewest round trips `path` took over three requests, after two to warm up (the Host
/// cache, the pooled connection and its prepared statements). The fewest, because the proxy may
/// see two pipelined requests apart when the machine is slow; it can never see fewer trips than
/// the app waited for, so a path that waits twice still fails.
async fn round_trips(app: &TestApp, proxy: &CountingProxy, t: &TestTenant, path: &str) -> u64 {
    round_trips_with(proxy, path, || app.get_as(t, path)).await
}

async fn round_trips_with<F, Fut>(proxy: &CountingProxy, path: &str, send: F) -> u64
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = reqwest::Response>,
{
    for _ in 0..2 {
        assert_eq!(send().await.status(), 200, "{path}");
    }
    let mut fewest = u64::MAX;
    let mut traces = Vec::new();
    for _ in 0..3 {
        proxy.take_trace();
        let before = proxy.count();
        let r = send().await;
        assert_eq!(r.status(), 200, "{path}");
        r.bytes().await.unwrap();
        fewest = fewest.min(proxy.count() - before);
        traces.push(proxy.take_trace());
    }
    eprintln!("{path}: messages sent per request: {traces:?}");
    fewest
}

#[tokio::test]
async fn a_list_request_with_a_token_costs_one_database_round_trip() {
    let (app, proxy) = proxied_app().await;
    let a = app.tenant("alpha").await;
    let b = app.tenant("bravo").await;
    let id = app
        .create_project(&a.host, &a.token, json!({"name": "Launch"}))
        .await;
    let created = app
        .post_json(
            &a.host,
            "/api/v1/tasks",
            &json!({"project_id": id, "title": "First"}),
            Some(&a.token),
        )
        .await;
    assert_eq!(created.status(), 201);
    let task: serde_json::Value = created.json().await.unwrap();
    let task_id = task["id"].as_str().unwrap().to_owned();

    // A JWT is verified in process (no query) and the Host comes from the routing cache, so
    // the binding and the page's query are the whole of it: one round trip.
    assert_eq!(
        round_trips(&app, &proxy, &a, "/api/v1/projects?limit=20").await,
        1
    );
    assert_eq!(round_trips(&app, &proxy, &a, "/api/v1/tasks").await, 1);
    assert_eq!(
        round_trips(
            &app,
            &proxy,
            &a,
            "/api/v1/tasks?assignee=me&status=todo,in_progress"
        )
        .await,
        1
    );
    // One row by its id: the same, the binding and the row's query together.
    assert_eq!(
        round_trips(&app, &proxy, &a, &format!("/api/v1/projects/{id}")).await,
        1
    );
    assert_eq!(
        round_trips(&app, &proxy, &a, &format!("/api/v1/tasks/{task_id}")).await,
        1
    );
    // Another tenant's id is not found on its own host, in the same one trip.
    assert_eq!(
        app.get_as(&b, &format!("/api/v1/projects/{id}"))
            .await
            .status(),
        404
    );
    // Rotating tenants on the one pooled connection: one each, and each sees its own. A
    // tenant's second list on a connection also prepares its statement (a second trip; the
    // first runs it unnamed), so bravo reads twice first. A round counts when every request in it took one trip (the Host
    // cache's expiry or a pipeline seen apart can only add trips, never remove one).
    for _ in 0..2 {
        app.get_json(&b, "/api/v1/projects?limit=20", 200).await;
    }
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let mut trips = Vec::new();
        for t in [&a, &b, &a, &b] {
            let before = proxy.count();
            let page = app.get_json(t, "/api/v1/projects?limit=20", 200).await;
            let expected: Vec<&str> = if t.slug == "alpha" {
                vec!["Launch"]
            } else {
                vec![]
            };
            assert_eq!(column(&page, "name"), expected, "{}", t.slug);
            trips.push(proxy.count() - before);
        }
        rounds.push(trips);
        if rounds.last() == Some(&vec![1, 1, 1, 1]) {
            break;
        }
    }
    assert_eq!(rounds.last(), Some(&vec![1, 1, 1, 1]), "{rounds:?}");
}

#[tokio::test]
async fn a_list_request_with_an_api_key_costs_two_round_trips() {
    let (app, proxy) = proxied_app().await;
    let a = app.tenant("alpha").await;
    let created = app
        .post_json(
            &a.host,
            "/api/v1/api-keys",
            &json!({"name": "ci", "role": "member"}),
            Some(&a.token),
        )
        .await;
    assert_eq!(created.status(), 201);
    let key = created.json::<serde_json::Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    // The key is looked up in the tenant's schema on a connection of its own (binding and
    // lookup in one round trip), then the page on another (one).
    let path = "/api/v1/projects?limit=20";
    let trips = round_trips_with(&proxy, path, || async {
        app.request(reqwest::Method::GET, &a.host, path)
            .header("X-API-Key", &key)
            .send()
            .await
            .unwrap()
    })
    .await;
    assert_eq!(trips, 2);
}
