//! `/api/v1/organization/subscription*` on a tenant host: the organization's plan, status and
//! usage beside each limit (owners and admins), and the owner's changes (plan change, cancel,
//! resume), each audited and emailed to the owner.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tenantry_public::invoices::Invoice;
use tenantry_public::plans::PlanCode;
use tenantry_public::subscriptions::{Subscription, SubscriptionStatus};
use tenantry_public::usage::{self, RequestUsage};
use tenantry_tenant::access::Permission;
use tenantry_tenant::subscription::{self, Changed, Overview};
use tenantry_tenant::TenantDb;
use utoipa::{OpenApi, ToSchema};

use crate::auth::TenantRequest;
use crate::config::links;
use crate::error::ApiError;
use crate::fields::{self, Fields};
use crate::host::link_host;
use crate::pagination::{ListQuery, Page, PageParams, Paging};
use crate::routes::resource;
use crate::schema;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/organization/subscription").get(get_subscription))
        .service(resource("/organization/subscription/change").post(change_plan))
        .service(resource("/organization/subscription/cancel").post(cancel))
        .service(resource("/organization/subscription/resume").post(resume))
        .service(resource("/organization/billing/invoices").get(list_invoices));
}

#[derive(OpenApi)]
#[openapi(paths(get_subscription, change_plan, cancel, resume, list_invoices))]
pub struct Api;

/// A limited resource: the plan's limit (`null` unlimited) and what the organization uses.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageView {
    #[schema(minimum = 0)]
    pub limit: Option<i64>,
    /// `null` where the figure is not counted yet (requests: until request counting lands).
    #[schema(minimum = 0)]
    pub used: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageFigures {
    pub members: UsageView,
    pub projects: UsageView,
    /// Bytes of documents; the limit is the plan's `max_storage_mb` in bytes.
    pub storage_bytes: UsageView,
    /// Requests this hour against the plan's `requests_per_hour`, as the worker last flushed
    /// them from the rate limiter (up to `WORKER_USAGE_FLUSH_SECS` behind).
    pub requests_this_hour: UsageView,
    /// Requests this calendar month (UTC); no plan limits a month, so `limit` is null.
    pub requests_this_month: UsageView,
}

/// The organization's subscription.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionView {
    #[schema(value_type = String, example = "starter")]
    pub plan: PlanCode,
    /// `trialing`, `active`, `past_due` or `canceled`.
    #[schema(value_type = String, example = "active")]
    pub status: SubscriptionStatus,
    pub current_period_end: Option<DateTime<Utc>>,
    pub trial_end: Option<DateTime<Utc>>,
    /// The subscription ends (and the organization moves to free) at the period end.
    pub cancel_at_period_end: bool,
    /// A downgrade waiting for the period end; null when none.
    #[schema(value_type = Option<String>, example = "free")]
    pub scheduled_plan: Option<PlanCode>,
    pub usage: Option<UsageFigures>,
}

impl SubscriptionView {
    fn of(s: Subscription) -> Self {
        Self {
            plan: s.plan,
            status: s.status,
            current_period_end: s.current_period_end,
            trial_end: s.trial_end,
            cancel_at_period_end: s.cancel_at_period_end,
            scheduled_plan: s.scheduled_plan,
            usage: None,
        }
    }
}

impl SubscriptionView {
    /// The subscription with its usage, `requests` being the flushed request counts.
    fn with_usage(o: Overview, requests: RequestUsage) -> Self {
        let limit = |max: Option<i32>| max.map(i64::from);
        let mut view = Self::of(o.subscription);
        view.usage = Some(UsageFigures {
            members: UsageView {
                limit: limit(o.plan.max_members),
                used: Some(o.usage.members),
            },
            projects: UsageView {
                limit: limit(o.plan.max_projects),
                used: Some(o.usage.projects),
            },
            storage_bytes: UsageView {
                limit: o.plan.max_storage_mb.map(|mb| i64::from(mb) * 1024 * 1024),
                used: Some(o.usage.storage_bytes),
            },
            requests_this_hour: UsageView {
                limit: limit(o.plan.requests_per_hour),
                used: Some(requests.this_hour),
            },
            requests_this_month: UsageView {
                limit: None,
                used: Some(requests.this_month),
            },
        });
        view
    }
}

/// The organization's plan, subscription status, period and trial, and the usage beside each
/// limit. Owners and admins (signed in, not with a key).
#[utoipa::path(get, path = "/api/v1/organization/subscription", tag = "billing",
    security(("bearer" = [])),
    responses((status = 200, body = SubscriptionView),
              (status = 403, description = "Not an owner or admin, or an API key")))]
pub async fn get_subscription(cx: TenantRequest) -> Result<HttpResponse, ApiError> {
    let conn = cx.connect(Permission::BillingRead).await?;
    let company = cx.acting().company;
    let overview = subscription::overview(&conn, company).await?;
    let requests = usage::requests_used(&***conn.client(), company, Utc::now()).await?;
    drop(conn);
    Ok(HttpResponse::Ok().json(SubscriptionView::with_usage(overview, requests)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChangePlan {
    /// free, starter or professional (enterprise is arranged with sales).
    #[schema(schema_with = schema::required_plan, required = true)]
    pub plan: Option<String>,
}

async fn answer(cx: &TenantRequest, changed: Changed) -> HttpResponse {
    cx.state.mail.push(changed.email).await;
    HttpResponse::Ok().json(SubscriptionView::of(changed.subscription))
}

fn billing_link(cx: &TenantRequest, req: &HttpRequest) -> Result<String, ApiError> {
    let host = link_host(req)?;
    Ok(cx.state.settings.page_link(host.as_str(), links::BILLING))
}

/// Changes the plan. An upgrade applies at once; a downgrade is refused with 409 when the
/// organization is over any of the new plan's limits (each one listed), and otherwise scheduled
/// for the period end (`scheduled_plan`); the current plan drops a scheduled change. Owner only.
/// Audited as `subscription.plan_changed` / `subscription.change_scheduled`; the owner is emailed.
#[utoipa::path(post, path = "/api/v1/organization/subscription/change", tag = "billing",
    request_body = ChangePlan, security(("bearer" = [])),
    responses((status = 200, body = SubscriptionView),
              (status = 403, description = "Not the owner, or an API key"),
              (status = 409, description = "A downgrade to a plan whose limits the organization is over: `errors` names each limit"),
              (status = 422, description = "Not a plan, or enterprise (arranged with sales)")))]
pub async fn change_plan(
    cx: TenantRequest,
    req: HttpRequest,
    body: web::Json<ChangePlan>,
) -> Result<HttpResponse, ApiError> {
    cx.require(Permission::BillingManage)?;
    let (plan,) = (fields::parse("plan", &body.plan, PlanCode::parse),).collect()?;
    let link = billing_link(&cx, &req)?;
    let mut conn = cx.bound().await?;
    let changed = subscription::change_plan(&mut conn, &cx.acting(), plan, &link).await?;
    drop(conn);
    Ok(answer(&cx, changed).await)
}

/// Cancels the subscription at the end of its period: the plan stays until then, and the
/// organization moves to free after. A repeat changes nothing. Owner only. Audited as
/// `subscription.cancel_scheduled`; the owner is emailed.
#[utoipa::path(post, path = "/api/v1/organization/subscription/cancel", tag = "billing",
    security(("bearer" = [])),
    responses((status = 200, body = SubscriptionView),
              (status = 403, description = "Not the owner, or an API key"),
              (status = 409, description = "The free plan has nothing to cancel, or the subscription has already ended")))]
pub async fn cancel(cx: TenantRequest, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    cx.require(Permission::BillingManage)?;
    let link = billing_link(&cx, &req)?;
    let mut conn = cx.bound().await?;
    let changed = subscription::cancel(&mut conn, &cx.acting(), &link).await?;
    drop(conn);
    Ok(answer(&cx, changed).await)
}

/// Takes back a cancellation before it takes effect; a subscription not being cancelled stays as
/// it is. Owner only. Audited as `subscription.resumed`; the owner is emailed.
#[utoipa::path(post, path = "/api/v1/organization/subscription/resume", tag = "billing",
    security(("bearer" = [])),
    responses((status = 200, body = SubscriptionView),
              (status = 403, description = "Not the owner, or an API key"),
              (status = 409, description = "The subscription has already ended")))]
pub async fn resume(cx: TenantRequest, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    cx.require(Permission::BillingManage)?;
    let link = billing_link(&cx, &req)?;
    let mut conn = cx.bound().await?;
    let changed = subscription::resume(&mut conn, &cx.acting(), &link).await?;
    drop(conn);
    Ok(answer(&cx, changed).await)
}

/// A paid invoice of the billing history.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvoiceView {
    /// The billing provider's invoice id.
    #[schema(example = "in_1PqrSt")]
    pub id: String,
    /// In the currency's minor unit (cents).
    #[schema(minimum = 0, example = 1900)]
    pub amount_paid_cents: i64,
    #[schema(example = "usd")]
    pub currency: String,
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: Option<DateTime<Utc>>,
    pub paid_at: DateTime<Utc>,
    /// The provider's page for the invoice, when it gave one.
    pub hosted_invoice_url: Option<String>,
}

impl From<Invoice> for InvoiceView {
    fn from(i: Invoice) -> Self {
        Self {
            id: i.id,
            amount_paid_cents: i.amount_paid_cents,
            currency: i.currency,
            period_start: i.period_start,
            period_end: i.period_end,
            paid_at: i.paid_at,
            hosted_invoice_url: i.hosted_invoice_url,
        }
    }
}

/// The organization's paid invoices, newest first (keyset pages). Owners and admins (signed in,
/// not with a key).
#[utoipa::path(get, path = "/api/v1/organization/billing/invoices", tag = "billing",
    params(PageParams), security(("bearer" = [])),
    responses((status = 200, body = Page<InvoiceView>),
              (status = 400, description = "Bad cursor or limit"),
              (status = 403, description = "Not an owner or admin, or an API key")))]
pub async fn list_invoices(cx: TenantRequest, paging: Paging) -> Result<HttpResponse, ApiError> {
    cx.require(Permission::BillingRead)?;
    let page = paging.request::<(DateTime<Utc>, String)>(ListQuery::new("-paid_at"))?;
    let conn = cx.bound().await?;
    let found =
        subscription::invoices(&conn, cx.acting().company, page.after(), page.limit()).await?;
    drop(conn);
    Ok(HttpResponse::Ok().json(page.respond(found, Invoice::key, InvoiceView::from)))
}
