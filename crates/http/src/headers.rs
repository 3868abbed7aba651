//! Security headers on every response, and `Cache-Control: no-store` on every API answer (they
//! carry tokens, members, keys and audit entries, and none of them may sit in a shared cache).
//! When clients reach the server over https (`PUBLIC_SCHEME`), every answer also tells the
//! browser to use nothing else for a year, on the base domain and every tenant below it.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;

use crate::config::Scheme;
use crate::state::AppState;

/// The API answers JSON only: nothing may load from it, frame it or run in it.
const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";
/// The Swagger UI page loads its own scripts, styles and images (no inline scripts; the UI sets
/// inline styles) and calls the API on the same origin.
const DOCS_CSP: &str =
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'";
/// One year, and every subdomain: tenants are subdomains of `BASE_DOMAIN` and are served by the
/// same https front.
const HSTS: &str = "max-age=31536000; includeSubDomains";

pub async fn security_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let docs = req.path().starts_with("/api/docs");
    let api = req.path().starts_with("/api/v1");
    let https = req
        .app_data::<web::Data<AppState>>()
        .is_some_and(|s| s.settings.public_scheme == Scheme::Https);
    let mut res = next.call(req).await?;
    let headers = res.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(if docs { DOCS_CSP } else { API_CSP }),
    );
    if https {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    if api && !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(res)
}
