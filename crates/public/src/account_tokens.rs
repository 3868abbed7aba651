//! Tokens mailed to an account: email verification and password reset. Each carries 256 random
//! bits ([`crate::secrets`]), is stored as its SHA-256, expires, and is single-use: [`consume`]
//! spends it under a row lock, so two concurrent uses cannot both succeed.

use chrono::{Duration, Utc};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::db::{Db, DbError};
use crate::ids::UserId;
use crate::mail::{self, Email, OutboxId};
use crate::secrets::{hash, Secret};
use crate::users::{self, User};

crate::text_enum! {
    /// What a token is for; a token of one purpose is unknown to the other.
    pub enum Purpose {
        VerifyEmail = "verify_email",
        PasswordReset = "password_reset",
    }
}

impl Purpose {
    fn prefix(self) -> &'static str {
        match self {
            Self::VerifyEmail => "ve_",
            Self::PasswordReset => "pr_",
        }
    }

    /// How long a token of this purpose can be used.
    pub fn ttl(self) -> Duration {
        match self {
            Self::VerifyEmail => Duration::hours(48),
            Self::PasswordReset => Duration::hours(1),
        }
    }
}

/// Issues a token for `user`. A new password-reset token spends the account's older unused ones
/// (only the newest link works).
pub async fn issue(
    db: &impl GenericClient,
    user: UserId,
    purpose: Purpose,
) -> Result<Secret, DbError> {
    if purpose == Purpose::PasswordReset {
        db.execute(
            "update public.account_tokens set used_at = now() \
              where user_id = $1 and purpose = $2 and used_at is null",
            &[&user.0, &purpose.as_str()],
        )
        .await?;
    }
    let secret = Secret::generate(purpose.prefix());
    db.execute(
        "insert into public.account_tokens (id, user_id, purpose, token_hash, expires_at) \
         values ($1, $2, $3, $4, $5)",
        &[
            &Uuid::now_v7(),
            &user.0,
            &purpose.as_str(),
            &secret.hash(),
            &(Utc::now() + purpose.ttl()),
        ],
    )
    .await?;
    Ok(secret)
}

/// Issues a verification token for `user` and writes the verification email to the outbox, on
/// `db` (the transaction that created the account). `link` turns the token into the URL.
pub async fn send_verification(
    db: &impl GenericClient,
    user: &User,
    link: &(dyn Fn(&str) -> String + Sync),
) -> Result<OutboxId, DbError> {
    let token = issue(db, user.id, Purpose::VerifyEmail).await?;
    mail::enqueue(
        db,
        &Email::VerifyEmail {
            to: user.email.clone(),
            full_name: user.full_name.clone(),
            link: link(token.expose()),
        },
    )
    .await
}

/// Issues a password-reset token for the active account with `email`, if there is one, and
/// writes the reset email to the outbox, in one transaction. `None` when no active account has
/// the email (the caller answers alike either way). `link` turns the token into the URL.
pub async fn request_password_reset(
    db: &Db,
    email: &crate::Email,
    link: &(dyn Fn(&str) -> String + Sync),
) -> Result<Option<OutboxId>, DbError> {
    let mut client = db.public().await?;
    let tx = client.transaction().await?;
    let queued = match users::find_by_email(&*tx, email.as_str()).await? {
        Some(user) if user.is_active => {
            let token = issue(&*tx, user.id, Purpose::PasswordReset).await?;
            let mail = Email::PasswordReset {
                to: user.email,
                link: link(token.expose()),
            };
            Some(mail::enqueue(&*tx, &mail).await?)
        }
        _ => None,
    };
    tx.commit().await?;
    Ok(queued)
}

/// Why a presented token cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not known")]
    Unknown,
    #[error("the token was already used")]
    Used,
    #[error("the token has expired")]
    Expired,
}

/// The email of the account a token of `purpose` belongs to, used or not; `None` for an unknown
/// token. Reads only: for checks before [`consume`] (a new password must not contain it).
pub async fn account_email(
    db: &impl GenericClient,
    purpose: Purpose,
    token: &str,
) -> Result<Option<String>, DbError> {
    Ok(db
        .query_opt(
            "select u.email from public.account_tokens t join public.users u on u.id = t.user_id \
              where t.token_hash = $1 and t.purpose = $2",
            &[&hash(token), &purpose.as_str()],
        )
        .await?
        .map(|row| row.get(0)))
}

/// Spends a token of `purpose` inside the caller's transaction and returns its account. The row
/// is locked until the transaction ends: a concurrent second use waits, then finds it used.
pub async fn consume(
    db: &impl GenericClient,
    purpose: Purpose,
    token: &str,
) -> Result<Result<UserId, TokenError>, DbError> {
    let row = db
        .query_opt(
            "select id, user_id, used_at is not null, expires_at <= now() \
               from public.account_tokens where token_hash = $1 and purpose = $2 for update",
            &[&hash(token), &purpose.as_str()],
        )
        .await?;
    let Some(row) = row else {
        return Ok(Err(TokenError::Unknown));
    };
    if row.get::<_, bool>(2) {
        return Ok(Err(TokenError::Used));
    }
    if row.get::<_, bool>(3) {
        return Ok(Err(TokenError::Expired));
    }
    let id: Uuid = row.get(0);
    db.execute(
        "update public.account_tokens set used_at = now() where id = $1",
        &[&id],
    )
    .await?;
    Ok(Ok(UserId(row.get(1))))
}
