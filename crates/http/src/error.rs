//! One error type for the whole API, rendered as `application/problem+json` (RFC 9457). Status
//! codes are chosen here and nowhere else. 5xx bodies are generic; causes go to the log.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use std::collections::BTreeMap;
use tenantry_public::account_tokens::TokenError;
use tenantry_public::db::{sqlstate, DbError};
use tenantry_public::passwords::PasswordError;
use tenantry_tenant::access::RoleRuleError;
use tenantry_tenant::accounts::AccountError;
use tenantry_tenant::api_keys::ApiKeyError;
use tenantry_tenant::billing::{BillingError, SignatureError};
use tenantry_tenant::documents::DocumentError;
use tenantry_tenant::members::MembershipError;
use tenantry_tenant::notifications::NotificationError;
use tenantry_tenant::organization::{DeletionError, SettingsError};
use tenantry_tenant::projects::ProjectError;
use tenantry_tenant::provision::ProvisionError;
use tenantry_tenant::reports::ReportError;
use tenantry_tenant::subscription::SubscriptionError;
use tenantry_tenant::tasks::TaskError;
use tenantry_tenant::teams::TeamError;
use tenantry_tenant::TenantUnavailable;

/// Field name → messages, for validation problems.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: malformed JSON, wrong types, bad query parameters, malformed Host.
    #[error("{0}")]
    BadRequest(String),
    /// 401 with `WWW-Authenticate: Bearer`.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 403.
    #[error("{0}")]
    Forbidden(String),
    /// 403 whose `type` ends in `plan-limit`: the organization's plan does not allow this; the
    /// detail names the limit.
    #[error("{0}")]
    PlanLimit(String),
    /// 402 (`type` ending in `payment-required`): the organization is read-only until it pays
    /// for a plan it fits.
    #[error("{0}")]
    PaymentRequired(String),
    /// 404: also for ids that are not in this tenant, and for hosts that name nothing.
    #[error("not found")]
    NotFound,
    /// 405.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409.
    #[error("{detail}")]
    Conflict { detail: String, errors: FieldErrors },
    /// 406: the client accepts none of the media types the route answers in.
    #[error("{0}")]
    NotAcceptable(String),
    /// 410: something that existed and is gone for good (a used, revoked or expired token).
    #[error("{0}")]
    Gone(String),
    /// 412: an `If-Match` that no longer matches.
    #[error("{0}")]
    PreconditionFailed(String),
    /// 413.
    #[error("the request body is too large")]
    PayloadTooLarge,
    /// 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: values that parse but are not acceptable.
    #[error("validation failed")]
    Validation(FieldErrors),
    /// 429 with Retry-After.
    #[error("{detail}")]
    TooManyRequests { detail: String, retry_after: u64 },
    /// 503 with Retry-After.
    #[error("{detail}")]
    Unavailable { detail: String, retry_after: u32 },
    /// 500: the cause is logged, never sent.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl ApiError {
    pub fn conflict_on(field: &str, message: &str) -> Self {
        let mut errors = FieldErrors::new();
        errors.insert(field.to_owned(), vec![message.to_owned()]);
        Self::Conflict {
            detail: format!("{field} {message}"),
            errors,
        }
    }

    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        Self::Validation(crate::fields::invalid(field, message))
    }

    /// 409 with no field named.
    pub fn conflict(detail: impl ToString) -> Self {
        Self::Conflict {
            detail: detail.to_string(),
            errors: FieldErrors::new(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad-request",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::PlanLimit(_) => "plan-limit",
            Self::PaymentRequired(_) => "payment-required",
            Self::NotFound => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::Conflict { .. } => "conflict",
            Self::NotAcceptable(_) => "not-acceptable",
            Self::Gone(_) => "gone",
            Self::PreconditionFailed(_) => "precondition-failed",
            Self::PayloadTooLarge => "payload-too-large",
            Self::UnsupportedMediaType(_) => "unsupported-media-type",
            Self::Validation(_) => "validation-error",
            Self::TooManyRequests { .. } => "too-many-requests",
            Self::Unavailable { .. } => "service-unavailable",
            Self::Unexpected(_) => "internal-error",
        }
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a FieldErrors>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::PlanLimit(_) => StatusCode::FORBIDDEN,
            Self::PaymentRequired(_) => StatusCode::PAYMENT_REQUIRED,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            Self::Gone(_) => StatusCode::GONE,
            Self::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let detail = match self {
            Self::Unexpected(e) => {
                tracing::error!(error = ?e, "unexpected error");
                "an unexpected error occurred; it has been logged".to_owned()
            }
            Self::Validation(_) => "one or more fields are invalid".to_owned(),
            other => other.to_string(),
        };
        let errors = match self {
            Self::Validation(errors) => Some(errors),
            Self::Conflict { errors, .. } if !errors.is_empty() => Some(errors),
            _ => None,
        };
        let body = Problem {
            kind: format!("urn:tenantry:problem:{}", self.kind()),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail,
            errors,
        };
        let mut response = HttpResponse::build(status);
        response.content_type("application/problem+json");
        match self {
            Self::Unauthorized(_) => {
                response
                    .insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            Self::Unavailable { retry_after, .. } => {
                response.insert_header((header::RETRY_AFTER, retry_after.to_string()));
            }
            Self::TooManyRequests { retry_after, .. } => {
                response.insert_header((header::RETRY_AFTER, retry_after.to_string()));
            }
            _ => {}
        }
        response.json(body)
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match &e {
            DbError::Unavailable(cause) => {
                tracing::warn!(%cause, "database unavailable");
                Self::Unavailable {
                    detail: "the database is unavailable; retry shortly".into(),
                    retry_after: 1,
                }
            }
            // A tenant schema or table that is not there: the tenant is mid-migration or was
            // dropped. Never reported as a server bug, never with the schema's name.
            DbError::Query(_)
                if matches!(
                    e.code(),
                    Some(sqlstate::UNDEFINED_TABLE | sqlstate::INVALID_SCHEMA_NAME)
                ) =>
            {
                tracing::warn!(error = %e, "tenant schema unavailable");
                Self::Unavailable {
                    detail: "this organization's data is not available right now".into(),
                    retry_after: 5,
                }
            }
            DbError::Query(_)
                if matches!(
                    e.code(),
                    Some(sqlstate::SERIALIZATION_FAILURE | sqlstate::DEADLOCK_DETECTED)
                ) =>
            {
                Self::Unavailable {
                    detail: "a concurrent change got in the way; retry".into(),
                    retry_after: 1,
                }
            }
            _ => Self::Unexpected(anyhow::Error::new(e)),
        }
    }
}

impl From<TenantUnavailable> for ApiError {
    fn from(e: TenantUnavailable) -> Self {
        match e {
            TenantUnavailable::Suspended => Self::Forbidden(e.to_string()),
            other => Self::Unavailable {
                detail: other.to_string(),
                retry_after: 5,
            },
        }
    }
}

// Every domain error becomes an API error here, and nowhere else.

impl From<PasswordError> for ApiError {
    fn from(e: PasswordError) -> Self {
        Self::Unexpected(e.into())
    }
}

impl From<RoleRuleError> for ApiError {
    fn from(e: RoleRuleError) -> Self {
        Self::Forbidden(e.to_string())
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Unknown => Self::NotFound,
            TokenError::Used | TokenError::Expired => Self::Gone(e.to_string()),
        }
    }
}

impl From<MembershipError> for ApiError {
    fn from(e: MembershipError) -> Self {
        use MembershipError as E;
        match e {
            E::NotFound | E::InvitationNotFound => Self::NotFound,
            E::AlreadyMember => {
                Self::conflict_on("email", "is already a member of this organization")
            }
            E::Rule(rule) => rule.into(),
            e @ E::PlanLimit { .. } => Self::PlanLimit(e.to_string()),
            e @ (E::NotAllowed(_) | E::WrongPassword) => Self::Forbidden(e.to_string()),
            E::AccountRequired => {
                Self::validation("password", "is required to create a new account")
            }
            E::AccountUnproven => Self::validation("password", crate::views::UNPROVEN_ACCOUNT),
            E::AccountExists => Self::conflict_on(
                "email",
                "already has an account; invite it (POST /api/v1/invitations) instead",
            ),
            e @ (E::AccountRace | E::InvitationAccepted) => Self::conflict(e),
            E::TransferToSelf => {
                Self::validation("user_id", "must be another member of this organization")
            }
            E::TargetInactive => {
                Self::conflict_on("user_id", "has a deactivated membership; activate it first")
            }
            E::TargetUnverified => Self::conflict_on(
                "user_id",
                "has not verified their email address; only a verified member can become the owner",
            ),
            e @ E::InvitationGone(_) => Self::Gone(e.to_string()),
            E::InvitationPending => Self::conflict_on(
                "email",
                "already has a pending invitation; revoke it to send a new one",
            ),
            E::Password(e) => e.into(),
            E::Db(e) => e.into(),
        }
    }
}

impl From<ProjectError> for ApiError {
    fn from(e: ProjectError) -> Self {
        match e {
            ProjectError::NotFound => Self::NotFound,
            ProjectError::DatesOutOfOrder => {
                Self::validation("end_date", "must not be before start_date")
            }
            e @ ProjectError::PlanLimit { .. } => Self::PlanLimit(e.to_string()),
            ProjectError::Db(e) => e.into(),
        }
    }
}

impl From<TaskError> for ApiError {
    fn from(e: TaskError) -> Self {
        match e {
            TaskError::NotFound => Self::NotFound,
            TaskError::UnknownProject => {
                Self::validation("project_id", "is not a project of this organization")
            }
            TaskError::AssigneeNotMember => Self::validation(
                "assignee_id",
                "must be an active member of this organization",
            ),
            e @ TaskError::Stale => Self::PreconditionFailed(e.to_string()),
            TaskError::AssigneeNotOnTeam => Self::validation(
                "assignee_id",
                "must be on the project's team (POST /api/v1/projects/{id}/members)",
            ),
            TaskError::Db(e) => e.into(),
        }
    }
}

impl From<ReportError> for ApiError {
    fn from(e: ReportError) -> Self {
        use ReportError as E;
        match e {
            E::ProjectNotFound | E::NotFound => Self::NotFound,
            e @ E::Expired(_) => Self::Gone(e.to_string()),
            e @ E::NotReady(_) => Self::conflict(e),
            E::Db(e) => e.into(),
        }
    }
}

impl From<NotificationError> for ApiError {
    fn from(e: NotificationError) -> Self {
        use NotificationError as E;
        match e {
            E::NotFound => Self::NotFound,
            e @ E::NotAllowed => Self::Forbidden(e.to_string()),
            E::Closed(status) => Self::validation(
                "status",
                format!("is {status}: only an open task's assignee is reminded"),
            ),
            E::Unassigned => {
                Self::validation("assignee_id", "is not set: the task has nobody to remind")
            }
            E::AssigneeNotMember => Self::validation(
                "assignee_id",
                "is not an active member of this organization",
            ),
            e @ E::TooSoon { retry_after } => Self::TooManyRequests {
                detail: format!("{e}; one an hour per task"),
                retry_after,
            },
            E::Db(e) => e.into(),
        }
    }
}

impl From<SettingsError> for ApiError {
    fn from(e: SettingsError) -> Self {
        match e {
            SettingsError::UnknownTimezone => Self::validation(
                "timezone",
                "is not a time zone this server knows (an IANA name such as Europe/Berlin)",
            ),
            SettingsError::Db(e) => e.into(),
        }
    }
}

impl From<DeletionError> for ApiError {
    fn from(e: DeletionError) -> Self {
        use DeletionError as E;
        match e {
            e @ (E::WrongPassword | E::NotOwner) => Self::Forbidden(e.to_string()),
            e @ E::AlreadyDeleted => Self::conflict(e),
            // Operator refusals (`tenantctl tenant restore`); no route answers them.
            e @ (E::NoSuchTenant(_) | E::NotPending(..) | E::GraceOver(..)) => Self::conflict(e),
            E::Password(e) => e.into(),
            E::Db(e) => e.into(),
        }
    }
}

impl From<DocumentError> for ApiError {
    fn from(e: DocumentError) -> Self {
        match e {
            DocumentError::NotFound => Self::NotFound,
            DocumentError::UnknownProject => {
                Self::validation("project_id", "is not a project of this organization")
            }
            e @ DocumentError::NotANote => Self::validation("body", e.to_string()),
            e @ DocumentError::StorageLimit { .. } => Self::PlanLimit(e.to_string()),
            DocumentError::Db(e) => e.into(),
        }
    }
}

impl From<TeamError> for ApiError {
    fn from(e: TeamError) -> Self {
        match e {
            TeamError::NotFound => Self::NotFound,
            TeamError::NotMember => {
                Self::validation("user_id", "must be an active member of this organization")
            }
            e @ TeamError::NotAllowed => Self::Forbidden(e.to_string()),
            TeamError::Owner => Self::conflict_on(
                "user_id",
                "is the project owner, who is always on the team as lead",
            ),
            TeamError::Db(e) => e.into(),
        }
    }
}

impl From<ApiKeyError> for ApiError {
    fn from(e: ApiKeyError) -> Self {
        match e {
            ApiKeyError::NotFound => Self::NotFound,
            ApiKeyError::Rule(rule) => rule.into(),
            // A broken generator, not a busy database: retrying would not help.
            e @ ApiKeyError::PrefixExhausted => Self::Unexpected(e.into()),
            ApiKeyError::Db(e) => e.into(),
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Gone => Self::NotFound,
            e @ AccountError::Deactivated => Self::Forbidden(e.to_string()),
            AccountError::WrongPassword => Self::validation("current_password", "is incorrect"),
            AccountError::Token(e) => e.into(),
            AccountError::Password(e) => e.into(),
            AccountError::Db(e) => e.into(),
        }
    }
}

impl From<ProvisionError> for ApiError {
    fn from(e: ProvisionError) -> Self {
        match e {
            ProvisionError::SlugTaken | ProvisionError::DomainTaken => {
                Self::conflict_on("slug", "is already taken")
            }
            ProvisionError::OwnerCredentials => Self::conflict_on(
                "owner_email",
                "belongs to an existing account; sign in to it and sign up with its account \
                 token (Authorization: Bearer) to own another organization",
            ),
            ProvisionError::OwnerInactive => Self::Unauthorized("the account is not active"),
            ProvisionError::Db(db) => db.into(),
            other => Self::Unexpected(other.into()),
        }
    }
}

impl From<SubscriptionError> for ApiError {
    fn from(e: SubscriptionError) -> Self {
        match e {
            e @ SubscriptionError::NotSelfService(_) => Self::validation("plan", e.to_string()),
            SubscriptionError::OverLimits { ref exceeded, .. } => {
                let errors = exceeded
                    .iter()
                    .map(|x| {
                        let message = format!(
                            "is {} on the new plan; the organization uses {}",
                            x.max, x.used
                        );
                        (x.limit.to_owned(), vec![message])
                    })
                    .collect();
                Self::Conflict {
                    detail: e.to_string(),
                    errors,
                }
            }
            e @ SubscriptionError::NotApplicable(_) => Self::conflict(e),
            e @ SubscriptionError::PaymentRequired { .. } => Self::PaymentRequired(e.to_string()),
            e @ SubscriptionError::PastDue { .. } => Self::PaymentRequired(e.to_string()),
            SubscriptionError::Db(e) => e.into(),
        }
    }
}

impl From<SignatureError> for ApiError {
    fn from(e: SignatureError) -> Self {
        Self::BadRequest(e.to_string())
    }
}

impl From<BillingError> for ApiError {
    fn from(e: BillingError) -> Self {
        match e {
            e @ BillingError::Malformed(_) => Self::BadRequest(e.to_string()),
            BillingError::Db(e) => e.into(),
        }
    }
}

/// Maps actix's JSON extractor failures onto the API's statuses.
pub fn json_error(err: actix_web::error::JsonPayloadError) -> ApiError {
    use actix_web::error::JsonPayloadError as E;
    match err {
        E::OverflowKnownLength { .. } | E::Overflow { .. } => ApiError::PayloadTooLarge,
        E::ContentType => {
            ApiError::UnsupportedMediaType("the request body must be application/json".into())
        }
        E::Deserialize(e) if e.is_data() => ApiError::BadRequest(format!(
            "the request body has a value of the wrong type: {e}"
        )),
        E::Deserialize(e) => {
            ApiError::BadRequest(format!("the request body is not valid JSON: {e}"))
        }
        E::Payload(actix_web::error::PayloadError::Overflow) => ApiError::PayloadTooLarge,
        other => ApiError::BadRequest(format!("the request body could not be read: {other}")),
    }
}

/// Maps query-string extractor failures.
pub fn query_error(err: actix_web::error::QueryPayloadError) -> ApiError {
    ApiError::BadRequest(format!("invalid query string: {err}"))
}

/// Maps path extractor failures: an id that is not a UUID names nothing.
pub fn path_error(_: actix_web::error::PathError) -> ApiError {
    ApiError::NotFound
}

/// The shape of every error body, for the OpenAPI document.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Problem)]
pub struct ProblemDoc {
    /// A URN naming the kind of problem, e.g. `urn:tenantry:problem:validation-error`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Field → messages, for 422 and some 409 answers.
    pub errors: Option<FieldErrors>,
}
