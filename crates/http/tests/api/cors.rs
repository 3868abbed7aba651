//! CORS from `CORS_ALLOWED_ORIGINS` (preflights answered before the Host is resolved, allowed
//! origins echoed, lookalikes refused), credentials, and HSTS with `PUBLIC_SCHEME=https`.

use reqwest::{Method, Response};

use crate::helpers::*;

/// One exact origin and every subdomain of example.com over https.
const ORIGINS: &str = "https://app.other.com, https://*.example.com";

/// Origins that look like the allowed ones but are not.
const LOOKALIKES: &[&str] = &[
    "https://evilexample.com",
    "https://example.com.evil.com",
    "https://acme.example.com.evil.com",
    "http://acme.example.com",
    "https://acme.example.com:8443",
    "https://example.com",
    "https://app.other.com.evil.com",
    "http://app.other.com",
    "https://APP.other.com",
    "null",
];

fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The names of every `Access-Control-*` header of an answer.
fn cors_headers(r: &Response) -> Vec<String> {
    r.headers()
        .keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| k.starts_with("access-control-"))
        .collect()
}

fn varies_on_origin(r: &Response) -> bool {
    r.headers()
        .get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("origin"))
        })
}

/// Asserts the headers of an actual (not preflight) answer to an allowed `origin`.
fn assert_allowed(r: &Response, origin: &str, what: &str) {
    assert_eq!(
        header(r, "access-control-allow-origin"),
        Some(origin),
        "{what}"
    );
    assert!(varies_on_origin(r), "{what}");
    assert_eq!(
        header(r, "access-control-expose-headers"),
        Some("Location, Retry-After, Allow"),
        "{what}"
    );
}

async fn get_from(
    app: &TestApp,
    host: &str,
    path: &str,
    origin: &str,
    token: Option<&str>,
) -> Response {
    let mut r = app
        .request(Method::GET, host, path)
        .header("Origin", origin);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.expect("request")
}

/// A browser's preflight for `PATCH` with `requested` headers.
async fn preflight(
    app: &TestApp,
    host: &str,
    path: &str,
    origin: &str,
    requested: &str,
) -> Response {
    app.request(Method::OPTIONS, host, path)
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "PATCH")
        .header("Access-Control-Request-Headers", requested)
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn allowed_origins_are_echoed_and_lookalikes_get_no_cors_headers() {
    let (app, t) = spawn_tenant_with(&[("CORS_ALLOWED_ORIGINS", ORIGINS)], "acme").await;

    for origin in [
        "https://app.other.com",
        "https://acme.example.com",
        "https://a.b.example.com",
    ] {
        let r = get_from(&app, &t.host, "/api/v1/projects", origin, Some(&t.token)).await;
        assert_eq!(r.status(), 200, "{origin}");
        assert_allowed(&r, origin, origin);
        assert_eq!(
            header(&r, "access-control-allow-credentials"),
            None,
            "{origin}"
        );
    }
    // Error answers carry them too, so a front-end can read the problem: from a handler (401)
    // and from the Host middleware (404).
    let origin = "https://acme.example.com";
    let r = get_from(&app, &t.host, "/api/v1/projects", origin, None).await;
    assert_allowed(&r, origin, "401");
    problem(r, 401).await;
    let r = get_from(&app, "ghost.example.test", "/api/v1/projects", origin, None).await;
    assert_allowed(&r, origin, "unknown host");
    problem(r, 404).await;
    // Outside /api/v1 as well.
    let r = get_from(&app, BASE, "/health", origin, None).await;
    assert_allowed(&r, origin, "health");

    for origin in LOOKALIKES {
        let r = get_from(&app, &t.host, "/api/v1/projects", origin, Some(&t.token)).await;
        assert_eq!(r.status(), 200, "{origin}: the request itself is served");
        assert_eq!(cors_headers(&r), Vec::<String>::new(), "{origin}");
        // The answer depends on Origin, so caches must keep it apart from allowed ones.
        assert!(varies_on_origin(&r), "{origin}");
    }
    let r = app.get_as(&t, "/api/v1/projects").await;
    assert_eq!(cors_headers(&r), Vec::<String>::new(), "no Origin");
}

#[tokio::test]
async fn preflight_is_answered_before_the_host_is_resolved_or_the_database_is_asked() {
    let app = spawn_app_with(&[("CORS_ALLOWED_ORIGINS", ORIGINS)]).await;
    // No tenant exists, and resolving any Host not yet cached now fails in the database: a
    // preflight that reached the Host middleware would be answered 5xx, not 204.
    app.sql("alter table public.domains rename to domains_elsewhere")
        .await;
    let r = app
        .get("ghost.example.test", "/api/v1/projects", None)
        .await;
    assert!(r.status().is_server_error(), "{}", r.status());

    let origin = "https://ghost.example.com";
    for path in [
        "/api/v1/projects",
        "/api/v1/projects/1",
        "/api/v1/no-such-route",
    ] {
        let r = preflight(
            &app,
            "ghost.example.test",
            path,
            origin,
            "authorization, content-type, x-api-key, x-evil",
        )
        .await;
        assert_eq!(r.status(), 204, "{path}");
        assert_eq!(
            header(&r, "access-control-allow-origin"),
            Some(origin),
            "{path}"
        );
        assert_eq!(
            header(&r, "access-control-allow-methods"),
            Some("GET, POST, PATCH, DELETE"),
            "{path}"
        );
        // The requested headers that are in the list, and no other.
        assert_eq!(
            header(&r, "access-control-allow-headers"),
            Some("Authorization, Content-Type, X-API-Key"),
            "{path}"
        );
        assert_eq!(header(&r, "access-control-max-age"), Some("3600"), "{path}");
        assert_eq!(
            header(&r, "access-control-allow-credentials"),
            None,
            "{path}"
        );
        assert!(varies_on_origin(&r), "{path}");
        // The security headers are still added around it.
        assert_eq!(
            header(&r, "x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(r.text().await.expect("body"), "", "{path}");
    }

    // A preflight from an origin that is not allowed is answered the same way, without any
    // CORS header: the browser then refuses the request.
    for origin in LOOKALIKES {
        let r = preflight(
            &app,
            "ghost.example.test",
            "/api/v1/projects",
            origin,
            "authorization",
        )
        .await;
        assert_eq!(r.status(), 204, "{origin}");
        assert_eq!(cors_headers(&r), Vec::<String>::new(), "{origin}");
    }

    // An OPTIONS that is no preflight (no Access-Control-Request-Method) goes the normal way.
    let r = app
        .request(Method::OPTIONS, "ghost.example.test", "/api/v1/projects")
        .header("Origin", origin)
        .send()
        .await
        .expect("request");
    assert!(r.status().is_server_error(), "{}", r.status());
}

#[tokio::test]
async fn credentials_are_allowed_only_when_enabled() {
    let app = spawn_app_with(&[
        ("CORS_ALLOWED_ORIGINS", ORIGINS),
        ("CORS_ALLOW_CREDENTIALS", "true"),
    ])
    .await;
    let origin = "https://acme.example.com";
    let r = preflight(
        &app,
        "ghost.example.test",
        "/api/v1/projects",
        origin,
        "authorization",
    )
    .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some(origin),
        "echoed, never *"
    );
    assert_eq!(header(&r, "access-control-allow-credentials"), Some("true"));
    let r = get_from(&app, BASE, "/health", origin, None).await;
    assert_allowed(&r, origin, "health");
    assert_eq!(header(&r, "access-control-allow-credentials"), Some("true"));

    let r = get_from(&app, BASE, "/health", "https://evilexample.com", None).await;
    assert_eq!(cors_headers(&r), Vec::<String>::new());
}

#[tokio::test]
async fn cors_is_off_and_hsts_absent_by_default() {
    let app = spawn_app().await;
    let origin = "https://acme.example.com";
    // With CORS off the preflight reaches the Host middleware like any request: no such host.
    let r = preflight(
        &app,
        "ghost.example.test",
        "/api/v1/projects",
        origin,
        "authorization",
    )
    .await;
    assert_eq!(cors_headers(&r), Vec::<String>::new());
    problem(r, 404).await;
    let r = get_from(&app, BASE, "/health", origin, None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(cors_headers(&r), Vec::<String>::new());
    assert!(!varies_on_origin(&r));
    // BASE is a `.test` name, so PUBLIC_SCHEME defaults to http.
    assert_eq!(header(&r, "strict-transport-security"), None);
}

#[tokio::test]
async fn hsts_is_sent_on_every_answer_with_public_scheme_https() {
    let app = spawn_app_with(&[("PUBLIC_SCHEME", "https")]).await;
    let answers = [
        ("health", app.get(BASE, "/health", None).await),
        (
            "api 404 host",
            app.get("ghost.example.test", "/api/v1/projects", None)
                .await,
        ),
        (
            "api 404 route",
            app.get(BASE, "/api/v1/nothing", None).await,
        ),
        ("docs", app.get(BASE, "/api/docs/", None).await),
    ];
    for (what, r) in &answers {
        assert_eq!(
            header(r, "strict-transport-security"),
            Some("max-age=31536000; includeSubDomains"),
            "{what}"
        );
    }
    // A production base domain defaults to https; PUBLIC_SCHEME=http turns HSTS off again.
    let app = spawn_app_with(&[("BASE_DOMAIN", "example.com"), ("PUBLIC_SCHEME", "http")]).await;
    let r = app.get("example.com", "/health", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "strict-transport-security"), None);
}
