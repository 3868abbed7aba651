//! Login sessions and rotating refresh tokens.
//!
//! A session is one login: a family of refresh tokens. Refresh tokens are opaque, carry 256
//! random bits and are stored only as SHA-256 hashes. Every refresh rotates the token; presenting
//! a token that was already rotated means it leaked, so the whole session is revoked.

use chrono::{DateTime, Duration, Utc};
use tokio_postgres::{Client, GenericClient, Row};

use crate::db::DbError;
use crate::ids::{CompanyId, SessionId, UserId};
use crate::memberships::Role;
use crate::origin::Origin;
use crate::secrets::{hash, Secret};

/// How long a session (and so every refresh token in it) lives at most.
pub const SESSION_TTL_DAYS: i64 = 30;

const TOKEN_PREFIX: &str = "rt_";

/// A new refresh token's secret: shown once to the client, never stored.
pub type RefreshSecret = Secret;

#[derive(Debug, Clone)]
pub struct Session {
    pub id: SessionId,
    pub user_id: UserId,
    pub company_id: Option<CompanyId>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

const COLUMNS: &str =
    "id, user_id, company_id, created_at, last_used_at, expires_at, ip, user_agent";

impl TryFrom<&Row> for Session {
    type Error = DbError;
    fn try_from(row: &Row) -> Result<Self, DbError> {
        Ok(Self {
            id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            company_id: row.try_get("company_id")?,
            created_at: row.try_get("created_at")?,
            last_used_at: row.try_get("last_used_at")?,
            expires_at: row.try_get("expires_at")?,
            ip: row.try_get("ip")?,
            user_agent: row.try_get("user_agent")?,
        })
    }
}

/// Opens a session for `user` (in `company`, or an account session) with its first refresh token.
pub async fn open(
    db: &impl GenericClient,
    user: UserId,
    company: Option<CompanyId>,
    origin: &Origin,
) -> Result<(Session, RefreshSecret), DbError> {
    let secret = Secret::generate(TOKEN_PREFIX);
    let id = SessionId::new();
    let expires = Utc::now() + Duration::days(SESSION_TTL_DAYS);
    let sql = format!(
        "with s as (insert into public.sessions (id, user_id, company_id, expires_at, ip, user_agent) \
                    values ($1, $2, $3, $4, $5, $6) returning {COLUMNS}), \
              t as (insert into public.refresh_tokens (token_hash, session_id) values ($7, $1)) \
         select {COLUMNS} from s"
    );
    let row = db
        .query_one(
            &sql,
            &[
                &id,
                &user,
                &company,
                &expires,
                &origin.ip.map(|ip| ip.to_string()),
                &origin.user_agent,
                &hash(secret.expose()),
            ],
        )
        .await?;
    Ok((Session::try_from(&row)?, secret))
}

/// Why a refresh was refused. Every variant is a 401 to the client.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("unknown, expired or revoked refresh token")]
    Invalid,
    /// A rotated token was presented again: the session has been revoked.
    #[error("refresh token reuse detected; the session was revoked")]
    Reused { session: SessionId, user: UserId },
    /// The account or the membership is no longer active: the session has been revoked.
    #[error("the account or membership is no longer active")]
    NoLongerAllowed,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<tokio_postgres::Error> for RefreshError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(e.into())
    }
}

/// The result of a successful refresh.
#[derive(Debug)]
pub struct Rotated {
    pub session: Session,
    pub secret: RefreshSecret,
    /// The caller's role now (not when the session opened), for tenant sessions.
    pub role: Option<Role>,
}

/// How a refresh rotates: the key successors are derived with, and how long a just-spent token
/// may be presented again (two tabs refreshing at once) and get the same successor.
#[derive(Clone)]
pub struct Rotation {
    pub successor_key: Vec<u8>,
    pub grace: Duration,
}

/// Exchanges a refresh token for its successor, in one transaction.
/// `company` is the tenant of the host the refresh arrived on (`None` on the base host); a token
/// of another session kind is refused without being rotated.
///
/// The successor is derived from the presented token ([`Secret::derive`]), so a token spent less
/// than `rotation.grace` ago, presented again while its successor is still unused, is answered
/// with that same successor instead of counting as reuse. Any other repeat revokes the session.
pub async fn rotate(
    client: &mut Client,
    presented: &str,
    company: Option<CompanyId>,
    rotation: &Rotation,
) -> Result<Rotated, RefreshError> {
    let grace_secs = rotation.grace.num_milliseconds().max(0) as f64 / 1000.0;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "select t.rotated_at, s.id, s.revoked_at, s.expires_at, s.company_id, s.user_id, \
                    t.rotated_at > now() - make_interval(secs => $2) as in_grace \
               from public.refresh_tokens t join public.sessions s on s.id = t.session_id \
              where t.token_hash = $1 \
              for update of t, s",
            &[&hash(presented), &grace_secs],
        )
        .await?;
    let Some(row) = row else {
        return Err(RefreshError::Invalid);
    };
    let in_grace: Option<bool> = row.try_get(6)?;
    let rotated_at: Option<DateTime<Utc>> = row.try_get(0)?;
    let session_id: SessionId = row.try_get(1)?;
    let revoked_at: Option<DateTime<Utc>> = row.try_get(2)?;
    let expires_at: DateTime<Utc> = row.try_get(3)?;
    let session_company: Option<CompanyId> = row.try_get(4)?;
    let session_user: UserId = row.try_get(5)?;
    if session_company != company {
        return Err(RefreshError::Invalid);
    }
    if revoked_at.is_some() || expires_at <= Utc::now() {
        return Err(RefreshError::Invalid);
    }
    let successor = Secret::derive(TOKEN_PREFIX, &rotation.successor_key, presented);
    let repeat = rotated_at.is_some();
    if repeat {
        // Two tabs at once: the successor this token was exchanged for is handed out again,
        // while it is unused and the exchange is recent.
        let successor_unused = tx
            .query_opt(
                "select 1 from public.refresh_tokens \
                  where token_hash = $1 and session_id = $2 and rotated_at is null",
                &[&hash(successor.expose()), &session_id],
            )
            .await?
            .is_some();
        if !(in_grace == Some(true) && successor_unused) {
            revoke_in(&tx, session_id, "refresh token reuse").await?;
            tx.commit().await?;
            return Err(RefreshError::Reused {
                session: session_id,
                user: session_user,
            });
        }
    }
    // Deactivation, removal or a role change take effect at the next refresh.
    let allowed = tx
        .query_one(
            "select u.is_active, s.company_id, m.role, coalesce(m.is_active, false) \
               from public.sessions s join public.users u on u.id = s.user_id \
               left join public.memberships m on m.user_id = s.user_id and m.company_id = s.company_id \
              where s.id = $1",
            &[&session_id],
        )
        .await?;
    let user_active: bool = allowed.try_get(0)?;
    let company: Option<CompanyId> = allowed.try_get(1)?;
    let role: Option<Role> = allowed.try_get(2)?;
    let member_active: bool = allowed.try_get(3)?;
    let role = match (company, role) {
        (None, _) => None,
        (Some(_), Some(r)) if member_active => Some(r),
        (Some(_), _) => {
            revoke_in(&tx, session_id, "membership ended").await?;
            tx.commit().await?;
            return Err(RefreshError::NoLongerAllowed);
        }
    };
    if !user_active {
        revoke_in(&tx, session_id, "account deactivated").await?;
        tx.commit().await?;
        return Err(RefreshError::NoLongerAllowed);
    }

    if !repeat {
        tx.execute(
            "update public.refresh_tokens set rotated_at = now() where token_hash = $1",
            &[&hash(presented)],
        )
        .await?;
        tx.execute(
            "insert into public.refresh_tokens (token_hash, session_id) values ($1, $2)",
            &[&hash(successor.expose()), &session_id],
        )
        .await?;
    }
    let secret = successor;
    let sql = format!(
        "update public.sessions set last_used_at = now() where id = $1 returning {COLUMNS}"
    );
    let session = Session::try_from(&tx.query_one(&sql, &[&session_id]).await?)?;
    tx.commit().await?;
    Ok(Rotated {
        session,
        secret,
        role,
    })
}

async fn revoke_in(
    db: &impl GenericClient,
    session: SessionId,
    reason: &str,
) -> Result<(), DbError> {
    db.execute(
        "update public.sessions set revoked_at = now(), revoked_reason = $2 \
         where id = $1 and revoked_at is null",
        &[&session, &reason],
    )
    .await?;
    Ok(())
}

/// Revokes the session a refresh token belongs to (logout): the session's id and user, or `None`
/// if the token is unknown or its session already ended.
pub async fn revoke_by_token(
    db: &impl GenericClient,
    presented: &str,
) -> Result<Option<(SessionId, UserId)>, DbError> {
    let row = db
        .query_opt(
            "update public.sessions set revoked_at = now(), revoked_reason = 'logout' \
              where id = (select session_id from public.refresh_tokens where token_hash = $1) \
                and revoked_at is null \
              returning id, user_id",
            &[&hash(presented)],
        )
        .await?;
    row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
}

/// Revokes one of `user`'s sessions. False if it is not theirs or already revoked.
pub async fn revoke(
    db: &impl GenericClient,
    user: UserId,
    session: SessionId,
) -> Result<bool, DbError> {
    let n = db
        .execute(
            "update public.sessions set revoked_at = now(), revoked_reason = 'revoked by user' \
              where id = $1 and user_id = $2 and revoked_at is null",
            &[&session, &user.0],
        )
        .await?;
    Ok(n == 1)
}

/// Revokes every session of `user` except `keep`. Returns how many were revoked.
pub async fn revoke_all(
    db: &impl GenericClient,
    user: UserId,
    keep: Option<SessionId>,
    reason: &str,
) -> Result<u64, DbError> {
    Ok(db
        .execute(
            "update public.sessions set revoked_at = now(), revoked_reason = $3 \
              where user_id = $1 and revoked_at is null and ($2::uuid is null or id <> $2)",
            &[&user.0, &keep, &reason],
        )
        .await?)
}

/// Revokes every session `user` opened in `company` (their membership ended). Account sessions
/// and sessions in other companies are untouched. Returns how many were revoked.
pub async fn revoke_for_company(
    db: &impl GenericClient,
    user: UserId,
    company: CompanyId,
    reason: &str,
) -> Result<u64, DbError> {
    Ok(db
        .execute(
            "update public.sessions set revoked_at = now(), revoked_reason = $3 \
              where user_id = $1 and company_id = $2 and revoked_at is null",
            &[&user.0, &company.0, &reason],
        )
        .await?)
}

/// Whether `session` is still live: not revoked, not expired, and its account active. Access
/// tokens are not checked against this per request (their 15 minutes bound that); the routes
/// that mint new credentials or change the account are (switch, API-key creation, password
/// change, token verification).
pub async fn is_live(db: &impl GenericClient, session: SessionId) -> Result<bool, DbError> {
    let row = db
        .query_opt(
            "select 1 from public.sessions s join public.users u on u.id = s.user_id \
              where s.id = $1 and s.revoked_at is null and s.expires_at > now() and u.is_active",
            &[&session],
        )
        .await?;
    Ok(row.is_some())
}

/// The user's sessions that can still be refreshed, newest first.
pub async fn list_active(db: &impl GenericClient, user: UserId) -> Result<Vec<Session>, DbError> {
    let sql = format!(
        "select {COLUMNS} from public.sessions \
          where user_id = $1 and revoked_at is null and expires_at > now() \
          order by created_at desc"
    );
    db.query(&sql, &[&user.0])
        .await?
        .iter()
        .map(Session::try_from)
        .collect()
}
