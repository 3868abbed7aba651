//! The platform-wide part of the weekly clean-up: rows of the public schema nobody can use any
//! more. What each rule keeps, and why:
//! - sessions (with their refresh tokens): expired ones, and revoked ones a week after their
//!   revocation (the week keeps "why was I signed out" answerable from the session list);
//! - account tokens (email verification, password reset): a day after they were used or expired,
//!   so a late click still hears "used or expired" (410) rather than "unknown" (404);
//! - the outbox: rows past [`mail::OUTBOX_RETENTION_DAYS`] (delivered rows are emptied of their
//!   links when delivered).
//!
//! Time is a parameter, so a run for a past or future `now` is exact.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use tokio_postgres::GenericClient;

use crate::db::DbError;
use crate::mail;

/// How long a revoked session is kept after its revocation.
pub const REVOKED_SESSION_GRACE: Duration = Duration::days(7);
/// How long a used or expired account token is kept.
pub const SPENT_TOKEN_GRACE: Duration = Duration::days(1);

/// What one run deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PlatformCleanup {
    pub sessions: u64,
    pub account_tokens: u64,
    pub outbox_delivered: u64,
    pub outbox_undelivered: u64,
}

/// Deletes what the rules above say is gone at `now`, in the caller's transaction.
pub async fn platform(
    db: &impl GenericClient,
    now: DateTime<Utc>,
) -> Result<PlatformCleanup, DbError> {
    let sessions = db
        .execute(
            "delete from public.sessions where expires_at < $1 or revoked_at < $2",
            &[&now, &(now - REVOKED_SESSION_GRACE)],
        )
        .await?;
    let account_tokens = db
        .execute(
            "delete from public.account_tokens where used_at < $1 or expires_at < $1",
            &[&(now - SPENT_TOKEN_GRACE)],
        )
        .await?;
    let (outbox_delivered, outbox_undelivered) = mail::prune_at(db, now).await?;
    Ok(PlatformCleanup {
        sessions,
        account_tokens,
        outbox_delivered,
        outbox_undelivered,
    })
}
