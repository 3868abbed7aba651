//! `/api/v1/organization/*` on a tenant host: the organization as a whole (its overview, name,
//! settings, deletion, ownership transfer).

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tenantry_public::companies::Deletion;
use tenantry_public::company_settings::{
    CompanySettings, ReminderLeadHours, RetentionDays, SettingsPatch, Timezone,
};
use tenantry_public::subscriptions::SubscriptionStatus;
use tenantry_public::UserId;
use tenantry_tenant::access::Permission;
use tenantry_tenant::accounts;
use tenantry_tenant::members::{self, MembershipError};
use tenantry_tenant::organization::{self, DeletionError, Overview};
use utoipa::{OpenApi, ToSchema};

use crate::auth::TenantRequest;
use crate::error::ApiError;
use crate::fields::{self, Fields};
use crate::routes::resource;
use crate::schema;
use crate::views::MemberView;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/organization")
            .get(get_organization)
            .patch(rename_organization)
            .delete(delete_organization),
    )
    .service(
        resource("/organization/settings")
            .get(get_settings)
            .patch(update_settings),
    )
    .service(resource("/organization/transfer-ownership").post(transfer_ownership));
}

#[derive(OpenApi)]
#[openapi(paths(
    get_organization,
    rename_organization,
    delete_organization,
    get_settings,
    update_settings,
    transfer_ownership
))]
pub struct Api;

/// One of the hosts the organization is served on.
#[derive(Debug, Serialize, ToSchema)]
pub struct OverviewDomain {
    #[schema(example = "acme.example.com")]
    pub domain: String,
    /// The host links in emails use.
    pub is_primary: bool,
}

/// The organization as a whole.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationOverview {
    #[schema(example = "Acme Inc")]
    pub name: String,
    #[schema(example = "acme")]
    pub slug: String,
    /// The plan in force (`free`, `starter`, `professional`, `enterprise`).
    #[schema(example = "starter")]
    pub plan: String,
    /// The subscription's status: `trialing`, `active`, `past_due` or `canceled`.
    #[schema(value_type = String, example = "active")]
    pub subscription_status: SubscriptionStatus,
    /// The primary first, then by name.
    pub domains: Vec<OverviewDomain>,
    pub settings: SettingsView,
    pub created_at: DateTime<Utc>,
}

impl From<Overview> for OrganizationOverview {
    fn from(o: Overview) -> Self {
        Self {
            name: o.company.name,
            slug: o.company.slug.to_string(),
            plan: o.subscription.plan.as_str().to_owned(),
            subscription_status: o.subscription.status,
            domains: o
                .domains
                .into_iter()
                .map(|d| OverviewDomain {
                    domain: d.domain,
                    is_primary: d.is_primary,
                })
                .collect(),
            settings: o.settings.into(),
            created_at: o.company.created_at,
        }
    }
}

/// The organization: name, slug, plan, subscription status, domains, settings. Every member,
/// and API keys.
#[utoipa::path(get, path = "/api/v1/organization", tag = "organization",
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = OrganizationOverview),
              (status = 403, description = "The organization is suspended (an operator's, or deleted by its owner), or the token is another organization's")))]
pub async fn get_organization(cx: TenantRequest) -> Result<HttpResponse, ApiError> {
    let conn = cx.connect(Permission::OrganizationRead).await?;
    let overview = organization::overview(&conn, cx.acting().company).await?;
    Ok(HttpResponse::Ok().json(OrganizationOverview::from(overview)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RenameOrganization {
    /// The organization's display name: 1 to 200 characters (trimmed), no control characters.
    #[schema(schema_with = schema::company_name, required = true)]
    pub name: Option<String>,
}

/// Renames the organization, audited as `organization.renamed` (before and after; the same name
/// is not recorded). Owners and admins only. Answers the organization as `GET` does.
#[utoipa::path(patch, path = "/api/v1/organization", tag = "organization",
    request_body = RenameOrganization, security(("bearer" = [])),
    responses((status = 200, body = OrganizationOverview),
              (status = 403, description = "Not an owner or admin, or an API key"),
              (status = 422, description = "`name` missing, null, blank, longer than 200 characters or with control characters")))]
pub async fn rename_organization(
    cx: TenantRequest,
    body: web::Json<RenameOrganization>,
) -> Result<HttpResponse, ApiError> {
    cx.require(Permission::OrganizationSettings)?;
    let (name,) = (fields::name("name", &body.name, schema::MAX_PERSON_NAME),).collect()?;
    let mut conn = cx.bound().await?;
    let overview = organization::rename(&mut conn, &cx.acting(), &name).await?;
    Ok(HttpResponse::Ok().json(OrganizationOverview::from(overview)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct DeleteOrganization {
    /// The owner's password, to confirm.
    #[schema(value_type = String, required = true, nullable = false)]
    pub password: Option<String>,
}

/// A deleted organization, waiting to be dropped.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeletionView {
    /// Always `suspended`: the organization's hosts answer 403 from now on.
    #[schema(example = "suspended")]
    pub status: &'static str,
    pub deletion_requested_at: DateTime<Utc>,
    /// When the worker drops the organization and all its data, unless an operator restores it
    /// before (`tenantctl tenant restore`).
    pub drop_after: DateTime<Utc>,
}

impl From<Deletion> for DeletionView {
    fn from(d: Deletion) -> Self {
        Self {
            status: "suspended",
            deletion_requested_at: d.requested_at,
            drop_after: d.drop_after,
        }
    }
}

/// Deletes the organization. Owner only, with their password. It is suspended at once (its
/// hosts answer 403 from the next request on, for every member and key) and dropped with all
/// its data after a 30-day grace period, during which an operator can restore it. Audited as
/// `organization.deletion_requested`; the owner is emailed the drop date.
#[utoipa::path(delete, path = "/api/v1/organization", tag = "organization",
    request_body = DeleteOrganization, security(("bearer" = [])),
    responses((status = 202, body = DeletionView, description = "Suspended; dropped at `drop_after`"),
              (status = 403, description = "Not the owner (also when no longer the owner), an API key, or wrong password"),
              (status = 409, description = "Already deleted by a concurrent request"),
              (status = 422, description = "`password` missing"),
              (status = 429, description = "Too many failed password checks; see Retry-After")))]
pub async fn delete_organization(
    cx: TenantRequest,
    body: web::Json<DeleteOrganization>,
) -> Result<HttpResponse, ApiError> {
    cx.require(Permission::OrganizationDelete)?;
    let (password,) = (fields::required("password", &body.password),).collect()?;
    let confirmation = PasswordConfirmation::admit(&cx).await?;
    let mut conn = cx.bound().await?;
    let done = organization::request_deletion(&mut conn, &cx.acting(), password, Utc::now()).await;
    confirmation
        .settle(&cx, matches!(done, Err(DeletionError::WrongPassword)))
        .await;
    let done = done?;
    // The status change notifies every server's routing listener; this server reloads the
    // company's routes at once too, so the very next request here is refused without waiting
    // for it.
    let company = cx.acting().company;
    if let Err(e) = cx.state.router.reload(&[company]).await {
        tracing::warn!(error = %e, "route of the deleted company not reloaded; its notification will");
    }
    cx.state.mail.push([done.email]).await;
    Ok(HttpResponse::Accepted().json(DeletionView::from(done.deletion)))
}

/// The organization's settings.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettingsView {
    /// `UTC` (the default) or an IANA time zone name: due dates in emails are written in it, and
    /// the daily reminders follow its days.
    #[schema(example = "Europe/Berlin")]
    pub timezone: String,
    /// How many hours before a task is due its assignee is reminded (default 24).
    #[schema(minimum = 1, maximum = 168, example = 24)]
    pub reminder_lead_hours: i32,
    /// How many days completed tasks are kept; `null` (the default) keeps them forever.
    #[schema(minimum = 7, maximum = 3650, example = 365)]
    pub completed_task_retention_days: Option<i32>,
}

impl From<CompanySettings> for SettingsView {
    /// Every field named: one added to [`CompanySettings`] does not compile until the view decides.
    fn from(settings: CompanySettings) -> Self {
        let CompanySettings {
            company_id: _,
            timezone,
            reminder_lead_hours,
            completed_task_retention_days,
            updated_at: _,
        } = settings;
        Self {
            timezone: timezone.to_string(),
            reminder_lead_hours: reminder_lead_hours.get(),
            completed_task_retention_days: completed_task_retention_days.map(RetentionDays::get),
        }
    }
}

/// Absent fields stay as they are; `null` clears `completed_task_retention_days` (and is refused
/// for the others). Whole numbers may be written as `24` or `24.0`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateSettings {
    /// `UTC` or an IANA time zone name (`Europe/Berlin`, `America/Argentina/Buenos_Aires`),
    /// spelled exactly; abbreviations (`CET`), offsets (`+02:00`, `Etc/GMT-2`) and legacy
    /// aliases (`US/Eastern`) are refused, and so is a name the server's time zone database does
    /// not know.
    #[serde(default, deserialize_with = "fields::present")]
    #[schema(schema_with = schema::timezone)]
    pub timezone: Option<Option<String>>,
    /// 1 to 168.
    #[serde(default, deserialize_with = "fields::present")]
    #[schema(schema_with = schema::reminder_lead_hours)]
    pub reminder_lead_hours: Option<Option<f64>>,
    /// 7 to 3650, or `null` to keep completed tasks forever.
    #[serde(default, deserialize_with = "fields::present")]
    #[schema(schema_with = schema::retention_days)]
    pub completed_task_retention_days: Option<Option<f64>>,
}

impl TryFrom<UpdateSettings> for SettingsPatch {
    type Error = ApiError;

    fn try_from(b: UpdateSettings) -> Result<Self, ApiError> {
        let (timezone, reminder_lead_hours, completed_task_retention_days) = (
            fields::not_null("timezone", &b.timezone, |t| {
                fields::check("timezone", Timezone::parse(t))
            }),
            fields::not_null("reminder_lead_hours", &b.reminder_lead_hours, |h| {
                bounded(
                    "reminder_lead_hours",
                    *h,
                    ReminderLeadHours::MIN,
                    ReminderLeadHours::MAX,
                )
                .and_then(|n| fields::check("reminder_lead_hours", ReminderLeadHours::parse(n)))
            }),
            fields::clearable(&b.completed_task_retention_days, |d| {
                let field = "completed_task_retention_days";
                bounded(field, *d, RetentionDays::MIN, RetentionDays::MAX)
                    .and_then(|n| fields::check(field, RetentionDays::parse(n)))
            }),
        )
            .collect()?;
        Ok(SettingsPatch {
            timezone,
            reminder_lead_hours,
            completed_task_retention_days,
        })
    }
}

fn bounded(field: &str, value: f64, min: i32, max: i32) -> fields::Field<i64> {
    fields::whole_number(field, value, min.into(), max.into())
}

/// The organization's settings. Owners and admins only.
#[utoipa::path(get, path = "/api/v1/organization/settings", tag = "organization",
    security(("bearer" = [])),
    responses((status = 200, body = SettingsView),
              (status = 403, description = "Not an owner or admin, or an API key")))]
pub async fn get_settings(cx: TenantRequest) -> Result<HttpResponse, ApiError> {
    let conn = cx.connect(Permission::OrganizationSettings).await?;
    let settings = organization::settings(&conn, cx.acting().company).await?;
    Ok(HttpResponse::Ok().json(SettingsView::from(settings)))
}

/// Changes some of the organization's settings, audited as `organization.settings_changed`
/// (before and after; a change that changes nothing is not recorded). Owners and admins only.
#[utoipa::path(patch, path = "/api/v1/organization/settings", tag = "organization",
    request_body = UpdateSettings, security(("bearer" = [])),
    responses((status = 200, body = SettingsView),
              (status = 403, description = "Not an owner or admin, or an API key"),
              (status = 422, description = "An invalid value, `null` for `timezone` or `reminder_lead_hours`, or a time zone the server does not know: `errors` names each field")))]
pub async fn update_settings(
    cx: TenantRequest,
    body: web::Json<UpdateSettings>,
) -> Result<HttpResponse, ApiError> {
    cx.require(Permission::OrganizationSettings)?;
    let patch = SettingsPatch::try_from(body.into_inner())?;
    let mut conn = cx.bound().await?;
    let settings = organization::update_settings(&mut conn, &cx.acting(), &patch).await?;
    Ok(HttpResponse::Ok().json(SettingsView::from(settings)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct TransferOwnership {
    /// The member who becomes the owner: active, with a verified email.
    #[schema(schema_with = schema::required_id, required = true)]
    pub user_id: Option<String>,
    /// The current owner's password, to confirm.
    #[schema(value_type = String, required = true, nullable = false)]
    pub password: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TransferResult {
    /// The caller, now an admin.
    pub previous_owner: MemberView,
    pub owner: MemberView,
}

/// Hands the owner role to another member; the caller becomes an admin. Owner only, with their
/// password. Existing tokens keep their roles until they expire; new tokens and refreshes carry
/// the new ones.
#[utoipa::path(post, path = "/api/v1/organization/transfer-ownership", tag = "organization",
    request_body = TransferOwnership, security(("bearer" = [])),
    responses((status = 200, body = TransferResult),
              (status = 403, description = "Not the owner, or wrong password"),
              (status = 404, description = "The target is not a member of this organization"),
              (status = 409, description = "The target's membership is deactivated or their email is unverified"),
              (status = 422, description = "Missing fields, or the target is the caller"),
              (status = 429, description = "Too many failed password checks; see Retry-After")))]
pub async fn transfer_ownership(
    cx: TenantRequest,
    body: web::Json<TransferOwnership>,
) -> Result<HttpResponse, ApiError> {
    cx.require(Permission::OwnershipTransfer)?;
    let (target, password) = (
        fields::parse("user_id", &body.user_id, |id| {
            id.parse::<UserId>().map_err(|_| "must be a user id (UUID)")
        }),
        fields::required("password", &body.password),
    )
        .collect()?;
    let confirmation = PasswordConfirmation::admit(&cx).await?;
    let mut conn = cx.bound().await?;
    let done = members::transfer_ownership(&mut conn, &cx.acting(), target, password).await;
    confirmation
        .settle(&cx, matches!(done, Err(MembershipError::WrongPassword)))
        .await;
    let done = done?;
    Ok(HttpResponse::Ok().json(TransferResult {
        previous_owner: done.previous_owner.into(),
        owner: done.new_owner.into(),
    }))
}

/// The caller's password, asked again to confirm a grave change (deleting the organization,
/// handing it over), is checked through the login throttle: refused while the caller's email or
/// address is throttled, and only a wrong password keeps its attempt.
struct PasswordConfirmation {
    email: String,
}

impl PasswordConfirmation {
    async fn admit(cx: &TenantRequest) -> Result<Self, ApiError> {
        let email = accounts::find(&cx.state.db, cx.user.user_id)
            .await?
            .ok_or(ApiError::Unauthorized("the account no longer exists"))?
            .email;
        cx.state.login_throttle.admit(&email, cx.origin.ip).await?;
        Ok(Self { email })
    }

    async fn settle(self, cx: &TenantRequest, wrong_password: bool) {
        if !wrong_password {
            cx.state
                .login_throttle
                .succeeded(&self.email, cx.origin.ip)
                .await;
        }
    }
}
