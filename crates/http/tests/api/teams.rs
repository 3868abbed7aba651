//! `/api/v1/projects/{id}/members`: team rules, who may change a team, the assignee-on-team rule
//! for tasks, and unassignment when someone leaves a team or the organization.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};

fn team_path(project: &str) -> String {
    format!("/api/v1/projects/{project}/members")
}

/// `POST /projects/{project}/members {user_id, role}` with `token`.
async fn join(
    app: &TestApp,
    t: &TestTenant,
    token: &str,
    project: &str,
    user: &str,
    role: &str,
) -> reqwest::Response {
    put(
        app,
        t,
        token,
        project,
        json!({"user_id": user, "role": role}),
    )
    .await
}

async fn put(
    app: &TestApp,
    t: &TestTenant,
    token: &str,
    project: &str,
    body: Value,
) -> reqwest::Response {
    app.call(
        Method::POST,
        &t.host,
        &team_path(project),
        Some(body),
        token,
    )
    .await
}

async fn team(app: &TestApp, t: &TestTenant, project: &str) -> Vec<Vec<String>> {
    let r = app.get(&t.host, &team_path(project), Some(&t.token)).await;
    columns(&expect_json(r, 200).await, &["user_id", "role"])
}

async fn task(app: &TestApp, t: &TestTenant, body: Value) -> String {
    let r = app
        .call(Method::POST, &t.host, "/api/v1/tasks", Some(body), &t.token)
        .await;
    expect_json(r, 201).await["id"].as_str().unwrap().to_owned()
}

async fn assignee(app: &TestApp, t: &TestTenant, task: &str) -> Value {
    app.get_json(t, &format!("/api/v1/tasks/{task}"), 200).await["assignee_id"].clone()
}

#[tokio::test]
async fn projects_team_rules_owner_stays_lead_members_only_and_leads_may_change_it() {
    let (app, t) = spawn_tenant("acme").await;
    let other = app.tenant("other").await;
    let member = app.member(&t, "m@acme.test", "member").await;
    let m = app.user_id("m@acme.test").await;
    let colleague = app.member(&t, "c@acme.test", "member").await;
    let c = app.user_id("c@acme.test").await;
    let viewer = app.member(&t, "v@acme.test", "viewer").await;
    let v = app.user_id("v@acme.test").await;
    let project = app.project(&t, "Launch").await;
    // The owner is on the team from the start, as lead.
    assert_eq!(
        team(&app, &t, &project).await,
        [vec![t.owner_id.clone(), "lead".into()]]
    );

    // Added (201), given another role (200), unchanged (200, no entry).
    let r = join(&app, &t, &t.token, &project, &m, "contributor").await;
    let added = expect_json(r, 201).await;
    assert_eq!(
        (added["role"].as_str(), added["email"].as_str()),
        (Some("contributor"), Some("m@acme.test"))
    );
    for _ in 0..2 {
        let r = join(&app, &t, &t.token, &project, &m, "lead").await;
        assert_eq!(expect_json(r, 200).await["role"], "lead");
    }
    assert_eq!(
        app.audit_count("tenant_acme", "project.member_added").await,
        1
    );
    assert_eq!(
        app.audit_count("tenant_acme", "project.member_role_changed")
            .await,
        1
    );

    // The owner stays on the team, as lead.
    let r = put(
        &app,
        &t,
        &t.token,
        &project,
        json!({"user_id": t.owner_id, "role": "contributor"}),
    )
    .await;
    expect_problem(r, 409, "always on the team").await;
    let r = app
        .delete(
            &t.host,
            &format!("{}/{}", team_path(&project), t.owner_id),
            &t.token,
        )
        .await;
    expect_problem(r, 409, "always on the team").await;

    // Only active members of this organization; bad values name their field.
    let r = put(
        &app,
        &t,
        &t.token,
        &project,
        json!({"user_id": other.owner_id, "role": "lead"}),
    )
    .await;
    expect_field_error(r, "user_id", "active member").await;
    let r = put(
        &app,
        &t,
        &t.token,
        &project,
        json!({"user_id": uuid::Uuid::new_v4(), "role": "lead"}),
    )
    .await;
    expect_field_error(r, "user_id", "active member").await;
    let r = put(
        &app,
        &t,
        &t.token,
        &project,
        json!({"user_id": "x", "role": "boss"}),
    )
    .await;
    expect_field_errors(r, 422, &["user_id", "role"]).await;
    let r = app
        .post_json(
            &t.host,
            &format!("/api/v1/users/{v}/deactivate"),
            &json!({}),
            Some(&t.token),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = join(&app, &t, &t.token, &project, &v, "contributor").await;
    expect_field_error(r, "user_id", "active member").await;

    // A member who is not a lead may not change the team; a lead may; a viewer never writes.
    let r = join(&app, &t, &colleague, &project, &c, "contributor").await;
    expect_problem(r, 403, "leads").await;
    let r = join(&app, &t, &member, &project, &c, "contributor").await;
    assert_eq!(r.status(), 201);
    let r = app
        .delete(&t.host, &format!("{}/{c}", team_path(&project)), &member)
        .await;
    assert_eq!(r.status(), 204);
    let r = app
        .delete(&t.host, &format!("{}/{c}", team_path(&project)), &member)
        .await;
    expect_problem(r, 404, "").await;
    let r = join(&app, &t, &viewer, &project, &c, "contributor").await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        app.audit_count("tenant_acme", "project.member_removed")
            .await,
        1
    );

    // Another tenant's project is 404 on every route, and its team is untouched.
    let theirs = app.project(&other, "Theirs").await;
    let r = app.get(&t.host, &team_path(&theirs), Some(&t.token)).await;
    expect_problem(r, 404, "").await;
    let r = join(&app, &t, &t.token, &theirs, &m, "lead").await;
    expect_problem(r, 404, "").await;
    let r = app
        .delete(
            &t.host,
            &format!("{}/{}", team_path(&theirs), other.owner_id),
            &t.token,
        )
        .await;
    expect_problem(r, 404, "").await;
    assert_eq!(
        team(&app, &other, &theirs).await,
        [vec![other.owner_id.clone(), "lead".into()]]
    );
    assert_eq!(
        app.audit_count("tenant_other", "project.member_added")
            .await,
        0
    );
}

#[tokio::test]
async fn tasks_assignee_must_be_on_the_projects_team() {
    let (app, t) = spawn_tenant("acme").await;
    app.member(&t, "m@acme.test", "member").await;
    let m = app.user_id("m@acme.test").await;
    let project = app.project(&t, "Launch").await;
    let r = app
        .call(
            Method::POST,
            &t.host,
            "/api/v1/tasks",
            Some(json!({"project_id": project, "title": "x", "assignee_id": m})),
            &t.token,
        )
        .await;
    expect_field_error(r, "assignee_id", "team").await;
    assert_eq!(app.count("select count(*) from tenant_acme.tasks").await, 0);
    let id = task(&app, &t, json!({"project_id": project, "title": "x"})).await;
    let path = format!("/api/v1/tasks/{id}");
    let r = app
        .call(
            Method::PATCH,
            &t.host,
            &path,
            Some(json!({"assignee_id": m})),
            &t.token,
        )
        .await;
    expect_field_error(r, "assignee_id", "team").await;

    let r = join(&app, &t, &t.token, &project, &m, "contributor").await;
    assert_eq!(r.status(), 201);
    let r = app
        .call(
            Method::PATCH,
            &t.host,
            &path,
            Some(json!({"assignee_id": m})),
            &t.token,
        )
        .await;
    assert_eq!(expect_json(r, 200).await["assignee_id"], m.as_str());
    task(
        &app,
        &t,
        json!({"project_id": project, "title": "y", "assignee_id": m}),
    )
    .await;
}

#[tokio::test]
async fn tasks_leaving_a_team_unassigns_open_tasks_in_that_project_only() {
    let (app, t) = spawn_tenant("acme").await;
    app.member(&t, "m@acme.test", "member").await;
    let m = app.user_id("m@acme.test").await;
    let p1 = app.project(&t, "One").await;
    let p2 = app.project(&t, "Two").await;
    for p in [&p1, &p2] {
        assert_eq!(
            join(&app, &t, &t.token, p, &m, "contributor")
                .await
                .status(),
            201
        );
    }
    let open = task(
        &app,
        &t,
        json!({"project_id": p1, "title": "open", "assignee_id": m}),
    )
    .await;
    let done = task(
        &app,
        &t,
        json!({"project_id": p1, "title": "done", "status": "done", "assignee_id": m}),
    )
    .await;
    let elsewhere = task(
        &app,
        &t,
        json!({"project_id": p2, "title": "p2", "assignee_id": m}),
    )
    .await;

    let r = app
        .delete(&t.host, &format!("{}/{m}", team_path(&p1)), &t.token)
        .await;
    assert_eq!(r.status(), 204);
    assert!(assignee(&app, &t, &open).await.is_null());
    assert_eq!(
        assignee(&app, &t, &done).await,
        m.as_str(),
        "closed tasks keep their assignee"
    );
    assert_eq!(
        assignee(&app, &t, &elsewhere).await,
        m.as_str(),
        "other projects untouched"
    );
    assert_eq!(app.audit_count("tenant_acme", "task.unassigned").await, 1);
    let (before, after) = app.audit_change("tenant_acme", "task.unassigned").await;
    assert_eq!(
        (before["assignee_id"].as_str(), after["assignee_id"].clone()),
        (Some(m.as_str()), Value::Null)
    );
    assert_eq!(team(&app, &t, &p1).await.len(), 1);
}

#[tokio::test]
async fn tasks_removing_or_deactivating_a_member_unassigns_their_open_tasks_everywhere() {
    let (app, t) = spawn_tenant("acme").await;
    app.member(&t, "m@acme.test", "member").await;
    let m = app.user_id("m@acme.test").await;
    app.member(&t, "n@acme.test", "member").await;
    let n = app.user_id("n@acme.test").await;
    let p1 = app.project(&t, "One").await;
    let p2 = app.project(&t, "Two").await;
    let mut tasks = Vec::new();
    for p in [&p1, &p2] {
        for u in [&m, &n] {
            assert_eq!(
                join(&app, &t, &t.token, p, u, "contributor").await.status(),
                201
            );
            tasks.push((
                u.clone(),
                task(
                    &app,
                    &t,
                    json!({"project_id": p, "title": "t", "assignee_id": u}),
                )
                .await,
            ));
        }
    }
    let closed = task(
        &app,
        &t,
        json!({"project_id": p1, "title": "c", "status": "cancelled", "assignee_id": m}),
    )
    .await;

    // Deactivation: m's open tasks in both projects are unassigned, n's are not.
    let r = app
        .post_json(
            &t.host,
            &format!("/api/v1/users/{m}/deactivate"),
            &json!({}),
            Some(&t.token),
        )
        .await;
    assert_eq!(r.status(), 200);
    for (u, id) in &tasks {
        let a = assignee(&app, &t, id).await;
        if *u == m {
            assert!(a.is_null())
        } else {
            assert_eq!(a, n.as_str())
        }
    }
    assert_eq!(assignee(&app, &t, &closed).await, m.as_str());
    assert_eq!(app.audit_count("tenant_acme", "task.unassigned").await, 2);

    // Removal: n's open tasks are unassigned and n leaves both teams.
    let r = app
        .delete(&t.host, &format!("/api/v1/users/{n}"), &t.token)
        .await;
    assert_eq!(r.status(), 204);
    for (_, id) in &tasks {
        assert!(assignee(&app, &t, id).await.is_null());
    }
    assert_eq!(app.audit_count("tenant_acme", "task.unassigned").await, 4);
    for p in [&p1, &p2] {
        let members: Vec<String> = team(&app, &t, p)
            .await
            .into_iter()
            .map(|r| r[0].clone())
            .collect();
        assert!(!members.contains(&n), "{members:?}");
    }
    assert_eq!(
        app.audit_count("tenant_acme", "project.member_removed")
            .await,
        2
    );
}
