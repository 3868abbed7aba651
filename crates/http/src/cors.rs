//! CORS from configuration (`CORS_ALLOWED_ORIGINS`, `CORS_ALLOW_CREDENTIALS`): which browser
//! origins may call the API and read its answers.
//!
//! The middleware sits outside routing and outside the Host middleware, so a preflight is
//! answered from the configuration alone: it never resolves a Host, never reaches a handler and
//! never touches the database. With no origins configured it changes nothing.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use tenantry_public::DomainName;

use crate::config::Scheme;
use crate::state::AppState;

/// The methods the API serves (OPTIONS is answered here, HEAD with GET).
pub const ALLOW_METHODS: &str = "GET, POST, PATCH, DELETE";
/// The request headers a cross-origin caller may send. Requested headers outside this list are
/// not granted; the browser then refuses the request itself.
pub const ALLOW_HEADERS: &str = "Authorization, Content-Type, X-API-Key";
/// The response headers a cross-origin caller may read beyond the CORS-safelisted ones:
/// `Location` of a 201, `Retry-After` of a 429/503 and `Allow` of a 405.
pub const EXPOSE_HEADERS: &str = "Location, Retry-After, Allow";
/// How long a browser may reuse a preflight answer, in seconds. Browsers cap it themselves
/// (Chromium at two hours), so an origin removed from the list stops working within the hour.
pub const MAX_AGE_SECS: &str = "3600";

/// The origins that may read this API's answers from a browser, and whether with credentials.
/// Built only by [`CorsPolicy::parse`]; an empty policy means CORS is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsPolicy {
    origins: Vec<OriginPattern>,
    credentials: bool,
}

/// One entry of `CORS_ALLOWED_ORIGINS`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OriginPattern {
    /// This origin exactly.
    Exact(WebOrigin),
    /// Every origin with this scheme and port whose host is one or more labels below this host
    /// (`https://*.example.com`: `https://a.example.com`, `https://a.b.example.com`; neither
    /// `https://example.com` nor `https://evilexample.com`).
    Subdomains(WebOrigin),
}

/// A browser origin: scheme, host and port (none when it is the scheme's default).
#[derive(Debug, Clone, PartialEq, Eq)]
struct WebOrigin {
    scheme: Scheme,
    host: DomainName,
    port: Option<u16>,
}

impl CorsPolicy {
    /// CORS off: no origin is allowed and the middleware changes nothing.
    pub fn off() -> Self {
        Self {
            origins: Vec::new(),
            credentials: false,
        }
    }

    /// Parses a comma-separated list of origins (`https://app.example.com`,
    /// `http://localhost:3000`) and subdomain patterns (`https://*.example.com`). A blank list
    /// is [`CorsPolicy::off`]; any malformed entry (a path or trailing `/`, another scheme, a
    /// bare `*`, a `*` anywhere but the first label, an empty entry) is refused with a message
    /// quoting it.
    pub fn parse(list: &str) -> Result<Self, String> {
        if list.trim().is_empty() {
            return Ok(Self::off());
        }
        let origins = list
            .split(',')
            .map(|entry| {
                let entry = entry.trim();
                OriginPattern::parse(entry).map_err(|why| format!("{entry:?} {why}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            origins,
            credentials: false,
        })
    }

    /// The same origins, answered with `Access-Control-Allow-Credentials: true`. The allowed
    /// origin is always echoed, never `*`, so credentials never go with a wildcard answer.
    pub fn with_credentials(self) -> Self {
        Self {
            credentials: true,
            ..self
        }
    }

    pub fn is_enabled(&self) -> bool {
        !self.origins.is_empty()
    }

    pub fn allows_credentials(&self) -> bool {
        self.credentials
    }

    /// Whether a request's `Origin` header value is allowed. Only an origin in the form a
    /// browser serialises it (lowercase, no default port, no trailing dot or slash) can match;
    /// `null` and anything else never do.
    pub fn allows(&self, origin: &str) -> bool {
        let Ok(parsed) = WebOrigin::parse(origin) else {
            return false;
        };
        parsed.serialized() == origin && self.origins.iter().any(|p| p.matches(&parsed))
    }
}

impl OriginPattern {
    fn parse(entry: &str) -> Result<Self, &'static str> {
        if entry.is_empty() {
            return Err("is an empty entry (two commas in a row, or a trailing comma?)");
        }
        match entry.split_once("://") {
            Some((scheme, rest)) if rest.starts_with("*.") => {
                let origin = WebOrigin::parse(&format!("{scheme}://{}", &rest[2..]))?;
                Ok(Self::Subdomains(origin))
            }
            _ => Ok(Self::Exact(WebOrigin::parse(entry)?)),
        }
    }

    fn matches(&self, origin: &WebOrigin) -> bool {
        match self {
            Self::Exact(allowed) => allowed == origin,
            Self::Subdomains(parent) => {
                parent.scheme == origin.scheme
                    && parent.port == origin.port
                    // What is left before the parent must end with the dot that separates them:
                    // `evilexample.com` leaves `evil`, `example.com.evil.com` does not end in
                    // the parent at all, and `example.com` itself leaves nothing.
                    && origin
                        .host
                        .as_str()
                        .strip_suffix(parent.host.as_str())
                        .is_some_and(|labels| labels.len() > 1 && labels.ends_with('.'))
            }
        }
    }
}

impl WebOrigin {
    /// Parses `scheme://host[:port]`: http or https, a DNS name (lowercased, as
    /// [`DomainName::parse`] accepts it), an optional port.
    fn parse(input: &str) -> Result<Self, &'static str> {
        let (scheme, rest) = input
            .split_once("://")
            .ok_or("must be scheme://host[:port], e.g. https://app.example.com")?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return Err("must use http or https"),
        };
        if rest.contains(['/', '?', '#']) {
            return Err("must be an origin only: no path, query or trailing /");
        }
        if rest.contains('@') {
            return Err("must not contain a user name or password");
        }
        if rest.contains('[') {
            return Err("is an IPv6 origin, which is not supported");
        }
        if rest.contains('*') {
            return Err("may only use * as its whole first label, as in https://*.example.com");
        }
        let (host, port) = match rest.rsplit_once(':') {
            None => (rest, None),
            Some((host, port)) => {
                // Digits only, as a browser writes them: no sign, no leading zero, not 0.
                let number = port
                    .parse::<u16>()
                    .ok()
                    .filter(|_| port.bytes().all(|b| b.is_ascii_digit()) && !port.starts_with('0'))
                    .ok_or("has an invalid port")?;
                (host, Some(number))
            }
        };
        let host = DomainName::parse(host).map_err(|e| e.0)?;
        let default_port = match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        };
        Ok(Self {
            scheme,
            host,
            port: port.filter(|p| *p != default_port),
        })
    }

    /// The origin as a browser sends it in `Origin`.
    fn serialized(&self) -> String {
        match self.port {
            Some(port) => format!("{}://{}:{port}", self.scheme, self.host),
            None => format!("{}://{}", self.scheme, self.host),
        }
    }
}

/// Answers preflights (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) with 204
/// before anything else runs, and adds the CORS headers to every answer to an allowed origin.
///
/// A preflight from an origin that is not allowed gets the same 204 without any CORS header
/// (the browser then refuses the request), so no preflight ever reaches the Host middleware.
/// While CORS is on every answer carries `Vary: Origin`, since its CORS headers depend on it.
pub async fn cors<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let Some(policy) = state
        .as_ref()
        .map(|s| &s.settings.cors)
        .filter(|p| p.is_enabled())
    else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let origin = req.headers().get(header::ORIGIN).cloned();
    let preflight = req.method() == Method::OPTIONS
        && origin.is_some()
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let allowed = origin.filter(|o| o.to_str().is_ok_and(|o| policy.allows(o)));

    if preflight {
        let mut answer = HttpResponse::NoContent().finish();
        let headers = answer.headers_mut();
        vary_on_origin(headers);
        if let Some(origin) = allowed {
            allow(headers, origin, policy);
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(ALLOW_METHODS),
            );
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOW_HEADERS),
            );
            headers.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static(MAX_AGE_SECS),
            );
        }
        return Ok(req.into_response(answer).map_into_right_body());
    }

    let mut res = next.call(req).await?;
    let headers = res.headers_mut();
    vary_on_origin(headers);
    if let Some(origin) = allowed {
        allow(headers, origin, policy);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
    }
    Ok(res.map_into_left_body())
}

/// The headers every answer to an allowed origin carries: the origin echoed, and credentials
/// when configured.
fn allow(headers: &mut HeaderMap, origin: HeaderValue, policy: &CorsPolicy) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    if policy.allows_credentials() {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
}

/// Adds `Origin` to `Vary` unless the answer already varies on it (or on everything).
fn vary_on_origin(headers: &mut HeaderMap) {
    let already = headers.get_all(header::VARY).any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|t| t == "*" || t.eq_ignore_ascii_case("origin"))
        })
    });
    if !already {
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(list: &str) -> CorsPolicy {
        CorsPolicy::parse(list).expect("valid list")
    }

    #[test]
    fn blank_is_off() {
        assert!(!policy("").is_enabled());
        assert!(!policy("  ").is_enabled());
        assert!(!policy("").allows("https://app.example.com"));
    }

    #[test]
    fn exact_origins_match_only_themselves() {
        let p = policy("https://app.example.com, http://localhost:3000");
        assert!(p.is_enabled());
        assert!(p.allows("https://app.example.com"));
        assert!(p.allows("http://localhost:3000"));
        for refused in [
            "http://app.example.com",
            "https://app.example.com:8443",
            "https://other.example.com",
            "https://example.com",
            "http://localhost",
            "http://localhost:3001",
            "https://app.example.com.",
            "https://app.example.com/",
            "https://APP.example.com",
            "null",
            "",
        ] {
            assert!(!p.allows(refused), "{refused}");
        }
    }

    #[test]
    fn wildcards_match_labels_below_the_parent_only() {
        let p = policy("https://*.example.com");
        for allowed in [
            "https://a.example.com",
            "https://a.b.example.com",
            "https://x-1.example.com",
        ] {
            assert!(p.allows(allowed), "{allowed}");
        }
        for refused in [
            "https://example.com",
            "https://evilexample.com",
            "https://a.evilexample.com",
            "https://example.com.evil.com",
            "https://a.example.com.evil.com",
            "http://a.example.com",
            "https://a.example.com:8443",
            "https://.example.com",
            "https://*.example.com",
        ] {
            assert!(!p.allows(refused), "{refused}");
        }
        let with_port = policy("http://*.localhost:3000");
        assert!(with_port.allows("http://acme.localhost:3000"));
        assert!(!with_port.allows("http://acme.localhost"));
    }

    #[test]
    fn default_ports_are_the_same_origin() {
        let p = policy("https://app.example.com:443, http://*.example.test:80");
        assert!(p.allows("https://app.example.com"));
        assert!(p.allows("http://acme.example.test"));
        // A browser never sends the default port, so the spelled-out form is not an origin.
        assert!(!p.allows("https://app.example.com:443"));
    }

    #[test]
    fn entries_are_normalised() {
        assert_eq!(
            policy(" HTTPS://App.Example.COM ,https://*.Example.com"),
            policy("https://app.example.com,https://*.example.com")
        );
    }

    #[test]
    fn malformed_entries_are_refused_and_quoted() {
        for bad in [
            "*",
            "https://*",
            "https://*.",
            "*.example.com",
            "https://a.*.example.com",
            "https://*example.com",
            "https://**.example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "https://app.example.com?x=1",
            "ftp://app.example.com",
            "app.example.com",
            "https://user@app.example.com",
            "https://app.example.com:0",
            "https://app.example.com:99999",
            "https://app.example.com:",
            "https://app.example.com:+1",
            "https://[::1]:3000",
            "https://-bad.example.com",
            "https://app.example.com,",
            "https://app.example.com,,https://b.example.com",
        ] {
            let e = CorsPolicy::parse(bad).expect_err(bad);
            assert!(e.contains('"'), "{bad}: {e}");
        }
    }

    #[test]
    fn credentials_are_off_unless_asked_for() {
        let p = policy("https://app.example.com");
        assert!(!p.allows_credentials());
        assert!(p.with_credentials().allows_credentials());
    }
}
