//! Failed-login throttling (per account and per IP, in Redis), the audit entries written by the
//! session routes, and token misuse that the spine tests do not cover.

use crate::helpers::*;
use serde_json::json;
use std::time::Duration;

/// `n` failed logins of `t`'s owner, each a 401.
async fn wrong_logins(app: &TestApp, t: &TestTenant, n: usize) {
    for _ in 0..n {
        let r = app.login(&t.host, &t.owner_email, "wrong-password").await;
        problem(r, 401).await;
    }
}

fn retry_after(r: &reqwest::Response) -> u64 {
    r.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds")
}

#[tokio::test]
async fn failed_logins_are_throttled_per_account_with_retry_after_and_the_window_ends() {
    let settings = [
        ("LOGIN_FAILURES_PER_ACCOUNT", "3"),
        ("LOGIN_THROTTLE_WINDOW_SECS", "2"),
    ];
    let (app, t) = spawn_tenant_with(&settings, "acme").await;
    wrong_logins(&app, &t, 3).await;
    // Now even the right password is refused until the window ends.
    let r = app.login(&t.host, &t.owner_email, "password-of-acme").await;
    let wait = retry_after(&r);
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    expect_problem(r, 429, "too many").await;
    // The same account is throttled on every host (the base host too), by email case-insensitively.
    problem(
        app.login(BASE, &t.owner_email.to_uppercase(), "password-of-acme")
            .await,
        429,
    )
    .await;
    // Another account from the same address is not affected.
    let other = app.tenant("globex").await;
    assert_eq!(app.owner_login(&other, "password-of-globex").await, 200);
    // Never a permanent lockout: after the window the right password works again.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(app.owner_login(&t, "password-of-acme").await, 200);
}

#[tokio::test]
async fn unknown_emails_are_throttled_exactly_like_known_ones() {
    let (app, t) = spawn_tenant_with(&[("LOGIN_FAILURES_PER_ACCOUNT", "2")], "acme").await;
    let mut answers = Vec::new();
    for email in [t.owner_email.as_str(), "nobody@nowhere.test"] {
        let mut statuses = Vec::new();
        for _ in 0..3 {
            statuses.push(app.login(&t.host, email, "wrong-password").await.status());
        }
        answers.push(statuses);
    }
    assert_eq!(
        answers[0], answers[1],
        "known and unknown emails look alike"
    );
    assert_eq!(answers[0], vec![401, 401, 429]);
}

#[tokio::test]
async fn failed_logins_are_throttled_per_ip_across_accounts() {
    let settings = [
        ("LOGIN_FAILURES_PER_ACCOUNT", "100"),
        ("LOGIN_FAILURES_PER_IP", "4"),
    ];
    let (app, t) = spawn_tenant_with(&settings, "acme").await;
    for i in 0..4 {
        let email = format!("guess-{i}@acme.test");
        problem(app.login(&t.host, &email, "wrong-password").await, 401).await;
    }
    let r = app.login(&t.host, &t.owner_email, "password-of-acme").await;
    assert!(retry_after(&r) >= 1);
    problem(r, 429).await;
}

#[tokio::test]
async fn a_successful_login_clears_the_account_counter() {
    let (app, t) = spawn_tenant_with(&[("LOGIN_FAILURES_PER_ACCOUNT", "3")], "acme").await;
    wrong_logins(&app, &t, 2).await;
    assert_eq!(app.owner_login(&t, "password-of-acme").await, 200);
    // Two more failures: without the reset this would be the fourth, and the third would be 429.
    wrong_logins(&app, &t, 2).await;
}

#[tokio::test]
async fn logins_refresh_reuse_logout_revocation_and_password_changes_are_audited() {
    // No grace: the immediate repeat below is reuse.
    let (app, t) = spawn_tenant_with(&[("REFRESH_REUSE_GRACE_SECS", "0")], "acme").await; // one successful login
    let before = app.audit_actions("tenant_acme").await;
    assert_eq!(before, vec!["auth.login.succeeded"]);

    wrong_logins(&app, &t, 1).await;
    problem(
        app.login(&t.host, "ghost@acme.test", "wrong-password")
            .await,
        401,
    )
    .await;
    let client = app.db.get().await.unwrap();
    let failed = client
        .query(
            "select actor_user_id, after->>'email', ip::text, request_id from tenant_acme.audit_log \
             where action = 'auth.login.failed' order by id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(failed.len(), 2);
    assert_eq!(
        failed[0]
            .get::<_, Option<uuid::Uuid>>(0)
            .map(|u| u.to_string()),
        Some(t.owner_id.clone())
    );
    assert_eq!(failed[1].get::<_, Option<uuid::Uuid>>(0), None);
    assert_eq!(failed[1].get::<_, String>(1), "ghost@acme.test");
    assert!(failed[0].get::<_, String>(2).starts_with("127.0.0.1"));
    assert!(failed[0].get::<_, Option<String>>(3).is_some());

    // Login with a refresh token, rotate it, then reuse the spent one.
    let (_, r1) = app.owner_session(&t).await;
    assert_eq!(app.refresh(&t.host, &r1).await.status(), 200);
    problem(app.refresh(&t.host, &r1).await, 401).await;

    // Logout of a fresh session.
    let (access, refresh) = app.owner_session(&t).await;
    assert_eq!(app.logout(&t.host, &refresh).await.status(), 204);

    // Revoke another session by id.
    let (_, victim_refresh) = app.owner_session(&t).await;
    let sessions = expect_json(
        app.get(&t.host, "/api/v1/auth/sessions", Some(&access))
            .await,
        200,
    )
    .await;
    let newest = sessions["results"][0]["id"].as_str().unwrap().to_owned();
    let r = app
        .delete(&t.host, &format!("/api/v1/auth/sessions/{newest}"), &access)
        .await;
    assert_eq!(r.status(), 204);
    problem(app.refresh(&t.host, &victim_refresh).await, 401).await;

    // Change the password (with a token whose session is still live: `access`'s was logged out
    // above, and a logged-out session may no longer change the account).
    let r = app
        .post_json(
            &t.host,
            "/api/v1/users/me/password",
            &json!({"current_password": "password-of-acme", "new_password": "a-brand-new-password"}),
            Some(&t.token),
        )
        .await;
    assert_eq!(r.status(), 204);

    let actions = app.audit_actions("tenant_acme").await;
    for expected in [
        "auth.login.failed",
        "auth.refresh.reused",
        "auth.logout",
        "auth.session.revoked",
        "user.password.changed",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected} missing from {actions:?}"
        );
    }
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "auth.login.succeeded")
            .count(),
        4
    );
    // Nothing of this reached another tenant's trail.
    app.tenant("globex").await;
    assert_eq!(
        app.audit_actions("tenant_globex").await,
        vec!["auth.login.succeeded"]
    );
    // The trail is append-only, even for the database owner.
    for sql in [
        "delete from tenant_acme.audit_log",
        "update tenant_acme.audit_log set action = 'x'",
    ] {
        let err = client.execute(sql, &[]).await.expect_err("append-only");
        let message = err.as_db_error().map(|e| e.message().to_owned());
        assert!(
            message.is_some_and(|m| m.contains("append-only")),
            "{sql}: {err:?}"
        );
    }
}

#[tokio::test]
async fn refresh_tokens_and_tokens_signed_with_an_unknown_kid_are_not_access_tokens() {
    let (app, t) = spawn_tenant("acme").await;
    let (_, refresh) = app.owner_session(&t).await;
    let r = app.get(&t.host, "/api/v1/projects", Some(&refresh)).await;
    expect_problem(r, 401, "invalid").await;

    // Same secret, but the header names a key the server does not know.
    let claims = app.jwt.verify(&t.token).unwrap();
    let token = sign_with_kid(&claims, "0000000000000000");
    problem(
        app.get(&t.host, "/api/v1/projects", Some(&token)).await,
        401,
    )
    .await;
    // The unchanged token still works, so the refusal is about the kid.
    assert_eq!(
        app.status_of(&t.host, "/api/v1/projects", &t.token).await,
        200
    );
}

/// Attempts are counted before the password is checked: of many parallel guesses at the same
/// account, exactly the limit reach the password check (401) and the rest are refused (429).
#[tokio::test]
async fn parallel_guesses_cannot_outrun_the_throttle() {
    let settings = [
        ("LOGIN_FAILURES_PER_ACCOUNT", "3"),
        ("LOGIN_FAILURES_PER_IP", "1000"),
    ];
    let (app, t) = spawn_tenant_with(&settings, "acme").await;
    let guesses = (0..12).map(|i| {
        let (app, t) = (&app, &t);
        async move {
            app.login(&t.host, &t.owner_email, &format!("guess-{i}"))
                .await
                .status()
                .as_u16()
        }
    });
    let mut statuses = futures_util::future::join_all(guesses).await;
    statuses.sort_unstable();
    assert_eq!(statuses, [vec![401; 3], vec![429; 9]].concat());
}

/// A successful login gives its counted attempt back, so an address that keeps logging in
/// correctly is never throttled; failures from it still are.
#[tokio::test]
async fn successful_logins_do_not_use_up_the_address_limit() {
    let (app, t) = spawn_tenant_with(&[("LOGIN_FAILURES_PER_IP", "3")], "acme").await;
    for _ in 0..6 {
        let r = app.login(&t.host, &t.owner_email, "password-of-acme").await;
        assert_eq!(r.status(), 200);
    }
    wrong_logins(&app, &t, 3).await;
    let r = app.login(&t.host, &t.owner_email, "password-of-acme").await;
    expect_problem(r, 429, "too many").await;
}

/// A failed login is recorded without flooding the trail and without telling an admin anything
/// about accounts that are not members here.
#[tokio::test]
async fn failed_logins_are_recorded_small_and_reveal_no_other_accounts() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    // Globex's owner (an account, but no member of acme) and a nobody fail on acme's host.
    for email in [globex.owner_email.as_str(), "nobody@nowhere.test"] {
        problem(app.login(&acme.host, email, "wrong-password-1").await, 401).await;
    }
    // A 1 MiB "email" is refused alike, and stored as nothing.
    let huge = "x".repeat(1024 * 1024 - 200);
    problem(app.login(&acme.host, &huge, "wrong-password-1").await, 401).await;
    // Acme's own owner is named.
    problem(
        app.login(&acme.host, &acme.owner_email, "wrong-password-1")
            .await,
        401,
    )
    .await;
    let rows = app
        .sql_rows_with(
            "select actor_user_id::text, after::text, length(after::text) from tenant_acme.audit_log \
              where action = 'auth.login.failed' order by id",
            &[],
        )
        .await;
    let entries: Vec<(Option<String>, String, i32)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(entries.len(), 4, "{entries:?}");
    assert_eq!(
        entries[0].0, None,
        "another organization's account is not named"
    );
    assert!(entries[0].1.contains(&globex.owner_email));
    assert_eq!(entries[1].0, None);
    assert_eq!(entries[2].0, None);
    assert!(
        entries[2].2 < 100,
        "the huge value is not stored: {}",
        entries[2].1
    );
    assert_eq!(entries[3].0.as_deref(), Some(acme.owner_id.as_str()));
}

/// Every password check goes through the login throttle: the current-password check of a
/// password change and the owner's confirmation of a transfer cannot be used to guess.
#[tokio::test]
async fn password_checks_outside_login_are_throttled_too() {
    let settings = [("LOGIN_FAILURES_PER_ACCOUNT", "3")];
    let (app, t) = spawn_tenant_with(&settings, "acme").await;
    let change = |current: &str| json!({"current_password": current, "new_password": "a-brand-new-password"});
    for i in 0..3 {
        let r = app
            .post_json(
                &t.host,
                "/api/v1/users/me/password",
                &change(&format!("guess-{i}")),
                Some(&t.token),
            )
            .await;
        expect_field_error(r, "current_password", "incorrect").await;
    }
    // Now even the right password is refused for a while, and so is a transfer confirmation
    // and a login: one counter per account.
    let r = app
        .post_json(
            &t.host,
            "/api/v1/users/me/password",
            &change("password-of-acme"),
            Some(&t.token),
        )
        .await;
    expect_problem(r, 429, "too many").await;
    let r = app
        .post_json(
            &t.host,
            "/api/v1/organization/transfer-ownership",
            &json!({"user_id": t.owner_id, "password": "password-of-acme"}),
            Some(&t.token),
        )
        .await;
    expect_problem(r, 429, "too many").await;
    expect_problem(
        app.login(&t.host, &t.owner_email, "password-of-acme").await,
        429,
        "too many",
    )
    .await;
    assert_eq!(
        app.audit_count("tenant_acme", "user.password.changed")
            .await,
        0
    );
}

/// A reset link cannot take back a deactivated account: the confirmation is refused and the
/// password stays as it was.
#[tokio::test]
async fn a_deactivated_account_cannot_complete_a_reset() {
    let (app, t) = spawn_tenant("acme").await;
    let r = app
        .post_json(
            BASE,
            "/api/v1/auth/password-reset",
            &json!({"email": t.owner_email}),
            None,
        )
        .await;
    assert_eq!(r.status(), 202);
    let link: String = app
        .sql_one_with(
            "select payload->>'link' from public.outbox where payload->>'kind' = 'password_reset' \
              and payload->>'to' = $1",
            &[&t.owner_email],
        )
        .await;
    let token = link.split("token=").nth(1).unwrap().to_owned();
    let set_active = |active: bool| {
        let (app, email) = (&app, t.owner_email.clone());
        async move {
            app.sql_with(
                "update public.users set is_active = $2 where lower(email) = lower($1)",
                &[&email, &active],
            )
            .await
        }
    };
    set_active(false).await;
    let r = app
        .post_json(
            BASE,
            "/api/v1/auth/password-reset/confirm",
            &json!({"token": token, "new_password": "pw-0196134e0e94"}),
            None,
        )
        .await;
    expect_problem(r, 403, "deactivated").await;
    set_active(true).await;
    assert_eq!(app.owner_login(&t, "password-of-acme").await, 200);
    assert_eq!(app.owner_login(&t, "pw-0196134e0e94").await, 401);
}

/// A Redis that accepts connections and never answers (a hung server, a black-holed network)
/// costs each throttled request at most the throttle's small budget: logins and reset requests
/// still work.
#[tokio::test]
async fn logins_do_not_wait_for_a_redis_that_never_answers() {
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://127.0.0.1:{}", hole.local_addr().unwrap().port());
    std::thread::spawn(move || {
        // Accept and hold every connection, answering nothing.
        let held: Vec<_> = hole.incoming().collect();
        drop(held);
    });
    let (app, t) = spawn_tenant_with(&[("REDIS_URL", &url)], "acme").await;
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let r = app.login(&t.host, &t.owner_email, "password-of-acme").await;
        assert_eq!(r.status(), 200);
        // Before the budget a hung Redis held each login for about ten seconds.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
    problem(
        app.login(&t.host, &t.owner_email, "wrong-password-1").await,
        401,
    )
    .await;
    let r = app
        .post_json(
            BASE,
            "/api/v1/auth/password-reset",
            &json!({"email": t.owner_email}),
            None,
        )
        .await;
    assert_eq!(r.status(), 202);
}
