//! `POST /api/v1/register`: provisioning over HTTP.

use crate::helpers::*;
use serde_json::{json, Value};

fn body(slug: &str) -> Value {
    json!({
        "name": "Acme Inc",
        "slug": slug,
        "owner_email": "Owner@Acme.test",
        "owner_password": "correct horse battery",
        "plan": "professional",
    })
}

#[tokio::test]
async fn register_creates_a_ready_tenant() {
    let app = spawn_app().await;
    let r = app
        .post_json(BASE, "/api/v1/register", &body("acme"), None)
        .await;
    assert_eq!(r.status(), 201);
    let company: Value = r.json().await.unwrap();
    assert_eq!(company["slug"], "acme");
    assert_eq!(company["name"], "Acme Inc");
    assert_eq!(company["domain"], "acme.example.test");
    assert_eq!(company["plan"], "professional");
    assert_eq!(company["status"], "active");
    assert!(company["created_at"].is_string());
    assert_eq!(company["owner"]["email"], "Owner@Acme.test");

    assert_eq!(
        app.sql_one::<String>("select status from public.companies where slug = 'acme'")
            .await,
        "active"
    );
    assert_eq!(
        app.count(
            "select count(*) from public.domains where domain = 'acme.example.test' and is_primary"
        )
        .await,
        1
    );
    assert_eq!(
        app.sql_one::<String>(
            "select m.role from public.memberships m join public.companies c on c.id = m.company_id where c.slug = 'acme'"
        )
        .await,
        "owner"
    );
    assert_eq!(
        app.count("select count(*) from tenant_acme.projects").await,
        0
    );
    assert_eq!(
        app.sql_one::<i32>("select schema_version from public.companies where slug = 'acme'")
            .await,
        tenantry_tenant::tenant_head()
    );

    // Usable at once: the owner can log in on the new host (email case does not matter).
    let r = app
        .login(
            "acme.example.test",
            "owner@acme.TEST",
            "correct horse battery",
        )
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn register_validates_every_field() {
    let app = spawn_app().await;
    let r = app
        .post_json(
            BASE,
            "/api/v1/register",
            &json!({"name": " ", "slug": "Bad--Slug", "owner_email": "nope", "owner_password": "short", "plan": "gold"}),
            None,
        )
        .await;
    let fields = ["name", "slug", "owner_email", "owner_password", "plan"];
    expect_field_errors(r, 422, &fields).await;
    let r = app
        .post_json(BASE, "/api/v1/register", &json!({}), None)
        .await;
    let p = expect_field_error(r, "slug", "is required").await;
    assert_eq!(p["errors"]["slug"][0], "is required");

    // 129 characters is refused, never truncated; 128 is accepted.
    let mut b = body("longpw");
    b["owner_password"] = json!("x".repeat(129));
    let r = app.post_json(BASE, "/api/v1/register", &b, None).await;
    expect_field_errors(r, 422, &["owner_password"]).await;
    b["owner_password"] = json!("x".repeat(128));
    b["owner_email"] = json!("other@acme.test");
    assert_eq!(
        app.post_json(BASE, "/api/v1/register", &b, None)
            .await
            .status(),
        201
    );
    let r = app
        .login("longpw.example.test", "other@acme.test", &"x".repeat(127))
        .await;
    assert_eq!(r.status(), 401, "a prefix of the password must not work");

    // A common password, or one containing the email's name, is refused in any case.
    for (password, message) in [
        ("QWERTYUIOP", "most common"),
        ("1234567890", "most common"),
        ("my-OWNER-password", "email address's name"),
    ] {
        let mut b = body("commonpw");
        b["owner_password"] = json!(password);
        let r = app.post_json(BASE, "/api/v1/register", &b, None).await;
        expect_field_error(r, "owner_password", message).await;
    }

    for slug in ["www", "api", "admin", "public", "ab", "-ab", "ab-", "a_b"] {
        let r = app
            .post_json(BASE, "/api/v1/register", &body(slug), None)
            .await;
        expect_field_errors(r, 422, &["slug"]).await;
    }
    assert_eq!(app.count("select count(*) from public.companies").await, 1);
}

#[tokio::test]
async fn duplicate_slug_is_409_and_creates_nothing() {
    let app = spawn_app().await;
    assert_eq!(app.register("acme").await.status(), 201);
    let mut b = body("acme");
    b["owner_email"] = json!("someone@else.test");
    let r = app.post_json(BASE, "/api/v1/register", &b, None).await;
    expect_field_errors(r, 409, &["slug"]).await;
    assert_eq!(app.count("select count(*) from public.users").await, 1);
}

#[tokio::test]
async fn concurrent_signups_of_one_slug_yield_one_201() {
    let app = spawn_app().await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let http = app.http.clone();
        let url = format!("{}/api/v1/register", app.address);
        let mut b = body("race");
        b["owner_email"] = json!(format!("owner{i}@race.test"));
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .header("Host", BASE)
                .json(&b)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses.sort();
    assert_eq!(statuses, [201, 409, 409, 409, 409, 409, 409, 409, 409, 409]);
    app.assert_counts(&[
        ("select count(*) from public.companies", 1),
        ("select count(*) from public.users", 1),
        (
            "select count(*) from pg_namespace where nspname like 'tenant_%'",
            1,
        ),
    ])
    .await;
}

#[tokio::test]
async fn failed_signup_leaves_no_half_tenant() {
    let app = spawn_app().await;
    assert_eq!(app.register("first").await.status(), 201);
    // Same owner email as "first" with another password: refused after the schema and its
    // migrations were created inside the transaction.
    let second = |password: &str| {
        json!({"name": "Second", "slug": "second", "owner_email": "owner@first.test",
               "owner_password": password})
    };
    let r = app
        .post_json(BASE, "/api/v1/register", &second("pw-4f650865b537"), None)
        .await;
    expect_field_errors(r, 409, &["owner_email"]).await;
    app.assert_counts(&[
        (
            "select count(*) from public.companies where slug = 'second'",
            0,
        ),
        (
            "select count(*) from public.domains where domain like 'second.%'",
            0,
        ),
        (
            "select count(*) from pg_namespace where nspname = 'tenant_second'",
            0,
        ),
    ])
    .await;

    // Sign-up is no password oracle: the account's own password gets the very same answer.
    let wrong = app
        .post_json(BASE, "/api/v1/register", &second("pw-4f650865b537"), None)
        .await;
    let right = app
        .post_json(BASE, "/api/v1/register", &second("password-of-first"), None)
        .await;
    assert_eq!(
        (wrong.status().as_u16(), right.status().as_u16()),
        (409, 409)
    );
    let (wrong, right): (Value, Value) = (wrong.json().await.unwrap(), right.json().await.unwrap());
    assert_eq!(wrong, right);

    // Signed in (an account token on the base host), the same person may own a second company.
    let (account, _) = app
        .login_pair(BASE, "owner@first.test", "password-of-first")
        .await;
    let body = json!({"name": "Second", "slug": "second"});
    let r = app
        .post_json(BASE, "/api/v1/register", &body, Some(&account))
        .await;
    let created = expect_json(r, 201).await;
    assert_eq!(created["owner"]["email"], "owner@first.test");
    assert_eq!(app.count("select count(*) from public.users").await, 1);
    // A tenant token is not an account token; a bad token is not anonymous.
    let r = app
        .post_json(
            BASE,
            "/api/v1/register",
            &json!({"name": "Third", "slug": "third"}),
            Some("nope"),
        )
        .await;
    problem(r, 401).await;
    assert_eq!(
        app.count("select count(*) from public.companies where slug = 'third'")
            .await,
        0
    );
}

#[tokio::test]
async fn register_only_on_the_base_host() {
    let (app, t) = spawn_tenant("acme").await;
    let r = app
        .post_json(&t.host, "/api/v1/register", &body("other"), None)
        .await;
    problem(r, 404).await;
    assert_eq!(app.count("select count(*) from public.companies").await, 1);
}

/// Each sign-up creates a schema: they are throttled per client address (and in all), the
/// refused one creates nothing, and `0` turns the throttle off.
#[tokio::test]
async fn sign_ups_are_throttled_per_client() {
    let app = spawn_app_with(&[("SIGNUP_RATE_PER_HOUR", "2")]).await;
    assert_eq!(app.register("one").await.status(), 201);
    assert_eq!(app.register("two").await.status(), 201);
    let r = app.register("three").await;
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&wait), "Retry-After {wait}");
    expect_problem(r, 429, "too many sign-ups").await;
    assert_eq!(app.count("select count(*) from public.companies").await, 2);
    assert_eq!(
        app.count("select count(*) from pg_namespace where nspname = 'tenant_three'")
            .await,
        0
    );
    // The global limit counts every client's sign-ups.
    let app = spawn_app_with(&[
        ("SIGNUP_RATE_PER_HOUR", "100"),
        ("SIGNUP_GLOBAL_RATE_PER_HOUR", "1"),
    ])
    .await;
    assert_eq!(app.register("one").await.status(), 201);
    problem(app.register("two").await, 429).await;
}
