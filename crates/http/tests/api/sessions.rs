//! Refresh rotation and reuse detection, logout, sessions, account tokens and switching,
//! the caller's own account, and key rotation.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_whole_session() {
    // No grace: any repeat is reuse (the grace for two tabs is tested below).
    let (app, t) = spawn_tenant_with(&[("REFRESH_REUSE_GRACE_SECS", "0")], "acme").await;
    let (_, r1) = app.owner_session(&t).await;

    let r = app.refresh(&t.host, &r1).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let b: Value = r.json().await.unwrap();
    let r2 = b["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2);
    let access = b["access_token"].as_str().unwrap();
    assert_eq!(
        app.get(&t.host, "/api/v1/projects", Some(access))
            .await
            .status(),
        200
    );

    // r1 is spent: presenting it again is reuse, which ends the session, so r2 dies too.
    problem(app.refresh(&t.host, &r1).await, 401).await;
    problem(app.refresh(&t.host, &r2).await, 401).await;
    let reason: String = app
        .sql_one("select revoked_reason from public.sessions where revoked_at is not null")
        .await;
    assert_eq!(reason, "refresh token reuse");

    // Garbage, an access token used as a refresh token, and a refresh token used as an access token.
    problem(app.refresh(&t.host, "rt_nope").await, 401).await;
    problem(app.refresh(&t.host, access).await, 401).await;
    let (_, r3) = app.owner_session(&t).await;
    problem(app.get(&t.host, "/api/v1/projects", Some(&r3)).await, 401).await;
    // Refresh tokens are stored hashed only.
    let stored: i64 = app
        .sql_one_with(
            "select count(*) from public.refresh_tokens where token_hash::text like '%' || $1 || '%'",
            &[&&r3[3..13]],
        )
        .await;
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn a_refresh_token_only_works_on_its_own_host() {
    let (app, a) = spawn_tenant("acme").await;
    let b = app.tenant("globex").await;
    let (_, r) = app.owner_session(&a).await;
    problem(app.refresh(&b.host, &r).await, 401).await;
    problem(app.refresh(BASE, &r).await, 401).await;
    // Refusing it elsewhere did not spend it.
    assert_eq!(app.refresh(&a.host, &r).await.status(), 200);
}

#[tokio::test]
async fn logout_and_session_revocation() {
    let (app, t) = spawn_tenant("acme").await;
    let (a1, r1) = app.owner_session(&t).await;
    let (_, r2) = app.owner_session(&t).await;

    let r = app.get(&t.host, "/api/v1/auth/sessions", Some(&a1)).await;
    assert_eq!(r.status(), 200);
    let list: Value = r.json().await.unwrap();
    let sessions = list["results"].as_array().unwrap();
    // The tenant() helper logged in once too.
    assert_eq!(sessions.len(), 3);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    let current = sessions.iter().find(|s| s["current"] == true).unwrap();
    assert_eq!(current["user_agent"], "tenantry-tests/1.0");
    assert_eq!(current["ip"], "127.0.0.1");
    assert_eq!(current["company_id"], t.company_id.as_str());

    // Revoke the second session by id: its refresh token stops working at once.
    let other = sessions
        .iter()
        .find(|s| s["current"] == false && s["id"] != current["id"])
        .unwrap();
    let newest_other = sessions[0]["id"].as_str().unwrap().to_owned();
    assert_ne!(
        newest_other,
        current["id"].as_str().unwrap(),
        "newest first: the r2 login"
    );
    let r = app
        .delete(
            &t.host,
            &format!("/api/v1/auth/sessions/{newest_other}"),
            &a1,
        )
        .await;
    assert_eq!(r.status(), 204);
    problem(app.refresh(&t.host, &r2).await, 401).await;
    let _ = other;

    // Another account cannot revoke it: 404.
    let b = app.tenant("globex").await;
    let path = format!("/api/v1/auth/sessions/{}", current["id"].as_str().unwrap());
    problem(app.delete(&b.host, &path, &b.token).await, 404).await;

    // Logout ends the session of that refresh token.
    assert_eq!(app.logout(&t.host, &r1).await.status(), 204);
    problem(app.refresh(&t.host, &r1).await, 401).await;
    let r = app.logout(&t.host, "rt_unknown").await;
    assert_eq!(r.status(), 204, "idempotent, reveals nothing");
}

#[tokio::test]
async fn account_tokens_list_organizations_and_switch() {
    let (app, acme) = spawn_tenant("acme").await;
    let globex = app.tenant("globex").await;
    let _initech = app.tenant("initech").await;
    // acme's owner, verified, is also a viewer at globex.
    app.add_membership(&acme.owner_id, &globex.company_id, "viewer")
        .await;
    app.verify_email(&acme.owner_email).await;

    let (account, account_refresh) = app
        .login_pair(BASE, &acme.owner_email, "password-of-acme")
        .await;
    let claims = app.jwt.verify(&account).unwrap();
    assert_eq!((claims.tenant, claims.role), (None, None));

    let orgs = expect_json(
        app.get(BASE, "/api/v1/me/organizations", Some(&account))
            .await,
        200,
    )
    .await;
    let mut seen = columns(&orgs, &["slug", "role", "domain"]);
    seen.sort();
    assert_eq!(
        seen,
        [
            ["acme", "owner", "acme.example.test"],
            ["globex", "viewer", "globex.example.test"]
        ]
    );

    // An account token is not accepted on a tenant host, nor a tenant token on the base host.
    for (host, path, token) in [
        (acme.host.as_str(), "/api/v1/projects", &account),
        (BASE, "/api/v1/me/organizations", &acme.token),
    ] {
        problem(app.get(host, path, Some(token)).await, 403).await;
    }

    let switch = |host: &str, slug: &str, token: &str| {
        let (app, host, token) = (&app, host.to_owned(), token.to_owned());
        let body = json!({"slug": slug});
        async move {
            app.post_json(&host, "/api/v1/auth/switch", &body, Some(&token))
                .await
        }
    };
    let b = expect_json(switch(BASE, "globex", &account).await, 200).await;
    let tenant_token = b["access_token"].as_str().unwrap();
    let c = app.jwt.verify(tenant_token).unwrap();
    assert_eq!(
        c.tenant.map(|t| t.to_string()),
        Some(globex.company_id.clone())
    );
    assert_eq!(c.role.as_deref(), Some("viewer"));
    assert_eq!(
        app.get(&globex.host, "/api/v1/projects", Some(tenant_token))
            .await
            .status(),
        200
    );
    let r = app
        .post_project(&globex.host, tenant_token, json!({"name": "x"}))
        .await;
    problem(r, 403).await;
    // The switched session refreshes on its tenant's host.
    let switched_refresh = b["refresh_token"].as_str().unwrap();
    assert_eq!(
        app.refresh(&globex.host, switched_refresh).await.status(),
        200
    );

    // Not a member, unknown, or invalid slug: 403 alike.
    for slug in ["initech", "nobody", "Bad Slug"] {
        problem(switch(BASE, slug, &account).await, 403).await;
    }
    // Switch needs an account token on the base host.
    problem(switch(&acme.host, "acme", &acme.token).await, 404).await;
    // The account session refreshes on the base host.
    assert_eq!(app.refresh(BASE, &account_refresh).await.status(), 200);
}

#[tokio::test]
async fn role_changes_and_removal_apply_at_the_next_refresh() {
    let (app, t) = spawn_tenant("acme").await;
    let email = "member@acme.test";
    let _ = app.member(&t, email, "member").await;
    let (_, r1) = app.login_pair(&t.host, email, MEMBER_PASSWORD).await;

    app.sql("update public.memberships set role = 'viewer' where role = 'member'")
        .await;
    let b = expect_json(app.refresh(&t.host, &r1).await, 200).await;
    let access = b["access_token"].as_str().unwrap();
    assert_eq!(app.role_of(access), "viewer");
    let r = app
        .post_project(&t.host, access, json!({"name": "x"}))
        .await;
    problem(r, 403).await;

    app.sql("delete from public.memberships where role = 'viewer'")
        .await;
    problem(
        app.refresh(&t.host, b["refresh_token"].as_str().unwrap())
            .await,
        401,
    )
    .await;

    // Deactivating the account ends the owner's sessions at their next refresh.
    let (_, owner_refresh) = app.owner_session(&t).await;
    app.sql_with(
        "update public.users set is_active = false where id = $1::text::uuid",
        &[&t.owner_id],
    )
    .await;
    problem(app.refresh(&t.host, &owner_refresh).await, 401).await;
}

#[tokio::test]
async fn me_profile_and_password_change() {
    let (app, t) = spawn_tenant("acme").await;
    let (a1, r1) = app.owner_session(&t).await;
    let (_, r_other) = app
        .login_pair(BASE, &t.owner_email, "password-of-acme")
        .await;

    let me = expect_json(app.get(&t.host, "/api/v1/users/me", Some(&a1)).await, 200).await;
    assert_eq!(me["email"], t.owner_email.as_str());
    assert_eq!(me["role"], "owner");
    assert_eq!(me["organization_id"], t.company_id.as_str());

    let name = |full_name: &str| {
        let body = Some(json!({"full_name": full_name}));
        app.call(Method::PATCH, &t.host, "/api/v1/users/me", body, &a1)
    };
    let me = expect_json(name("  Ada Owner ").await, 200).await;
    assert_eq!(me["full_name"], "Ada Owner");
    expect_field_errors(name("").await, 422, &["full_name"]).await;

    let path = "/api/v1/users/me/password";
    for (current, new, field) in [
        ("wrong-password", "a-brand-new-password", "current_password"),
        ("password-of-acme", "short", "new_password"),
    ] {
        let body = json!({"current_password": current, "new_password": new});
        let r = app.post_json(&t.host, path, &body, Some(&a1)).await;
        expect_field_errors(r, 422, &[field]).await;
    }
    let r = app
        .post_json(&t.host, path, &json!({"current_password": "password-of-acme", "new_password": "a-brand-new-password"}), Some(&a1))
        .await;
    assert_eq!(r.status(), 204);

    app.assert_password_changed(
        &t.host,
        &t.owner_email,
        "password-of-acme",
        "a-brand-new-password",
    )
    .await;
    // Every other session ended; the one that changed the password goes on.
    problem(app.refresh(BASE, &r_other).await, 401).await;
    assert_eq!(app.refresh(&t.host, &r1).await.status(), 200);
}

#[tokio::test]
async fn verify_endpoint_checks_tokens_for_this_host() {
    let (app, t) = spawn_tenant("acme").await;
    let verify = |host: &str, token: &str| {
        let (app, host, body) = (&app, host.to_owned(), json!({"token": token}));
        async move {
            app.post_json(&host, "/api/v1/auth/token/verify", &body, None)
                .await
        }
    };
    let b = expect_json(verify(&t.host, &t.token).await, 200).await;
    assert_eq!(b["active"], true);
    assert_eq!(b["role"], "owner");
    for (host, token) in [(BASE, t.token.as_str()), (&t.host, "x.y.z")] {
        problem(verify(host, token).await, 401).await;
    }
}

#[tokio::test]
async fn tokens_signed_with_the_previous_key_survive_a_rotation() {
    let database = tenantry_testkit::fresh_database().await;
    let _ = database;
    let old = spawn_app().await;
    let t = old.tenant("acme").await;
    // The same database, a server whose current key is new and whose previous key is the old one.
    let rotated = build(
        &old.db_url,
        &[
            ("JWT_SECRET", "a-completely-new-secret-for-rotation!!"),
            ("JWT_PREVIOUS_SECRET", JWT_SECRET),
        ],
    )
    .await
    .unwrap();
    let rotated_url = format!("http://127.0.0.1:{}", rotated.port());
    tokio::spawn(rotated.run_until_stopped());
    let get = |token: String| {
        let http = old.http.clone();
        let url = format!("{rotated_url}/api/v1/projects");
        let host = t.host.clone();
        async move {
            http.get(url)
                .header("Host", host)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(
        get(t.token.clone()).await,
        200,
        "old token accepted during the overlap"
    );

    let retired = build(
        &old.db_url,
        &[("JWT_SECRET", "a-completely-new-secret-for-rotation!!")],
    )
    .await
    .unwrap();
    let retired_url = format!("http://127.0.0.1:{}", retired.port());
    tokio::spawn(retired.run_until_stopped());
    let r = old
        .http
        .get(format!("{retired_url}/api/v1/projects"))
        .header("Host", &t.host)
        .bearer_auth(&t.token)
        .send()
        .await
        .unwrap();
    problem(r, 401).await;
}

/// An access token whose session ended (logout here) can no longer mint credentials or change
/// the account: switch, API-key creation and password change answer 401, and verification says
/// `active: false` — while reads with it still work until it expires (≤ 15 minutes).
#[tokio::test]
async fn a_token_of_an_ended_session_mints_nothing() {
    let (app, t) = spawn_tenant("acme").await;
    // An account token on the base host, then its session ends.
    let (account, account_refresh) = app
        .login_pair(BASE, &t.owner_email, "password-of-acme")
        .await;
    let verify = |token: String| {
        let app = &app;
        async move {
            let r = app
                .post_json(
                    BASE,
                    "/api/v1/auth/token/verify",
                    &json!({"token": token}),
                    None,
                )
                .await;
            expect_json(r, 200).await
        }
    };
    assert_eq!(verify(account.clone()).await["active"], true);
    app.logout(BASE, &account_refresh).await;
    let v = verify(account.clone()).await;
    assert_eq!(
        v,
        json!({"active": false}),
        "nothing else about an ended session"
    );
    let r = app.switch(&account, "acme").await;
    expect_problem(r, 401, "session has ended").await;
    assert_eq!(
        app.count("select count(*) from public.sessions where company_id is not null and revoked_at is null")
            .await,
        1,
        "only the session spawn_tenant opened; switch opened none"
    );

    // A tenant token whose session was logged out.
    let (tenant, tenant_refresh) = app
        .login_pair(&t.host, &t.owner_email, "password-of-acme")
        .await;
    app.logout(&t.host, &tenant_refresh).await;
    let minting = [
        ("/api/v1/api-keys", json!({"name": "ci", "role": "member"})),
        (
            "/api/v1/users/me/password",
            json!({"current_password": "password-of-acme", "new_password": "a-brand-new-password"}),
        ),
    ];
    for (path, body) in minting {
        let r = app.post_json(&t.host, path, &body, Some(&tenant)).await;
        expect_problem(r, 401, "session has ended").await;
    }
    assert_eq!(
        app.count("select count(*) from tenant_acme.api_keys").await,
        0
    );
    assert_eq!(
        app.count("select count(*) from tenant_acme.api_keys").await,
        0
    );
    let r = app
        .post_json(
            &t.host,
            "/api/v1/users/me/password",
            &json!({"current_password": "password-of-acme", "new_password": "a-brand-new-password"}),
            Some(&tenant),
        )
        .await;
    expect_problem(r, 401, "session has ended").await;
    assert_eq!(app.owner_login(&t, "password-of-acme").await, 200);
    // Reading still works with the unexpired token.
    assert_eq!(
        app.get(&t.host, "/api/v1/projects", Some(&tenant))
            .await
            .status(),
        200
    );
}

/// Switching checks the account, not only the membership: a deactivated account cannot switch
/// with a token it got before.
#[tokio::test]
async fn a_deactivated_account_cannot_switch() {
    let (app, t) = spawn_tenant("acme").await;
    let (account, _) = app
        .login_pair(BASE, &t.owner_email, "password-of-acme")
        .await;
    app.sql_with(
        "update public.users set is_active = false where lower(email) = lower($1)",
        &[&t.owner_email],
    )
    .await;
    let r = app.switch(&account, "acme").await;
    problem(r, 401).await;
}

/// Two tabs refreshing at once: a repeat of a just-spent refresh token, while its successor is
/// unused, gets that same successor (no logout). Once the successor has been used, or after the
/// grace, a repeat is reuse and ends the session.
#[tokio::test]
async fn a_quick_repeat_gets_the_same_successor_and_anything_else_is_reuse() {
    let (app, t) = spawn_tenant_with(&[("REFRESH_REUSE_GRACE_SECS", "2")], "acme").await;
    let (_, r1) = app.owner_session(&t).await;
    let refreshed = |token: String| {
        let (app, t) = (&app, &t);
        async move { expect_json(app.refresh(&t.host, &token).await, 200).await }
    };
    let first = refreshed(r1.clone()).await;
    let second = refreshed(r1.clone()).await;
    let r2 = first["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(
        second["refresh_token"], first["refresh_token"],
        "the same successor"
    );
    let access = second["access_token"].as_str().unwrap();
    assert_eq!(
        app.get(&t.host, "/api/v1/projects", Some(access))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.count("select count(*) from public.refresh_tokens")
            .await,
        3,
        "spawn's login, r1 and one successor: the repeat stored nothing"
    );
    // The successor is used; now the old token is reuse, and the session ends.
    let third = refreshed(r2.clone()).await;
    problem(app.refresh(&t.host, &r1).await, 401).await;
    let r3 = third["refresh_token"].as_str().unwrap().to_owned();
    problem(app.refresh(&t.host, &r3).await, 401).await;

    // After the grace, a repeat is reuse even with an unused successor.
    let (_, s1) = app.owner_session(&t).await;
    refreshed(s1.clone()).await;
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    problem(app.refresh(&t.host, &s1).await, 401).await;
    assert_eq!(
        app.count(
            "select count(*) from public.sessions where revoked_reason = 'refresh token reuse'"
        )
        .await,
        2
    );
}
