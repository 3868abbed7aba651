//! `GET /tasks/export` and `GET /projects/export`: CSV negotiation, headers, RFC 4180 quoting,
//! formula neutralisation, the list's filters and ordering, audit, viewers, isolation.

use crate::helpers::*;
use reqwest::Method;
use serde_json::json;

/// Parses RFC 4180 CSV (quoted cells with doubled quotes and line breaks) into records.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut cell)),
            (false, '\r') if chars.peek() == Some(&'\n') => {
                chars.next();
                record.push(std::mem::take(&mut cell));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => cell.push(c),
        }
    }
    assert!(
        cell.is_empty() && record.is_empty(),
        "the last record ends in CRLF"
    );
    records
}

async fn export(app: &TestApp, t: &TestTenant, token: &str, path: &str) -> reqwest::Response {
    app.request(Method::GET, &t.host, path)
        .bearer_auth(token)
        .header("Accept", "text/csv")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn tasks_export_streams_quoted_neutralised_csv_with_the_lists_filters() {
    let (app, t) = spawn_tenant("acme").await;
    let p = app.project(&t, "P").await;
    for (title, status, description) in [
        ("=HYPERLINK(\"http://evil\")", "todo", "plain"),
        ("a, b and \"c\"", "done", "two\nlines"),
        ("+1", "todo", "@SUM(A1)"),
        ("-2", "in_progress", "\tindented"),
        ("zulu", "todo", ""),
    ] {
        let r = app
            .call(
                Method::POST,
                &t.host,
                "/api/v1/tasks",
                Some(json!({"project_id": p, "title": title, "status": status,
                            "description": description, "tags": ["x", "y"],
                            "assignee_id": t.owner_id})),
                &t.token,
            )
            .await;
        expect_json(r, 201).await;
    }
    let r = export(&app, &t, &t.token, "/api/v1/tasks/export?ordering=title").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert_eq!(
        r.headers()["content-disposition"],
        format!("attachment; filename=\"tasks-{today}.csv\"").as_str()
    );
    let body = r.text().await.unwrap();
    let records = parse_csv(&body);
    assert_eq!(
        records[0],
        [
            "id",
            "project_id",
            "title",
            "description",
            "status",
            "priority",
            "assignee_id",
            "assignee_email",
            "created_by",
            "due_at",
            "completed_at",
            "tags",
            "position",
            "created_at",
            "updated_at"
        ]
    );
    assert_eq!(records.len(), 6);
    let titles: Vec<&str> = records[1..].iter().map(|r| r[2].as_str()).collect();
    // Ordered by title as the database sorts them; formula-like cells carry a leading `'`.
    assert_eq!(
        titles,
        [
            "'+1",
            "'-2",
            "'=HYPERLINK(\"http://evil\")",
            "a, b and \"c\"",
            "zulu"
        ]
    );
    let row = |title: &str| records.iter().find(|r| r[2] == title).unwrap().clone();
    assert_eq!(row("'+1")[3], "'@SUM(A1)");
    assert_eq!(row("'-2")[3], "'\tindented");
    assert_eq!(row("a, b and \"c\"")[3], "two\nlines");
    assert_eq!(row("zulu")[7], t.owner_email);
    assert_eq!(row("zulu")[11], "x, y");
    assert!(!row("a, b and \"c\"")[10].is_empty(), "done: completed_at");
    // The raw text: quotes doubled, quoted cells, CRLF line ends.
    assert!(
        body.contains("\"'=HYPERLINK(\"\"http://evil\"\")\""),
        "{body}"
    );
    assert!(body.ends_with("\r\n"));

    // The list's filters apply; format=csv needs no Accept.
    let r = app
        .get_as(&t, "/api/v1/tasks/export?format=csv&status=done")
        .await;
    assert_eq!(r.status(), 200);
    let records = parse_csv(&r.text().await.unwrap());
    assert_eq!(records.len(), 2);
    assert_eq!(records[1][4], "done");

    // Viewers may export; each export is audited with its filters.
    let viewer = app.member(&t, "viewer@acme.test", "viewer").await;
    let r = export(&app, &t, &viewer, "/api/v1/tasks/export").await;
    assert_eq!(r.status(), 200);
    assert_eq!(parse_csv(&r.text().await.unwrap()).len(), 6);
    assert_eq!(app.audit_count("tenant_acme", "task.exported").await, 3);
    let filters: Vec<serde_json::Value> = app
        .sql_col_with(
            "select after from tenant_acme.audit_log where action = 'task.exported' order by id",
            &[],
        )
        .await;
    assert_eq!(filters[0], json!({"ordering": "title"}));
    assert_eq!(
        filters[1],
        json!({"ordering": "-created_at", "status": "done"})
    );

    // Bad requests: nothing audited.
    let r = app.get_as(&t, "/api/v1/tasks/export?format=xlsx").await;
    expect_problem(r, 400, "format").await;
    let r = app.get_as(&t, "/api/v1/tasks/export?status=open").await;
    expect_problem(r, 400, "status").await;
    let r = app
        .request(Method::GET, &t.host, "/api/v1/tasks/export")
        .bearer_auth(&t.token)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    problem(r, 406).await;
    assert_eq!(app.audit_count("tenant_acme", "task.exported").await, 3);

    // Another tenant's export holds none of acme's tasks.
    let other = app.tenant("globex").await;
    let r = export(&app, &other, &other.token, "/api/v1/tasks/export").await;
    assert_eq!(parse_csv(&r.text().await.unwrap()).len(), 1);
}

#[tokio::test]
async fn projects_export_streams_the_filtered_projects() {
    let (app, t) = spawn_tenant("acme").await;
    app.sql("update public.companies set plan = 'enterprise'")
        .await;
    for (name, status) in [
        ("@launch", "active"),
        ("Beta, the sequel", "planned"),
        ("Gamma", "active"),
    ] {
        app.create_project(
            &t.host,
            &t.token,
            json!({"name": name, "status": status, "start_date": "2026-01-02"}),
        )
        .await;
    }
    let r = export(
        &app,
        &t,
        &t.token,
        "/api/v1/projects/export?status=active&ordering=name",
    )
    .await;
    assert_eq!(r.status(), 200);
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert_eq!(
        r.headers()["content-disposition"],
        format!("attachment; filename=\"projects-{today}.csv\"").as_str()
    );
    let records = parse_csv(&r.text().await.unwrap());
    assert_eq!(records[0][..4], ["id", "name", "description", "status"]);
    let names: Vec<&str> = records[1..].iter().map(|r| r[1].as_str()).collect();
    assert_eq!(names, ["'@launch", "Gamma"]);
    assert_eq!(records[1][4], "2026-01-02");
    assert_eq!(records[1][7], t.owner_email);
    let r = export(&app, &t, &t.token, "/api/v1/projects/export").await;
    let records = parse_csv(&r.text().await.unwrap());
    assert_eq!(records.len(), 4);
    assert!(records.iter().any(|r| r[1] == "Beta, the sequel"));
    assert_eq!(app.audit_count("tenant_acme", "project.exported").await, 2);
    let r = app
        .get_as(&t, "/api/v1/projects/export?ordering=size")
        .await;
    expect_problem(r, 400, "ordering").await;
}
