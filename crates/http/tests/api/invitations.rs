//! Invitations: create (with the email in the outbox), list, revoke, accept (new and existing
//! accounts), and every way a token can fail.

use crate::helpers::*;
use reqwest::{Method, Response};
use serde_json::{json, Value};

/// Invites and returns (invitation id, token read back from the outbox link).
async fn invited(
    app: &TestApp,
    host: &str,
    token: &str,
    email: &str,
    role: &str,
) -> (String, String) {
    let r = app.invite(host, token, email, role).await;
    assert_eq!(r.status(), 201, "invite {email}");
    let b: Value = r.json().await.unwrap();
    let link: String = app
        .sql_one_with(
            "select payload->>'link' from public.outbox where payload->>'to' = $1 order by id desc limit 1",
            &[&email],
        )
        .await;
    let token = link.split("token=").nth(1).unwrap().to_owned();
    (b["id"].as_str().unwrap().to_owned(), token)
}

async fn accept(app: &TestApp, host: &str, body: Value) -> Response {
    app.post_json(host, "/api/v1/invitations/accept", &body, None)
        .await
}

/// (email, status) of each invitation in the list, with `filter` as the query.
async fn statuses(app: &TestApp, host: &str, token: &str, filter: &str) -> Vec<Vec<String>> {
    let r = app
        .get(host, &format!("/api/v1/invitations{filter}"), Some(token))
        .await;
    columns(&expect_json(r, 200).await, &["email", "status"])
}

#[tokio::test]
async fn an_accepted_invitation_creates_a_verified_account_and_membership() {
    let (app, t) = spawn_tenant("acme").await;
    app.sql("update public.users set full_name = 'Olive Owner' where email = 'owner@acme.test'")
        .await;

    let r = app
        .invite(&t.host, &t.token, "nina@new.test", "member")
        .await;
    assert_eq!(r.status(), 201);
    let b: Value = r.json().await.unwrap();
    let id = b["id"].as_str().unwrap().to_owned();
    assert_eq!(b["status"], "pending");
    assert_eq!(b["role"], "member");
    assert_eq!(b["invited_by"], t.owner_id.as_str());
    assert!(b.get("token").is_none(), "the token is only in the email");

    // The email is in the outbox, with a link on this tenant's host.
    let payload: Value = app
        .sql_one("select payload from public.outbox order by id desc limit 1")
        .await;
    assert_eq!(payload["kind"], "invitation");
    assert_eq!(payload["to"], "nina@new.test");
    assert_eq!(payload["organization"], "acme Inc");
    assert_eq!(payload["invited_by"], "Olive Owner");
    assert_eq!(payload["role"], "member");
    let link = payload["link"].as_str().unwrap();
    // `example.test` is a development name, so links (like the API) default to http.
    let prefix = "http://acme.example.test/accept-invitation?token=inv_";
    assert!(link.starts_with(prefix), "{link}");
    let token = link.split("token=").nth(1).unwrap().to_owned();
    assert_eq!(token.len(), 4 + 43, "256 random bits");
    // Stored as its SHA-256 only.
    let stored: i64 = app
        .sql_one_with(
            "select count(*) from tenant_acme.invitations where token_hash = sha256(convert_to($1, 'UTF8'))",
            &[&token],
        )
        .await;
    assert_eq!(stored, 1);
    let plain: i64 = app
        .sql_one_with(
            "select count(*) from tenant_acme.invitations \
             where encode(token_hash, 'escape') like '%' || $1 || '%'",
            &[&&token[4..20]],
        )
        .await;
    assert_eq!(plain, 0);

    // A new account needs a full name and a valid password.
    let r = accept(&app, &t.host, json!({"token": token})).await;
    expect_field_errors(r, 422, &["full_name", "password"]).await;
    let r = accept(
        &app,
        &t.host,
        json!({"token": token, "full_name": "Nina", "password": "short"}),
    )
    .await;
    expect_field_errors(r, 422, &["password"]).await;
    problem(accept(&app, &t.host, json!({})).await, 422).await;

    let r = accept(
        &app,
        &t.host,
        json!({"token": token, "full_name": "Nina New", "password": "pw-115e048b4ac0"}),
    )
    .await;
    let b = expect_json(r, 200).await;
    assert_eq!(b["account_created"], true);
    assert_eq!(b["member"]["email"], "nina@new.test");
    assert_eq!(b["member"]["role"], "member");
    assert_eq!(b["member"]["email_verified"], true);
    let verified: bool = app
        .sql_one(
            "select email_verified_at is not null from public.users where email = 'nina@new.test'",
        )
        .await;
    assert!(verified, "the token proved the address");
    let token_nina = app.token(&t.host, "nina@new.test", "pw-115e048b4ac0").await;
    assert_eq!(app.role_of(&token_nina), "member");

    // Single use.
    let again = json!({"token": token, "full_name": "Again", "password": "pw-second-try"});
    expect_problem(accept(&app, &t.host, again).await, 410, "accepted").await;
    assert_eq!(
        statuses(&app, &t.host, &t.token, "").await,
        [["nina@new.test", "accepted"]]
    );
    let r = app.get_as(&t, "/api/v1/invitations?status=accepted").await;
    assert_eq!(
        expect_json(r, 200).await["results"][0]["accepted_by"],
        app.user_id("nina@new.test").await.as_str()
    );
    // An accepted invitation cannot be revoked.
    let r = app
        .delete(&t.host, &format!("/api/v1/invitations/{id}"), &t.token)
        .await;
    problem(r, 409).await;

    for action in ["invitation.created", "invitation.accepted", "member.added"] {
        assert_eq!(app.audit_count("tenant_acme", action).await, 1, "{action}");
    }
    let after: Value = app
        .sql_one("select after from tenant_acme.audit_log where action = 'invitation.accepted'")
        .await;
    assert_eq!(after["status"], "accepted");
    assert_eq!(after["account_created"], true);
    let created: Value = app
        .sql_one("select after from tenant_acme.audit_log where action = 'invitation.created'")
        .await;
    assert!(
        !created.to_string().contains(&token[4..]),
        "no token in the audit trail"
    );
}

#[tokio::test]
async fn expired_revoked_unknown_and_foreign_tokens_fail() {
    let (app, t) = spawn_tenant("acme").await;
    let g = app.tenant("globex").await;
    let new = |token: &str| json!({"token": token, "full_name": "Someone", "password": "pw-6afc305aaa05"});

    // Expired (moved into the past by SQL).
    let (expired_id, expired) = invited(&app, &t.host, &t.token, "old@x.test", "viewer").await;
    app.sql_with(
        "update tenant_acme.invitations set expires_at = now() - interval '1 second' where id = $1::text::uuid",
        &[&expired_id],
    )
    .await;
    let r = accept(&app, &t.host, new(&expired)).await;
    expect_problem(r, 410, "expired").await;
    assert_eq!(
        statuses(&app, &t.host, &t.token, "?status=expired").await,
        [["old@x.test", "expired"]]
    );
    // An expired invitation no longer blocks a new one for the same email.
    let (_, renewed) = invited(&app, &t.host, &t.token, "old@x.test", "viewer").await;

    // Revoked.
    let (revoked_id, revoked) = invited(&app, &t.host, &t.token, "gone@x.test", "member").await;
    let revoke = format!("/api/v1/invitations/{revoked_id}");
    assert_eq!(app.delete(&t.host, &revoke, &t.token).await.status(), 204);
    let r = accept(&app, &t.host, new(&revoked)).await;
    expect_problem(r, 410, "revoked").await;
    let r = app.delete(&t.host, &revoke, &t.token).await;
    assert_eq!(r.status(), 204, "revoking twice is a no-op");
    assert_eq!(
        app.audit_count("tenant_acme", "invitation.revoked").await,
        1
    );
    assert_eq!(
        statuses(&app, &t.host, &t.token, "?status=revoked").await,
        [["gone@x.test", "revoked"]]
    );

    // Unknown, and another tenant's token on this host (and the reverse); not on the base host
    // at all.
    let (_, globex_token) = invited(&app, &g.host, &g.token, "roamer@x.test", "member").await;
    for (host, token) in [
        (t.host.as_str(), "inv_nope"),
        (&t.host, &globex_token),
        (&g.host, &renewed),
        (BASE, &renewed),
    ] {
        problem(accept(&app, host, new(token)).await, 404).await;
    }
    // None of that created anything.
    assert_eq!(app.count("select count(*) from public.users where email in ('old@x.test', 'gone@x.test', 'roamer@x.test')").await, 0);
    // The right host still works for both.
    assert_eq!(
        accept(&app, &g.host, new(&globex_token)).await.status(),
        200
    );
    assert_eq!(accept(&app, &t.host, new(&renewed)).await.status(), 200);

    // Another tenant's invitation id is 404 on this host, and untouched.
    let (gid, _) = invited(&app, &g.host, &g.token, "other@x.test", "member").await;
    for id in [gid.as_str(), "not-a-uuid"] {
        let r = app
            .delete(&t.host, &format!("/api/v1/invitations/{id}"), &t.token)
            .await;
        problem(r, 404).await;
    }
    assert_eq!(
        statuses(&app, &g.host, &g.token, "?status=pending").await,
        [["other@x.test", "pending"]]
    );
    let r = app.get_as(&t, "/api/v1/invitations?status=lost").await;
    problem(r, 400).await;
}

#[tokio::test]
async fn invitation_rules_conflicts_existing_accounts_and_the_plan() {
    let (app, t) = spawn_tenant("acme").await;
    let g = app.tenant("globex").await;
    let admin = app.member(&t, "ann@acme.test", "admin").await;
    let member = app.member(&t, "bob@acme.test", "member").await;
    let viewer = app.member(&t, "vic@acme.test", "viewer").await;

    // Who may invite, and which roles.
    problem(
        app.get(&t.host, "/api/v1/invitations", Some(&viewer)).await,
        403,
    )
    .await;
    for (token, role, needle) in [
        (&member, "viewer", ""),
        (&admin, "owner", "ownership transfer"),
        (&t.token, "owner", ""),
    ] {
        let r = app.invite(&t.host, token, "x@x.test", role).await;
        expect_problem(r, 403, needle).await;
    }
    let r = app.invite(&t.host, &admin, "x@x.test", "admin").await;
    assert_eq!(r.status(), 201);
    let r = app.invite(&t.host, &admin, "bad", "captain").await;
    expect_field_errors(r, 422, &["email", "role"]).await;

    // Conflicts: an existing member, a pending invitation (whatever the case).
    for (token, email, needle) in [
        (&admin, "BOB@acme.test", "already a member"),
        (&t.token, "X@x.test", "pending"),
    ] {
        let r = app.invite(&t.host, token, email, "viewer").await;
        expect_problem(r, 409, needle).await;
    }
    assert_eq!(
        app.count("select count(*) from public.outbox where payload->>'kind' = 'invitation'")
            .await,
        1,
        "refused invitations send nothing"
    );

    // An existing, verified account (globex's owner) accepts with the token alone; a password
    // sent along is ignored, not checked and never set.
    app.verify_email(&g.owner_email).await;
    let (_, token) = invited(&app, &t.host, &admin, &g.owner_email, "viewer").await;
    let r = accept(
        &app,
        &t.host,
        json!({"token": token, "password": "wrong-password-here"}),
    )
    .await;
    let b = expect_json(r, 200).await;
    assert_eq!(b["account_created"], false);
    assert_eq!(b["member"]["id"], g.owner_id.as_str());
    assert_eq!(b["member"]["role"], "viewer");
    assert_eq!(b["member"]["email_verified"], true);
    assert_eq!(
        app.login(&t.host, &g.owner_email, "wrong-password-here")
            .await
            .status(),
        401
    );
    assert_eq!(
        app.login(&t.host, &g.owner_email, "password-of-globex")
            .await
            .status(),
        200
    );

    // Someone who became a member since being invited: 409, and the invitation stays pending.
    let (_, token) = invited(&app, &t.host, &admin, "late@x.test", "member").await;
    let r = app.call(Method::POST, &t.host, "/api/v1/users", Some(json!({"email": "late@x.test", "role": "member", "full_name": "Late", "password": "pw-0f9f7d314bc2"})), &admin).await;
    assert_eq!(r.status(), 201);
    problem(accept(&app, &t.host, json!({"token": token})).await, 409).await;

    // The plan counts accepted invitations: free allows 5 (acme has 6 now).
    app.sql("update public.companies set plan = 'free' where slug = 'acme'")
        .await;
    let (id, token) = invited(&app, &t.host, &admin, "full@x.test", "member").await;
    let full = json!({"token": token, "full_name": "Full", "password": "pw-b11e1277f0f0"});
    let r = accept(&app, &t.host, full).await;
    expect_problem(r, 403, "free plan allows at most 5").await;
    let status: String = app
        .sql_one_with(
            "select case when accepted_at is null then 'open' else 'used' end \
             from tenant_acme.invitations where id = $1::text::uuid",
            &[&id],
        )
        .await;
    assert_eq!(status, "open");
    assert_eq!(
        app.count("select count(*) from public.users where email = 'full@x.test'")
            .await,
        0,
        "rolled back with the refusal"
    );
}

#[tokio::test]
async fn two_concurrent_accepts_of_one_token_make_one_member() {
    let (app, t) = spawn_tenant("acme").await;
    let (_, token) = invited(&app, &t.host, &t.token, "twice@x.test", "member").await;
    let body = json!({"token": token, "full_name": "Twice", "password": "pw-race-of-two"});
    let (a, b) = tokio::join!(
        accept(&app, &t.host, body.clone()),
        accept(&app, &t.host, body)
    );
    let mut s = [a.status().as_u16(), b.status().as_u16()];
    s.sort();
    // The loser sees the token used (410), or loses the race to create the account (409).
    assert!(s == [200, 410] || s == [200, 409], "{s:?}");
    assert_eq!(app.count("select count(*) from public.memberships m join public.users u on u.id = m.user_id where u.email = 'twice@x.test'").await, 1);
    assert_eq!(
        app.audit_count("tenant_acme", "invitation.accepted").await,
        1
    );
}

/// An invitation never outlives its inviter's authority: demoting, deactivating or removing the
/// inviter revokes what they may no longer grant, and an acceptance is capped by the inviter's
/// role at that moment.
#[tokio::test]
async fn invitations_follow_their_inviters_authority() {
    let (app, t) = spawn_tenant("acme").await;
    app.sql("update public.companies set plan = 'enterprise'")
        .await;
    let admin = app.member(&t, "ada@acme.test", "admin").await;
    let admin_id = app.user_id("ada@acme.test").await;
    invited(&app, &t.host, &admin, "a1@new.test", "admin").await;
    let (_, as_member) = invited(&app, &t.host, &admin, "m1@new.test", "member").await;
    let user = format!("/api/v1/users/{admin_id}");

    // Demoted to member: may not invite at all any more, so both go.
    let r = app
        .call(
            Method::PATCH,
            &t.host,
            &user,
            Some(json!({"role": "member"})),
            &t.token,
        )
        .await;
    assert_eq!(r.status(), 200);
    let listed = statuses(&app, &t.host, &t.token, "").await;
    assert!(listed.iter().all(|row| row[1] == "revoked"), "{listed:?}");
    assert_eq!(
        app.audit_count("tenant_acme", "invitation.revoked").await,
        2
    );
    let body = json!({"token": as_member, "full_name": "M", "password": "pw-a02dd304f073"});
    expect_problem(accept(&app, &t.host, body).await, 410, "revoked").await;

    // Promoted again, invites; then deactivated (and removed): pending ones are revoked.
    let r = app
        .call(
            Method::PATCH,
            &t.host,
            &user,
            Some(json!({"role": "admin"})),
            &t.token,
        )
        .await;
    assert_eq!(r.status(), 200);
    let admin = app.token(&t.host, "ada@acme.test", MEMBER_PASSWORD).await;
    let (_, later) = invited(&app, &t.host, &admin, "m2@new.test", "member").await;
    let r = app
        .call(
            Method::POST,
            &t.host,
            &format!("{user}/deactivate"),
            None,
            &t.token,
        )
        .await;
    assert_eq!(r.status(), 200);
    let body = json!({"token": later, "full_name": "M", "password": "pw-ae99a0a0f244"});
    expect_problem(accept(&app, &t.host, body).await, 410, "revoked").await;
    assert_eq!(
        app.count("select count(*) from public.users where email like '%@new.test'")
            .await,
        0
    );

    // Checked again at acceptance: an inviter who lost the right to invite behind the API's back
    // (no revocation ran) takes the invitation with them; one who kept it still grants it.
    let boss = app.member(&t, "bo@acme.test", "admin").await;
    let (_, kept) = invited(&app, &t.host, &boss, "k1@new.test", "admin").await;
    let (_, lost) = invited(&app, &t.host, &boss, "l1@new.test", "viewer").await;
    let body = json!({"token": kept, "full_name": "K", "password": "pw-8a74a10af096"});
    let accepted = expect_json(accept(&app, &t.host, body).await, 200).await;
    assert_eq!(accepted["member"]["role"], "admin");
    app.sql_with(
        "update public.memberships set role = 'member' \
          where user_id = (select id from public.users where email = $1)",
        &[&"bo@acme.test"],
    )
    .await;
    let body = json!({"token": lost, "full_name": "L", "password": "pw-67fc2ad09da9"});
    expect_problem(accept(&app, &t.host, body).await, 410, "revoked").await;
    assert_eq!(
        app.count("select count(*) from public.users where email = 'l1@new.test'")
            .await,
        0
    );
}

/// Invitations are capped per address (by every organization together) and per organization,
/// per hour: nobody floods an inbox, or everyone's inboxes, by inviting and revoking.
#[tokio::test]
async fn invitations_are_capped_per_address_and_per_organization() {
    let caps = [
        ("INVITATIONS_PER_ADDRESS", "2"),
        ("INVITATIONS_PER_ORG", "3"),
    ];
    let (app, t) = spawn_tenant_with(&caps, "acme").await;
    let g = app.tenant("globex").await;
    for _ in 0..2 {
        let (id, _) = invited(&app, &t.host, &t.token, "a@x.test", "member").await;
        let path = format!("/api/v1/invitations/{id}");
        assert_eq!(app.delete(&t.host, &path, &t.token).await.status(), 204);
    }
    let r = app.invite(&t.host, &t.token, "a@x.test", "member").await;
    assert!(r.headers().contains_key("retry-after"));
    expect_problem(r, 429, "too many invitations").await;
    // The address's cap holds for every organization.
    problem(
        app.invite(&g.host, &g.token, "a@x.test", "member").await,
        429,
    )
    .await;
    // acme's third invitation is its last this hour; globex is not held back by acme's.
    invited(&app, &t.host, &t.token, "b@x.test", "member").await;
    problem(
        app.invite(&t.host, &t.token, "c@x.test", "member").await,
        429,
    )
    .await;
    invited(&app, &g.host, &g.token, "c@x.test", "member").await;
    let sent = app
        .count("select count(*) from public.outbox where payload->>'kind' = 'invitation'")
        .await;
    assert_eq!(sent, 4, "refused invitations send nothing");
}
