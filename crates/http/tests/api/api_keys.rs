//! API keys: created once, stored hashed, sent as `X-API-Key`, valid only on their own tenant's
//! host, revoked at once, and never more powerful than their creator is *now*.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn a_key_is_shown_once_stored_hashed_and_works_with_its_role() {
    let (app, t) = spawn_tenant("acme").await;
    let body =
        json!({"name": "  CI deploys ", "role": "member", "expires_at": "2099-01-01T00:00:00Z"});
    let r = app
        .post_json(&t.host, "/api/v1/api-keys", &body, Some(&t.token))
        .await;
    assert_eq!(r.headers()["cache-control"], "no-store");
    let created = expect_json(r, 201).await;
    let key = created["key"].as_str().unwrap().to_owned();
    let prefix = created["prefix"].as_str().unwrap().to_owned();
    assert!(key.starts_with(&format!("tnt_{prefix}_")), "{key}");
    assert_eq!(key.len(), 4 + 12 + 1 + 43);
    assert_eq!(created["name"], "CI deploys");
    assert_eq!(created["role"], "member");
    assert_eq!(created["created_by"], t.owner_id.as_str());
    assert_eq!(created["expires_at"], "2099-01-01T00:00:00Z");

    // The database keeps the SHA-256 of the key, not the key.
    let stored: i64 = app
        .sql_one_with(
            "select count(*) from tenant_acme.api_keys \
              where prefix = $1 and secret_hash = sha256(convert_to($2, 'UTF8'))",
            &[&prefix, &key],
        )
        .await;
    assert_eq!(stored, 1);
    let clear: i64 = app
        .sql_one_with(
            "select count(*) from tenant_acme.api_keys k where k::text like '%' || $1 || '%'",
            &[&&key[17..]],
        )
        .await;
    assert_eq!(clear, 0, "the secret is nowhere in the row");

    // The list never shows the key.
    let list = app.get_json(&t, "/api/v1/api-keys", 200).await;
    assert_eq!(list["results"].as_array().unwrap().len(), 1);
    assert_eq!(list["results"][0]["prefix"], prefix.as_str());
    assert!(list["results"][0].get("key").is_none());
    assert!(!list.to_string().contains(&key[17..]));
    assert!(list["results"][0]["last_used_at"].is_null());

    // A member key reads and writes content…
    let r = app
        .with_key(Method::GET, &t.host, "/api/v1/projects", &key)
        .await;
    assert_eq!(r.status(), 200);
    let r = app
        .with_key(Method::POST, &t.host, "/api/v1/projects", &key)
        .await;
    assert_eq!(r.status(), 201);
    let owner: String = app
        .sql_one::<uuid::Uuid>("select owner_id from tenant_acme.projects")
        .await
        .to_string();
    assert_eq!(owner, t.owner_id, "a key acts as its creator");
    // …but not members' management, nor key management, nor the audit trail (member role).
    for (method, path) in [
        (Method::GET, "/api/v1/api-keys"),
        (Method::POST, "/api/v1/api-keys"),
        (Method::GET, "/api/v1/audit-log"),
        (Method::GET, "/api/v1/invitations"),
    ] {
        problem(app.with_key(method, &t.host, path, &key).await, 403).await;
    }
    assert_eq!(
        app.count("select count(*) from tenant_acme.api_keys where last_used_at is not null")
            .await,
        1,
        "last use is recorded"
    );

    // Account routes never take a key.
    let r = app
        .with_key(Method::GET, &t.host, "/api/v1/users/me", &key)
        .await;
    problem(r, 401).await;
}

#[tokio::test]
async fn keys_are_for_admins_with_at_most_their_role_and_valid_values() {
    let (app, t) = spawn_tenant("acme").await;
    let admin = app.member(&t, "admin@acme.test", "admin").await;
    let member = app.member(&t, "member@acme.test", "member").await;
    let post = |token: String, body: Value| {
        let app = &app;
        let host = t.host.clone();
        async move {
            app.post_json(&host, "/api/v1/api-keys", &body, Some(&token))
                .await
        }
    };
    // Members and viewers may not create or list keys.
    problem(
        post(member.clone(), json!({"name": "k", "role": "viewer"})).await,
        403,
    )
    .await;
    problem(
        app.get(&t.host, "/api/v1/api-keys", Some(&member)).await,
        403,
    )
    .await;
    // Nobody mints an owner key; nobody above their own role.
    let r = post(t.token.clone(), json!({"name": "k", "role": "owner"})).await;
    expect_problem(r, 403, "owner").await;
    assert_eq!(
        post(admin.clone(), json!({"name": "k", "role": "admin"}))
            .await
            .status(),
        201
    );
    // Bad values: 422 naming each field; nothing is created.
    for (body, fields) in [
        (
            json!({"name": "", "role": "boss", "expires_at": "yesterday"}),
            &["name", "role", "expires_at"][..],
        ),
        (
            json!({"name": "k", "role": "viewer", "expires_at": "2001-01-01T00:00:00Z"}),
            &["expires_at"],
        ),
    ] {
        expect_field_errors(post(admin.clone(), body).await, 422, fields).await;
    }
    assert_eq!(
        app.count("select count(*) from tenant_acme.api_keys").await,
        1
    );
}

#[tokio::test]
async fn revoked_expired_malformed_and_foreign_keys_are_refused() {
    let (app, acme) = spawn_tenant("acme").await;
    let globex = app.tenant("globex").await;
    let created = app.create_key(&acme.host, &acme.token, "admin").await;
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    let projects = |host: &str, key: &str| {
        let (app, host, key) = (&app, host.to_owned(), key.to_owned());
        async move {
            app.with_key(Method::GET, &host, "/api/v1/projects", &key)
                .await
        }
    };
    assert_eq!(projects(&acme.host, &key).await.status(), 200);

    // Another tenant's host does not know the key; the base host takes no key.
    for host in [globex.host.as_str(), BASE] {
        problem(projects(host, &key).await, 401).await;
    }
    // A key in the URL is refused (and so is a key-like value in any parameter).
    for (parameter, needle) in [("api_key", "X-API-Key"), ("cursor", "")] {
        let path = format!("/api/v1/projects?{parameter}={key}");
        expect_problem(app.get(&acme.host, &path, None).await, 400, needle).await;
    }
    // Both credentials at once: 400.
    let r = app
        .request(Method::GET, &acme.host, "/api/v1/projects")
        .header("X-API-Key", &key)
        .bearer_auth(&acme.token)
        .send()
        .await
        .unwrap();
    problem(r, 400).await;
    // Malformed, or the right prefix with the wrong secret: 401, the same answer.
    let mut wrong = key.clone();
    let last = wrong.pop().unwrap();
    wrong.push(if last == 'A' { 'B' } else { 'A' });
    let a = problem(projects(&acme.host, &wrong).await, 401).await;
    let b = problem(projects(&acme.host, "tnt_nope").await, 401).await;
    assert_eq!(a["detail"], b["detail"]);

    // Expired: 401.
    let other = app.create_key(&acme.host, &acme.token, "viewer").await;
    app.sql_with(
        "update tenant_acme.api_keys set expires_at = now() - interval '1 second' \
         where id = $1::text::uuid",
        &[&other["id"].as_str().unwrap()],
    )
    .await;
    problem(
        projects(&acme.host, other["key"].as_str().unwrap()).await,
        401,
    )
    .await;

    // Revoked: 204, then refused at once; revoking again is 404; the list no longer shows it.
    let revoke = format!("/api/v1/api-keys/{id}");
    assert_eq!(
        app.delete(&acme.host, &revoke, &acme.token).await.status(),
        204
    );
    problem(projects(&acme.host, &key).await, 401).await;
    problem(app.delete(&acme.host, &revoke, &acme.token).await, 404).await;
    let list = app.get_json(&acme, "/api/v1/api-keys", 200).await;
    assert!(!list.to_string().contains(&id));
    // Another tenant cannot revoke acme's key by id.
    let live = app.create_key(&acme.host, &acme.token, "viewer").await;
    let path = format!("/api/v1/api-keys/{}", live["id"].as_str().unwrap());
    problem(app.delete(&globex.host, &path, &globex.token).await, 404).await;
    let r = projects(&acme.host, live["key"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200);

    // The create and revoke are in acme's trail, by the owner.
    let actions: Vec<String> = app
        .sql_col_with(
            "select action from tenant_acme.audit_log where action like 'api_key.%' order by id",
            &[],
        )
        .await;
    assert_eq!(
        actions,
        [
            "api_key.created",
            "api_key.created",
            "api_key.revoked",
            "api_key.created"
        ]
    );
}

#[tokio::test]
async fn a_key_may_revoke_itself_but_no_other_key() {
    let (app, t) = spawn_tenant("acme").await;
    let a = app.create_key(&t.host, &t.token, "admin").await;
    let b = app.create_key(&t.host, &t.token, "admin").await;
    let key_a = a["key"].as_str().unwrap();
    let revoke = |key: &Value| format!("/api/v1/api-keys/{}", key["id"].as_str().unwrap());
    let r = app
        .with_key(Method::DELETE, &t.host, &revoke(&b), key_a)
        .await;
    problem(r, 403).await;
    let r = app
        .with_key(Method::DELETE, &t.host, &revoke(&a), key_a)
        .await;
    assert_eq!(r.status(), 204);
    let r = app
        .with_key(Method::GET, &t.host, "/api/v1/projects", key_a)
        .await;
    problem(r, 401).await;
    // The revocation is attributed to the key itself.
    let actor: uuid::Uuid = app
        .sql_one(
            "select actor_api_key_id from tenant_acme.audit_log where action = 'api_key.revoked'",
        )
        .await;
    assert_eq!(actor.to_string(), a["id"].as_str().unwrap());
}

#[tokio::test]
async fn changes_to_the_creator_apply_to_their_keys_at_once() {
    let (app, t) = spawn_tenant("acme").await;
    let admin = app.member(&t, "admin@acme.test", "admin").await;
    let admin_id = app.user_id("admin@acme.test").await;
    let created = app.create_key(&t.host, &admin, "admin").await;
    let key = created["key"].as_str().unwrap().to_owned();
    let can_read_audit = || async {
        app.with_key(Method::GET, &t.host, "/api/v1/audit-log", &key)
            .await
            .status()
            .as_u16()
    };
    assert_eq!(can_read_audit().await, 200);
    let admin_path = format!("/api/v1/users/{admin_id}");

    // Demoting the creator to viewer caps the admin key at viewer.
    let r = app.set_role(&t.host, &t.token, &admin_id, "viewer").await;
    assert_eq!(r.status(), 200);
    assert_eq!(can_read_audit().await, 403);
    let r = app
        .with_key(Method::POST, &t.host, "/api/v1/projects", &key)
        .await;
    problem(r, 403).await;
    assert_eq!(
        app.with_key(Method::GET, &t.host, "/api/v1/projects", &key)
            .await
            .status(),
        200
    );
    // Promoting back restores it (the key's own role is still admin); deactivating the
    // membership stops the key; activating brings it back.
    let r = app.set_role(&t.host, &t.token, &admin_id, "admin").await;
    assert_eq!(r.status(), 200);
    assert_eq!(can_read_audit().await, 200);
    for (to, audit) in [("deactivate", 401), ("activate", 200)] {
        let r = app.member_switch(&t.host, &t.token, &admin_id, to).await;
        assert_eq!(r.status(), 200, "{to}");
        assert_eq!(can_read_audit().await, audit, "{to}");
    }

    // Deactivating the account stops it.
    for (active, audit) in [(false, 401), (true, 200)] {
        app.sql_with(
            "update public.users set is_active = $1 where id = $2::text::uuid",
            &[&active, &admin_id],
        )
        .await;
        assert_eq!(can_read_audit().await, audit, "account active: {active}");
    }

    // Removing the membership stops it for good.
    let r = app.delete(&t.host, &admin_path, &t.token).await;
    assert_eq!(r.status(), 204);
    assert_eq!(can_read_audit().await, 401);
}
