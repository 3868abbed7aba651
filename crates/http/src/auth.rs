//! The authenticated caller. Handlers that take [`Caller`] or [`TenantUser`] cannot forget
//! authentication, and a token is only accepted on the host it was issued for: a tenant token on
//! its company's hosts, an account token on the base host.
//!
//! [`TenantUser`] also accepts an API key in `X-API-Key` (never both credentials at once: 400).
//! Keys live in the tenant schema, so a key is only known on its own tenant's hosts; it acts as
//! its creator with the key's role capped by the creator's current membership. [`Caller`] (the
//! account and session routes) never accepts a key. A key in the query string is refused before
//! any route runs ([`refuse_keys_in_query`]).

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, ResponseError};
use futures_util::future::{Either, LocalBoxFuture};
use std::future::{ready, Ready};
use tenantry_public::db::Db;
use tenantry_public::memberships::Role;
use tenantry_public::Page;
use tenantry_public::{sessions, Origin, SessionId, UserId};
use tenantry_tenant::access::{self, Permission};
use tenantry_tenant::api_keys;
use tenantry_tenant::audit::{Acting, Actor};
use tenantry_tenant::ordering::Window;
use tenantry_tenant::rows;
use tenantry_tenant::{ActiveTenant, TenantConn};

use crate::error::ApiError;
use crate::host::HostKind;
use crate::state::AppState;
use crate::telemetry::RequestId;
use crate::tokens::Claims;

const INVALID: &str = "the access token is invalid or expired";
/// The one answer for every unusable key (malformed, unknown here, wrong secret, revoked,
/// expired, creator no longer a member), so a caller cannot tell which part was wrong.
const INVALID_KEY: &str = "the API key is invalid, expired or revoked";

/// The header that carries an API key.
pub const API_KEY_HEADER: &str = "x-api-key";

/// The credential a request presents.
enum Credential<'a> {
    Bearer(&'a str),
    ApiKey(&'a str),
}

/// Reads the request's credential: a Bearer token or an API key, never both (400).
fn credential(req: &HttpRequest) -> Result<Credential<'_>, ApiError> {
    let key = req.headers().get(API_KEY_HEADER);
    match (req.headers().contains_key(header::AUTHORIZATION), key) {
        (true, Some(_)) => Err(ApiError::BadRequest(
            "send either an Authorization: Bearer token or an X-API-Key, not both".into(),
        )),
        (false, Some(key)) => Ok(Credential::ApiKey(
            key.to_str()
                .map_err(|_| ApiError::Unauthorized(INVALID_KEY))?
                .trim(),
        )),
        (_, None) => Ok(Credential::Bearer(bearer_token(req)?)),
    }
}

/// Any authenticated caller on the host its token belongs to.
pub struct Caller {
    pub user_id: UserId,
    /// The tenant and role for a tenant token; `None` for an account token on the base host.
    pub tenant: Option<(ActiveTenant, Role)>,
    pub session_id: Option<SessionId>,
}

impl Caller {
    /// The tenant of a tenant token (where account changes are also audited).
    pub fn active_tenant(&self) -> Option<&ActiveTenant> {
        self.tenant.as_ref().map(|(t, _)| t)
    }

    /// 401 unless the token's session is still live (not logged out, revoked or expired, and the
    /// account active): for the routes that mint credentials or change the account.
    pub async fn require_live_session(&self, db: &Db) -> Result<(), ApiError> {
        require_live(db, self.session_id).await
    }
}

/// 401 unless `session` is live; a token without a session (never issued by this server) is
/// refused too.
async fn require_live(db: &Db, session: Option<SessionId>) -> Result<(), ApiError> {
    let live = match session {
        Some(session) => {
            let client = db.public().await?;
            sessions::is_live(client.client(), session).await?
        }
        None => false,
    };
    if live {
        Ok(())
    } else {
        Err(ApiError::Unauthorized(SESSION_ENDED))
    }
}

const SESSION_ENDED: &str =
    "this token's session has ended (logged out, revoked or expired); log in again";

impl Caller {
    pub(crate) fn extract(req: &HttpRequest) -> Result<Self, ApiError> {
        let host = HostKind::from_request_sync(req)?;
        let state = req
            .app_data::<web::Data<AppState>>()
            .ok_or_else(|| anyhow::anyhow!("application state missing"))?;
        let token =
            match credential(req)? {
                Credential::Bearer(token) => token,
                Credential::ApiKey(_) => return Err(ApiError::Unauthorized(
                    "API keys are not accepted on account and session routes; use an access token",
                )),
            };
        let claims: Claims = state
            .jwt
            .verify(token)
            .map_err(|_| ApiError::Unauthorized(INVALID))?;
        let tenant = match (host, claims.tenant) {
            (HostKind::Tenant(tenant), Some(company)) if company == tenant.route().company_id.0 => {
                let role = claims
                    .role
                    .as_deref()
                    .and_then(|r| Role::parse(r).ok())
                    .ok_or(ApiError::Unauthorized(INVALID))?;
                Some((tenant, role))
            }
            (HostKind::Tenant(_), Some(_)) => {
                return Err(ApiError::Forbidden(
                    "this token was issued for another organization".into(),
                ))
            }
            (HostKind::Tenant(_), None) => {
                return Err(ApiError::Forbidden(
                    "an account token is only accepted on the base host; switch to this organization first"
                        .into(),
                ))
            }
            (HostKind::Public, Some(_)) => {
                return Err(ApiError::Forbidden(
                    "this token was issued for an organization; use that organization's host".into(),
                ))
            }
            (HostKind::Public, None) => None,
        };
        Ok(Self {
            user_id: UserId(claims.sub),
            tenant,
            session_id: claims.sid.map(SessionId),
        })
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Self::extract(req))
    }
}

/// A member of the Host's tenant, authenticated with a token for that tenant.
pub struct TenantUser {
    pub tenant: ActiveTenant,
    /// The account responsible for what this caller does (for an API key: its creator).
    pub user_id: UserId,
    pub role: Role,
    /// Who acts, as the audit trail records it (a user, or an API key).
    pub actor: Actor,
    /// The session of the access token (none for API keys).
    pub session_id: Option<SessionId>,
}

impl TenantUser {
    /// Checks the permission matrix (`tenantry_tenant::access`): 403 when the role lacks it, and
    /// for an API key also when keys may not use it at all.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if let Actor::ApiKey(_) = self.actor {
            if !permission.allowed_for_api_keys() {
                return Err(ApiError::Forbidden(format!(
                    "API keys may not do this ({} needs a signed-in member)",
                    permission.as_str()
                )));
            }
        }
        if access::allows(self.role, permission) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "the {} role may not do this ({} requires {} or above)",
                self.role,
                permission.as_str(),
                permission.minimum_role()
            )))
        }
    }

    /// Everything that needs no database: the JWT path ends here; an API key still has to be
    /// looked up in the tenant's schema.
    fn start(req: &HttpRequest) -> Result<Start, ApiError> {
        let host = HostKind::from_request_sync(req)?;
        let tenant = match host {
            HostKind::Tenant(tenant) => tenant,
            // Tenant routes do not exist on the base host; a key names no tenant there.
            HostKind::Public => {
                return Err(match credential(req) {
                    Ok(Credential::ApiKey(_)) => ApiError::Unauthorized(
                        "API keys are only accepted on their organization's host",
                    ),
                    Err(e @ ApiError::BadRequest(_)) => e,
                    _ => ApiError::NotFound,
                })
            }
        };
        if let Credential::ApiKey(key) = credential(req)? {
            let state = req
                .app_data::<web::Data<AppState>>()
                .ok_or_else(|| anyhow::anyhow!("application state missing"))?
                .clone();
            return Ok(Start::ApiKey {
                tenant,
                state,
                key: key.to_owned(),
            });
        }
        let caller = Caller::extract(req)?;
        let Some((tenant, role)) = caller.tenant else {
            return Err(ApiError::NotFound);
        };
        Ok(Start::Done(Self {
            tenant,
            user_id: caller.user_id,
            role,
            actor: Actor::User(caller.user_id),
            session_id: caller.session_id,
        }))
    }

    /// Looks the key up in the Host's tenant: one connection, one round trip (binding and lookup
    /// together; plus a `last_used_at` write at most once a minute per key).
    async fn from_api_key(
        tenant: ActiveTenant,
        state: web::Data<AppState>,
        key: String,
    ) -> Result<Self, ApiError> {
        let company = tenant.route().company_id;
        let found = api_keys::authenticate(&state.db, tenant.schema(), company, &key).await?;
        let Some(found) = found else {
            tracing::info!("API key refused");
            return Err(ApiError::Unauthorized(INVALID_KEY));
        };
        Ok(Self {
            tenant,
            user_id: found.created_by,
            role: found.role,
            actor: Actor::ApiKey(found.key_id),
            session_id: None,
        })
    }
}

/// A member's request on their tenant's host, with what every tenant handler needs: who
/// ([`TenantUser`]), from where ([`Origin`]) and the application state. One extractor, so
/// handlers take one argument for it and cannot mix up a request's parts.
pub struct TenantRequest {
    pub user: TenantUser,
    pub origin: Origin,
    pub state: web::Data<AppState>,
    /// A write (POST, PUT, PATCH) that the 402 read-only state refuses; deletions (which free
    /// what the plan limits) and the subscription's own routes are never refused.
    pub refusable_write: bool,
}

impl TenantRequest {
    /// Checks `permission` (the matrix, and the API-key rule), then takes a pooled connection
    /// bound to this tenant's schema.
    pub async fn connect(&self, permission: Permission) -> Result<TenantConn, ApiError> {
        self.require(permission)?;
        self.bound().await
    }

    /// Checks `permission`; for handlers that parse their input between the check and the work.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        self.user.require(permission)
    }

    /// A pooled connection bound to this tenant's schema (the permission already checked).
    /// For a write, 402 while the organization is in the read-only state
    /// (`tenantry_tenant::subscription::check_writable`).
    pub async fn bound(&self) -> Result<TenantConn, ApiError> {
        let conn = self.user.tenant.connect(&self.state.db).await?;
        if self.refusable_write {
            tenantry_tenant::subscription::check_writable(
                &conn,
                self.user.tenant.route().company_id,
            )
            .await?;
        }
        Ok(conn)
    }

    /// The first page of a list on a new connection bound to this tenant: the binding and the
    /// page's query in one round trip (`tenantry_tenant::rows::first_page`). For reads only.
    pub async fn first_page<T: rows::Listed>(
        &self,
        filter: &T::Filter,
        window: &Window<T::Sort, T::Id>,
    ) -> Result<(TenantConn, Page<T>), ApiError> {
        let schema = self.user.tenant.schema();
        Ok(rows::first_page::<T>(&self.state.db, schema, filter, window).await?)
    }

    /// One row of this tenant by its id, after checking `permission`, on a new connection bound
    /// to this tenant: the binding and the read in one round trip
    /// (`tenantry_tenant::rows::first_by_id`). 404 when this tenant has no such row.
    pub async fn row<T: rows::Table>(
        &self,
        permission: Permission,
        id: &T::Id,
    ) -> Result<T, ApiError> {
        self.require(permission)?;
        let schema = self.user.tenant.schema();
        let (_conn, row) = rows::first_by_id::<T>(&self.state.db, schema, id).await?;
        row.ok_or(ApiError::NotFound)
    }

    /// 401 unless the caller signed in with a session that is still live; an API key (which has
    /// no session) passes, its own liveness having been checked when it was looked up.
    pub async fn require_live_session(&self) -> Result<(), ApiError> {
        match self.user.actor {
            Actor::ApiKey(_) => Ok(()),
            _ => require_live(&self.state.db, self.user.session_id).await,
        }
    }

    /// The caller as tenant domain functions take it.
    pub fn acting(&self) -> Acting<'_> {
        Acting {
            company: self.user.tenant.route().company_id,
            user: self.user.user_id,
            actor: self.user.actor,
            origin: &self.origin,
        }
    }
}

impl FromRequest for TenantRequest {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let user = TenantUser::from_request(req, payload);
        let origin = RequestOrigin::of(req);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let refusable_write = matches!(
            *req.method(),
            actix_web::http::Method::POST
                | actix_web::http::Method::PUT
                | actix_web::http::Method::PATCH
        ) && !req.path().starts_with("/api/v1/organization/subscription");
        Box::pin(async move {
            let user = user.await?;
            let state = state.ok_or_else(|| anyhow::anyhow!("application state missing"))?;
            Ok(Self {
                user,
                origin,
                state,
                refusable_write,
            })
        })
    }
}

enum Start {
    Done(TenantUser),
    ApiKey {
        tenant: ActiveTenant,
        state: web::Data<AppState>,
        key: String,
    },
}

fn bearer_token(req: &HttpRequest) -> Result<&str, ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized("an access token is required"))?
        .to_str()
        .map_err(|_| ApiError::Unauthorized("the Authorization header is malformed"))?;
    let (scheme, token) = value.split_once(' ').ok_or(ApiError::Unauthorized(
        "the Authorization header is malformed",
    ))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::Unauthorized(
            "the Authorization header must use the Bearer scheme",
        ));
    }
    Ok(token.trim())
}

impl FromRequest for TenantUser {
    type Error = ApiError;
    /// Ready at once for a Bearer token (no database round-trip); a boxed lookup for an API key.
    type Future =
        Either<Ready<Result<Self, ApiError>>, LocalBoxFuture<'static, Result<Self, ApiError>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        match Self::start(req) {
            Ok(Start::Done(user)) => Either::Left(ready(Ok(user))),
            Ok(Start::ApiKey { tenant, state, key }) => {
                Either::Right(Box::pin(Self::from_api_key(tenant, state, key)))
            }
            Err(e) => Either::Left(ready(Err(e))),
        }
    }
}

/// Query parameter names that would carry an API key.
const KEY_PARAMS: [&str; 6] = [
    "api_key",
    "apikey",
    "api-key",
    "key",
    "x-api-key",
    "x_api_key",
];

/// Refuses (400) any `/api/v1` request that carries an API key in its URL: a parameter named like
/// one (`api_key`, `apikey`, `key`, …) or any parameter whose value is a well-formed key. URLs end
/// up in access logs, proxies and browser history, so such a key must be treated as exposed.
pub async fn refuse_keys_in_query(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if carries_key(req.query_string()) {
        let response = ApiError::BadRequest(
            "API keys must be sent in the X-API-Key header, never in the URL; a key that was \
             sent in a URL should be treated as exposed and revoked"
                .into(),
        )
        .error_response();
        return Ok(req.into_response(response));
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_boxed_body)
}

fn carries_key(query: &str) -> bool {
    if query.is_empty() {
        return false;
    }
    let Ok(pairs) = web::Query::<Vec<(String, String)>>::from_query(query) else {
        // Undecodable: fall back to the raw text, so encoding tricks do not get a key through.
        return query.contains(api_keys::KEY_PREFIX);
    };
    pairs.iter().any(|(name, value)| {
        let named = KEY_PARAMS.iter().any(|p| name.eq_ignore_ascii_case(p));
        (named && !value.trim().is_empty()) || api_keys::parse_prefix(value.trim()).is_some()
    })
}

/// Where the request came from, for the audit trail: the peer address (the server does not trust
/// forwarding headers), the user agent and the request id.
pub struct RequestOrigin(pub Origin);

impl RequestOrigin {
    pub fn of(req: &HttpRequest) -> Origin {
        Origin::new(
            req.peer_addr().map(|a| a.ip()),
            req.headers()
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok()),
            req.extensions().get::<RequestId>().map(|r| r.0.clone()),
        )
    }
}

impl FromRequest for RequestOrigin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(Self(Self::of(req))))
    }
}

#[cfg(test)]
mod tests {
    use super::carries_key;

    #[test]
    fn keys_in_query_strings_are_spotted() {
        let key = format!("tnt_abcdefghijkl_{}", "A".repeat(43));
        assert!(carries_key(&format!("api_key={key}")));
        assert!(carries_key(&format!("limit=5&APIKEY={key}")));
        assert!(carries_key("key=anything"));
        assert!(carries_key(&format!("cursor={key}")));
        assert!(carries_key(&format!("x=%ZZ&y={key}")));
        assert!(!carries_key(""));
        assert!(!carries_key("limit=5&cursor=abc"));
        assert!(!carries_key("key="));
        assert!(!carries_key("name=tnt_widgets"));
    }
}
