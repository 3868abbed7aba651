//! API keys: created once, stored hashed, sent as `X-API-Key`, valid only on their own tenant's
//! host, revoked at once, and never more powerful than their creator is *now*.

use crate::helpers::*;
use reqwest::{Method, Response};
use serde_json::{json, Value};

async fn create_key(app: &TestApp, t: &TestTenant, token: &str, role: &str) -> Value {
    let r = app
        .post_json(
            &t.host,
            "/api/v1/api-keys",
            &json!({"name": format!("{role} key"), "role": role}),
            Some(token),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    r.json().await.unwrap()
}

async fn with_key(app: &TestApp, method: Method, host: &str, path: &str, key: &str) -> Response {
    let mut request = app
        .request(method.clone(), host, path)
        .header("X-API-Key", key);
    if method == Method::POST || method == Method::PATCH {
        request = request.json(&json!({"name": "made by a key"}));
    }
    request.send().await.unwrap()
}

async fn user_id(app: &TestApp, email: &str) -> String {
    app.sql_one::<uuid::Uuid>(&format!(
        "select id from public.users where email = '{email}'"
    ))
    .await
    .to_string()
}

#[tokio::test]
async fn a_key_is_shown_once_stored_hashed_and_works_with_its_role() {
    let app = spawn_app().await;
    let t = app.tenant("acme").await;
    let r = app
        .post_json(
            &t.host,
            "/api/v1/api-keys",
            &json!({"name": "  CI deploys ", "role": "member", "expires_at": "2099-01-01T00:00:00Z"}),
            Some(&t.token),
        )
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let created: Value = r.json().await.unwrap();
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
        .sql_one(&format!(
            "select count(*) from tenant_acme.api_keys \
              where prefix = '{prefix}' and secret_hash = sha256(convert_to('{key}', 'UTF8'))"
        ))
        .await;
    assert_eq!(stored, 1);
    let clear: i64 = app
        .sql_one(&format!(
            "select count(*) from tenant_acme.api_keys k where k::text like '%{}%'",
            &key[17..]
        ))
        .await;
    assert_eq!(clear, 0, "the secret is nowhere in the row");

    // The list never shows the key.
    let r = app.get(&t.host, "/api/v1/api-keys", Some(&t.token)).await;
    assert_eq!(r.status(), 200);
    let list: Value = r.json().await.unwrap();
    assert_eq!(list["results"].as_array().unwrap().len(), 1);
    assert_eq!(list["results"][0]["prefix"], prefix.as_str());
    assert!(list["results"][0].get("key").is_none());
    assert!(!list.to_string().contains(&key[17..]));
    assert!(list["results"][0]["last_used_at"].is_null());

    // A member key reads and writes content…
    let r = with_key(&app, Method::GET, &t.host, "/api/v1/projects", &key).await;
    assert_eq!(r.status(), 200);
    let r = with_key(&app, Method::POST, &t.host, "/api/v1/projects", &key).await;
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
        let r = with_key(&app, method.clone(), &t.host, path, &key).await;
        problem(r, 403).await;
    }
    let used: i64 = app
        .sql_one("select count(*) from tenant_acme.api_keys where last_used_at is not null")
        .await;
    assert_eq!(used, 1, "last use is recorded");

    // Account routes never take a key.
    let r = with_key(&app, Method::GET, &t.host, "/api/v1/users/me", &key).await;
    problem(r, 401).await;
}

#[tokio::test]
async fn keys_are_for_admins_with_at_most_their_role_and_valid_values() {
    let app = spawn_app().await;
    let t = app.tenant("acme").await;
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
    let p = problem(
        post(t.token.clone(), json!({"name": "k", "role": "owner"})).await,
        403,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("owner"), "{p}");
    assert_eq!(
        post(admin.clone(), json!({"name": "k", "role": "admin"}))
            .await
            .status(),
        201
    );
    // Bad values: 422 naming each field; nothing is created.
    let p = problem(
        post(
            admin.clone(),
            json!({"name": "", "role": "boss", "expires_at": "yesterday"}),
        )
        .await,
        422,
    )
    .await;
    for field in ["name", "role", "expires_at"] {
        assert!(p["errors"][field].is_array(), "{field}: {p}");
    }
    let p = problem(
        post(
            admin.clone(),
            json!({"name": "k", "role": "viewer", "expires_at": "2001-01-01T00:00:00Z"}),
        )
        .await,
        422,
    )
    .await;
    assert!(p["errors"]["expires_at"].is_array(), "{p}");
    let count: i64 = app
        .sql_one("select count(*) from tenant_acme.api_keys")
        .await;
    assert_eq!(count, 1);
}

#[tokio::test]
async fn revoked_expired_malformed_and_foreign_keys_are_refused() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let created = create_key(&app, &acme, &acme.token, "admin").await;
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        with_key(&app, Method::GET, &acme.host, "/api/v1/projects", &key)
            .await
            .status(),
        200
    );

    // Another tenant's host does not know the key; the base host takes no key.
    let r = with_key(&app, Method::GET, &globex.host, "/api/v1/projects", &key).await;
    problem(r, 401).await;
    let r = with_key(&app, Method::GET, BASE, "/api/v1/projects", &key).await;
    problem(r, 401).await;
    // A key in the URL is refused (and so is a key-like value in any parameter).
    let r = app
        .get(&acme.host, &format!("/api/v1/projects?api_key={key}"), None)
        .await;
    let p = problem(r, 400).await;
    assert!(p["detail"].as_str().unwrap().contains("X-API-Key"), "{p}");
    let r = app
        .get(&acme.host, &format!("/api/v1/projects?cursor={key}"), None)
        .await;
    problem(r, 400).await;
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
    let a = problem(
        with_key(&app, Method::GET, &acme.host, "/api/v1/projects", &wrong).await,
        401,
    )
    .await;
    let b = problem(
        with_key(
            &app,
            Method::GET,
            &acme.host,
            "/api/v1/projects",
            "tnt_nope",
        )
        .await,
        401,
    )
    .await;
    assert_eq!(a["detail"], b["detail"]);

    // Expired: 401.
    let other = create_key(&app, &acme, &acme.token, "viewer").await;
    app.sql(&format!(
        "update tenant_acme.api_keys set expires_at = now() - interval '1 second' where id = '{}'",
        other["id"].as_str().unwrap()
    ))
    .await;
    let r = with_key(
        &app,
        Method::GET,
        &acme.host,
        "/api/v1/projects",
        other["key"].as_str().unwrap(),
    )
    .await;
    problem(r, 401).await;

    // Revoked: 204, then refused at once; revoking again is 404; the list no longer shows it.
    let r = app
        .request(
            Method::DELETE,
            &acme.host,
            &format!("/api/v1/api-keys/{id}"),
        )
        .bearer_auth(&acme.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = with_key(&app, Method::GET, &acme.host, "/api/v1/projects", &key).await;
    problem(r, 401).await;
    let r = app
        .request(
            Method::DELETE,
            &acme.host,
            &format!("/api/v1/api-keys/{id}"),
        )
        .bearer_auth(&acme.token)
        .send()
        .await
        .unwrap();
    problem(r, 404).await;
    let list: Value = app
        .get(&acme.host, "/api/v1/api-keys", Some(&acme.token))
        .await
        .json()
        .await
        .unwrap();
    assert!(!list.to_string().contains(&id));
    // Another tenant cannot revoke acme's key by id.
    let live = create_key(&app, &acme, &acme.token, "viewer").await;
    let r = app
        .request(
            Method::DELETE,
            &globex.host,
            &format!("/api/v1/api-keys/{}", live["id"].as_str().unwrap()),
        )
        .bearer_auth(&globex.token)
        .send()
        .await
        .unwrap();
    problem(r, 404).await;
    let r = with_key(
        &app,
        Method::GET,
        &acme.host,
        "/api/v1/projects",
        live["key"].as_str().unwrap(),
    )
    .await;
    assert_eq!(r.status(), 200);

    // The create and revoke are in acme's trail, by the owner.
    let actions: Vec<String> = {
        let c = app.db.get().await.unwrap();
        c.query(
            "select action from tenant_acme.audit_log where action like 'api_key.%' order by id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
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
    let app = spawn_app().await;
    let t = app.tenant("acme").await;
    let a = create_key(&app, &t, &t.token, "admin").await;
    let b = create_key(&app, &t, &t.token, "admin").await;
    let key_a = a["key"].as_str().unwrap();
    let r = with_key(
        &app,
        Method::DELETE,
        &t.host,
        &format!("/api/v1/api-keys/{}", b["id"].as_str().unwrap()),
        key_a,
    )
    .await;
    problem(r, 403).await;
    let r = with_key(
        &app,
        Method::DELETE,
        &t.host,
        &format!("/api/v1/api-keys/{}", a["id"].as_str().unwrap()),
        key_a,
    )
    .await;
    assert_eq!(r.status(), 204);
    let r = with_key(&app, Method::GET, &t.host, "/api/v1/projects", key_a).await;
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
    let app = spawn_app().await;
    let t = app.tenant("acme").await;
    let admin = app.member(&t, "admin@acme.test", "admin").await;
    let admin_id = user_id(&app, "admin@acme.test").await;
    let created = create_key(&app, &t, &admin, "admin").await;
    let key = created["key"].as_str().unwrap().to_owned();
    let can_read_audit = || async {
        with_key(&app, Method::GET, &t.host, "/api/v1/audit-log", &key)
            .await
            .status()
            .as_u16()
    };
    assert_eq!(can_read_audit().await, 200);

    // Demoting the creator to viewer caps the admin key at viewer.
    let r = app
        .send_json(
            Method::PATCH,
            &t.host,
            &format!("/api/v1/users/{admin_id}"),
            &json!({"role": "viewer"}),
            Some(&t.token),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(can_read_audit().await, 403);
    let r = with_key(&app, Method::POST, &t.host, "/api/v1/projects", &key).await;
    problem(r, 403).await;
    assert_eq!(
        with_key(&app, Method::GET, &t.host, "/api/v1/projects", &key)
            .await
            .status(),
        200
    );
    // Promoting back restores it (the key's own role is still admin).
    let r = app
        .send_json(
            Method::PATCH,
            &t.host,
            &format!("/api/v1/users/{admin_id}"),
            &json!({"role": "admin"}),
            Some(&t.token),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(can_read_audit().await, 200);

    // Deactivating the membership stops the key; activating brings it back.
    let path = format!("/api/v1/users/{admin_id}/deactivate");
    let r = app
        .post_json(&t.host, &path, &json!({}), Some(&t.token))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(can_read_audit().await, 401);
    let path = format!("/api/v1/users/{admin_id}/activate");
    let r = app
        .post_json(&t.host, &path, &json!({}), Some(&t.token))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(can_read_audit().await, 200);

    // Deactivating the account stops it.
    app.sql(&format!(
        "update public.users set is_active = false where id = '{admin_id}'"
    ))
    .await;
    assert_eq!(can_read_audit().await, 401);
    app.sql(&format!(
        "update public.users set is_active = true where id = '{admin_id}'"
    ))
    .await;
    assert_eq!(can_read_audit().await, 200);

    // Removing the membership stops it for good.
    let r = app
        .request(
            Method::DELETE,
            &t.host,
            &format!("/api/v1/users/{admin_id}"),
        )
        .bearer_auth(&t.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(can_read_audit().await, 401);
}
