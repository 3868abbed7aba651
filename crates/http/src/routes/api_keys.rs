//! `/api/v1/api-keys`: create (the key is shown once), list, revoke, in the caller's tenant.
//!
//! Managing keys takes `api_keys.manage` (admin and above) and a signed-in member: a request made
//! with an API key may not create or list keys, and may revoke only itself (so a key found leaked
//! can be killed with nothing but the key).

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tenantry_public::memberships::Role;
use tenantry_public::UserId;
use tenantry_tenant::access::Permission;
use tenantry_tenant::api_keys::{self, ApiKey, NewApiKey};
use tenantry_tenant::audit::Actor;
use tenantry_tenant::ApiKeyId;
use utoipa::{OpenApi, ToSchema};

use crate::auth::TenantRequest;
use crate::error::ApiError;
use crate::fields::{self, Fields};
use crate::routes::resource;
use crate::schema;

pub const MAX_NAME: usize = 100;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api-keys").get(list).post(create))
        .service(resource("/api-keys/{id}").delete(delete));
}

#[derive(OpenApi)]
#[openapi(paths(create, list, delete))]
pub struct Api;

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    #[schema(value_type = Uuid)]
    pub id: ApiKeyId,
    pub name: String,
    /// The public part of the key (`tnt_<prefix>_…`), to tell keys apart.
    pub prefix: String,
    #[schema(example = "member")]
    pub role: String,
    /// The member the key acts as.
    #[schema(value_type = Uuid)]
    pub created_by: UserId,
    pub created_at: DateTime<Utc>,
    /// When it was last used (recorded at most once per interval, so approximate); null until used.
    pub last_used_at: Option<DateTime<Utc>>,
    /// Null for a key that does not expire.
    pub expires_at: Option<DateTime<Utc>>,
}

impl From<ApiKey> for ApiKeyView {
    fn from(k: ApiKey) -> Self {
        Self {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            role: k.role.to_string(),
            created_by: k.created_by,
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            expires_at: k.expires_at,
        }
    }
}

/// A new key: the only answer that ever contains the key itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub api_key: ApiKeyView,
    /// The key, `tnt_<prefix>_<secret>`: shown this once, never retrievable again. Send it as
    /// `X-API-Key` on this organization's host.
    pub key: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    pub results: Vec<ApiKeyView>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateApiKey {
    /// 1 to 100 characters (trimmed).
    #[schema(example = "CI deploys")]
    #[schema(schema_with = schema::api_key_name, required = true)]
    pub name: Option<String>,
    /// admin, member or viewer; at most the creator's own role.
    #[schema(example = "member")]
    #[schema(schema_with = schema::grantable_role, required = true)]
    pub role: Option<String>,
    /// RFC 3339, in the future; absent for a key that does not expire.
    #[schema(schema_with = schema::instant)]
    pub expires_at: Option<String>,
}

impl TryFrom<CreateApiKey> for NewApiKey {
    type Error = ApiError;

    fn try_from(b: CreateApiKey) -> Result<Self, ApiError> {
        let (name, role, expires_at) = (
            fields::name("name", &b.name, MAX_NAME),
            fields::parse("role", &b.role, Role::parse),
            b.expires_at
                .as_deref()
                .map(|raw| match DateTime::parse_from_rfc3339(raw) {
                    Err(_) => Err(fields::invalid(
                        "expires_at",
                        "must be an RFC 3339 date-time",
                    )),
                    Ok(at) if at.with_timezone(&Utc) <= Utc::now() => {
                        Err(fields::invalid("expires_at", "must be in the future"))
                    }
                    Ok(at) => Ok(at.with_timezone(&Utc)),
                })
                .transpose(),
        )
            .collect()?;
        Ok(NewApiKey {
            name,
            role,
            expires_at,
        })
    }
}

/// Creates an API key acting as the caller, with at most the caller's role. Admins and owners.
#[utoipa::path(post, path = "/api/v1/api-keys", tag = "api-keys", request_body = CreateApiKey,
    security(("bearer" = [])),
    responses((status = 201, body = CreatedApiKey),
              (status = 403, description = "Below admin, an API key, or a role above the caller's (or owner)"),
              (status = 422, description = "Invalid name, role or expiry")))]
pub async fn create(
    cx: TenantRequest,
    body: web::Json<CreateApiKey>,
) -> Result<HttpResponse, ApiError> {
    cx.require(Permission::ApiKeysManage)?;
    let new = NewApiKey::try_from(body.into_inner())?;
    // A key outlives the session that made it: only a live session may make one.
    cx.require_live_session().await?;
    let mut conn = cx.bound().await?;
    let (key, secret) = api_keys::create(&mut conn, &cx.acting(), cx.user.role, &new).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(CreatedApiKey {
            api_key: ApiKeyView::from(key),
            key: secret.expose().to_owned(),
        }))
}

/// The organization's keys that are not revoked (expired ones included), newest first. Never the
/// key or its hash.
#[utoipa::path(get, path = "/api/v1/api-keys", tag = "api-keys", security(("bearer" = [])),
    responses((status = 200, body = ApiKeyList),
              (status = 403, description = "Below admin, or an API key")))]
pub async fn list(cx: TenantRequest) -> Result<HttpResponse, ApiError> {
    let conn = cx.connect(Permission::ApiKeysManage).await?;
    let results = api_keys::list(&conn)
        .await?
        .into_iter()
        .map(ApiKeyView::from)
        .collect();
    Ok(HttpResponse::Ok().json(ApiKeyList { results }))
}

/// Revokes a key at once. Admins and owners; a request made with a key may revoke that key only.
#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", tag = "api-keys",
    params(("id" = Uuid, Path, description = "API key id")),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 204, description = "Revoked"),
              (status = 403, description = "Below admin, or another key"),
              (status = 404, description = "No such live key in this organization")))]
pub async fn delete(cx: TenantRequest, id: web::Path<ApiKeyId>) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    if cx.user.actor != Actor::ApiKey(id) {
        cx.require(Permission::ApiKeysManage)?;
    }
    let mut conn = cx.bound().await?;
    api_keys::revoke(&mut conn, &cx.acting(), id).await?;
    Ok(HttpResponse::NoContent().finish())
}
