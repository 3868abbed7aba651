//! The OpenAPI document, served at `/api/openapi.json` with Swagger UI at `/api/docs/`. Each
//! route module lists its own operations (`routes::<module>::Api`); [`document`] merges them
//! under the API's info, tags and security schemes.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
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
        (name = "members", description = "Members of the Host's tenant and their roles"),
        (name = "invitations", description = "Invitations to join the Host's tenant"),
        (name = "organization", description = "The Host's tenant as a whole: ownership"),
        (name = "api-keys", description = "API keys of the Host's tenant (sent as X-API-Key)"),
        (name = "audit", description = "The Host's tenant's audit trail"),
    )
)]
struct ApiDoc;

/// The whole document: the API's info and security schemes, and every route module's operations.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for part in [
        routes::ops::Api::openapi(),
        routes::register::Api::openapi(),
        routes::token::Api::openapi(),
        routes::sessions::Api::openapi(),
        routes::verification::Api::openapi(),
        routes::me::Api::openapi(),
        routes::members::Api::openapi(),
        routes::invitations::Api::openapi(),
        routes::organization::Api::openapi(),
        routes::projects::Api::openapi(),
        routes::tasks::Api::openapi(),
        routes::api_keys::Api::openapi(),
        routes::audit_log::Api::openapi(),
    ] {
        doc.merge(part);
    }
    doc
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
