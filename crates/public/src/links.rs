//! Links in emails that no request caused (the worker's reminders and digests): the API builds
//! its links from the Host a request came to, but a job has no request, so it builds them from
//! the tenant's primary domain, or `<slug>.BASE_DOMAIN`, with the scheme and port that
//! `LINK_SCHEME` and `LINK_PORT` give the server's own links.

use std::fmt;

use crate::names::{DomainName, Slug};

/// The page of one task: `/tasks/{id}` (the front end reads `/api/v1/tasks/{id}`).
pub const TASKS_PATH: &str = "/tasks";
/// The path of the organization's billing page (subscription, plan, invoices) on a tenant host.
pub const BILLING_PATH: &str = "/settings/billing";

/// Whether `base_domain` only exists in development (`localhost`, `*.localhost`, `*.test`:
/// reserved names no certificate authority signs for), so its links default to `http`.
pub fn is_development_domain(base_domain: &DomainName) -> bool {
    let name = base_domain.as_str();
    name == "localhost" || name.ends_with(".localhost") || name.ends_with(".test")
}

/// A link configuration variable that is unusable, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}: {message}")]
pub struct LinkConfigError {
    pub var: &'static str,
    pub message: String,
}

/// How to build a link to a tenant's page without a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Links {
    /// `http` or `https`.
    scheme: &'static str,
    port: Option<u16>,
    base_domain: DomainName,
}

impl Links {
    /// Links under `base_domain` with `https` (`http` for a development domain) and no port.
    pub fn new(base_domain: DomainName) -> Self {
        let scheme = if is_development_domain(&base_domain) {
            "http"
        } else {
            "https"
        };
        Self {
            scheme,
            port: None,
            base_domain,
        }
    }

    /// Read as the server reads them: `BASE_DOMAIN` (default `localhost`), `LINK_SCHEME`
    /// (default `PUBLIC_SCHEME`, else `http` for a development domain and `https` otherwise) and
    /// `LINK_PORT` (default none). `get` is the caller's lookup (the binaries pass the
    /// environment); an empty value counts as unset.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, LinkConfigError> {
        let get = |var: &str| {
            get(var)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let err = |var: &'static str, message: String| LinkConfigError { var, message };
        let base = get("BASE_DOMAIN").unwrap_or_else(|| "localhost".to_owned());
        let base_domain =
            DomainName::parse(&base).map_err(|e| err("BASE_DOMAIN", format!("{base:?} {e}")))?;
        let mut links = Self::new(base_domain);
        for var in ["PUBLIC_SCHEME", "LINK_SCHEME"] {
            match get(var).as_deref() {
                None => {}
                Some("http") => links.scheme = "http",
                Some("https") => links.scheme = "https",
                Some(other) => {
                    return Err(err(var, format!("must be http or https, got {other:?}")));
                }
            }
        }
        if let Some(v) = get("LINK_PORT") {
            let port = v.parse::<u16>().ok().filter(|p| *p > 0);
            links.port =
                Some(port.ok_or_else(|| {
                    err("LINK_PORT", format!("must be a port number, got {v:?}"))
                })?);
        }
        Ok(links)
    }

    /// The same links on `port`.
    #[must_use]
    pub fn with_port(mut self, port: Option<u16>) -> Self {
        self.port = port;
        self
    }

    /// The host a tenant's links open: its primary domain, or `<slug>.BASE_DOMAIN` (both are
    /// hosts the server routes to the tenant).
    pub fn tenant_host(&self, slug: &Slug, primary_domain: Option<&str>) -> String {
        match primary_domain {
            Some(domain) => domain.to_owned(),
            None => format!("{}.{}", slug.as_str(), self.base_domain),
        }
    }

    /// `{scheme}://{host}[:port]{path}`.
    pub fn page(&self, host: &str, path: &str) -> String {
        match self.port {
            Some(port) => format!("{}://{host}:{port}{path}", self.scheme),
            None => format!("{}://{host}{path}", self.scheme),
        }
    }

    /// The page of task `id` on `host`.
    pub fn task(&self, host: &str, id: impl fmt::Display) -> String {
        self.page(host, &format!("{TASKS_PATH}/{id}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn links_follow_the_servers_variables() {
        let slug = Slug::parse("acme").expect("slug");
        let dev = Links::from_lookup(lookup(&[])).expect("defaults");
        assert_eq!(
            dev.task(&dev.tenant_host(&slug, None), "t1"),
            "http://acme.localhost/tasks/t1"
        );
        let prod =
            Links::from_lookup(lookup(&[("BASE_DOMAIN", "Example.COM")])).expect("production");
        assert_eq!(
            prod.task(&prod.tenant_host(&slug, Some("tasks.acme.org")), "t1"),
            "https://tasks.acme.org/tasks/t1"
        );
        let local = Links::from_lookup(lookup(&[
            ("BASE_DOMAIN", "example.com"),
            ("PUBLIC_SCHEME", "https"),
            ("LINK_SCHEME", "http"),
            ("LINK_PORT", "8080"),
        ]))
        .expect("overrides");
        assert_eq!(
            local.page(&local.tenant_host(&slug, None), "/x"),
            "http://acme.example.com:8080/x"
        );
        for (var, value) in [
            ("LINK_SCHEME", "ftp"),
            ("LINK_PORT", "0"),
            ("LINK_PORT", "x"),
            ("BASE_DOMAIN", "not a domain"),
        ] {
            let e = Links::from_lookup(lookup(&[(var, value)])).expect_err(value);
            assert_eq!(e.var, var);
        }
    }
}
