//! Schemas of request fields that the derive cannot state on its own, built from the domain's
//! own rules so the OpenAPI document and the server never disagree: closed sets of values (each
//! `text_enum!`'s `ALL`), names (`display_name`: not blank, no control characters, at most N
//! characters), free text (no NUL, which PostgreSQL cannot store) and tag lists. Fields use them
//! with `#[schema(schema_with = …)]` (or `#[param(schema_with = …)]`).

use tenantry_public::company_settings::{ReminderLeadHours, RetentionDays, Timezone};
use tenantry_public::memberships::Role;
use tenantry_public::plans::PlanCode;
use tenantry_public::Password;
use tenantry_tenant::audit::Action;
use tenantry_tenant::documents::{self, DocumentKind};
use tenantry_tenant::invitations::InvitationStatus;
use tenantry_tenant::ordering::{Order, SortColumn};
use tenantry_tenant::projects::{self, ProjectStatus};
use tenantry_tenant::tasks::{self, TaskPriority, TaskStatus, MAX_TAG, MAX_TAGS};
use tenantry_tenant::teams::TeamRole;
use utoipa::openapi::schema::{ArrayBuilder, Object, ObjectBuilder, SchemaType, Type};
use utoipa::openapi::{Array, KnownFormat, SchemaFormat};

/// Not blank, no control characters (C0, DEL, C1): what `display_name` accepts.
const NAME_PATTERN: &str = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$";
/// No control characters, blank allowed.
const OPTIONAL_NAME_PATTERN: &str = r"^[^\x00-\x1F\x7F-\x9F]*$";
/// Anything but NUL.
const TEXT_PATTERN: &str = r"^[^\x00]*$";
/// The most characters of a person's full name, and of a company's name.
pub const MAX_PERSON_NAME: usize = 200;

fn string(nullable: bool) -> ObjectBuilder {
    let kind: SchemaType = if nullable {
        [Type::String, Type::Null].into_iter().collect()
    } else {
        Type::String.into()
    };
    ObjectBuilder::new().schema_type(kind)
}

fn one_of<V: Into<serde_json::Value>>(values: impl Iterator<Item = V>, nullable: bool) -> Object {
    let mut values: Vec<serde_json::Value> = values.map(Into::into).collect();
    if nullable {
        values.push(serde_json::Value::Null);
    }
    string(nullable).enum_values(Some(values)).build()
}

/// A name of at most `max` characters (the `display_name` rule).
pub fn name(max: usize, nullable: bool) -> Object {
    string(nullable)
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(NAME_PATTERN))
        .build()
}

/// Free text of at most `max` characters; `null` is the same as leaving it out.
pub fn text(max: usize) -> Object {
    string(true)
        .max_length(Some(max))
        .pattern(Some(TEXT_PATTERN))
        .build()
}

/// A format with the pattern that states it: formats alone are annotations to a validator.
fn formatted(format: KnownFormat, pattern: &str) -> Object {
    string(true)
        .format(Some(SchemaFormat::KnownFormat(format)))
        .pattern(Some(pattern))
        .build()
}

const UUID_PATTERN: &str =
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
const DATE_PATTERN: &str = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$";
const INSTANT_PATTERN: &str = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$";

/// A date-time (RFC 3339); `null` is the same as leaving it out (or, in a patch, clears it).
pub fn instant() -> Object {
    formatted(KnownFormat::DateTime, INSTANT_PATTERN)
}

/// A calendar date (`YYYY-MM-DD`), nullable like [`instant`].
pub fn date() -> Object {
    formatted(KnownFormat::Date, DATE_PATTERN)
}

/// An id (UUID) that must be there.
pub fn required_id() -> Object {
    string(false)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
        .pattern(Some(UUID_PATTERN))
        .build()
}

/// An id (UUID), nullable like [`instant`].
pub fn id() -> Object {
    formatted(KnownFormat::Uuid, UUID_PATTERN)
}

fn password_schema(nullable: bool) -> Object {
    string(nullable)
        .min_length(Some(Password::MIN_CHARS))
        .max_length(Some(Password::MAX_CHARS))
        .build()
}

fn email_schema(nullable: bool) -> Object {
    string(nullable)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Email)))
        .max_length(Some(254))
        .build()
}

/// A new password: [`Password::MIN_CHARS`] to [`Password::MAX_CHARS`] characters.
pub fn new_password() -> Object {
    password_schema(false)
}

/// [`new_password`], where it is asked for only in some cases (a new account).
pub fn new_password_or_null() -> Object {
    password_schema(true)
}

/// An email address (at most 254 characters).
pub fn email() -> Object {
    email_schema(false)
}

/// [`email`], where it is asked for only in some cases.
pub fn email_or_null() -> Object {
    email_schema(true)
}

/// A tenant slug: a DNS label of 3 to 40 characters starting with a letter, hyphens only
/// between letters or digits (reserved names are refused with 422).
pub fn slug() -> Object {
    string(false)
        .min_length(Some(3))
        .max_length(Some(40))
        .pattern(Some(r"^[a-z](-?[a-z0-9])+$"))
        .build()
}

/// A full name where one is needed (a new account).
pub fn full_name() -> Object {
    name(MAX_PERSON_NAME, false)
}

/// [`full_name`], where it is asked for only in some cases.
pub fn full_name_or_null() -> Object {
    name(MAX_PERSON_NAME, true)
}

/// A name that may be left blank (no name), but never has control characters.
pub fn optional_full_name() -> Object {
    string(true)
        .max_length(Some(MAX_PERSON_NAME))
        .pattern(Some(OPTIONAL_NAME_PATTERN))
        .build()
}

pub fn api_key_name() -> Object {
    name(crate::routes::api_keys::MAX_NAME, false)
}

pub fn company_name() -> Object {
    name(MAX_PERSON_NAME, false)
}

pub fn project_name() -> Object {
    name(projects::MAX_NAME, false)
}

pub fn project_name_or_null() -> Object {
    name(projects::MAX_NAME, true)
}

pub fn project_description() -> Object {
    text(projects::MAX_DESCRIPTION)
}

pub fn task_title() -> Object {
    name(tasks::MAX_TITLE, false)
}

pub fn task_title_or_null() -> Object {
    name(tasks::MAX_TITLE, true)
}

pub fn task_description() -> Object {
    text(tasks::MAX_DESCRIPTION)
}

/// An integer from `min` to `max` (`null` too when `nullable`).
fn integer(min: i32, max: i32, nullable: bool) -> Object {
    let kind: SchemaType = if nullable {
        [Type::Integer, Type::Null].into_iter().collect()
    } else {
        Type::Integer.into()
    };
    ObjectBuilder::new()
        .schema_type(kind)
        .minimum(Some(min))
        .maximum(Some(max))
        .build()
}

/// An organization's time zone: `UTC` or an IANA region name (the rule of `Timezone::parse`;
/// whether PostgreSQL knows the name is checked by the server, 422 otherwise).
pub fn timezone() -> Object {
    string(false)
        .min_length(Some(3))
        .max_length(Some(Timezone::MAX_CHARS))
        .pattern(Some(Timezone::pattern()))
        .build()
}

/// Hours before a due date that reminders go out.
pub fn reminder_lead_hours() -> Object {
    integer(ReminderLeadHours::MIN, ReminderLeadHours::MAX, false)
}

/// Days completed tasks are kept; `null` keeps them forever.
pub fn retention_days() -> Object {
    integer(RetentionDays::MIN, RetentionDays::MAX, true)
}

/// `format=` of an export: `csv`.
pub fn export_format() -> Object {
    one_of(["csv"].into_iter(), false)
}

/// The member search text: at most 200 characters, no NUL.
pub fn search() -> Object {
    text(crate::fields::MAX_SEARCH)
}

/// A member's or task's assignee filter: `me`, `none` or a user id.
pub fn assignee_filter() -> Object {
    string(false)
        .pattern(Some(
            r"^(me|none|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$",
        ))
        .build()
}

/// A task's tags: at most [`MAX_TAGS`] names of at most [`MAX_TAG`] characters.
pub fn tags() -> Array {
    ArrayBuilder::new()
        .schema_type(
            [Type::Array, Type::Null]
                .into_iter()
                .collect::<SchemaType>(),
        )
        .items(name(MAX_TAG, false))
        .max_items(Some(MAX_TAGS))
        .build()
}

/// Any role (a filter).
pub fn role() -> Object {
    one_of(Role::ALL.iter().map(|v| v.as_str()), false)
}

/// A role that can be given: any but owner (ownership moves by transfer only).
pub fn grantable_role() -> Object {
    let grantable = Role::ALL.iter().filter(|r| **r != Role::Owner);
    one_of(grantable.map(|v| v.as_str()), false)
}

/// A plan an organization may choose itself (sign-up, plan changes): never enterprise.
pub fn plan() -> Object {
    one_of(PlanCode::self_service().map(|v| v.as_str()), true)
}

/// [`plan`], required.
pub fn required_plan() -> Object {
    one_of(PlanCode::self_service().map(|v| v.as_str()), false)
}

pub fn project_status() -> Object {
    one_of(ProjectStatus::ALL.iter().map(|v| v.as_str()), true)
}

/// `ordering=` of a list whose columns are `S`: every column, ascending and with `-`.
fn ordering<S: SortColumn>() -> Object {
    one_of(Order::<S>::names().into_iter(), false)
}

/// `ordering=` of the task lists.
pub fn task_ordering() -> Object {
    ordering::<tasks::TaskSort>()
}

/// `ordering=` of the project list.
pub fn project_ordering() -> Object {
    ordering::<projects::ProjectSort>()
}

/// `status=` of the project list: repeatable (a comma list is accepted too).
pub fn project_statuses() -> Array {
    ArrayBuilder::new()
        .items(one_of(ProjectStatus::ALL.iter().map(|v| v.as_str()), false))
        .build()
}

/// A date filter (`YYYY-MM-DD`) of a list.
pub fn date_filter() -> Object {
    string(false)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Date)))
        .pattern(Some(DATE_PATTERN))
        .build()
}

/// A role on a project's team.
pub fn team_role() -> Object {
    one_of(TeamRole::ALL.iter().map(|v| v.as_str()), false)
}

pub fn task_status() -> Object {
    one_of(TaskStatus::ALL.iter().map(|v| v.as_str()), true)
}

/// A project report's status (`tenant::reports::ReportStatus`).
pub fn report_status() -> Object {
    one_of(
        tenantry_tenant::reports::ReportStatus::ALL
            .iter()
            .map(|v| v.as_str()),
        false,
    )
}

pub fn task_priority() -> Object {
    one_of(TaskPriority::ALL.iter().map(|v| v.as_str()), true)
}

/// A repeatable filter of task statuses.
pub fn task_statuses() -> Array {
    list_of(one_of(TaskStatus::ALL.iter().map(|v| v.as_str()), false))
}

/// A repeatable filter of task priorities.
pub fn task_priorities() -> Array {
    list_of(one_of(TaskPriority::ALL.iter().map(|v| v.as_str()), false))
}

/// A repeatable query parameter (`?p=a&p=b`; the server also takes `?p=a,b`).
pub fn list_of(items: Object) -> Array {
    ArrayBuilder::new().items(items).build()
}

/// A task tag (a filter).
pub fn tag() -> Object {
    name(MAX_TAG, false)
}

pub fn invitation_status() -> Object {
    one_of(InvitationStatus::ALL.iter().map(|v| v.as_str()), false)
}

pub fn audit_action() -> Object {
    one_of(Action::ALL.iter().map(|v| v.as_str()), false)
}

pub fn document_title() -> Object {
    name(documents::MAX_TITLE, false)
}

pub fn document_title_or_null() -> Object {
    name(documents::MAX_TITLE, true)
}

/// A note's markdown body: at most [`documents::MAX_NOTE_BYTES`] bytes of UTF-8 (stated as that
/// many characters, the closest a JSON Schema comes; the server counts bytes).
pub fn note_body() -> Object {
    string(true)
        .max_length(Some(documents::MAX_NOTE_BYTES))
        .build()
}

/// The uploaded file's bytes in a multipart body.
pub fn binary() -> Object {
    string(false)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
        .build()
}

/// A project id as a multipart text field (never null there).
pub fn form_id() -> Object {
    required_id()
}

pub fn document_kind() -> Object {
    one_of(DocumentKind::ALL.iter().map(|v| v.as_str()), false)
}

pub fn document_ordering() -> Object {
    ordering::<documents::DocumentSort>()
}

/// A document list's project filter: a project id, or `none` for the organization's own.
pub fn project_filter() -> Object {
    string(false)
        .pattern(Some(
            r"^(none|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$",
        ))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenantry_public::names::display_name;

    /// The time zone pattern agrees with `Timezone::parse`.
    #[test]
    fn timezone_pattern_matches_timezone_parse() {
        let re = regex::Regex::new(&Timezone::pattern()).expect("the pattern compiles");
        for input in [
            "UTC",
            "utc",
            "Europe/Berlin",
            "America/Argentina/Buenos_Aires",
            "America/Port-au-Prince",
            "Etc/GMT+5",
            "CET",
            "Europe",
            "Europe/",
            "Europe/1",
            "Europe/A/B/C",
            "Asia/Ho_Chi_Minh",
        ] {
            assert_eq!(
                re.is_match(input),
                Timezone::parse(input).is_ok(),
                "{input:?}"
            );
        }
    }

    /// The name pattern agrees with `display_name` on the edge cases: blank, control characters
    /// anywhere (also at the ends, before trimming), and ordinary text with spaces inside.
    #[test]
    fn name_pattern_matches_display_name() {
        // The schema's pattern, as a Rust regex would read it (both are anchored).
        let re = regex::Regex::new(NAME_PATTERN).expect("the name pattern compiles");
        for input in [
            "", " ", "\u{3000}", "\tAcme", "Acme\n", "A\u{7f}b", "A\u{85}", "Acme Inc", " é ", "x",
        ] {
            assert_eq!(
                re.is_match(input),
                display_name(input, 200).is_ok(),
                "{input:?}"
            );
        }
    }
}
