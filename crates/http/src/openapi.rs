//! The OpenAPI document, served at `/api/openapi.json` with Swagger UI at `/api/docs/`.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "Tenantry API", description = "Schema-per-tenant SaaS backend. Tenant routes are \
        served on `<slug>.BASE_DOMAIN` (the Host header picks the tenant); `register` on \
        `BASE_DOMAIN` itself. Every error is `application/problem+json`."),
    paths(
        routes::ops::health,
        routes::ops::ready,
        routes::register::register,
        routes::token::token,
        routes::sessions::refresh,
        routes::sessions::verify,
        routes::sessions::logout,
        routes::sessions::list,
        routes::sessions::delete,
        routes::sessions::switch,
        routes::me::organizations,
        routes::me::get,
        routes::me::update,
        routes::me::change_password,
        routes::projects::list,
        routes::projects::create,
        routes::verification::verify_email,
        routes::verification::request_reset,
        routes::verification::confirm_reset,
        routes::projects::get,
        routes::projects::update,
        routes::projects::delete,
        routes::members::list,
        routes::members::get,
        routes::members::create,
        routes::members::update,
        routes::members::delete,
        routes::members::deactivate,
        routes::members::activate,
        routes::invitations::create,
        routes::invitations::list,
        routes::invitations::delete,
        routes::invitations::accept,
        routes::organization::transfer_ownership,
        routes::api_keys::create,
        routes::api_keys::list,
        routes::api_keys::delete,
        routes::audit_log::list,
    ),
    components(schemas(crate::error::ProblemDoc)),
    modifiers(&BearerAuth),
    tags(
        (name = "operations", description = "Liveness and readiness"),
        (name = "provisioning", description = "Company signup on the base host"),
        (name = "auth", description = "Access and refresh tokens, sessions, switching organizations"),
        (name = "account", description = "The caller's own account"),
        (name = "projects", description = "Projects of the Host's tenant"),
        (name = "members", description = "Members of the Host's tenant and their roles"),
        (name = "invitations", description = "Invitations to join the Host's tenant"),
        (name = "organization", description = "The Host's tenant as a whole: ownership"),
        (name = "api-keys", description = "API keys of the Host's tenant (sent as X-API-Key)"),
        (name = "audit", description = "The Host's tenant's audit trail"),
    )
)]
pub struct ApiDoc;

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
