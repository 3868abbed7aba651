//! Members and roles: listing, adding, role changes, removal, (de)activation, the role rules,
//! tenant scoping, the plan limit, and their effect on refresh and login.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};

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

/// A page of `GET path` (which must be 200).
async fn page(app: &TestApp, host: &str, path: &str, token: &str) -> Value {
    expect_json(app.get(host, path, Some(token)).await, 200).await
}

/// What one may do to a member: change the role, remove, deactivate (method, path, body).
fn actions_on(id: &str) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (
            Method::PATCH,
            format!("/api/v1/users/{id}"),
            Some(json!({"role": "viewer"})),
        ),
        (Method::DELETE, format!("/api/v1/users/{id}"), None),
        (Method::POST, format!("/api/v1/users/{id}/deactivate"), None),
    ]
}

#[tokio::test]
async fn viewers_list_members_with_role_filter_search_and_keyset_pages() {
    let (app, t) = spawn_tenant("acme").await;
    app.member(&t, "ann@acme.test", "admin").await;
    app.member(&t, "bob@acme.test", "member").await;
    let viewer = app.member(&t, "vic@acme.test", "viewer").await;
    app.sql("update public.users set full_name = 'Annabel Lee' where email = 'ann@acme.test'")
        .await;
    // Someone of another tenant never shows up.
    let g = app.tenant("globex").await;
    app.member(&g, "ann@globex.test", "admin").await;

    let b = page(&app, &t.host, "/api/v1/users", &viewer).await;
    assert_eq!(
        column(&b, "email"),
        [
            "owner@acme.test",
            "ann@acme.test",
            "bob@acme.test",
            "vic@acme.test"
        ],
        "in the order they joined"
    );
    assert!(b["next"].is_null());
    let owner = &b["results"][0];
    assert_eq!(owner["id"], t.owner_id.as_str());
    assert_eq!(owner["role"], "owner");
    assert_eq!(owner["is_active"], true);
    assert_eq!(owner["email_verified"], false);
    assert!(owner["joined_at"].is_string());
    assert!(owner.get("password_hash").is_none());

    let b = page(&app, &t.host, "/api/v1/users?role=admin", &viewer).await;
    assert_eq!(column(&b, "email"), ["ann@acme.test"]);
    // Search matches the email or the full name, case-insensitively.
    let b = page(&app, &t.host, "/api/v1/users?search=ANN", &viewer).await;
    assert_eq!(b["results"].as_array().unwrap().len(), 1);
    let b = page(&app, &t.host, "/api/v1/users?search=lee", &viewer).await;
    assert_eq!(b["results"][0]["full_name"], "Annabel Lee");
    let b = page(&app, &t.host, "/api/v1/users?search=%25", &viewer).await;
    assert_eq!(
        b["results"].as_array().unwrap().len(),
        0,
        "% is not a wildcard"
    );

    // Keyset pages: two, then the other two, no overlap; the filter survives in `next`.
    let b = page(&app, &t.host, "/api/v1/users?limit=2", &viewer).await;
    assert_eq!(column(&b, "email"), ["owner@acme.test", "ann@acme.test"]);
    let next = b["next"].as_str().unwrap();
    assert!(
        next.starts_with("http://acme.example.test/api/v1/users?"),
        "{next}"
    );
    let path = &next[next.find("/api/").unwrap()..];
    let b = page(&app, &t.host, path, &viewer).await;
    assert_eq!(column(&b, "email"), ["bob@acme.test", "vic@acme.test"]);
    assert!(b["next"].is_null());
    let b = page(&app, &t.host, "/api/v1/users?role=viewer&limit=1", &viewer).await;
    assert_eq!(b["results"][0]["email"], "vic@acme.test");
    assert!(b["next"].is_null());

    let viewer = viewer.as_str();
    for (host, path, token, status) in [
        (
            t.host.as_str(),
            "/api/v1/users?role=boss",
            Some(viewer),
            400,
        ),
        (&t.host, "/api/v1/users?cursor=!!", Some(viewer), 400),
        (&t.host, "/api/v1/users?limit=0", Some(viewer), 400),
        (&t.host, "/api/v1/users", None, 401),
        // Another tenant's token, and the base host.
        (&t.host, "/api/v1/users", Some(&g.token), 403),
        (BASE, "/api/v1/users", Some(viewer), 404),
    ] {
        problem(app.get(host, path, token).await, status).await;
    }

    // One member by id.
    let ann = app.user_id("ann@acme.test").await;
    let b = page(&app, &t.host, &format!("/api/v1/users/{ann}"), viewer).await;
    assert_eq!(
        (b["email"].as_str(), b["role"].as_str()),
        (Some("ann@acme.test"), Some("admin"))
    );
}

#[tokio::test]
async fn role_hierarchy_is_enforced() {
    let (app, t) = spawn_tenant("acme").await;
    let admin = app.member(&t, "ann@acme.test", "admin").await;
    let member = app.member(&t, "bob@acme.test", "member").await;
    let viewer = app.member(&t, "vic@acme.test", "viewer").await;
    let ann = app.user_id("ann@acme.test").await;
    let bob = app.user_id("bob@acme.test").await;
    let owner = t.owner_id.clone();
    let add = |role: &str, email: &str| json!({"email": email, "role": role, "full_name": "New Person", "password": "pw-743c6a2121db"});
    let users = "/api/v1/users".to_owned();
    let bob_path = format!("/api/v1/users/{bob}");

    // Members and viewers cannot add or change anyone.
    for token in [&member, &viewer] {
        for (method, path, body, needle) in [
            (
                Method::POST,
                users.clone(),
                Some(add("viewer", "x@acme.test")),
                "members.manage",
            ),
            (
                Method::PATCH,
                format!("/api/v1/users/{ann}"),
                Some(json!({"role": "viewer"})),
                "",
            ),
            (Method::DELETE, bob_path.clone(), None, ""),
        ] {
            let r = app.call(method, &t.host, &path, body, token).await;
            expect_problem(r, 403, needle).await;
        }
    }

    // An admin cannot grant owner (to a new member or by a role change); nor can the owner:
    // the owner role only moves by transfer.
    for (method, path, body, token, needle) in [
        (
            Method::POST,
            &users,
            add("owner", "x@acme.test"),
            &admin,
            "ownership transfer",
        ),
        (
            Method::PATCH,
            &bob_path,
            json!({"role": "owner"}),
            &admin,
            "",
        ),
        (
            Method::PATCH,
            &bob_path,
            json!({"role": "owner"}),
            &t.token,
            "",
        ),
    ] {
        let r = app.call(method, &t.host, path, Some(body), token).await;
        expect_problem(r, 403, needle).await;
    }
    // An admin cannot act on the owner in any way.
    for (method, path, body) in actions_on(&owner) {
        let r = app.call(method, &t.host, &path, body, &admin).await;
        expect_problem(r, 403, "owner").await;
    }
    // Nobody acts on themselves here: not the owner, not an admin.
    for (token, me) in [(&t.token, &owner), (&admin, &ann)] {
        for (method, path, body) in actions_on(me) {
            problem(app.call(method, &t.host, &path, body, token).await, 403).await;
        }
    }
    let r = app
        .delete(&t.host, &format!("/api/v1/users/{ann}"), &admin)
        .await;
    expect_problem(r, 403, "your own membership").await;

    // An admin can add an admin and change members' roles.
    let r = app
        .call(
            Method::POST,
            &t.host,
            &users,
            Some(add("admin", "second@acme.test")),
            &admin,
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = app.set_role(&t.host, &admin, &bob, "admin").await;
    assert_eq!(expect_json(r, 200).await["role"], "admin");
    // Invalid roles are 422.
    let r = app.set_role(&t.host, &admin, &bob, "boss").await;
    expect_field_errors(r, 422, &["role"]).await;

    // Nothing above changed the owner or the self-targeted memberships.
    assert_eq!(
        role_in(&app, &owner, &t.company_id).await.as_deref(),
        Some("owner")
    );
    assert_eq!(
        role_in(&app, &ann, &t.company_id).await.as_deref(),
        Some("admin")
    );
    app.assert_counts(&[
        (
            "select count(*) from public.memberships where role = 'owner'",
            1,
        ),
        (
            "select count(*) from public.memberships where not is_active",
            0,
        ),
    ])
    .await;
}

#[tokio::test]
async fn a_demoted_admin_cannot_act_with_a_stale_token() {
    let (app, t) = spawn_tenant("acme").await;
    let stale = app.member(&t, "ann@acme.test", "admin").await;
    app.member(&t, "bob@acme.test", "member").await;
    let ann = app.user_id("ann@acme.test").await;
    let bob = app.user_id("bob@acme.test").await;
    let r = app.set_role(&t.host, &t.token, &ann, "member").await;
    assert_eq!(r.status(), 200);
    // The access token still says admin; the membership, re-read under the lock, does not.
    assert_eq!(app.role_of(&stale), "admin");
    let r = app
        .delete(&t.host, &format!("/api/v1/users/{bob}"), &stale)
        .await;
    expect_problem(r, 403, "the member role").await;
    assert_eq!(
        role_in(&app, &bob, &t.company_id).await.as_deref(),
        Some("member")
    );
}

#[tokio::test]
async fn adding_members_new_and_existing_accounts() {
    let (app, t) = spawn_tenant("acme").await;
    let g = app.tenant("globex").await;
    let add = |body: Value| app.call(Method::POST, &t.host, "/api/v1/users", Some(body), &t.token);

    // A new email needs a full name and a valid password.
    let r = add(json!({"email": "new@acme.test", "role": "member"})).await;
    expect_field_errors(r, 422, &["password", "full_name"]).await;
    let r = add(json!({"email": "new@acme.test", "role": "member", "full_name": "New", "password": "short"})).await;
    expect_field_error(r, "password", "at least 10").await;
    let r = add(json!({"email": "not-an-email", "role": "chief"})).await;
    expect_field_errors(r, 422, &["email", "role"]).await;
    assert_eq!(
        app.count("select count(*) from public.users where email = 'new@acme.test'")
            .await,
        0,
        "nothing half-created"
    );

    let r = add(json!({"email": "New@Acme.test", "role": "member", "full_name": " Nora New ", "password": "pw-827cec2e0643"})).await;
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let b = expect_json(r, 201).await;
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
    let token = app.token(&t.host, "new@acme.test", "pw-827cec2e0643").await;
    assert_eq!(app.role_of(&token), "member");
    // Twice: 409.
    let again = json!({"email": "new@acme.test", "role": "viewer", "full_name": "Nora", "password": "pw-ca326f77ecd7"});
    let r = add(again).await;
    expect_field_errors(r, 409, &["email"]).await;

    // An existing account elsewhere (globex's owner) is refused, and the answer says nothing
    // about it: no id, no name. It joins only through an invitation.
    app.sql_with(
        "update public.users set full_name = 'Gustav Globex' where id = $1::text::uuid",
        &[&g.owner_id],
    )
    .await;
    let r = add(json!({"email": g.owner_email, "role": "viewer", "full_name": "Mallory", "password": "pw-ca326f77ecd7"})).await;
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("invite"), "{body}");
    assert!(!body.contains(&g.owner_id), "{body}");
    assert!(!body.contains("Gustav"), "{body}");
    assert_eq!(
        app.login(&t.host, &g.owner_email, "pw-ca326f77ecd7")
            .await
            .status(),
        401,
        "the password sent along is not set"
    );
    assert_eq!(role_in(&app, &g.owner_id, &t.company_id).await, None);
    assert_eq!(
        role_in(&app, &g.owner_id, &g.company_id).await.as_deref(),
        Some("owner")
    );

    // Audited with the state after, in acme's trail only.
    assert_eq!(app.audit_count("tenant_acme", "member.added").await, 1);
    assert_eq!(app.audit_count("tenant_globex", "member.added").await, 0);
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
    let (app, a) = spawn_tenant("acme").await;
    let g = app.tenant("globex").await;
    app.member(&g, "gina@globex.test", "member").await;
    let gina = app.user_id("gina@globex.test").await;
    // Someone in both companies.
    app.member(&g, "both@x.test", "member").await;
    let both = app.user_id("both@x.test").await;
    app.add_membership(&both, &a.company_id, "member").await;
    let (_, globex_refresh) = app
        .login_pair(&g.host, "both@x.test", MEMBER_PASSWORD)
        .await;

    for target in [&gina, &g.owner_id] {
        let mut actions = vec![(Method::GET, format!("/api/v1/users/{target}"), None)];
        actions.extend(actions_on(target));
        actions.push((
            Method::POST,
            format!("/api/v1/users/{target}/activate"),
            None,
        ));
        for (method, path, body) in actions {
            problem(app.call(method, &a.host, &path, body, &a.token).await, 404).await;
        }
    }
    // Nobody at all, and ids that are not UUIDs.
    for (method, path, body) in [
        (
            Method::PATCH,
            format!("/api/v1/users/{}", uuid::Uuid::now_v7()),
            Some(json!({"role": "viewer"})),
        ),
        (Method::GET, "/api/v1/users/not-a-uuid".to_owned(), None),
        (Method::POST, "/api/v1/users/42/deactivate".to_owned(), None),
    ] {
        problem(app.call(method, &a.host, &path, body, &a.token).await, 404).await;
    }
    // `/users/me` is still the caller's own account.
    let b = page(&app, &a.host, "/api/v1/users/me", &a.token).await;
    assert_eq!(b["email"], a.owner_email.as_str());
    problem(app.delete(&a.host, "/api/v1/users/me", &a.token).await, 405).await;

    // Removing the shared member from acme leaves their globex membership and sessions alone.
    let r = app
        .delete(&a.host, &format!("/api/v1/users/{both}"), &a.token)
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(role_in(&app, &both, &a.company_id).await, None);
    assert_eq!(
        role_in(&app, &both, &g.company_id).await.as_deref(),
        Some("member")
    );
    assert_eq!(app.refresh(&g.host, &globex_refresh).await.status(), 200);
    // And every globex membership is exactly as it was.
    let globex: Vec<(String, bool)> = app
        .sql_rows_with(
            "select role, is_active from public.memberships where company_id = $1::text::uuid order by created_at",
            &[&g.company_id],
        )
        .await
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        globex,
        vec![
            ("owner".into(), true),
            ("member".into(), true),
            ("member".into(), true)
        ]
    );
    assert_eq!(app.audit_count("tenant_globex", "member.removed").await, 0);
}

#[tokio::test]
async fn the_plan_limit_counts_members_under_concurrency() {
    let (app, t) = spawn_tenant("acme").await;
    app.sql("update public.companies set plan = 'free' where slug = 'acme'")
        .await;
    // The free plan allows 5: the owner and three more, then one seat left for twelve contenders.
    for i in 0..3 {
        app.member(&t, &format!("m{i}@acme.test"), "member").await;
    }
    let add = |body: Value| app.call(Method::POST, &t.host, "/api/v1/users", Some(body), &t.token);
    let mut requests = Vec::new();
    for i in 0..12 {
        requests.push(add(json!({
            "email": format!("c{i}@acme.test"), "role": "viewer",
            "full_name": "Contender", "password": "pw-contender-1"
        })));
    }
    let results = futures_util::future::join_all(requests).await;
    let mut created = 0;
    for r in results {
        match r.status().as_u16() {
            201 => created += 1,
            403 => {
                expect_problem(r, 403, "free plan allows at most 5 members").await;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(created, 1);
    let members: i64 = app
        .sql_one_with(
            "select count(*) from public.memberships where company_id = $1::text::uuid",
            &[&t.company_id],
        )
        .await;
    assert_eq!(members, 5);
    // A refused new account is rolled back with its membership.
    let r = add(json!({"email": "fresh@acme.test", "role": "viewer", "full_name": "Fresh", "password": "pw-rolled-back"})).await;
    expect_problem(r, 403, "upgrade").await;
    assert_eq!(
        app.count("select count(*) from public.users where email = 'fresh@acme.test'")
            .await,
        0
    );
    // A deactivated member still holds a seat; removing one frees it.
    let m0 = app.user_id("m0@acme.test").await;
    let r = app
        .member_switch(&t.host, &t.token, &m0, "deactivate")
        .await;
    assert_eq!(r.status(), 200);
    let late = json!({"email": "late@acme.test", "role": "viewer", "full_name": "Late", "password": "pw-0f9f7d314bc2"});
    problem(add(late.clone()).await, 403).await;
    let r = app
        .delete(&t.host, &format!("/api/v1/users/{m0}"), &t.token)
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(add(late).await.status(), 201);
}

#[tokio::test]
async fn role_changes_removal_and_deactivation_take_effect_at_refresh_and_login() {
    let (app, t) = spawn_tenant("acme").await;
    app.member(&t, "bob@acme.test", "member").await;
    let bob = app.user_id("bob@acme.test").await;
    let (_, r1) = app
        .login_pair(&t.host, "bob@acme.test", MEMBER_PASSWORD)
        .await;
    let bob_path = format!("/api/v1/users/{bob}");
    let switch = |to: &'static str| app.member_switch(&t.host, &t.token, &bob, to);

    // Role change: the next refresh carries the new role, and it is enforced.
    let to_viewer = || app.set_role(&t.host, &t.token, &bob, "viewer");
    assert_eq!(to_viewer().await.status(), 200);
    let b = expect_json(app.refresh(&t.host, &r1).await, 200).await;
    let access = b["access_token"].as_str().unwrap();
    let r2 = b["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(app.role_of(access), "viewer");
    let r = app
        .post_project(&t.host, access, json!({"name": "Nope"}))
        .await;
    problem(r, 403).await;
    // The same role again changes nothing and writes no entry.
    assert_eq!(to_viewer().await.status(), 200);
    assert_eq!(
        app.audit_count("tenant_acme", "member.role_changed").await,
        1
    );
    let (before, after) = app.audit_change("tenant_acme", "member.role_changed").await;
    assert_eq!(
        (before["role"].as_str(), after["role"].as_str()),
        (Some("member"), Some("viewer"))
    );

    // Deactivation: refresh and login are refused at once.
    let r = switch("deactivate").await;
    assert_eq!(expect_json(r, 200).await["is_active"], false);
    problem(app.refresh(&t.host, &r2).await, 401).await;
    let r = app.login(&t.host, "bob@acme.test", MEMBER_PASSWORD).await;
    problem(r, 401).await;
    let reason: String = app
        .sql_one_with(
            "select revoked_reason from public.sessions where user_id = $1::text::uuid \
             order by created_at desc limit 1",
            &[&bob],
        )
        .await;
    assert_eq!(reason, "membership deactivated");
    // Deactivating again is a no-op; activating lets them log in again (new session).
    assert_eq!(switch("deactivate").await.status(), 200);
    assert_eq!(
        app.audit_count("tenant_acme", "member.deactivated").await,
        1
    );
    problem(app.refresh(&t.host, &r2).await, 401).await;
    let r = switch("activate").await;
    assert_eq!(expect_json(r, 200).await["is_active"], true);
    assert_eq!(app.audit_count("tenant_acme", "member.activated").await, 1);
    let (_, r3) = app
        .login_pair(&t.host, "bob@acme.test", MEMBER_PASSWORD)
        .await;
    // Bob also has an account session on the base host, which removal must not end.
    let (_, account_refresh) = app.login_pair(BASE, "bob@acme.test", MEMBER_PASSWORD).await;

    // Removal: the session in this company is revoked; login is refused.
    let r = app.delete(&t.host, &bob_path, &t.token).await;
    assert_eq!(r.status(), 204);
    problem(app.refresh(&t.host, &r3).await, 401).await;
    let r = app.login(&t.host, "bob@acme.test", MEMBER_PASSWORD).await;
    problem(r, 401).await;
    let removed: i64 = app
        .sql_one_with(
            "select count(*) from public.sessions \
             where user_id = $1::text::uuid and revoked_reason = 'membership removed'",
            &[&bob],
        )
        .await;
    assert_eq!(removed, 1);
    assert_eq!(app.refresh(BASE, &account_refresh).await.status(), 200);
    // Removing again: not a member any more.
    problem(app.delete(&t.host, &bob_path, &t.token).await, 404).await;
    // The account itself still exists.
    assert_eq!(
        app.count("select count(*) from public.users where email = 'bob@acme.test'")
            .await,
        1
    );
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
