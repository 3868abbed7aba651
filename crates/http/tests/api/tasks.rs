//! `/api/v1/tasks`: CRUD, validation, filters and pages, complete/reopen, audit, isolation.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};

/// A project of `t`, and the path of a fresh task in it.
async fn project_and_task(app: &TestApp, t: &TestTenant, title: &str) -> (String, String) {
    let project = app.project(t, "Launch").await;
    let task = create(app, t, json!({"project_id": project, "title": title})).await;
    (
        project,
        format!("/api/v1/tasks/{}", task["id"].as_str().expect("id")),
    )
}

async fn create(app: &TestApp, t: &TestTenant, body: Value) -> Value {
    let r = app
        .call(Method::POST, &t.host, "/api/v1/tasks", Some(body), &t.token)
        .await;
    expect_json(r, 201).await
}

#[tokio::test]
async fn tasks_round_trip_with_defaults_and_every_field() {
    let (app, t) = spawn_tenant("acme").await;
    let project = app.project(&t, "Launch").await;
    let task = create(
        &app,
        &t,
        json!({"project_id": project, "title": "  Write post  "}),
    )
    .await;
    assert_eq!(task["title"], "Write post");
    assert_eq!(
        (task["status"].as_str(), task["priority"].as_str()),
        (Some("todo"), Some("medium"))
    );
    assert_eq!(task["created_by"], t.owner_id.as_str());
    assert!(task["completed_at"].is_null() && task["assignee_id"].is_null());

    let full = create(
        &app,
        &t,
        json!({"project_id": project, "title": "Ship", "description": "d", "status": "done",
               "priority": "urgent", "assignee_id": t.owner_id, "due_at": "2026-12-24T12:00:00Z",
               "tags": ["launch", " web ", "launch"]}),
    )
    .await;
    assert_eq!(
        full["tags"],
        json!(["launch", "web"]),
        "trimmed, duplicates dropped"
    );
    assert!(
        full["completed_at"].is_string(),
        "created done: completed_at set"
    );
    assert_eq!(full["due_at"], "2026-12-24T12:00:00Z");

    let path = format!("/api/v1/tasks/{}", full["id"].as_str().unwrap());
    assert_eq!(app.get_json(&t, &path, 200).await["title"], "Ship");
    // Clearing with null, leaving absent fields alone.
    let r = app
        .call(
            Method::PATCH,
            &t.host,
            &path,
            Some(json!({"assignee_id": null, "due_at": null, "status": "in_review"})),
            &t.token,
        )
        .await;
    let patched = expect_json(r, 200).await;
    assert!(patched["assignee_id"].is_null() && patched["due_at"].is_null());
    assert!(
        patched["completed_at"].is_null(),
        "leaving done clears completed_at"
    );
    assert_eq!(patched["priority"], "urgent");

    let r = app
        .call(Method::DELETE, &t.host, &path, None, &t.token)
        .await;
    assert_eq!(r.status(), 204);
    let r = app.get_as(&t, &path).await;
    expect_problem(r, 404, "").await;
    // Deleting the project deletes its tasks.
    let r = app
        .call(
            Method::DELETE,
            &t.host,
            &format!("/api/v1/projects/{project}"),
            None,
            &t.token,
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(app.count("select count(*) from tenant_acme.tasks").await, 0);
}

#[tokio::test]
async fn invalid_values_are_422_naming_each_field_and_nothing_is_written() {
    let (app, t) = spawn_tenant("acme").await;
    let project = app.project(&t, "Launch").await;
    let cases = [
        (json!({"title": "x"}), "project_id"),
        (json!({"project_id": "nope", "title": "x"}), "project_id"),
        (json!({"project_id": project}), "title"),
        (
            json!({"project_id": project, "title": "x".repeat(301)}),
            "title",
        ),
        (
            json!({"project_id": project, "title": "x", "status": "open"}),
            "status",
        ),
        (
            json!({"project_id": project, "title": "x", "priority": "p1"}),
            "priority",
        ),
        (
            json!({"project_id": project, "title": "x", "due_at": "tomorrow"}),
            "due_at",
        ),
        (
            json!({"project_id": project, "title": "x", "tags": vec!["t"; 21]}),
            "tags",
        ),
        (
            json!({"project_id": project, "title": "x", "tags": [""]}),
            "tags",
        ),
        (
            json!({"project_id": project, "title": "x", "assignee_id": "nope"}),
            "assignee_id",
        ),
        // An account that is not a member here.
        (
            json!({"project_id": project, "title": "x", "assignee_id": uuid::Uuid::new_v4()}),
            "assignee_id",
        ),
        // A project that does not exist (or is another tenant's: see the isolation test).
        (
            json!({"project_id": uuid::Uuid::new_v4(), "title": "x"}),
            "project_id",
        ),
    ];
    for (body, field) in cases {
        let r = app
            .call(
                Method::POST,
                &t.host,
                "/api/v1/tasks",
                Some(body.clone()),
                &t.token,
            )
            .await;
        let p = problem(r, 422).await;
        assert!(p["errors"][field].is_array(), "{body} → {p}");
    }
    assert_eq!(app.count("select count(*) from tenant_acme.tasks").await, 0);
    assert_eq!(app.audit_count("tenant_acme", "task.created").await, 0);
}

#[tokio::test]
async fn complete_and_reopen_are_idempotent_and_audited() {
    let (app, t) = spawn_tenant("acme").await;
    let (_, path) = project_and_task(&app, &t, "Task").await;
    let complete = format!("{path}/complete");
    let first = expect_json(
        app.call(Method::POST, &t.host, &complete, None, &t.token)
            .await,
        200,
    )
    .await;
    assert_eq!(first["status"], "done");
    let again = expect_json(
        app.call(Method::POST, &t.host, &complete, None, &t.token)
            .await,
        200,
    )
    .await;
    assert_eq!(
        again["completed_at"], first["completed_at"],
        "repeat keeps completed_at"
    );
    assert_eq!(app.audit_count("tenant_acme", "task.completed").await, 1);
    let reopened = expect_json(
        app.call(
            Method::POST,
            &t.host,
            &format!("{path}/reopen"),
            None,
            &t.token,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(reopened["status"], "todo");
    assert!(reopened["completed_at"].is_null());
    assert_eq!(app.audit_count("tenant_acme", "task.reopened").await, 1);
    assert_eq!(app.audit_count("tenant_acme", "task.created").await, 1);
}

#[tokio::test]
async fn filters_and_keyset_pages() {
    let (app, t) = spawn_tenant("acme").await;
    let a = app.project(&t, "A").await;
    let b = app.project(&t, "B").await;
    for i in 0..5 {
        let project = if i % 2 == 0 { &a } else { &b };
        let mut body = json!({"project_id": project, "title": format!("t{i}")});
        if i < 2 {
            body["assignee_id"] = json!(t.owner_id);
        }
        create(&app, &t, body).await;
    }
    let titles = |v: &Value| -> Vec<String> {
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["title"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        titles(
            &app.get_json(&t, &format!("/api/v1/tasks?project={a}"), 200)
                .await
        ),
        ["t4", "t2", "t0"]
    );
    assert_eq!(
        titles(&app.get_json(&t, "/api/v1/tasks?assignee=me", 200).await),
        ["t1", "t0"]
    );
    assert_eq!(
        titles(&app.get_json(&t, "/api/v1/tasks?assignee=none", 200).await),
        ["t4", "t3", "t2"]
    );
    for bad in ["status=open", "project=x", "assignee=someone", "limit=0"] {
        let r = app.get_as(&t, &format!("/api/v1/tasks?{bad}")).await;
        problem(r, 400).await;
    }
    // Pages walk every task once, newest first.
    let mut seen = Vec::new();
    let mut next = Some(format!("/api/v1/tasks?limit=2&project={b}"));
    while let Some(path) = next {
        let page = app.get_json(&t, &path, 200).await;
        seen.extend(titles(&page));
        next = page["next"]
            .as_str()
            .map(|n| format!("/api/v1{}", n.split_once("/api/v1").unwrap().1));
    }
    assert_eq!(seen, ["t3", "t1"]);
}

#[tokio::test]
async fn status_priority_due_overdue_tag_and_search_filters() {
    let (app, t) = spawn_tenant("acme").await;
    let p = app.project(&t, "P").await;
    for (title, status, priority, due, tags) in [
        (
            "late draft",
            "todo",
            "high",
            Some("2020-01-01T00:00:00Z"),
            json!(["web"]),
        ),
        (
            "late but done",
            "done",
            "low",
            Some("2020-01-02T00:00:00Z"),
            json!([]),
        ),
        (
            "Future Review",
            "in_review",
            "urgent",
            Some("2999-01-01T00:00:00Z"),
            json!(["web", "ops"]),
        ),
        ("no date", "in_progress", "medium", None, json!(["ops"])),
    ] {
        let mut body = json!({"project_id": p, "title": title, "status": status,
                              "priority": priority, "tags": tags});
        if let Some(due) = due {
            body["due_at"] = json!(due);
        }
        create(&app, &t, body).await;
    }
    let titles = |query: &str| {
        let (app, t, path) = (&app, &t, format!("/api/v1/tasks?{query}"));
        async move {
            let page = app.get_json(t, &path, 200).await;
            let mut titles = column(&page, "title");
            titles.sort();
            titles
        }
    };
    assert_eq!(
        titles("status=todo&status=done").await,
        ["late but done", "late draft"]
    );
    assert_eq!(
        titles("status=todo,done").await,
        ["late but done", "late draft"]
    );
    assert_eq!(
        titles("priority=urgent,high").await,
        ["Future Review", "late draft"]
    );
    assert_eq!(
        titles("status=todo,in_review&priority=urgent").await,
        ["Future Review"]
    );
    assert_eq!(
        titles("due_before=2021-01-01T00:00:00Z").await,
        ["late but done", "late draft"]
    );
    assert_eq!(
        titles("due_after=2021-01-01T00:00:00Z").await,
        ["Future Review"]
    );
    assert_eq!(titles("overdue=true").await, ["late draft"]);
    assert_eq!(titles("overdue=false").await.len(), 4);
    assert_eq!(titles("tag=ops").await, ["Future Review", "no date"]);
    assert_eq!(titles("search=REVIEW").await, ["Future Review"]);
    assert_eq!(titles("search=late&tag=web").await, ["late draft"]);
    for (bad, parameter) in [
        ("status=todo,open", "status"),
        ("priority=huge", "priority"),
        ("due_before=yesterday", "due_before"),
        ("overdue=yes", "overdue"),
        ("search=%00", "search"),
    ] {
        let r = app.get_as(&t, &format!("/api/v1/tasks?{bad}")).await;
        expect_problem(r, 400, parameter).await;
    }
    // A cursor is bound to its filters: the same statuses in another spelling are the same list.
    let page = expect_json(
        app.get_as(&t, "/api/v1/tasks?limit=1&status=todo,done")
            .await,
        200,
    )
    .await;
    let next = page["next"].as_str().expect("a next page");
    let cursor = next
        .split("cursor=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let again = format!("/api/v1/tasks?limit=1&status=todo&status=done&cursor={cursor}");
    assert_eq!(app.get_as(&t, &again).await.status(), 200);
    let other = format!("/api/v1/tasks?limit=1&status=todo&cursor={cursor}");
    problem(app.get_as(&t, &other).await, 400).await;
}

#[tokio::test]
async fn another_tenants_tasks_and_projects_are_unknown_here() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let (globex_project, globex_task) = project_and_task(&app, &globex, "secret").await;
    let r = app.get_as(&acme, &globex_task).await;
    expect_problem(r, 404, "").await;
    let changes = [
        (
            Method::PATCH,
            globex_task.clone(),
            Some(json!({"title": "mine"})),
        ),
        (Method::DELETE, globex_task.clone(), None),
        (Method::POST, format!("{globex_task}/complete"), None),
        (Method::POST, format!("{globex_task}/reopen"), None),
    ];
    for (method, path, body) in changes {
        let r = app.call(method, &acme.host, &path, body, &acme.token).await;
        expect_problem(r, 404, "").await;
    }
    // A task can never point at another tenant's project.
    let r = app
        .call(
            Method::POST,
            &acme.host,
            "/api/v1/tasks",
            Some(json!({"project_id": globex_project, "title": "x"})),
            &acme.token,
        )
        .await;
    expect_field_error(r, "project_id", "not a project of this organization").await;
    let stored: String = app
        .sql_one_with(
            "select title || ':' || status from tenant_globex.tasks",
            &[],
        )
        .await;
    assert_eq!(stored, "secret:todo", "untouched");
    assert_eq!(app.count("select count(*) from tenant_acme.tasks").await, 0);
}

/// A task answer carries a weak `ETag`; a `PATCH` with `If-Match` applies only at that version
/// (412 otherwise, nothing changed), and without it the last write wins.
#[tokio::test]
async fn patch_honours_if_match_with_the_tasks_etag() {
    let (app, t) = spawn_tenant("acme").await;
    let (_, path) = project_and_task(&app, &t, "Draft").await;
    let r = app.get_as(&t, &path).await;
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with("W/\""), "{etag}");
    let patch = |title: &str, if_match: Option<&str>| {
        let mut request = app
            .request(Method::PATCH, &t.host, &path)
            .bearer_auth(&t.token)
            .json(&json!({ "title": title }));
        if let Some(tag) = if_match {
            request = request.header("If-Match", tag);
        }
        request.send()
    };
    let r = patch("First", Some(&etag)).await.unwrap();
    assert_eq!(r.status(), 200);
    let newer = r.headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(newer, etag);
    // The old version again: 412, and the task keeps the first change.
    let r = patch("Lost update", Some(&etag)).await.unwrap();
    expect_problem(r, 412, "has changed").await;
    for tag in ["\"garbage\"", "W/\"1\""] {
        problem(patch("Nope", Some(tag)).await.unwrap(), 412).await;
    }
    let task = app.get_json(&t, &path, 200).await;
    assert_eq!(task["title"], "First");
    assert_eq!(app.audit_count("tenant_acme", "task.updated").await, 1);
    // A list naming the current version, `*`, or no header at all: applied.
    let list = format!("{etag}, {newer}");
    assert_eq!(patch("Second", Some(&list)).await.unwrap().status(), 200);
    assert_eq!(patch("Third", Some("*")).await.unwrap().status(), 200);
    assert_eq!(patch("Last write wins", None).await.unwrap().status(), 200);
}

/// Walks every page of `path` (limit 2), returning the titles in order.
async fn walk(app: &TestApp, t: &TestTenant, path: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut next = Some(format!("{path}{sep}limit=2"));
    while let Some(path) = next {
        let page = app.get_json(t, &path, 200).await;
        seen.extend(column(&page, "title"));
        next = page["next"]
            .as_str()
            .map(|n| format!("/api/v1{}", n.split_once("/api/v1").unwrap().1));
    }
    seen
}

#[tokio::test]
async fn every_ordering_pages_through_every_task_once_in_order() {
    let (app, t) = spawn_tenant("acme").await;
    let p = app.project(&t, "P").await;
    // Created in this order (so created_at and position follow it).
    for (title, priority, due) in [
        ("delta", "low", Some("2027-03-01T00:00:00Z")),
        ("alpha", "urgent", None),
        ("charlie", "medium", Some("2027-01-01T00:00:00Z")),
        ("bravo", "urgent", Some("2027-02-01T00:00:00Z")),
        ("echo", "high", None),
    ] {
        let mut body = json!({"project_id": p, "title": title, "priority": priority});
        if let Some(due) = due {
            body["due_at"] = json!(due);
        }
        create(&app, &t, body).await;
    }
    for (ordering, expected) in [
        ("created_at", ["delta", "alpha", "charlie", "bravo", "echo"]),
        (
            "-created_at",
            ["echo", "bravo", "charlie", "alpha", "delta"],
        ),
        ("position", ["delta", "alpha", "charlie", "bravo", "echo"]),
        ("title", ["alpha", "bravo", "charlie", "delta", "echo"]),
        ("-title", ["echo", "delta", "charlie", "bravo", "alpha"]),
        // Undated last in both directions, ties by id in the same direction.
        ("due_at", ["charlie", "bravo", "delta", "alpha", "echo"]),
        ("-due_at", ["delta", "bravo", "charlie", "echo", "alpha"]),
        // low < medium < high < urgent, not the alphabet.
        ("priority", ["delta", "charlie", "echo", "alpha", "bravo"]),
        ("-priority", ["bravo", "alpha", "echo", "charlie", "delta"]),
    ] {
        let seen = walk(&app, &t, &format!("/api/v1/tasks?ordering={ordering}")).await;
        assert_eq!(seen, expected, "ordering={ordering}");
    }
    // updated_at follows the last change.
    let first = walk(&app, &t, "/api/v1/tasks?ordering=title").await;
    assert_eq!(first[0], "alpha");
    let alpha = app
        .sql_one::<uuid::Uuid>("select id from tenant_acme.tasks where title = 'alpha'")
        .await;
    let r = app
        .call(
            Method::PATCH,
            &t.host,
            &format!("/api/v1/tasks/{alpha}"),
            Some(json!({"position": 0})),
            &t.token,
        )
        .await;
    assert_eq!(expect_json(r, 200).await["position"], 0);
    let seen = walk(&app, &t, "/api/v1/tasks?ordering=-updated_at").await;
    assert_eq!(seen[0], "alpha");
    let seen = walk(&app, &t, "/api/v1/tasks?ordering=position").await;
    assert_eq!(seen[0], "alpha");
    for bad in ["ordering=due", "ordering=--title", "ordering="] {
        let r = app.get_as(&t, &format!("/api/v1/tasks?{bad}")).await;
        expect_problem(r, 400, "ordering").await;
    }
    let r = app
        .call(
            Method::PATCH,
            &t.host,
            &format!("/api/v1/tasks/{alpha}"),
            Some(json!({"position": -1})),
            &t.token,
        )
        .await;
    expect_problem(r, 422, "position").await;
    for (position, status) in [(json!(2.0), 200), (json!(1.5), 422), (json!(1e300), 422)] {
        let r = app
            .call(
                Method::PATCH,
                &t.host,
                &format!("/api/v1/tasks/{alpha}"),
                Some(json!({"position": position})),
                &t.token,
            )
            .await;
        assert_eq!(r.status(), status, "position {position}");
    }
    // A cursor made for one ordering is refused by another.
    let page = expect_json(
        app.get_as(&t, "/api/v1/tasks?ordering=title&limit=1").await,
        200,
    )
    .await;
    let cursor = page["next"]
        .as_str()
        .unwrap()
        .split("cursor=")
        .nth(1)
        .unwrap();
    let other = format!("/api/v1/tasks?ordering=due_at&limit=1&cursor={cursor}");
    expect_problem(app.get_as(&t, &other).await, 400, "cursor").await;
}

#[tokio::test]
async fn pages_stay_consistent_while_tasks_are_added_between_them() {
    let (app, t) = spawn_tenant("acme").await;
    let p = app.project(&t, "P").await;
    for i in 0..6 {
        create(&app, &t, json!({"project_id": p, "title": format!("t{i}")})).await;
    }
    for ordering in ["-created_at", "title", "due_at"] {
        let mut seen = Vec::new();
        let mut next = Some(format!("/api/v1/tasks?ordering={ordering}&limit=2"));
        let mut added = 0;
        while let Some(path) = next {
            let page = app.get_json(&t, &path, 200).await;
            seen.extend(column(&page, "title"));
            next = page["next"]
                .as_str()
                .map(|n| format!("/api/v1{}", n.split_once("/api/v1").unwrap().1));
            // A new task between pages: it sorts before the position (newest, or an early
            // title) and must not shift what the next page holds.
            create(
                &app,
                &t,
                json!({"project_id": p, "title": format!("a-{ordering}-{added}")}),
            )
            .await;
            added += 1;
        }
        let originals: Vec<&String> = seen.iter().filter(|s| s.starts_with('t')).collect();
        assert_eq!(originals.len(), 6, "{ordering}: {seen:?}");
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            seen.len(),
            "{ordering}: a task seen twice: {seen:?}"
        );
    }
}

#[tokio::test]
async fn my_tasks_are_the_open_ones_soonest_due_first_and_a_projects_tasks_its_own() {
    let (app, t) = spawn_tenant("acme").await;
    let p = app.project(&t, "P").await;
    let q = app.project(&t, "Q").await;
    for (project, title, status, due, mine) in [
        (&p, "later", "todo", Some("2027-05-01T00:00:00Z"), true),
        (
            &q,
            "sooner",
            "in_progress",
            Some("2027-01-01T00:00:00Z"),
            true,
        ),
        (&p, "undated", "in_review", None, true),
        (&p, "finished", "done", Some("2026-01-01T00:00:00Z"), true),
        (
            &q,
            "someone else's",
            "todo",
            Some("2026-01-01T00:00:00Z"),
            false,
        ),
    ] {
        let mut body = json!({"project_id": project, "title": title, "status": status});
        if let Some(due) = due {
            body["due_at"] = json!(due);
        }
        if mine {
            body["assignee_id"] = json!(t.owner_id);
        }
        create(&app, &t, body).await;
    }
    assert_eq!(
        walk(&app, &t, "/api/v1/tasks/mine").await,
        ["sooner", "later", "undated"]
    );
    assert_eq!(
        walk(&app, &t, "/api/v1/tasks/mine?status=done").await,
        ["finished"]
    );
    assert_eq!(
        walk(&app, &t, "/api/v1/tasks/mine?ordering=title").await,
        ["later", "sooner", "undated"]
    );
    // Another member's "mine" is theirs.
    let viewer = app.member(&t, "viewer@acme.test", "viewer").await;
    let r = app.get(&t.host, "/api/v1/tasks/mine", Some(&viewer)).await;
    assert_eq!(expect_json(r, 200).await["results"], json!([]));

    assert_eq!(
        walk(
            &app,
            &t,
            &format!("/api/v1/projects/{q}/tasks?ordering=title")
        )
        .await,
        ["someone else's", "sooner"]
    );
    assert_eq!(
        walk(&app, &t, &format!("/api/v1/projects/{p}/tasks?status=done")).await,
        ["finished"]
    );
    let missing = uuid::Uuid::new_v4();
    let r = app
        .get_as(&t, &format!("/api/v1/projects/{missing}/tasks"))
        .await;
    problem(r, 404).await;
    // Another tenant's project is as unknown as a missing one.
    let other = app.tenant("globex").await;
    let r = app
        .get_as(&other, &format!("/api/v1/projects/{p}/tasks"))
        .await;
    problem(r, 404).await;
}
