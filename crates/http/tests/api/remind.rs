//! `POST /api/v1/tasks/{id}/remind`: one email to the assignee through the outbox, at most once
//! an hour per task (429 + Retry-After), for owners, admins and the task's creator, never about
//! a closed or unassigned task, never across organizations, and exactly once under concurrency.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};

/// The task reminders in the outbox, oldest first.
async fn reminders(app: &TestApp) -> Vec<Value> {
    app.sql_col_with(
        "select payload from public.outbox where payload->>'kind' = 'task_reminder' order by id",
        &[],
    )
    .await
}

async fn remind(app: &TestApp, host: &str, task: &str, token: &str) -> reqwest::Response {
    let path = format!("/api/v1/tasks/{task}/remind");
    app.call(Method::POST, host, &path, None, token).await
}

/// A project made by `token`'s member, with `member` (a user id) on its team.
async fn project_with(app: &TestApp, t: &TestTenant, token: &str, member: &str) -> String {
    let project = app
        .create_project(&t.host, token, json!({"name": "Launch"}))
        .await;
    let r = app
        .post_json(
            &t.host,
            &format!("/api/v1/projects/{project}/members"),
            &json!({"user_id": member, "role": "contributor"}),
            Some(token),
        )
        .await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    project
}

/// A task made by `token`'s member in `project`, with `extra` fields; its id.
async fn task(app: &TestApp, t: &TestTenant, token: &str, project: &str, extra: Value) -> String {
    let mut body = json!({"project_id": project, "title": "Write the launch post"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let r = app
        .call(Method::POST, &t.host, "/api/v1/tasks", Some(body), token)
        .await;
    expect_json(r, 201).await["id"].as_str().unwrap().to_owned()
}

/// Acme with a member, Ann, on a project of the owner's; the id of a task of that project
/// assigned to her.
async fn acme_with_ann() -> (TestApp, TestTenant, String, String) {
    let (app, t) = spawn_tenant("acme").await;
    app.member(&t, "ann@acme.test", "member").await;
    let ann = app.user_id("ann@acme.test").await;
    let project = project_with(&app, &t, &t.token, &ann).await;
    let id = task(&app, &t, &t.token, &project, json!({"assignee_id": ann})).await;
    (app, t, ann, id)
}

#[tokio::test]
async fn remind_queues_one_email_to_the_assignee_with_the_task_and_a_link() {
    let (app, t, ann, _) = acme_with_ann().await;
    // The due date is written in the organization's time zone.
    let r = app
        .call(
            Method::PATCH,
            &t.host,
            "/api/v1/organization/settings",
            Some(json!({"timezone": "Europe/Berlin"})),
            &t.token,
        )
        .await;
    assert_eq!(r.status(), 200);
    let project: String = app
        .sql_one("select id::text from tenant_acme.projects")
        .await;
    let id = task(
        &app,
        &t,
        &t.token,
        &project,
        json!({"title": "Ship it", "assignee_id": ann, "due_at": "2026-07-01T10:00:00Z"}),
    )
    .await;

    let r = remind(&app, &t.host, &id, &t.token).await;
    let body = expect_json(r, 202).await;
    assert_eq!(body["task_id"], id.as_str());
    assert_eq!(body["sent_to"], ann.as_str());
    assert_eq!(body["email"], "ann@acme.test");
    assert!(body["sent_at"].is_string(), "{body}");

    let sent = reminders(&app).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    let email = &sent[0];
    assert_eq!(email["to"], "ann@acme.test");
    assert_eq!(email["task_title"], "Ship it");
    assert_eq!(email["project"], "Launch");
    assert_eq!(email["organization"], "acme Inc");
    assert_eq!(email["due"], "2026-07-01 12:00 (Europe/Berlin)");
    assert_eq!(
        email["link"],
        format!("http://acme.{BASE}/tasks/{id}").as_str()
    );
    // The record: one manual reminder to Ann, by the owner, and its audit entry.
    let row = app
        .sql_row_with(
            "select kind, recipient_id::text, sent_by::text, period_key from tenant_acme.notifications",
            &[],
        )
        .await;
    let (kind, to, by, period): (String, String, String, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(
        (kind.as_str(), to.as_str(), by.as_str()),
        ("manual_reminder", ann.as_str(), t.owner_id.as_str())
    );
    assert_eq!(period.len(), "2026-05-01T13".len(), "{period}");
    let row = app
        .sql_row_with(
            "select before is null, after, target_id from tenant_acme.audit_log \
              where action = 'task.reminded'",
            &[],
        )
        .await;
    let (no_before, after, target): (bool, Value, String) = (row.get(0), row.get(1), row.get(2));
    assert!(no_before);
    assert_eq!(after["recipient_id"], ann.as_str());
    assert_eq!(after["kind"], "manual_reminder");
    assert_eq!(target, id);
}

#[tokio::test]
async fn remind_twice_within_the_hour_is_429_with_retry_after() {
    let (app, t, _, id) = acme_with_ann().await;
    assert_eq!(remind(&app, &t.host, &id, &t.token).await.status(), 202);
    let r = remind(&app, &t.host, &id, &t.token).await;
    let retry: u64 = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((3500..=3600).contains(&retry), "{retry}");
    expect_problem(r, 429, "less than an hour ago").await;
    // Someone else asking makes no difference: the limit is the task's.
    let admin = app.member(&t, "admin@acme.test", "admin").await;
    problem(remind(&app, &t.host, &id, &admin).await, 429).await;
    assert_eq!(reminders(&app).await.len(), 1);
    assert_eq!(app.audit_count("tenant_acme", "task.reminded").await, 1);

    // An hour later (the last reminder moved back, in its earlier UTC hour) one may go again.
    app.sql(
        "update tenant_acme.notifications set sent_at = sent_at - interval '61 minutes', \
                period_key = 'an hour before'",
    )
    .await;
    assert_eq!(remind(&app, &t.host, &id, &admin).await.status(), 202);
    assert_eq!(reminders(&app).await.len(), 2);
    // 59 minutes ago: the answer says one more minute or so.
    app.sql(
        "update tenant_acme.notifications set sent_at = now() - interval '59 minutes' \
          where period_key <> 'an hour before'",
    )
    .await;
    let r = remind(&app, &t.host, &id, &t.token).await;
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=61).contains(&retry), "{retry}");
}

#[tokio::test]
async fn remind_is_for_owners_admins_and_the_tasks_creator() {
    let (app, t) = spawn_tenant("acme").await;
    let creator = app.member(&t, "mia@acme.test", "member").await;
    let other = app.member(&t, "max@acme.test", "member").await;
    let viewer = app.member(&t, "vic@acme.test", "viewer").await;
    let admin = app.member(&t, "ada@acme.test", "admin").await;
    app.member(&t, "ann@acme.test", "member").await;
    let ann = app.user_id("ann@acme.test").await;
    // Mia's project and tasks, assigned to Ann.
    let project = project_with(&app, &t, &creator, &ann).await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        tasks.push(task(&app, &t, &creator, &project, json!({"assignee_id": ann})).await);
    }
    for token in [&other, &viewer] {
        let r = remind(&app, &t.host, &tasks[0], token).await;
        problem(r, 403).await;
    }
    assert!(reminders(&app).await.is_empty());
    for (task, token) in tasks.iter().zip([&creator, &admin, &t.token]) {
        assert_eq!(remind(&app, &t.host, task, token).await.status(), 202);
    }
    assert_eq!(reminders(&app).await.len(), 3);
    // A key acts as its creator with the key's role: an admin key may, a member key of the
    // owner (who did not create the task) may not.
    let member_key = app.create_key(&t.host, &t.token, "member").await;
    let r = app
        .with_key(
            Method::POST,
            &t.host,
            &format!("/api/v1/tasks/{}/remind", tasks[3]),
            member_key["key"].as_str().unwrap(),
        )
        .await;
    problem(r, 403).await;
    let admin_key = app.create_key(&t.host, &t.token, "admin").await;
    let r = app
        .with_key(
            Method::POST,
            &t.host,
            &format!("/api/v1/tasks/{}/remind", tasks[3]),
            admin_key["key"].as_str().unwrap(),
        )
        .await;
    assert_eq!(r.status(), 202);
    // The creator, demoted to viewer, may not: viewers never remind.
    let mia = app.user_id("mia@acme.test").await;
    app.set_role(&t.host, &t.token, &mia, "viewer").await;
    let demoted = app.token(&t.host, "mia@acme.test", MEMBER_PASSWORD).await;
    let fresh = task(&app, &t, &t.token, &project, json!({"assignee_id": ann})).await;
    app.sql_with(
        "update tenant_acme.tasks set created_by = $1::text::uuid where id = $2::text::uuid",
        &[&mia, &fresh],
    )
    .await;
    problem(remind(&app, &t.host, &fresh, &demoted).await, 403).await;
    assert_eq!(reminders(&app).await.len(), 4);
}

#[tokio::test]
async fn remind_about_an_unassigned_closed_or_inactive_assignees_task_is_422() {
    let (app, t, ann, _) = acme_with_ann().await;
    let project: String = app
        .sql_one("select id::text from tenant_acme.projects")
        .await;
    let unassigned = task(&app, &t, &t.token, &project, json!({})).await;
    let r = remind(&app, &t.host, &unassigned, &t.token).await;
    expect_field_error(r, "assignee_id", "nobody to remind").await;

    let done = task(&app, &t, &t.token, &project, json!({"assignee_id": ann})).await;
    let path = format!("/api/v1/tasks/{done}/complete");
    assert_eq!(
        app.call(Method::POST, &t.host, &path, None, &t.token)
            .await
            .status(),
        200
    );
    let r = remind(&app, &t.host, &done, &t.token).await;
    expect_field_error(r, "status", "is done").await;

    let cancelled = task(
        &app,
        &t,
        &t.token,
        &project,
        json!({"assignee_id": ann, "status": "cancelled"}),
    )
    .await;
    let r = remind(&app, &t.host, &cancelled, &t.token).await;
    expect_field_error(r, "status", "is cancelled").await;

    // Deactivating a member unassigns their open tasks; an account stopped outside the API
    // (before its tasks are unassigned) still gets no email.
    let open = task(&app, &t, &t.token, &project, json!({"assignee_id": ann})).await;
    app.sql_with(
        "update public.users set is_active = false where id = $1::text::uuid",
        &[&ann],
    )
    .await;
    let r = remind(&app, &t.host, &open, &t.token).await;
    expect_field_error(r, "assignee_id", "not an active member").await;

    assert!(reminders(&app).await.is_empty());
    assert_eq!(
        app.count("select count(*) from tenant_acme.notifications")
            .await,
        0
    );
    assert_eq!(app.audit_count("tenant_acme", "task.reminded").await, 0);
}

#[tokio::test]
async fn remind_about_another_organizations_task_is_404_and_sends_nothing() {
    let (app, acme, _, id) = acme_with_ann().await;
    let globex = app.tenant("globex").await;
    let r = remind(&app, &globex.host, &id, &globex.token).await;
    problem(r, 404).await;
    // Acme's token on globex's host is refused before anything is looked up.
    problem(remind(&app, &globex.host, &id, &acme.token).await, 403).await;
    // Unknown and malformed ids name nothing.
    let unknown = uuid::Uuid::new_v4().to_string();
    problem(remind(&app, &acme.host, &unknown, &acme.token).await, 404).await;
    problem(
        remind(&app, &acme.host, "not-an-id", &acme.token).await,
        404,
    )
    .await;
    assert!(reminders(&app).await.is_empty());
    assert_eq!(
        app.count("select count(*) from tenant_acme.notifications")
            .await,
        0
    );
    // Only POST: the other methods are 405 with Allow.
    let path = format!("/api/v1/tasks/{id}/remind");
    let r = app.get_as(&acme, &path).await;
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
}

#[tokio::test]
async fn remind_concurrently_sends_exactly_one_email() {
    let (app, t, _, id) = acme_with_ann().await;
    let calls = (0..6).map(|_| remind(&app, &t.host, &id, &t.token));
    let statuses: Vec<u16> = futures_util::future::join_all(calls)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    let mut sorted = statuses.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [202, 429, 429, 429, 429, 429], "{statuses:?}");
    assert_eq!(reminders(&app).await.len(), 1);
    assert_eq!(
        app.count("select count(*) from tenant_acme.notifications")
            .await,
        1
    );
    assert_eq!(app.audit_count("tenant_acme", "task.reminded").await, 1);
}
