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
}

impl Email {
    pub fn to(&self) -> &str {
        match self {
            Self::VerifyEmail { to, .. }
            | Self::PasswordReset { to, .. }
            | Self::Invitation { to, .. } => to,
        }
    }
}

/// The id of an outbox row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxId(pub i64);

/// Writes `email` to the outbox on `db` (call it inside the transaction of the change).
pub async fn enqueue(db: &impl GenericClient, email: &Email) -> Result<OutboxId, DbError> {
    let payload = serde_json::to_value(email).map_err(|e| DbError::Config(e.to_string()))?;
    let row = db
        .query_one(
            "insert into public.outbox (payload) values ($1) returning id",
            &[&payload],
        )
        .await?;
    Ok(OutboxId(row.get(0)))
}
