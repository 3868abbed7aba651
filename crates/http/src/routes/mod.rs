//! The `/api/v1` routes, one module per resource. Each module registers its own routes
//! (`configure`) and lists its own operations for the OpenAPI document (`Api`); nothing here
//! but the order of registration and the helpers every module shares.

pub mod api_keys;
pub mod audit_log;
pub mod bench;
pub mod billing;
pub mod documents;
pub mod domains;
pub mod insights;
pub mod invitations;
pub mod me;
pub mod members;
pub mod ops;
pub mod organization;
pub mod plans;
pub mod projects;
pub mod register;
pub mod reports;
pub mod sessions;
pub mod subscription;
pub mod tasks;
pub mod teams;
pub mod token;
pub mod verification;

use actix_web::dev::{AppService, HttpServiceFactory};
use actix_web::http::header;
use actix_web::{web, FromRequest, Handler, HttpResponse, Responder, ResponseError};

use crate::error::ApiError;

/// Registers every `/api/v1` route. Order matters where paths overlap: `me` registers
/// `/users/me` before `members` registers `/users/{id}`, `invitations` registers
/// `/invitations/accept` before `/invitations/{id}`, and `insights` registers
/// `/projects/statistics` before `projects` registers `/projects/{id}`.
pub fn configure(cfg: &mut web::ServiceConfig, bench_routes: bool) {
    cfg.configure(register::configure)
        .configure(plans::configure)
        .configure(billing::configure)
        .configure(token::configure)
        .configure(sessions::configure)
        .configure(verification::configure)
        .configure(me::configure)
        .configure(members::configure)
        .configure(invitations::configure)
        .configure(organization::configure)
        .configure(domains::configure)
        .configure(subscription::configure)
        .configure(insights::configure)
        .configure(projects::configure)
        .configure(tasks::configure)
        .configure(reports::configure)
        .configure(documents::configure)
        .configure(teams::configure)
        .configure(api_keys::configure)
        .configure(audit_log::configure);
    if bench_routes {
        cfg.configure(bench::configure);
    }
}

/// A path and the methods it answers: every route module registers its paths with it. Any
/// other method answers 405 with an `Allow` header naming the ones there are.
pub(crate) struct Resource {
    inner: actix_web::Resource,
    allow: Vec<&'static str>,
}

pub(crate) fn resource(path: &str) -> Resource {
    Resource {
        inner: web::resource(path),
        allow: Vec::new(),
    }
}

macro_rules! methods {
    ($($name:ident => $route:ident, $method:literal;)+) => {
        impl Resource {
            $(
                pub(crate) fn $name<F, Args>(mut self, handler: F) -> Self
                where
                    F: Handler<Args>,
                    Args: FromRequest + 'static,
                    F::Output: Responder + 'static,
                {
                    self.inner = self.inner.route(web::$route().to(handler));
                    self.allow.push($method);
                    self
                }
            )+
        }
    };
}

methods! {
    get => get, "GET";
    post => post, "POST";
    patch => patch, "PATCH";
    delete => delete, "DELETE";
}

impl HttpServiceFactory for Resource {
    fn register(self, config: &mut AppService) {
        let allow = self.allow.join(", ");
        self.inner
            .default_service(web::to(move || {
                let allow = allow.clone();
                async move { method_not_allowed(&allow) }
            }))
            .register(config);
    }
}

/// 405, naming the methods the path does answer.
fn method_not_allowed(allow: &str) -> HttpResponse {
    let mut response = ApiError::MethodNotAllowed.error_response();
    if let Ok(value) = header::HeaderValue::from_str(allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

pub async fn not_found() -> HttpResponse {
    ApiError::NotFound.error_response()
}
