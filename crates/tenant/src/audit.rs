//! The tenant's audit trail (`audit_log`, append-only). Writers call [`record`] on the same
//! handle (usually the same transaction) as the change they describe, so a rolled-back change
//! leaves no entry and a committed one always has its entry.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use std::net::IpAddr;
use tenantry_public::db::DbError;
use tenantry_public::UserId;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::binding::TenantDb;
use deadpool_postgres::GenericClient;

/// Every action the audit trail knows. The string form is what is stored and filtered on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    LoginSucceeded,
    LoginFailed,
    Logout,
    SessionRevoked,
    RefreshReused,
    PasswordChanged,
    PasswordReset,
    EmailVerified,
    MemberAdded,
    MemberRemoved,
    MemberRoleChanged,
    MemberDeactivated,
    MemberActivated,
    InvitationCreated,
    InvitationRevoked,
    InvitationAccepted,
    OwnershipTransferred,
    ApiKeyCreated,
    ApiKeyRevoked,
}

impl Action {
    pub const ALL: [Action; 19] = [
        Self::LoginSucceeded,
        Self::LoginFailed,
        Self::Logout,
        Self::SessionRevoked,
        Self::RefreshReused,
        Self::PasswordChanged,
        Self::PasswordReset,
        Self::EmailVerified,
        Self::MemberAdded,
        Self::MemberRemoved,
        Self::MemberRoleChanged,
        Self::MemberDeactivated,
        Self::MemberActivated,
        Self::InvitationCreated,
        Self::InvitationRevoked,
        Self::InvitationAccepted,
        Self::OwnershipTransferred,
        Self::ApiKeyCreated,
        Self::ApiKeyRevoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoginSucceeded => "auth.login.succeeded",
            Self::LoginFailed => "auth.login.failed",
            Self::Logout => "auth.logout",
            Self::SessionRevoked => "auth.session.revoked",
            Self::RefreshReused => "auth.refresh.reused",
            Self::PasswordChanged => "user.password.changed",
            Self::PasswordReset => "user.password.reset",
            Self::EmailVerified => "user.email.verified",
            Self::MemberAdded => "member.added",
            Self::MemberRemoved => "member.removed",
            Self::MemberRoleChanged => "member.role_changed",
            Self::MemberDeactivated => "member.deactivated",
            Self::MemberActivated => "member.activated",
            Self::InvitationCreated => "invitation.created",
            Self::InvitationRevoked => "invitation.revoked",
            Self::InvitationAccepted => "invitation.accepted",
            Self::OwnershipTransferred => "organization.ownership_transferred",
            Self::ApiKeyCreated => "api_key.created",
            Self::ApiKeyRevoked => "api_key.revoked",
        }
    }

    pub fn parse(input: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == input)
    }
}

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    User(UserId),
    ApiKey(Uuid),
    /// Nobody authenticated (a failed login, an invitation accepted by a new account, …).
    Anonymous,
}

/// Where a request came from; taken once per request by the HTTP layer.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
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

impl Entry {
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
        Actor::User(u) => (Some(u.0), None),
        Actor::ApiKey(k) => (None, Some(k)),
        Actor::Anonymous => (None, None),
    };
    // A user agent is attacker-chosen text: keep it bounded.
    let user_agent = origin
        .user_agent
        .as_deref()
        .map(|ua| ua.chars().take(512).collect::<String>());
    db.client()
        .execute(
            "insert into audit_log (actor_user_id, actor_api_key_id, action, target_type, \
             target_id, before, after, ip, user_agent, request_id) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                &user,
                &key,
                &entry.action.as_str(),
                &entry.target_type,
                &entry.target_id,
                &entry.before,
                &entry.after,
                &origin.ip,
                &user_agent,
                &origin.request_id,
            ],
        )
        .await?;
    Ok(())
}

/// One stored entry.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor_user_id: Option<Uuid>,
    pub actor_api_key_id: Option<Uuid>,
    pub action: String,
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
    pub actor_user_id: Option<Uuid>,
    /// Entries by this API key (as actor).
    pub actor_api_key_id: Option<Uuid>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// Newest first, `limit` entries with an id below `before_id` (the keyset cursor).
pub async fn list(
    db: &impl TenantDb,
    filter: &Filter,
    before_id: Option<i64>,
    limit: i64,
) -> Result<Vec<Record>, DbError> {
    let action = filter.action.map(Action::as_str);
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
                &action,
                &filter.actor_user_id,
                &filter.actor_api_key_id,
                &filter.from,
                &filter.to,
                &before_id,
                &limit,
            ],
        )
        .await?;
    rows.iter()
        .map(Record::try_from)
        .collect::<Result<_, _>>()
        .map_err(DbError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for a in Action::ALL {
            assert!(seen.insert(a.as_str()), "duplicate {}", a.as_str());
            assert_eq!(Action::parse(a.as_str()), Some(a));
        }
        assert_eq!(Action::parse("nope"), None);
    }
}
