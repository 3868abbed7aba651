//! `POST /api/v1/auth/token` and the rules every access token is held to.

use crate::helpers::*;
use base64::Engine;
use chrono::Utc;
use reqwest::Method;
use serde_json::{json, Value};
use tenantry_http::tokens::Claims;

#[tokio::test]
async fn login_issues_a_bearer_token() {
    let (app, t) = spawn_tenant("acme").await;
    let r = app.login(&t.host, &t.owner_email, "password-of-acme").await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    let claims = app
        .jwt
        .verify(body["access_token"].as_str().unwrap())
        .unwrap();
    assert_eq!(claims.sub.to_string(), t.owner_id);
    assert_eq!(
        claims.tenant.map(|c| c.to_string()),
        Some(t.company_id.clone())
    );
    assert_eq!(claims.role.as_deref(), Some("owner"));
    assert!(claims.sid.is_some(), "tied to a session");
    assert!(body["refresh_token"]
        .as_str()
        .is_some_and(|r| r.starts_with("rt_") && r.len() >= 43));
    assert_eq!(claims.exp - claims.iat, 900);
}

#[tokio::test]
async fn wrong_password_unknown_email_and_non_members_get_the_same_401() {
    let (app, a) = spawn_tenant("acme").await;
    let b = app.tenant("globex").await;
    let wrong = problem(
        app.login(&a.host, &a.owner_email, "wrong-password").await,
        401,
    )
    .await;
    let unknown = problem(
        app.login(&a.host, "nobody@acme.test", "password-of-acme")
            .await,
        401,
    )
    .await;
    // globex's owner is a real account with the right password, but not a member of acme.
    let outsider = problem(
        app.login(&a.host, &b.owner_email, "password-of-globex")
            .await,
        401,
    )
    .await;
    assert_eq!(wrong, unknown);
    assert_eq!(wrong, outsider);
    let r = app
        .post_json(
            &a.host,
            "/api/v1/auth/token",
            &json!({"email": "x@y.z"}),
            None,
        )
        .await;
    expect_field_errors(r, 422, &["password"]).await;

    // An inactive account cannot log in.
    app.sql_with(
        "update public.users set is_active = false where id = $1::text::uuid",
        &[&a.owner_id],
    )
    .await;
    problem(
        app.login(&a.host, &a.owner_email, "password-of-acme").await,
        401,
    )
    .await;
}

#[tokio::test]
async fn missing_or_bad_tokens_are_401_with_www_authenticate() {
    let (app, t) = spawn_tenant("acme").await;
    let cases: Vec<Option<String>> = vec![
        None,
        Some("Bearer".into()),
        Some("Bearer not-a-jwt".into()),
        Some(format!("Basic {}", t.token)),
        Some(format!("Bearer {}x", t.token)),
    ];
    for auth in cases {
        let mut r = app.request(Method::GET, &t.host, "/api/v1/projects");
        if let Some(a) = &auth {
            r = r.header("Authorization", a);
        }
        let r = r.send().await.unwrap();
        assert_eq!(
            r.headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer"),
            "{auth:?}"
        );
        problem(r, 401).await;
    }
}

#[tokio::test]
async fn forged_and_stale_tokens_are_refused() {
    let (app, t) = spawn_tenant("acme").await;
    let good = app.jwt.verify(&t.token).unwrap();
    let now = Utc::now().timestamp();
    let forged = |c: Claims| app.jwt.sign(&c).unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = t.token.split('.').nth(1).unwrap().to_owned();
    let other_key = tenantry_http::tokens::JwtKeys::new(
        &secrecy::SecretString::from("some-other-secret-some-other-secret!!"),
        "tenantry",
        "tenantry-api",
    );
    let tokens = vec![
        (
            "expired",
            forged(Claims {
                exp: now - 120,
                iat: now - 1200,
                nbf: now - 1200,
                ..good.clone()
            }),
        ),
        (
            "not yet valid",
            forged(Claims {
                nbf: now + 600,
                ..good.clone()
            }),
        ),
        (
            "wrong issuer",
            forged(Claims {
                iss: "evil".into(),
                ..good.clone()
            }),
        ),
        (
            "wrong audience",
            forged(Claims {
                aud: "other".into(),
                ..good.clone()
            }),
        ),
        (
            "unknown role",
            forged(Claims {
                role: Some("superuser".into()),
                ..good.clone()
            }),
        ),
        ("wrong key", other_key.sign(&good).unwrap()),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64.encode(format!(
                    r#"{{"alg":"none","typ":"JWT","kid":"{}"}}"#,
                    app.jwt.current_kid()
                )),
                payload
            ),
        ),
    ];
    for (what, token) in tokens {
        let r = app.get(&t.host, "/api/v1/projects", Some(&token)).await;
        assert_eq!(r.status(), 401, "{what}");
    }
    // A correctly signed token with the iat claim missing is refused too.
    let mut claims = serde_json::to_value(&good).unwrap();
    claims.as_object_mut().unwrap().remove("iat");
    let kid = app.jwt.current_kid();
    let token = sign_with_kid(&claims, kid);
    let projects = "/api/v1/projects";
    assert_eq!(
        app.status_of(&t.host, projects, &token).await,
        401,
        "no iat"
    );
    // And the same claims with iat put back are accepted, so the refusal above is about iat.
    claims["iat"] = json!(now);
    let token = sign_with_kid(&claims, kid);
    assert_eq!(
        app.status_of(&t.host, projects, &token).await,
        200,
        "with iat"
    );
}

#[tokio::test]
async fn a_token_for_another_tenant_is_403() {
    let (app, a) = spawn_tenant("acme").await;
    let b = app.tenant("globex").await;
    let r = app.get(&b.host, "/api/v1/projects", Some(&a.token)).await;
    expect_problem(r, 403, "another organization").await;
    let r = app
        .post_project(&b.host, &a.token, json!({"name": "sneaky"}))
        .await;
    problem(r, 403).await;
    assert_eq!(
        app.count("select count(*) from tenant_globex.projects")
            .await,
        0
    );
}
