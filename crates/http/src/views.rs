//! Request and response shapes that several route modules share, so resource modules never
//! import each other.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tenantry_public::db::Db;
use tenantry_public::memberships::Member;
use tenantry_public::names::display_name;
use tenantry_public::{users, Password, UserId};
use tenantry_tenant::members::NewAccount;
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
    /// Required when no account has the email (a new account is created); ignored otherwise.
    #[schema(schema_with = crate::schema::full_name_or_null)]
    pub full_name: Option<String>,
    /// Required when no account has the email: 10 to 128 characters, not a common password,
    /// not containing the email's name. Ignored otherwise.
    #[schema(schema_with = crate::schema::new_password_or_null)]
    pub password: Option<String>,
}

impl AccountFields {
    /// The account to create: both fields required (422 naming each missing or invalid one),
    /// the password hashed before any transaction opens.
    async fn into_new_account(self, email: &str) -> Result<NewAccount, ApiError> {
        let missing = "is required to create a new account";
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

    /// The account to create for `email`, or `None` when it already has one (which joins as it
    /// is, and these fields are then ignored). Looked up and hashed before any transaction opens;
    /// the transaction that adds the membership finds or creates the account again under lock.
    pub async fn for_email(self, db: &Db, email: &str) -> Result<Option<NewAccount>, ApiError> {
        let exists = {
            let client = db.public().await?;
            users::find_by_email(client.client(), email)
                .await?
                .is_some()
        };
        if exists {
            return Ok(None);
        }
        Ok(Some(self.into_new_account(email).await?))
    }
}
