//! Request and response shapes that several route modules share, so resource modules never
//! import each other.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tenantry_public::db::Db;
use tenantry_public::memberships::Member;
use tenantry_public::names::display_name;
use tenantry_public::{users, Password, UserId};
use tenantry_tenant::members::NewAccount;
use tenantry_tenant::tasks::Task;
use tenantry_tenant::{ProjectId, TaskId};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::fields::{self, Fields};

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    /// The user id.
    #[schema(value_type = Uuid)]
    pub id: UserId,
    pub email: String,
    pub full_name: String,
    #[schema(example = "member")]
    pub role: String,
    /// Whether the membership in this organization is active (not the account).
    pub is_active: bool,
    pub email_verified: bool,
    /// When the account joined this organization.
    pub joined_at: DateTime<Utc>,
}

impl From<Member> for MemberView {
    fn from(m: Member) -> Self {
        Self {
            id: m.user_id,
            email: m.email,
            full_name: m.full_name,
            role: m.role.to_string(),
            is_active: m.is_active,
            email_verified: m.email_verified,
            joined_at: m.joined_at,
        }
    }
}

/// Who is invited or added, with which role.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Invitee {
    #[schema(example = "ann@acme.test")]
    #[schema(schema_with = crate::schema::email, required = true)]
    pub email: Option<String>,
    /// admin, member or viewer; at most the caller's own role.
    #[schema(example = "member")]
    #[schema(schema_with = crate::schema::grantable_role, required = true)]
    pub role: Option<String>,
}

/// The fields that create an account alongside a membership (a new member, an accepted
/// invitation), checked and hashed in one place.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AccountFields {
    /// Required for a new account (and, accepting an invitation, for an account whose email was
    /// never verified); ignored otherwise.
    #[schema(schema_with = crate::schema::full_name_or_null)]
    pub full_name: Option<String>,
    /// Required like `full_name`: 10 to 128 characters, not a common password, not containing
    /// the email's name.
    #[schema(schema_with = crate::schema::new_password_or_null)]
    pub password: Option<String>,
}

/// Why an invitation to an account whose address was never proven asks for a password and name.
pub const UNPROVEN_ACCOUNT: &str =
    "is required: the account of this email was never verified, so accepting sets its password and name";

impl AccountFields {
    /// The account to create: both fields required (422 naming each missing or invalid one),
    /// the password hashed before any transaction opens.
    pub async fn into_new_account(self, email: &str) -> Result<NewAccount, ApiError> {
        self.into_account(email, "is required to create a new account")
            .await
    }

    async fn into_account(self, email: &str, missing: &str) -> Result<NewAccount, ApiError> {
        let (password, full_name) = (
            self.password
                .ok_or_else(|| fields::invalid("password", missing))
                .and_then(|p| fields::check("password", Password::parse_for(&p, email))),
            self.full_name
                .ok_or_else(|| fields::invalid("full_name", missing))
                .and_then(|n| {
                    fields::check(
                        "full_name",
                        display_name(&n, crate::schema::MAX_PERSON_NAME),
                    )
                }),
        )
            .collect()?;
        Ok(NewAccount::hash(full_name, &password).await?)
    }

    /// The account to create (or remake) for `email`, or `None` when it has a verified account
    /// (which joins as it is, and these fields are then ignored) or an unverified one and neither
    /// field was sent (the transaction then refuses). Looked up and hashed before any
    /// transaction opens; the transaction that adds the membership looks again under lock.
    pub async fn for_email(self, db: &Db, email: &str) -> Result<Option<NewAccount>, ApiError> {
        let existing = {
            let client = db.public().await?;
            users::find_by_email(client.client(), email).await?
        };
        let missing = match existing {
            Some(user) if user.email_verified_at.is_some() => return Ok(None),
            // Without the fields the transaction decides: 409 for a member, 422 otherwise.
            Some(_) if self.full_name.is_none() && self.password.is_none() => return Ok(None),
            Some(_) => UNPROVEN_ACCOUNT,
            None => "is required to create a new account",
        };
        Ok(Some(self.into_account(email, missing).await?))
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskView {
    #[schema(value_type = Uuid)]
    pub id: TaskId,
    #[schema(value_type = Uuid)]
    pub project_id: ProjectId,
    #[schema(example = "Write the launch post")]
    pub title: String,
    /// Markdown, up to 20,000 characters.
    #[schema(example = "Draft, review, publish.")]
    pub description: String,
    /// todo, in_progress, in_review, done or cancelled.
    #[schema(example = "todo")]
    pub status: String,
    /// low, medium, high or urgent.
    #[schema(example = "medium")]
    pub priority: String,
    #[schema(value_type = Option<Uuid>)]
    pub assignee_id: Option<UserId>,
    #[schema(value_type = Uuid)]
    pub created_by: UserId,
    #[schema(example = "2026-12-24T12:00:00Z")]
    pub due_at: Option<DateTime<Utc>>,
    /// Set while the task is done.
    pub completed_at: Option<DateTime<Utc>>,
    #[schema(example = json!(["launch", "web"]))]
    pub tags: Vec<String>,
    /// The task's place in its project's order (lowest first; new tasks go last).
    #[schema(minimum = 0)]
    pub position: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Task> for TaskView {
    fn from(t: Task) -> Self {
        Self {
            id: t.id,
            project_id: t.project_id,
            title: t.title,
            description: t.description,
            status: t.status.to_string(),
            priority: t.priority.to_string(),
            assignee_id: t.assignee_id,
            created_by: t.created_by,
            due_at: t.due_at,
            completed_at: t.completed_at,
            tags: t.tags,
            position: t.position,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}
