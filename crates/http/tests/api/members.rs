//! Members and roles: listing, adding, role changes, removal, (de)activation, the role rules,
//! tenant scoping, the plan limit, and their effect on refresh and login.

use crate::helpers::*;
use reqwest::{Method, Response};
use serde_json::{json, Value};

pub const MEMBER_PASSWORD: &str = "member-password-123";

pub async fn user_id(app: &TestApp, email: &str) -> String {
    app.sql_one::<uuid::Uuid>(&format!(
        "select id from public.users where lower(email) = lower('{email}')"
    ))
    .await
    .to_string()
}

pub async fn call(
    app: &TestApp,
    method: Method,
    host: &str,
    path: &str,
    body: Option<Value>,
    token: &str,
) -> Response {
    let mut r = app.request(method, host, path).bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    r.send().await.expect("request")
}

/// Logs in and returns (access token, refresh token).
pub async fn login_pair(
    app: &TestApp,
    host: &str,
    email: &str,
    password: &str,
) -> (String, String) {
    let r = app.login(host, email, password).await;
    assert_eq!(r.status(), 200, "login {email} at {host}");
    let b: Value = r.json().await.unwrap();
    (
        b["access_token"].as_str().unwrap().into(),
        b["refresh_token"].as_str().unwrap().into(),
    )
}

pub async fn refresh(app: &TestApp, host: &str, token: &str) -> Response {
    app.post_json(
        host,
        "/api/v1/auth/token/refresh",
        &json!({"refresh_token": token}),
        None,
    )
    .await
}

/// The role in a fresh access token.
pub fn role_of(app: &TestApp, access: &str) -> String {
    app.jwt.verify(access).unwrap().role.unwrap()
}

pub async fn audit_count(app: &TestApp, schema: &str, action: &str) -> i64 {
    app.sql_one(&format!(
        "select count(*) from {schema}.audit_log where action = '{action}'"
    ))
    .await
}

async fn role_in(app: &TestApp, user: &str, company: &str) -> Option<String> {
    let client = app.db.get().await.unwrap();
    client
        .query_opt(
            "select role from public.memberships where user_id = $1::text::uuid and company_id = $2::text::uuid",
            &[&user, &company],
        )
        .await
        .unwrap()
        .map(|r| r.get(0))
}

#[tokio::test]
async fn viewers_list_members_with_role_filter_search_and_keyset_pages() {
    let app = spawn_app().await;
    let t = app.tenant("acme").await;
    app.member(&t, "ann@acme.test", "admin").await;
    app.member(&t, "bob@acme.test", "member").await;
    let viewer = app.member(&t, "vic@acme.test", "viewer").await;
    app.sql("update public.users set full_name = 'Annabel Lee' where email = 'ann@acme.test'")
        .await;
    // Someone of another tenant never shows up.
    let g = app.tenant("globex").await;
    app.member(&g, "ann@globex.test", "admin").await;

    let r = app.get(&t.host, "/api/v1/users", Some(&viewer)).await;
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    let results = b["results"].as_array().unwrap();
    let emails: Vec<&str> = results
        .iter()
        .map(|m| m["email"].as_str().unwrap())
        .collect();
    assert_eq!(
        emails,
        [
            "owner@acme.test",
            "ann@acme.test",
            "bob@acme.test",
            "vic@acme.test"
        ],
        "in the order they joined"
    );
    assert!(b["next"].is_null());
    let owner = &results[0];
    assert_eq!(owner["id"], t.owner_id.as_str());
    assert_eq!(owner["role"], "owner");
    assert_eq!(owner["is_active"], true);
    assert_eq!(owner["email_verified"], false);
    assert!(owner["joined_at"].is_string());
    assert!(owner.get("password_hash").is_none());

    let r = app
        .get(&t.host, "/api/v1/users?role=admin", Some(&viewer))
        .await;
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["results"].as_array().unwrap().len(), 1);
    assert_eq!(b["results"][0]["email"], "ann@acme.test");
    // Search matches the email or the full name, case-insensitively.
    let r = app
        .get(&t.host, "/api/v1/users?search=ANN", Some(&viewer))
        .await;
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["results"].as_array().unwrap().len(), 1);
    let r = app
        .get(&t.host, "/api/v1/users?search=lee", Some(&viewer))
        .await;
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["results"][0]["full_name"], "Annabel Lee");
    let r = app
        .get(&t.host, "/api/v1/users?search=%25", Some(&viewer))
        .await;
    let b: Value = r.json().await.unwrap();
    assert_eq!(
        b["results"].as_array().unwrap().len(),
        0,
        "% is not a wildcard"
    );

    // Keyset pages: two, then the other two, no overlap; the filter survives in `next`.
    let r = app
        .get(&t.host, "/api/v1/users?limit=2", Some(&viewer))
        .await;
    let b: Value = r.json().await.unwrap();
    let first: Vec<String> = b["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["email"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(first, ["owner@acme.test", "ann@acme.test"]);
    let next = b["next"].as_str().unwrap();
    assert!(
        next.starts_with("http://acme.example.test/api/v1/users?"),
        "{next}"
    );
    let path = &next[next.find("/api/").unwrap()..];
    let r = app.get(&t.host, path, Some(&viewer)).await;
    let b: Value = r.json().await.unwrap();
    let second: Vec<&str> = b["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["email"].as_str().unwrap())
        .collect();
    assert_eq!(second, ["bob@acme.test", "vic@acme.test"]);
    assert!(b["next"].is_null());
    let r = app
        .get(&t.host, "/api/v1/users?role=viewer&limit=1", Some(&viewer))
        .await;
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["results"][0]["email"], "vic@acme.test");
    assert!(b["next"].is_null());

    problem(
        app.get(&t.host, "/api/v1/users?role=boss", Some(&viewer))
            .await,
        400,
    )
    .await;
    problem(
        app.get(&t.host, "/api/v1/users?cursor=!!", Some(&viewer))
            .await,
        400,
    )
    .await;
    problem(
        app.get(&t.host, "/api/v1/users?limit=0", Some(&viewer))
            .await,
        400,
    )
    .await;
    problem(app.get(&t.host, "/api/v1/users", None).await, 401).await;
    // Another tenant's token, and the base host.
    problem(app.get(&t.host, "/api/v1/users", Some(&g.token)).await, 403).await;
    problem(app.get(BASE, "/api/v1/users", Some(&viewer)).await, 404).await;

    // One member by id.
    let ann = user_id(&app, "ann@acme.test").await;
    let r = app
        .get(&t.host, &format!("/api/v1/users/{ann}"), Some(&viewer))
        .await;
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(
        (b["email"].as_str(), b["role"].as_str()),
        (Some("ann@acme.test"), Some("admin"))
    );
}

#[tokio::test]
async fn role_hierarchy_is_enforced() {
    let app = spawn_app().await;
    let t = app.tenant("acme").await;
    let admin = app.member(&t, "ann@acme.test", "admin").await;
    let member = app.member(&t, "bob@acme.test", "member").await;
    let viewer = app.member(&t, "vic@acme.test", "viewer").await;
    let ann = user_id(&app, "ann@acme.test").await;
    let bob = user_id(&app, "bob@acme.test").await;
    let owner = t.owner_id.clone();
    let add = |role: &str, email: &str| json!({"email": email, "role": role, "full_name": "New Person", "password": "new-person-password"});

    // Members and viewers cannot add or change anyone.
    for token in [&member, &viewer] {
        let p = problem(
            call(
                &app,
                Method::POST,
                &t.host,
                "/api/v1/users",
                Some(add("viewer", "x@acme.test")),
                token,
            )
            .await,
            403,
        )
        .await;
        assert!(
            p["detail"].as_str().unwrap().contains("members.manage"),
            "{p}"
        );
        problem(
            call(
                &app,
                Method::PATCH,
                &t.host,
                &format!("/api/v1/users/{ann}"),
                Some(json!({"role": "viewer"})),
                token,
            )
            .await,
            403,
        )
        .await;
        problem(
            call(
                &app,
                Method::DELETE,
                &t.host,
                &format!("/api/v1/users/{bob}"),
                None,
                token,
            )
            .await,
            403,
        )
        .await;
    }

    // An admin cannot grant owner (to a new member or by a role change) ...
    let p = problem(
        call(
            &app,
            Method::POST,
            &t.host,
            "/api/v1/users",
            Some(add("owner", "x@acme.test")),
            &admin,
        )
        .await,
        403,
    )
    .await;
    assert!(
        p["detail"].as_str().unwrap().contains("ownership transfer"),
        "{p}"
    );
    problem(
        call(
            &app,
            Method::PATCH,
            &t.host,
            &format!("/api/v1/users/{bob}"),
            Some(json!({"role": "owner"})),
            &admin,
        )
        .await,
        403,
    )
    .await;
    // ... nor can the owner: the owner role only moves by transfer.
    problem(
        call(
            &app,
            Method::PATCH,
            &t.host,
            &format!("/api/v1/users/{bob}"),
            Some(json!({"role": "owner"})),
            &t.token,
        )
        .await,
        403,
    )
    .await;
    // An admin cannot act on the owner in any way.
    for (method, path, body) in [
        (
            Method::PATCH,
            format!("/api/v1/users/{owner}"),
            Some(json!({"role": "viewer"})),
        ),
        (Method::DELETE, format!("/api/v1/users/{owner}"), None),
        (
            Method::POST,
            format!("/api/v1/users/{owner}/deactivate"),
            None,
        ),
    ] {
        let p = problem(call(&app, method, &t.host, &path, body, &admin).await, 403).await;
        assert!(p["detail"].as_str().unwrap().contains("owner"), "{p}");
    }
    // Nobody acts on themselves here: not the owner, not an admin.
    for (token, me) in [(&t.token, &owner), (&admin, &ann)] {
        problem(
            call(
                &app,
                Method::PATCH,
                &t.host,
                &format!("/api/v1/users/{me}"),
                Some(json!({"role": "viewer"})),
                token,
            )
            .await,
            403,
        )
        .await;
        problem(
            call(
                &app,
                Method::DELETE,
                &t.host,
                &format!("/api/v1/users/{me}"),
                None,
                token,
            )
            .await,
            403,
        )
        .await;
        problem(
            call(
                &app,
                Method::POST,
                &t.host,
                &format!("/api/v1/users/{me}/deactivate"),
                None,
                token,
            )
            .await,
            403,
        )
        .await;
    }
    let p = problem(
        call(
            &app,
            Method::DELETE,
            &t.host,
            &format!("/api/v1/users/{ann}"),
            None,
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
            .contains("your own membership"),
        "{p}"
    );

    // An admin can add an admin and change members' roles.
    let r = call(
        &app,
        Method::POST,
        &t.host,
        "/api/v1/users",
        Some(add("admin", "second@acme.test")),
        &admin,
    )
    .await;
    assert_eq!(r.status(), 201);
    let r = call(
        &app,
        Method::PATCH,
        &t.host,
        &format!("/api/v1/users/{bob}"),
        Some(json!({"role": "admin"})),
        &admin,
    )
    .await;
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["role"], "admin");
    // Invalid roles are 422.
    let p = problem(
        call(
            &app,
            Method::PATCH,
            &t.host,
            &format!("/api/v1/users/{bob}"),
            Some(json!({"role": "boss"})),
            &admin,
        )
        .await,
        422,
    )
    .await;
    assert!(p["errors"]["role"].is_array());

    // Nothing above changed the owner or the self-targeted memberships.
    assert_eq!(
        role_in(&app, &owner, &t.company_id).await.as_deref(),
        Some("owner")
    );
    assert_eq!(
        role_in(&app, &ann, &t.company_id).await.as_deref(),
        Some("admin")
    );
    let owners: i64 = app
        .sql_one("select count(*) from public.memberships where role = 'owner'")
        .await;
    assert_eq!(owners, 1);
    let inactive: i64 = app
        .sql_one("select count(*) from public.memberships where not is_active")
        .await;
    assert_eq!(inactive, 0);
}

#[tokio::test]
async fn a_demoted_admin_cannot_act_with_a_stale_token() {
    let app = spawn_app().await;
    let t = app.tenant("acme").await;
    let stale = app.member(&t, "ann@acme.test", "admin").await;
    app.member(&t, "bob@acme.test", "member").await;
    let ann = user_id(&app, "ann@acme.test").await;
    let bob = user_id(&app, "bob@acme.test").await;
    let r = call(
        &app,
        Method::PATCH,
        &t.host,
        &format!("/api/v1/users/{ann}"),
        Some(json!({"role": "member"})),
        &t.token,
    )
    .await;
    assert_eq!(r.status(), 200);
    // The access token still says admin; the membership, re-read under the lock, does not.
    assert_eq!(role_of(&app, &stale), "admin");
    let p = problem(
        call(
            &app,
            Method::DELETE,
            &t.host,
            &format!("/api/v1/users/{bob}"),
            None,
            &stale,
        )
        .await,
        403,
    )
    .await;
    assert!(
        p["detail"].as_str().unwrap().contains("the member role"),
        "{p}"
    );
    assert_eq!(
        role_in(&app, &bob, &t.company_id).await.as_deref(),
        Some("member")
    );
}

#[tokio::test]
async fn adding_members_new_and_existing_accounts() {
    let app = spawn_app().await;
    let t = app.tenant("acme").await;
    let g = app.tenant("globex").await;

    // A new email needs a full name and a valid password.
    let p = problem(
        call(
            &app,
            Method::POST,
            &t.host,
            "/api/v1/users",
            Some(json!({"email": "new@acme.test", "role": "member"})),
            &t.token,
        )
        .await,
        422,
    )
    .await;
    assert!(
        p["errors"]["password"].is_array() && p["errors"]["full_name"].is_array(),
        "{p}"
    );
    let p = problem(
        call(&app, Method::POST, &t.host, "/api/v1/users", Some(json!({"email": "new@acme.test", "role": "member", "full_name": "New", "password": "short"})), &t.token).await,
        422,
    )
    .await;
    assert!(
        p["errors"]["password"][0]
            .as_str()
            .unwrap()
            .contains("at least 10"),
        "{p}"
    );
    let p = problem(
        call(
            &app,
            Method::POST,
            &t.host,
            "/api/v1/users",
            Some(json!({"email": "not-an-email", "role": "chief"})),
            &t.token,
        )
        .await,
        422,
    )
    .await;
    assert!(
        p["errors"]["email"].is_array() && p["errors"]["role"].is_array(),
        "{p}"
    );
    let none: i64 = app
        .sql_one("select count(*) from public.users where email = 'new@acme.test'")
        .await;
    assert_eq!(none, 0, "nothing half-created");

    let r = call(&app, Method::POST, &t.host, "/api/v1/users", Some(json!({"email": "New@Acme.test", "role": "member", "full_name": " Nora New ", "password": "nora-password-1"})), &t.token).await;
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let b: Value = r.json().await.unwrap();
    assert_eq!(
        location,
        format!("/api/v1/users/{}", b["id"].as_str().unwrap())
    );
    assert_eq!(b["email"], "New@Acme.test");
    assert_eq!(b["full_name"], "Nora New");
    assert_eq!(b["role"], "member");
    assert_eq!(b["is_active"], true);
    assert_eq!(
        b["email_verified"], false,
        "an admin adding an address proves nothing"
    );
    // The new account logs in with its initial password, with its role.
    let token = app.token(&t.host, "new@acme.test", "nora-password-1").await;
    assert_eq!(role_of(&app, &token), "member");
    // Twice: 409.
    let p = problem(
        call(
            &app,
            Method::POST,
            &t.host,
            "/api/v1/users",
            Some(json!({"email": "new@acme.test", "role": "viewer"})),
            &t.token,
        )
        .await,
        409,
    )
    .await;
    assert!(p["errors"]["email"].is_array(), "{p}");

    // An existing account (globex's owner) only gets a membership; a password sent along is
    // ignored, never set.
    let r = call(&app, Method::POST, &t.host, "/api/v1/users", Some(json!({"email": g.owner_email, "role": "viewer", "password": "attacker-chosen-password"})), &t.token).await;
    assert_eq!(r.status(), 201);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["id"], g.owner_id.as_str());
    assert_eq!(
        app.login(&t.host, &g.owner_email, "attacker-chosen-password")
            .await
            .status(),
        401
    );
    let token = app
        .token(&t.host, &g.owner_email, "password-of-globex")
        .await;
    assert_eq!(role_of(&app, &token), "viewer");
    assert_eq!(
        role_in(&app, &g.owner_id, &g.company_id).await.as_deref(),
        Some("owner")
    );

    // Audited with the state after, in acme's trail only.
    assert_eq!(audit_count(&app, "tenant_acme", "member.added").await, 2);
    assert_eq!(audit_count(&app, "tenant_globex", "member.added").await, 0);
    let after: Value = app
        .sql_one("select after from tenant_acme.audit_log where action = 'member.added' order by id limit 1")
        .await;
    assert_eq!(after["email"], "New@Acme.test");
    assert_eq!(after["role"], "member");
    assert_eq!(after["account_created"], true);
    let actor: uuid::Uuid = app
        .sql_one("select actor_user_id from tenant_acme.audit_log where action = 'member.added' order by id limit 1")
        .await;
    assert_eq!(actor.to_string(), t.owner_id);
}

#[tokio::test]
async fn another_tenants_user_is_404_and_untouched() {
    let app = spawn_app().await;
    let a = app.tenant("acme").await;
    let g = app.tenant("globex").await;
    app.member(&g, "gina@globex.test", "member").await;
    let gina = user_id(&app, "gina@globex.test").await;
    // Someone in both companies.
    app.member(&g, "both@x.test", "member").await;
    let both = user_id(&app, "both@x.test").await;
    app.sql(&format!(
        "insert into public.memberships (id, user_id, company_id, role) values (gen_random_uuid(), '{both}', '{}', 'member')",
        a.company_id
    ))
    .await;
    let (_, globex_refresh) = login_pair(&app, &g.host, "both@x.test", MEMBER_PASSWORD).await;

    for target in [&gina, &g.owner_id] {
        for (method, path, body) in [
            (Method::GET, format!("/api/v1/users/{target}"), None),
            (
                Method::PATCH,
                format!("/api/v1/users/{target}"),
                Some(json!({"role": "viewer"})),
            ),
            (Method::DELETE, format!("/api/v1/users/{target}"), None),
            (
                Method::POST,
                format!("/api/v1/users/{target}/deactivate"),
                None,
            ),
            (
                Method::POST,
                format!("/api/v1/users/{target}/activate"),
                None,
            ),
        ] {
            problem(
                call(&app, method, &a.host, &path, body, &a.token).await,
                404,
            )
            .await;
        }
    }
    // Nobody at all, and ids that are not UUIDs.
    problem(
        call(
            &app,
            Method::PATCH,
            &a.host,
            &format!("/api/v1/users/{}", uuid::Uuid::now_v7()),
            Some(json!({"role": "viewer"})),
            &a.token,
        )
        .await,
        404,
    )
    .await;
    problem(
        call(
            &app,
            Method::GET,
            &a.host,
            "/api/v1/users/not-a-uuid",
            None,
            &a.token,
        )
        .await,
        404,
    )
    .await;
    problem(
        call(
            &app,
            Method::POST,
            &a.host,
            "/api/v1/users/42/deactivate",
            None,
            &a.token,
        )
        .await,
        404,
    )
    .await;
    // `/users/me` is still the caller's own account.
    let r = app.get(&a.host, "/api/v1/users/me", Some(&a.token)).await;
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["email"], a.owner_email.as_str());
    problem(
        call(
            &app,
            Method::DELETE,
            &a.host,
            "/api/v1/users/me",
            None,
            &a.token,
        )
        .await,
        405,
    )
    .await;

    // Removing the shared member from acme leaves their globex membership and sessions alone.
    let r = call(
        &app,
        Method::DELETE,
        &a.host,
        &format!("/api/v1/users/{both}"),
        None,
        &a.token,
    )
    .await;
    assert_eq!(r.status(), 204);
    assert_eq!(role_in(&app, &both, &a.company_id).await, None);
    assert_eq!(
        role_in(&app, &both, &g.company_id).await.as_deref(),
        Some("member")
    );
    assert_eq!(refresh(&app, &g.host, &globex_refresh).await.status(), 200);
    // And every globex membership is exactly as it was.
    let globex: Vec<(String, bool)> = {
        let client = app.db.get().await.unwrap();
        client
            .query(
                "select role, is_active from public.memberships where company_id = $1::text::uuid order by created_at",
                &[&g.company_id],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    assert_eq!(
        globex,
        vec![
            ("owner".into(), true),
            ("member".into(), true),
            ("member".into(), true)
        ]
    );
    assert_eq!(
        audit_count(&app, "tenant_globex", "member.removed").await,
        0
    );
}

#[tokio::test]
async fn the_plan_limit_counts_members_under_concurrency() {
    let app = spawn_app().await;
    let t = app.tenant("acme").await;
    app.sql("update public.companies set plan = 'free' where slug = 'acme'")
        .await;
    // The free plan allows 5: the owner and three more, then one seat left for twelve contenders.
    for i in 0..3 {
        app.member(&t, &format!("m{i}@acme.test"), "member").await;
    }
    // Existing accounts, so no request spends time hashing: they all reach the database at once.
    for i in 0..12 {
        app.sql(&format!(
            "insert into public.users (id, email, password_hash) values (gen_random_uuid(), 'c{i}@acme.test', 'x')"
        ))
        .await;
    }
    let mut requests = Vec::new();
    for i in 0..12 {
        let body = json!({"email": format!("c{i}@acme.test"), "role": "viewer"});
        requests.push(call(
            &app,
            Method::POST,
            &t.host,
            "/api/v1/users",
            Some(body),
            &t.token,
        ));
    }
    let results = futures_util::future::join_all(requests).await;
    let mut created = 0;
    for r in results {
        match r.status().as_u16() {
            201 => created += 1,
            403 => {
                let p = problem(r, 403).await;
                assert!(
                    p["detail"]
                        .as_str()
                        .unwrap()
                        .contains("free plan allows at most 5 members"),
                    "{p}"
                );
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(created, 1);
    let members: i64 = app
        .sql_one(&format!(
            "select count(*) from public.memberships where company_id = '{}'",
            t.company_id
        ))
        .await;
    assert_eq!(members, 5);
    // A refused new account is rolled back with its membership.
    let p = problem(
        call(&app, Method::POST, &t.host, "/api/v1/users", Some(json!({"email": "fresh@acme.test", "role": "viewer", "full_name": "Fresh", "password": "fresh-password"})), &t.token).await,
        403,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("upgrade"), "{p}");
    let fresh: i64 = app
        .sql_one("select count(*) from public.users where email = 'fresh@acme.test'")
        .await;
    assert_eq!(fresh, 0);
    // A deactivated member still holds a seat; removing one frees it.
    let m0 = user_id(&app, "m0@acme.test").await;
    let r = call(
        &app,
        Method::POST,
        &t.host,
        &format!("/api/v1/users/{m0}/deactivate"),
        None,
        &t.token,
    )
    .await;
    assert_eq!(r.status(), 200);
    let late = json!({"email": "late@acme.test", "role": "viewer", "full_name": "Late", "password": "late-password-1"});
    problem(
        call(
            &app,
            Method::POST,
            &t.host,
            "/api/v1/users",
            Some(late.clone()),
            &t.token,
        )
        .await,
        403,
    )
    .await;
    let r = call(
        &app,
        Method::DELETE,
        &t.host,
        &format!("/api/v1/users/{m0}"),
        None,
        &t.token,
    )
    .await;
    assert_eq!(r.status(), 204);
    let r = call(
        &app,
        Method::POST,
        &t.host,
        "/api/v1/users",
        Some(late),
        &t.token,
    )
    .await;
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn role_changes_removal_and_deactivation_take_effect_at_refresh_and_login() {
    let app = spawn_app().await;
    let t = app.tenant("acme").await;
    app.member(&t, "bob@acme.test", "member").await;
    let bob = user_id(&app, "bob@acme.test").await;
    let (_, r1) = login_pair(&app, &t.host, "bob@acme.test", MEMBER_PASSWORD).await;

    // Role change: the next refresh carries the new role, and it is enforced.
    let r = call(
        &app,
        Method::PATCH,
        &t.host,
        &format!("/api/v1/users/{bob}"),
        Some(json!({"role": "viewer"})),
        &t.token,
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = refresh(&app, &t.host, &r1).await;
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    let access = b["access_token"].as_str().unwrap();
    let r2 = b["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(role_of(&app, access), "viewer");
    problem(
        app.post_json(
            &t.host,
            "/api/v1/projects",
            &json!({"name": "Nope"}),
            Some(access),
        )
        .await,
        403,
    )
    .await;
    // The same role again changes nothing and writes no entry.
    let r = call(
        &app,
        Method::PATCH,
        &t.host,
        &format!("/api/v1/users/{bob}"),
        Some(json!({"role": "viewer"})),
        &t.token,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        audit_count(&app, "tenant_acme", "member.role_changed").await,
        1
    );
    let (before, after): (Value, Value) = {
        let client = app.db.get().await.unwrap();
        let row = client
            .query_one("select before, after from tenant_acme.audit_log where action = 'member.role_changed'", &[])
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(
        (before["role"].as_str(), after["role"].as_str()),
        (Some("member"), Some("viewer"))
    );

    // Deactivation: refresh and login are refused at once.
    let r = call(
        &app,
        Method::POST,
        &t.host,
        &format!("/api/v1/users/{bob}/deactivate"),
        None,
        &t.token,
    )
    .await;
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["is_active"], false);
    problem(refresh(&app, &t.host, &r2).await, 401).await;
    problem(
        app.login(&t.host, "bob@acme.test", MEMBER_PASSWORD).await,
        401,
    )
    .await;
    let reason: String = app
        .sql_one(&format!(
            "select revoked_reason from public.sessions where user_id = '{bob}' order by created_at desc limit 1"
        ))
        .await;
    assert_eq!(reason, "membership deactivated");
    // Deactivating again is a no-op; activating lets them log in again (new session).
    let r = call(
        &app,
        Method::POST,
        &t.host,
        &format!("/api/v1/users/{bob}/deactivate"),
        None,
        &t.token,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        audit_count(&app, "tenant_acme", "member.deactivated").await,
        1
    );
    problem(refresh(&app, &t.host, &r2).await, 401).await;
    let r = call(
        &app,
        Method::POST,
        &t.host,
        &format!("/api/v1/users/{bob}/activate"),
        None,
        &t.token,
    )
    .await;
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["is_active"], true);
    assert_eq!(
        audit_count(&app, "tenant_acme", "member.activated").await,
        1
    );
    let (_, r3) = login_pair(&app, &t.host, "bob@acme.test", MEMBER_PASSWORD).await;
    // Bob also has an account session on the base host, which removal must not end.
    let (_, account_refresh) = login_pair(&app, BASE, "bob@acme.test", MEMBER_PASSWORD).await;

    // Removal: the session in this company is revoked; login is refused.
    let r = call(
        &app,
        Method::DELETE,
        &t.host,
        &format!("/api/v1/users/{bob}"),
        None,
        &t.token,
    )
    .await;
    assert_eq!(r.status(), 204);
    problem(refresh(&app, &t.host, &r3).await, 401).await;
    problem(
        app.login(&t.host, "bob@acme.test", MEMBER_PASSWORD).await,
        401,
    )
    .await;
    let removed: i64 = app
        .sql_one(&format!(
            "select count(*) from public.sessions where user_id = '{bob}' and revoked_reason = 'membership removed'"
        ))
        .await;
    assert_eq!(removed, 1);
    assert_eq!(refresh(&app, BASE, &account_refresh).await.status(), 200);
    // Removing again: not a member any more.
    problem(
        call(
            &app,
            Method::DELETE,
            &t.host,
            &format!("/api/v1/users/{bob}"),
            None,
            &t.token,
        )
        .await,
        404,
    )
    .await;
    // The account itself still exists.
    let accounts: i64 = app
        .sql_one("select count(*) from public.users where email = 'bob@acme.test'")
        .await;
    assert_eq!(accounts, 1);
    let before: Value = app
        .sql_one("select before from tenant_acme.audit_log where action = 'member.removed'")
        .await;
    assert_eq!(before["user_id"], bob.as_str());
    assert_eq!(before["role"], "viewer");
}

#[tokio::test]
async fn member_invitation_and_ownership_routes_are_documented() {
    let app = spawn_app().await;
    let doc: Value = app
        .get(BASE, "/api/openapi.json", None)
        .await
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().expect("paths");
    for (path, methods) in [
        ("/api/v1/users", &["get", "post"][..]),
        ("/api/v1/users/{id}", &["get", "patch", "delete"]),
        ("/api/v1/users/{id}/deactivate", &["post"]),
        ("/api/v1/users/{id}/activate", &["post"]),
        ("/api/v1/invitations", &["get", "post"]),
        ("/api/v1/invitations/{id}", &["delete"]),
        ("/api/v1/invitations/accept", &["post"]),
        ("/api/v1/organization/transfer-ownership", &["post"]),
    ] {
        for m in methods {
            assert!(
                paths.get(path).and_then(|p| p.get(*m)).is_some(),
                "{m} {path} undocumented"
            );
        }
    }
}
