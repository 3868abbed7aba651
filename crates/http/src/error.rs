//! One error type for the whole API, rendered as `application/problem+json` (RFC 9457). Status
//! codes are chosen here and nowhere else. 5xx bodies are generic; causes go to the log.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use tenantry_public::db::{sqlstate, DbError};
use tenantry_tenant::TenantUnavailable;

/// Field name → messages, for validation problems.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

/// Collects field errors while parsing a request body.
#[derive(Debug, Default)]
pub struct Validator(FieldErrors);

impl Validator {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0
            .entry(field.to_owned())
            .or_default()
            .push(message.into());
    }

    /// Keeps the value or records the error under `field`.
    pub fn check<T, E: fmt::Display>(&mut self, field: &str, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.add(field, e.to_string());
                None
            }
        }
    }

    /// A required field: records "is required" when absent.
    pub fn required<'a>(&mut self, field: &str, value: &'a Option<String>) -> Option<&'a str> {
        match value {
            Some(v) => Some(v.as_str()),
            None => {
                self.add(field, "is required");
                None
            }
        }
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.0))
        }
    }
}

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
    /// 404: also for ids that are not in this tenant, and for hosts that name nothing.
    #[error("not found")]
    NotFound,
    /// 405.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409.
    #[error("{detail}")]
    Conflict { detail: String, errors: FieldErrors },
    /// 410: something that existed and is gone for good (a used, revoked or expired token).
    #[error("{0}")]
    Gone(String),
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
        let mut errors = FieldErrors::new();
        errors.insert(field.to_owned(), vec![message.into()]);
        Self::Validation(errors)
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad-request",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::Conflict { .. } => "conflict",
            Self::Gone(_) => "gone",
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
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Gone(_) => StatusCode::GONE,
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
