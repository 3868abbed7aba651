//! Email end to end: the API writes the outbox in the change's transaction and queues a job after
//! commit; the real worker (in-process) delivers it over SMTP, with lettre, to an SMTP server in
//! this process (`tenantry_testkit::smtp::SmtpSink`); the links work. Also: retry while SMTP
//! refuses mail, nothing queued by a rolled-back request, and `.eml` files in development.

use crate::helpers::*;
use reqwest::{Method, Response};
use serde_json::json;
use std::time::Duration;
use tenantry_testkit::smtp::SmtpSink;

/// Every message the server received, decoded enough to read links.
fn messages(smtp: &SmtpSink) -> Vec<String> {
    smtp.messages().iter().map(|m| decode(&m.text())).collect()
}

/// Undoes quoted-printable soft breaks and `=3D`, enough to read a link.
fn decode(raw: &str) -> String {
    raw.replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=")
}

/// The token after `token=` in the first message matching `subject`.
fn token_in(message: &str) -> String {
    let at = message.find("token=").expect("a link with a token") + "token=".len();
    message[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect()
}

/// The first email (decoded) that `matches`, waiting for it up to [`DELIVERY`].
async fn wait_for_message(smtp: &SmtpSink, what: &str, matches: impl Fn(&str) -> bool) -> String {
    let found = smtp
        .wait_for(DELIVERY, |m| matches(&decode(&m.text())))
        .await;
    match found {
        Some(m) => decode(&m.text()),
        None => panic!(
            "{what}: no such email within {DELIVERY:?}; got {:?}",
            messages(smtp)
        ),
    }
}

/// The worker, in-process, with its own shutdown.
struct Worker {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Worker {
    fn start(app: &TestApp, prefix: &str, transport: (&str, String)) -> Self {
        let vars = [
            ("REDIS_URL".to_owned(), tenantry_testkit::redis_url()),
            ("DATABASE_URL".to_owned(), app.db_url.clone()),
            ("WORKER_QUEUE_PREFIX".to_owned(), prefix.to_owned()),
            ("MAIL_SWEEP_SECS".to_owned(), "1".to_owned()),
            (
                "MAIL_FROM".to_owned(),
                "Tenantry <no-reply@example.test>".to_owned(),
            ),
            (transport.0.to_owned(), transport.1),
        ];
        let config = tenantry_worker::Config::from_lookup(|k| {
            vars.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        })
        .expect("worker config");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(tenantry_worker::run(config, async {
            let _ = stopped.await;
        }));
        Self {
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = tokio::time::timeout(Duration::from_secs(40), &mut self.task)
            .await
            .expect("worker stops");
        result.expect("join").expect("worker ran cleanly");
    }
}

fn prefix() -> String {
    format!("test-{}", uuid::Uuid::new_v4().simple())
}

/// A throwaway directory removed on drop (no extra crate needed).
mod tempfile_dir {
    use std::path::{Path, PathBuf};

    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new() -> Self {
            let path = std::env::temp_dir()
                .join(format!("tenantry-mail-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&path).unwrap();
            Self(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A running SMTP server, the app, and a worker delivering to that server.
async fn with_smtp() -> (SmtpSink, TestApp, Worker) {
    let smtp = SmtpSink::start();
    let (app, worker) = app_and_worker(smtp_at(&smtp)).await;
    (smtp, app, worker)
}

/// The app and an in-process worker with a queue prefix of their own, delivering through
/// `transport` (a setting name and value).
async fn app_and_worker(transport: (&str, String)) -> (TestApp, Worker) {
    let prefix = prefix();
    let app = spawn_app_with(&[("REDIS_PREFIX", &prefix)]).await;
    let worker = Worker::start(&app, &prefix, transport);
    (app, worker)
}

/// The worker setting for delivering to `smtp`.
fn smtp_at(smtp: &SmtpSink) -> (&'static str, String) {
    ("SMTP_URL", smtp.url())
}

/// How long delivery may take (it involves queue polling and sweeps).
const DELIVERY: Duration = Duration::from_secs(20);

/// `POST /api/v1/auth/verify-email` on `host` with `token`.
async fn verify(app: &TestApp, host: &str, token: &str) -> Response {
    let body = json!({"token": token});
    app.post_json(host, "/api/v1/auth/verify-email", &body, None)
        .await
}

/// `POST /api/v1/auth/password-reset` on `host` for `email`.
async fn reset(app: &TestApp, host: &str, email: &str) -> Response {
    let body = json!({"email": email});
    app.post_json(host, "/api/v1/auth/password-reset", &body, None)
        .await
}

/// `POST /api/v1/auth/password-reset/confirm` on `host`.
async fn confirm(app: &TestApp, host: &str, token: &str, password: &str) -> Response {
    let body = json!({"token": token, "new_password": password});
    let path = "/api/v1/auth/password-reset/confirm";
    app.post_json(host, path, &body, None).await
}

/// The owner of `t` adds a viewer with a new account.
async fn add_viewer(
    app: &TestApp,
    t: &TestTenant,
    email: &str,
    full_name: &str,
    password: &str,
) -> Response {
    let body =
        json!({"email": email, "full_name": full_name, "role": "viewer", "password": password});
    app.call(Method::POST, &t.host, "/api/v1/users", Some(body), &t.token)
        .await
}

#[tokio::test]
async fn signup_verification_and_invitation_emails_arrive_and_their_links_work() {
    let (smtp, app, worker) = with_smtp().await;

    let t = app.tenant("acme").await;
    let message = wait_for_message(&smtp, "verification", |m| {
        m.contains("To: owner@acme.test") && m.contains("Confirm your email")
    })
    .await;
    assert!(
        message.contains("From: Tenantry <no-reply@example.test>"),
        "{message}"
    );
    assert!(
        message.contains(&format!("://{BASE}/verify-email?token=ve_")),
        "{message}"
    );
    let token = token_in(&message);

    // Not verified yet; the token verifies once.
    let verified = || {
        app.sql_one::<bool>(
            "select email_verified_at is not null from public.users where email = 'owner@acme.test'",
        )
    };
    assert!(!verified().await);
    let body = expect_json(verify(&app, BASE, &token).await, 200).await;
    assert_eq!(
        body,
        json!({"email": "owner@acme.test", "email_verified": true})
    );
    assert!(verified().await);
    for (token, status) in [(token.as_str(), 410), ("ve_unknown", 404)] {
        problem(verify(&app, BASE, token).await, status).await;
    }
    let r = app
        .post_json(BASE, "/api/v1/auth/verify-email", &json!({}), None)
        .await;
    problem(r, 422).await;
    assert_eq!(
        app.count(
            "select count(*) from public.outbox \
              where dispatched_at is not null and payload->>'kind' <> 'welcome'"
        )
        .await,
        1
    );
    // The owner is welcomed too, through the same queue and worker.
    let welcome = wait_for_message(&smtp, "welcome", |m| {
        m.contains("To: owner@acme.test") && m.contains("Welcome to acme Inc")
    })
    .await;
    assert!(welcome.contains("(owner)"), "{welcome}");

    // An invitation: the email carries a link to this tenant's host that accepts.
    let r = app
        .invite(&t.host, &t.token, "bob@elsewhere.test", "member")
        .await;
    assert_eq!(r.status(), 201);
    let message = wait_for_message(&smtp, "invitation", |m| {
        m.contains("To: bob@elsewhere.test")
    })
    .await;
    assert!(
        message.contains("invited you to join acme Inc as member"),
        "{message}"
    );
    assert!(message.contains(&format!("://{}/accept-invitation?token=inv_", t.host)));
    let r = app
        .post_json(
            &t.host,
            "/api/v1/invitations/accept",
            &json!({"token": token_in(&message), "full_name": "Bob", "password": "pw-b18ed7263eda"}),
            None,
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());

    // A member added by an admin with a new account gets a verification link to the tenant host.
    let r = add_viewer(&app, &t, "cy@acme.test", "Cy", "pw-7bd35249fe93").await;
    assert_eq!(r.status(), 201);
    // Cy also gets a welcome email, which may arrive first: wait for the verification.
    let message = wait_for_message(&smtp, "added member", |m| {
        m.contains("To: cy@acme.test") && m.contains("verify-email")
    })
    .await;
    assert!(message.contains(&format!("://{}/verify-email?token=ve_", t.host)));
    // Verified on the tenant's host: recorded in that tenant's trail (the base-host verification
    // of the owner above has no tenant trail).
    let r = verify(&app, &t.host, &token_in(&message)).await;
    assert_eq!(r.status(), 200);
    let entries: Vec<String> = app
        .sql_col_with(
            "select u.email from tenant_acme.audit_log a join public.users u on u.id = a.actor_user_id \
              where a.action = 'user.email.verified'",
            &[],
        )
        .await;
    assert_eq!(entries, ["cy@acme.test"]);
    // Once delivered, an email leaves no link (no live token) at rest: kind and recipient only.
    eventually("every email delivered", || async {
        app.count("select count(*) from public.outbox where dispatched_at is null")
            .await
            == 0
    })
    .await;
    assert_eq!(
        app.count("select count(*) from public.outbox where payload ? 'link'")
            .await,
        0
    );
    assert_eq!(
        app.count("select count(*) from public.outbox where payload ? 'kind' and payload ? 'to'")
            .await,
        // Three links, and a welcome for each of the three memberships.
        6
    );
    worker.stop().await;
}

#[tokio::test]
async fn password_reset_end_to_end_ends_every_session() {
    let (smtp, app, worker) = with_smtp().await;
    let t = app.tenant("acme").await;
    let (_, refresh) = app.owner_session(&t).await;

    // Unknown and known emails get the same answer; only the known one gets an email.
    let unknown = expect_json(reset(&app, BASE, "nobody@acme.test").await, 202).await;
    let known = expect_json(reset(&app, &t.host, "OWNER@acme.test").await, 202).await;
    assert_eq!(unknown, known);
    problem(reset(&app, BASE, "not an email").await, 422).await;
    let message = wait_for_message(&smtp, "reset", |m| m.contains("Reset your password")).await;
    assert!(message.contains(&format!("://{}/reset-password?token=pr_", t.host)));
    let first = token_in(&message);
    assert_eq!(
        app.count("select count(*) from public.outbox where payload->>'to' = 'nobody@acme.test'")
            .await,
        0,
        "nothing is sent for an unknown email"
    );

    // A newer request spends the older token.
    assert_eq!(reset(&app, BASE, "owner@acme.test").await.status(), 202);
    let second = wait_for_message(&smtp, "second reset", |m| {
        m.contains("Reset your password") && token_in(m) != first
    })
    .await;
    let second = token_in(&second);
    problem(confirm(&app, BASE, &first, "pw-501f6f93ea32").await, 410).await;
    // A weak password is refused and the token stays usable.
    let r = confirm(&app, BASE, &second, "short").await;
    expect_field_errors(r, 422, &["new_password"]).await;
    // Confirmed on the tenant's host: the reset is in that tenant's trail, in the same transaction.
    let r = confirm(&app, &t.host, &second, "pw-501f6f93ea32").await;
    assert_eq!(r.status(), 204);
    let audited: i64 = app
        .sql_one_with(
            "select count(*) from tenant_acme.audit_log \
              where action = 'user.password.reset' and actor_user_id = $1::text::uuid",
            &[&t.owner_id],
        )
        .await;
    assert_eq!(audited, 1);
    for (token, status) in [(second.as_str(), 410), ("pr_unknown", 404)] {
        problem(confirm(&app, BASE, token, "pw-43e377289a15").await, status).await;
    }

    // The old password is gone, the new one works, and every earlier session ended.
    app.assert_password_changed(
        &t.host,
        &t.owner_email,
        "password-of-acme",
        "pw-501f6f93ea32",
    )
    .await;
    problem(app.refresh(&t.host, &refresh).await, 401).await;

    // An expired token is refused.
    assert_eq!(reset(&app, BASE, "owner@acme.test").await.status(), 202);
    let third = wait_for_message(&smtp, "third reset", |m| {
        m.contains("Reset your password") && token_in(m) != first && token_in(m) != second
    })
    .await;
    app.sql("update public.account_tokens set expires_at = now() - interval '1 second'")
        .await;
    let r = confirm(&app, BASE, &token_in(&third), "pw-1ce0fe5479e2").await;
    problem(r, 410).await;
    worker.stop().await;
}

#[tokio::test]
async fn emails_wait_while_smtp_is_down_and_go_out_once_when_it_is_back() {
    // SMTP is down: the server greets every connection with 421 (service not available) and
    // closes it, as a server going down does.
    let smtp = SmtpSink::start();
    smtp.set_refusing(true);
    let (app, worker) = app_and_worker(smtp_at(&smtp)).await;
    app.tenant("acme").await;
    eventually_within("a failed attempt is recorded", DELIVERY, || async {
        app.sql_one::<i32>("select min(attempts) from public.outbox")
            .await
            >= 1
    })
    .await;
    let dispatched: bool = app
        .sql_one("select bool_or(dispatched_at is not null) from public.outbox")
        .await;
    assert!(!dispatched, "not delivered while SMTP is down");
    let error: Option<String> = app
        .sql_one("select last_error from public.outbox order by id limit 1")
        .await;
    assert!(
        error.as_deref().is_some_and(|e| e.contains("421")),
        "the server's refusal is recorded: {error:?}"
    );
    assert!(smtp.messages().is_empty());

    // SMTP comes back: the sweep re-queues the row and it is delivered, once.
    smtp.set_refusing(false);
    wait_for_message(&smtp, "after recovery", |m| {
        m.contains("To: owner@acme.test")
    })
    .await;
    eventually_within("the rows are marked delivered", DELIVERY, || async {
        app.sql_one::<bool>("select bool_and(dispatched_at is not null) from public.outbox")
            .await
    })
    .await;
    // Two more sweeps: still exactly one copy of each (the verification and the welcome).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(messages(&smtp).len(), 2, "{:?}", messages(&smtp));
    worker.stop().await;
}

#[tokio::test]
async fn a_rolled_back_request_queues_no_email() {
    let (app, t) = spawn_tenant("acme").await;
    // The free plan allows 5 members: the owner and four more.
    app.sql("update public.companies set plan = 'free'").await;
    for n in 0..4 {
        app.member(&t, &format!("m{n}@acme.test"), "viewer").await;
    }
    let before = app.count("select count(*) from public.outbox").await;
    assert_eq!(before, 2, "the owner's verification and welcome emails");
    let r = add_viewer(&app, &t, "late@acme.test", "Late", "pw-0f9f7d314bc2").await;
    problem(r, 403).await;
    assert_eq!(
        app.count("select count(*) from public.outbox").await,
        before,
        "no email for a change that rolled back"
    );
    app.assert_counts(&[
        (
            "select count(*) from public.users where email = 'late@acme.test'",
            0,
        ),
        ("select count(*) from public.account_tokens", 1),
    ])
    .await;
}

#[tokio::test]
async fn in_development_emails_are_eml_files() {
    let dir = tempfile_dir::TempDir::new();
    let (app, worker) = app_and_worker(("MAIL_DIR", dir.path().display().to_string())).await;
    app.tenant("acme").await;
    let mut found = None;
    for _ in 0..1000 {
        // The verification email (the owner's welcome is written beside it).
        found = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
            .map(|e| decode(&std::fs::read_to_string(e.path()).unwrap()))
            .find(|eml| eml.contains("Confirm your email"));
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let eml = found.expect("an .eml file within 20 s");
    assert!(eml.contains("To: owner@acme.test"), "{eml}");
    assert!(eml.contains("/verify-email?token=ve_"), "{eml}");
    worker.stop().await;
}

#[tokio::test]
async fn password_reset_requests_are_throttled_alike_for_known_and_unknown_emails() {
    let app = spawn_app_with(&[("PASSWORD_RESETS_PER_ACCOUNT", "2")]).await;
    app.tenant("acme").await;
    for email in ["owner@acme.test", "nobody@acme.test"] {
        for _ in 0..2 {
            assert_eq!(reset(&app, BASE, email).await.status(), 202, "{email}");
        }
        let r = reset(&app, BASE, email).await;
        assert!(r.headers().contains_key("retry-after"), "{email}");
        problem(r, 429).await;
    }
    let sent: i64 = app
        .sql_one("select count(*) from public.outbox where payload->>'kind' = 'password_reset'")
        .await;
    assert_eq!(
        sent, 2,
        "only the allowed requests for the real account send email"
    );
}

/// The worker's sweep deletes outbox rows past the retention, delivered or not (every link in
/// them has expired), and leaves younger ones.
#[tokio::test]
async fn outbox_rows_past_the_retention_are_deleted() {
    let (smtp, app, worker) = with_smtp().await;
    app.sql(
        "insert into public.outbox (payload, created_at, dispatched_at) values \
           ('{\"kind\": \"invitation\"}', now() - interval '8 days', now() - interval '8 days'), \
           ('{\"kind\": \"password_reset\", \"to\": \"old@x.test\", \"link\": \"x\"}', \
            now() - interval '8 days', null), \
           ('{\"kind\": \"invitation\"}', now() - interval '6 days', now() - interval '6 days')",
    )
    .await;
    eventually_within("old rows are deleted", DELIVERY, || async {
        app.count("select count(*) from public.outbox where created_at < now() - interval '7 days'")
            .await
            == 0
    })
    .await;
    assert_eq!(app.count("select count(*) from public.outbox").await, 1);
    assert!(messages(&smtp).is_empty(), "nothing old was sent");
    worker.stop().await;
}

/// Reset requests on one organization's host are capped per hour, on top of the per-email and
/// per-client caps; the base host and other organizations are not held back by it.
#[tokio::test]
async fn password_reset_requests_are_capped_per_organization() {
    let caps = [("PASSWORD_RESETS_PER_ORG", "2")];
    let (app, t) = spawn_tenant_with(&caps, "acme").await;
    let g = app.tenant("globex").await;
    for email in ["one@x.test", "two@x.test"] {
        assert_eq!(reset(&app, &t.host, email).await.status(), 202, "{email}");
    }
    let r = reset(&app, &t.host, "three@x.test").await;
    assert!(r.headers().contains_key("retry-after"));
    problem(r, 429).await;
    assert_eq!(reset(&app, BASE, "three@x.test").await.status(), 202);
    assert_eq!(reset(&app, &g.host, "four@x.test").await.status(), 202);
}

#[tokio::test]
async fn task_reminder_reaches_the_assignee_once_with_a_link_to_the_task() {
    let (smtp, app, worker) = with_smtp().await;
    let t = app.tenant("acme").await;
    let project = app.project(&t, "Launch").await;
    let body = json!({"project_id": project, "title": "Ship it", "assignee_id": t.owner_id,
                      "due_at": "2026-12-24T12:00:00Z"});
    let r = app
        .call(Method::POST, &t.host, "/api/v1/tasks", Some(body), &t.token)
        .await;
    let task = expect_json(r, 201).await["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/tasks/{task}/remind");
    let r = app.call(Method::POST, &t.host, &path, None, &t.token).await;
    assert_eq!(r.status(), 202);
    let message = wait_for_message(&smtp, "reminder", |m| m.contains("Reminder: Ship it")).await;
    assert!(message.contains("To: owner@acme.test"), "{message}");
    assert!(message.contains("Project: Launch"), "{message}");
    assert!(message.contains("Due: 2026-12-24 12:00 (UTC)"), "{message}");
    assert!(
        message.contains(&format!("://{}/tasks/{task}", t.host)),
        "{message}"
    );
    eventually("the reminder delivered", || async {
        app.count(
            "select count(*) from public.outbox \
              where payload->>'kind' = 'task_reminder' and dispatched_at is not null",
        )
        .await
            == 1
    })
    .await;
    // A second request within the hour sends nothing.
    let r = app.call(Method::POST, &t.host, &path, None, &t.token).await;
    assert_eq!(r.status(), 429);
    worker.stop().await;
    let reminders = smtp
        .messages()
        .iter()
        .filter(|m| decode(&m.text()).contains("Reminder: Ship it"))
        .count();
    assert_eq!(reminders, 1);
}

/// A report asked for through the API is built by the worker from the report queue (no sweep:
/// it runs every minute) and its email reaches the requester with the link to the report.
#[tokio::test]
async fn a_requested_report_is_built_by_the_worker_and_mailed_to_the_requester() {
    let (smtp, app, worker) = with_smtp().await;
    let t = app.tenant("acme").await;
    let project = app
        .create_project(&t.host, &t.token, json!({"name": "Launch"}))
        .await;
    let path = format!("/api/v1/projects/{project}/reports");
    let r = app.call(Method::POST, &t.host, &path, None, &t.token).await;
    let id = expect_json(r, 202).await["id"].as_str().unwrap().to_owned();
    let message = wait_for_message(&smtp, "report ready", |m| {
        m.contains("To: owner@acme.test") && m.contains("Your report on Launch is ready")
    })
    .await;
    assert!(
        message.contains(&format!("://{}/reports/{id}", t.host)),
        "{message}"
    );
    assert_eq!(
        app.get_json(&t, &format!("/api/v1/reports/{id}"), 200)
            .await["status"],
        "done"
    );
    worker.stop().await;
}

#[tokio::test]
async fn deleting_the_organization_emails_its_owner_the_drop_date() {
    let (smtp, app, worker) = with_smtp().await;
    let t = app.tenant("acme").await;
    let r = app
        .call(
            Method::DELETE,
            &t.host,
            "/api/v1/organization",
            Some(json!({"password": "password-of-acme"})),
            &t.token,
        )
        .await;
    let b = expect_json(r, 202).await;
    let drop_after = b["drop_after"].as_str().unwrap().to_owned();
    let message = wait_for_message(&smtp, "deletion", |m| m.contains("acme Inc was deleted")).await;
    assert!(message.contains("To: owner@acme.test"), "{message}");
    // The drop date as stored (RFC 3339), and that an operator can still restore it.
    let stored: chrono::DateTime<chrono::Utc> = drop_after.parse().unwrap();
    assert!(
        message.contains(&stored.to_rfc3339()),
        "{stored} in {message}"
    );
    assert!(message.contains("an operator can restore it"), "{message}");
    worker.stop().await;
}
