//! `GET /projects/{id}/statistics`, `GET /projects/statistics` and `GET /dashboard`: every
//! figure against a tenant whose tasks are known, and isolation.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};

async fn task(app: &TestApp, t: &TestTenant, body: Value) -> String {
    let r = app
        .call(Method::POST, &t.host, "/api/v1/tasks", Some(body), &t.token)
        .await;
    expect_json(r, 201).await["id"].as_str().unwrap().to_owned()
}

fn in_days(days: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::days(days)).to_rfc3339()
}

/// A tenant with two projects and known tasks; returns (P, Q, the id of P's next due task).
async fn seeded(app: &TestApp, t: &TestTenant) -> (String, String, String, String) {
    let p = app
        .create_project(&t.host, &t.token, json!({"name": "P", "status": "active"}))
        .await;
    let q = app.project(t, "Q").await;
    let member_token = app.member(t, "member@acme.test", "member").await;
    let member = app.user_id("member@acme.test").await;
    let r = app
        .call(
            Method::POST,
            &t.host,
            &format!("/api/v1/projects/{p}/members"),
            Some(json!({"user_id": member, "role": "contributor"})),
            &t.token,
        )
        .await;
    expect_json(r, 201).await;
    let me = &t.owner_id;
    let overdue = task(
        app,
        t,
        json!({"project_id": p, "title": "t1", "priority": "high", "due_at": in_days(-2), "assignee_id": me}),
    )
    .await;
    let next = task(
        app,
        t,
        json!({"project_id": p, "title": "t2", "status": "in_progress", "due_at": in_days(2), "assignee_id": me}),
    )
    .await;
    task(
        app,
        t,
        json!({"project_id": p, "title": "t3", "status": "done", "priority": "low", "assignee_id": me}),
    )
    .await;
    task(
        app,
        t,
        json!({"project_id": p, "title": "t4", "status": "cancelled", "priority": "urgent", "due_at": in_days(-1)}),
    )
    .await;
    task(
        app,
        t,
        json!({"project_id": p, "title": "t5", "status": "done", "priority": "low", "assignee_id": me}),
    )
    .await;
    app.sql(
        "update tenant_acme.tasks set completed_at = now() - interval '10 days' where title = 't5'",
    )
    .await;
    // Q: one unassigned task due sooner than any of P's, and one due far away for the member.
    task(
        app,
        t,
        json!({"project_id": q, "title": "q1", "due_at": in_days(1)}),
    )
    .await;
    let _ = (overdue, member_token);
    (p, q, next, member)
}

#[tokio::test]
async fn project_statistics_count_every_figure() {
    let (app, t) = spawn_tenant("acme").await;
    let (p, q, next, _) = seeded(&app, &t).await;
    let s = app
        .get_json(&t, &format!("/api/v1/projects/{p}/statistics"), 200)
        .await;
    assert_eq!(
        s["tasks_by_status"],
        json!({"todo": 1, "in_progress": 1, "in_review": 0, "done": 2, "cancelled": 1})
    );
    assert_eq!(
        s["tasks_by_priority"],
        json!({"low": 2, "medium": 1, "high": 1, "urgent": 1})
    );
    assert_eq!(s["open"], 2);
    // t4 is past due but cancelled: not overdue.
    assert_eq!(s["overdue"], 1);
    assert_eq!(s["done_last_7_days"], 1);
    assert_eq!(s["done_last_30_days"], 2);
    // Two done of the four not cancelled.
    assert_eq!(s["completion_ratio"], 0.5);
    assert_eq!(s["team_size"], 2);
    assert_eq!(s["next_due_task"]["id"], next);
    assert_eq!(s["next_due_task"]["title"], "t2");
    assert_eq!(s["next_due_task"]["project_id"], p);

    // A project without tasks: zeros, no ratio, no next task.
    let s = app
        .get_json(&t, &format!("/api/v1/projects/{q}/statistics"), 200)
        .await;
    assert_eq!(s["open"], 1);
    let empty = app.project(&t, "Empty").await;
    let s = app
        .get_json(&t, &format!("/api/v1/projects/{empty}/statistics"), 200)
        .await;
    assert_eq!(s["open"], 0);
    assert_eq!(s["completion_ratio"], Value::Null);
    assert_eq!(s["next_due_task"], Value::Null);
    assert_eq!(s["team_size"], 1);

    let missing = uuid::Uuid::new_v4();
    let r = app
        .get_as(&t, &format!("/api/v1/projects/{missing}/statistics"))
        .await;
    problem(r, 404).await;
    // Another tenant sees neither the project nor its figures.
    let other = app.tenant("globex").await;
    let r = app
        .get_as(&other, &format!("/api/v1/projects/{p}/statistics"))
        .await;
    problem(r, 404).await;
    let s = app
        .get_json(&other, "/api/v1/projects/statistics", 200)
        .await;
    assert_eq!(s["open"], 0);
    assert_eq!(s["projects_by_status"]["active"], 0);
}

#[tokio::test]
async fn tenant_statistics_sum_every_project() {
    let (app, t) = spawn_tenant("acme").await;
    let (_, _, _, _) = seeded(&app, &t).await;
    let s = app.get_json(&t, "/api/v1/projects/statistics", 200).await;
    assert_eq!(
        s["projects_by_status"],
        json!({"planned": 1, "active": 1, "completed": 0, "archived": 0})
    );
    assert_eq!(
        s["tasks_by_status"],
        json!({"todo": 2, "in_progress": 1, "in_review": 0, "done": 2, "cancelled": 1})
    );
    assert_eq!(s["open"], 3);
    assert_eq!(s["overdue"], 1);
    assert_eq!(s["completion_ratio"], 0.4);
    // Q's task is due sooner than P's.
    assert_eq!(s["next_due_task"]["title"], "q1");
}

#[tokio::test]
async fn the_dashboard_shows_my_work_and_the_organization() {
    let (app, t) = spawn_tenant("acme").await;
    let (p, _, next, _) = seeded(&app, &t).await;
    let r = app
        .call(
            Method::POST,
            &t.host,
            "/api/v1/documents",
            Some(json!({"title": "Notes", "project_id": p, "body": "hello"})),
            &t.token,
        )
        .await;
    expect_json(r, 201).await;
    let d = app.get_json(&t, "/api/v1/dashboard", 200).await;
    let me = &d["me"];
    assert_eq!(me["open"], 2);
    assert_eq!(me["overdue_count"], 1);
    assert_eq!(me["due_soon_count"], 1);
    assert_eq!(column(&json!({"results": me["overdue"]}), "title"), ["t1"]);
    assert_eq!(me["due_soon"][0]["id"], next);
    assert_eq!(me["due_soon"].as_array().unwrap().len(), 1);
    assert_eq!(
        column(&json!({"results": me["recently_completed"]}), "title"),
        ["t3", "t5"]
    );
    let org = &d["organization"];
    assert_eq!(org["projects_by_status"]["active"], 1);
    assert_eq!(org["tasks_by_status"]["todo"], 2);
    assert_eq!(org["overdue"], 1);
    assert_eq!(org["members"], 2);
    assert_eq!(org["storage_used_bytes"], 5);
    let plan: String = app.sql_one("select plan from public.companies").await;
    assert_eq!(org["limits"]["plan"], plan);
    let max_projects: Option<i32> = app
        .sql_one(
            "select p.max_projects from public.plans p join public.companies c on c.plan = p.code",
        )
        .await;
    assert_eq!(org["limits"]["max_projects"], json!(max_projects));

    // The member's own dashboard: nothing assigned, the same organization.
    let member = app
        .token(&t.host, "member@acme.test", MEMBER_PASSWORD)
        .await;
    let r = app.get(&t.host, "/api/v1/dashboard", Some(&member)).await;
    let d = expect_json(r, 200).await;
    assert_eq!(d["me"]["open"], 0);
    assert_eq!(d["me"]["recently_completed"], json!([]));
    assert_eq!(d["organization"]["members"], 2);

    // Another tenant's dashboard counts nothing of acme's.
    let other = app.tenant("globex").await;
    let d = app.get_json(&other, "/api/v1/dashboard", 200).await;
    assert_eq!(d["organization"]["tasks_by_status"]["todo"], 0);
    assert_eq!(d["organization"]["members"], 1);
    assert_eq!(d["organization"]["storage_used_bytes"], 0);
}
