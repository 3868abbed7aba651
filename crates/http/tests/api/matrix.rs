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
    /// A fresh task in a fresh project.
    Task,
    /// A fresh note of the organization.
    Document,
    /// A fresh viewer, added by the owner.
    Member,
    /// A fresh viewer whose membership the owner deactivated.
    InactiveMember,
    /// A fresh viewer with a verified email (a possible new owner).
    VerifiedMember,
    /// A fresh pending invitation.
    Invitation,
    /// A fresh viewer API key, made by the owner.
    ApiKey,
    /// A fresh project made by the admin (so the owner's keys are not its leads).
    AdminProject,
    /// `{project}/members/{user}`: the viewer on the team of a fresh project made by the admin.
    TeamSeat,
    /// A fresh task made by the admin (so only admins, owners and the admin as its creator may
    /// remind), in a fresh project of the admin's, assigned to the admin.
    AdminTask,
    /// A fresh report asked for by the caller itself (a report is its requester's), still
    /// queued.
    OwnReport,
    /// The same, built (so its CSV can be downloaded).
    OwnBuiltReport,
}

struct Fixture {
    app: TestApp,
    tenant: TestTenant,
    /// (role, credential, is an API key)
    tokens: Vec<(String, String, bool)>,
    counter: std::sync::atomic::AtomicUsize,
}

impl Fixture {
    async fn new() -> Self {
        let (app, tenant) = spawn_tenant("acme").await;
        // Seats are not what this test is about: every request may add a member.
        app.sql("update public.companies set plan = 'enterprise'")
            .await;
        let mut tokens = vec![("owner".to_owned(), tenant.token.clone(), false)];
        for role in &ROLES[1..] {
            let token = app
                .member(&tenant, &format!("{role}@acme.test"), role)
                .await;
            tokens.push(((*role).to_owned(), token, false));
        }
        // An API key of every role a key may have (never owner), made by the owner.
        for role in &ROLES[1..] {
            let b = app.create_key(&tenant.host, &tenant.token, role).await;
            tokens.push((
                (*role).to_owned(),
                b["key"].as_str().unwrap().to_owned(),
                true,
            ));
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

    /// The id in the 201 answer to the owner's `POST path` with `body`.
    async fn created_id(&self, path: &str, body: Value) -> String {
        let r = self
            .app
            .post_json(&self.tenant.host, path, &body, Some(&self.tenant.token))
            .await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
        let b: Value = r.json().await.unwrap();
        b["id"].as_str().unwrap().to_owned()
    }

    /// The id in the 201 answer to the admin's `POST path` with `body`.
    async fn created_by_admin(&self, path: &str, body: Value) -> String {
        let admin = &self.tokens[1].1;
        let r = self
            .app
            .post_json(&self.tenant.host, path, &body, Some(admin))
            .await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
        let b: Value = r.json().await.unwrap();
        b["id"].as_str().unwrap().to_owned()
    }

    /// A fresh report on a fresh project of the owner's, asked for with `credential` (a token
    /// or, with `is_key`, an API key), and built when `built`.
    async fn own_report(&self, credential: &str, is_key: bool, built: bool) -> String {
        let project = self.target(Target::Project).await;
        let path = format!("/api/v1/projects/{project}/reports");
        let request = self.app.request(Method::POST, &self.tenant.host, &path);
        let request = if is_key {
            request.header("X-API-Key", credential)
        } else {
            request.bearer_auth(credential)
        };
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), 202);
        let id = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        if built {
            let company = tenantry_public::CompanyId(self.tenant.company_id.parse().unwrap());
            let built = tenantry_tenant::reports::run(
                &self.app.domain_db(),
                company,
                id.parse().unwrap(),
                chrono::Utc::now(),
            )
            .await
            .unwrap();
            assert!(matches!(built, tenantry_tenant::reports::Built::Done(_)));
        }
        id
    }

    /// A fresh target for one request, made by the owner.
    async fn target(&self, kind: Target) -> String {
        let n = self.next();
        match kind {
            Target::None => String::new(),
            Target::OwnReport | Target::OwnBuiltReport => {
                unreachable!("made by own_report, with the caller's credential")
            }
            Target::AdminProject => {
                self.created_by_admin("/api/v1/projects", json!({"name": format!("target {n}")}))
                    .await
            }
            Target::TeamSeat => {
                let project = self
                    .created_by_admin("/api/v1/projects", json!({"name": format!("target {n}")}))
                    .await;
                let viewer = self.app.user_id("viewer@acme.test").await;
                let r = self
                    .app
                    .post_json(
                        &self.tenant.host,
                        &format!("/api/v1/projects/{project}/members"),
                        &json!({"user_id": viewer, "role": "contributor"}),
                        Some(&self.tokens[1].1),
                    )
                    .await;
                assert_eq!(r.status(), 201);
                format!("{project}/members/{viewer}")
            }
            Target::AdminTask => {
                let project = self
                    .created_by_admin("/api/v1/projects", json!({"name": format!("target {n}")}))
                    .await;
                let admin = self.app.user_id("admin@acme.test").await;
                self.created_by_admin(
                    "/api/v1/tasks",
                    json!({"project_id": project, "title": format!("target {n}"),
                           "assignee_id": admin}),
                )
                .await
            }
            Target::Project => {
                self.created_id("/api/v1/projects", json!({"name": format!("target {n}")}))
                    .await
            }
            Target::Task => {
                let project = self
                    .created_id("/api/v1/projects", json!({"name": format!("target {n}")}))
                    .await;
                self.created_id(
                    "/api/v1/tasks",
                    json!({"project_id": project, "title": format!("target {n}")}),
                )
                .await
            }
            Target::Document => {
                self.created_id(
                    "/api/v1/documents",
                    json!({"title": format!("target {n}"), "body": "note"}),
                )
                .await
            }
            Target::Member | Target::InactiveMember | Target::VerifiedMember => {
                let id = self
                    .created_id(
                        "/api/v1/users",
                        json!({"email": format!("target-{n}@acme.test"), "full_name": "Target",
                                "role": "viewer", "password": "pw-f463622bff34"}),
                    )
                    .await;
                if let Target::InactiveMember = kind {
                    let r = self
                        .app
                        .post_json(
                            &self.tenant.host,
                            &format!("/api/v1/users/{id}/deactivate"),
                            &json!({}),
                            Some(&self.tenant.token),
                        )
                        .await;
                    assert_eq!(r.status(), 200);
                }
                if let Target::VerifiedMember = kind {
                    self.app
                        .sql_with(
                            "update public.users set email_verified_at = now() where id = $1::text::uuid",
                            &[&id],
                        )
                        .await;
                }
                id
            }
            Target::ApiKey => {
                self.created_id(
                    "/api/v1/api-keys",
                    json!({"name": format!("target {n}"), "role": "viewer"}),
                )
                .await
            }
            Target::Invitation => {
                self.created_id(
                    "/api/v1/invitations",
                    json!({"email": format!("invited-{n}@acme.test"), "role": "viewer"}),
                )
                .await
            }
        }
    }

    async fn check(&self, cases: &[Case]) {
        self.check_with(cases, self.tokens.iter()).await;
    }

    /// `check` with the credentials in `tokens`' order (the organization's deletion suspends it
    /// for everyone, so the owner goes last there).
    async fn check_with<'a>(
        &'a self,
        cases: &[Case],
        tokens: impl Iterator<Item = &'a (String, String, bool)> + Clone,
    ) {
        let mut failures = Vec::new();
        for case in cases {
            for (role, token, is_key) in tokens.clone() {
                let target = match case.target {
                    Target::OwnReport => self.own_report(token, *is_key, false).await,
                    Target::OwnBuiltReport => self.own_report(token, *is_key, true).await,
                    kind => self.target(kind).await,
                };
                let path = case.path.replace("{target}", &target);
                // `{n}` makes bodies unique per request, `{target}` names the target.
                let n = self.next().to_string();
                let body: Value = serde_json::from_str(
                    &case
                        .body
                        .to_string()
                        .replace("{n}", &n)
                        .replace("{target}", &target),
                )
                .unwrap();
                let mut request = self
                    .app
                    .request(case.method.clone(), &self.tenant.host, &path);
                request = if *is_key {
                    request.header("X-API-Key", token)
                } else {
                    request.bearer_auth(token)
                };
                if !body.is_null() {
                    request = request.json(&body);
                }
                let r = request.send().await.unwrap();
                let status = r.status().as_u16();
                let allowed = rank(role) >= rank(case.minimum)
                    && (!*is_key || keys_may(&case.method, case.path));
                let ok = if allowed {
                    (200..300).contains(&status)
                } else {
                    status == 403
                };
                if !ok {
                    let body = r.text().await.unwrap_or_default();
                    failures.push(format!(
                        "{} {} as {role}{}: {status} (expected {}) {body}",
                        case.method,
                        case.path,
                        if *is_key { " key" } else { "" },
                        if allowed { "2xx" } else { "403" }
                    ));
                }
            }
        }
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }
}

/// What API keys may do at all (their role permitting): content, reading members and the audit
/// trail. Never managing members, invitations, keys or ownership.
fn keys_may(method: &Method, path: &str) -> bool {
    path.starts_with("/api/v1/projects")
        || path.starts_with("/api/v1/tasks")
        || path.starts_with("/api/v1/documents")
        || path.starts_with("/api/v1/reports")
        || path == "/api/v1/dashboard"
        || path == "/api/v1/audit-log"
        || (*method == Method::GET && path.starts_with("/api/v1/users"))
        || (*method == Method::GET && path == "/api/v1/organization")
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
    let viewer = f.app.user_id("viewer@acme.test").await;
    let cases = vec![
        case(
            Method::GET,
            "/api/v1/projects/{target}/members",
            Target::Project,
            Value::Null,
            "viewer",
        ),
        // Team changes: admins and owners, or the project's leads (nobody here but the admin).
        case(
            Method::POST,
            "/api/v1/projects/{target}/members",
            Target::AdminProject,
            json!({"user_id": viewer, "role": "contributor"}),
            "admin",
        ),
        case(
            Method::DELETE,
            "/api/v1/projects/{target}",
            Target::TeamSeat,
            Value::Null,
            "admin",
        ),
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
        case(
            Method::GET,
            "/api/v1/tasks",
            Target::None,
            Value::Null,
            "viewer",
        ),
        case(
            Method::GET,
            "/api/v1/tasks/mine",
            Target::None,
            Value::Null,
            "viewer",
        ),
        case(
            Method::GET,
            "/api/v1/tasks/export",
            Target::None,
            Value::Null,
            "viewer",
        ),
        case(
            Method::GET,
            "/api/v1/projects/{target}/tasks",
            Target::Project,
            Value::Null,
            "viewer",
        ),
        case(
            Method::GET,
            "/api/v1/projects/export",
            Target::None,
            Value::Null,
            "viewer",
        ),
        case(
            Method::GET,
            "/api/v1/projects/statistics",
            Target::None,
            Value::Null,
            "viewer",
        ),
        case(
            Method::GET,
            "/api/v1/projects/{target}/statistics",
            Target::Project,
            Value::Null,
            "viewer",
        ),
        // Reports: anyone who may read the project asks; the requester reads its own (another
        // member's report is 404 for members and viewers: tests/api/reports.rs).
        case(
            Method::POST,
            "/api/v1/projects/{target}/reports",
            Target::Project,
            Value::Null,
            "viewer",
        ),
        case(
            Method::GET,
            "/api/v1/reports/{target}",
            Target::OwnReport,
            Value::Null,
            "viewer",
        ),
        case(
            Method::GET,
            "/api/v1/reports/{target}/download",
            Target::OwnBuiltReport,
            Value::Null,
            "viewer",
        ),
        case(
            Method::GET,
            "/api/v1/dashboard",
            Target::None,
            Value::Null,
            "viewer",
        ),
        case(
            Method::GET,
            "/api/v1/tasks/{target}",
            Target::Task,
            Value::Null,
            "viewer",
        ),
        case(
            Method::POST,
            "/api/v1/tasks",
            Target::Project,
            json!({"project_id": "{target}", "title": "new"}),
            "member",
        ),
        case(
            Method::PATCH,
            "/api/v1/tasks/{target}",
            Target::Task,
            json!({"priority": "high"}),
            "member",
        ),
        case(
            Method::POST,
            "/api/v1/tasks/{target}/complete",
            Target::Task,
            Value::Null,
            "member",
        ),
        case(
            Method::POST,
            "/api/v1/tasks/{target}/reopen",
            Target::Task,
            Value::Null,
            "member",
        ),
        case(
            Method::DELETE,
            "/api/v1/tasks/{target}",
            Target::Task,
            Value::Null,
            "member",
        ),
        // Reminders: admins and owners, or the task's creator (here the admin); a member key of
        // the owner is neither.
        case(
            Method::POST,
            "/api/v1/tasks/{target}/remind",
            Target::AdminTask,
            Value::Null,
            "admin",
        ),
        case(
            Method::GET,
            "/api/v1/documents",
            Target::None,
            Value::Null,
            "viewer",
        ),
        case(
            Method::GET,
            "/api/v1/documents/{target}",
            Target::Document,
            Value::Null,
            "viewer",
        ),
        case(
            Method::GET,
            "/api/v1/documents/{target}/content",
            Target::Document,
            Value::Null,
            "viewer",
        ),
        case(
            Method::POST,
            "/api/v1/documents",
            Target::Project,
            json!({"project_id": "{target}", "title": "new", "body": "b"}),
            "member",
        ),
        case(
            Method::PATCH,
            "/api/v1/documents/{target}",
            Target::Document,
            json!({"title": "renamed", "body": "changed"}),
            "member",
        ),
        case(
            Method::DELETE,
            "/api/v1/documents/{target}",
            Target::Document,
            Value::Null,
            "member",
        ),
        case(
            Method::GET,
            "/api/v1/users",
            Target::None,
            Value::Null,
            "viewer",
        ),
        case(
            Method::GET,
            "/api/v1/users/{target}",
            Target::Member,
            Value::Null,
            "viewer",
        ),
        case(
            Method::POST,
            "/api/v1/users",
            Target::None,
            json!({"email": "added-{n}@acme.test", "full_name": "Added", "role": "viewer",
                   "password": "pw-7e3e1cd8debd"}),
            "admin",
        ),
        case(
            Method::PATCH,
            "/api/v1/users/{target}",
            Target::Member,
            json!({"role": "member"}),
            "admin",
        ),
        case(
            Method::DELETE,
            "/api/v1/users/{target}",
            Target::Member,
            Value::Null,
            "admin",
        ),
        case(
            Method::POST,
            "/api/v1/users/{target}/deactivate",
            Target::Member,
            Value::Null,
            "admin",
        ),
        case(
            Method::POST,
            "/api/v1/users/{target}/activate",
            Target::InactiveMember,
            Value::Null,
            "admin",
        ),
        case(
            Method::POST,
            "/api/v1/invitations",
            Target::None,
            json!({"email": "invitee-{n}@acme.test", "role": "viewer"}),
            "admin",
        ),
        case(
            Method::GET,
            "/api/v1/invitations",
            Target::None,
            Value::Null,
            "admin",
        ),
        case(
            Method::DELETE,
            "/api/v1/invitations/{target}",
            Target::Invitation,
            Value::Null,
            "admin",
        ),
        case(
            Method::POST,
            "/api/v1/api-keys",
            Target::None,
            json!({"name": "key {n}", "role": "viewer"}),
            "admin",
        ),
        case(
            Method::GET,
            "/api/v1/api-keys",
            Target::None,
            Value::Null,
            "admin",
        ),
        case(
            Method::DELETE,
            "/api/v1/api-keys/{target}",
            Target::ApiKey,
            Value::Null,
            "admin",
        ),
        case(
            Method::GET,
            "/api/v1/audit-log",
            Target::None,
            Value::Null,
            "admin",
        ),
        case(
            Method::GET,
            "/api/v1/organization",
            Target::None,
            Value::Null,
            "viewer",
        ),
        case(
            Method::PATCH,
            "/api/v1/organization",
            Target::None,
            json!({"name": "Acme {n}"}),
            "admin",
        ),
        case(
            Method::GET,
            "/api/v1/organization/settings",
            Target::None,
            Value::Null,
            "admin",
        ),
        case(
            Method::PATCH,
            "/api/v1/organization/settings",
            Target::None,
            json!({"reminder_lead_hours": 12, "timezone": "Europe/Berlin"}),
            "admin",
        ),
        case(
            Method::GET,
            "/api/v1/organization/domains",
            Target::None,
            Value::Null,
            "admin",
        ),
        case(
            Method::GET,
            "/api/v1/organization/subscription",
            Target::None,
            Value::Null,
            "admin",
        ),
        case(
            Method::GET,
            "/api/v1/organization/billing/invoices",
            Target::None,
            Value::Null,
            "admin",
        ),
        // On enterprise (above): a downgrade it fits in, scheduled for the trial's end.
        case(
            Method::POST,
            "/api/v1/organization/subscription/change",
            Target::None,
            json!({"plan": "professional"}),
            "owner",
        ),
        case(
            Method::POST,
            "/api/v1/organization/subscription/cancel",
            Target::None,
            Value::Null,
            "owner",
        ),
        case(
            Method::POST,
            "/api/v1/organization/subscription/resume",
            Target::None,
            Value::Null,
            "owner",
        ),
    ];
    f.check(&cases).await;
    // The deletion suspends the organization for every credential: the owner goes last, and
    // the organization is put back as an operator's restore would.
    f.check_with(
        &[case(
            Method::DELETE,
            "/api/v1/organization",
            Target::None,
            json!({"password": "password-of-acme"}),
            "owner",
        )],
        f.tokens.iter().rev(),
    )
    .await;
    f.app
        .sql(
            "update public.companies set status = 'active', deletion_requested_at = null, \
             drop_after = null",
        )
        .await;
    eventually("the organization serves again", || async {
        f.app
            .status_of(&f.tenant.host, "/api/v1/organization", &f.tenant.token)
            .await
            == 200
    })
    .await;
    // Last: once the owner has transferred, the fixture has a different owner.
    f.check(&[case(
        Method::POST,
        "/api/v1/organization/transfer-ownership",
        Target::VerifiedMember,
        json!({"user_id": "{target}", "password": "password-of-acme"}),
        "owner",
    )])
    .await;
    let owner: String = f
        .app
        .sql_one("select u.email from public.memberships m join public.users u on u.id = m.user_id where m.role = 'owner'")
        .await;
    assert!(
        owner.starts_with("target-"),
        "ownership moved to the target: {owner}"
    );
}
