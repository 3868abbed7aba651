//! Validated names: slugs, schema names, domains, emails and passwords. Each can only be built valid.

use std::fmt;

/// Why a name was refused. The message is safe to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(pub &'static str);

/// Labels no tenant may take: they are, or may become, hosts of the product itself.
pub const RESERVED_SLUGS: &[&str] = &[
    "www",
    "api",
    "app",
    "admin",
    "public",
    "static",
    "assets",
    "mail",
    "smtp",
    "imap",
    "pop",
    "ftp",
    "cdn",
    "docs",
    "status",
    "help",
    "support",
    "blog",
    "dashboard",
    "auth",
    "login",
    "signup",
    "register",
    "account",
    "accounts",
    "billing",
    "dev",
    "test",
    "staging",
    "internal",
    "root",
    "system",
    "tenant",
    "tenants",
    "media",
    "files",
    "ws",
    "graphql",
    "health",
    "ready",
    "metrics",
];

/// A tenant slug: a DNS label `^[a-z][a-z0-9-]{1,38}[a-z0-9]$`, no `--`, not reserved.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slug(String);

impl Slug {
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let bytes = input.as_bytes();
        if bytes.len() < 3 || bytes.len() > 40 {
            return Err(NameError("must be between 3 and 40 characters"));
        }
        if !bytes[0].is_ascii_lowercase() {
            return Err(NameError("must start with a lowercase letter"));
        }
        if !bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        {
            return Err(NameError(
                "may contain only lowercase letters, digits and hyphens",
            ));
        }
        if bytes[bytes.len() - 1] == b'-' {
            return Err(NameError("must not end with a hyphen"));
        }
        if input.contains("--") {
            return Err(NameError("must not contain two hyphens in a row"));
        }
        if RESERVED_SLUGS.contains(&input) {
            return Err(NameError("is reserved"));
        }
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The schema that holds this tenant's data: `tenant_` + the slug with `-` as `_`.
    /// Distinct slugs give distinct schema names because a slug never contains `_`.
    pub fn schema_name(&self) -> SchemaName {
        SchemaName(format!("tenant_{}", self.0.replace('-', "_")))
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A PostgreSQL schema that holds one tenant: `^[a-z][a-z0-9_]{0,62}$`, never `pg_*`, `public` or
/// `information_schema`. It reaches SQL only through [`SchemaName::quoted`] or as a bind parameter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SchemaName(String);

impl SchemaName {
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let bytes = input.as_bytes();
        if bytes.is_empty() || bytes.len() > 63 {
            return Err(NameError("must be between 1 and 63 characters"));
        }
        if !bytes[0].is_ascii_lowercase() {
            return Err(NameError("must start with a lowercase letter"));
        }
        if !bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
        {
            return Err(NameError(
                "may contain only lowercase letters, digits and underscores",
            ));
        }
        if input.starts_with("pg_") || input == "public" || input == "information_schema" {
            return Err(NameError("is reserved by PostgreSQL"));
        }
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as a quoted SQL identifier. The character set already excludes `"`, and the
    /// doubling below keeps that true should the rules ever loosen.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0.replace('"', "\"\""))
    }
}

impl fmt::Display for SchemaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A normalised host name: lowercase, without port and without one trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DomainName(String);

impl DomainName {
    /// Normalises a `Host` header value. IPv6 literals and anything that is not a plausible
    /// DNS name are refused.
    pub fn from_host_header(host: &str) -> Result<Self, NameError> {
        let host = host.trim();
        let without_port = match host.rsplit_once(':') {
            Some((name, port)) => {
                if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) || port.len() > 5 {
                    return Err(NameError("has an invalid port"));
                }
                name
            }
            None => host,
        };
        Self::parse(without_port)
    }

    /// Parses a bare domain name (no port), lowercasing it and dropping one trailing dot.
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let lower = input.to_ascii_lowercase();
        let name = lower.strip_suffix('.').unwrap_or(&lower);
        if name.is_empty() || name.len() > 253 {
            return Err(NameError("must be between 1 and 253 characters"));
        }
        for label in name.split('.') {
            let b = label.as_bytes();
            if b.is_empty() || b.len() > 63 {
                return Err(NameError("has an empty or over-long label"));
            }
            if !b
                .iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            {
                return Err(NameError(
                    "may contain only letters, digits, hyphens and dots",
                ));
            }
            if b[0] == b'-' || b[b.len() - 1] == b'-' {
                return Err(NameError("has a label starting or ending with a hyphen"));
            }
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first label when this name is exactly one label below `base`.
    pub fn subdomain_of(&self, base: &DomainName) -> Option<&str> {
        let prefix = self.0.strip_suffix(base.as_str())?.strip_suffix('.')?;
        (!prefix.is_empty() && !prefix.contains('.')).then_some(prefix)
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An email address: trimmed, one `@`, a non-empty local part and a dotted domain. Case is
/// kept as given; uniqueness in the database is case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let input = input.trim();
        if input.len() < 3 || input.len() > 254 {
            return Err(NameError("must be between 3 and 254 characters"));
        }
        let Some((local, domain)) = input.split_once('@') else {
            return Err(NameError("must be an email address"));
        };
        if local.is_empty()
            || local.len() > 64
            || domain.contains('@')
            || input.chars().any(|c| c.is_whitespace() || c.is_control())
            || DomainName::parse(domain).is_err()
            || !domain.contains('.')
        {
            return Err(NameError("must be an email address"));
        }
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A new password: 10 to 128 characters, never truncated. It never prints.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub const MIN_CHARS: usize = 10;
    pub const MAX_CHARS: usize = 128;

    pub fn parse(input: &str) -> Result<Self, NameError> {
        let n = input.chars().count();
        if n < Self::MIN_CHARS {
            return Err(NameError("must be at least 10 characters"));
        }
        if n > Self::MAX_CHARS {
            return Err(NameError("must be at most 128 characters"));
        }
        if crate::common_passwords::is_common(input) {
            return Err(NameError("is one of the most common passwords"));
        }
        Ok(Self(input.to_owned()))
    }

    /// [`Password::parse`], and the password must not contain the local part of the account's
    /// email (any case; local parts shorter than 3 characters are not checked).
    pub fn parse_for(input: &str, email: &str) -> Result<Self, NameError> {
        let password = Self::parse(input)?;
        let local = email.split('@').next().unwrap_or_default().to_lowercase();
        if local.chars().count() >= 3 && input.to_lowercase().contains(&local) {
            return Err(NameError("must not contain the email address's name"));
        }
        Ok(password)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// A human-readable name (company, project): at most `max` characters and no control
/// characters as sent, not blank, stored trimmed. (Checked on the input as sent, so the
/// OpenAPI document can state the same rule as a length and a pattern.)
pub fn display_name(input: &str, max: usize) -> Result<String, NameError> {
    if input.chars().count() > max {
        return Err(NameError("is too long"));
    }
    if input.chars().any(char::is_control) {
        return Err(NameError("must not contain control characters"));
    }
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(NameError("must not be blank"));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for ok in [
            "acme",
            "a-b-c",
            "abc123",
            "x1y",
            &format!("a{}", "b".repeat(39)),
        ] {
            assert!(Slug::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "ab",
            "Acme",
            "1abc",
            "-abc",
            "abc-",
            "a--b",
            "a_b",
            "www",
            "api",
            "admin",
            "public",
            "ab.c",
            "café",
            &format!("a{}", "b".repeat(40)),
        ] {
            assert!(Slug::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Slug::parse("big-co").map(|s| s.schema_name().as_str().to_owned()),
            Ok("tenant_big_co".to_owned())
        );
    }

    #[test]
    fn schema_names() {
        for ok in ["tenant_acme", "a", "t_1"] {
            assert!(SchemaName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "public",
            "pg_catalog",
            "pg_temp",
            "information_schema",
            "Tenant",
            "1a",
            "a-b",
            "a\"b",
            "a;drop",
            &"a".repeat(64),
        ] {
            assert!(SchemaName::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            SchemaName::parse("tenant_acme").map(|s| s.quoted()),
            Ok("\"tenant_acme\"".to_owned())
        );
    }

    #[test]
    fn hosts() {
        let h = |s: &str| DomainName::from_host_header(s).map(|d| d.as_str().to_owned());
        assert_eq!(h("Acme.Example.COM:8080"), Ok("acme.example.com".into()));
        assert_eq!(h("acme.example.com."), Ok("acme.example.com".into()));
        assert_eq!(h("localhost"), Ok("localhost".into()));
        for bad in [
            "",
            ":80",
            "a..b",
            "a b",
            "acme.example.com:",
            "x:abc",
            "[::1]:80",
            "a_b.com",
            "-a.com",
        ] {
            assert!(h(bad).is_err(), "{bad}");
        }
        let base = DomainName::parse("example.com").expect("valid");
        let d = DomainName::parse("acme.example.com").expect("valid");
        assert_eq!(d.subdomain_of(&base), Some("acme"));
        let deep = DomainName::parse("x.acme.example.com").expect("valid");
        assert_eq!(deep.subdomain_of(&base), None);
        let other = DomainName::parse("acmeexample.com").expect("valid");
        assert_eq!(other.subdomain_of(&base), None);
        assert_eq!(base.subdomain_of(&base), None);
    }

    #[test]
    fn display_names() {
        assert_eq!(display_name("  Acme Inc ", 200), Ok("Acme Inc".to_owned()));
        assert_eq!(
            display_name(&"é".repeat(200), 200).map(|n| n.chars().count()),
            Ok(200)
        );
        assert!(display_name(&"é".repeat(201), 200).is_err());
        assert!(display_name("   ", 200).is_err());
        assert!(display_name("a\u{0}b", 200).is_err());
    }

    #[test]
    fn emails_and_passwords() {
        assert!(Email::parse("a@b.co").is_ok());
        assert_eq!(
            Email::parse("  Ann@Example.com ").map(|e| e.0),
            Ok("Ann@Example.com".into())
        );
        for bad in [
            "", "a", "a@", "@b.co", "a@b", "a@@b.co", "a b@c.co", "a@b_c.co",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        assert!(Password::parse("123456789").is_err());
        assert!(Password::parse("x9k2m4p7q1").is_ok(), "10 characters");
        assert!(Password::parse("1234567890").is_err(), "common");
        assert!(Password::parse_for("my-ANN-secret", "ann@example.com").is_err());
        assert!(Password::parse_for("my-bob-secret", "ann@example.com").is_ok());
        assert!(
            Password::parse_for("jo-secret-1", "jo@example.com").is_ok(),
            "too short to check"
        );
        assert!(Password::parse(&"é".repeat(128)).is_ok());
        assert!(Password::parse(&"x".repeat(129)).is_err());
        assert_eq!(
            format!("{:?}", Password::parse("secret-secret").expect("ok")),
            "Password(***)"
        );
    }
}
