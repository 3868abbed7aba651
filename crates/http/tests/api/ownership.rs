//! Ownership transfer: owner only, re-authenticated, to an active verified member, exactly one
//! owner afterwards, and exactly one winner when two transfers race.

use crate::helpers::*;
use crate::members::{audit_count, call, login_pair, refresh, role_of, user_id, MEMBER_PASSWORD};
use reqwest::Method;
use serde_json::{json, Value};

const PATH: &str = "/api/v1/organization/transfer-ownership";

async fn verify_email(app: &TestApp, email: &str) {
    app.sql(&format!(
        "update public.users set email_verified_at = now() where email = '{email}'"
    ))
    .await;
}

async fn owners(app: &TestApp, company: &str) -> Vec<String> {
    let client = app.db.get().await.unwrap();
    client
        .query(
            "select user_id::text from public.memberships where company_id = $1::text::uuid and role = 'owner'",
            &[&company],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn transfer_ownership_rules_and_effects() {
    let app = spawn_app().await;
    let t = app.tenant("acme").await;
    let g = app.tenant("globex").await;
    let admin = app.member(&t, "ann@acme.test", "admin").await;
    app.member(&t, "bob@acme.test", "member").await;
    app.member(&t, "una@acme.test", "member").await;
    app.member(&t, "ina@acme.test", "member").await;
    verify_email(&app, "bob@acme.test").await;
    verify_email(&app, "ina@acme.test").await;
    verify_email(&app, &g.owner_email).await;
    let ann = user_id(&app, "ann@acme.test").await;
    let bob = user_id(&app, "bob@acme.test").await;
    let una = user_id(&app, "una@acme.test").await;
    let ina = user_id(&app, "ina@acme.test").await;
    let (_, owner_refresh) = login_pair(&app, &t.host, &t.owner_email, "password-of-acme").await;
    let (_, bob_refresh) = login_pair(&app, &t.host, "bob@acme.test", MEMBER_PASSWORD).await;
    let body = |user: &str, password: &str| json!({"user_id": user, "password": password});

    // Only the owner.
    let p = problem(
        call(
            &app,
            Method::POST,
            &t.host,
            PATH,
            Some(body(&ann, MEMBER_PASSWORD)),
            &admin,
        )
        .await,
        403,
    )
    .await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("organization.transfer_ownership"),
        "{p}"
    );
    // Re-authentication.
    let p = problem(
        call(
            &app,
            Method::POST,
            &t.host,
            PATH,
            Some(body(&bob, "not-my-password")),
            &t.token,
        )
        .await,
        403,
    )
    .await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("password is incorrect"),
        "{p}"
    );
    let p = problem(
        call(&app, Method::POST, &t.host, PATH, Some(json!({})), &t.token).await,
        422,
    )
    .await;
    assert!(
        p["errors"]["user_id"].is_array() && p["errors"]["password"].is_array(),
        "{p}"
    );
    let p = problem(
        call(
            &app,
            Method::POST,
            &t.host,
            PATH,
            Some(body("bob", "password-of-acme")),
            &t.token,
        )
        .await,
        422,
    )
    .await;
    assert!(p["errors"]["user_id"].is_array(), "{p}");
    // Not to oneself, not to someone outside, not to an inactive or unverified member.
    problem(
        call(
            &app,
            Method::POST,
            &t.host,
            PATH,
            Some(body(&t.owner_id, "password-of-acme")),
            &t.token,
        )
        .await,
        422,
    )
    .await;
    problem(
        call(
            &app,
            Method::POST,
            &t.host,
            PATH,
            Some(body(&g.owner_id, "password-of-acme")),
            &t.token,
        )
        .await,
        404,
    )
    .await;
    let p = problem(
        call(
            &app,
            Method::POST,
            &t.host,
            PATH,
            Some(body(&una, "password-of-acme")),
            &t.token,
        )
        .await,
        409,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("verified"), "{p}");
    let r = call(
        &app,
        Method::POST,
        &t.host,
        &format!("/api/v1/users/{ina}/deactivate"),
        None,
        &t.token,
    )
    .await;
    assert_eq!(r.status(), 200);
    let p = problem(
        call(
            &app,
            Method::POST,
            &t.host,
            PATH,
            Some(body(&ina, "password-of-acme")),
            &t.token,
        )
        .await,
        409,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("deactivated"), "{p}");
    assert_eq!(owners(&app, &t.company_id).await, vec![t.owner_id.clone()]);
    assert_eq!(
        audit_count(&app, "tenant_acme", "organization.ownership_transferred").await,
        0
    );

    // The transfer.
    let r = call(
        &app,
        Method::POST,
        &t.host,
        PATH,
        Some(body(&bob, "password-of-acme")),
        &t.token,
    )
    .await;
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["owner"]["id"], bob.as_str());
    assert_eq!(b["owner"]["role"], "owner");
    assert_eq!(b["previous_owner"]["id"], t.owner_id.as_str());
    assert_eq!(b["previous_owner"]["role"], "admin");
    assert_eq!(owners(&app, &t.company_id).await, vec![bob.clone()]);
    let total: i64 = app
        .sql_one("select count(*) from public.memberships where role = 'owner'")
        .await;
    assert_eq!(total, 2, "one per company");
    // Audited with before and after.
    let (before, after): (Value, Value) = {
        let client = app.db.get().await.unwrap();
        let row = client
            .query_one(
                "select before, after from tenant_acme.audit_log where action = 'organization.ownership_transferred'",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(before["owner"]["user_id"], t.owner_id.as_str());
    assert_eq!(after["owner"]["user_id"], bob.as_str());
    assert_eq!(after["previous_owner"]["role"], "admin");

    // Nothing was revoked; refreshes carry the new roles.
    let r = refresh(&app, &t.host, &owner_refresh).await;
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(role_of(&app, b["access_token"].as_str().unwrap()), "admin");
    let r = refresh(&app, &t.host, &bob_refresh).await;
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    let bob_token = b["access_token"].as_str().unwrap().to_owned();
    assert_eq!(role_of(&app, &bob_token), "owner");

    // The old owner's unexpired token still says owner, but the transfer re-checks under lock.
    let p = problem(
        call(
            &app,
            Method::POST,
            &t.host,
            PATH,
            Some(body(&ann, "password-of-acme")),
            &t.token,
        )
        .await,
        403,
    )
    .await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("no longer the owner"),
        "{p}"
    );
    // The new owner cannot be removed or demoted by the (now admin) previous owner.
    let old_owner_admin = app.token(&t.host, &t.owner_email, "password-of-acme").await;
    problem(
        call(
            &app,
            Method::DELETE,
            &t.host,
            &format!("/api/v1/users/{bob}"),
            None,
            &old_owner_admin,
        )
        .await,
        403,
    )
    .await;
    // And the new owner can hand it back.
    let r = call(
        &app,
        Method::POST,
        &t.host,
        PATH,
        Some(body(&t.owner_id, MEMBER_PASSWORD)),
        &bob_token,
    )
    .await;
    assert_eq!(
        r.status(),
        409,
        "the previous owner's email is not verified"
    );
    verify_email(&app, &t.owner_email).await;
    let r = call(
        &app,
        Method::POST,
        &t.host,
        PATH,
        Some(body(&t.owner_id, MEMBER_PASSWORD)),
        &bob_token,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(owners(&app, &t.company_id).await, vec![t.owner_id.clone()]);
    assert_eq!(owners(&app, &g.company_id).await, vec![g.owner_id.clone()]);
}

#[tokio::test]
async fn concurrent_transfers_have_exactly_one_winner() {
    let app = spawn_app().await;
    let t = app.tenant("acme").await;
    app.member(&t, "bob@acme.test", "admin").await;
    app.member(&t, "cid@acme.test", "member").await;
    verify_email(&app, "bob@acme.test").await;
    verify_email(&app, "cid@acme.test").await;
    let bob = user_id(&app, "bob@acme.test").await;
    let cid = user_id(&app, "cid@acme.test").await;
    for round in 0..3 {
        // Reset: the original owner owns acme again.
        if round > 0 {
            app.sql(&format!(
                "begin; \
                 update public.memberships set role = 'member' where company_id = '{c}' and role = 'owner'; \
                 update public.memberships set role = 'owner' where company_id = '{c}' and user_id = '{o}'; \
                 commit;",
                c = t.company_id,
                o = t.owner_id
            ))
            .await;
        }
        let a = call(
            &app,
            Method::POST,
            &t.host,
            PATH,
            Some(json!({"user_id": bob, "password": "password-of-acme"})),
            &t.token,
        );
        let b = call(
            &app,
            Method::POST,
            &t.host,
            PATH,
            Some(json!({"user_id": cid, "password": "password-of-acme"})),
            &t.token,
        );
        let (a, b) = tokio::join!(a, b);
        let statuses = [a.status().as_u16(), b.status().as_u16()];
        assert!(
            statuses == [200, 403] || statuses == [403, 200],
            "round {round}: {statuses:?}"
        );
        let loser = if statuses[0] == 403 { a } else { b };
        let p = problem(loser, 403).await;
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .contains("no longer the owner"),
            "{p}"
        );
        let now = owners(&app, &t.company_id).await;
        assert_eq!(now.len(), 1, "exactly one owner");
        assert!(now[0] == bob || now[0] == cid);
    }
    assert_eq!(
        audit_count(&app, "tenant_acme", "organization.ownership_transferred").await,
        3
    );
}
