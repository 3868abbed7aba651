//! `GET /api/v1/plans` on the base host: the plan catalogue with its limits and prices, for
//! anyone (a pricing page, a sign-up form).

use actix_web::{web, HttpResponse};
use serde::Serialize;
use tenantry_public::plans::{self, Plan, PlanCode};
use utoipa::{OpenApi, ToSchema};

use crate::error::ApiError;
use crate::host::PublicHost;
use crate::routes::resource;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/plans").get(list_plans));
}

#[derive(OpenApi)]
#[openapi(paths(list_plans))]
pub struct Api;

/// A plan's limits; `null` is unlimited.
#[derive(Debug, Serialize, ToSchema)]
pub struct LimitsView {
    #[schema(minimum = 0)]
    pub max_members: Option<i32>,
    #[schema(minimum = 0)]
    pub max_projects: Option<i32>,
    /// Documents' bytes, in MiB.
    #[schema(minimum = 0)]
    pub max_storage_mb: Option<i32>,
    #[schema(minimum = 0)]
    pub requests_per_hour: Option<i32>,
}

/// One plan of the catalogue.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanView {
    #[schema(value_type = String, example = "starter")]
    pub code: PlanCode,
    pub name: String,
    pub limits: LimitsView,
    /// Per month, in the currency's minor unit (`1900` is 19.00); `null` for a plan that is not
    /// sold on-line (enterprise: contact sales).
    #[schema(minimum = 0, example = 1900)]
    pub monthly_price_cents: Option<i32>,
    /// ISO 4217 code, lowercase.
    #[schema(example = "usd")]
    pub currency: String,
    /// Whether an organization may choose it at sign-up or as a plan change.
    pub self_service: bool,
}

impl From<Plan> for PlanView {
    fn from(p: Plan) -> Self {
        Self {
            code: p.code,
            name: p.name,
            limits: LimitsView {
                max_members: p.max_members,
                max_projects: p.max_projects,
                max_storage_mb: p.max_storage_mb,
                requests_per_hour: p.requests_per_hour,
            },
            monthly_price_cents: p.monthly_price_cents,
            currency: p.currency,
            self_service: p.self_service,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlanList {
    /// Cheapest first.
    pub results: Vec<PlanView>,
}

/// The plan catalogue, cheapest first: limits (`null` unlimited) and monthly prices. No
/// credentials needed.
#[utoipa::path(get, path = "/api/v1/plans", tag = "billing",
    responses((status = 200, body = PlanList)))]
pub async fn list_plans(
    _: PublicHost,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let client = state.db.public().await?;
    let results = plans::list(client.client())
        .await?
        .into_iter()
        .map(PlanView::from)
        .collect();
    Ok(HttpResponse::Ok().json(PlanList { results }))
}
