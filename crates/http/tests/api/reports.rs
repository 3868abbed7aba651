//! Project reports: `POST /projects/{id}/reports` (202, queued, audited), built by the worker's
//! function (`tenantry_tenant::reports::run`, what the queue and the sweep both call): status,
//! summary, CSV download and the requester's email; who may read a report; another tenant's
//! report; a failed build; the sweep for reports whose push was lost; expiry and the clean-up.

use crate::helpers::*;
use chrono::{Duration, Utc};
use reqwest::Method;
use serde_json::{json, Value};
use tenantry_public::CompanyId;
use tenantry_tenant::reports::{self, Built};
use tenantry_tenant::ReportId;

fn company(t: &TestTenant) -> CompanyId {
    CompanyId(t.company_id.parse().unwrap())
}

async fn request(app: &TestApp, t: &TestTenant, token: &str, project: &str) -> reqwest::Response {
    let path = format!("/api/v1/projects/{project}/reports");
    app.call(Method::POST, &t.host, &path, None, token).await
}

/// Asks for a report on `project` as `token`'s member; the 202 body.
async fn requested(app: &TestApp, t: &TestTenant, token: &str, project: &str) -> Value {
    let r = request(app, t, token, project).await;
    let location = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = expect_json(r, 202).await;
    assert_eq!(
        location.as_deref(),
        Some(format!("/api/v1/reports/{}", body["id"].as_str().unwrap()).as_str())
    );
    body
}

/// Builds report `id` now, as the worker does.
async fn build(app: &TestApp, t: &TestTenant, id: &str) -> Built {
    let id: ReportId = id.parse().unwrap();
    reports::run(&app.domain_db(), company(t), id, Utc::now())
        .await
        .expect("report job runs")
}

async fn report_emails(app: &TestApp) -> Vec<Value> {
    app.sql_col_with(
        "select payload from public.outbox where payload->>'kind' = 'report_ready' order by id",
        &[],
    )
    .await
}

/// A project of the owner's with three tasks: one assigned to the owner and due, one done, one
/// whose title needs quoting and neutralising.
async fn project_with_tasks(app: &TestApp, t: &TestTenant) -> String {
    let project = app
        .create_project(&t.host, &t.token, json!({"name": "Launch"}))
        .await;
    let mut ids = Vec::new();
    for body in [
        json!({"project_id": project, "title": "Write, then post", "priority": "high",
               "assignee_id": t.owner_id, "due_at": "2026-07-01T10:00:00Z"}),
        json!({"project_id": project, "title": "Plan"}),
        json!({"project_id": project, "title": "=SUM(A1)", "priority": "low"}),
    ] {
        let r = app
            .call(Method::POST, &t.host, "/api/v1/tasks", Some(body), &t.token)
            .await;
        ids.push(expect_json(r, 201).await["id"].as_str().unwrap().to_owned());
    }
    let r = app
        .call(
            Method::POST,
            &t.host,
            &format!("/api/v1/tasks/{}/complete", ids[1]),
            None,
            &t.token,
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    project
}

#[tokio::test]
async fn reports_go_from_queued_to_done_with_summary_download_and_email() {
    let (app, t) = spawn_tenant("acme").await;
    let project = project_with_tasks(&app, &t).await;

    let body = requested(&app, &t, &t.token, &project).await;
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(body["status"], "queued");
    assert_eq!(body["project_id"], project.as_str());
    assert_eq!(body["requested_by"], t.owner_id.as_str());
    assert!(
        body["summary"].is_null() && body["download_url"].is_null(),
        "{body}"
    );
    let created =
        chrono::DateTime::parse_from_rfc3339(body["created_at"].as_str().unwrap()).unwrap();
    let expires =
        chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(expires - created, Duration::days(7));
    assert_eq!(app.audit_count("tenant_acme", "report.requested").await, 1);

    // Not built yet: queued, and no CSV.
    let path = format!("/api/v1/reports/{id}");
    assert_eq!(app.get_json(&t, &path, 200).await["status"], "queued");
    let download = format!("/api/v1/reports/{id}/download");
    let r = app.get_as(&t, &download).await;
    expect_problem(r, 409, "queued").await;

    let built = build(&app, &t, &id).await;
    assert!(matches!(built, Built::Done(Some(_))), "{built:?}");
    // Once: a second run (the queue and the sweep both reaching it) does nothing.
    assert_eq!(build(&app, &t, &id).await, Built::NotMine);

    let body = app.get_json(&t, &path, 200).await;
    assert_eq!(body["status"], "done");
    assert_eq!(body["download_url"], download.as_str());
    assert!(body["finished_at"].is_string(), "{body}");
    let summary = &body["summary"];
    assert_eq!(summary["project"]["name"], "Launch");
    assert_eq!(summary["task_count"], 3);
    assert_eq!(summary["tasks_by_status"]["todo"], 2);
    assert_eq!(summary["tasks_by_status"]["done"], 1);
    assert_eq!(summary["tasks_by_priority"]["high"], 1);
    assert_eq!(summary["open"], 2);
    assert_eq!(summary["team_size"], 1);

    let r = app.get_as(&t, &download).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "text/csv; charset=utf-8"
    );
    let disposition = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        disposition.starts_with("attachment") && disposition.contains(&format!("report-{id}.csv")),
        "{disposition}"
    );
    let csv = r.text().await.unwrap();
    let lines: Vec<&str> = csv.split("\r\n").collect();
    assert_eq!(
        lines[0],
        "title,status,priority,assignee_email,due_at,completed_at"
    );
    assert_eq!(
        lines[1],
        format!(
            "\"Write, then post\",todo,high,{},2026-07-01T10:00:00Z,",
            t.owner_email
        )
    );
    assert!(lines[2].starts_with("Plan,done,medium,,,20"), "{csv}");
    assert_eq!(lines[3], "\"'=SUM(A1)\",todo,low,,,");
    assert_eq!(lines[4], "");
    assert_eq!(lines.len(), 5, "{csv}");

    // One email to the requester, linking the report on the tenant's host.
    let emails = report_emails(&app).await;
    assert_eq!(emails.len(), 1, "{emails:?}");
    assert_eq!(emails[0]["to"], t.owner_email.as_str());
    assert_eq!(emails[0]["project"], "Launch");
    assert_eq!(
        emails[0]["link"],
        format!("http://acme.{BASE}/reports/{id}").as_str()
    );
}

#[tokio::test]
async fn a_report_is_read_by_its_requester_and_admins_only() {
    let (app, t) = spawn_tenant("acme").await;
    let viewer = app.member(&t, "vera@acme.test", "viewer").await;
    let member = app.member(&t, "mel@acme.test", "member").await;
    let admin = app.member(&t, "adam@acme.test", "admin").await;
    let project = app
        .create_project(&t.host, &t.token, json!({"name": "Launch"}))
        .await;
    // Anyone who may read the project may ask: viewers too.
    let body = requested(&app, &t, &viewer, &project).await;
    let id = body["id"].as_str().unwrap();
    assert!(matches!(build(&app, &t, id).await, Built::Done(Some(_))));
    for (token, status) in [
        (&viewer, 200),
        (&admin, 200),
        (&t.token, 200),
        (&member, 404),
    ] {
        for path in [
            format!("/api/v1/reports/{id}"),
            format!("/api/v1/reports/{id}/download"),
        ] {
            let r = app.call(Method::GET, &t.host, &path, None, token).await;
            assert_eq!(r.status(), status, "{path}");
        }
    }
    // An unknown project, an unknown report.
    let unknown = uuid::Uuid::now_v7();
    let r = request(&app, &t, &t.token, &unknown.to_string()).await;
    expect_problem(r, 404, "").await;
    let r = app.get_as(&t, &format!("/api/v1/reports/{unknown}")).await;
    expect_problem(r, 404, "").await;
    assert_eq!(app.audit_count("tenant_acme", "report.requested").await, 1);
}

#[tokio::test]
async fn another_tenants_report_is_404_and_untouched() {
    let (app, acme) = spawn_tenant("acme").await;
    let globex = app.tenant("globex").await;
    let project = app
        .create_project(&acme.host, &acme.token, json!({"name": "Launch"}))
        .await;
    let id = requested(&app, &acme, &acme.token, &project).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(matches!(build(&app, &acme, &id).await, Built::Done(_)));
    for path in [
        format!("/api/v1/reports/{id}"),
        format!("/api/v1/reports/{id}/download"),
    ] {
        let r = app.get_as(&globex, &path).await;
        expect_problem(r, 404, "").await;
    }
    // Nor can globex ask for a report on acme's project.
    let r = request(&app, &globex, &globex.token, &project).await;
    expect_problem(r, 404, "").await;
    // Globex's company id with acme's report id builds nothing.
    let report: ReportId = id.parse().unwrap();
    let ran = reports::run(&app.domain_db(), company(&globex), report, Utc::now())
        .await
        .unwrap();
    assert_eq!(ran, Built::NotMine);
    assert_eq!(
        app.count("select count(*) from tenant_globex.reports")
            .await,
        0
    );
}

#[tokio::test]
async fn a_report_whose_builds_keep_dying_fails() {
    let (app, t) = spawn_tenant("acme").await;
    let project = app
        .create_project(&t.host, &t.token, json!({"name": "Launch"}))
        .await;
    let id = requested(&app, &t, &t.token, &project).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Three workers started it and died (each left it running).
    app.sql_with(
        "update tenant_acme.reports set status = 'running', attempts = 3, \
                started_at = now() - interval '1 hour' where id = $1::text::uuid",
        &[&id],
    )
    .await;
    let built = build(&app, &t, &id).await;
    assert!(
        matches!(&built, Built::Failed(reason) if reason.contains("3 attempts")),
        "{built:?}"
    );
    let body = app
        .get_json(&t, &format!("/api/v1/reports/{id}"), 200)
        .await;
    assert_eq!(body["status"], "failed");
    assert!(
        body["error"].as_str().unwrap().contains("attempts"),
        "{body}"
    );
    assert!(body["summary"].is_null() && body["download_url"].is_null());
    let r = app
        .get_as(&t, &format!("/api/v1/reports/{id}/download"))
        .await;
    expect_problem(r, 409, "failed").await;
    assert!(report_emails(&app).await.is_empty());
}

#[tokio::test]
async fn the_sweep_builds_reports_left_queued_or_running() {
    let (app, t) = spawn_tenant("acme").await;
    let project = app
        .create_project(&t.host, &t.token, json!({"name": "Launch"}))
        .await;
    let queued = requested(&app, &t, &t.token, &project).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let running = requested(&app, &t, &t.token, &project).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A worker took the second one and died five minutes ago: not stale yet.
    app.sql_with(
        "update tenant_acme.reports set status = 'running', attempts = 1, \
                started_at = now() - interval '5 minutes' where id = $1::text::uuid",
        &[&running],
    )
    .await;
    let db = app.domain_db();
    // Just asked for: the queue's business, not the sweep's.
    assert!(reports::sweep(&db, Utc::now()).await.unwrap().is_empty());
    // Two minutes on, the queued one is the sweep's; twenty, the dead worker's too.
    let found = reports::sweep(&db, Utc::now() + Duration::minutes(2))
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].report_id.to_string(), queued);
    assert_eq!(found[0].company_id, company(&t));
    let later = Utc::now() + Duration::minutes(20);
    assert_eq!(
        tenantry_worker::reports::sweep(&db, None, later)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        app.count("select count(*) from tenant_acme.reports where status = 'done'")
            .await,
        2
    );
    assert_eq!(report_emails(&app).await.len(), 2);
    assert!(reports::sweep(&db, later).await.unwrap().is_empty());
}

#[tokio::test]
async fn expired_reports_are_gone_then_deleted_by_the_weekly_clean_up() {
    let (app, t) = spawn_tenant("acme").await;
    let project = app
        .create_project(&t.host, &t.token, json!({"name": "Launch"}))
        .await;
    let old = requested(&app, &t, &t.token, &project).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let fresh = requested(&app, &t, &t.token, &project).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(matches!(build(&app, &t, &old).await, Built::Done(_)));
    app.sql_with(
        "update tenant_acme.reports set created_at = now() - interval '8 days', \
                expires_at = now() - interval '1 day' where id = $1::text::uuid",
        &[&old],
    )
    .await;
    for path in [
        format!("/api/v1/reports/{old}"),
        format!("/api/v1/reports/{old}/download"),
    ] {
        let r = app.get_as(&t, &path).await;
        expect_problem(r, 410, "expired").await;
    }
    // The sweep finds the fresh one only (the expired one is done and past its time).
    let later = Utc::now() + Duration::minutes(2);
    let swept = reports::sweep(&app.domain_db(), later).await.unwrap();
    assert_eq!(swept.len(), 1, "only the fresh one: {swept:?}");

    let now = Utc::now();
    let week = tenantry_public::jobs::iso_week(now);
    let ran = tenantry_tenant::jobs::run_for_tenant(
        &app.domain_db(),
        &tenantry_tenant::jobs::TenantCleanup,
        company(&t),
        &week,
        now,
    )
    .await
    .unwrap();
    assert!(
        matches!(&ran, tenantry_tenant::jobs::TenantRun::Done(_, o) if o.reports == 1),
        "{ran:?}"
    );
    let r = app.get_as(&t, &format!("/api/v1/reports/{old}")).await;
    expect_problem(r, 404, "").await;
    assert_eq!(
        app.get_json(&t, &format!("/api/v1/reports/{fresh}"), 200)
            .await["status"],
        "queued"
    );
}
