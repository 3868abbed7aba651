//! `/api/v1/organization/domains` on a tenant host: the hosts that route to the organization.
//! Operators change them (`tenantctl domain …`); admins read them here.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tenantry_public::domains::{self, Domain};
use tenantry_tenant::access::Permission;
use tenantry_tenant::binding::TenantDb;
use utoipa::{OpenApi, ToSchema};

use crate::auth::TenantRequest;
use crate::error::ApiError;
use crate::routes::resource;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/organization/domains").get(list_domains));
}

#[derive(OpenApi)]
#[openapi(paths(list_domains))]
pub struct Api;

/// A host that routes to the organization.
#[derive(Debug, Serialize, ToSchema)]
pub struct DomainView {
    #[schema(example = "tasks.acme.com")]
    pub domain: String,
    /// Links in the organization's emails open its primary domain; exactly one is primary.
    pub is_primary: bool,
    pub created_at: DateTime<Utc>,
}

impl From<Domain> for DomainView {
    fn from(d: Domain) -> Self {
        let Domain {
            domain,
            is_primary,
            created_at,
        } = d;
        Self {
            domain,
            is_primary,
            created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DomainList {
    /// The primary domain first, then by name. `<slug>.BASE_DOMAIN` routes to the organization
    /// whether it is listed or not.
    pub results: Vec<DomainView>,
}

/// The organization's domains. Owners and admins only; operators add and remove them with
/// `tenantctl domain`.
#[utoipa::path(get, path = "/api/v1/organization/domains", tag = "organization",
    security(("bearer" = [])),
    responses((status = 200, body = DomainList),
              (status = 403, description = "Not an owner or admin, or an API key")))]
pub async fn list_domains(cx: TenantRequest) -> Result<HttpResponse, ApiError> {
    let conn = cx.connect(Permission::OrganizationSettings).await?;
    let items = domains::of_company(&***conn.client(), cx.acting().company).await?;
    Ok(HttpResponse::Ok().json(DomainList {
        results: items.into_iter().map(DomainView::from).collect(),
    }))
}
