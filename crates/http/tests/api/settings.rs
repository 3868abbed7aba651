//! `/api/v1/organization/settings`: defaults, changes (absent, null, integral floats), every
//! invalid value refused naming its field with nothing changed, owners and admins only, the
//! audit entry, and another organization left alone.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};

const PATH: &str = "/api/v1/organization/settings";

async fn read(app: &TestApp, t: &TestTenant, token: &str) -> Value {
    expect_json(app.get(&t.host, PATH, Some(token)).await, 200).await
}

async fn patch(app: &TestApp, t: &TestTenant, token: &str, body: Value) -> reqwest::Response {
    app.call(Method::PATCH, &t.host, PATH, Some(body), token)
        .await
}

fn defaults() -> Value {
    json!({"timezone": "UTC", "reminder_lead_hours": 24, "completed_task_retention_days": null})
}

#[tokio::test]
async fn settings_start_as_utc_24_hours_and_keep_forever() {
    let (app, t) = spawn_tenant("acme").await;
    assert_eq!(read(&app, &t, &t.token).await, defaults());
    let admin = app.member(&t, "admin@acme.test", "admin").await;
    assert_eq!(read(&app, &t, &admin).await, defaults());
    // The row was made with the company (a trigger), with the table's defaults.
    let stored: i64 = app
        .sql_one_with(
            "select count(*) from public.company_settings where company_id = $1::text::uuid",
            &[&t.company_id],
        )
        .await;
    assert_eq!(stored, 1);
}

#[tokio::test]
async fn settings_round_trip_absent_fields_stay_and_null_clears_the_retention() {
    let (app, t) = spawn_tenant("acme").await;
    let admin = app.member(&t, "admin@acme.test", "admin").await;
    // Integral floats are whole numbers (`48.0` is 48), as Schemathesis and some clients send.
    let body = json!({"timezone": "America/Argentina/Buenos_Aires", "reminder_lead_hours": 48.0,
                      "completed_task_retention_days": 30});
    let changed = expect_json(patch(&app, &t, &admin, body).await, 200).await;
    let want = json!({"timezone": "America/Argentina/Buenos_Aires", "reminder_lead_hours": 48,
                      "completed_task_retention_days": 30});
    assert_eq!(changed, want);
    assert_eq!(read(&app, &t, &t.token).await, want);

    let r = patch(&app, &t, &t.token, json!({"reminder_lead_hours": 1})).await;
    assert_eq!(
        expect_json(r, 200).await["timezone"],
        "America/Argentina/Buenos_Aires"
    );
    let r = patch(
        &app,
        &t,
        &t.token,
        json!({"completed_task_retention_days": null}),
    )
    .await;
    let cleared = expect_json(r, 200).await;
    assert_eq!(
        cleared,
        json!({"timezone": "America/Argentina/Buenos_Aires", "reminder_lead_hours": 1,
               "completed_task_retention_days": null})
    );
    // The bounds themselves are allowed.
    let r = patch(
        &app,
        &t,
        &t.token,
        json!({"timezone": "UTC", "reminder_lead_hours": 168, "completed_task_retention_days": 3650.0}),
    )
    .await;
    assert_eq!(
        expect_json(r, 200).await["completed_task_retention_days"],
        3650
    );
    let r = patch(
        &app,
        &t,
        &t.token,
        json!({"completed_task_retention_days": 7}),
    )
    .await;
    assert_eq!(
        expect_json(r, 200).await["completed_task_retention_days"],
        7
    );
    assert_eq!(
        app.audit_count("tenant_acme", "organization.settings_changed")
            .await,
        5
    );
    // Nothing to change: the same answer, and no entry.
    let same = expect_json(patch(&app, &t, &t.token, json!({})).await, 200).await;
    let again = expect_json(
        patch(&app, &t, &t.token, json!({"reminder_lead_hours": 168})).await,
        200,
    )
    .await;
    assert_eq!(same, again);
    assert_eq!(
        app.audit_count("tenant_acme", "organization.settings_changed")
            .await,
        5
    );
}

#[tokio::test]
async fn settings_changes_are_audited_with_before_and_after() {
    let (app, t) = spawn_tenant("acme").await;
    let body = json!({"timezone": "Europe/Berlin", "completed_task_retention_days": 90});
    assert_eq!(patch(&app, &t, &t.token, body).await.status(), 200);
    let (before, after) = app
        .audit_change("tenant_acme", "organization.settings_changed")
        .await;
    assert_eq!(before, defaults());
    assert_eq!(
        after,
        json!({"timezone": "Europe/Berlin", "reminder_lead_hours": 24,
               "completed_task_retention_days": 90})
    );
    let row = app
        .sql_row_with(
            "select target_type, target_id, actor_user_id::text from tenant_acme.audit_log \
              where action = 'organization.settings_changed'",
            &[],
        )
        .await;
    let (kind, id, actor): (String, String, String) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(
        (kind.as_str(), id.as_str(), actor.as_str()),
        ("organization", t.company_id.as_str(), t.owner_id.as_str())
    );
}

#[tokio::test]
async fn invalid_settings_are_422_naming_the_field_and_change_nothing() {
    let (app, t) = spawn_tenant("acme").await;
    let cases = [
        // Abbreviations, offsets, legacy aliases and unknown names are no IANA region names.
        (json!({"timezone": "CET"}), "timezone"),
        (json!({"timezone": "Etc/GMT+5"}), "timezone"),
        (json!({"timezone": "US/Eastern"}), "timezone"),
        (json!({"timezone": "+02:00"}), "timezone"),
        (json!({"timezone": "europe/berlin"}), "timezone"),
        (json!({"timezone": "Europe/Atlantis"}), "timezone"),
        (json!({"timezone": ""}), "timezone"),
        (json!({"timezone": null}), "timezone"),
        (json!({"reminder_lead_hours": 0}), "reminder_lead_hours"),
        (json!({"reminder_lead_hours": 169}), "reminder_lead_hours"),
        (json!({"reminder_lead_hours": -1}), "reminder_lead_hours"),
        (json!({"reminder_lead_hours": 24.5}), "reminder_lead_hours"),
        (json!({"reminder_lead_hours": null}), "reminder_lead_hours"),
        (json!({"reminder_lead_hours": 1e300}), "reminder_lead_hours"),
        (
            json!({"completed_task_retention_days": 6}),
            "completed_task_retention_days",
        ),
        (
            json!({"completed_task_retention_days": 3651}),
            "completed_task_retention_days",
        ),
        (
            json!({"completed_task_retention_days": 7.5}),
            "completed_task_retention_days",
        ),
    ];
    for (body, field) in cases {
        let r = patch(&app, &t, &t.token, body.clone()).await;
        let problem = expect_field_errors(r, 422, &[field]).await;
        assert_eq!(
            problem["errors"].as_object().map(|e| e.len()),
            Some(1),
            "{body}: only {field} named: {problem}"
        );
    }
    // Every bad field at once is named at once, and a good field beside them is not applied.
    let r = patch(
        &app,
        &t,
        &t.token,
        json!({"timezone": "Mars/Olympus_Mons", "reminder_lead_hours": 0,
               "completed_task_retention_days": 1}),
    )
    .await;
    let body = expect_field_errors(
        r,
        422,
        &["reminder_lead_hours", "completed_task_retention_days"],
    )
    .await;
    assert_field_errors(&body, &["timezone"]);
    let r = patch(
        &app,
        &t,
        &t.token,
        json!({"timezone": "Europe/Berlin", "reminder_lead_hours": 0}),
    )
    .await;
    expect_field_errors(r, 422, &["reminder_lead_hours"]).await;
    let r = patch(
        &app,
        &t,
        &t.token,
        json!({"timezone": "Europe/Atlantis", "reminder_lead_hours": 12}),
    )
    .await;
    expect_field_error(r, "timezone", "not a time zone this server knows").await;
    // A value of the wrong type is a 400, like everywhere.
    let r = patch(&app, &t, &t.token, json!({"reminder_lead_hours": "24"})).await;
    problem(r, 400).await;

    assert_eq!(read(&app, &t, &t.token).await, defaults());
    assert_eq!(
        app.audit_count("tenant_acme", "organization.settings_changed")
            .await,
        0
    );
}

#[tokio::test]
async fn settings_are_for_owners_and_admins_only_never_api_keys() {
    let (app, t) = spawn_tenant("acme").await;
    let member = app.member(&t, "member@acme.test", "member").await;
    let viewer = app.member(&t, "viewer@acme.test", "viewer").await;
    for token in [&member, &viewer] {
        expect_problem(app.get(&t.host, PATH, Some(token)).await, 403, "").await;
        let r = patch(&app, &t, token, json!({"reminder_lead_hours": 2})).await;
        expect_problem(r, 403, "").await;
    }
    let key = app.create_key(&t.host, &t.token, "admin").await;
    let key = key["key"].as_str().unwrap();
    problem(app.with_key(Method::GET, &t.host, PATH, key).await, 403).await;
    let r = app
        .request(Method::PATCH, &t.host, PATH)
        .header("X-API-Key", key)
        .json(&json!({"reminder_lead_hours": 2}))
        .send()
        .await
        .unwrap();
    problem(r, 403).await;
    assert_eq!(read(&app, &t, &t.token).await, defaults());
}

#[tokio::test]
async fn settings_of_one_organization_leave_another_untouched() {
    let (app, acme) = spawn_tenant("acme").await;
    let globex = app.tenant("globex").await;
    let body = json!({"timezone": "Asia/Tokyo", "reminder_lead_hours": 6,
                      "completed_task_retention_days": 14});
    assert_eq!(patch(&app, &acme, &acme.token, body).await.status(), 200);
    assert_eq!(read(&app, &globex, &globex.token).await, defaults());
    // Acme's token on globex's host reaches nothing there.
    let r = patch(
        &app,
        &globex,
        &acme.token,
        json!({"reminder_lead_hours": 2}),
    )
    .await;
    problem(r, 403).await;
    assert_eq!(read(&app, &globex, &globex.token).await, defaults());
    assert_eq!(
        read(&app, &acme, &acme.token).await["timezone"],
        "Asia/Tokyo"
    );
    assert_eq!(
        app.audit_count("tenant_globex", "organization.settings_changed")
            .await,
        0
    );
}
