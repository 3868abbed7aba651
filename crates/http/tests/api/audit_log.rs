//! `GET /api/v1/audit-log`: what the API writes shows up, with filters and keyset pages, for
//! admins and owners only, and never another tenant's entries.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};

async fn page(app: &TestApp, t: &TestTenant, query: &str) -> Value {
    let path = format!("/api/v1/audit-log{query}");
    app.get_json(t, &path, 200).await
}

fn actions(page: &Value) -> Vec<String> {
    column(page, "action")
}

/// Does, through the API, one of each audited kind of thing; returns the admin's user id.
async fn busy_day(app: &TestApp, t: &TestTenant) -> String {
    let slug = &t.slug;
    // A failed and a successful login.
    let r = app.login(&t.host, &t.owner_email, "pw-4f650865b537").await;
    problem(r, 401).await;
    app.token(&t.host, &t.owner_email, &format!("password-of-{slug}"))
        .await;
    // A member added, then made admin.
    let r = app
        .post_json(
            &t.host,
            "/api/v1/users",
            &json!({"email": format!("ann@{slug}.test"), "full_name": "Ann", "role": "member",
                    "password": "pw-09473f1cda2f"}),
            Some(&t.token),
        )
        .await;
    let ann = expect_json(r, 201).await;
    let ann_id = ann["id"].as_str().unwrap().to_owned();
    let r = app.set_role(&t.host, &t.token, &ann_id, "admin").await;
    assert_eq!(r.status(), 200);
    // The admin invites someone, creates and revokes a key, changes her password.
    let ann_token = app
        .token(&t.host, &format!("ann@{slug}.test"), "pw-09473f1cda2f")
        .await;
    let bob = format!("bob@{slug}.test");
    let r = app.invite(&t.host, &ann_token, &bob, "viewer").await;
    assert_eq!(r.status(), 201);
    let key = app.create_key(&t.host, &ann_token, "viewer").await;
    let path = format!("/api/v1/api-keys/{}", key["id"].as_str().unwrap());
    assert_eq!(app.delete(&t.host, &path, &ann_token).await.status(), 204);
    let password =
        json!({"current_password": "pw-09473f1cda2f", "new_password": "pw-0394ac5e1d3d"});
    let r = app
        .call(
            Method::POST,
            &t.host,
            "/api/v1/users/me/password",
            Some(password),
            &ann_token,
        )
        .await;
    assert_eq!(r.status(), 204);
    ann_id
}

#[tokio::test]
async fn what_the_api_does_is_in_the_trail_with_filters_and_pages() {
    let (app, t) = spawn_tenant("acme").await;
    let ann_id = busy_day(&app, &t).await;

    let all = page(&app, &t, "?limit=100").await;
    assert!(all["next"].is_null());
    let seen = actions(&all);
    for expected in [
        "auth.login.failed",
        "auth.login.succeeded",
        "member.added",
        "member.role_changed",
        "invitation.created",
        "api_key.created",
        "api_key.revoked",
        "user.password.changed",
    ] {
        assert!(seen.iter().any(|a| a == expected), "{expected} in {seen:?}");
    }
    // Newest first, and exactly what the table holds.
    let ids: Vec<i64> = all["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    let rows: i64 = app
        .sql_one("select count(*) from tenant_acme.audit_log")
        .await;
    assert_eq!(ids.len() as i64, rows);
    // Entries carry who, what, on what, and where from.
    let role_change = all["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "member.role_changed")
        .unwrap();
    assert_eq!(role_change["actor_user_id"], t.owner_id.as_str());
    assert_eq!(role_change["target_type"], "user");
    assert_eq!(role_change["target_id"], ann_id.as_str());
    assert_eq!(role_change["before"]["role"], "member");
    assert_eq!(role_change["after"]["role"], "admin");
    assert_eq!(role_change["ip"], "127.0.0.1");
    assert!(role_change["request_id"].is_string(), "{role_change}");

    // Filters: action, actor, date range.
    let created = page(&app, &t, "?action=api_key.created").await;
    assert_eq!(actions(&created), ["api_key.created"]);
    let by_ann = page(&app, &t, &format!("?actor={ann_id}")).await;
    let mut ann_actions = actions(&by_ann);
    ann_actions.sort();
    assert_eq!(
        ann_actions,
        [
            "api_key.created",
            "api_key.revoked",
            "auth.login.succeeded",
            "invitation.created",
            "user.password.changed"
        ]
    );
    let future = page(&app, &t, "?from=2999-01-01T00:00:00Z").await;
    assert_eq!(future["results"].as_array().unwrap().len(), 0);
    let past = page(&app, &t, "?to=2001-01-01T00:00:00Z").await;
    assert_eq!(past["results"].as_array().unwrap().len(), 0);
    let now_ish = page(
        &app,
        &t,
        "?from=2001-01-01T00:00:00Z&to=2999-01-01T00:00:00Z&limit=100",
    )
    .await;
    assert_eq!(now_ish["results"], all["results"]);

    // Keyset pages of 3 walk the whole trail once, in order, keeping the filters.
    let mut walked = Vec::new();
    let mut url = "/api/v1/audit-log?limit=3".to_owned();
    for _ in 0..50 {
        let p = app.get_json(&t, &url, 200).await;
        let results = p["results"].as_array().unwrap();
        assert!(results.len() <= 3);
        walked.extend(results.iter().map(|e| e["id"].as_i64().unwrap()));
        match p["next"].as_str() {
            Some(next) => {
                assert!(next.contains("limit=3"), "{next}");
                url = next[next.find("/api/").unwrap()..].to_owned();
            }
            None => break,
        }
    }
    assert_eq!(walked, ids);
    let filtered = page(&app, &t, &format!("?actor={ann_id}&limit=1")).await;
    assert!(filtered["next"].as_str().unwrap().contains(&ann_id));

    // Bad input.
    for (query, status) in [
        ("?cursor=nonsense!", 400),
        ("?limit=0", 400),
        ("?action=made.up", 422),
        ("?actor=not-a-uuid", 422),
        ("?from=yesterday", 422),
        ("?from=2030-01-01T00:00:00Z&to=2020-01-01T00:00:00Z", 422),
    ] {
        let path = format!("/api/v1/audit-log{query}");
        problem(app.get_as(&t, &path).await, status).await;
    }
}

#[tokio::test]
async fn only_admins_read_the_trail_and_only_their_own_tenants() {
    let (app, acme) = spawn_tenant("acme").await;
    let globex = app.tenant("globex").await;
    busy_day(&app, &globex).await;
    let member = app.member(&acme, "member@acme.test", "member").await;
    let viewer = app.member(&acme, "viewer@acme.test", "viewer").await;
    for token in [&member, &viewer] {
        let r = app.get(&acme.host, "/api/v1/audit-log", Some(token)).await;
        problem(r, 403).await;
    }
    // acme's trail holds only acme's logins: nothing globex did appears.
    let trail = page(&app, &acme, "?limit=100").await;
    let text = trail.to_string();
    assert!(!text.contains("globex"), "{text}");
    assert!(!text.contains(&globex.owner_id), "{text}");
    let rows: i64 = app
        .sql_one("select count(*) from tenant_acme.audit_log")
        .await;
    assert_eq!(trail["results"].as_array().unwrap().len() as i64, rows);
    assert!(actions(&trail).iter().all(|a| a.starts_with("auth.login")));
    // globex's owner token on acme's host is refused.
    let r = app
        .get(&acme.host, "/api/v1/audit-log", Some(&globex.token))
        .await;
    problem(r, 403).await;
}
