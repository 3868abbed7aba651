//! Keyset pagination, once for every list endpoint: the `limit` rule ([`Limit`]), the opaque
//! cursor bound to the ordering and filters it was made for ([`Cursor`]), and the page answer
//! ([`Page`]) whose `next` link repeats the caller's filters, normalised.
//!
//! A list handler parses its filters into a [`ListQuery`] (the ordering and the normalised
//! filter values), builds a [`PageRequest`] from it with `limit` and `cursor`, asks the domain for
//! `limit` rows after `request.after()`, and turns the domain page into the answer with
//! [`PageRequest::respond`].

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt::Display;
use std::future::{ready, Ready};
use utoipa::ToSchema;

use tenantry_tenant::ordering::{Order, SortColumn, SortValue, Window};

use crate::error::{query_error, ApiError};
use crate::host::request_host;

/// The page size when `limit` is absent.
pub const DEFAULT_LIMIT: i64 = 20;
/// The largest page; larger `limit` values are capped to it.
pub const MAX_LIMIT: i64 = 100;

/// A page size: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent, larger values capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(i64);

impl Limit {
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        match raw {
            None => Ok(Self(DEFAULT_LIMIT)),
            Some(raw) => match raw.parse::<i64>() {
                Ok(n) if n >= 1 => Ok(Self(n.min(MAX_LIMIT))),
                _ => Err(ApiError::BadRequest(
                    "limit must be a whole number from 1 to 100".into(),
                )),
            },
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// The paging parameters every list takes; list query types flatten it in.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct PageParams {
    /// Page size, 1 to 100 (default 20; larger values are capped at 100).
    pub limit: Option<String>,
    /// The opaque cursor from a previous page's `next`.
    pub cursor: Option<String>,
}

/// What a list was asked for, normalised: its ordering and its filter values, in a fixed order.
/// Cursors are bound to it, and the `next` link repeats it.
#[derive(Debug, Clone)]
pub struct ListQuery {
    ordering: String,
    filters: Vec<(&'static str, String)>,
}

impl ListQuery {
    /// A list in `ordering` (a field name, `-` first for descending), with no filters yet.
    pub fn new(ordering: impl Into<String>) -> Self {
        Self {
            ordering: ordering.into(),
            filters: Vec::new(),
        }
    }

    /// Adds a filter that was given (in its normalised spelling); `None` adds nothing.
    pub fn filter(mut self, name: &'static str, value: Option<impl Display>) -> Self {
        if let Some(value) = value {
            self.filters.push((name, value.to_string()));
        }
        self
    }

    /// The ordering and the filters as one JSON object (what an export's audit entry records).
    pub fn describe(&self) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        object.insert("ordering".into(), self.ordering.clone().into());
        for (name, value) in &self.filters {
            object.insert((*name).into(), value.clone().into());
        }
        object.into()
    }

    /// What a cursor of this list is bound to: ordering and filters, hashed.
    fn fingerprint(&self) -> [u8; 8] {
        let mut hash = Sha256::new();
        hash.update(self.ordering.as_bytes());
        for (name, value) in &self.filters {
            hash.update([0]);
            hash.update(name.as_bytes());
            hash.update([0]);
            hash.update(value.as_bytes());
        }
        let digest = hash.finalize();
        let mut out = [0u8; 8];
        out.copy_from_slice(&digest[..8]);
        out
    }
}

/// The opaque cursor codec: base64url of the list's fingerprint and the keyset position `K`
/// (JSON), so a cursor only works for the ordering and filters it was made for, and any key type
/// (an id, or a sort value with an id) fits the same format.
pub struct Cursor;

#[derive(Serialize, Deserialize)]
struct Wire<K> {
    /// The list's fingerprint (hex).
    l: String,
    /// The keyset position.
    k: K,
}

const INVALID_CURSOR: &str = "the cursor is not valid";

impl Cursor {
    pub fn encode<K: Serialize>(query: &ListQuery, key: &K) -> String {
        let wire = Wire {
            l: hex(&query.fingerprint()),
            k: key,
        };
        // Serialising ids and plain values cannot fail.
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&wire).unwrap_or_default())
    }

    pub fn decode<K: DeserializeOwned>(query: &ListQuery, cursor: &str) -> Result<K, ApiError> {
        let wire: Wire<K> = URL_SAFE_NO_PAD
            .decode(cursor)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| ApiError::BadRequest(INVALID_CURSOR.into()))?;
        if wire.l != hex(&query.fingerprint()) {
            return Err(ApiError::BadRequest(format!(
                "{INVALID_CURSOR} for this ordering and these filters; start again without it"
            )));
        }
        Ok(wire.k)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One page of a list, as every list endpoint answers it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub results: Vec<T>,
    /// The next page's URL (with the same filters), or null on the last page.
    pub next: Option<String>,
}

/// The paging part of a list request, as an extractor: `limit` and `cursor` from the query
/// string (the filters are the handler's own query type), and the request, for the `next` link.
pub struct Paging {
    params: PageParams,
    req: HttpRequest,
}

impl FromRequest for Paging {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            web::Query::<PageParams>::from_query(req.query_string())
                .map(|q| Self {
                    params: q.into_inner(),
                    req: req.clone(),
                })
                .map_err(query_error),
        )
    }
}

impl Paging {
    /// Parses `limit` and `cursor` for the list `query` describes (400 for either being bad, or
    /// for a cursor made for another ordering or other filters).
    pub fn request<K: DeserializeOwned>(
        self,
        query: ListQuery,
    ) -> Result<PageRequest<K>, ApiError> {
        let limit = Limit::parse(self.params.limit.as_deref())?;
        let after = self
            .params
            .cursor
            .as_deref()
            .map(|c| Cursor::decode(&query, c))
            .transpose()?;
        Ok(PageRequest {
            limit,
            after,
            query,
            req: self.req,
        })
    }
}

/// A parsed list request: the limit, the position to start after, and what the list is.
pub struct PageRequest<K> {
    limit: Limit,
    after: Option<K>,
    query: ListQuery,
    req: HttpRequest,
}

impl<K: Serialize> PageRequest<K> {
    pub fn limit(&self) -> i64 {
        self.limit.get()
    }

    /// Where the page starts: after this keyset position.
    pub fn after(&self) -> Option<&K> {
        self.after.as_ref()
    }

    /// The answer for a domain page: its items as views, and the `next` link when more follow
    /// (this request's scheme, host and path; the normalised filters, the limit and the cursor
    /// of the last item, whose position `key` gives).
    pub fn respond<T, V>(
        &self,
        page: tenantry_public::Page<T>,
        key: impl Fn(&T) -> K,
        view: impl FnMut(T) -> V,
    ) -> Page<V> {
        let next = match (page.has_more, page.last()) {
            (true, Some(last)) => Some(self.next_url(&key(last))),
            _ => None,
        };
        Page {
            results: page.items.into_iter().map(view).collect(),
            next,
        }
    }

    fn next_url(&self, last: &K) -> String {
        let req = &self.req;
        let cursor = Cursor::encode(&self.query, last);
        let mut query: Vec<String> = self
            .query
            .filters
            .iter()
            .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
            .collect();
        query.push(format!("limit={}", self.limit.get()));
        query.push(format!("cursor={cursor}"));
        // The scheme of this connection itself: forwarding headers (`X-Forwarded-Proto`,
        // `Forwarded`) are client-controlled, and no trusted proxy is configured.
        let scheme = if req.app_config().secure() {
            "https"
        } else {
            "http"
        };
        format!(
            "{scheme}://{}{}?{}",
            request_host(req).unwrap_or_default(),
            req.path(),
            query.join("&")
        )
    }
}

impl<I: Copy + Serialize> PageRequest<SortKey<I>> {
    /// This page as the domain is asked for it, in `order` (400 when the cursor's value does not
    /// fit the ordering's column).
    pub fn window<S: SortColumn>(&self, order: Order<S>) -> Result<Window<S, I>, ApiError> {
        Ok(Window {
            order,
            after: self.after().map(|k| sort_position(order, k)).transpose()?,
            limit: self.limit(),
        })
    }
}

/// A keyset position on the wire for any `ordering=`: the row's sort value as text
/// ([`SortValue::to_text`]) and its id.
pub type SortKey<I> = (Option<String>, I);

/// The wire position of a row whose sort value is `value`.
pub fn sort_key<I>(value: &SortValue, id: I) -> SortKey<I> {
    (value.to_text(), id)
}

/// The domain position of a wire position, for a list in `order` (400 when the cursor's value
/// does not fit the ordering's column).
fn sort_position<S: SortColumn, I: Copy>(
    order: Order<S>,
    key: &SortKey<I>,
) -> Result<(SortValue, I), ApiError> {
    let (value, id) = key;
    SortValue::from_text(order.sort.kind(), value.as_deref())
        .map(|v| (v, *id))
        .ok_or_else(|| ApiError::BadRequest(INVALID_CURSOR.into()))
}

/// `ordering=` of a list whose columns are `S`: 400 naming the parameter and every spelling.
pub fn ordering<S: SortColumn>(raw: &str) -> Result<Order<S>, ApiError> {
    Order::parse(raw.trim()).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "ordering must be one of {}",
            Order::<S>::names().join(", ")
        ))
    })
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode_component(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_default_cap_and_refuse_garbage() {
        assert_eq!(Limit::parse(None).ok(), Some(Limit(20)));
        assert_eq!(Limit::parse(Some("7")).ok(), Some(Limit(7)));
        assert_eq!(Limit::parse(Some("1000")).ok(), Some(Limit(100)));
        for bad in ["0", "-1", "x", ""] {
            assert!(Limit::parse(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn cursors_round_trip_and_are_bound_to_their_list() {
        let q = ListQuery::new("-id").filter("status", Some("pending"));
        for id in [1_i64, 42, i64::MAX] {
            let c = Cursor::encode(&q, &id);
            assert_eq!(Cursor::decode::<i64>(&q, &c).ok(), Some(id));
        }
        let c = Cursor::encode(&q, &5_i64);
        let other_filter = ListQuery::new("-id").filter("status", Some("revoked"));
        assert!(Cursor::decode::<i64>(&other_filter, &c).is_err());
        let other_order = ListQuery::new("id").filter("status", Some("pending"));
        assert!(Cursor::decode::<i64>(&other_order, &c).is_err());
        assert!(Cursor::decode::<i64>(&q, "not-a-cursor!").is_err());
        assert!(Cursor::decode::<i64>(&q, &URL_SAFE_NO_PAD.encode([1u8, 2, 3])).is_err());
    }

    #[test]
    fn components_are_percent_encoded() {
        assert_eq!(encode_component("a b&c=d~"), "a%20b%26c%3Dd~");
    }
}
