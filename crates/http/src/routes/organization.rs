//! `/api/v1/organization/*` on a tenant host: the organization as a whole (its settings,
//! ownership transfer).

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use tenantry_public::company_settings::{
    CompanySettings, ReminderLeadHours, RetentionDays, SettingsPatch, Timezone,
};
use tenantry_public::UserId;
use tenantry_tenant::access::Permission;
use tenantry_tenant::accounts;
use tenantry_tenant::members::{self, MembershipError};
use tenantry_tenant::organization;
use utoipa::{OpenApi, ToSchema};

use crate::auth::TenantRequest;
use crate::error::ApiError;
use crate::fields::{self, Fields};
use crate::routes::resource;
use crate::schema;
use crate::views::MemberView;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/organization/settings")
            .get(get_settings)
            .patch(update_settings),
    )
    .service(resource("/organization/transfer-ownership").post(transfer_ownership));
}

#[derive(OpenApi)]
#[openapi(paths(get_settings, update_settings, transfer_ownership))]
pub struct Api;

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
    // The confirmation password is checked through the login throttle; only a wrong password
    // keeps its attempt.
    let email = accounts::find(&cx.state.db, cx.user.user_id)
        .await?
        .ok_or(ApiError::Unauthorized("the account no longer exists"))?
        .email;
    cx.state.login_throttle.admit(&email, cx.origin.ip).await?;
    let mut conn = cx.bound().await?;
    let done = members::transfer_ownership(&mut conn, &cx.acting(), target, password).await;
    if !matches!(done, Err(MembershipError::WrongPassword)) {
        cx.state
            .login_throttle
            .succeeded(&email, cx.origin.ip)
            .await;
    }
    let done = done?;
    Ok(HttpResponse::Ok().json(TransferResult {
        previous_owner: done.previous_owner.into(),
        owner: done.new_owner.into(),
    }))
}
