//! The worker's emails about tasks, as periodic tenant jobs ([`TenantWork`]): the reminder to an
//! assignee that a task is due soon ([`DueReminders`], every tick) and the daily digest of
//! overdue tasks at 08:00 in the organization's time zone ([`run_overdue_digest`]).
//!
//! Exactly once, however many workers run them: the run is claimed in `public.job_runs`, and
//! every email's `notifications` row is inserted (`on conflict do nothing`) in the transaction
//! that writes the email to `public.outbox`, so an email is queued only by the transaction that
//! inserted its row. A retried, repeated or concurrent run finds the rows and sends nothing.

use chrono::{DateTime, NaiveDate, NaiveTime, SecondsFormat, Utc};
use serde::Serialize;
use tenantry_public::db::{Db, DbError};
use tenantry_public::links::Links;
use tenantry_public::mail::{self, Email, OutboxId, OverdueTask};
use tenantry_public::{CompanyId, Origin, Slug, UserId};

use crate::binding::{TenantDb, TenantTx};
use crate::ids::{NotificationId, TaskId};
use crate::jobs::{run_for_tenant, TenantRun, TenantWork};
use crate::notifications::NotificationKind;
use deadpool_postgres::GenericClient;

/// The job name of the due reminders (one run per tenant per tick).
pub const DUE_REMINDERS: &str = "reminders.due";
/// The job name of the overdue digest (one run per tenant per local day).
pub const OVERDUE_DIGEST: &str = "reminders.overdue";

/// The local time from which an organization's overdue digest of the day goes out.
pub const DIGEST_TIME: NaiveTime = match NaiveTime::from_hms_opt(8, 0, 0) {
    Some(t) => t,
    None => panic!("08:00 is a time"),
};

/// The period of a due-reminder run for the tick at `at` (`2026-05-01T13:15:00Z`): the
/// scheduled instant of the tick, the same on every worker that fires it.
pub fn due_period(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// What an email needs to know about the organization.
struct Organization {
    name: String,
    host: String,
    timezone: String,
    lead_hours: i32,
}

async fn organization(
    db: &impl TenantDb,
    company: CompanyId,
    links: &Links,
) -> Result<Organization, DbError> {
    let row = db
        .client()
        .query_opt(
            "select c.name, c.slug, d.domain, s.timezone, s.reminder_lead_hours \
               from public.companies c \
               join public.company_settings s on s.company_id = c.id \
               left join public.domains d on d.company_id = c.id and d.is_primary \
              where c.id = $1",
            &[&company],
        )
        .await?
        .ok_or_else(|| DbError::Corrupt(format!("company {company} vanished during its job")))?;
    let slug: String = row.try_get(1)?;
    let slug = Slug::parse(&slug)
        .map_err(|e| DbError::Corrupt(format!("companies.slug {slug:?} {}", e.0)))?;
    let domain: Option<String> = row.try_get(2)?;
    Ok(Organization {
        name: row.try_get(0)?,
        host: links.tenant_host(&slug, domain.as_deref()),
        timezone: row.try_get(3)?,
        lead_hours: row.try_get(4)?,
    })
}

/// Writes the notification row of one email unless it exists: `true` when this caller wrote it
/// (and so must queue the email in the same transaction).
async fn record(
    db: &impl TenantDb,
    task: TaskId,
    kind: NotificationKind,
    recipient: UserId,
    period_key: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbError> {
    Ok(db
        .client()
        .query_opt(
            "insert into notifications (id, task_id, kind, recipient_id, period_key, sent_at) \
             values ($1, $2, $3, $4, $5, $6) \
             on conflict on constraint notifications_once do nothing returning id",
            &[
                &NotificationId::new(),
                &task,
                &kind,
                &recipient,
                &period_key,
                &now,
            ],
        )
        .await?
        .is_some())
}

/// Reminds each assignee of their open tasks due within the organization's
/// `reminder_lead_hours` after the run's `now` (due exactly at `now` or earlier: too late for a
/// reminder; the overdue digest has them), once per task, due instant and assignee: the
/// notification's period key is `{due_at}/{assignee}`, so a task given another due date or
/// assignee is reminded again, and a reminder for what it no longer is never goes out (the
/// task no longer matches). Only active members of the organization with active accounts are
/// reminded; done, cancelled and unassigned tasks never.
#[derive(Debug, Clone)]
pub struct DueReminders {
    pub links: Links,
}

/// What one due-reminder run sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DueRemindersOutcome {
    pub reminders: u64,
    /// The emails' outbox rows, for the worker to queue for delivery once the run committed
    /// (not part of the recorded outcome).
    #[serde(skip)]
    pub outbox: Vec<OutboxId>,
}

/// Tasks to remind: the key is computed here once, so the `not exists` and the insert agree.
/// The task rows are locked (`no key update`, which inserting their notifications does not
/// conflict with) so that a due date changed meanwhile is re-read before the email is written.
const DUE_SQL: &str = "select t.id, t.title, p.name, t.assignee_id, u.email, \
        to_char(t.due_at at time zone $4::text, 'YYYY-MM-DD HH24:MI') || ' (' || $4::text || ')', \
        k.period_key \
   from tasks t \
   join projects p on p.id = t.project_id \
   join public.memberships m on m.user_id = t.assignee_id and m.company_id = $1 and m.is_active \
   join public.users u on u.id = t.assignee_id and u.is_active \
   cross join lateral (select to_char(t.due_at at time zone 'UTC', \
                                      'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') \
                              || '/' || t.assignee_id::text as period_key) k \
  where t.status not in ('done', 'cancelled') \
    and t.due_at > $2 and t.due_at <= $2 + make_interval(hours => $3) \
    and not exists (select 1 from notifications n \
                     where n.task_id = t.id and n.kind = 'due_reminder' \
                       and n.period_key = k.period_key) \
  order by t.due_at, t.id \
    for no key update of t";

impl TenantWork for DueReminders {
    const JOB: &'static str = DUE_REMINDERS;
    type Outcome = DueRemindersOutcome;

    async fn run(
        &self,
        tx: &TenantTx<'_>,
        company: CompanyId,
        _origin: &Origin,
        now: DateTime<Utc>,
    ) -> Result<DueRemindersOutcome, DbError> {
        let org = organization(tx, company, &self.links).await?;
        let rows = tx
            .client()
            .query(DUE_SQL, &[&company, &now, &org.lead_hours, &org.timezone])
            .await?;
        let mut outcome = DueRemindersOutcome::default();
        for row in &rows {
            let task: TaskId = row.try_get(0)?;
            let assignee: UserId = row.try_get(3)?;
            let key: String = row.try_get(6)?;
            if !record(tx, task, NotificationKind::DueReminder, assignee, &key, now).await? {
                continue;
            }
            let queued = mail::enqueue(
                &**tx.client(),
                &Email::TaskDue {
                    to: row.try_get(4)?,
                    organization: org.name.clone(),
                    task_title: row.try_get(1)?,
                    project: row.try_get(2)?,
                    due: row.try_get(5)?,
                    link: self.links.task(&org.host, task),
                },
            )
            .await?;
            outcome.outbox.push(queued);
            outcome.reminders += 1;
        }
        Ok(outcome)
    }
}

/// The local date whose overdue digest is due at `now` for `company`: its date in the
/// organization's time zone once the local time is [`DIGEST_TIME`] or later, and `None` before
/// (and for a company that is gone), so a tick before 08:00 local claims nothing.
pub async fn overdue_day(
    db: &impl tokio_postgres::GenericClient,
    company: CompanyId,
    now: DateTime<Utc>,
) -> Result<Option<NaiveDate>, DbError> {
    let row = db
        .query_opt(
            "select ($2::timestamptz at time zone timezone) \
               from public.company_settings where company_id = $1",
            &[&company, &now],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let local: chrono::NaiveDateTime = row.try_get(0)?;
    Ok((local.time() >= DIGEST_TIME).then(|| local.date()))
}

/// One organization's overdue digest of one local day: each active assignee gets one email
/// listing their open tasks due before `now`, and each active lead of a project gets one email
/// listing the overdue open tasks of the projects they lead (assigned or not). Notification
/// period keys: `{date}` for an assignee's (per task), `{date}/lead/{lead}` for a lead's.
struct OverdueDay<'a> {
    links: &'a Links,
    date: NaiveDate,
}

/// What one organization's digest of a day found and sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OverdueOutcome {
    /// The organization's local date.
    pub date: String,
    /// Open tasks due before the run, assigned or not.
    pub overdue_tasks: u64,
    /// Emails queued: `digests` + `lead_summaries`.
    pub emails: u64,
    pub digests: u64,
    pub lead_summaries: u64,
    /// The emails' outbox rows, for the worker to queue for delivery once the run committed
    /// (not part of the recorded outcome).
    #[serde(skip)]
    pub outbox: Vec<OutboxId>,
}

/// The assignees' overdue tasks; `$3` the local date, `$4` the time zone.
const ASSIGNEE_SQL: &str = "select t.assignee_id, u.email, t.id, t.title, p.name, \
        ($3::date - (t.due_at at time zone $4::text)::date)::int \
   from tasks t \
   join projects p on p.id = t.project_id \
   join public.memberships m on m.user_id = t.assignee_id and m.company_id = $1 and m.is_active \
   join public.users u on u.id = t.assignee_id and u.is_active \
  where t.status not in ('done', 'cancelled') and t.due_at < $2 \
  order by t.assignee_id, t.due_at, t.id";

/// The project leads' overdue tasks (every project they lead, whoever the assignee).
const LEAD_SQL: &str = "select pm.user_id, u.email, t.id, t.title, p.name, \
        ($3::date - (t.due_at at time zone $4::text)::date)::int, \
        coalesce(nullif(btrim(a.full_name), ''), a.email, 'nobody') \
   from project_members pm \
   join public.memberships m on m.user_id = pm.user_id and m.company_id = $1 and m.is_active \
   join public.users u on u.id = pm.user_id and u.is_active \
   join projects p on p.id = pm.project_id \
   join tasks t on t.project_id = p.id \
   left join public.users a on a.id = t.assignee_id \
  where pm.role = 'lead' and t.status not in ('done', 'cancelled') and t.due_at < $2 \
  order by pm.user_id, p.name, t.due_at, t.id";

impl TenantWork for OverdueDay<'_> {
    const JOB: &'static str = OVERDUE_DIGEST;
    type Outcome = OverdueOutcome;

    async fn run(
        &self,
        tx: &TenantTx<'_>,
        company: CompanyId,
        _origin: &Origin,
        now: DateTime<Utc>,
    ) -> Result<OverdueOutcome, DbError> {
        let org = organization(tx, company, self.links).await?;
        let client = tx.client();
        let overdue: i64 = client
            .query_one(
                "select count(*) from tasks \
                  where status not in ('done', 'cancelled') and due_at < $1",
                &[&now],
            )
            .await?
            .try_get(0)?;
        let date = self.date.to_string();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
            [&company, &now, &self.date, &org.timezone];
        let mut outcome = OverdueOutcome {
            date: date.clone(),
            overdue_tasks: overdue.unsigned_abs(),
            ..OverdueOutcome::default()
        };
        for lead in [false, true] {
            let sql = if lead { LEAD_SQL } else { ASSIGNEE_SQL };
            let rows = client.query(sql, &params).await?;
            // Rows come grouped by recipient: one email per group, listing the tasks whose
            // notification row this run wrote.
            let mut at = 0;
            while at < rows.len() {
                let recipient: UserId = rows[at].try_get(0)?;
                let to: String = rows[at].try_get(1)?;
                let key = if lead {
                    format!("{date}/lead/{recipient}")
                } else {
                    date.clone()
                };
                let mut tasks = Vec::new();
                while at < rows.len() && rows[at].try_get::<_, UserId>(0)? == recipient {
                    let row = &rows[at];
                    at += 1;
                    let task: TaskId = row.try_get(2)?;
                    let kind = NotificationKind::OverdueDigest;
                    if !record(tx, task, kind, recipient, &key, now).await? {
                        continue;
                    }
                    tasks.push(OverdueTask {
                        title: row.try_get(3)?,
                        project: row.try_get(4)?,
                        days_overdue: row.try_get(5)?,
                        assignee: if lead { Some(row.try_get(6)?) } else { None },
                        link: self.links.task(&org.host, task),
                    });
                }
                if tasks.is_empty() {
                    continue;
                }
                let queued = mail::enqueue(
                    &**client,
                    &Email::OverdueDigest {
                        to,
                        organization: org.name.clone(),
                        date: date.clone(),
                        lead,
                        tasks,
                    },
                )
                .await?;
                outcome.outbox.push(queued);
                outcome.emails += 1;
                if lead {
                    outcome.lead_summaries += 1;
                } else {
                    outcome.digests += 1;
                }
            }
        }
        Ok(outcome)
    }
}

/// How an overdue-digest tick went for one tenant.
#[derive(Debug, Clone, PartialEq)]
pub enum OverdueRun {
    /// Before [`DIGEST_TIME`] in the organization's time zone (or the company is gone): nothing
    /// claimed, so a later tick of the same local day runs it.
    NotYet,
    /// The day's run (period: the local date) as [`run_for_tenant`] answered it.
    Day(NaiveDate, TenantRun<OverdueOutcome>),
}

/// The overdue digest of `company` at `now`: once the organization's local time has reached
/// [`DIGEST_TIME`], its local date's run (job [`OVERDUE_DIGEST`], period `2026-05-01`) is
/// claimed and run once; before that, nothing is claimed. Organizations in different time zones
/// therefore each get one run per local day, whenever the ticks fall.
pub async fn run_overdue_digest(
    db: &Db,
    links: &Links,
    company: CompanyId,
    now: DateTime<Utc>,
) -> Result<OverdueRun, DbError> {
    let day = overdue_day(db.public().await?.client(), company, now).await?;
    let Some(date) = day else {
        return Ok(OverdueRun::NotYet);
    };
    let work = OverdueDay { links, date };
    let ran = run_for_tenant(db, &work, company, &date.to_string(), now).await?;
    Ok(OverdueRun::Day(date, ran))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_periods_are_the_ticks_instant() {
        let at = DateTime::parse_from_rfc3339("2026-05-01T13:15:00.250+02:00")
            .map(|t| t.with_timezone(&Utc))
            .ok();
        assert_eq!(at.map(due_period).as_deref(), Some("2026-05-01T11:15:00Z"));
    }
}
