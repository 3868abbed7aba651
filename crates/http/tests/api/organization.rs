//! The organization as a whole: `GET /organization` for every member and key, `PATCH
//! /organization {name}` for owners and admins (validated, audited), and `DELETE /organization`
//! (owner, with password): suspended at once, the owner emailed, restored by an operator within
//! the grace period.

use crate::helpers::*;
use chrono::{DateTime, Duration, Utc};
use reqwest::Method;
use serde_json::{json, Value};
use tenantry_public::{Origin, Slug};
use tenantry_tenant::organization::{self, DeletionError};

const PATH: &str = "/api/v1/organization";

async fn send(
    app: &TestApp,
    t: &TestTenant,
    method: Method,
    token: &str,
    body: Value,
) -> reqwest::Response {
    app.call(method, &t.host, PATH, Some(body), token).await
}

#[tokio::test]
async fn every_member_and_key_reads_the_organization() {
    let (app, t) = spawn_tenant("acme").await;
    // A second domain, not primary: listed after the primary one.
    app.sql_with(
        "insert into public.domains (domain, company_id) values ('a.acme.test', $1::text::uuid)",
        &[&t.company_id],
    )
    .await;
    let admin = app.member(&t, "ann@acme.test", "admin").await;
    let member = app.member(&t, "bob@acme.test", "member").await;
    let viewer = app.member(&t, "vic@acme.test", "viewer").await;
    let status: String = app
        .sql_one_with(
            "select status from public.subscriptions where company_id = $1::text::uuid",
            &[&t.company_id],
        )
        .await;
    let created: DateTime<Utc> = app
        .sql_one_with(
            "select created_at from public.companies where id = $1::text::uuid",
            &[&t.company_id],
        )
        .await;
    for token in [&t.token, &admin, &member, &viewer] {
        let b = expect_json(app.get(&t.host, PATH, Some(token)).await, 200).await;
        assert_eq!(b["name"], "acme Inc", "{b}");
        assert_eq!(b["slug"], "acme");
        assert_eq!(b["plan"], "starter");
        assert_eq!(b["subscription_status"], status.as_str());
        assert_eq!(
            b["domains"],
            json!([
                {"domain": format!("acme.{BASE}"), "is_primary": true},
                {"domain": "a.acme.test", "is_primary": false},
            ])
        );
        assert_eq!(
            b["settings"],
            json!({"timezone": "UTC", "reminder_lead_hours": 24,
                   "completed_task_retention_days": null})
        );
        let at: DateTime<Utc> = b["created_at"].as_str().unwrap().parse().unwrap();
        assert_eq!(at, created);
        let keys: Vec<&String> = b.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "created_at",
                "domains",
                "name",
                "plan",
                "settings",
                "slug",
                "subscription_status"
            ]
        );
    }
    // A key reads it too, like content; another tenant's token does not.
    let key = app.create_key(&t.host, &t.token, "viewer").await;
    let r = app
        .with_key(Method::GET, &t.host, PATH, key["key"].as_str().unwrap())
        .await;
    assert_eq!(expect_json(r, 200).await["slug"], "acme");
    let g = app.tenant("globex").await;
    assert_eq!(app.status_of(&t.host, PATH, &g.token).await, 403);
}

#[tokio::test]
async fn renaming_is_validated_for_owners_and_admins_and_audited() {
    let (app, t) = spawn_tenant("acme").await;
    let admin = app.member(&t, "ann@acme.test", "admin").await;
    let member = app.member(&t, "bob@acme.test", "member").await;
    for body in [
        json!({}),
        json!({"name": null}),
        json!({"name": ""}),
        json!({"name": "   "}),
        json!({"name": "a".repeat(201)}),
        json!({"name": "Acme\u{7}"}),
    ] {
        expect_field_errors(
            send(&app, &t, Method::PATCH, &t.token, body.clone()).await,
            422,
            &["name"],
        )
        .await;
    }
    expect_problem(
        send(&app, &t, Method::PATCH, &member, json!({"name": "Mine"})).await,
        403,
        "organization.settings",
    )
    .await;
    let key = app.create_key(&t.host, &t.token, "admin").await;
    let r = app
        .request(Method::PATCH, &t.host, PATH)
        .header("X-API-Key", key["key"].as_str().unwrap())
        .json(&json!({"name": "Keyed"}))
        .send()
        .await
        .unwrap();
    expect_problem(r, 403, "API keys").await;
    assert_eq!(
        app.audit_count("tenant_acme", "organization.renamed").await,
        0
    );

    // Trimmed; 200 characters is the longest name.
    let b = expect_json(
        send(&app, &t, Method::PATCH, &admin, json!({"name": "  Acme  "})).await,
        200,
    )
    .await;
    assert_eq!(b["name"], "Acme");
    let long = "é".repeat(200);
    let b = expect_json(
        send(&app, &t, Method::PATCH, &admin, json!({"name": long})).await,
        200,
    )
    .await;
    assert_eq!(b["name"], long.as_str());
    let b = expect_json(
        send(
            &app,
            &t,
            Method::PATCH,
            &admin,
            json!({"name": "Acme Corporation"}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(b["name"], "Acme Corporation");
    assert_eq!(b["slug"], "acme");
    assert!(b["settings"].is_object() && b["domains"].is_array(), "{b}");
    let stored: String = app
        .sql_one_with(
            "select name from public.companies where id = $1::text::uuid",
            &[&t.company_id],
        )
        .await;
    assert_eq!(stored, "Acme Corporation");
    assert_eq!(
        app.audit_count("tenant_acme", "organization.renamed").await,
        3
    );
    let row = app
        .sql_row_with(
            "select before, after, target_type, target_id, actor_user_id::text \
               from tenant_acme.audit_log where action = 'organization.renamed' \
              order by id desc limit 1",
            &[],
        )
        .await;
    assert_eq!(row.get::<_, Value>(0), json!({"name": long}));
    assert_eq!(row.get::<_, Value>(1), json!({"name": "Acme Corporation"}));
    assert_eq!(row.get::<_, String>(2), "organization");
    assert_eq!(row.get::<_, String>(3), t.company_id);
    assert_eq!(row.get::<_, String>(4), app.user_id("ann@acme.test").await);
    // The same name again changes nothing and records nothing.
    let b = expect_json(
        send(
            &app,
            &t,
            Method::PATCH,
            &t.token,
            json!({"name": "Acme Corporation"}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(b["name"], "Acme Corporation");
    assert_eq!(
        app.audit_count("tenant_acme", "organization.renamed").await,
        3
    );
}

async fn company_state(
    app: &TestApp,
    company: &str,
) -> (String, Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let row = app
        .sql_row_with(
            "select status, deletion_requested_at, drop_after from public.companies \
              where id = $1::text::uuid",
            &[&company],
        )
        .await;
    (row.get(0), row.get(1), row.get(2))
}

#[tokio::test]
async fn only_the_owner_deletes_and_only_with_the_password() {
    let (app, t) = spawn_tenant("acme").await;
    let admin = app.member(&t, "ann@acme.test", "admin").await;
    let member = app.member(&t, "bob@acme.test", "member").await;
    let right = json!({"password": "password-of-acme"});
    expect_problem(
        send(
            &app,
            &t,
            Method::DELETE,
            &admin,
            json!({"password": MEMBER_PASSWORD}),
        )
        .await,
        403,
        "organization.delete",
    )
    .await;
    expect_problem(
        send(&app, &t, Method::DELETE, &member, right.clone()).await,
        403,
        "organization.delete",
    )
    .await;
    expect_problem(
        send(
            &app,
            &t,
            Method::DELETE,
            &t.token,
            json!({"password": "not-the-password"}),
        )
        .await,
        403,
        "wrong password",
    )
    .await;
    expect_field_errors(
        send(&app, &t, Method::DELETE, &t.token, json!({})).await,
        422,
        &["password"],
    )
    .await;
    expect_field_errors(
        send(
            &app,
            &t,
            Method::DELETE,
            &t.token,
            json!({"password": null}),
        )
        .await,
        422,
        &["password"],
    )
    .await;
    let key = app.create_key(&t.host, &t.token, "admin").await;
    let r = app
        .request(Method::DELETE, &t.host, PATH)
        .header("X-API-Key", key["key"].as_str().unwrap())
        .json(&right)
        .send()
        .await
        .unwrap();
    expect_problem(r, 403, "API keys").await;
    // An owner demoted by a transfer whose token still says owner is refused under the lock.
    app.verify_email("ann@acme.test").await;
    let ann = app.user_id("ann@acme.test").await;
    let r = app
        .call(
            Method::POST,
            &t.host,
            "/api/v1/organization/transfer-ownership",
            Some(json!({"user_id": ann, "password": "password-of-acme"})),
            &t.token,
        )
        .await;
    assert_eq!(r.status(), 200);
    expect_problem(
        send(&app, &t, Method::DELETE, &t.token, right).await,
        403,
        "only the owner",
    )
    .await;

    assert_eq!(
        company_state(&app, &t.company_id).await,
        ("active".to_owned(), None, None)
    );
    assert_eq!(
        app.audit_count("tenant_acme", "organization.deletion_requested")
            .await,
        0
    );
    assert_eq!(
        app.count(
            "select count(*) from public.outbox where payload->>'kind' = 'organization_deleted'"
        )
        .await,
        0
    );
    assert_eq!(app.status_of(&t.host, PATH, &member).await, 200);
}

#[tokio::test]
async fn a_deleted_organization_is_refused_at_once_and_restored_within_its_grace() {
    let (app, t) = spawn_tenant("acme").await;
    let g = app.tenant("globex").await;
    let member = app.member(&t, "bob@acme.test", "member").await;
    let key = app.create_key(&t.host, &t.token, "viewer").await;
    let key = key["key"].as_str().unwrap().to_owned();
    // Warm the routing cache: the deletion must evict it, not wait for its TTL.
    assert_eq!(app.status_of(&t.host, PATH, &t.token).await, 200);
    let before = Utc::now();
    let r = app
        .call(
            Method::DELETE,
            &t.host,
            PATH,
            Some(json!({"password": "password-of-acme"})),
            &t.token,
        )
        .await;
    let b = expect_json(r, 202).await;
    let after = Utc::now();
    assert_eq!(b["status"], "suspended");
    let requested: DateTime<Utc> = b["deletion_requested_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let drop_after: DateTime<Utc> = b["drop_after"].as_str().unwrap().parse().unwrap();
    assert!(before <= requested && requested <= after, "{b}");
    assert_eq!(drop_after - requested, Duration::days(30));

    // The very next request on the host, with the same token, is refused; so is every other
    // member and key. Another tenant is untouched.
    expect_problem(
        app.get(&t.host, PATH, Some(&t.token)).await,
        403,
        "suspended",
    )
    .await;
    assert_eq!(
        app.status_of(&t.host, "/api/v1/projects", &member).await,
        403
    );
    assert_eq!(
        app.with_key(Method::GET, &t.host, "/api/v1/projects", &key)
            .await
            .status(),
        403
    );
    assert_eq!(app.status_of(&g.host, PATH, &g.token).await, 200);
    assert_eq!(
        company_state(&app, &t.company_id).await,
        ("suspended".to_owned(), Some(requested), Some(drop_after))
    );
    let (b_before, b_after) = app
        .audit_change("tenant_acme", "organization.deletion_requested")
        .await;
    assert_eq!(
        b_before,
        json!({"status": "active", "deletion_requested_at": null, "drop_after": null})
    );
    assert_eq!(b_after["status"], "suspended");
    let email: Value = app
        .sql_one(
            "select payload from public.outbox where payload->>'kind' = 'organization_deleted'",
        )
        .await;
    assert_eq!(email["to"], t.owner_email.as_str());
    assert_eq!(email["organization"], "acme Inc");
    let mailed: DateTime<Utc> = email["drop_after"].as_str().unwrap().parse().unwrap();
    assert_eq!(mailed, drop_after);
    // A suspended company cannot be activated around its deletion mark (the CHECK holds).
    let client = app.db.get().await.unwrap();
    let refused = client
        .execute(
            "update public.companies set status = 'active' where slug = 'acme'",
            &[],
        )
        .await;
    assert!(refused.is_err());

    // An operator restores it within the grace period: it serves again, audited as the system.
    let db = app.domain_db();
    let slug = Slug::parse("acme").unwrap();
    let origin = Origin::command("tenantctl/test tenant restore");
    let restored = organization::restore(&db, &slug, &origin, Utc::now())
        .await
        .unwrap();
    assert!(restored.deletion.is_none());
    eventually("the restored host serves again", || async {
        app.status_of(&t.host, PATH, &t.token).await == 200
    })
    .await;
    assert_eq!(
        company_state(&app, &t.company_id).await,
        ("active".to_owned(), None, None)
    );
    let row = app
        .sql_row_with(
            "select actor_user_id is null and actor_api_key_id is null, user_agent, after \
               from tenant_acme.audit_log where action = 'organization.restored'",
            &[],
        )
        .await;
    assert!(row.get::<_, bool>(0));
    assert_eq!(row.get::<_, String>(1), "tenantctl/test tenant restore");
    assert_eq!(
        row.get::<_, Value>(2),
        json!({"status": "active", "deletion_requested_at": null, "drop_after": null})
    );
    assert_eq!(
        app.count(
            "select count(*) from public.outbox where payload->>'kind' = 'organization_restored'"
        )
        .await,
        1
    );
    // Not pending any more: a second restore is refused, as is an unknown slug.
    let again = organization::restore(&db, &slug, &origin, Utc::now()).await;
    assert!(
        matches!(again, Err(DeletionError::NotPending(..))),
        "{again:?}"
    );
    let unknown = Slug::parse("nobody").unwrap();
    let none = organization::restore(&db, &unknown, &origin, Utc::now()).await;
    assert!(
        matches!(none, Err(DeletionError::NoSuchTenant(_))),
        "{none:?}"
    );

    // Deleted again, and the grace period over: no restore any more.
    let r = app
        .call(
            Method::DELETE,
            &t.host,
            PATH,
            Some(json!({"password": "password-of-acme"})),
            &t.token,
        )
        .await;
    let drop_after: DateTime<Utc> = expect_json(r, 202).await["drop_after"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let late = organization::restore(&db, &slug, &origin, drop_after).await;
    assert!(
        matches!(late, Err(DeletionError::GraceOver(..))),
        "{late:?}"
    );
    assert_eq!(company_state(&app, &t.company_id).await.0, "suspended");
}

/// Two deletions at once: one wins; the other is refused (409 under the row lock, or 403 when
/// the host was already suspended as it arrived), and the trail and the outbox have one of each.
#[tokio::test]
async fn concurrent_deletions_delete_once() {
    let (app, t) = spawn_tenant("acme").await;
    let body = json!({"password": "password-of-acme"});
    let (a, b) = tokio::join!(
        send(&app, &t, Method::DELETE, &t.token, body.clone()),
        send(&app, &t, Method::DELETE, &t.token, body),
    );
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses[0], 202, "{statuses:?}");
    assert!([403, 409].contains(&statuses[1]), "{statuses:?}");
    assert_eq!(
        app.audit_count("tenant_acme", "organization.deletion_requested")
            .await,
        1
    );
    assert_eq!(
        app.count(
            "select count(*) from public.outbox where payload->>'kind' = 'organization_deleted'"
        )
        .await,
        1
    );
}
