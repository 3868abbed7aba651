//! `/api/v1/audit-log`: the tenant's audit trail, newest first, in keyset pages, with filters.

use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tenantry_tenant::access::Permission;
use tenantry_tenant::audit::{self, Action, Filter, Record};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::TenantUser;
use crate::error::{ApiError, Validator};
use crate::host::request_host;
use crate::routes::projects::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryView {
    /// Increasing with time; the order of the trail.
    pub id: i64,
    pub at: DateTime<Utc>,
    /// The member who acted (for an API key, null: see `actor_api_key_id`).
    pub actor_user_id: Option<Uuid>,
    /// The API key that acted, if any.
    pub actor_api_key_id: Option<Uuid>,
    #[schema(example = "api_key.created")]
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<Value>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

impl From<Record> for AuditEntryView {
    fn from(r: Record) -> Self {
        Self {
            id: r.id,
            at: r.at,
            actor_user_id: r.actor_user_id,
            actor_api_key_id: r.actor_api_key_id,
            action: r.action,
            target_type: r.target_type,
            target_id: r.target_id,
            before: r.before,
            after: r.after,
            ip: r.ip.map(|ip| ip.to_string()),
            user_agent: r.user_agent,
            request_id: r.request_id,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub results: Vec<AuditEntryView>,
    /// The next page's URL (with the same filters), or null on the last page.
    pub next: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct AuditQuery {
    /// Only this action (e.g. `api_key.created`); an unknown action is 422.
    pub action: Option<String>,
    /// Only entries by this member (user id).
    pub actor: Option<String>,
    /// Only entries by this API key (key id).
    pub actor_api_key: Option<String>,
    /// Entries at or after this instant (RFC 3339).
    pub from: Option<String>,
    /// Entries before this instant (RFC 3339).
    pub to: Option<String>,
    /// Page size, 1 to 100 (default 20; larger values are capped at 100).
    pub limit: Option<String>,
    /// The opaque cursor from a previous page's `next`.
    pub cursor: Option<String>,
}

fn encode_cursor(id: i64) -> String {
    URL_SAFE_NO_PAD.encode(id.to_be_bytes())
}

fn decode_cursor(cursor: &str) -> Result<i64, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
        .map(i64::from_be_bytes)
        .ok_or_else(|| ApiError::BadRequest("the cursor is not valid".into()))
}

/// Parses the filters: every bad value is a 422 naming its parameter.
fn parse_filter(q: &AuditQuery) -> Result<Filter, ApiError> {
    let mut v = Validator::new();
    let action = q.action.as_deref().and_then(|a| {
        let found = Action::parse(a);
        if found.is_none() {
            let known: Vec<_> = Action::ALL.iter().map(|a| a.as_str()).collect();
            v.add("action", format!("must be one of {}", known.join(", ")));
        }
        found
    });
    let mut uuid = |field: &str, value: &Option<String>| {
        value.as_deref().and_then(|raw| {
            v.check(
                field,
                Uuid::parse_str(raw.trim()).map_err(|_| "must be a UUID"),
            )
        })
    };
    let actor_user_id = uuid("actor", &q.actor);
    let actor_api_key_id = uuid("actor_api_key", &q.actor_api_key);
    let mut instant = |field: &str, value: &Option<String>| {
        value.as_deref().and_then(|raw| {
            v.check(
                field,
                DateTime::parse_from_rfc3339(raw.trim())
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| "must be an RFC 3339 date-time, e.g. 2026-01-31T12:00:00Z"),
            )
        })
    };
    let from = instant("from", &q.from);
    let to = instant("to", &q.to);
    if let (Some(f), Some(t)) = (from, to) {
        if f >= t {
            v.add("to", "must be after from");
        }
    }
    v.finish()?;
    Ok(Filter {
        action,
        actor_user_id,
        actor_api_key_id,
        from,
        to,
    })
}

/// The query string of the next page: the same filters (normalised), the limit and the cursor.
fn next_query(filter: &Filter, limit: i64, cursor: &str) -> String {
    let mut parts = Vec::new();
    if let Some(a) = filter.action {
        parts.push(format!("action={}", a.as_str()));
    }
    if let Some(u) = filter.actor_user_id {
        parts.push(format!("actor={u}"));
    }
    if let Some(k) = filter.actor_api_key_id {
        parts.push(format!("actor_api_key={k}"));
    }
    // UTC with `Z`: nothing in it needs percent-encoding.
    if let Some(f) = filter.from {
        parts.push(format!(
            "from={}",
            f.to_rfc3339_opts(SecondsFormat::AutoSi, true)
        ));
    }
    if let Some(t) = filter.to {
        parts.push(format!(
            "to={}",
            t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
        ));
    }
    parts.push(format!("limit={limit}"));
    parts.push(format!("cursor={cursor}"));
    parts.join("&")
}

/// The organization's audit trail, newest first. Admins and owners (and their API keys).
#[utoipa::path(get, path = "/api/v1/audit-log", tag = "audit", params(AuditQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = AuditPage),
              (status = 400, description = "Bad cursor or limit", content_type = "application/problem+json"),
              (status = 403, description = "Below admin", content_type = "application/problem+json"),
              (status = 422, description = "Unknown action, bad id or bad date-time", content_type = "application/problem+json")))]
pub async fn list(
    user: TenantUser,
    state: web::Data<AppState>,
    query: web::Query<AuditQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    user.require(Permission::AuditRead)?;
    let limit = match query.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if n >= 1 => n.min(MAX_LIMIT),
            _ => {
                return Err(ApiError::BadRequest(
                    "limit must be a whole number from 1 to 100".into(),
                ))
            }
        },
    };
    let filter = parse_filter(&query)?;
    let before = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let conn = user.tenant.connect(&state.db).await?;
    let mut entries = audit::list(&conn, &filter, before, limit + 1).await?;
    let has_more = entries.len() as i64 > limit;
    entries.truncate(usize::try_from(limit).unwrap_or(0));
    let next = match (has_more, entries.last()) {
        (true, Some(last)) => Some(format!(
            "{}://{}{}?{}",
            req.connection_info().scheme(),
            request_host(&req).unwrap_or_default(),
            req.path(),
            next_query(&filter, limit, &encode_cursor(last.id))
        )),
        _ => None,
    };
    Ok(HttpResponse::Ok().json(AuditPage {
        results: entries.into_iter().map(AuditEntryView::from).collect(),
        next,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        for id in [1_i64, 42, i64::MAX] {
            assert_eq!(decode_cursor(&encode_cursor(id)).ok(), Some(id));
        }
        assert!(decode_cursor("not-a-cursor!").is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode([1u8, 2, 3])).is_err());
    }
}
