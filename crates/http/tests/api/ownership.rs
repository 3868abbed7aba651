//! Ownership transfer: owner only, re-authenticated, to an active verified member, exactly one
//! owner afterwards, and exactly one winner when two transfers race.

use crate::helpers::*;
use reqwest::{Method, Response};
use serde_json::json;

const PATH: &str = "/api/v1/organization/transfer-ownership";

async fn owners(app: &TestApp, company: &str) -> Vec<String> {
    app.sql_col_with(
        "select user_id::text from public.memberships where company_id = $1::text::uuid and role = 'owner'",
        &[&company],
    )
    .await
}

/// Asks, with `token`, for the transfer of `t` to `user`, re-authenticating with `password`.
async fn transfer(
    app: &TestApp,
    t: &TestTenant,
    token: &str,
    user: &str,
    password: &str,
) -> Response {
    let body = json!({"user_id": user, "password": password});
    app.call(Method::POST, &t.host, PATH, Some(body), token)
        .await
}

#[tokio::test]
async fn transfer_ownership_rules_and_effects() {
    let (app, t) = spawn_tenant("acme").await;
    let g = app.tenant("globex").await;
    let admin = app.member(&t, "ann@acme.test", "admin").await;
    app.member(&t, "bob@acme.test", "member").await;
    app.member(&t, "una@acme.test", "member").await;
    app.member(&t, "ina@acme.test", "member").await;
    app.verify_email("bob@acme.test").await;
    app.verify_email("ina@acme.test").await;
    app.verify_email(&g.owner_email).await;
    let ann = app.user_id("ann@acme.test").await;
    let bob = app.user_id("bob@acme.test").await;
    let una = app.user_id("una@acme.test").await;
    let ina = app.user_id("ina@acme.test").await;
    let (_, owner_refresh) = app.owner_session(&t).await;
    let (_, bob_refresh) = app
        .login_pair(&t.host, "bob@acme.test", MEMBER_PASSWORD)
        .await;
    let body = |user: &str, password: &str| json!({"user_id": user, "password": password});
    let owner_password = "password-of-acme";

    let no_fields: &[&str] = &[];
    for (token, body, status, needle, fields) in [
        // Only the owner.
        (
            &admin,
            body(&ann, MEMBER_PASSWORD),
            403,
            "organization.transfer_ownership",
            no_fields,
        ),
        // Re-authentication.
        (
            &t.token,
            body(&bob, "pw-68596aa7fdc9"),
            403,
            "password is incorrect",
            no_fields,
        ),
        (&t.token, json!({}), 422, "", &["user_id", "password"]),
        (&t.token, body("bob", owner_password), 422, "", &["user_id"]),
        // Not to oneself, not to someone outside, not to an inactive or unverified member.
        (
            &t.token,
            body(&t.owner_id, owner_password),
            422,
            "",
            no_fields,
        ),
        (
            &t.token,
            body(&g.owner_id, owner_password),
            404,
            "",
            no_fields,
        ),
        (
            &t.token,
            body(&una, owner_password),
            409,
            "verified",
            no_fields,
        ),
    ] {
        let r = app
            .call(Method::POST, &t.host, PATH, Some(body), token)
            .await;
        let p = expect_problem(r, status, needle).await;
        assert_field_errors(&p, fields);
    }
    let r = app
        .member_switch(&t.host, &t.token, &ina, "deactivate")
        .await;
    assert_eq!(r.status(), 200);
    let r = transfer(&app, &t, &t.token, &ina, owner_password).await;
    expect_problem(r, 409, "deactivated").await;
    assert_eq!(owners(&app, &t.company_id).await, vec![t.owner_id.clone()]);
    assert_eq!(
        app.audit_count("tenant_acme", "organization.ownership_transferred")
            .await,
        0
    );

    // The transfer.
    let r = transfer(&app, &t, &t.token, &bob, owner_password).await;
    let b = expect_json(r, 200).await;
    assert_eq!(b["owner"]["id"], bob.as_str());
    assert_eq!(b["owner"]["role"], "owner");
    assert_eq!(b["previous_owner"]["id"], t.owner_id.as_str());
    assert_eq!(b["previous_owner"]["role"], "admin");
    assert_eq!(owners(&app, &t.company_id).await, vec![bob.clone()]);
    assert_eq!(
        app.count("select count(*) from public.memberships where role = 'owner'")
            .await,
        2,
        "one per company"
    );
    // Audited with before and after.
    let (before, after) = app
        .audit_change("tenant_acme", "organization.ownership_transferred")
        .await;
    assert_eq!(before["owner"]["user_id"], t.owner_id.as_str());
    assert_eq!(after["owner"]["user_id"], bob.as_str());
    assert_eq!(after["previous_owner"]["role"], "admin");

    // Nothing was revoked; refreshes carry the new roles.
    let b = expect_json(app.refresh(&t.host, &owner_refresh).await, 200).await;
    assert_eq!(app.role_of(b["access_token"].as_str().unwrap()), "admin");
    let b = expect_json(app.refresh(&t.host, &bob_refresh).await, 200).await;
    let bob_token = b["access_token"].as_str().unwrap().to_owned();
    assert_eq!(app.role_of(&bob_token), "owner");

    // The old owner's unexpired token still says owner, but the transfer re-checks under lock.
    let r = transfer(&app, &t, &t.token, &ann, owner_password).await;
    expect_problem(r, 403, "no longer the owner").await;
    // The new owner cannot be removed or demoted by the (now admin) previous owner.
    let old_owner_admin = app.token(&t.host, &t.owner_email, owner_password).await;
    let r = app
        .delete(&t.host, &format!("/api/v1/users/{bob}"), &old_owner_admin)
        .await;
    problem(r, 403).await;
    // And the new owner can hand it back.
    let r = transfer(&app, &t, &bob_token, &t.owner_id, MEMBER_PASSWORD).await;
    assert_eq!(
        r.status(),
        409,
        "the previous owner's email is not verified"
    );
    app.verify_email(&t.owner_email).await;
    let r = transfer(&app, &t, &bob_token, &t.owner_id, MEMBER_PASSWORD).await;
    assert_eq!(r.status(), 200);
    assert_eq!(owners(&app, &t.company_id).await, vec![t.owner_id.clone()]);
    assert_eq!(owners(&app, &g.company_id).await, vec![g.owner_id.clone()]);
}

#[tokio::test]
async fn concurrent_transfers_have_exactly_one_winner() {
    let (app, t) = spawn_tenant("acme").await;
    app.member(&t, "bob@acme.test", "admin").await;
    app.member(&t, "cid@acme.test", "member").await;
    app.verify_email("bob@acme.test").await;
    app.verify_email("cid@acme.test").await;
    let bob = app.user_id("bob@acme.test").await;
    let cid = app.user_id("cid@acme.test").await;
    for round in 0..3 {
        // Reset: the original owner owns acme again.
        if round > 0 {
            let mut client = app.db.get().await.unwrap();
            let tx = client.transaction().await.unwrap();
            tx.execute(
                "update public.memberships set role = 'member' \
                 where company_id = $1::text::uuid and role = 'owner'",
                &[&t.company_id],
            )
            .await
            .unwrap();
            tx.execute(
                "update public.memberships set role = 'owner' \
                 where company_id = $1::text::uuid and user_id = $2::text::uuid",
                &[&t.company_id, &t.owner_id],
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
        }
        let (a, b) = tokio::join!(
            transfer(&app, &t, &t.token, &bob, "password-of-acme"),
            transfer(&app, &t, &t.token, &cid, "password-of-acme"),
        );
        let statuses = [a.status().as_u16(), b.status().as_u16()];
        assert!(
            statuses == [200, 403] || statuses == [403, 200],
            "round {round}: {statuses:?}"
        );
        let loser = if statuses[0] == 403 { a } else { b };
        expect_problem(loser, 403, "no longer the owner").await;
        let now = owners(&app, &t.company_id).await;
        assert_eq!(now.len(), 1, "exactly one owner");
        assert!(now[0] == bob || now[0] == cid);
    }
    assert_eq!(
        app.audit_count("tenant_acme", "organization.ownership_transferred")
            .await,
        3
    );
}
