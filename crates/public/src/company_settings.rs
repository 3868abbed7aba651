//! Each company's settings (`public.company_settings`, public V6): its time zone, how many hours
//! before a task is due its assignee is reminded, and how long completed tasks are kept. One row
//! per company, made with the company by a trigger, so every company has one. They live in the
//! public schema so that the worker reads every tenant's settings in one query; changes are the
//! tenant's business (`tenantry_tenant::organization`, audited in its trail).

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::fmt;
use tokio_postgres::{GenericClient, Row};

use crate::db::DbError;
use crate::ids::CompanyId;
use crate::names::NameError;

/// The geographic areas IANA region names start with (`Europe/Berlin`). The other names
/// PostgreSQL knows — abbreviations (`CET`, `EST`), fixed offsets (`Etc/GMT+5`, whose sign is
/// the POSIX one, the opposite of ISO 8601), legacy aliases (`US/Eastern`, `Japan`) and the
/// `posix/` copies — are refused: they are ambiguous or deprecated, and none of them is needed to
/// name a place's time.
pub const TIMEZONE_AREAS: [&str; 10] = [
    "Africa",
    "America",
    "Antarctica",
    "Arctic",
    "Asia",
    "Atlantic",
    "Australia",
    "Europe",
    "Indian",
    "Pacific",
];

/// A time zone: `UTC` (the default), or an IANA region name of an area in [`TIMEZONE_AREAS`]
/// followed by one or two parts of ASCII letters, `_` and `-`, each starting with a letter
/// (`America/Argentina/Buenos_Aires`), at most [`Timezone::MAX_CHARS`] characters, spelled
/// exactly (case matters). Whether PostgreSQL knows the name is a question for the database
/// ([`is_known_timezone`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Timezone(String);

impl Timezone {
    /// The default of every company.
    pub const UTC: &'static str = "UTC";
    /// The most characters of a name (the longest IANA name has 32).
    pub const MAX_CHARS: usize = 64;

    pub fn parse(input: &str) -> Result<Self, NameError> {
        if input == Self::UTC {
            return Ok(Self(input.to_owned()));
        }
        if input.len() > Self::MAX_CHARS {
            return Err(NameError("must be at most 64 characters"));
        }
        let mut parts = input.split('/');
        let area = parts.next().unwrap_or_default();
        let rest: Vec<&str> = parts.collect();
        let region = |part: &&str| {
            part.starts_with(|c: char| c.is_ascii_alphabetic())
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphabetic() || c == '_' || c == '-')
        };
        if !TIMEZONE_AREAS.contains(&area)
            || !(1..=2).contains(&rest.len())
            || !rest.iter().all(region)
        {
            return Err(NameError(
                "must be UTC or an IANA time zone name such as Europe/Berlin",
            ));
        }
        Ok(Self(input.to_owned()))
    }

    /// The rule of [`parse`](Self::parse) as a regular expression (the OpenAPI pattern; the
    /// table's check says the same).
    pub fn pattern() -> String {
        format!(
            "^(UTC|({})(/[A-Za-z][A-Za-z_-]*){{1,2}})$",
            TIMEZONE_AREAS.join("|")
        )
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Timezone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A whole number within `MIN..=MAX`, built only by `parse`.
macro_rules! bounded {
    ($(#[$meta:meta])* $name:ident, $min:literal ..= $max:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
        #[serde(transparent)]
        pub struct $name(i32);

        impl $name {
            pub const MIN: i32 = $min;
            pub const MAX: i32 = $max;

            pub fn parse(n: i64) -> Result<Self, NameError> {
                i32::try_from(n)
                    .ok()
                    .filter(|n| (Self::MIN..=Self::MAX).contains(n))
                    .map(Self)
                    .ok_or(NameError(concat!(
                        "must be a whole number from ",
                        stringify!($min),
                        " to ",
                        stringify!($max)
                    )))
            }

            pub fn get(self) -> i32 {
                self.0
            }
        }
    };
}

bounded!(
    /// How many hours before a task is due its assignee is reminded: 1 to 168 (a week).
    ReminderLeadHours, 1..=168
);

bounded!(
    /// How many days a completed task is kept: 7 to 3650 (ten years).
    RetentionDays, 7..=3650
);

impl ReminderLeadHours {
    /// The default of every company.
    pub const DEFAULT: i32 = 24;
}

/// One company's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompanySettings {
    pub company_id: CompanyId,
    pub timezone: Timezone,
    pub reminder_lead_hours: ReminderLeadHours,
    /// `None`: completed tasks are kept forever.
    pub completed_task_retention_days: Option<RetentionDays>,
    pub updated_at: DateTime<Utc>,
}

/// A validated change: `None` leaves a field as it is; `Some(None)` clears the retention.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsPatch {
    pub timezone: Option<Timezone>,
    pub reminder_lead_hours: Option<ReminderLeadHours>,
    pub completed_task_retention_days: Option<Option<RetentionDays>>,
}

impl CompanySettings {
    /// These settings with `patch` applied (`updated_at` as it was).
    pub fn patched(&self, patch: &SettingsPatch) -> Self {
        Self {
            company_id: self.company_id,
            timezone: patch
                .timezone
                .clone()
                .unwrap_or_else(|| self.timezone.clone()),
            reminder_lead_hours: patch
                .reminder_lead_hours
                .unwrap_or(self.reminder_lead_hours),
            completed_task_retention_days: patch
                .completed_task_retention_days
                .unwrap_or(self.completed_task_retention_days),
            updated_at: self.updated_at,
        }
    }
}

const COLUMNS: &str =
    "company_id, timezone, reminder_lead_hours, completed_task_retention_days, updated_at";

impl TryFrom<&Row> for CompanySettings {
    type Error = DbError;

    fn try_from(row: &Row) -> Result<Self, DbError> {
        let corrupt = |column: &str, e: NameError| {
            DbError::Corrupt(format!("company_settings.{column} {}", e.0))
        };
        let timezone: String = row.try_get("timezone")?;
        let hours: i32 = row.try_get("reminder_lead_hours")?;
        let days: Option<i32> = row.try_get("completed_task_retention_days")?;
        Ok(Self {
            company_id: row.try_get("company_id")?,
            timezone: Timezone::parse(&timezone).map_err(|e| corrupt("timezone", e))?,
            reminder_lead_hours: ReminderLeadHours::parse(hours.into())
                .map_err(|e| corrupt("reminder_lead_hours", e))?,
            completed_task_retention_days: days
                .map(|d| RetentionDays::parse(d.into()))
                .transpose()
                .map_err(|e| corrupt("completed_task_retention_days", e))?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

async fn read(
    db: &impl GenericClient,
    company: CompanyId,
    lock: bool,
) -> Result<CompanySettings, DbError> {
    let sql = format!(
        "select {COLUMNS} from public.company_settings where company_id = $1{}",
        if lock { " for update" } else { "" }
    );
    let row = db.query_opt(&sql, &[&company.0]).await?.ok_or_else(|| {
        DbError::Corrupt(format!("company {company} has no company_settings row"))
    })?;
    CompanySettings::try_from(&row)
}

/// The settings of `company` (which must exist: every company has its row).
pub async fn get(db: &impl GenericClient, company: CompanyId) -> Result<CompanySettings, DbError> {
    read(db, company, false).await
}

/// [`get`], the row locked for a change in the caller's transaction.
pub async fn lock(db: &impl GenericClient, company: CompanyId) -> Result<CompanySettings, DbError> {
    read(db, company, true).await
}

/// Whether PostgreSQL knows `timezone` (`pg_timezone_names`, its time zone database), spelled
/// exactly so. Reading the view costs tens of milliseconds: call it before taking locks.
pub async fn is_known_timezone(
    db: &impl GenericClient,
    timezone: &Timezone,
) -> Result<bool, DbError> {
    Ok(db
        .query_opt(
            "select 1 from pg_catalog.pg_timezone_names where name = $1",
            &[&timezone.as_str()],
        )
        .await?
        .is_some())
}

/// Stores `settings` (for its company) and returns them as stored.
pub async fn store(
    db: &impl GenericClient,
    settings: &CompanySettings,
) -> Result<CompanySettings, DbError> {
    let row = db
        .query_one(
            &format!(
                "update public.company_settings \
                    set timezone = $2, reminder_lead_hours = $3, \
                        completed_task_retention_days = $4, updated_at = now() \
                  where company_id = $1 returning {COLUMNS}"
            ),
            &[
                &settings.company_id.0,
                &settings.timezone.as_str(),
                &settings.reminder_lead_hours.get(),
                &settings
                    .completed_task_retention_days
                    .map(RetentionDays::get),
            ],
        )
        .await?;
    CompanySettings::try_from(&row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timezones_are_utc_or_iana_region_names() {
        for ok in [
            "UTC",
            "Europe/Berlin",
            "America/Argentina/Buenos_Aires",
            "America/Port-au-Prince",
            "Antarctica/DumontDUrville",
        ] {
            assert!(Timezone::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "utc",
            "CET",
            "EST5EDT",
            "Etc/GMT+5",
            "US/Eastern",
            "posix/Europe/Berlin",
            "Europe",
            "Europe/",
            "Europe/Berlin/",
            "Europe/_Berlin",
            "Europe/Berlin 1",
            "Europe/A/B/C",
            "+02:00",
        ] {
            assert!(Timezone::parse(bad).is_err(), "{bad:?}");
        }
        let long = format!("Europe/{}", "a".repeat(60));
        assert!(Timezone::parse(&long).is_err());
    }

    #[test]
    fn bounded_numbers_keep_to_their_range() {
        assert!(ReminderLeadHours::parse(0).is_err());
        assert_eq!(
            ReminderLeadHours::parse(1).map(ReminderLeadHours::get),
            Ok(1)
        );
        assert_eq!(
            ReminderLeadHours::parse(168).map(ReminderLeadHours::get),
            Ok(168)
        );
        assert!(ReminderLeadHours::parse(169).is_err());
        assert!(RetentionDays::parse(6).is_err());
        assert!(RetentionDays::parse(3651).is_err());
        assert!(RetentionDays::parse(i64::MAX).is_err());
        assert_eq!(
            RetentionDays::parse(-1),
            Err(NameError("must be a whole number from 7 to 3650"))
        );
    }
}
