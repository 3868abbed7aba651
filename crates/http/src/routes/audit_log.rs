//! `/api/v1/audit-log`: the tenant's audit trail, newest first, in keyset pages, with filters.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tenantry_public::UserId;
use tenantry_tenant::access::Permission;
use tenantry_tenant::audit::{self, Action, Filter, Record};
use tenantry_tenant::{ApiKeyId, AuditEntryId};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::TenantRequest;
use crate::error::ApiError;
use crate::fields::{self, Fields};
use crate::pagination::{ListQuery, Page, PageParams, Paging};
use crate::routes::resource;
use crate::schema;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/audit-log").get(list));
}

#[derive(OpenApi)]
#[openapi(paths(list))]
pub struct Api;

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryView {
    /// Increasing with time; the order of the trail.
    #[schema(value_type = i64)]
    pub id: AuditEntryId,
    pub at: DateTime<Utc>,
    /// The member who acted (for an API key, null: see `actor_api_key_id`).
    #[schema(value_type = Option<Uuid>)]
    pub actor_user_id: Option<UserId>,
    /// The API key that acted, if any.
    #[schema(value_type = Option<Uuid>)]
    pub actor_api_key_id: Option<ApiKeyId>,
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
            action: r.action.to_string(),
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

#[derive(Debug, Deserialize, IntoParams)]
pub struct AuditQuery {
    /// Only this action (e.g. `api_key.created`); an unknown action is 422.
    #[param(schema_with = schema::audit_action)]
    pub action: Option<String>,
    /// Only entries by this member (user id).
    #[param(schema_with = schema::id)]
    pub actor: Option<String>,
    /// Only entries by this API key (key id).
    #[param(schema_with = schema::id)]
    pub actor_api_key: Option<String>,
    /// Entries at or after this instant (RFC 3339).
    #[param(schema_with = schema::instant)]
    pub from: Option<String>,
    /// Entries before this instant (RFC 3339).
    #[param(schema_with = schema::instant)]
    pub to: Option<String>,
}

/// Parses the filters: every bad value is a 422 naming its parameter.
fn parse_filter(q: &AuditQuery) -> Result<Filter, ApiError> {
    let (action, actor_user_id, actor_api_key_id, (from, to)) = (
        fields::parse_opt("action", &q.action, Action::parse),
        fields::parse_opt("actor", &q.actor, |raw| {
            raw.trim().parse::<UserId>().map_err(|_| "must be a UUID")
        }),
        fields::parse_opt("actor_api_key", &q.actor_api_key, |raw| {
            raw.trim().parse::<ApiKeyId>().map_err(|_| "must be a UUID")
        }),
        period(q),
    )
        .collect()?;
    Ok(Filter {
        action,
        actor_user_id,
        actor_api_key_id,
        from,
        to,
    })
}

type Instant = Option<DateTime<Utc>>;

/// `from` and `to` (RFC 3339); `to` must be after `from`.
fn period(q: &AuditQuery) -> fields::Field<(Instant, Instant)> {
    let from = q
        .from
        .as_deref()
        .map(|f| fields::instant("from", f))
        .transpose();
    let to =
        q.to.as_deref()
            .map(|t| fields::instant("to", t))
            .transpose();
    match (from, to) {
        (Ok(Some(f)), Ok(Some(t))) if f >= t => Err(fields::invalid("to", "must be after from")),
        (Ok(f), Ok(t)) => Ok((f, t)),
        (f, t) => {
            let mut errors = f.err().unwrap_or_default();
            errors.extend(t.err().unwrap_or_default());
            Err(errors)
        }
    }
}

/// The filters as the cursor is bound to them and the `next` link repeats them: UTC instants
/// with `Z`, so nothing in them needs percent-encoding.
fn list_query(filter: &Filter) -> ListQuery {
    let instant =
        |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true));
    ListQuery::new("-at")
        .filter("action", filter.action)
        .filter("actor", filter.actor_user_id)
        .filter("actor_api_key", filter.actor_api_key_id)
        .filter("from", instant(filter.from))
        .filter("to", instant(filter.to))
}

/// The organization's audit trail, newest first. Admins and owners (and their API keys).
#[utoipa::path(get, path = "/api/v1/audit-log", tag = "audit", params(AuditQuery, PageParams),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Page<AuditEntryView>),
              (status = 400, description = "Bad cursor or limit"),
              (status = 403, description = "Below admin"),
              (status = 422, description = "Unknown action, bad id or bad date-time")))]
pub async fn list(
    cx: TenantRequest,
    query: web::Query<AuditQuery>,
    paging: Paging,
) -> Result<HttpResponse, ApiError> {
    cx.require(Permission::AuditRead)?;
    let filter = parse_filter(&query)?;
    let page = paging.request::<AuditEntryId>(list_query(&filter))?;
    let conn = cx.bound().await?;
    let entries = audit::list(&conn, &filter, page.after().copied(), page.limit()).await?;
    drop(conn);
    Ok(HttpResponse::Ok().json(page.respond(entries, |e| e.id, AuditEntryView::from)))
}
