//! Billing history (`public.invoices`, public V8): the invoices the billing provider reported
//! paid, one row per provider invoice id, listed newest first in keyset pages.

use chrono::{DateTime, Utc};
use tokio_postgres::{GenericClient, Row};

use crate::db::DbError;
use crate::ids::CompanyId;
use crate::pagination::Page;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    /// The provider's invoice id (`in_…`).
    pub id: String,
    pub amount_paid_cents: i64,
    pub currency: String,
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: Option<DateTime<Utc>>,
    pub paid_at: DateTime<Utc>,
    pub hosted_invoice_url: Option<String>,
}

impl TryFrom<&Row> for Invoice {
    type Error = DbError;

    fn try_from(row: &Row) -> Result<Self, DbError> {
        Ok(Self {
            id: row.try_get(0)?,
            amount_paid_cents: row.try_get(1)?,
            currency: row.try_get(2)?,
            period_start: row.try_get(3)?,
            period_end: row.try_get(4)?,
            paid_at: row.try_get(5)?,
            hosted_invoice_url: row.try_get(6)?,
        })
    }
}

impl Invoice {
    /// The keyset position of this invoice in the list: (paid at, id).
    pub fn key(&self) -> (DateTime<Utc>, String) {
        (self.paid_at, self.id.clone())
    }
}

/// `company`'s invoices, newest paid first (ties by id, descending), after the position `after`.
pub async fn list(
    db: &impl GenericClient,
    company: CompanyId,
    after: Option<&(DateTime<Utc>, String)>,
    limit: i64,
) -> Result<Page<Invoice>, DbError> {
    let (at, id) = match after {
        Some((at, id)) => (Some(*at), Some(id.as_str())),
        None => (None, None),
    };
    let rows = db
        .query(
            "select id, amount_paid_cents, currency, period_start, period_end, paid_at, \
                    hosted_invoice_url \
               from public.invoices \
              where company_id = $1 \
                and ($2::timestamptz is null or (paid_at, id) < ($2, $3::text)) \
              order by paid_at desc, id desc limit $4",
            &[&company, &at, &id, &Page::<Invoice>::fetch_limit(limit)],
        )
        .await?;
    Page::from_rows(&rows, limit, |r| Invoice::try_from(r))
}
