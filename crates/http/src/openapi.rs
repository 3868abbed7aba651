//! The OpenAPI document, served at `/api/openapi.json` with Swagger UI at `/api/docs/`. Each
//! route module lists its own operations (`routes::<module>::Api`); [`document`] merges them
//! under the API's info, tags and security schemes, and [`CommonAnswers`] adds what every
//! operation of a kind can answer, so a route's annotation lists only the statuses that are its own.

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Response};
use utoipa::{Modify, OpenApi};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "Tenantry API", description = "Schema-per-tenant SaaS backend. Tenant routes are \
        served on `<slug>.BASE_DOMAIN` (the Host header picks the tenant); `register` on \
        `BASE_DOMAIN` itself. Every error is `application/problem+json`."),
    components(schemas(crate::error::ProblemDoc)),
    modifiers(&BearerAuth),
    tags(
        (name = "operations", description = "Liveness and readiness"),
        (name = "provisioning", description = "Company signup on the base host"),
        (name = "auth", description = "Access and refresh tokens, sessions, switching organizations"),
        (name = "account", description = "The caller's own account"),
        (name = "projects", description = "Projects of the Host's tenant"),
        (name = "tasks", description = "Tasks of the Host's tenant's projects"),
        (name = "reports", description = "Project reports built by the worker: tasks as CSV and statistics"),
        (name = "dashboard", description = "The caller's work and the organization's figures"),
        (name = "documents", description = "Notes and files of the Host's tenant and its projects"),
        (name = "members", description = "Members of the Host's tenant and their roles"),
        (name = "invitations", description = "Invitations to join the Host's tenant"),
        (name = "organization", description = "The Host's tenant as a whole: overview, name, settings, deletion, ownership"),
        (name = "api-keys", description = "API keys of the Host's tenant (sent as X-API-Key)"),
        (name = "audit", description = "The Host's tenant's audit trail"),
        (name = "billing", description = "Plans, the organization's subscription and invoices, and the billing provider's webhook"),
    )
)]
struct ApiDoc;

/// The whole document: the API's info and security schemes, and every route module's operations.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for part in [
        routes::ops::Api::openapi(),
        routes::register::Api::openapi(),
        routes::plans::Api::openapi(),
        routes::billing::Api::openapi(),
        routes::token::Api::openapi(),
        routes::sessions::Api::openapi(),
        routes::verification::Api::openapi(),
        routes::me::Api::openapi(),
        routes::members::Api::openapi(),
        routes::invitations::Api::openapi(),
        routes::organization::Api::openapi(),
        routes::domains::Api::openapi(),
        routes::subscription::Api::openapi(),
        routes::insights::Api::openapi(),
        routes::projects::Api::openapi(),
        routes::tasks::Api::openapi(),
        routes::reports::Api::openapi(),
        routes::documents::Api::openapi(),
        routes::teams::Api::openapi(),
        routes::api_keys::Api::openapi(),
        routes::audit_log::Api::openapi(),
    ] {
        doc.merge(part);
    }
    CommonAnswers.modify(&mut doc);
    doc
}

/// Paths whose writes never answer 402: base-host and account routes (not a tenant's data),
/// and the subscription's own routes (the way out of the read-only state).
const READ_ONLY_EXEMPT: [&str; 7] = [
    "/api/v1/register",
    "/api/v1/auth/",
    "/api/v1/users/me",
    "/api/v1/billing/",
    "/api/v1/organization/subscription",
    "/api/v1/invitations/accept",
    "/api/v1/me/",
];

/// The problem-body media type and schema every error answer carries.
const PROBLEM: &str = "application/problem+json";

/// The answers that come from the platform rather than from a handler: the Host and credential
/// checks in front of `/api/v1`, and the extractors for bodies, query strings and path ids. Each
/// is added to every operation it applies to (a route's own description of the same status
/// wins), and every error answer is given the problem body. Runs after the merge, so it sees
/// every route module's operations.
struct CommonAnswers;

impl Modify for CommonAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let api = path.starts_with("/api/v1/");
            // Writes on a tenant host answer 402 in the read-only state (`TenantRequest::bound`).
            let tenant_write = api && !READ_ONLY_EXEMPT.iter().any(|p| path.starts_with(p));
            let operations = [
                (&mut item.get, false),
                (&mut item.put, tenant_write),
                (&mut item.post, tenant_write),
                (&mut item.patch, tenant_write),
                (&mut item.delete, false),
            ];
            for (operation, write) in operations {
                if let Some(operation) = operation {
                    let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                    let responses = &mut operation.responses.responses;
                    if write && secured && !responses.contains_key("402") {
                        let mut answer = Response::new(
                            "The organization is read-only: its trial or subscription ended on \
                             free while it is over free's limits (choose a paid plan, or delete \
                             to fit), or a payment has been failing for longer than the grace \
                             period (pay the open invoice)",
                        );
                        answer.content.insert(
                            PROBLEM.to_owned(),
                            Content::new(Some(Ref::from_schema_name("Problem"))),
                        );
                        responses.insert("402".to_owned(), answer.into());
                    }
                    // Last, so the 402 gets the rate-limit fields like every other answer.
                    add_common_answers(operation, api);
                }
            }
        }
    }
}

fn add_common_answers(operation: &mut Operation, api: bool) {
    let params = operation.parameters.as_deref().unwrap_or_default();
    let has = |place: ParameterIn| params.iter().any(|p| p.parameter_in == place);
    let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let body = operation.request_body.is_some();
    let mut answers: Vec<(&str, &str)> = Vec::new();
    if api {
        answers.push((
            "400",
            "A missing or malformed Host header, or an API key in the URL",
        ));
        answers.push(("404", "No organization is served at this Host, or the route is not served on this kind of host"));
        answers.push((
            "503",
            "The database is unreachable or its pool has no connection free within DB_POOL_TIMEOUT_MS, or too many unknown hosts are being looked up (ROUTING_MISSES_PER_SEC); see Retry-After",
        ));
    }
    if body {
        answers.push((
            "400",
            "The body is not valid JSON, or a value has the wrong type",
        ));
        answers.push((
            "413",
            "The body is larger than the server accepts (MAX_BODY_BYTES)",
        ));
        answers.push(("415", "The body is not application/json"));
        answers.push((
            "422",
            "A field is missing or invalid: `errors` names each one",
        ));
    }
    if has(ParameterIn::Query) {
        answers.push(("400", "A query parameter has the wrong type"));
    }
    if has(ParameterIn::Path) {
        answers.push((
            "404",
            "An id in the path that is not well formed names nothing",
        ));
    }
    if secured {
        answers.push(("400", "Both an Authorization header and an X-API-Key"));
        answers.push(("401", "No or bad credentials, or their session has ended"));
    }
    if api {
        answers.push((
            "429",
            "Over the plan's hourly request quota (per organization, and per API key for a key's \
             requests), or over ANON_REQUESTS_PER_HOUR for one client address on the base host; \
             see Retry-After",
        ));
    }
    let responses = &mut operation.responses.responses;
    for status in ["400", "401", "404", "413", "415", "422", "429", "503"] {
        let reasons: Vec<&str> = answers
            .iter()
            .filter(|(s, _)| *s == status)
            .map(|(_, reason)| *reason)
            .collect();
        if !reasons.is_empty() && !responses.contains_key(status) {
            responses.insert(status.to_owned(), Response::new(reasons.join("; ")).into());
        }
    }
    for (status, response) in responses.iter_mut() {
        if let (true, RefOr::T(response)) = (api, &mut *response) {
            add_rate_limit_headers(status, response);
        }
        let error = status.starts_with('4') || status.starts_with('5');
        if let (true, RefOr::T(response)) = (error, response) {
            if response.content.is_empty() {
                let schema = Ref::from_schema_name("Problem");
                response
                    .content
                    .insert(PROBLEM.to_owned(), Content::new(Some(schema)));
            }
        }
    }
}

/// The rate-limit fields (`ratelimit` module) on an `/api/v1` answer, and `Retry-After` on its
/// 429. Not required: an unlimited plan, an answer before the limiter (unknown Host) and a
/// limiter failing open send none.
fn add_rate_limit_headers(status: &str, response: &mut Response) {
    let text = || ObjectBuilder::new().schema_type(Type::String);
    let headers = [
        (
            "RateLimit-Policy",
            "The quotas that apply (IETF httpapi ratelimit-headers draft), e.g. \
             `\"hour\";q=1000;w=3600`; a request with an API key also `\"key\";q=…;w=3600`",
        ),
        (
            "RateLimit",
            "What is left of each quota: `\"hour\";r=<remaining>;t=<seconds until full>`",
        ),
    ];
    for (name, description) in headers {
        response.headers.entry(name.to_owned()).or_insert_with(|| {
            HeaderBuilder::new()
                .schema(text())
                .description(Some(description))
                .build()
        });
    }
    if status == "429" {
        response
            .headers
            .entry("Retry-After".to_owned())
            .or_insert_with(|| {
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::Integer))
                    .description(Some("Seconds until the request may be sent again"))
                    .build()
            });
    }
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .build(),
                ),
            );
            components.add_security_scheme(
                "api_key",
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    "X-API-Key",
                    "An API key `tnt_<prefix>_<secret>`, only on its organization's host, only \
                     in this header (a key in the URL is refused with 400), never together with \
                     a Bearer token (400).",
                ))),
            );
        }
    }
}
