//! `POST /api/v1/register`: a company signs up on the base host.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tenantry_public::names::display_name;
use tenantry_public::plans::PlanCode;
use tenantry_public::{Email, Password, Slug};
use tenantry_tenant::provision::{provision_and_verify, NewTenant, ProvisionError};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, Validator};
use crate::host::PublicHost;
use crate::routes::verification::VERIFY_EMAIL_PATH;
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterRequest {
    /// The company's display name.
    #[schema(example = "Acme Inc")]
    pub name: Option<String>,
    /// The subdomain label: `^[a-z][a-z0-9-]{1,38}[a-z0-9]$`, no `--`, not reserved.
    #[schema(example = "acme")]
    pub slug: Option<String>,
    #[schema(example = "owner@acme.test")]
    pub owner_email: Option<String>,
    /// 10 to 128 characters.
    pub owner_password: Option<String>,
    pub owner_full_name: Option<String>,
    /// free, starter, professional or enterprise (default free).
    #[schema(example = "free")]
    pub plan: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OwnerView {
    pub id: Uuid,
    pub email: String,
    pub full_name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CompanyView {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub domain: String,
    pub plan: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub owner: OwnerView,
}

/// Creates a company with its own schema, domain and owner account.
#[utoipa::path(post, path = "/api/v1/register", tag = "provisioning",
    request_body = RegisterRequest,
    responses(
        (status = 201, body = CompanyView, description = "The company is ready to use"),
        (status = 400, description = "Malformed JSON", content_type = "application/problem+json"),
        (status = 404, description = "Not the base host", content_type = "application/problem+json"),
        (status = 409, description = "Slug or domain taken", content_type = "application/problem+json"),
        (status = 422, description = "Invalid values", content_type = "application/problem+json"),
    ))]
pub async fn register(
    _: PublicHost,
    state: web::Data<AppState>,
    body: web::Json<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let mut v = Validator::new();
    let name = v
        .required("name", &body.name)
        .and_then(|n| v.check("name", display_name(n, 200)));
    let slug = v
        .required("slug", &body.slug)
        .and_then(|s| v.check("slug", Slug::parse(s)));
    let email = v
        .required("owner_email", &body.owner_email)
        .and_then(|e| v.check("owner_email", Email::parse(e)));
    let password = v
        .required("owner_password", &body.owner_password)
        .and_then(|p| v.check("owner_password", Password::parse(p)));
    let plan = match &body.plan {
        None => Some(PlanCode::Free),
        Some(p) => v.check("plan", PlanCode::parse(p)),
    };
    let full_name = match &body.owner_full_name {
        None => Some(String::new()),
        Some(n) if n.trim().is_empty() => Some(String::new()),
        Some(n) => v.check("owner_full_name", display_name(n, 200)),
    };
    v.finish()?;
    let (
        Some(name),
        Some(slug),
        Some(owner_email),
        Some(owner_password),
        Some(plan),
        Some(owner_full_name),
    ) = (name, slug, email, password, plan, full_name)
    else {
        return Err(anyhow::anyhow!("validator passed with a missing field").into());
    };

    let new = NewTenant {
        name,
        slug,
        plan,
        owner_email,
        owner_password,
        owner_full_name,
    };
    let settings = &state.settings;
    let link = |token: &str| settings.link(settings.base_domain.as_str(), VERIFY_EMAIL_PATH, token);
    let (done, verification) = provision_and_verify(&state.db, &settings.base_domain, new, &link)
        .await
        .map_err(|e| match e {
            ProvisionError::SlugTaken => ApiError::conflict_on("slug", "is already taken"),
            ProvisionError::DomainTaken => ApiError::conflict_on("slug", "is already taken"),
            ProvisionError::OwnerCredentials => ApiError::conflict_on(
                "owner_email",
                "belongs to an existing account; sign up with that account's password",
            ),
            ProvisionError::Db(db) => db.into(),
            other => ApiError::Unexpected(other.into()),
        })?;
    // Other processes learn of the new company through the routing trigger; this one at once.
    state.router.invalidate_all();
    state.mail.push(verification).await;
    tracing::info!(tenant = %done.company.slug, "company registered");

    let view = CompanyView {
        id: done.company.id.0,
        name: done.company.name,
        slug: done.company.slug.to_string(),
        domain: done.domain,
        plan: done.company.plan,
        status: done.company.status.as_str().to_owned(),
        created_at: done.company.created_at,
        owner: OwnerView {
            id: done.owner.id.0,
            email: done.owner.email,
            full_name: done.owner.full_name,
        },
    };
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/companies/{}", view.id)))
        .json(view))
}
