//! The `/api/v1` routes, one module per resource.

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
pub mod token;
pub mod verification;

use actix_web::{web, HttpResponse, ResponseError};

use crate::error::ApiError;

/// Registers every `/api/v1` route. Unlisted methods on a known path answer 405.
pub fn configure(cfg: &mut web::ServiceConfig, bench_routes: bool) {
    cfg.service(
        web::resource("/register")
            .route(web::post().to(register::register))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/auth/token")
            .route(web::post().to(token::token))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/auth/token/refresh")
            .route(web::post().to(sessions::refresh))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/auth/token/verify")
            .route(web::post().to(sessions::verify))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/auth/verify-email")
            .route(web::post().to(verification::verify_email))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/auth/password-reset")
            .route(web::post().to(verification::request_reset))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/auth/password-reset/confirm")
            .route(web::post().to(verification::confirm_reset))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/auth/logout")
            .route(web::post().to(sessions::logout))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/auth/sessions")
            .route(web::get().to(sessions::list))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/auth/sessions/{id}")
            .route(web::delete().to(sessions::delete))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/auth/switch")
            .route(web::post().to(sessions::switch))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/me/organizations")
            .route(web::get().to(me::organizations))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/users/me")
            .route(web::get().to(me::get))
            .route(web::patch().to(me::update))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/users/me/password")
            .route(web::post().to(me::change_password))
            .default_service(web::to(method_not_allowed)),
    )
    // Members, invitations, ownership. `/users/me` (above) is registered first, so it is never
    // taken for a member id; `/invitations/accept` comes before `/invitations/{id}`.
    .service(
        web::resource("/users")
            .route(web::get().to(members::list))
            .route(web::post().to(members::create))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/users/{id}")
            .route(web::get().to(members::get))
            .route(web::patch().to(members::update))
            .route(web::delete().to(members::delete))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/users/{id}/deactivate")
            .route(web::post().to(members::deactivate))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/users/{id}/activate")
            .route(web::post().to(members::activate))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/invitations")
            .route(web::get().to(invitations::list))
            .route(web::post().to(invitations::create))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/invitations/accept")
            .route(web::post().to(invitations::accept))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/invitations/{id}")
            .route(web::delete().to(invitations::delete))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/organization/transfer-ownership")
            .route(web::post().to(organization::transfer_ownership))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/projects")
            .route(web::get().to(projects::list))
            .route(web::post().to(projects::create))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/projects/{id}")
            .route(web::get().to(projects::get))
            .route(web::patch().to(projects::update))
            .route(web::delete().to(projects::delete))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api-keys")
            .route(web::get().to(api_keys::list))
            .route(web::post().to(api_keys::create))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api-keys/{id}")
            .route(web::delete().to(api_keys::delete))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/audit-log")
            .route(web::get().to(audit_log::list))
            .default_service(web::to(method_not_allowed)),
    );
    if bench_routes {
        cfg.service(
            web::resource("/_bench/unbound-projects").route(web::get().to(bench::unbound_projects)),
        );
    }
}

pub async fn method_not_allowed() -> HttpResponse {
    ApiError::MethodNotAllowed.error_response()
}

pub async fn not_found() -> HttpResponse {
    ApiError::NotFound.error_response()
}
