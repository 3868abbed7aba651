//! Account pre-hijacking: an account registered for someone else's address gains nothing when
//! the address's owner is later added to an organization. Until the address is proven, the
//! account's password signs in only to the organization it was created in; proving it through a
//! reset or an invitation link ends what the old password made (sessions, API keys).

use crate::helpers::*;
use reqwest::Method;
use serde_json::json;

const VICTIM: &str = "alice@acme.test";
const ATTACKER_PASSWORD: &str = "attacker-chose-this";

/// The attacker's sign-up: the company `evil` whose owner account has the victim's address.
/// Returns the attacker's (access, refresh) tokens there and an API key made with them.
async fn pre_registered(app: &TestApp) -> (String, String, String) {
    let r = app.register_as("evil", VICTIM, ATTACKER_PASSWORD).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let (access, refresh) = app
        .login_pair("evil.example.test", VICTIM, ATTACKER_PASSWORD)
        .await;
    let key = app.create_key("evil.example.test", &access, "member").await;
    (access, refresh, key["key"].as_str().unwrap().to_owned())
}

/// What the attacker kept is dead: the refresh token, the API key (revoked in the database too)
/// and the password.
async fn attacker_locked_out(app: &TestApp, refresh: &str, key: &str) {
    problem(app.refresh("evil.example.test", refresh).await, 401).await;
    let r = app
        .with_key(Method::GET, "evil.example.test", "/api/v1/projects", key)
        .await;
    problem(r, 401).await;
    assert_eq!(
        app.count("select count(*) from tenant_evil.api_keys where revoked_at is null")
            .await,
        0
    );
    for host in ["evil.example.test", "acme.example.test", BASE] {
        problem(app.login(host, VICTIM, ATTACKER_PASSWORD).await, 401).await;
    }
}

#[tokio::test]
async fn an_unverified_password_signs_in_only_where_the_account_was_created() {
    let (app, acme) = spawn_tenant("acme").await;
    let (_, refresh, key) = pre_registered(&app).await;
    // The account is a member of acme without having proven the address (as older versions let
    // an admin add it, and as the migration leaves such memberships).
    let alice = app.user_id(VICTIM).await;
    app.add_membership(&alice, &acme.company_id, "member").await;

    // The right password: refused at acme with the reason; a wrong one is the usual 401.
    let r = app.login(&acme.host, VICTIM, ATTACKER_PASSWORD).await;
    expect_problem(r, 403, "not verified").await;
    problem(app.login(&acme.host, VICTIM, "not-the-password").await, 401).await;
    assert_eq!(
        app.count(
            "select count(*) from tenant_acme.audit_log where action = 'auth.login.failed' \
              and after->>'reason' = 'email_unverified'"
        )
        .await,
        1
    );
    // Where it was created it signs in; from the base host it neither lists acme nor switches.
    let (account, _) = app.login_pair(BASE, VICTIM, ATTACKER_PASSWORD).await;
    let orgs = expect_json(
        app.get(BASE, "/api/v1/me/organizations", Some(&account))
            .await,
        200,
    )
    .await;
    assert_eq!(column(&orgs, "slug"), ["evil"]);
    let r = app.switch(&account, "acme").await;
    problem(r, 403).await;

    // The address's owner proves it with a reset requested at acme: acme lets her in, and
    // everything the old password made is gone.
    let r = app
        .post_json(
            &acme.host,
            "/api/v1/auth/password-reset",
            &json!({"email": VICTIM}),
            None,
        )
        .await;
    assert_eq!(r.status(), 202);
    let token = app.mailed_token("password_reset", VICTIM).await;
    let body = json!({"token": token, "new_password": "own-password-of-hers"});
    let r = app
        .post_json(
            &acme.host,
            "/api/v1/auth/password-reset/confirm",
            &body,
            None,
        )
        .await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let token = app.token(&acme.host, VICTIM, "own-password-of-hers").await;
    assert_eq!(app.role_of(&token), "member");
    attacker_locked_out(&app, &refresh, &key).await;
    let after: serde_json::Value = app
        .sql_one("select after from tenant_acme.audit_log where action = 'user.password.reset'")
        .await;
    assert_eq!(after["email_proven"], true);
    assert_eq!(after["api_keys_revoked"], 1);
}

#[tokio::test]
async fn an_invitation_to_an_unverified_account_replaces_what_its_password_made() {
    let (app, acme) = spawn_tenant("acme").await;
    let (_, refresh, key) = pre_registered(&app).await;
    let r = app.invite(&acme.host, &acme.token, VICTIM, "member").await;
    assert_eq!(r.status(), 201);
    let token = app.mailed_token("invitation", VICTIM).await;
    let accept = |body: serde_json::Value| {
        let app = &app;
        async move {
            app.post_json(
                "acme.example.test",
                "/api/v1/invitations/accept",
                &body,
                None,
            )
            .await
        }
    };

    // The token alone would hand the attacker's password a membership: a new one is required.
    let r = accept(json!({"token": token})).await;
    expect_field_error(r, "password", "never verified").await;
    let pending = app
        .count("select count(*) from tenant_acme.invitations where accepted_at is null")
        .await;
    assert_eq!(pending, 1, "the invitation is still pending");

    let body =
        json!({"token": token, "full_name": "Alice Real", "password": "own-password-of-hers"});
    let b = expect_json(accept(body).await, 200).await;
    assert_eq!(b["account_created"], false);
    assert_eq!(b["account_reclaimed"], true);
    assert_eq!(b["member"]["email_verified"], true);
    assert_eq!(b["member"]["full_name"], "Alice Real");
    let token = app.token(&acme.host, VICTIM, "own-password-of-hers").await;
    assert_eq!(app.role_of(&token), "member");
    attacker_locked_out(&app, &refresh, &key).await;
}

#[tokio::test]
async fn new_passwords_must_not_contain_the_emails_name() {
    let (app, t) = spawn_tenant("acme").await;
    let body = json!({"current_password": "password-of-acme", "new_password": "Owner-and-more-1"});
    let r = app
        .post_json(&t.host, "/api/v1/users/me/password", &body, Some(&t.token))
        .await;
    expect_field_error(r, "new_password", "email address's name").await;

    let r = app
        .post_json(
            &t.host,
            "/api/v1/auth/password-reset",
            &json!({"email": t.owner_email}),
            None,
        )
        .await;
    assert_eq!(r.status(), 202);
    let token = app.mailed_token("password_reset", &t.owner_email).await;
    let confirm = |new: &str| {
        let (app, body) = (&app, json!({"token": token, "new_password": new}));
        async move {
            app.post_json(BASE, "/api/v1/auth/password-reset/confirm", &body, None)
                .await
        }
    };
    let r = confirm("my-OWNER-secret-1").await;
    expect_field_error(r, "new_password", "email address's name").await;
    // The refused attempt did not spend the token.
    assert_eq!(confirm("a-fine-new-secret").await.status(), 204);
    app.assert_password_changed(
        &t.host,
        &t.owner_email,
        "password-of-acme",
        "a-fine-new-secret",
    )
    .await;
}
