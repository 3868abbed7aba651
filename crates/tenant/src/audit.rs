//! The tenant's audit trail (`audit_log`, append-only). Writers call [`record`] on the same
//! handle (usually the same transaction) as the change they describe, so a rolled-back change
//! leaves no entry and a committed one always has its entry.

use chrono::{DateTime, Utc};
use serde_json::Value;
use std::net::IpAddr;
use tenantry_public::db::DbError;
use tenantry_public::{CompanyId, Page, UserId};
use tokio_postgres::Row;

pub use tenantry_public::Origin;

use crate::binding::{TenantDb, TenantTx};
use crate::ids::{ApiKeyId, AuditEntryId};
use deadpool_postgres::GenericClient;

tenantry_public::text_enum! {
    /// Every action the audit trail knows. The string form is what is stored and filtered on.
    pub enum Action {
        LoginSucceeded = "auth.login.succeeded",
        LoginFailed = "auth.login.failed",
        Logout = "auth.logout",
        SessionRevoked = "auth.session.revoked",
        RefreshReused = "auth.refresh.reused",
        PasswordChanged = "user.password.changed",
        PasswordReset = "user.password.reset",
        EmailVerified = "user.email.verified",
        MemberAdded = "member.added",
        MemberRemoved = "member.removed",
        MemberRoleChanged = "member.role_changed",
        MemberDeactivated = "member.deactivated",
        MemberActivated = "member.activated",
        InvitationCreated = "invitation.created",
        InvitationRevoked = "invitation.revoked",
        InvitationAccepted = "invitation.accepted",
        OwnershipTransferred = "organization.ownership_transferred",
        ApiKeyCreated = "api_key.created",
        ApiKeyRevoked = "api_key.revoked",
        ProjectCreated = "project.created",
        ProjectUpdated = "project.updated",
        ProjectDeleted = "project.deleted",
        TaskCreated = "task.created",
        TaskUpdated = "task.updated",
        TaskCompleted = "task.completed",
        TaskReopened = "task.reopened",
        TaskDeleted = "task.deleted",
        DocumentCreated = "document.created",
        DocumentUpdated = "document.updated",
        DocumentDeleted = "document.deleted",
        TaskUnassigned = "task.unassigned",
        ProjectMemberAdded = "project.member_added",
        ProjectMemberRoleChanged = "project.member_role_changed",
        ProjectMemberRemoved = "project.member_removed",
        TaskExported = "task.exported",
        ProjectExported = "project.exported",
        OrganizationCleanedUp = "organization.cleaned_up",
        SettingsChanged = "organization.settings_changed",
        TaskReminded = "task.reminded",
        ReportRequested = "report.requested",
        SubscriptionPlanChanged = "subscription.plan_changed",
        SubscriptionChangeScheduled = "subscription.change_scheduled",
        SubscriptionCancelScheduled = "subscription.cancel_scheduled",
        SubscriptionResumed = "subscription.resumed",
        /// The period or the trial ended: a trial or a cancellation moved to free, or a
        /// scheduled change applied (actor: system, the worker).
        SubscriptionPeriodEnded = "subscription.period_ended",
        /// A past_due subscription's grace ran out: writes answer 402 until it is paid (actor:
        /// system, the worker).
        SubscriptionPastDueLocked = "subscription.past_due_locked",
        /// The billing provider's event changed the subscription (actor: system).
        SubscriptionSynced = "subscription.synced",
        InvoicePaid = "invoice.paid",
        InvoicePaymentFailed = "invoice.payment_failed",
        /// An operator added, removed or made primary a domain (actor: system, `tenantctl`).
        DomainAdded = "domain.added",
        DomainRemoved = "domain.removed",
        DomainMadePrimary = "domain.primary_changed",
        OrganizationRenamed = "organization.renamed",
        /// The owner deleted the organization: suspended, to be dropped after the grace period.
        OrganizationDeletionRequested = "organization.deletion_requested",
        /// An operator restored a deleted organization within its grace period (actor: system).
        OrganizationRestored = "organization.restored",
    }
}

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    User(UserId),
    ApiKey(ApiKeyId),
    /// Nobody authenticated (a failed login, an invitation accepted by a new account, …).
    Anonymous,
    /// An operator command on the server (`tenantctl`), acting for no account and no key (an
    /// account's deactivation unassigning its tasks). Stored like [`Actor::Anonymous`], with
    /// neither actor column set; the entry's origin ([`Origin::command`]) names the command.
    System,
}

/// Who is acting in a tenant, in which company, from where: what every tenant domain function
/// that changes something takes, so it can check the actor and write the audit entry itself.
#[derive(Debug, Clone, Copy)]
pub struct Acting<'a> {
    pub company: CompanyId,
    /// The account responsible (the caller, or an API key's creator).
    pub user: UserId,
    pub actor: Actor,
    pub origin: &'a Origin,
}

impl Acting<'_> {
    /// Appends `entry` as this actor, on `db` (the transaction of the change).
    pub async fn record(&self, db: &impl TenantDb, entry: Entry) -> Result<(), DbError> {
        record(db, self.actor, self.origin, entry).await
    }

    /// The last step of every audited change: appends `entry` in `tx`, then commits, so the
    /// change and its entry exist together or not at all.
    pub async fn commit(&self, tx: TenantTx<'_>, entry: Entry) -> Result<(), DbError> {
        record(&tx, self.actor, self.origin, entry).await?;
        tx.commit().await
    }
}

/// One entry to write.
#[derive(Debug, Clone)]
pub struct Entry {
    pub action: Action,
    pub target_type: Option<&'static str>,
    pub target_id: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// A row whose changes the trail records: the kind of target it is, its id, and its state as the
/// entries' `before`/`after` JSON.
pub trait Audited {
    const KIND: &'static str;
    fn audit_id(&self) -> String;
    fn audit_json(&self) -> Value;
}

/// Implements [`Audited`] for a row type: its kind, the field that identifies it, and the fields
/// its before/after JSON records, each under its own name.
macro_rules! audited {
    ($row:ty, $kind:literal, id: $id:ident, [$($field:ident),+ $(,)?]) => {
        impl $crate::audit::Audited for $row {
            const KIND: &'static str = $kind;

            fn audit_id(&self) -> String {
                self.$id.to_string()
            }

            fn audit_json(&self) -> serde_json::Value {
                let mut fields = serde_json::Map::new();
                $(fields.insert(stringify!($field).to_owned(), serde_json::json!(self.$field));)+
                serde_json::Value::Object(fields)
            }
        }
    };
}
pub(crate) use audited;

impl Entry {
    /// `row` was created: named as the target, recorded as `after`.
    pub fn created(action: Action, row: &impl Audited) -> Self {
        Self::on(action, row).after(row.audit_json())
    }

    /// `before` became `after` (the same row).
    pub fn changed<T: Audited>(action: Action, before: &T, after: &T) -> Self {
        Self::on(action, after)
            .before(before.audit_json())
            .after(after.audit_json())
    }

    /// `before` was removed: named as the target, recorded as `before`.
    pub fn removed(action: Action, before: &impl Audited) -> Self {
        Self::on(action, before).before(before.audit_json())
    }

    fn on<T: Audited>(action: Action, row: &T) -> Self {
        let mut entry = Self::new(action);
        entry.target_type = Some(T::KIND);
        entry.target_id = Some(row.audit_id());
        entry
    }

    pub fn new(action: Action) -> Self {
        Self {
            action,
            target_type: None,
            target_id: None,
            before: None,
            after: None,
        }
    }

    pub fn target(mut self, kind: &'static str, id: impl ToString) -> Self {
        self.target_type = Some(kind);
        self.target_id = Some(id.to_string());
        self
    }

    pub fn before(mut self, value: Value) -> Self {
        self.before = Some(value);
        self
    }

    pub fn after(mut self, value: Value) -> Self {
        self.after = Some(value);
        self
    }
}

/// Appends one entry to the bound tenant's audit trail.
pub async fn record(
    db: &impl TenantDb,
    actor: Actor,
    origin: &Origin,
    entry: Entry,
) -> Result<(), DbError> {
    let (user, key) = match actor {
        Actor::User(u) => (Some(u), None),
        Actor::ApiKey(k) => (None, Some(k)),
        Actor::Anonymous | Actor::System => (None, None),
    };
    db.client()
        .execute(
            "insert into audit_log (actor_user_id, actor_api_key_id, action, target_type, \
             target_id, before, after, ip, user_agent, request_id) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                &user,
                &key,
                &entry.action,
                &entry.target_type,
                &entry.target_id,
                &entry.before,
                &entry.after,
                &origin.ip,
                &origin.user_agent,
                &origin.request_id,
            ],
        )
        .await?;
    Ok(())
}

/// One stored entry.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: AuditEntryId,
    pub at: DateTime<Utc>,
    pub actor_user_id: Option<UserId>,
    pub actor_api_key_id: Option<ApiKeyId>,
    pub action: Action,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

impl TryFrom<&Row> for Record {
    type Error = tokio_postgres::Error;
    fn try_from(row: &Row) -> Result<Self, Self::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            at: row.try_get("at")?,
            actor_user_id: row.try_get("actor_user_id")?,
            actor_api_key_id: row.try_get("actor_api_key_id")?,
            action: row.try_get("action")?,
            target_type: row.try_get("target_type")?,
            target_id: row.try_get("target_id")?,
            before: row.try_get("before")?,
            after: row.try_get("after")?,
            ip: row.try_get("ip")?,
            user_agent: row.try_get("user_agent")?,
            request_id: row.try_get("request_id")?,
        })
    }
}

/// Filters for [`list`]; every field is optional.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub action: Option<Action>,
    /// Entries by this user (as actor).
    pub actor_user_id: Option<UserId>,
    /// Entries by this API key (as actor).
    pub actor_api_key_id: Option<ApiKeyId>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// One page of at most `limit` entries, newest first, with an id below `before` (the keyset
/// position).
pub async fn list(
    db: &impl TenantDb,
    filter: &Filter,
    before: Option<AuditEntryId>,
    limit: i64,
) -> Result<Page<Record>, DbError> {
    let rows = db
        .client()
        .query(
            "select id, at, actor_user_id, actor_api_key_id, action, target_type, target_id, \
                    before, after, ip, user_agent, request_id \
             from audit_log \
             where ($1::text is null or action = $1) \
               and ($2::uuid is null or actor_user_id = $2) \
               and ($3::uuid is null or actor_api_key_id = $3) \
               and ($4::timestamptz is null or at >= $4) \
               and ($5::timestamptz is null or at < $5) \
               and ($6::bigint is null or id < $6) \
             order by id desc \
             limit $7",
            &[
                &filter.action,
                &filter.actor_user_id,
                &filter.actor_api_key_id,
                &filter.from,
                &filter.to,
                &before,
                &Page::<Record>::fetch_limit(limit),
            ],
        )
        .await?;
    Page::from_rows(&rows, limit, |r| Record::try_from(r).map_err(DbError::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for a in Action::ALL {
            assert!(seen.insert(a.as_str()), "duplicate {}", a.as_str());
            assert_eq!(Action::parse(a.as_str()), Ok(*a));
        }
        assert!(Action::parse("nope").is_err());
    }
}
