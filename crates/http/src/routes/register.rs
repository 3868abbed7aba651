//! `POST /api/v1/register`: a company signs up on the base host.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tenantry_public::names::display_name;
use tenantry_public::plans::PlanCode;
use tenantry_public::subscriptions::{self, SubscriptionStatus};
use tenantry_public::{CompanyId, Email, NameError, Password, Slug, UserId};
use tenantry_tenant::provision::{provision_and_verify, NewTenant, Owner};
use utoipa::{OpenApi, ToSchema};

use crate::auth::{Caller, RequestOrigin};
use crate::config::links;
use crate::error::ApiError;
use crate::fields::{self, Fields};
use crate::host::PublicHost;
use crate::routes::resource;
use crate::schema;
use crate::state::AppState;
use crate::throttle::Verdict;

/// The one counter every sign-up also counts on (the global limit).
const SIGNUPS_IN_ALL: &str = "all-signups";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/register").post(register));
}

#[derive(OpenApi)]
#[openapi(paths(register))]
pub struct Api;

#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterRequest {
    /// The company's display name.
    #[schema(example = "Acme Inc")]
    #[schema(schema_with = schema::company_name, required = true)]
    pub name: Option<String>,
    /// The subdomain label: `^[a-z][a-z0-9-]{1,38}[a-z0-9]$`, no `--`, not reserved.
    #[schema(example = "acme")]
    #[schema(schema_with = schema::slug, required = true)]
    pub slug: Option<String>,
    #[schema(example = "owner@acme.test")]
    #[schema(schema_with = schema::email_or_null)]
    pub owner_email: Option<String>,
    /// 10 to 128 characters. Required for a new owner account; never checked against an
    /// existing account's (sign in and send its account token instead).
    #[schema(schema_with = schema::new_password_or_null)]
    pub owner_password: Option<String>,
    #[schema(schema_with = schema::optional_full_name)]
    pub owner_full_name: Option<String>,
    /// free (the default), starter or professional. A paid plan starts as a 14-day trial
    /// (`subscription.status` `trialing`); enterprise is arranged with sales (422).
    #[schema(example = "free")]
    #[schema(schema_with = schema::plan)]
    pub plan: Option<String>,
    /// Whether the plan starts as a 14-day trial: implied (and only possible) for a paid plan,
    /// so `true` with free and `false` with a paid plan are 422.
    #[schema(value_type = Option<bool>)]
    pub trial: Option<bool>,
}

impl RegisterRequest {
    /// The validated signup. With `owner` (an account signed in with an account token) that
    /// account owns the new company and the owner fields are not needed; without it they
    /// describe a new account.
    fn parse(self, owner: Option<UserId>, now: DateTime<Utc>) -> Result<NewTenant, ApiError> {
        let b = self;
        let new_owner = || {
            (
                fields::parse("owner_email", &b.owner_email, Email::parse),
                fields::parse("owner_password", &b.owner_password, |p| {
                    Password::parse_for(p, b.owner_email.as_deref().unwrap_or_default())
                }),
                // Optional, and a blank one is no name (control characters are still refused).
                match b.owner_full_name.as_deref() {
                    None => Ok(String::new()),
                    Some(n) if n.trim().is_empty() && !n.contains(char::is_control) => {
                        Ok(String::new())
                    }
                    Some(n) => {
                        fields::check("owner_full_name", display_name(n, schema::MAX_PERSON_NAME))
                    }
                },
            )
                .collect_fields()
                .map(|(email, password, full_name)| Owner::New {
                    email,
                    password,
                    full_name,
                })
        };
        let (name, slug, plan, owner) = (
            fields::name("name", &b.name, schema::MAX_PERSON_NAME),
            fields::parse("slug", &b.slug, Slug::parse),
            fields::parse_opt("plan", &b.plan, |p| {
                PlanCode::parse(p).and_then(|p| match p.is_self_service() {
                    true => Ok(p),
                    false => Err(NameError(
                        "is not self-service: enterprise is arranged with sales",
                    )),
                })
            })
            .and_then(|plan| {
                let plan = plan.unwrap_or(PlanCode::Free);
                match (plan.is_paid(), b.trial) {
                    (true, Some(false)) => Err(fields::invalid(
                        "trial",
                        "must be true (or absent): a paid plan starts as a 14-day trial",
                    )),
                    (false, Some(true)) => Err(fields::invalid("trial", "is only for a paid plan")),
                    _ => Ok(plan),
                }
            }),
            match owner {
                Some(user) => Ok(Owner::Existing(user)),
                None => new_owner(),
            },
        )
            .collect()?;
        Ok(NewTenant {
            name,
            slug,
            plan,
            trial_from: plan.is_paid().then_some(now),
            owner,
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OwnerView {
    #[schema(value_type = Uuid)]
    pub id: UserId,
    pub email: String,
    pub full_name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CompanyView {
    #[schema(value_type = Uuid)]
    pub id: CompanyId,
    pub name: String,
    pub slug: String,
    pub domain: String,
    pub plan: String,
    pub status: String,
    /// `trialing` (a paid plan's 14-day trial) or `active` (free).
    #[schema(value_type = String, example = "trialing")]
    pub subscription_status: SubscriptionStatus,
    /// When the trial ends; null when not on trial.
    pub trial_end: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub owner: OwnerView,
}

/// Creates a company with its own schema, domain and owner. Without credentials the owner is a
/// new account (`owner_email`, `owner_password`); an email that already has an account is 409
/// whatever the password. With an account token (`Authorization: Bearer`, base host) the signed-in
/// account owns the new company and the owner fields are ignored.
#[utoipa::path(post, path = "/api/v1/register", tag = "provisioning",
    request_body = RegisterRequest, security((), ("bearer" = [])),
    responses((status = 201, body = CompanyView, description = "The company is ready to use"),
              (status = 403, description = "A token for an organization rather than an account token"),
              (status = 409, description = "Slug or domain taken, or the owner email belongs to an account (sign in and sign up with its account token)"),
              (status = 429, description = "Too many sign-ups from this address or in all; see Retry-After")))]
pub async fn register(
    _: PublicHost,
    state: web::Data<AppState>,
    body: web::Json<RegisterRequest>,
    req: HttpRequest,
    origin: RequestOrigin,
) -> Result<HttpResponse, ApiError> {
    // Each sign-up creates a schema: counted per client and in all, before any work.
    if let Some(throttle) = &state.signup_throttle {
        if let Verdict::Limited { retry_after } =
            throttle.attempt(SIGNUPS_IN_ALL, origin.0.ip).await
        {
            return Err(ApiError::TooManyRequests {
                detail: "too many sign-ups; try again later".into(),
                retry_after,
            });
        }
    }
    let owner = if req.headers().contains_key(header::AUTHORIZATION) {
        let caller = Caller::extract(&req)?;
        caller.require_live_session(&state.db).await?;
        Some(caller.user_id)
    } else {
        None
    };
    let new = body.into_inner().parse(owner, Utc::now())?;
    let trial_end = new
        .trial_from
        .map(|from| from + chrono::Duration::days(subscriptions::TRIAL_DAYS));
    let settings = &state.settings;
    let link =
        |token: &str| settings.link(settings.base_domain.as_str(), links::VERIFY_EMAIL, token);
    let (done, verification) =
        provision_and_verify(&state.db, &settings.base_domain, new, &link).await?;
    // Other processes learn of the new company through the routing trigger; this one at once.
    if let Err(e) = state.router.reload(&[done.company.id]).await {
        tracing::warn!(error = %e, "route of the new company not reloaded; its notification will");
    }
    state
        .mail
        .push(verification.into_iter().chain([done.welcome]))
        .await;
    tracing::info!(tenant = %done.company.slug, "company registered");

    let view = CompanyView {
        id: done.company.id,
        name: done.company.name,
        slug: done.company.slug.to_string(),
        domain: done.domain,
        plan: done.company.plan,
        status: done.company.status.as_str().to_owned(),
        subscription_status: match trial_end {
            Some(_) => SubscriptionStatus::Trialing,
            None => SubscriptionStatus::Active,
        },
        trial_end,
        created_at: done.company.created_at,
        owner: OwnerView {
            id: done.owner.id,
            email: done.owner.email,
            full_name: done.owner.full_name,
        },
    };
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/companies/{}", view.id)))
        .json(view))
}
