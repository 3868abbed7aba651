//! The `/api/v1` routes, one module per resource. Each module registers its own routes
//! (`configure`) and lists its own operations for the OpenAPI document (`Api`); nothing here
//! but the order of registration and the helpers every module shares.

pub mod api_keys;
pub mod audit_log;
pub mod bench;
pub mod invitations;
pub mod me;
pub mod members;
pub mod ops;
pub mod organization;
pub mod projects;
pub mod register;
pub mod sessions;
pub mod tasks;
pub mod token;
pub mod verification;

use actix_web::{web, HttpResponse, Resource, ResponseError};

use crate::error::ApiError;

/// Registers every `/api/v1` route. Order matters where paths overlap: `me` registers
/// `/users/me` before `members` registers `/users/{id}`, and `invitations` registers
/// `/invitations/accept` before `/invitations/{id}`.
pub fn configure(cfg: &mut web::ServiceConfig, bench_routes: bool) {
    cfg.configure(register::configure)
        .configure(token::configure)
        .configure(sessions::configure)
        .configure(verification::configure)
        .configure(me::configure)
        .configure(members::configure)
        .configure(invitations::configure)
        .configure(organization::configure)
        .configure(projects::configure)
        .configure(tasks::configure)
        .configure(api_keys::configure)
        .configure(audit_log::configure);
    if bench_routes {
        cfg.configure(bench::configure);
    }
}

/// A resource whose unlisted methods answer 405: every route module builds its paths with it.
pub(crate) fn resource(path: &str) -> Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

pub async fn method_not_allowed() -> HttpResponse {
    ApiError::MethodNotAllowed.error_response()
}

pub async fn not_found() -> HttpResponse {
    ApiError::NotFound.error_response()
}
