//! Request bodies → domain values, parsed once. Each field parses into a [`Field`] (its value or
//! its messages); a tuple of fields [`collect`](Fields::collect)s into the values or one 422 with
//! every field's messages. Request types turn into domain values with `TryFrom`, so a handler
//! never holds a half-validated value and there is no "validator passed but a field is missing"
//! branch anywhere.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Deserializer};
use std::fmt::Display;
use tenantry_public::names::display_name;

use crate::error::{ApiError, FieldErrors};

/// A field's parsed value, or its error messages.
pub type Field<T> = Result<T, FieldErrors>;

/// One message for `field`.
pub fn invalid(field: &str, message: impl Into<String>) -> FieldErrors {
    FieldErrors::from([(field.to_owned(), vec![message.into()])])
}

/// `result` as the value of `field`, its error as the field's message.
pub fn check<T, E: Display>(field: &str, result: Result<T, E>) -> Field<T> {
    result.map_err(|e| invalid(field, e.to_string()))
}

/// A field that must be present: "is required" when absent.
pub fn required<'a>(field: &str, value: &'a Option<String>) -> Field<&'a str> {
    value
        .as_deref()
        .ok_or_else(|| invalid(field, "is required"))
}

/// A required field parsed by `parse`.
pub fn parse<T, E: Display>(
    field: &str,
    value: &Option<String>,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Field<T> {
    required(field, value).and_then(|v| check(field, parse(v)))
}

/// An optional field parsed by `parse` when present.
pub fn parse_opt<T, E: Display>(
    field: &str,
    value: &Option<String>,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Field<Option<T>> {
    value
        .as_deref()
        .map(parse)
        .transpose()
        .map_err(|e| invalid(field, e.to_string()))
}

/// A display name of 1 to `max` characters (trimmed).
pub fn name(field: &str, value: &Option<String>, max: usize) -> Field<String> {
    parse(field, value, |v| display_name(v, max))
}

/// Free text of at most `max` characters (absent → `None`).
pub fn text(field: &str, value: &Option<String>, max: usize) -> Field<Option<String>> {
    match value {
        Some(v) if v.chars().count() > max => {
            Err(invalid(field, format!("must be at most {max} characters")))
        }
        // PostgreSQL cannot store NUL in text.
        Some(v) if v.contains('\0') => Err(invalid(field, "must not contain NUL characters")),
        other => Ok(other.clone()),
    }
}

/// A calendar date, `YYYY-MM-DD`.
pub fn date(field: &str, value: &str) -> Field<NaiveDate> {
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map_err(|_| invalid(field, "must be a date in YYYY-MM-DD form"))
}

/// An instant in RFC 3339 form (surrounding spaces allowed), as UTC.
pub fn instant(field: &str, value: &str) -> Field<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            invalid(
                field,
                "must be an RFC 3339 date-time, e.g. 2026-01-31T12:00:00Z",
            )
        })
}

/// A whole number from `min` to `max`, read from a JSON number: `24.0` is 24, as a client (or a
/// schema-driven fuzzer) may well write an `integer` field; `24.5` is refused. Every bound must
/// be exact in an `f64` (at most 2^53 in magnitude).
pub fn whole_number(field: &str, value: f64, min: i64, max: i64) -> Field<i64> {
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    if value.fract() == 0.0 && (min as f64..=max as f64).contains(&value) {
        Ok(value as i64)
    } else {
        Err(invalid(
            field,
            format!("must be a whole number from {min} to {max}"),
        ))
    }
}

/// Tells an explicit `null` (`Some(None)`) from an absent field (`None`, with
/// `#[serde(default, deserialize_with = "fields::present")]`).
pub fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A field that may be absent (unchanged), `null` (cleared) or a value parsed by `parse`.
pub fn clearable<V, T>(
    value: &Option<Option<V>>,
    parse: impl FnOnce(&V) -> Field<T>,
) -> Field<Option<Option<T>>> {
    value
        .as_ref()
        .map(|v| v.as_ref().map(parse).transpose())
        .transpose()
}

/// A field that may be absent (unchanged) or a value parsed by `parse`, but not `null`.
pub fn not_null<V, T>(
    field: &str,
    value: &Option<Option<V>>,
    parse: impl FnOnce(&V) -> Field<T>,
) -> Field<Option<T>> {
    match value {
        None => Ok(None),
        Some(None) => Err(invalid(field, "must not be null")),
        Some(Some(v)) => parse(v).map(Some),
    }
}

/// An optional query-string filter parsed by `parse`: 400 naming the parameter when bad.
pub fn query<T, E: Display>(
    name: &str,
    value: &Option<String>,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<Option<T>, ApiError> {
    value
        .as_deref()
        .map(parse)
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("{name} {e}")))
}

/// The most characters of a `search` filter.
pub const MAX_SEARCH: usize = 200;

/// A `search` filter's text: at most [`MAX_SEARCH`] characters, no NUL (PostgreSQL cannot
/// hold one), trimmed. Blank searches for nothing: filter it out.
pub fn search(raw: &str) -> Result<String, &'static str> {
    if raw.chars().count() > MAX_SEARCH {
        Err("must be at most 200 characters")
    } else if raw.contains('\0') {
        Err("must not contain NUL characters")
    } else {
        Ok(raw.trim().to_owned())
    }
}

/// A query string's parameters with repeated ones kept, for lists whose filters take several
/// values (`?status=todo&status=done`, or `?status=todo,done`). A bad value is a 400 naming its
/// parameter, like [`query`].
pub struct QueryValues(Vec<(String, String)>);

impl QueryValues {
    /// The parameter's value (the last, if repeated), parsed by `parse`.
    pub fn one<T, E: Display>(
        &self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Option<T>, ApiError> {
        let value = self
            .0
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone());
        query(name, &value, parse)
    }

    /// Every value of a repeatable parameter, each also split at commas: trimmed, empty ones
    /// skipped, repeats dropped (the first kept), each parsed by `parse`.
    pub fn list<T: PartialEq, E: Display>(
        &self,
        name: &str,
        parse: impl Fn(&str) -> Result<T, E>,
    ) -> Result<Vec<T>, ApiError> {
        let mut out = Vec::new();
        let values = self.0.iter().filter(|(key, _)| key == name);
        for part in values.flat_map(|(_, value)| value.split(',')) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let value = parse(part).map_err(|e| ApiError::BadRequest(format!("{name} {e}")))?;
            if !out.contains(&value) {
                out.push(value);
            }
        }
        Ok(out)
    }
}

impl actix_web::FromRequest for QueryValues {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &actix_web::HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let pairs = actix_web::web::Query::<Vec<(String, String)>>::from_query(req.query_string())
            .map(|q| Self(q.into_inner()))
            .map_err(|e| ApiError::BadRequest(format!("the query string is not valid: {e}")));
        std::future::ready(pairs)
    }
}

fn merge(into: &mut FieldErrors, more: FieldErrors) {
    for (field, messages) in more {
        into.entry(field).or_default().extend(messages);
    }
}

/// A tuple of [`Field`]s that collects into the tuple of their values, or a 422 listing the
/// messages of every field that failed.
pub trait Fields: Sized {
    type Values;

    /// The values, or every failing field's messages (a [`Field`] itself, so tuples nest).
    fn collect_fields(self) -> Field<Self::Values>;

    /// The values, or one 422 with every failing field's messages.
    fn collect(self) -> Result<Self::Values, ApiError> {
        self.collect_fields().map_err(ApiError::Validation)
    }
}

macro_rules! fields_tuple {
    ($($name:ident),+) => {
        impl<$($name),+> Fields for ($(Field<$name>,)+) {
            type Values = ($($name,)+);

            #[allow(non_snake_case)]
            fn collect_fields(self) -> Field<Self::Values> {
                let ($($name,)+) = self;
                match ($($name,)+) {
                    ($(Ok($name),)+) => Ok(($($name,)+)),
                    ($($name,)+) => {
                        let mut errors = FieldErrors::new();
                        $(if let Err(e) = $name { merge(&mut errors, e); })+
                        Err(errors)
                    }
                }
            }
        }
    };
}

fields_tuple!(A);
fields_tuple!(A, B);
fields_tuple!(A, B, C);
fields_tuple!(A, B, C, D);
fields_tuple!(A, B, C, D, E);
fields_tuple!(A, B, C, D, E, F);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failing_field_is_reported_at_once() {
        let result = (
            name("name", &None, 10),
            check("n", "12".parse::<u8>()),
            text("t", &Some("x".repeat(11)), 10),
        )
            .collect();
        let Err(ApiError::Validation(errors)) = result else {
            panic!("expected a validation error");
        };
        assert_eq!(errors["name"], ["is required"]);
        assert_eq!(errors["t"], ["must be at most 10 characters"]);
        assert!(!errors.contains_key("n"));
        let ok = (
            check("n", "12".parse::<u8>()),
            parse_opt("d", &None, |d| d.parse::<u8>()),
        )
            .collect()
            .ok();
        assert_eq!(ok, Some((12, None)));
    }
}
