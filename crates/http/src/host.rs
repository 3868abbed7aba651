//! Host → tenant resolution for every `/api/v1` request, and the extractors that read its result.
//!
//! The middleware normalises the Host, resolves it through the cached router and stores the
//! [`Resolution`] in the request's extensions; a malformed Host is 400 and a Host that names
//! nothing is 404 before any handler runs. Extractors then read the resolution without awaiting,
//! so their order in a handler's signature is the order their errors win in.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, ResponseError};
use std::future::{ready, Ready};
use tenantry_public::routing::Resolution;
use tenantry_public::DomainName;
use tenantry_tenant::ActiveTenant;

use crate::error::ApiError;
use crate::state::AppState;

/// The Host a request was sent to: the `Host` header, or the authority of an HTTP/2 request.
/// Forwarding headers are deliberately ignored: a client must not pick its tenant with them.
pub fn request_host(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
}

/// The host an emailed link points at: the one this request came to (the tenant's, or the base
/// host), normalised. Only called after routing accepted the Host, so it is one this server
/// answers.
pub fn link_host(req: &HttpRequest) -> Result<DomainName, ApiError> {
    request_host(req)
        .and_then(|h| DomainName::from_host_header(h).ok())
        .ok_or_else(|| ApiError::BadRequest("the Host header is missing".into()))
}

pub async fn resolve_host(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    match resolve(req.request()).await {
        Ok(resolution) => {
            if let Resolution::Tenant(route) = &resolution {
                tracing::Span::current().record("tenant", route.slug.as_str());
            }
            req.extensions_mut().insert(resolution);
            next.call(req)
                .await
                .map(ServiceResponse::map_into_boxed_body)
        }
        Err(e) => {
            let response = e.error_response();
            Ok(req.into_response(response))
        }
    }
}

async fn resolve(req: &HttpRequest) -> Result<Resolution, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| anyhow::anyhow!("application state missing"))?;
    let host = request_host(req)
        .ok_or_else(|| ApiError::BadRequest("the Host header is missing".into()))?;
    let host = DomainName::from_host_header(host)
        .map_err(|e| ApiError::BadRequest(format!("the Host header {e}")))?;
    match state.router.resolve(&host).await? {
        Resolution::Unknown => Err(ApiError::NotFound),
        found => Ok(found),
    }
}

/// Which kind of host a request was sent to, for routes served on both.
pub enum HostKind {
    Public,
    Tenant(ActiveTenant),
}

impl HostKind {
    pub fn from_request_sync(req: &HttpRequest) -> Result<Self, ApiError> {
        match req.extensions().get::<Resolution>() {
            Some(Resolution::Public) => Ok(HostKind::Public),
            Some(Resolution::Tenant(route)) => {
                Ok(HostKind::Tenant(ActiveTenant::check(route.clone())?))
            }
            _ => Err(ApiError::NotFound),
        }
    }

    /// The company of a tenant host.
    pub fn company(&self) -> Option<tenantry_public::CompanyId> {
        match self {
            HostKind::Public => None,
            HostKind::Tenant(t) => Some(t.route().company_id),
        }
    }
}

impl FromRequest for HostKind {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Self::from_request_sync(req))
    }
}

/// The request was sent to `BASE_DOMAIN` itself.
pub struct PublicHost;

impl FromRequest for PublicHost {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(match req.extensions().get::<Resolution>() {
            Some(Resolution::Public) => Ok(PublicHost),
            _ => Err(ApiError::NotFound),
        })
    }
}

/// The request was sent to a tenant's host, and that tenant may be served.
pub struct Tenant(pub ActiveTenant);

impl Tenant {
    pub fn from_request_sync(req: &HttpRequest) -> Result<Self, ApiError> {
        match req.extensions().get::<Resolution>() {
            Some(Resolution::Tenant(route)) => Ok(Tenant(ActiveTenant::check(route.clone())?)),
            _ => Err(ApiError::NotFound),
        }
    }
}

impl FromRequest for Tenant {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Self::from_request_sync(req))
    }
}
