//! List orderings, once for every tenant list: a whitelisted sort column ([`SortColumn`]),
//! ascending or descending ([`Order`]), ties broken by the id in the same direction, nulls last
//! in both directions, and the keyset condition that starts a page after a given row
//! ([`Order::keyset_sql`]) — so a resource declares its columns and gets `ordering=` with stable
//! keyset pages, with no SQL or cursor format of its own.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use tenantry_public::db::DbError;
use tokio_postgres::types::ToSql;

/// What a sort column holds: the keyset parameter's SQL type and its text form in a cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKind {
    Time,
    Text,
    Date,
    Int,
}

impl SortKind {
    fn sql_type(self) -> &'static str {
        match self {
            Self::Time => "timestamptz",
            Self::Text => "text",
            Self::Date => "date",
            Self::Int => "bigint",
        }
    }
}

/// One row's value of a sort column; `None` is SQL null (only nullable columns have it).
#[derive(Debug, Clone, PartialEq)]
pub enum SortValue {
    Time(Option<DateTime<Utc>>),
    Text(Option<String>),
    Date(Option<NaiveDate>),
    Int(Option<i64>),
}

impl SortValue {
    pub fn kind(&self) -> SortKind {
        match self {
            Self::Time(_) => SortKind::Time,
            Self::Text(_) => SortKind::Text,
            Self::Date(_) => SortKind::Date,
            Self::Int(_) => SortKind::Int,
        }
    }

    /// A null of `kind`: the keyset parameter of a first page.
    fn null(kind: SortKind) -> Self {
        match kind {
            SortKind::Time => Self::Time(None),
            SortKind::Text => Self::Text(None),
            SortKind::Date => Self::Date(None),
            SortKind::Int => Self::Int(None),
        }
    }

    fn param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Self::Time(v) => v,
            Self::Text(v) => v,
            Self::Date(v) => v,
            Self::Int(v) => v,
        }
    }

    /// The value as a cursor carries it: RFC 3339 (UTC) for instants, `YYYY-MM-DD` for dates,
    /// decimal for numbers; `None` for null.
    pub fn to_text(&self) -> Option<String> {
        match self {
            Self::Time(t) => t.map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            Self::Text(t) => t.clone(),
            Self::Date(d) => d.map(|d| d.to_string()),
            Self::Int(n) => n.map(|n| n.to_string()),
        }
    }

    /// The inverse of [`Self::to_text`] for a column of `kind`; `None` when `text` is not one.
    pub fn from_text(kind: SortKind, text: Option<&str>) -> Option<Self> {
        let Some(text) = text else {
            return Some(Self::null(kind));
        };
        Some(match kind {
            SortKind::Time => Self::Time(Some(
                DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc),
            )),
            SortKind::Text => Self::Text(Some(text.to_owned())),
            SortKind::Date => Self::Date(Some(NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?)),
            SortKind::Int => Self::Int(Some(text.parse().ok()?)),
        })
    }
}

/// The columns a list may be ordered by: a closed set (a `text_enum!`), each with the SQL
/// expression it sorts on and what that expression holds.
pub trait SortColumn: Copy + Eq + std::fmt::Debug + 'static {
    /// Every column, in the order the API documents them.
    const ALL: &'static [Self];
    /// The spelling of `ordering=` (without `-`).
    fn as_str(self) -> &'static str;
    /// The SQL expression sorted on: a column or an expression of columns, never request text.
    fn expr(self) -> &'static str;
    fn kind(self) -> SortKind;
}

/// A list ordering: a column, ascending or descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Order<S> {
    pub sort: S,
    pub descending: bool,
}

impl<S: SortColumn> Order<S> {
    pub const fn asc(sort: S) -> Self {
        Self {
            sort,
            descending: false,
        }
    }

    pub const fn desc(sort: S) -> Self {
        Self {
            sort,
            descending: true,
        }
    }

    /// `column` or `-column` (descending), or `None` for anything else.
    pub fn parse(raw: &str) -> Option<Self> {
        let (descending, column) = match raw.strip_prefix('-') {
            Some(column) => (true, column),
            None => (false, raw),
        };
        S::ALL
            .iter()
            .find(|s| s.as_str() == column)
            .map(|&sort| Self { sort, descending })
    }

    /// This ordering as `ordering=` spells it.
    pub fn name(self) -> String {
        let sign = if self.descending { "-" } else { "" };
        format!("{sign}{}", self.sort.as_str())
    }

    /// Every spelling of `ordering=`: each column, then the same descending.
    pub fn names() -> Vec<String> {
        S::ALL
            .iter()
            .flat_map(|&s| [Self::asc(s).name(), Self::desc(s).name()])
            .collect()
    }

    /// The `where` condition that starts after the keyset position in parameters `$value` and
    /// `$id` (both null: from the start), and the `order by` list it matches.
    ///
    /// After (v, i) in "expr dir nulls last, id dir": with v null, only the remaining nulls (by
    /// id); otherwise rows past v, rows equal to v past i, and every null.
    pub fn keyset_sql(self, value: usize, id: usize) -> (String, String) {
        let expr = self.sort.expr();
        let ty = self.sort.kind().sql_type();
        let cmp = if self.descending { "<" } else { ">" };
        let condition = format!(
            "(${id}::uuid is null or case when ${value}::{ty} is null \
                then ({expr}) is null and id {cmp} ${id} \
                else ({expr}) {cmp} ${value}::{ty} \
                     or (({expr}) = ${value}::{ty} and id {cmp} ${id}) \
                     or ({expr}) is null end)"
        );
        (condition, self.order_by())
    }

    /// The `order by` list: the column in this direction with nulls last, then the id.
    pub fn order_by(self) -> String {
        let dir = if self.descending { "desc" } else { "asc" };
        format!("({}) {dir} nulls last, id {dir}", self.sort.expr())
    }

    /// The two keyset parameters for a page after `after` (the previous page's last row), or
    /// of a first page. A value that does not fit the column is the caller's bug, refused as
    /// [`DbError::Corrupt`].
    pub fn keyset_params<I>(self, after: Option<&(SortValue, I)>) -> Result<Keyset<'_, I>, DbError>
    where
        I: ToSql + Sync,
    {
        match after {
            Some((value, _)) if value.kind() != self.sort.kind() => Err(DbError::Corrupt(
                "a keyset position that does not fit the ordering".into(),
            )),
            Some((value, id)) => Ok(Keyset {
                value: Keyed::Borrowed(value),
                id: Some(id),
            }),
            None => Ok(Keyset {
                value: Keyed::Owned(SortValue::null(self.sort.kind())),
                id: None,
            }),
        }
    }
}

/// One page of a list as the domain is asked for it: the ordering, the position it starts after
/// (the previous page's last row: its sort value and id; `None` for a first page), and how many
/// rows it holds at most.
#[derive(Debug, Clone, PartialEq)]
pub struct Window<S, I> {
    pub order: Order<S>,
    pub after: Option<(SortValue, I)>,
    pub limit: i64,
}

impl<S: SortColumn, I> Window<S, I> {
    /// The first `limit` rows in `order`.
    pub fn first(order: Order<S>, limit: i64) -> Self {
        Self {
            order,
            after: None,
            limit,
        }
    }
}

/// The keyset parameters of one page (see [`Order::keyset_params`]).
pub struct Keyset<'a, I> {
    value: Keyed<'a>,
    id: Option<&'a I>,
}

enum Keyed<'a> {
    Borrowed(&'a SortValue),
    Owned(SortValue),
}

impl<I: ToSql + Sync> Keyset<'_, I> {
    /// The sort value parameter.
    pub fn value(&self) -> &(dyn ToSql + Sync) {
        match &self.value {
            Keyed::Borrowed(v) => v.param(),
            Keyed::Owned(v) => v.param(),
        }
    }

    /// The id parameter.
    pub fn id(&self) -> &(dyn ToSql + Sync) {
        &self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Col {
        Made,
        Name,
    }

    impl SortColumn for Col {
        const ALL: &'static [Self] = &[Self::Made, Self::Name];
        fn as_str(self) -> &'static str {
            match self {
                Self::Made => "created_at",
                Self::Name => "name",
            }
        }
        fn expr(self) -> &'static str {
            self.as_str()
        }
        fn kind(self) -> SortKind {
            match self {
                Self::Made => SortKind::Time,
                Self::Name => SortKind::Text,
            }
        }
    }

    #[test]
    fn every_spelling_parses_back() {
        let names = Order::<Col>::names();
        assert_eq!(names, ["created_at", "-created_at", "name", "-name"]);
        for name in &names {
            assert_eq!(
                Order::<Col>::parse(name).map(Order::name).as_ref(),
                Some(name)
            );
        }
        assert_eq!(Order::<Col>::parse("--name"), None);
        assert_eq!(Order::<Col>::parse("id"), None);
    }

    #[test]
    fn values_round_trip_through_text() {
        let values = [
            SortValue::Time(DateTime::from_timestamp_micros(1_700_000_000_123_456)),
            SortValue::Text(Some("Ünïcode, with comma".into())),
            SortValue::Date(NaiveDate::from_ymd_opt(2026, 2, 28)),
            SortValue::Date(None),
            SortValue::Int(Some(-3)),
        ];
        for v in values {
            let text = v.to_text();
            assert_eq!(SortValue::from_text(v.kind(), text.as_deref()), Some(v));
        }
        assert_eq!(SortValue::from_text(SortKind::Int, Some("x")), None);
    }

    #[test]
    fn a_position_of_another_kind_is_refused() {
        let after = (SortValue::Int(Some(1)), uuid::Uuid::nil());
        assert!(Order::asc(Col::Name).keyset_params(Some(&after)).is_err());
        assert!(Order::asc(Col::Name)
            .keyset_params::<uuid::Uuid>(None)
            .is_ok());
    }
}
