//! The permission matrix, walked: every tenant route with every role. The expected minimum role
//! per route is written here independently of `tenantry_tenant::access` (it is the README's
//! table), so a route that checks the wrong permission, or none, fails this test.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};

const ROLES: [&str; 4] = ["owner", "admin", "member", "viewer"];

fn rank(role: &str) -> u8 {
    match role {
        "owner" => 3,
        "admin" => 2,
        "member" => 1,
        "viewer" => 0,
        other => panic!("unknown role {other}"),
    }
}

/// One route: method, path (with `{target}` replaced by a fresh target of `target` kind),
/// body, and the least powerful role allowed.
struct Case {
    method: Method,
    path: &'static str,
    target: Target,
    body: Value,
    minimum: &'static str,
}

#[derive(Clone, Copy)]
enum Target {
    None,
    Project,
}

struct Fixture {
    app: TestApp,
    tenant: TestTenant,
    tokens: Vec<(String, String)>,
    counter: std::sync::atomic::AtomicUsize,
}

impl Fixture {
    async fn new() -> Self {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let mut tokens = vec![("owner".to_owned(), tenant.token.clone())];
        for role in &ROLES[1..] {
            let token = app
                .member(&tenant, &format!("{role}@acme.test"), role)
                .await;
            tokens.push(((*role).to_owned(), token));
        }
        Self {
            app,
            tenant,
            tokens,
            counter: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn next(&self) -> usize {
        self.counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// A fresh target for one request, made by the owner.
    async fn target(&self, kind: Target) -> String {
        let n = self.next();
        match kind {
            Target::None => String::new(),
            Target::Project => {
                let r = self
                    .app
                    .post_json(
                        &self.tenant.host,
                        "/api/v1/projects",
                        &json!({"name": format!("target {n}")}),
                        Some(&self.tenant.token),
                    )
                    .await;
                assert_eq!(r.status(), 201);
                let b: Value = r.json().await.unwrap();
                b["id"].as_str().unwrap().to_owned()
            }
        }
    }

    async fn check(&self, cases: &[Case]) {
        let mut failures = Vec::new();
        for case in cases {
            for (role, token) in &self.tokens {
                let target = self.target(case.target).await;
                let path = case.path.replace("{target}", &target);
                let mut request = self
                    .app
                    .request(case.method.clone(), &self.tenant.host, &path)
                    .bearer_auth(token);
                if !case.body.is_null() {
                    request = request.json(&case.body);
                }
                let r = request.send().await.unwrap();
                let status = r.status().as_u16();
                let allowed = rank(role) >= rank(case.minimum);
                let ok = if allowed {
                    (200..300).contains(&status)
                } else {
                    status == 403
                };
                if !ok {
                    let body = r.text().await.unwrap_or_default();
                    failures.push(format!(
                        "{} {} as {role}: {status} (expected {}) {body}",
                        case.method,
                        case.path,
                        if allowed { "2xx" } else { "403" }
                    ));
                }
            }
        }
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }
}

fn case(
    method: Method,
    path: &'static str,
    target: Target,
    body: Value,
    minimum: &'static str,
) -> Case {
    Case {
        method,
        path,
        target,
        body,
        minimum,
    }
}

#[tokio::test]
async fn every_tenant_route_with_every_role() {
    let f = Fixture::new().await;
    let cases = vec![
        case(
            Method::GET,
            "/api/v1/projects",
            Target::None,
            Value::Null,
            "viewer",
        ),
        case(
            Method::GET,
            "/api/v1/projects/{target}",
            Target::Project,
            Value::Null,
            "viewer",
        ),
        case(
            Method::POST,
            "/api/v1/projects",
            Target::None,
            json!({"name": "new"}),
            "member",
        ),
        case(
            Method::PATCH,
            "/api/v1/projects/{target}",
            Target::Project,
            json!({"name": "renamed"}),
            "member",
        ),
        case(
            Method::DELETE,
            "/api/v1/projects/{target}",
            Target::Project,
            Value::Null,
            "member",
        ),
    ];
    f.check(&cases).await;
}
