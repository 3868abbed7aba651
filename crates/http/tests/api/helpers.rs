//! `spawn_app()`: the real application on a fresh database and a random port.

use deadpool_postgres::Pool;
use reqwest::{Method, RequestBuilder, Response};
use secrecy::SecretString;
use serde_json::{json, Value};
use std::future::Future;
use std::time::Duration;
use tenantry_http::tokens::JwtKeys;
use tenantry_http::{Application, Settings};
use tenantry_public::db::{self, Db, PoolSettings};
use tenantry_tenant::migrate::{migrate_schemas, MigrateOptions};
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::Row;

pub const BASE: &str = "example.test";
pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";
/// The password of every account `TestApp::member` adds.
pub const MEMBER_PASSWORD: &str = "pw-0d94f5273665";
/// The User-Agent `TestApp::login_pair` sends (the session list shows it).
pub const USER_AGENT: &str = "tenantry-tests/1.0";

pub struct TestApp {
    pub address: String,
    /// `http://127.0.0.1:{port}` of the metrics listener, when `METRICS_ADDR` was given.
    pub metrics_address: Option<String>,
    pub db_url: String,
    /// A pool of the test's own, for asserting on database state.
    pub db: Pool,
    pub http: reqwest::Client,
    pub jwt: JwtKeys,
}

pub struct TestTenant {
    pub slug: String,
    pub host: String,
    pub company_id: String,
    pub owner_id: String,
    pub owner_email: String,
    pub token: String,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Spawns the app and registers one tenant, its owner logged in.
pub async fn spawn_tenant(slug: &str) -> (TestApp, TestTenant) {
    spawn_tenant_with(&[], slug).await
}

/// `spawn_tenant` with extra settings, as `spawn_app_with` takes them.
pub async fn spawn_tenant_with(overrides: &[(&str, &str)], slug: &str) -> (TestApp, TestTenant) {
    let app = spawn_app_with(overrides).await;
    let tenant = app.tenant(slug).await;
    (app, tenant)
}

/// Spawns the app with extra environment-style settings (e.g. `("DB_POOL_SIZE", "1")`).
pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    spawn_app_via(|url| url.to_owned(), overrides).await
}

/// Spawns the app with the database URL it is given rewritten by `via` (e.g. to reach
/// PostgreSQL through a proxy); the test's own pool and SQL helpers use the real URL.
pub async fn spawn_app_via(via: impl Fn(&str) -> String, overrides: &[(&str, &str)]) -> TestApp {
    spawn_app_on(tenantry_testkit::fresh_database().await, via, overrides).await
}

/// Spawns the app on `database` (fresh, e.g. [`tenantry_testkit::fresh_plain_database`]), after
/// `migrate-schemas`, as [`spawn_app_via`].
pub async fn spawn_app_on(
    database: tenantry_testkit::TestDatabase,
    via: impl Fn(&str) -> String,
    overrides: &[(&str, &str)],
) -> TestApp {
    let db = db::pool(&database.url, &PoolSettings::default()).expect("pool");
    let migrator = Db::connect(&database.url, &PoolSettings::default()).expect("db");
    migrate_schemas(&migrator, &MigrateOptions::default(), &|_, _| {})
        .await
        .expect("migrate public");
    let app = build(&via(&database.url), overrides)
        .await
        .expect("application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let metrics_address = app
        .metrics_port()
        .map(|port| format!("http://127.0.0.1:{port}"));
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        metrics_address,
        db_url: database.url,
        db,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        jwt: JwtKeys::new(&SecretString::from(JWT_SECRET), "tenantry", "tenantry-api"),
    }
}

pub async fn build(database_url: &str, overrides: &[(&str, &str)]) -> anyhow::Result<Application> {
    let redis = tenantry_testkit::redis_url();
    let mut vars: Vec<(String, String)> = vec![
        ("DATABASE_URL".into(), database_url.into()),
        ("REDIS_URL".into(), redis),
        ("JWT_SECRET".into(), JWT_SECRET.into()),
        ("BASE_DOMAIN".into(), BASE.into()),
        ("BIND_ADDR".into(), "127.0.0.1:0".into()),
        ("HTTP_WORKERS".into(), "2".into()),
        // Tests create many tenants from one address; the sign-up throttle has its own test.
        ("SIGNUP_RATE_PER_HOUR".into(), "0".into()),
        // Limits stay on in every test (their headers and their Redis call on every request);
        // tests send many base-host requests from one address, so that limit is high here and
        // `ratelimits.rs` sets its own.
        ("ANON_REQUESTS_PER_HOUR".into(), "1000000".into()),
        // Tests share one Redis: every app gets its own key space.
        (
            "REDIS_PREFIX".into(),
            format!("test-{}", uuid::Uuid::new_v4().simple()),
        ),
    ];
    for (k, v) in overrides {
        vars.retain(|(key, _)| key != k);
        vars.push((k.to_string(), v.to_string()));
    }
    let settings = Settings::from_lookup(|k| {
        vars.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    })
    .expect("settings");
    Application::build(settings).await
}

impl TestApp {
    pub fn request(&self, method: Method, host: &str, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{}", self.address, path))
            .header("Host", host)
    }

    pub async fn get(&self, host: &str, path: &str, token: Option<&str>) -> Response {
        let mut r = self.request(Method::GET, host, path);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.expect("request")
    }

    /// `GET path` on the tenant's host with its owner's token.
    pub async fn get_as(&self, t: &TestTenant, path: &str) -> Response {
        self.get(&t.host, path, Some(&t.token)).await
    }

    /// `GET path` as [`Self::get_as`], asserting the status; the JSON body.
    pub async fn get_json(&self, t: &TestTenant, path: &str, status: u16) -> Value {
        expect_json(self.get_as(t, path).await, status).await
    }

    pub async fn send_json(
        &self,
        method: Method,
        host: &str,
        path: &str,
        body: &Value,
        token: Option<&str>,
    ) -> Response {
        let mut r = self.request(method, host, path).json(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.expect("request")
    }

    pub async fn post_json(
        &self,
        host: &str,
        path: &str,
        body: &Value,
        token: Option<&str>,
    ) -> Response {
        self.send_json(Method::POST, host, path, body, token).await
    }

    pub async fn register(&self, slug: &str) -> Response {
        let (email, password) = (format!("owner@{slug}.test"), format!("password-of-{slug}"));
        self.register_as(slug, &email, &password).await
    }

    /// Signs up the company `slug` with a new owner account `email`/`password`.
    pub async fn register_as(&self, slug: &str, email: &str, password: &str) -> Response {
        self.post_json(
            BASE,
            "/api/v1/register",
            &json!({
                "name": format!("{slug} Inc"),
                "slug": slug,
                "owner_email": email,
                "owner_password": password,
                "plan": "starter",
            }),
            None,
        )
        .await
    }

    /// The token of the newest link of `kind` (`password_reset`, `invitation`, …) mailed to
    /// `email`, from the outbox.
    pub async fn mailed_token(&self, kind: &str, email: &str) -> String {
        let link: String = self
            .sql_one_with(
                "select payload->>'link' from public.outbox \
                  where payload->>'kind' = $1 and payload->>'to' = $2 order by id desc limit 1",
                &[&kind, &email],
            )
            .await;
        link.split("token=")
            .nth(1)
            .expect("a token in the link")
            .to_owned()
    }

    /// The status of a login as `t`'s owner with `password`.
    pub async fn owner_login(&self, t: &TestTenant, password: &str) -> reqwest::StatusCode {
        self.login(&t.host, &t.owner_email, password).await.status()
    }

    pub async fn login(&self, host: &str, email: &str, password: &str) -> Response {
        self.post_json(
            host,
            "/api/v1/auth/token",
            &json!({"email": email, "password": password}),
            None,
        )
        .await
    }

    /// Registers a tenant and logs its owner in.
    pub async fn tenant(&self, slug: &str) -> TestTenant {
        let r = self.register(slug).await;
        assert_eq!(
            r.status(),
            201,
            "register {slug}: {}",
            r.text().await.unwrap_or_default()
        );
        let body: Value = r.json().await.expect("json");
        let host = format!("{slug}.{BASE}");
        let email = format!("owner@{slug}.test");
        let token = self
            .token(&host, &email, &format!("password-of-{slug}"))
            .await;
        TestTenant {
            slug: slug.into(),
            host,
            company_id: body["id"].as_str().expect("id").into(),
            owner_id: body["owner"]["id"].as_str().expect("owner id").into(),
            owner_email: email,
            token,
        }
    }

    pub async fn token(&self, host: &str, email: &str, password: &str) -> String {
        let r = self.login(host, email, password).await;
        assert_eq!(r.status(), 200, "login {email} at {host}");
        let body: Value = r.json().await.expect("json");
        body["access_token"].as_str().expect("token").to_owned()
    }

    /// Adds an account with `role` to a tenant directly in the database and logs it in.
    pub async fn member(&self, tenant: &TestTenant, email: &str, role: &str) -> String {
        let password = MEMBER_PASSWORD;
        let hash = tenantry_public::passwords::hash(
            &tenantry_public::Password::parse(password).expect("pw"),
        )
        .await
        .expect("hash");
        let client = self.db.get().await.expect("db");
        let company =
            tenantry_public::CompanyId(uuid::Uuid::parse_str(&tenant.company_id).expect("uuid"));
        let user = tenantry_public::users::insert(
            &**client,
            &tenantry_public::Email::parse(email).expect("email"),
            &hash,
            "A Member",
            company,
        )
        .await
        .expect("insert user");
        tenantry_public::memberships::insert(
            &**client,
            user.id,
            company,
            tenantry_public::memberships::Role::parse(role).expect("role"),
        )
        .await
        .expect("insert membership");
        self.token(&tenant.host, email, password).await
    }

    /// The domain crates' handle on this test's database (to run what the worker runs).
    pub fn domain_db(&self) -> Db {
        Db::connect(&self.db_url, &PoolSettings::default()).expect("db")
    }

    pub async fn sql_one<T: for<'a> FromSql<'a>>(&self, sql: &str) -> T {
        self.sql_one_with(sql, &[]).await
    }

    /// One value from the single row of `sql`, with `$1`, `$2`, … bound to `params`.
    pub async fn sql_one_with<T: for<'a> FromSql<'a>>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> T {
        self.sql_row_with(sql, params).await.get(0)
    }

    /// The single row of `sql`, with `$1`, `$2`, … bound to `params`.
    pub async fn sql_row_with(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Row {
        let client = self.db.get().await.expect("db");
        client.query_one(sql, params).await.expect(sql)
    }

    /// Every row of `sql`, with `$1`, `$2`, … bound to `params`.
    pub async fn sql_rows_with(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Vec<Row> {
        let client = self.db.get().await.expect("db");
        client.query(sql, params).await.expect(sql)
    }

    /// The first column of every row of `sql`, with `$1`, `$2`, … bound to `params`.
    pub async fn sql_col_with<T: for<'a> FromSql<'a>>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Vec<T> {
        let rows = self.sql_rows_with(sql, params).await;
        rows.iter().map(|r| r.get(0)).collect()
    }

    /// Runs one statement with `$1`, `$2`, … bound to `params`; returns the rows it touched.
    pub async fn sql_with(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> u64 {
        let client = self.db.get().await.expect("db");
        client.execute(sql, params).await.expect(sql)
    }

    /// The number `sql` (a `select count(*) …`) finds.
    pub async fn count(&self, sql: &str) -> i64 {
        self.sql_one(sql).await
    }

    pub async fn sql(&self, sql: &str) {
        let client = self.db.get().await.expect("db");
        client.batch_execute(sql).await.expect(sql);
    }

    /// A request with a bearer token and, if given, a JSON body.
    pub async fn call(
        &self,
        method: Method,
        host: &str,
        path: &str,
        body: Option<Value>,
        token: &str,
    ) -> Response {
        let mut r = self.request(method, host, path).bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().await.expect("request")
    }

    /// A bodiless DELETE with a bearer token.
    pub async fn delete(&self, host: &str, path: &str, token: &str) -> Response {
        self.call(Method::DELETE, host, path, None, token).await
    }

    /// A request with an API key (`X-API-Key`); POST and PATCH carry a small project body.
    pub async fn with_key(&self, method: Method, host: &str, path: &str, key: &str) -> Response {
        let mut request = self
            .request(method.clone(), host, path)
            .header("X-API-Key", key);
        if method == Method::POST || method == Method::PATCH {
            request = request.json(&json!({"name": "made by a key"}));
        }
        request.send().await.expect("request")
    }

    /// `PATCH /api/v1/users/{user}` with a new role.
    pub async fn set_role(&self, host: &str, token: &str, user: &str, role: &str) -> Response {
        let body = json!({"role": role});
        self.call(
            Method::PATCH,
            host,
            &format!("/api/v1/users/{user}"),
            Some(body),
            token,
        )
        .await
    }

    /// `POST /api/v1/users/{user}/deactivate` (or `activate`), with no body.
    pub async fn member_switch(&self, host: &str, token: &str, user: &str, to: &str) -> Response {
        let path = format!("/api/v1/users/{user}/{to}");
        self.call(Method::POST, host, &path, None, token).await
    }

    /// The status of `GET path` on `host` with a bearer token.
    pub async fn status_of(&self, host: &str, path: &str, token: &str) -> u16 {
        self.get(host, path, Some(token)).await.status().as_u16()
    }

    /// `POST /api/v1/projects` with `body`.
    pub async fn post_project(&self, host: &str, token: &str, body: Value) -> Response {
        self.call(Method::POST, host, "/api/v1/projects", Some(body), token)
            .await
    }

    /// Creates a project (201) and returns its id.
    /// A new project of `t` named `name` (created by its owner); its id.
    pub async fn project(&self, t: &TestTenant, name: &str) -> String {
        self.create_project(&t.host, &t.token, serde_json::json!({ "name": name }))
            .await
    }

    pub async fn create_project(&self, host: &str, token: &str, body: Value) -> String {
        let b = expect_json(self.post_project(host, token, body).await, 201).await;
        b["id"].as_str().expect("id").to_owned()
    }

    /// `POST /api/v1/invitations` for `email` with `role`.
    pub async fn invite(&self, host: &str, token: &str, email: &str, role: &str) -> Response {
        let body = json!({"email": email, "role": role});
        self.call(Method::POST, host, "/api/v1/invitations", Some(body), token)
            .await
    }

    /// `POST /api/v1/auth/logout` with a refresh token.
    pub async fn logout(&self, host: &str, refresh_token: &str) -> Response {
        let body = json!({"refresh_token": refresh_token});
        self.post_json(host, "/api/v1/auth/logout", &body, None)
            .await
    }

    /// Asserts that `old` no longer logs `email` in at `host` (401) and `new` does.
    pub async fn assert_password_changed(&self, host: &str, email: &str, old: &str, new: &str) {
        problem(self.login(host, email, old).await, 401).await;
        assert_eq!(self.login(host, email, new).await.status(), 200, "{new}");
    }

    /// Creates an API key with `role` (named "{role} key") on `host`; returns the 201 body.
    pub async fn create_key(&self, host: &str, token: &str, role: &str) -> Value {
        let body = json!({"name": format!("{role} key"), "role": role});
        let r = self
            .post_json(host, "/api/v1/api-keys", &body, Some(token))
            .await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
        r.json().await.expect("json")
    }

    /// Logs in (with `USER_AGENT`) and returns (access token, refresh token).
    pub async fn login_pair(&self, host: &str, email: &str, password: &str) -> (String, String) {
        let r = self
            .request(Method::POST, host, "/api/v1/auth/token")
            .header("User-Agent", USER_AGENT)
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200, "login {email} at {host}");
        let b: Value = r.json().await.expect("json");
        (
            b["access_token"].as_str().expect("access token").into(),
            b["refresh_token"].as_str().expect("refresh token").into(),
        )
    }

    /// A new session of `t`'s owner on `t`'s host: (access token, refresh token).
    pub async fn owner_session(&self, t: &TestTenant) -> (String, String) {
        let password = format!("password-of-{}", t.slug);
        self.login_pair(&t.host, &t.owner_email, &password).await
    }

    /// Asserts `select count(*) …` for each (query, expected count).
    pub async fn assert_counts(&self, counts: &[(&str, i64)]) {
        for (sql, expected) in counts {
            assert_eq!(self.count(sql).await, *expected, "{sql}");
        }
    }

    /// `POST /auth/switch` into the organization `slug` with an account token, on the base host.
    pub async fn switch(&self, account: &str, slug: &str) -> Response {
        let body = json!({ "slug": slug });
        self.post_json(BASE, "/api/v1/auth/switch", &body, Some(account))
            .await
    }

    pub async fn refresh(&self, host: &str, refresh_token: &str) -> Response {
        self.post_json(
            host,
            "/api/v1/auth/token/refresh",
            &json!({"refresh_token": refresh_token}),
            None,
        )
        .await
    }

    /// The role in an access token (which must verify).
    pub fn role_of(&self, access: &str) -> String {
        self.jwt
            .verify(access)
            .expect("verifies")
            .role
            .expect("a role")
    }

    /// The id of the account with this email (case-insensitively).
    pub async fn user_id(&self, email: &str) -> String {
        self.sql_one_with::<uuid::Uuid>(
            "select id from public.users where lower(email) = lower($1)",
            &[&email],
        )
        .await
        .to_string()
    }

    /// Marks the account with this email as verified.
    pub async fn verify_email(&self, email: &str) {
        self.sql_with(
            "update public.users set email_verified_at = now() where email = $1",
            &[&email],
        )
        .await;
    }

    /// How many entries with `action` are in the trail of `schema` (a test-made identifier).
    pub async fn audit_count(&self, schema: &str, action: &str) -> i64 {
        self.sql_one_with(
            &format!("select count(*) from \"{schema}\".audit_log where action = $1"),
            &[&action],
        )
        .await
    }

    /// The `before` and `after` of the one entry with `action` in the trail of `schema`.
    pub async fn audit_change(&self, schema: &str, action: &str) -> (Value, Value) {
        let row = self
            .sql_row_with(
                &format!("select before, after from \"{schema}\".audit_log where action = $1"),
                &[&action],
            )
            .await;
        (row.get(0), row.get(1))
    }

    /// Gives the account `user` a membership with `role` in `company` (ids as strings).
    pub async fn add_membership(&self, user: &str, company: &str, role: &str) {
        self.sql_with(
            "insert into public.memberships (id, user_id, company_id, role) \
             values (gen_random_uuid(), $1::text::uuid, $2::text::uuid, $3)",
            &[&user, &company, &role],
        )
        .await;
    }

    /// Every action in the trail of `schema` (a test-made identifier), oldest first.
    pub async fn audit_actions(&self, schema: &str) -> Vec<String> {
        self.sql_col_with(
            &format!("select action from \"{schema}\".audit_log order by id"),
            &[],
        )
        .await
    }
}

/// An HS256 token over `claims` with the test secret and `kid` in its header.
pub fn sign_with_kid<T: serde::Serialize>(claims: &T, kid: &str) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("sign")
}

/// The string `field` of every entry in `page["results"]`, in order.
pub fn column(page: &Value, field: &str) -> Vec<String> {
    columns(page, &[field]).into_iter().flatten().collect()
}

/// The strings `fields` of every entry in `page["results"]`, in order.
pub fn columns(page: &Value, fields: &[&str]) -> Vec<Vec<String>> {
    page["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|entry| {
            fields
                .iter()
                .map(|f| entry[f].as_str().expect(f).to_owned())
                .collect()
        })
        .collect()
}

/// Asserts the status and returns the JSON body.
pub async fn expect_json(r: Response, status: u16) -> Value {
    let actual = r.status().as_u16();
    let text = r.text().await.expect("body");
    assert_eq!(actual, status, "status: {text}");
    serde_json::from_str(&text).expect("json")
}

/// Asserts a problem+json response (as `problem` does) whose `detail`, or for a validation
/// problem its `errors` serialised, contains `needle`; returns the body.
pub async fn expect_problem(r: Response, status: u16, needle: &str) -> Value {
    let body = problem(r, status).await;
    let detail = body["detail"].as_str().unwrap_or_default();
    let errors = body.get("errors").map(Value::to_string).unwrap_or_default();
    assert!(
        detail.contains(needle) || errors.contains(needle),
        "{needle:?} in neither detail nor errors: {body}"
    );
    body
}

/// Asserts a problem+json response with `status` naming each of `fields` in `errors` (a
/// non-empty array of messages each); returns the body.
pub async fn expect_field_errors(r: Response, status: u16, fields: &[&str]) -> Value {
    let body = problem(r, status).await;
    assert_field_errors(&body, fields);
    body
}

/// Asserts that a problem body names each of `fields` in `errors` (a non-empty array each).
pub fn assert_field_errors(body: &Value, fields: &[&str]) {
    for field in fields {
        assert!(
            body["errors"][field]
                .as_array()
                .is_some_and(|messages| !messages.is_empty()),
            "{field}: {body}"
        );
    }
}

/// Asserts a 422 whose `errors[field]` is a non-empty array whose first message contains
/// `needle`; returns the body.
pub async fn expect_field_error(r: Response, field: &str, needle: &str) -> Value {
    let body = expect_field_errors(r, 422, &[field]).await;
    let first = body["errors"][field][0].as_str().unwrap_or_default();
    assert!(first.contains(needle), "{field}: {needle:?} in {body}");
    body
}

/// Asserts a problem+json response and returns its body.
pub async fn problem(r: Response, status: u16) -> Value {
    assert_eq!(r.status().as_u16(), status, "status");
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(ct, "application/problem+json", "content type");
    let body: Value = r.json().await.expect("problem json");
    assert_eq!(body["status"], status, "status member");
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("urn:tenantry:problem:")),
        "{body}"
    );
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    body
}

/// Polls `check` until it returns true, for up to five seconds. Used only where the system is
/// asynchronous by design (cache invalidation through LISTEN/NOTIFY).
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually_within(what, Duration::from_secs(5), check).await;
}

/// Polls `check` every 20 ms until it returns true, for up to `limit`.
pub async fn eventually_within<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let step = Duration::from_millis(20);
    for _ in 0..(limit.as_millis() / step.as_millis()) {
        if check().await {
            return;
        }
        tokio::time::sleep(step).await;
    }
    panic!("{what}: not true after {} s", limit.as_secs());
}
