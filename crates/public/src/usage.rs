//! API usage per company: requests counted by the HTTP rate limiter, per UTC hour and calendar
//! month, in `public.usage_counters`.
//!
//! The server counts each admitted request in Redis (one hash of pending counts, fields named by
//! [`Count::field`]); the worker moves those counts here in batches ([`add_batch`]), so usage
//! survives a Redis restart. [`requests_used`] is what a subscription page shows: the figures as
//! of the last flush (the worker flushes every `WORKER_USAGE_FLUSH_SECS`, default 60 s). This
//! module knows nothing of Redis: the pending-hash field format is plain text, shared by the
//! writer (the server) and the reader (the worker) through [`Count`]. Time is always a
//! parameter, never read here.

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use tokio_postgres::GenericClient;

use crate::db::DbError;
use crate::CompanyId;

crate::text_enum! {
    /// The length of a usage period.
    pub enum Granularity {
        Hour = "hour",
        Month = "month",
    }
}

/// The Redis hash of counts not yet flushed, for a server's `REDIS_PREFIX` (equal to the
/// worker's `WORKER_QUEUE_PREFIX`). Only the name: this crate has no Redis client.
pub fn pending_key(prefix: &str) -> String {
    format!("{prefix}:usage:pending")
}

/// The first instant of the UTC hour `at` is in.
pub fn hour_start(at: DateTime<Utc>) -> DateTime<Utc> {
    at.with_nanosecond(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_minute(0))
        .unwrap_or(at)
}

/// The first instant of the UTC calendar month `at` is in.
pub fn month_start(at: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(at.year(), at.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(at)
}

/// The start of the period of `granularity` that `at` is in.
pub fn period_start(granularity: Granularity, at: DateTime<Utc>) -> DateTime<Utc> {
    match granularity {
        Granularity::Hour => hour_start(at),
        Granularity::Month => month_start(at),
    }
}

/// Requests a company made in one period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    pub company: CompanyId,
    pub granularity: Granularity,
    pub period_start: DateTime<Utc>,
    pub requests: i64,
}

impl Count {
    /// The pending-hash field for `company`'s period of `granularity` containing `at`:
    /// `{company uuid}|{hour|month}|{period start, unix seconds}`.
    pub fn field(company: CompanyId, granularity: Granularity, at: DateTime<Utc>) -> String {
        format!(
            "{}|{}|{}",
            company.0,
            granularity.as_str(),
            period_start(granularity, at).timestamp()
        )
    }

    /// Reads a pending-hash field and its count back; `None` for anything
    /// [`field`](Self::field) does not write (the caller logs and drops it).
    pub fn parse(field: &str, requests: i64) -> Option<Self> {
        let mut parts = field.split('|');
        let company = CompanyId(parts.next()?.parse::<uuid::Uuid>().ok()?);
        let granularity = Granularity::parse(parts.next()?).ok()?;
        let start = DateTime::from_timestamp(parts.next()?.parse().ok()?, 0)?;
        if parts.next().is_some() || requests < 0 || period_start(granularity, start) != start {
            return None;
        }
        Some(Self {
            company,
            granularity,
            period_start: start,
            requests,
        })
    }
}

/// A company's requests in the current hour and the current calendar month (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestUsage {
    pub this_hour: i64,
    pub this_month: i64,
}

/// Requests `company` made in the hour and the month containing `at`, as flushed so far (the
/// counts of the last `WORKER_USAGE_FLUSH_SECS` may still be pending in Redis). Zero for periods
/// without a row.
pub async fn requests_used(
    db: &impl GenericClient,
    company: CompanyId,
    at: DateTime<Utc>,
) -> Result<RequestUsage, DbError> {
    let row = db
        .query_one(
            "select \
               coalesce(sum(requests) filter (where granularity = 'hour' and period_start = $2), 0)::bigint, \
               coalesce(sum(requests) filter (where granularity = 'month' and period_start = $3), 0)::bigint \
             from public.usage_counters \
             where company_id = $1 and period_start in ($2, $3)",
            &[&company, &hour_start(at), &month_start(at)],
        )
        .await?;
    Ok(RequestUsage {
        this_hour: row.try_get(0)?,
        this_month: row.try_get(1)?,
    })
}

/// Adds one batch of counts, once: `batch` names it, and a batch already added answers `false`
/// and adds nothing (a retry after the worker died before it could forget the batch). Counts of
/// companies that no longer exist are dropped. Runs in one transaction.
pub async fn add_batch(
    db: &mut tokio_postgres::Client,
    batch: &str,
    counts: &[Count],
) -> Result<bool, DbError> {
    let tx = db.transaction().await?;
    let fresh = tx
        .execute(
            "insert into public.usage_flushes (batch) values ($1) on conflict do nothing",
            &[&batch],
        )
        .await?
        == 1;
    if fresh && !counts.is_empty() {
        let companies: Vec<CompanyId> = counts.iter().map(|c| c.company).collect();
        let granularities: Vec<&str> = counts.iter().map(|c| c.granularity.as_str()).collect();
        let starts: Vec<DateTime<Utc>> = counts.iter().map(|c| c.period_start).collect();
        let requests: Vec<i64> = counts.iter().map(|c| c.requests).collect();
        tx.execute(
            "insert into public.usage_counters (company_id, granularity, period_start, requests) \
             select u.company_id, u.granularity, u.period_start, sum(u.requests) \
               from unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::bigint[]) \
                      as u(company_id, granularity, period_start, requests) \
               join public.companies c on c.id = u.company_id \
              group by 1, 2, 3 \
             on conflict (company_id, granularity, period_start) \
             do update set requests = public.usage_counters.requests + excluded.requests",
            &[&companies, &granularities, &starts, &requests],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(fresh)
}

/// Deletes hourly counts of hours that started before `before` and batch records older than
/// `before` (monthly counts are kept).
pub async fn forget_before(db: &impl GenericClient, before: DateTime<Utc>) -> Result<u64, DbError> {
    let hours = db
        .execute(
            "delete from public.usage_counters where granularity = 'hour' and period_start < $1",
            &[&before],
        )
        .await?;
    db.execute(
        "delete from public.usage_flushes where flushed_at < $1",
        &[&before],
    )
    .await?;
    Ok(hours)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_name_their_period() {
        let at = Utc
            .with_ymd_and_hms(2026, 12, 7, 14, 35, 12)
            .single()
            .unwrap_or_default();
        let company = CompanyId(uuid::Uuid::nil());
        let hour = Count::field(company, Granularity::Hour, at);
        let month = Count::field(company, Granularity::Month, at);
        let h = Count::parse(&hour, 7).expect("hour field");
        let m = Count::parse(&month, 9).expect("month field");
        assert_eq!(h.period_start.to_rfc3339(), "2026-12-07T14:00:00+00:00");
        assert_eq!(m.period_start.to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!((h.requests, m.granularity), (7, Granularity::Month));
        assert_eq!(Count::parse("x|hour|0", 1), None);
        assert_eq!(Count::parse(&format!("{hour}|extra"), 1), None);
        assert_eq!(Count::parse(&hour, -1), None);
        // A start that is not the start of its period was never written by `field`.
        let odd = format!("{}|hour|{}", uuid::Uuid::nil(), at.timestamp());
        assert_eq!(Count::parse(&odd, 1), None);
    }
}
