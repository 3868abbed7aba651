//! Changes to an account (`public.users`, `public.sessions`, emailed tokens) made from either
//! host: the base host, or a tenant's host, where the change is also recorded in that tenant's
//! audit trail in the same transaction. Each function owns its transaction; the HTTP layer only
//! parses the request and shapes the answer.

use futures_util::future::BoxFuture;
use serde_json::json;
use tenantry_public::account_tokens::{self, Purpose, TokenError};
use tenantry_public::db::{Db, DbError};
use tenantry_public::passwords::{self, PasswordError};
use tenantry_public::users::{self, User};
use tenantry_public::{memberships, sessions, Origin, Password, SessionId, UserId};

use crate::api_keys;
use crate::audit::{self, Action, Actor, Entry};
use crate::binding::{ActiveTenant, TenantDb};

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The account no longer exists (its token outlived it).
    #[error("the account no longer exists")]
    Gone,
    /// The account is deactivated: its emailed tokens do not work.
    #[error("this account is deactivated")]
    Deactivated,
    /// The password given to confirm a change is not the account's.
    #[error("the current password is incorrect")]
    WrongPassword,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<tokio_postgres::Error> for AccountError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(e.into())
    }
}

/// What a change records in the tenant's trail when it happens on a tenant host.
struct Note {
    user: UserId,
    entry: Entry,
    /// Record only when `user` is a member of the tenant (an emailed token can be spent on any
    /// organization's host; only a member's own organization hears of it).
    only_if_member: bool,
}

type Work<'c, T> = BoxFuture<'c, Result<(T, Option<Note>), AccountError>>;

/// Runs `work` in one transaction: on `tenant`'s bound connection when there is one (writing the
/// note `work` returns to its audit trail, atomically), otherwise on a public connection.
async fn in_account_tx<T>(
    db: &Db,
    tenant: Option<&ActiveTenant>,
    origin: &Origin,
    work: impl for<'c> FnOnce(&'c tokio_postgres::Transaction<'c>) -> Work<'c, T>,
) -> Result<T, AccountError> {
    match tenant {
        Some(tenant) => {
            let mut conn = tenant.connect(db).await?;
            let tx = conn.transaction().await?;
            let (value, note) = work(tx.client()).await?;
            if let Some(note) = note {
                let company = tenant.route().company_id;
                let member = !note.only_if_member
                    || memberships::find(&**tx.client(), note.user, company)
                        .await?
                        .is_some();
                if member {
                    audit::record(&tx, Actor::User(note.user), origin, note.entry).await?;
                }
            }
            tx.commit().await?;
            Ok(value)
        }
        None => {
            let mut client = db.public().await?;
            let tx = client.transaction().await?;
            let (value, _) = work(&tx).await?;
            tx.commit().await?;
            Ok(value)
        }
    }
}

/// Checks `password` against the account's (argon2, on the bounded hashing pool; no connection
/// is held while it runs).
pub async fn confirm_password(db: &Db, user: UserId, password: &str) -> Result<(), AccountError> {
    let stored = {
        let client = db.public().await?;
        users::find_by_id(client.client(), user)
            .await?
            .map(|u| u.password_hash)
    };
    if passwords::verify(password, stored).await? {
        Ok(())
    } else {
        Err(AccountError::WrongPassword)
    }
}

/// Ends the session `refresh_token` belongs to (logout). Nothing happens for an unknown token.
pub async fn logout(
    db: &Db,
    tenant: Option<&ActiveTenant>,
    refresh_token: &str,
    origin: &Origin,
) -> Result<(), AccountError> {
    let token = refresh_token.to_owned();
    in_account_tx(db, tenant, origin, |tx| {
        Box::pin(async move {
            let note = sessions::revoke_by_token(tx, &token)
                .await?
                .map(|(session, user)| Note {
                    user,
                    entry: Entry::new(Action::Logout).target("session", session),
                    only_if_member: false,
                });
            Ok(((), note))
        })
    })
    .await
}

/// Ends one of `user`'s sessions; false when it is not theirs or already ended.
pub async fn revoke_session(
    db: &Db,
    tenant: Option<&ActiveTenant>,
    user: UserId,
    session: SessionId,
    origin: &Origin,
) -> Result<bool, AccountError> {
    in_account_tx(db, tenant, origin, |tx| {
        Box::pin(async move {
            let revoked = sessions::revoke(tx, user, session).await?;
            let note = revoked.then(|| Note {
                user,
                entry: Entry::new(Action::SessionRevoked).target("session", session),
                only_if_member: false,
            });
            Ok((revoked, note))
        })
    })
    .await
}

/// Changes `user`'s password after checking the current one, and ends every other session of
/// the account (all but `keep`, the caller's own).
pub async fn change_password(
    db: &Db,
    tenant: Option<&ActiveTenant>,
    user: UserId,
    keep: Option<SessionId>,
    current: &str,
    new: &Password,
    origin: &Origin,
) -> Result<(), AccountError> {
    confirm_password(db, user, current).await?;
    // Hashed before the transaction opens: no row lock is held during the slow part.
    let hash = passwords::hash(new).await?;
    in_account_tx(db, tenant, origin, |tx| {
        Box::pin(async move {
            users::set_password_hash(tx, user, &hash).await?;
            let ended = sessions::revoke_all(tx, user, keep, "password changed").await?;
            let entry = Entry::new(Action::PasswordChanged)
                .target("user", user)
                .after(json!({ "other_sessions_ended": ended }));
            Ok((
                (),
                Some(Note {
                    user,
                    entry,
                    only_if_member: false,
                }),
            ))
        })
    })
    .await
}

/// Spends an email-verification token and marks its account's address verified.
pub async fn verify_email(
    db: &Db,
    tenant: Option<&ActiveTenant>,
    token: &str,
    origin: &Origin,
) -> Result<User, AccountError> {
    let token = token.to_owned();
    in_account_tx(db, tenant, origin, |tx| {
        Box::pin(async move {
            let user = account_tokens::consume(tx, Purpose::VerifyEmail, &token).await??;
            users::mark_email_verified(tx, user).await?;
            let account = users::find_by_id(tx, user)
                .await?
                .ok_or(AccountError::Gone)?;
            let entry = Entry::new(Action::EmailVerified).target("user", user);
            Ok((
                account,
                Some(Note {
                    user,
                    entry,
                    only_if_member: true,
                }),
            ))
        })
    })
    .await
}

/// Sets a new password with a password-reset token, marks the address verified (the link
/// reached the inbox) and ends every session of the account; when that proves the address for
/// the first time, it also revokes every API key the account made, in every organization.
pub async fn reset_password(
    db: &Db,
    tenant: Option<&ActiveTenant>,
    token: &str,
    new: &Password,
    origin: &Origin,
) -> Result<UserId, AccountError> {
    // Hashed before the transaction opens: no row lock is held during the slow part.
    let hash = passwords::hash(new).await?;
    let token = token.to_owned();
    in_account_tx(db, tenant, origin, |tx| {
        Box::pin(async move {
            let user = account_tokens::consume(tx, Purpose::PasswordReset, &token).await??;
            // A deactivated account cannot be taken back with a reset (the token stays unspent:
            // the transaction rolls back).
            let active = users::find_by_id(tx, user)
                .await?
                .is_some_and(|u| u.is_active);
            if !active {
                return Err(AccountError::Deactivated);
            }
            users::set_password_hash(tx, user, &hash).await?;
            let proved = users::mark_email_verified(tx, user).await?;
            sessions::revoke_all(tx, user, None, "password reset").await?;
            // The reset proved an address nobody had proven: whoever held the old password may
            // not have been its owner, so the API keys made with it go too.
            let keys_revoked = if proved {
                api_keys::revoke_all_created_by(tx, user).await?
            } else {
                0
            };
            let entry = Entry::new(Action::PasswordReset)
                .target("user", user)
                .after(json!({ "email_proven": proved, "api_keys_revoked": keys_revoked }));
            Ok((
                user,
                Some(Note {
                    user,
                    entry,
                    only_if_member: true,
                }),
            ))
        })
    })
    .await
}

/// Records a login (succeeded or failed) or a refresh-token reuse in `tenant`'s trail: events
/// that change nothing in the tenant, so they need no transaction of their own.
pub async fn record(
    db: &Db,
    tenant: &ActiveTenant,
    actor: Actor,
    origin: &Origin,
    entry: Entry,
) -> Result<(), DbError> {
    let conn = tenant.connect(db).await?;
    audit::record(&conn, actor, origin, entry).await
}

/// The account a verified token or a request names, for answers.
pub async fn find(db: &Db, user: UserId) -> Result<Option<User>, DbError> {
    let client = db.public().await?;
    users::find_by_id(client.client(), user).await
}
