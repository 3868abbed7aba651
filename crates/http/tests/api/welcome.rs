//! The welcome email: one per membership, written to the outbox in the transaction that creates
//! the membership — at signup (the owner), when an admin adds a member (`POST /users`) and when an
//! invitation is accepted — and never twice for one membership.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};

/// The welcome emails in the outbox to `to`, oldest first.
async fn welcomes(app: &TestApp, to: &str) -> Vec<Value> {
    app.sql_col_with(
        "select payload from public.outbox \
          where payload->>'kind' = 'welcome' and payload->>'to' = $1 order by id",
        &[&to],
    )
    .await
}

#[tokio::test]
async fn signing_up_welcomes_the_owner_once() {
    let (app, t) = spawn_tenant("acme").await;
    let sent = welcomes(&app, &t.owner_email).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["organization"], "acme Inc");
    assert_eq!(sent[0]["role"], "owner");
    // The same slug again is refused, and welcomes nobody.
    let r = app.register("acme").await;
    assert!(r.status().is_client_error(), "{}", r.status());
    assert_eq!(welcomes(&app, &t.owner_email).await.len(), 1);
}

#[tokio::test]
async fn a_member_added_by_an_admin_is_welcomed_once() {
    let (app, t) = spawn_tenant("acme").await;
    let body = json!({"email": "new@acme.test", "role": "member", "full_name": "Nora New",
                      "password": "pw-1b9a7c2e55d1"});
    let r = app
        .call(
            Method::POST,
            &t.host,
            "/api/v1/users",
            Some(body.clone()),
            &t.token,
        )
        .await;
    expect_json(r, 201).await;
    let sent = welcomes(&app, "new@acme.test").await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["full_name"], "Nora New");
    assert_eq!(sent[0]["role"], "member");
    // Adding the same address again is refused and sends nothing more.
    let r = app
        .call(Method::POST, &t.host, "/api/v1/users", Some(body), &t.token)
        .await;
    assert_eq!(r.status(), 409);
    assert_eq!(welcomes(&app, "new@acme.test").await.len(), 1);
    // The verification email went out as before, beside the welcome.
    assert_eq!(
        app.count(
            "select count(*) from public.outbox \
              where payload->>'kind' = 'verify_email' and payload->>'to' = 'new@acme.test'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn an_accepted_invitation_welcomes_once() {
    let (app, t) = spawn_tenant("acme").await;
    let r = app
        .invite(&t.host, &t.token, "ivy@new.test", "viewer")
        .await;
    assert_eq!(r.status(), 201);
    let link: String = app
        .sql_one("select payload->>'link' from public.outbox where payload->>'kind' = 'invitation'")
        .await;
    let token = link.split("token=").nth(1).unwrap().to_owned();
    let accept = json!({"token": token, "full_name": "Ivy", "password": "pw-6c1f0a9e3b2d"});
    let r = app
        .post_json(&t.host, "/api/v1/invitations/accept", &accept, None)
        .await;
    expect_json(r, 200).await;
    let sent = welcomes(&app, "ivy@new.test").await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["role"], "viewer");
    assert_eq!(sent[0]["organization"], "acme Inc");
    // Accepting again is refused (the invitation is spent) and welcomes nobody.
    let r = app
        .post_json(&t.host, "/api/v1/invitations/accept", &accept, None)
        .await;
    assert_eq!(r.status(), 410);
    assert_eq!(welcomes(&app, "ivy@new.test").await.len(), 1);
}
