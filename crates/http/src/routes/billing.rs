//! `POST /api/v1/billing/webhook` on the base host: the billing provider's events (Stripe's
//! scheme). The raw body (at most 256 KiB) is checked against `Stripe-Signature` before it is
//! parsed; the event is then applied once, in order (`tenantry_tenant::billing`).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use futures_util::StreamExt;
use secrecy::ExposeSecret;
use serde::Serialize;
use tenantry_tenant::billing;
use utoipa::{OpenApi, ToSchema};

use crate::auth::RequestOrigin;
use crate::config::links;
use crate::error::ApiError;
use crate::host::PublicHost;
use crate::routes::resource;
use crate::state::AppState;

/// The largest event body accepted.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/billing/webhook").post(webhook));
}

#[derive(OpenApi)]
#[openapi(paths(webhook))]
pub struct Api;

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAnswer {
    pub received: bool,
    /// `applied`, `ignored` (a type not handled, or no company known here), `stale` (older than
    /// the last event applied to the subscription), `duplicate` (received before) or `conflict`
    /// (a customer or subscription id it names is already linked to another organization:
    /// nothing applied, logged for an operator; a redelivery is tried again).
    #[schema(example = "applied")]
    pub outcome: String,
}

/// Reads the body, refusing it with 413 as soon as it passes [`MAX_EVENT_BYTES`].
async fn read_capped(req: &HttpRequest, mut payload: web::Payload) -> Result<Vec<u8>, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_EVENT_BYTES) {
        return Err(ApiError::PayloadTooLarge);
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("the body could not be read: {e}")))?;
        if body.len() + chunk.len() > MAX_EVENT_BYTES {
            return Err(ApiError::PayloadTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Receives the billing provider's events (point a Stripe webhook endpoint at
/// `https://BASE_DOMAIN/api/v1/billing/webhook`). `Stripe-Signature: t=…,v1=…` must be the
/// HMAC-SHA256 of `"{t}.{body}"` under `BILLING_WEBHOOK_SECRET` (or, during a rotation,
/// `BILLING_WEBHOOK_PREVIOUS_SECRET`), with `t` within 300 seconds of now; otherwise 400 and
/// nothing is recorded. Each event is applied once (a redelivery answers 200 and changes
/// nothing), and never over a newer one. Handled: `customer.subscription.created|updated|deleted`,
/// `invoice.paid`, `invoice.payment_failed`, `checkout.session.completed`; other types are
/// answered 200 and ignored. An event naming a provider id already linked to another
/// organization is answered 200 with the outcome `conflict` (nothing applied; retrying cannot
/// fix it). 404 when no secret is configured.
#[utoipa::path(post, path = "/api/v1/billing/webhook", tag = "billing",
    request_body(content = Object, content_type = "application/json", description = "A Stripe event, signed"),
    params(("Stripe-Signature" = String, Header, description = "t=<unix time>,v1=<hex HMAC-SHA256>[,v1=…]")),
    responses((status = 200, body = WebhookAnswer),
              (status = 400, description = "A missing, malformed or non-matching signature, a timestamp more than 300 seconds from now, or a body that is not an event"),
              (status = 404, description = "Billing is not configured on this server (no BILLING_WEBHOOK_SECRET)"),
              (status = 413, description = "The body is larger than 256 KiB")))]
pub async fn webhook(
    _: PublicHost,
    state: web::Data<AppState>,
    req: HttpRequest,
    origin: RequestOrigin,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let settings = &state.settings;
    let Some(current) = &settings.billing_webhook_secret else {
        return Err(ApiError::NotFound);
    };
    let body = read_capped(&req, payload).await?;
    let signature = req
        .headers()
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut secrets: Vec<&[u8]> = vec![current.expose_secret().as_bytes()];
    if let Some(previous) = &settings.billing_webhook_previous_secret {
        secrets.push(previous.expose_secret().as_bytes());
    }
    billing::verify_signature(signature, &body, &secrets, Utc::now())?;
    let link = |company: &tenantry_public::companies::Company| {
        let host = format!("{}.{}", company.slug, settings.base_domain);
        settings.page_link(&host, links::BILLING)
    };
    let (outcome, email) = billing::apply(&state.db, &body, &origin.0, &link).await?;
    state.mail.push(email).await;
    tracing::info!(outcome = outcome.as_str(), "billing event");
    Ok(HttpResponse::Ok().json(WebhookAnswer {
        received: true,
        outcome: outcome.as_str().to_owned(),
    }))
}
