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

pub const BASE: &str = "example.test";
pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";

pub struct TestApp {
    pub address: String,
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

/// Spawns the app with extra environment-style settings (e.g. `("DB_POOL_SIZE", "1")`).
pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    let database = tenantry_testkit::fresh_database().await;
    let db = db::pool(&database.url, &PoolSettings::default()).expect("pool");
    let migrator = Db::connect(&database.url, &PoolSettings::default()).expect("db");
    migrate_schemas(&migrator, &MigrateOptions::default(), &|_, _| {})
        .await
        .expect("migrate public");
    let app = build(&database.url, overrides)
        .await
        .expect("application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
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
        self.post_json(
            BASE,
            "/api/v1/register",
            &json!({
                "name": format!("{slug} Inc"),
                "slug": slug,
                "owner_email": format!("owner@{slug}.test"),
                "owner_password": format!("password-of-{slug}"),
                "plan": "starter",
            }),
            None,
        )
        .await
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
        let password = "member-password-123";
        let hash = tenantry_public::passwords::hash(
            &tenantry_public::Password::parse(password).expect("pw"),
        )
        .await
        .expect("hash");
        let client = self.db.get().await.expect("db");
        let user = tenantry_public::users::insert(
            &**client,
            &tenantry_public::Email::parse(email).expect("email"),
            &hash,
            "A Member",
        )
        .await
        .expect("insert user");
        let company = uuid::Uuid::parse_str(&tenant.company_id).expect("uuid");
        tenantry_public::memberships::insert(
            &**client,
            user.id,
            tenantry_public::CompanyId(company),
            tenantry_public::memberships::Role::parse(role).expect("role"),
        )
        .await
        .expect("insert membership");
        self.token(&tenant.host, email, password).await
    }

    pub async fn sql_one<T: for<'a> tokio_postgres::types::FromSql<'a>>(&self, sql: &str) -> T {
        let client = self.db.get().await.expect("db");
        client.query_one(sql, &[]).await.expect(sql).get(0)
    }

    pub async fn sql(&self, sql: &str) {
        let client = self.db.get().await.expect("db");
        client.batch_execute(sql).await.expect(sql);
    }
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
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..250 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not true after 5 s");
}
