//! Emails as data. Writers call [`enqueue`] inside the transaction of the change that causes the
//! email (an outbox row); after commit the API hands the row to the worker's queue, and the worker
//! renders and sends it. Nothing here sends anything.

use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient;

use crate::db::DbError;

/// One email to send. `link` values are complete URLs built by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Email {
    /// Confirm the address of an account (signup, invitation, added by an admin).
    VerifyEmail {
        to: String,
        full_name: String,
        link: String,
    },
    /// A password-reset link.
    PasswordReset { to: String, link: String },
    /// An invitation to join an organization.
    Invitation {
        to: String,
        organization: String,
        invited_by: String,
        role: String,
        link: String,
    },
    /// A reminder about a task, to its assignee; `link` opens the task.
    TaskReminder {
        to: String,
        organization: String,
        /// Who asked for the reminder (their name, or their email without one).
        sent_by: String,
        task_title: String,
        project: String,
        /// When the task is due, in the organization's time zone (`2026-05-01 17:00
        /// (Europe/Berlin)`); none for a task without a due date.
        due: Option<String>,
        link: String,
    },
    /// The worker's reminder to a task's assignee that the task is due soon (within the
    /// organization's reminder lead time).
    TaskDue {
        to: String,
        organization: String,
        task_title: String,
        project: String,
        /// In the organization's time zone, as in [`Email::TaskReminder`].
        due: String,
        link: String,
    },
    /// The worker's daily list of overdue tasks: to an assignee, their own tasks
    /// (`lead: false`); to a project lead, the overdue tasks of the projects they lead
    /// (`lead: true`, each with its assignee).
    OverdueDigest {
        to: String,
        organization: String,
        /// The organization's local date the digest is for (`2026-05-01`).
        date: String,
        lead: bool,
        tasks: Vec<OverdueTask>,
    },
    /// Welcome to an organization, once per membership (signup, added by an admin, invitation
    /// accepted): written in the transaction that creates the membership.
    Welcome {
        to: String,
        full_name: String,
        organization: String,
        role: String,
    },
    /// A project report the recipient asked for is ready; `link` opens it.
    ReportReady {
        to: String,
        organization: String,
        project: String,
        /// When the report and its download stop being available (RFC 3339).
        expires_at: String,
        link: String,
    },
    /// A change to the organization's subscription, to its owner: `what` says what happened
    /// (one sentence); `link` opens the billing page.
    SubscriptionNotice {
        to: String,
        organization: String,
        what: String,
        link: String,
    },
    /// The owner deleted the organization: it is suspended, and dropped with all its data at
    /// `drop_after` (RFC 3339) unless an operator restores it before then.
    OrganizationDeleted {
        to: String,
        organization: String,
        drop_after: String,
    },
    /// An operator restored the organization its owner had deleted: it is active again.
    OrganizationRestored { to: String, organization: String },
}

/// One task in an [`Email::OverdueDigest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverdueTask {
    pub title: String,
    pub project: String,
    /// Whole days between the local date it was due and the digest's date (0: due earlier
    /// that day).
    pub days_overdue: i32,
    /// Who it is assigned to (name, or email without one); in a lead's digest only.
    pub assignee: Option<String>,
    pub link: String,
}

impl Email {
    pub fn to(&self) -> &str {
        match self {
            Self::VerifyEmail { to, .. }
            | Self::PasswordReset { to, .. }
            | Self::Invitation { to, .. }
            | Self::TaskReminder { to, .. }
            | Self::TaskDue { to, .. }
            | Self::OverdueDigest { to, .. }
            | Self::Welcome { to, .. }
            | Self::ReportReady { to, .. }
            | Self::SubscriptionNotice { to, .. }
            | Self::OrganizationDeleted { to, .. }
            | Self::OrganizationRestored { to, .. } => to,
        }
    }
}

pub use crate::ids::OutboxId;

/// The owner of `company` (email) and the company's name: who subscription notices go to.
pub async fn owner_of(
    db: &impl GenericClient,
    company: crate::CompanyId,
) -> Result<(String, String), DbError> {
    let row = db
        .query_opt(
            "select u.email, c.name from public.memberships m \
               join public.users u on u.id = m.user_id \
               join public.companies c on c.id = m.company_id \
              where m.company_id = $1 and m.role = 'owner'",
            &[&company],
        )
        .await?
        .ok_or_else(|| DbError::Corrupt(format!("company {company} has no owner")))?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

/// Writes `email` to the outbox on `db` (call it inside the transaction of the change).
pub async fn enqueue(db: &impl GenericClient, email: &Email) -> Result<OutboxId, DbError> {
    let payload = serde_json::to_value(email)
        .map_err(|e| DbError::Corrupt(format!("an email that does not serialise: {e}")))?;
    let row = db
        .query_one(
            "insert into public.outbox (payload) values ($1) returning id",
            &[&payload],
        )
        .await?;
    Ok(OutboxId(row.get(0)))
}

/// The job the API pushes after commit and the worker runs: deliver outbox row `outbox_id`.
/// A plain serde type, so the API and the worker share it without knowing each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deliver {
    pub outbox_id: i64,
}

/// The apalis queue (Redis) that carries [`Deliver`] jobs: `{prefix}:jobs:mail`.
pub fn queue_name(prefix: &str) -> String {
    format!("{prefix}:jobs:mail")
}

/// Locks outbox row `id` for delivery inside the caller's transaction. `None` when it was already
/// delivered, does not exist, or another worker holds it right now (`skip locked`): the caller
/// then has nothing to do.
pub async fn claim(db: &impl GenericClient, id: OutboxId) -> Result<Option<Email>, DbError> {
    let Some(row) = db
        .query_opt(
            "select payload from public.outbox \
              where id = $1 and dispatched_at is null for update skip locked",
            &[&id.0],
        )
        .await?
    else {
        return Ok(None);
    };
    let payload: serde_json::Value = row.get(0);
    serde_json::from_value(payload)
        .map(Some)
        .map_err(|e| DbError::Corrupt(format!("outbox row {id} is not an email: {e}")))
}

/// Marks a claimed row delivered (same transaction as [`claim`]) and empties its payload down to
/// its kind and recipient: the link's single-use token is in the inbox now and must not stay at
/// rest in the database.
pub async fn mark_dispatched(db: &impl GenericClient, id: OutboxId) -> Result<(), DbError> {
    db.execute(
        "update public.outbox set dispatched_at = now(), attempts = attempts + 1, last_error = null, \
                payload = jsonb_build_object('kind', payload->'kind', 'to', payload->'to') \
          where id = $1",
        &[&id.0],
    )
    .await?;
    Ok(())
}

/// How long outbox rows are kept: a delivered row (already emptied) for operators to see, an
/// undelivered one for retries. Every link in a mail has expired by then.
pub const OUTBOX_RETENTION_DAYS: i32 = 7;

/// Deletes outbox rows older than [`OUTBOX_RETENTION_DAYS`], delivered or not; answers
/// (delivered, undelivered) counts.
pub async fn prune(db: &impl GenericClient) -> Result<(u64, u64), DbError> {
    prune_at(db, chrono::Utc::now()).await
}

/// [`prune`] as of `now`.
pub async fn prune_at(
    db: &impl GenericClient,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(u64, u64), DbError> {
    let row = db
        .query_one(
            "with gone as ( \
               delete from public.outbox \
                where created_at < $2::timestamptz - make_interval(days => $1) \
               returning dispatched_at is not null as delivered) \
             select count(*) filter (where delivered), count(*) filter (where not delivered) \
               from gone",
            &[&OUTBOX_RETENTION_DAYS, &now],
        )
        .await?;
    let (delivered, undelivered): (i64, i64) = (row.get(0), row.get(1));
    Ok((delivered.unsigned_abs(), undelivered.unsigned_abs()))
}

/// Records a failed delivery attempt (outside the claim's transaction, which rolls back).
pub async fn record_failure(
    db: &impl GenericClient,
    id: OutboxId,
    error: &str,
) -> Result<(), DbError> {
    db.execute(
        "update public.outbox set attempts = attempts + 1, last_error = $2 \
          where id = $1 and dispatched_at is null",
        &[&id.0, &error],
    )
    .await?;
    Ok(())
}

/// Undelivered rows older than `older_than_secs`, oldest first: what the worker's sweep re-queues
/// (a push the API could not make, or a delivery that failed).
pub async fn undelivered(
    db: &impl GenericClient,
    older_than_secs: f64,
    limit: i64,
) -> Result<Vec<OutboxId>, DbError> {
    Ok(db
        .query(
            "select id from public.outbox \
              where dispatched_at is null and created_at < now() - make_interval(secs => $1) \
              order by id limit $2",
            &[&older_than_secs, &limit],
        )
        .await?
        .iter()
        .map(|r| OutboxId(r.get(0)))
        .collect())
}
