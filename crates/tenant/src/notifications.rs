//! Emails sent about tasks (`notifications`, tenant migration V9): one row per email, written in
//! the transaction that puts the email in `public.outbox`, so the row exists exactly when the
//! email was queued. The row's `(task, kind, period key)` is unique: whatever sends a kind of
//! notification once per period (a manual reminder per hour, the worker's due reminder per due
//! date, its digest per day) can run twice and still send once.
//!
//! A manual reminder ([`remind`]) locks the task row first, so of two concurrent reminders the
//! second waits, then sees the first one's row and is refused.

use chrono::{DateTime, Utc};
use serde_json::json;
use tenantry_public::db::{DbError, OnConstraint};
use tenantry_public::mail::{self, Email, OutboxId};
use tenantry_public::memberships::Role;
use tenantry_public::UserId;

use crate::audit::{Acting, Action, Entry};
use crate::binding::{TenantConn, TenantDb};
use crate::ids::{NotificationId, TaskId};
use crate::rows;
use crate::tasks::{Task, TaskStatus};
use deadpool_postgres::GenericClient;

tenantry_public::text_enum! {
    /// Why an email about a task was sent.
    pub enum NotificationKind {
        /// Someone asked for it (`POST /tasks/{id}/remind`).
        ManualReminder = "manual_reminder",
        /// The worker: the task is due within the organization's reminder lead time.
        DueReminder = "due_reminder",
        /// The worker: the task is in the assignee's daily digest of overdue tasks.
        OverdueDigest = "overdue_digest",
    }
}

/// How long after a manual reminder the next one for the same task may be sent.
pub const MANUAL_REMINDER_INTERVAL_SECS: i64 = 3600;

/// A reminder that was queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reminder {
    pub id: NotificationId,
    pub task_id: TaskId,
    /// The assignee.
    pub recipient_id: UserId,
    /// The address it goes to.
    pub email: String,
    pub sent_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum NotificationError {
    #[error("no such task in this organization")]
    NotFound,
    /// Neither an admin or owner of the organization nor the task's creator.
    #[error("only the task's creator, admins and owners may send a reminder about it")]
    NotAllowed,
    /// Done or cancelled: there is nothing to be reminded of.
    #[error("the task is {0}")]
    Closed(TaskStatus),
    #[error("the task has no assignee")]
    Unassigned,
    #[error("the assignee is not an active member of this organization")]
    AssigneeNotMember,
    /// A manual reminder about this task went out less than an hour ago.
    #[error("a reminder about this task was sent less than an hour ago")]
    TooSoon {
        /// Seconds until the next one may be sent (at least 1).
        retry_after: u64,
    },
    #[error(transparent)]
    Db(#[from] DbError),
}

/// What the reminder email says besides the task's own title.
const EMAIL_FACTS: &str = "select p.name, c.name, u.email, \
        to_char(t.due_at at time zone s.timezone, 'YYYY-MM-DD HH24:MI') || ' (' || s.timezone || ')', \
        coalesce(nullif(btrim(sender.full_name), ''), sender.email, '') \
   from tasks t \
   join projects p on p.id = t.project_id \
   join public.users u on u.id = t.assignee_id \
   join public.companies c on c.id = $2 \
   join public.company_settings s on s.company_id = c.id \
   left join public.users sender on sender.id = $3 \
  where t.id = $1";

/// Sends the task's assignee a reminder now: writes a `manual_reminder` notification and the
/// email (with `link(task)`, the task's page) to the outbox, audited as `task.reminded`, all in
/// one transaction under the task's row lock. Allowed for admins and owners (by `role`, the
/// caller's role as the request carries it) and for the task's creator; at most once an hour per
/// task.
pub async fn remind(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    role: Role,
    id: TaskId,
    link: impl FnOnce(TaskId) -> String,
) -> Result<(Reminder, OutboxId), NotificationError> {
    let tx = conn.transaction().await?;
    let task = rows::try_lock::<Task>(&tx, &id)
        .await?
        .ok_or(NotificationError::NotFound)?;
    if !role.at_least(Role::Admin) && task.created_by != acting.user {
        return Err(NotificationError::NotAllowed);
    }
    if !task.status.is_open() {
        return Err(NotificationError::Closed(task.status));
    }
    let assignee = task.assignee_id.ok_or(NotificationError::Unassigned)?;
    if !crate::teams::is_active_member(&tx, acting.company, assignee).await? {
        return Err(NotificationError::AssigneeNotMember);
    }
    let client = tx.client();
    if let Some(row) = client
        .query_opt(
            "select greatest(1, ceil(extract(epoch from \
                    max(sent_at) + make_interval(secs => $3) - clock_timestamp())))::bigint \
               from notifications where task_id = $1 and kind = $2 \
             having max(sent_at) > clock_timestamp() - make_interval(secs => $3)",
            &[
                &id,
                &NotificationKind::ManualReminder,
                &(MANUAL_REMINDER_INTERVAL_SECS as f64),
            ],
        )
        .await
        .map_err(DbError::from)?
    {
        let retry_after: i64 = row.try_get(0).map_err(DbError::from)?;
        return Err(NotificationError::TooSoon {
            retry_after: retry_after.unsigned_abs(),
        });
    }
    let facts = client
        .query_one(EMAIL_FACTS, &[&id, &acting.company, &acting.user])
        .await
        .map_err(DbError::from)?;
    let (project, organization, email, due, sent_by): (
        String,
        String,
        String,
        Option<String>,
        String,
    ) = (
        facts.try_get(0).map_err(DbError::from)?,
        facts.try_get(1).map_err(DbError::from)?,
        facts.try_get(2).map_err(DbError::from)?,
        facts.try_get(3).map_err(DbError::from)?,
        facts.try_get(4).map_err(DbError::from)?,
    );
    let notification = NotificationId::new();
    // The period is the UTC hour: an hour apart, two reminders always fall in different hours,
    // so the unique key only ever refuses a second send of the same reminder.
    let row = client
        .query_one(
            "insert into notifications (id, task_id, kind, recipient_id, period_key, sent_by) \
             values ($1, $2, $3, $4, to_char(now() at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24'), $5) \
             returning period_key, sent_at",
            &[
                &notification,
                &id,
                &NotificationKind::ManualReminder,
                &assignee,
                &acting.user,
            ],
        )
        .await
        .map_err(DbError::from)
        .on_constraint("notifications_once", || NotificationError::TooSoon {
            retry_after: MANUAL_REMINDER_INTERVAL_SECS.unsigned_abs(),
        })?;
    let period_key: String = row.try_get(0).map_err(DbError::from)?;
    let sent_at: DateTime<Utc> = row.try_get(1).map_err(DbError::from)?;
    let outbox = mail::enqueue(
        &**client,
        &Email::TaskReminder {
            to: email.clone(),
            organization,
            sent_by,
            task_title: task.title.clone(),
            project: project.clone(),
            due,
            link: link(id),
        },
    )
    .await?;
    let reminder = Reminder {
        id: notification,
        task_id: id,
        recipient_id: assignee,
        email,
        sent_at,
    };
    let entry = Entry::new(Action::TaskReminded)
        .target("task", id)
        .after(json!({
            "notification_id": notification,
            "kind": NotificationKind::ManualReminder,
            "recipient_id": assignee,
            "period_key": period_key,
            "project_id": task.project_id,
        }));
    acting.commit(tx, entry).await?;
    Ok((reminder, outbox))
}
