//! Email delivery: [`Deliver`] jobs from the `{prefix}:jobs:mail` queue, and a sweep that
//! re-queues outbox rows nobody delivered (a push the API could not make, a failed send).
//!
//! Delivering row N: in one transaction, lock the row (`skip locked`; nothing to do if it is
//! delivered or another worker has it), render, send, mark it delivered, commit. A send that fails
//! leaves the row undelivered (its attempt counted) and fails the job; the sweep tries again
//! after `MAIL_SWEEP_SECS`. An email can be sent twice only if the commit after a successful send
//! fails (at-least-once).

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::TaskSink;
use apalis_redis::RedisStorage;
use lettre::message::{header::ContentType, Mailbox};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use redis::aio::ConnectionManager;
use tenantry_public::db::{Db, DbError, PoolSettings};
use tenantry_public::mail::{self, queue_name, Deliver, Email, OutboxId};

use crate::config::{MailConfig, MailTransport};

/// Why a delivery failed (the job fails; the sweep retries later).
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("could not build the message: {0}")]
    Build(String),
    #[error("could not send: {0}")]
    Send(String),
}

enum Sender {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files(AsyncFileTransport<Tokio1Executor>),
}

/// Everything a delivery needs; shared by the queue worker and the sweep.
/// The worker's PostgreSQL connections: the queues run at most
/// [`crate::QUEUE_CONCURRENCY`] jobs each (mail, tenant jobs, reports), beside the sweeps, the
/// ticks and the usage flush.
pub const POOL_SIZE: usize = 8;

pub struct Mailer {
    db: Db,
    sender: Sender,
    from: Mailbox,
    redis: ConnectionManager,
    queue: String,
    sweep_every: Duration,
    log_links: bool,
}

impl Mailer {
    /// # Errors
    /// If the database URL, SMTP URL or From address is unusable, or the mail directory cannot
    /// be created.
    pub fn new(
        config: &MailConfig,
        redis: ConnectionManager,
        prefix: &str,
    ) -> anyhow::Result<Self> {
        let db = Db::connect(
            &config.database_url,
            &PoolSettings {
                max_size: POOL_SIZE,
                ..PoolSettings::default()
            },
        )?;
        let sender = match &config.transport {
            MailTransport::Smtp(url) => {
                Sender::Smtp(AsyncSmtpTransport::<Tokio1Executor>::from_url(url)?.build())
            }
            MailTransport::Directory(dir) => {
                std::fs::create_dir_all(dir)?;
                Sender::Files(AsyncFileTransport::<Tokio1Executor>::new(dir))
            }
        };
        Ok(Self {
            db,
            sender,
            from: config.from.parse()?,
            redis,
            queue: queue_name(prefix),
            sweep_every: config.sweep_every,
            log_links: config.log_links,
        })
    }

    /// The database pool, shared with the jobs that need PostgreSQL.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The queue's storage, to push to or (with a poll strategy) to work on.
    pub fn storage(&self) -> RedisStorage<Deliver> {
        let config = crate::queue_config(&self.queue);
        RedisStorage::new(self.redis.clone()).with_config(config)
    }

    /// Delivers outbox row `id` if it still needs it.
    ///
    /// # Errors
    /// Database errors, or the message could not be built or sent.
    pub async fn deliver(&self, id: OutboxId) -> Result<(), MailError> {
        let mut client = self.db.public().await?;
        let tx = client.transaction().await.map_err(DbError::from)?;
        let Some(email) = mail::claim(&*tx, id).await? else {
            return Ok(());
        };
        let sent = self.send(&email).await;
        match sent {
            Ok(()) => {
                mail::mark_dispatched(&*tx, id).await?;
                tx.commit().await.map_err(DbError::from)?;
                tracing::info!(outbox_id = id.0, kind = kind(&email), "email sent");
                Ok(())
            }
            Err(e) => {
                drop(tx);
                let conn = self.db.public().await?;
                mail::record_failure(conn.client(), id, &e.to_string()).await?;
                Err(e)
            }
        }
    }

    async fn send(&self, email: &Email) -> Result<(), MailError> {
        let (subject, body) = render(email);
        let to: Mailbox = email
            .to()
            .parse()
            .map_err(|e: lettre::address::AddressError| MailError::Build(e.to_string()))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| MailError::Build(e.to_string()))?;
        match &self.sender {
            Sender::Smtp(smtp) => smtp
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| MailError::Send(e.to_string())),
            Sender::Files(files) => {
                let file = files
                    .send(message)
                    .await
                    .map_err(|e| MailError::Send(e.to_string()))?;
                // Development (`MAIL_LOG_LINKS`): the link is in the log, no mail client needed.
                // Anywhere else a live single-use token has no place in a log.
                if self.log_links {
                    tracing::info!(file = %file, link = link(email), to = email.to(), "email written");
                } else {
                    tracing::info!(file = %file, kind = kind(email), "email written");
                }
                Ok(())
            }
        }
    }

    /// One sweep: deletes rows past retention ([`mail::prune`]), then re-queues rows undelivered
    /// for longer than the sweep interval.
    ///
    /// # Errors
    /// Database or Redis errors.
    pub async fn sweep(&self) -> anyhow::Result<usize> {
        let rows = {
            let conn = self.db.public().await?;
            let (delivered, undelivered) = mail::prune(conn.client()).await?;
            if undelivered > 0 {
                tracing::warn!(
                    undelivered,
                    delivered,
                    days = mail::OUTBOX_RETENTION_DAYS,
                    "deleted emails never delivered within the retention"
                );
            } else if delivered > 0 {
                tracing::info!(delivered, "deleted delivered emails past the retention");
            }
            mail::undelivered(conn.client(), self.sweep_every.as_secs_f64(), 500).await?
        };
        let mut storage = self.storage();
        for row in &rows {
            storage
                .push(Deliver { outbox_id: row.0 })
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        if !rows.is_empty() {
            tracing::info!(count = rows.len(), "re-queued undelivered emails");
        }
        Ok(rows.len())
    }

    /// Sweeps every interval until the task is dropped.
    pub async fn sweep_forever(self: Arc<Self>) {
        let mut every = tokio::time::interval(self.sweep_every);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if let Err(error) = self.sweep().await {
                tracing::warn!(%error, "mail sweep failed");
            }
        }
    }
}

fn kind(email: &Email) -> &'static str {
    match email {
        Email::VerifyEmail { .. } => "verify_email",
        Email::PasswordReset { .. } => "password_reset",
        Email::Invitation { .. } => "invitation",
        Email::TaskReminder { .. } => "task_reminder",
        Email::TaskDue { .. } => "task_due",
        Email::OverdueDigest { .. } => "overdue_digest",
        Email::Welcome { .. } => "welcome",
        Email::ReportReady { .. } => "report_ready",
        Email::SubscriptionNotice { .. } => "subscription_notice",
        Email::OrganizationDeleted { .. } => "organization_deleted",
        Email::OrganizationRestored { .. } => "organization_restored",
    }
}

/// The link worth logging: the email's own, or a digest's first task's.
fn link(email: &Email) -> &str {
    match email {
        Email::VerifyEmail { link, .. }
        | Email::PasswordReset { link, .. }
        | Email::Invitation { link, .. }
        | Email::TaskReminder { link, .. }
        | Email::TaskDue { link, .. }
        | Email::ReportReady { link, .. }
        | Email::SubscriptionNotice { link, .. } => link,
        Email::OverdueDigest { tasks, .. } => tasks.first().map_or("", |t| t.link.as_str()),
        Email::Welcome { .. }
        | Email::OrganizationDeleted { .. }
        | Email::OrganizationRestored { .. } => "",
    }
}

/// Subject and plain-text body of an email.
pub fn render(email: &Email) -> (String, String) {
    match email {
        Email::VerifyEmail {
            full_name, link, ..
        } => (
            "Confirm your email address".to_owned(),
            format!(
                "Hello {full_name},\n\nPlease confirm your email address by opening this link \
                 (valid for 48 hours):\n\n{link}\n\nIf you did not create an account, ignore \
                 this email.\n"
            ),
        ),
        Email::PasswordReset { link, .. } => (
            "Reset your password".to_owned(),
            format!(
                "Someone asked to reset the password of your account. To choose a new password, \
                 open this link (valid for one hour, once):\n\n{link}\n\nIf it was not you, \
                 ignore this email: your password stays as it is.\n"
            ),
        ),
        Email::Invitation {
            organization,
            invited_by,
            role,
            link,
            ..
        } => (
            format!("{invited_by} invited you to {organization}"),
            format!(
                "{invited_by} invited you to join {organization} as {role}.\n\nAccept the \
                 invitation (valid for 7 days):\n\n{link}\n"
            ),
        ),
        Email::TaskReminder {
            organization,
            sent_by,
            task_title,
            project,
            due,
            link,
            ..
        } => {
            let due = due.as_deref().unwrap_or("no due date");
            (
                format!("Reminder: {task_title}"),
                format!(
                    "{sent_by} sent you a reminder about a task assigned to you in \
                     {organization}.\n\nTask: {task_title}\nProject: {project}\nDue: {due}\n\n\
                     Open the task:\n\n{link}\n"
                ),
            )
        }
        Email::TaskDue {
            organization,
            task_title,
            project,
            due,
            link,
            ..
        } => (
            format!("Due soon: {task_title}"),
            format!(
                "A task assigned to you in {organization} is due soon.\n\nTask: {task_title}\n\
                 Project: {project}\nDue: {due}\n\nOpen the task:\n\n{link}\n"
            ),
        ),
        Email::OverdueDigest {
            organization,
            date,
            lead,
            tasks,
            ..
        } => {
            let n = tasks.len();
            let (subject, intro) = if *lead {
                (
                    format!("{n} overdue task(s) in your projects in {organization}"),
                    format!(
                        "These tasks of projects you lead in {organization} are overdue ({date}):"
                    ),
                )
            } else {
                (
                    format!("{n} overdue task(s) in {organization}"),
                    format!("These tasks assigned to you in {organization} are overdue ({date}):"),
                )
            };
            let mut body = format!("{intro}\n");
            for t in tasks {
                let late = match t.days_overdue {
                    0 => "due earlier today".to_owned(),
                    1 => "1 day overdue".to_owned(),
                    d => format!("{d} days overdue"),
                };
                body.push_str(&format!("\n- {} ({}), {late}", t.title, t.project));
                if let Some(assignee) = &t.assignee {
                    body.push_str(&format!(", assigned to {assignee}"));
                }
                body.push_str(&format!("\n  {}\n", t.link));
            }
            (subject, body)
        }
        Email::Welcome {
            full_name,
            organization,
            role,
            ..
        } => (
            format!("Welcome to {organization}"),
            format!(
                "Hello {full_name},\n\nyou are now a member of {organization} ({role}). \
                 Sign in to start working with your team.\n"
            ),
        ),
        Email::ReportReady {
            organization,
            project,
            expires_at,
            link,
            ..
        } => (
            format!("Your report on {project} is ready"),
            format!(
                "The report you asked for on the project {project} in {organization} is \
                 ready.\n\nOpen it (available until {expires_at}):\n\n{link}\n"
            ),
        ),
        Email::SubscriptionNotice {
            organization,
            what,
            link,
            ..
        } => (
            format!("Your {organization} subscription"),
            format!("{what}\n\nSee the organization's subscription:\n\n{link}\n"),
        ),
        Email::OrganizationDeleted {
            organization,
            drop_after,
            ..
        } => (
            format!("{organization} was deleted"),
            format!(
                "You deleted the organization {organization}. It is suspended: its members can \
                 no longer sign in to it and its API keys no longer work.\n\nIt and all its data \
                 (projects, tasks, documents, members, audit trail) will be dropped for good on \
                 {drop_after}. Until then an operator can restore it: reply to this email or \
                 contact support if this was a mistake.\n"
            ),
        ),
        Email::OrganizationRestored { organization, .. } => (
            format!("{organization} was restored"),
            format!(
                "The organization {organization} was restored by an operator: it is active \
                 again and will not be dropped. Its members can sign in to it as before.\n"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_email_carries_its_link() {
        let link = "https://acme.example.com/x?token=abc".to_owned();
        for email in [
            Email::VerifyEmail {
                to: "a@b.test".into(),
                full_name: "Ann".into(),
                link: link.clone(),
            },
            Email::PasswordReset {
                to: "a@b.test".into(),
                link: link.clone(),
            },
            Email::Invitation {
                to: "a@b.test".into(),
                organization: "Acme".into(),
                invited_by: "Bob".into(),
                role: "member".into(),
                link: link.clone(),
            },
            Email::TaskReminder {
                to: "a@b.test".into(),
                organization: "Acme".into(),
                sent_by: "Bob".into(),
                task_title: "Ship it".into(),
                project: "Launch".into(),
                due: Some("2026-05-01 17:00 (Europe/Berlin)".into()),
                link: link.clone(),
            },
            Email::TaskDue {
                to: "a@b.test".into(),
                organization: "Acme".into(),
                task_title: "Ship it".into(),
                project: "Launch".into(),
                due: "2026-05-01 17:00 (Europe/Berlin)".into(),
                link: link.clone(),
            },
            Email::OverdueDigest {
                to: "a@b.test".into(),
                organization: "Acme".into(),
                date: "2026-05-02".into(),
                lead: true,
                tasks: vec![tenantry_public::mail::OverdueTask {
                    title: "Ship it".into(),
                    project: "Launch".into(),
                    days_overdue: 1,
                    assignee: Some("Ann".into()),
                    link: link.clone(),
                }],
            },
            Email::ReportReady {
                to: "a@b.test".into(),
                organization: "Acme".into(),
                project: "Launch".into(),
                expires_at: "2026-05-08T12:00:00Z".into(),
                link: link.clone(),
            },
            Email::SubscriptionNotice {
                to: "a@b.test".into(),
                organization: "Acme".into(),
                what: "The plan is now Starter.".into(),
                link: link.clone(),
            },
        ] {
            let (subject, body) = render(&email);
            assert!(!subject.is_empty());
            assert!(body.contains(&link), "{body}");
        }
    }

    #[test]
    fn the_deletion_email_names_the_drop_date_and_the_way_back() {
        let (subject, body) = render(&Email::OrganizationDeleted {
            to: "a@b.test".into(),
            organization: "Acme".into(),
            drop_after: "2027-01-06T12:00:00+00:00".into(),
        });
        assert_eq!(subject, "Acme was deleted");
        assert!(
            body.contains("2027-01-06T12:00:00+00:00") && body.contains("an operator can restore"),
            "{body}"
        );
        let (subject, body) = render(&Email::OrganizationRestored {
            to: "a@b.test".into(),
            organization: "Acme".into(),
        });
        assert_eq!(subject, "Acme was restored");
        assert!(body.contains("active again"), "{body}");
    }

    #[test]
    fn the_welcome_names_the_organization_and_role() {
        let (subject, body) = render(&Email::Welcome {
            to: "a@b.test".into(),
            full_name: "Ann".into(),
            organization: "Acme".into(),
            role: "member".into(),
        });
        assert_eq!(subject, "Welcome to Acme");
        assert!(
            body.contains("Hello Ann") && body.contains("(member)"),
            "{body}"
        );
    }
}
