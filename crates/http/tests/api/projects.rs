//! `/api/v1/projects`: CRUD, validation, keyset pages, roles.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashSet;

/// The project row with `id`, as JSON.
async fn stored(app: &TestApp, id: &str) -> Value {
    app.sql_one_with(
        "select to_jsonb(p) from tenant_acme.projects p where id = $1::text::uuid",
        &[&id],
    )
    .await
}

#[tokio::test]
async fn crud_round_trip() {
    let (app, t) = spawn_tenant("acme").await;
    let launch = json!({"name": "  Launch  ", "description": "d", "status": "active",
                        "start_date": "2026-01-01", "end_date": "2026-02-01"});
    let r = app.post_project(&t.host, &t.token, launch).await;
    assert_eq!(r.status(), 201);
    let location = r
        .headers()
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["name"], "Launch");
    assert_eq!(p["status"], "active");
    assert_eq!(p["owner_id"], t.owner_id.as_str());
    let id = p["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/api/v1/projects/{id}"));

    let r = app.get_as(&t, &location).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), p);

    let r = app
        .send_json(
            Method::PATCH,
            &t.host,
            &location,
            &json!({"status": "completed", "end_date": null}),
            Some(&t.token),
        )
        .await;
    assert_eq!(r.status(), 200);
    let patched: Value = r.json().await.unwrap();
    assert_eq!(patched["status"], "completed");
    assert_eq!(patched["end_date"], Value::Null);
    assert_eq!(patched["start_date"], "2026-01-01", "absent fields stay");
    assert_eq!(patched["name"], "Launch");
    assert_eq!(stored(&app, &id).await["status"], "completed");

    let r = app.delete(&t.host, &location, &t.token).await;
    assert_eq!(r.status(), 204);
    problem(app.get_as(&t, &location).await, 404).await;
    problem(app.delete(&t.host, &location, &t.token).await, 404).await;
    assert_eq!(
        app.count("select count(*) from tenant_acme.projects").await,
        0
    );
}

#[tokio::test]
async fn invalid_values_are_422_and_nothing_is_written() {
    let (app, t) = spawn_tenant("acme").await;
    let cases = [
        (json!({}), "name"),
        (json!({"name": ""}), "name"),
        (json!({"name": "x".repeat(201)}), "name"),
        (json!({"name": "ok", "status": "done"}), "status"),
        (
            json!({"name": "ok", "start_date": "2026-13-01"}),
            "start_date",
        ),
        (
            json!({"name": "ok", "start_date": "2026-02-01", "end_date": "2026-01-01"}),
            "end_date",
        ),
        (
            json!({"name": "ok", "description": "d".repeat(10_001)}),
            "description",
        ),
    ];
    for (body, field) in cases {
        let r = app.post_project(&t.host, &t.token, body).await;
        expect_field_errors(r, 422, &[field]).await;
    }
    assert_eq!(
        app.count("select count(*) from tenant_acme.projects").await,
        0
    );

    let body = json!({"name": "p", "start_date": "2026-01-10"});
    let id = app.create_project(&t.host, &t.token, body).await;
    let path = format!("/api/v1/projects/{id}");
    // The database's date check is reported on the field, not as a 500.
    for (body, field) in [
        (json!({"end_date": "2026-01-01"}), "end_date"),
        (json!({"name": " "}), "name"),
    ] {
        let r = app
            .call(Method::PATCH, &t.host, &path, Some(body), &t.token)
            .await;
        expect_field_errors(r, 422, &[field]).await;
    }
    let row = stored(&app, &id).await;
    assert_eq!(row.get("end_date"), Some(&Value::Null), "{row}");
}

#[tokio::test]
async fn keyset_pages_walk_every_project_once() {
    let (app, t) = spawn_tenant("acme").await;
    for i in 0..25 {
        app.create_project(&t.host, &t.token, json!({"name": format!("p{i}")}))
            .await;
    }
    let mut seen = Vec::new();
    let mut url = format!("{}/api/v1/projects?limit=10", app.address);
    let mut pages = 0;
    loop {
        let r = app
            .http
            .get(&url)
            .header("Host", &t.host)
            .bearer_auth(&t.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let page: Value = r.json().await.unwrap();
        pages += 1;
        let results = page["results"].as_array().unwrap();
        assert!(results.len() <= 10);
        seen.extend(
            results
                .iter()
                .map(|p| p["name"].as_str().unwrap().to_owned()),
        );
        match page["next"].as_str() {
            Some(next) => {
                assert!(
                    next.starts_with(&format!("http://{}/api/v1/projects?", t.host)),
                    "{next}"
                );
                // Follow the link against the test server's address, keeping its path and query.
                let path = next.split_once(&t.host).unwrap().1;
                url = format!("{}{}", app.address, path);
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 25);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 25);
    assert_eq!(seen[0], "p24", "newest first");
    assert_eq!(seen[24], "p0");

    let r = app.get_as(&t, "/api/v1/projects").await;
    let page: Value = r.json().await.unwrap();
    assert_eq!(
        page["results"].as_array().unwrap().len(),
        20,
        "default limit"
    );
    let r = app.get_as(&t, "/api/v1/projects?limit=1000").await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["results"]
            .as_array()
            .unwrap()
            .len(),
        25,
        "capped at 100"
    );
    for bad in [
        "limit=0",
        "limit=-1",
        "limit=abc",
        "cursor=!!!",
        "cursor=AAAA",
    ] {
        let path = format!("/api/v1/projects?{bad}");
        problem(app.get_as(&t, &path).await, 400).await;
    }
}

#[tokio::test]
async fn viewers_read_only_members_write() {
    let (app, t) = spawn_tenant("acme").await;
    let viewer = app.member(&t, "viewer@acme.test", "viewer").await;
    let member = app.member(&t, "member@acme.test", "member").await;

    let id = app
        .create_project(&t.host, &member, json!({"name": "by member"}))
        .await;
    let path = format!("/api/v1/projects/{id}");

    assert_eq!(
        app.get(&t.host, "/api/v1/projects", Some(&viewer))
            .await
            .status(),
        200
    );
    assert_eq!(app.get(&t.host, &path, Some(&viewer)).await.status(), 200);
    for (method, path, body) in [
        (Method::POST, "/api/v1/projects", Some(json!({"name": "v"}))),
        (Method::PATCH, &path, Some(json!({"name": "v"}))),
        (Method::DELETE, &path, None),
    ] {
        problem(app.call(method, &t.host, path, body, &viewer).await, 403).await;
    }
    assert_eq!(stored(&app, &id).await["name"], "by member");
}

/// The `before` and `after` of the one `action` entry in acme's trail (null as `Value::Null`).
async fn change(app: &TestApp, action: &str) -> (Value, Value) {
    let row = app
        .sql_row_with(
            "select before, after from tenant_acme.audit_log where action = $1",
            &[&action],
        )
        .await;
    let get = |i| row.get::<_, Option<Value>>(i).unwrap_or(Value::Null);
    (get(0), get(1))
}

#[tokio::test]
async fn project_changes_are_audited_with_before_and_after_and_failures_leave_no_entry() {
    let (app, t) = spawn_tenant("acme").await;
    let id = app
        .create_project(
            &t.host,
            &t.token,
            json!({"name": "Audited", "status": "planned"}),
        )
        .await;
    let (before, after) = change(&app, "project.created").await;
    assert!(before.is_null(), "{before}");
    assert_eq!(after["name"], "Audited");
    assert_eq!(after["owner_id"], t.owner_id.as_str());

    let path = format!("/api/v1/projects/{id}");
    let r = app
        .call(
            Method::PATCH,
            &t.host,
            &path,
            Some(json!({"status": "active"})),
            &t.token,
        )
        .await;
    assert_eq!(r.status(), 200);
    let (before, after) = change(&app, "project.updated").await;
    assert_eq!(
        (before["status"].as_str(), after["status"].as_str()),
        (Some("planned"), Some("active"))
    );

    // A change the database refuses is rolled back together with its entry.
    let r = app
        .call(
            Method::PATCH,
            &t.host,
            &path,
            Some(json!({"start_date": "2026-05-01", "end_date": "2026-04-01"})),
            &t.token,
        )
        .await;
    expect_problem(r, 422, "must not be before start_date").await;
    assert_eq!(app.audit_count("tenant_acme", "project.updated").await, 1);

    let r = app
        .call(Method::DELETE, &t.host, &path, None, &t.token)
        .await;
    assert_eq!(r.status(), 204);
    let (before, after) = change(&app, "project.deleted").await;
    assert_eq!(before["name"], "Audited");
    assert!(after.is_null(), "{after}");
    // Deleting again is 404 and records nothing more.
    let r = app
        .call(Method::DELETE, &t.host, &path, None, &t.token)
        .await;
    expect_problem(r, 404, "").await;
    assert_eq!(app.audit_count("tenant_acme", "project.deleted").await, 1);
}

#[tokio::test]
async fn a_cursor_only_works_for_the_filters_it_was_made_for() {
    let (app, t) = spawn_tenant("acme").await;
    for email in ["a@acme.test", "b@acme.test", "c@acme.test"] {
        app.member(&t, email, "viewer").await;
    }
    let page = app
        .get_json(&t, "/api/v1/users?role=viewer&limit=1", 200)
        .await;
    let next = page["next"].as_str().expect("a next link").to_owned();
    assert!(
        next.contains("role=viewer") && next.contains("limit=1"),
        "{next}"
    );
    let cursor = next.split("cursor=").nth(1).expect("cursor").to_owned();
    // The same cursor with the filter changed or dropped is refused, not silently misapplied.
    for query in [
        format!("role=admin&cursor={cursor}"),
        format!("cursor={cursor}"),
    ] {
        let r = app.get_as(&t, &format!("/api/v1/users?{query}")).await;
        expect_problem(r, 400, "cursor is not valid").await;
    }
    let path = next
        .split_once("/api/v1")
        .map(|(_, p)| format!("/api/v1{p}"))
        .expect("path");
    let r = app.get_as(&t, &path).await;
    assert_eq!(
        expect_json(r, 200).await["results"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

/// `next` links use this connection's scheme: a client's `X-Forwarded-Proto` is not reflected.
#[tokio::test]
async fn next_links_do_not_reflect_forwarding_headers() {
    let (app, t) = spawn_tenant("acme").await;
    for i in 0..2 {
        app.create_project(&t.host, &t.token, json!({"name": format!("p{i}")}))
            .await;
    }
    let r = app
        .request(Method::GET, &t.host, "/api/v1/projects?limit=1")
        .bearer_auth(&t.token)
        .header("X-Forwarded-Proto", "javascript")
        .header("Forwarded", "proto=gopher;host=evil.test")
        .send()
        .await
        .unwrap();
    let next = expect_json(r, 200).await["next"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        next.starts_with("http://acme.example.test/api/v1/projects?"),
        "{next}"
    );
}

/// The names `GET path` lists (one page of up to 100).
async fn listed(app: &TestApp, t: &TestTenant, query: &str) -> Vec<String> {
    let r = app
        .get_as(t, &format!("/api/v1/projects?limit=100&{query}"))
        .await;
    column(&expect_json(r, 200).await, "name")
}

#[tokio::test]
async fn projects_filters_each_narrow_the_list() {
    let (app, t) = spawn_tenant("acme").await;
    let member = app.member(&t, "m@acme.test", "member").await;
    let m = app.user_id("m@acme.test").await;
    for body in [
        json!({"name": "Alpha", "status": "planned", "start_date": "2025-01-10"}),
        json!({"name": "Bravo", "status": "active", "start_date": "2025-02-10", "description": "The WEBSITE relaunch"}),
        json!({"name": "Charlie", "status": "completed"}),
        json!({"name": "Delta website", "status": "archived", "start_date": "2025-03-10"}),
    ] {
        app.create_project(&t.host, &t.token, body).await;
    }
    app.create_project(
        &t.host,
        &member,
        json!({"name": "Echo", "status": "active"}),
    )
    .await;
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let cases: [(&str, &[&str]); 9] = [
        ("status=active", &["Bravo", "Echo"]),
        ("status=active&status=planned", &["Alpha", "Bravo", "Echo"]),
        ("status=planned,%20completed", &["Alpha", "Charlie"]),
        (&format!("owner={m}"), &["Echo"]),
        ("search=WebSite", &["Bravo", "Delta website"]),
        ("start_after=2025-01-10", &["Bravo", "Delta website"]),
        ("start_before=2025-03-10", &["Alpha", "Bravo"]),
        (
            "start_after=2025-01-01&start_before=2025-02-28&status=active",
            &["Bravo"],
        ),
        (
            "search=%20",
            &["Alpha", "Bravo", "Charlie", "Delta website", "Echo"],
        ),
    ];
    for (query, want) in cases {
        assert_eq!(sorted(listed(&app, &t, query).await), want, "{query}");
    }
    // A next link repeats the filters, normalised.
    let page = app
        .get_json(
            &t,
            "/api/v1/projects?limit=1&status=planned&status=active,planned&ordering=name",
            200,
        )
        .await;
    let next = page["next"].as_str().unwrap();
    assert!(
        next.contains("status=planned%2Cactive") && next.contains("ordering=name"),
        "{next}"
    );
}

#[tokio::test]
async fn projects_bad_filters_orderings_and_cursors_are_400_naming_the_parameter() {
    let (app, t) = spawn_tenant("acme").await;
    for query in [
        "status=open",
        "status=active,open",
        "status=",
        "start_before=",
        "ordering=",
        "owner=someone",
        "start_after=2025-13-01",
        "start_before=yesterday",
        "ordering=title",
        "ordering=--name",
        &format!("search={}", "x".repeat(201)),
    ] {
        let name = query.split('=').next().unwrap();
        let r = app.get_as(&t, &format!("/api/v1/projects?{query}")).await;
        expect_problem(r, 400, name).await;
    }
    for i in 0..3 {
        app.create_project(&t.host, &t.token, json!({"name": format!("p{i}")}))
            .await;
    }
    let r = app
        .get_as(&t, "/api/v1/projects?limit=1&ordering=name")
        .await;
    let next = expect_json(r, 200).await["next"]
        .as_str()
        .unwrap()
        .to_owned();
    let cursor = next.split("cursor=").nth(1).unwrap();
    for other in ["ordering=-name", "ordering=name&status=active", ""] {
        let r = app
            .get_as(&t, &format!("/api/v1/projects?{other}&cursor={cursor}"))
            .await;
        expect_problem(r, 400, "cursor").await;
    }
}

#[tokio::test]
async fn projects_every_ordering_pages_consistently_while_rows_are_inserted() {
    let (app, t) = spawn_tenant("acme").await;
    // Dozens of projects: past the starter plan's max_projects.
    app.sql("update public.companies set plan = 'enterprise'")
        .await;
    let dates = [
        ("delta", Some("2025-03-01"), Some("2025-04-01")),
        ("alpha", None, None),
        ("echo", Some("2025-01-01"), None),
        ("bravo", Some("2025-03-01"), Some("2025-03-15")),
        ("charlie", None, Some("2025-05-01")),
        ("foxtrot", Some("2025-02-01"), Some("2025-02-01")),
        ("golf", Some("2025-01-01"), Some("2025-06-01")),
    ];
    let mut originals = Vec::new();
    for (name, start, end) in dates {
        originals.push(
            app.create_project(
                &t.host,
                &t.token,
                json!({"name": name, "start_date": start, "end_date": end}),
            )
            .await,
        );
    }
    // One change, so updated_at differs from created_at's order.
    let r = app
        .call(
            Method::PATCH,
            &t.host,
            &format!("/api/v1/projects/{}", originals[0]),
            Some(json!({"description": "x"})),
            &t.token,
        )
        .await;
    assert_eq!(r.status(), 200);
    let mut inserted = 0;
    for column in ["created_at", "name", "start_date", "end_date", "updated_at"] {
        for dir in ["", "-"] {
            let ordering = format!("{dir}{column}");
            let sql_dir = if dir.is_empty() { "asc" } else { "desc" };
            // The order of the rows as they are now, straight from the database.
            let want: Vec<String> = app
                .sql_col_with::<uuid::Uuid>(
                    &format!(
                        "select id from tenant_acme.projects where id = any($1::uuid[]) \
                              order by {column} {sql_dir} nulls last, id {sql_dir}"
                    ),
                    &[&originals
                        .iter()
                        .map(|o| o.parse::<uuid::Uuid>().unwrap())
                        .collect::<Vec<_>>()],
                )
                .await
                .into_iter()
                .map(|u| u.to_string())
                .collect();
            let mut seen: Vec<String> = Vec::new();
            let mut path = format!("/api/v1/projects?limit=2&ordering={ordering}");
            loop {
                let page = app.get_json(&t, &path, 200).await;
                seen.extend(column_of(&page, "id"));
                // A row inserted between pages never makes a page repeat or skip an old row.
                inserted += 1;
                app.create_project(
                    &t.host,
                    &t.token,
                    json!({"name": format!("new {inserted}"), "start_date": "2025-03-01"}),
                )
                .await;
                match page["next"].as_str() {
                    Some(next) => path = next.split_once(&t.host).unwrap().1.to_owned(),
                    None => break,
                }
            }
            let unique: HashSet<_> = seen.iter().collect();
            assert_eq!(unique.len(), seen.len(), "{ordering}: a row twice");
            let old: Vec<String> = seen
                .into_iter()
                .filter(|id| originals.contains(id))
                .collect();
            assert_eq!(old, want, "{ordering}");
        }
    }
    // The default is newest first.
    let r = app.get_as(&t, "/api/v1/projects?limit=1").await;
    assert_eq!(
        column_of(&expect_json(r, 200).await, "name"),
        [format!("new {inserted}")]
    );
}

fn column_of(page: &Value, field: &str) -> Vec<String> {
    column(page, field)
}

#[tokio::test]
async fn projects_concurrent_creates_at_the_plan_limit_exactly_one_wins() {
    let (app, t) = spawn_tenant("acme").await;
    // The free plan allows 3 projects (and 5 members).
    app.sql("update public.companies set plan = 'free'").await;
    for i in 0..2 {
        app.create_project(&t.host, &t.token, json!({"name": format!("p{i}")}))
            .await;
    }
    let mut racers = Vec::new();
    for i in 0..8 {
        let (http, base, host, token) = (
            app.http.clone(),
            app.address.clone(),
            t.host.clone(),
            t.token.clone(),
        );
        racers.push(tokio::spawn(async move {
            http.post(format!("{base}/api/v1/projects"))
                .header("Host", host)
                .bearer_auth(token)
                .json(&json!({"name": format!("racer {i}")}))
                .send()
                .await
                .unwrap()
        }));
    }
    let mut created = 0;
    for racer in racers {
        let r = racer.await.unwrap();
        if r.status() == 201 {
            created += 1;
        } else {
            let body = expect_problem(r, 403, "max_projects").await;
            assert!(
                body["type"].as_str().unwrap().ends_with("plan-limit"),
                "{body}"
            );
            assert!(
                body["detail"].as_str().unwrap().contains("at most 3"),
                "{body}"
            );
        }
    }
    assert_eq!(created, 1);
    assert_eq!(
        app.count("select count(*) from tenant_acme.projects").await,
        3
    );
    assert_eq!(app.audit_count("tenant_acme", "project.created").await, 3);

    // The members limit answers the same kind of problem.
    for i in 0..4 {
        app.member(&t, &format!("m{i}@acme.test"), "viewer").await;
    }
    let r = app
        .post_json(
            &t.host,
            "/api/v1/users",
            &json!({"email": "late@acme.test", "full_name": "Late", "role": "viewer", "password": "pw-f463622bff34"}),
            Some(&t.token),
        )
        .await;
    let body = expect_problem(r, 403, "at most 5 members").await;
    assert!(
        body["type"].as_str().unwrap().ends_with("plan-limit"),
        "{body}"
    );
}
