//! Invitations to join the bound tenant, kept in the tenant's own `invitations` table.
//!
//! A token carries 256 random bits, is shown only in the emailed link, and is stored as its
//! SHA-256. Because the table lives in the tenant schema, a token presented on another tenant's
//! host is simply unknown there. A token is single-use (accepting marks the row accepted inside
//! the accepting transaction, under a row lock), expires after [`TTL_DAYS`] days, and is bound to
//! the email it was sent to: accepting joins the account with that email (creating it if
//! needed), and marks its address verified, since the link reached that inbox.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use tenantry_public::db::DbError;
use tenantry_public::mail::{self, Email as Mail, OutboxId};
use tenantry_public::memberships::{self, Member, Role};
use tenantry_public::secrets::{hash, Secret};
use tenantry_public::{users, CompanyId, Email, Page, UserId};
use tokio_postgres::Row;

use crate::access::{self, Permission};
use crate::audit::{self, Acting, Action, Actor, Audited, Entry, Origin};
use crate::binding::{TenantConn, TenantDb, TenantTx};
use crate::ids::InvitationId;
use crate::members::{self, Joined, MembershipError, NewAccount};
use deadpool_postgres::GenericClient;

/// How long an invitation can be accepted.
pub const TTL_DAYS: i64 = 7;

const TOKEN_PREFIX: &str = "inv_";

/// A new invitation's token: 32 random bytes, base64url. Shown once (in the email), never stored.
pub type InvitationToken = Secret;

tenantry_public::text_enum! {
    /// Where an invitation is in its life; derived from its timestamps.
    pub enum InvitationStatus {
        Pending = "pending",
        Accepted = "accepted",
        Expired = "expired",
        Revoked = "revoked",
    }
}

#[derive(Debug, Clone)]
pub struct Invitation {
    pub id: InvitationId,
    pub email: String,
    pub role: Role,
    pub status: InvitationStatus,
    pub invited_by: Option<UserId>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub accepted_by: Option<UserId>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The status is computed by the database clock, like every other timestamp here.
const COLUMNS: &str = "id, email, role, \
     case when accepted_at is not null then 'accepted' \
          when revoked_at is not null then 'revoked' \
          when expires_at <= now() then 'expired' \
          else 'pending' end as status, \
     invited_by, created_at, expires_at, accepted_at, accepted_by, revoked_at";

/// The same status expression, for filtering.
const STATUS: &str = "case when accepted_at is not null then 'accepted' \
          when revoked_at is not null then 'revoked' \
          when expires_at <= now() then 'expired' \
          else 'pending' end";

impl TryFrom<&Row> for Invitation {
    type Error = DbError;

    fn try_from(row: &Row) -> Result<Self, DbError> {
        Ok(Self {
            id: row.try_get("id")?,
            email: row.try_get("email")?,
            role: row.try_get("role")?,
            status: row.try_get("status")?,
            invited_by: row.try_get("invited_by")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            accepted_at: row.try_get("accepted_at")?,
            accepted_by: row.try_get("accepted_by")?,
            revoked_at: row.try_get("revoked_at")?,
        })
    }
}

crate::audit::audited!(Invitation, "invitation", id: id, [id, email, role, status, expires_at]);

/// Invites `email` with `role`: checks the caller may grant the role, that the email is neither
/// a member nor already invited (pending), stores the hashed token and writes the invitation
/// email to the outbox, all in one transaction. `link` turns the token into the URL to email.
pub async fn create(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    email: &Email,
    role: Role,
    link: impl FnOnce(&str) -> String,
) -> Result<(Invitation, OutboxId), MembershipError> {
    let tx = conn.transaction().await?;
    let seats = members::lock(&tx, acting.company).await?;
    let actor_role = members::actor_role(&tx, acting, Permission::InvitationsManage).await?;
    access::may_grant(actor_role, role)?;
    let pg = &**tx.client();
    if let Some(user) = users::find_by_email(pg, email.as_str()).await? {
        if memberships::find(pg, user.id, acting.company)
            .await?
            .is_some()
        {
            return Err(MembershipError::AlreadyMember);
        }
    }
    let pending = tx
        .client()
        .query_opt(
            &format!(
                "select 1 from invitations where lower(email) = lower($1) and {STATUS} = 'pending'"
            ),
            &[&email.as_str()],
        )
        .await?;
    if pending.is_some() {
        return Err(MembershipError::InvitationPending);
    }
    let token = Secret::generate(TOKEN_PREFIX);
    let expires = Utc::now() + Duration::days(TTL_DAYS);
    let row = tx
        .client()
        .query_one(
            &format!(
                "insert into invitations (id, email, role, token_hash, invited_by, expires_at) \
                 values ($1, $2, $3, $4, $5, $6) returning {COLUMNS}"
            ),
            &[
                &InvitationId::new(),
                &email.as_str(),
                &role,
                &hash(token.expose()),
                &acting.user,
                &expires,
            ],
        )
        .await?;
    let invitation = Invitation::try_from(&row)?;
    let inviter = users::find_by_id(pg, acting.user)
        .await?
        .map(|u| {
            if u.full_name.trim().is_empty() {
                u.email
            } else {
                u.full_name
            }
        })
        .unwrap_or_default();
    let outbox = mail::enqueue(
        pg,
        &Mail::Invitation {
            to: invitation.email.clone(),
            organization: seats.name.clone(),
            invited_by: inviter,
            role: role.to_string(),
            link: link(token.expose()),
        },
    )
    .await?;
    acting
        .commit(tx, Entry::created(Action::InvitationCreated, &invitation))
        .await?;
    Ok((invitation, outbox))
}

/// Lists invitations newest first (ids are time-ordered), optionally of one status, after the
/// keyset position `before`.
pub async fn list(
    db: &impl TenantDb,
    status: Option<InvitationStatus>,
    before: Option<InvitationId>,
    limit: i64,
) -> Result<Page<Invitation>, DbError> {
    let rows = db
        .client()
        .query(
            &format!(
                "select {COLUMNS} from invitations \
                  where ($1::text is null or {STATUS} = $1) \
                    and ($2::uuid is null or id < $2) \
                  order by id desc limit $3"
            ),
            &[&status, &before, &Page::<Invitation>::fetch_limit(limit)],
        )
        .await?;
    Page::from_rows(&rows, limit, |r| Invitation::try_from(r))
}

/// One invitation by id.
pub async fn get(db: &impl TenantDb, id: InvitationId) -> Result<Option<Invitation>, DbError> {
    db.client()
        .query_opt(
            &format!("select {COLUMNS} from invitations where id = $1"),
            &[&id],
        )
        .await?
        .as_ref()
        .map(Invitation::try_from)
        .transpose()
}

/// The invitation a token belongs to (any status), without locking it: for checks made before
/// the accepting transaction (which looks again under a lock).
pub async fn find_by_token(db: &impl TenantDb, token: &str) -> Result<Option<Invitation>, DbError> {
    db.client()
        .query_opt(
            &format!("select {COLUMNS} from invitations where token_hash = $1"),
            &[&hash(token)],
        )
        .await?
        .as_ref()
        .map(Invitation::try_from)
        .transpose()
}

/// Revokes an invitation. Revoking one already revoked changes nothing; an accepted one cannot
/// be revoked. An expired one can (it then shows as revoked).
pub async fn revoke(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    id: InvitationId,
) -> Result<Invitation, MembershipError> {
    let tx = conn.transaction().await?;
    members::lock(&tx, acting.company).await?;
    members::actor_role(&tx, acting, Permission::InvitationsManage).await?;
    let before = tx
        .client()
        .query_opt(
            &format!("select {COLUMNS} from invitations where id = $1 for update"),
            &[&id],
        )
        .await?
        .as_ref()
        .map(Invitation::try_from)
        .transpose()?
        .ok_or(MembershipError::InvitationNotFound)?;
    match before.status {
        InvitationStatus::Accepted => return Err(MembershipError::InvitationAccepted),
        InvitationStatus::Revoked => return Ok(before),
        InvitationStatus::Pending | InvitationStatus::Expired => {}
    }
    let after = mark_revoked(&tx, acting, &before).await?;
    tx.commit().await?;
    Ok(after)
}

/// Marks a locked, unaccepted invitation revoked by the acting member and audits it, in the
/// caller's transaction.
async fn mark_revoked(
    tx: &TenantTx<'_>,
    acting: &Acting<'_>,
    before: &Invitation,
) -> Result<Invitation, MembershipError> {
    let row = tx
        .client()
        .query_one(
            &format!(
                "update invitations set revoked_at = now(), revoked_by = $2 where id = $1 \
                 returning {COLUMNS}"
            ),
            &[&before.id, &acting.user],
        )
        .await?;
    let after = Invitation::try_from(&row)?;
    acting
        .record(
            tx,
            Entry::changed(Action::InvitationRevoked, before, &after),
        )
        .await?;
    Ok(after)
}

/// The role an accepted invitation gives: its own, capped by what the inviter may grant now.
/// Refused as revoked when the inviter is no longer an active member who may invite.
async fn granted_role(
    tx: &TenantTx<'_>,
    company: CompanyId,
    invitation: &Invitation,
) -> Result<Role, MembershipError> {
    let gone = || MembershipError::InvitationGone(InvitationStatus::Revoked);
    let inviter = invitation.invited_by.ok_or_else(gone)?;
    let inviter = memberships::get_member(&**tx.client(), company, inviter, false)
        .await?
        .filter(|m| m.is_active && access::allows(m.role, Permission::InvitationsManage))
        .ok_or_else(gone)?;
    Ok(
        if access::may_grant(inviter.role, invitation.role).is_ok() {
            invitation.role
        } else {
            // Never owner: the inviter's own role, which they may grant (owner only by transfer).
            ROLES_BY_POWER
                .into_iter()
                .find(|r| access::may_grant(inviter.role, *r).is_ok())
                .unwrap_or(Role::Viewer)
        },
    )
}

/// Roles from most to least powerful.
const ROLES_BY_POWER: [Role; 4] = [Role::Owner, Role::Admin, Role::Member, Role::Viewer];

/// Revokes the pending invitations `inviter` sent that they may no longer grant: all of them
/// when `now` is `None` (removed or deactivated) or a role that may not invite, else those for
/// a role above `now`. Each is audited as `invitation.revoked`, in the caller's transaction.
pub(crate) async fn revoke_from_inviter(
    tx: &TenantTx<'_>,
    acting: &Acting<'_>,
    inviter: UserId,
    now: Option<Role>,
) -> Result<(), MembershipError> {
    let keep: Vec<Role> = match now {
        Some(role) if access::allows(role, Permission::InvitationsManage) => ROLES_BY_POWER
            .into_iter()
            .filter(|r| access::may_grant(role, *r).is_ok())
            .collect(),
        _ => Vec::new(),
    };
    let keep: Vec<&str> = keep.iter().map(|r| r.as_str()).collect();
    let rows = tx
        .client()
        .query(
            &format!(
                "select {COLUMNS} from invitations \
                  where invited_by = $1 and {STATUS} = 'pending' and not (role = any($2)) \
                  for update"
            ),
            &[&inviter, &keep],
        )
        .await?;
    for row in &rows {
        mark_revoked(tx, acting, &Invitation::try_from(row)?).await?;
    }
    Ok(())
}

/// The result of accepting an invitation.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub member: Member,
    pub joined: Joined,
    /// The welcome email's outbox row, to queue after commit.
    pub welcome: OutboxId,
}

/// Accepts the invitation `token` belongs to: joins the account with the invited email
/// (creating it from `new_account` when there is none, and remaking an unproven one from it:
/// [`Joined`]) with the invited role, marks the address verified and the invitation accepted,
/// in one transaction. Counts against the plan.
pub async fn accept(
    conn: &mut TenantConn,
    company: CompanyId,
    token: &str,
    new_account: Option<NewAccount>,
    origin: &Origin,
) -> Result<Accepted, MembershipError> {
    let tx = conn.transaction().await?;
    let seats = members::lock(&tx, company).await?;
    // Under the row lock: of two concurrent accepts of one token, the second sees it accepted.
    let invitation = tx
        .client()
        .query_opt(
            &format!("select {COLUMNS} from invitations where token_hash = $1 for update"),
            &[&hash(token)],
        )
        .await?
        .as_ref()
        .map(Invitation::try_from)
        .transpose()?
        .ok_or(MembershipError::InvitationNotFound)?;
    if invitation.status != InvitationStatus::Pending {
        return Err(MembershipError::InvitationGone(invitation.status));
    }
    // The invitation grants no more than its inviter could grant now (as API keys act with no
    // more than their creator's current role); an inviter who is no longer an active member
    // here has taken the invitation with them.
    let role = granted_role(&tx, company, &invitation).await?;
    let email = Email::parse(&invitation.email)
        .map_err(|e| DbError::Corrupt(format!("invitations.email {e}")))?;
    let pg = &**tx.client();
    let existing = users::find_by_email(pg, email.as_str()).await?;
    match &existing {
        Some(user) => members::check_seat(&tx, &seats, company, user.id).await?,
        None if seats.full() => return Err(members::plan_full(&seats)),
        None => {}
    }
    let (user, joined) = members::join_account(&tx, &email, existing, new_account, company).await?;
    let created = joined == Joined::Created;
    // The token reached this address: that proves it.
    users::mark_email_verified(pg, user.id).await?;
    memberships::add(pg, company, user.id, role)
        .await?
        .ok_or(MembershipError::AlreadyMember)?;
    // Once per membership: the membership was just created in this transaction.
    let welcome = memberships::welcome(pg, company, user.id, role).await?;
    let row = tx
        .client()
        .query_one(
            &format!(
                "update invitations set accepted_at = now(), accepted_by = $2 where id = $1 \
                 returning {COLUMNS}"
            ),
            &[&invitation.id, &user.id],
        )
        .await?;
    let after = Invitation::try_from(&row)?;
    let member = memberships::get_member(pg, company, user.id, false)
        .await?
        .ok_or_else(|| DbError::Corrupt("membership vanished inside its transaction".into()))?;
    // Nobody authenticated with credentials: the token is the proof. The accepting account is
    // named in the entries.
    let mut accepted = after.audit_json();
    accepted["user_id"] = json!(user.id);
    accepted["account_created"] = json!(created);
    accepted["account_reclaimed"] = json!(joined == Joined::Reclaimed);
    audit::record(
        &tx,
        Actor::Anonymous,
        origin,
        Entry::new(Action::InvitationAccepted)
            .target("invitation", invitation.id)
            .before(invitation.audit_json())
            .after(accepted),
    )
    .await?;
    let mut added = member.audit_json();
    added["account_created"] = json!(created);
    added["invitation_id"] = json!(invitation.id);
    audit::record(
        &tx,
        Actor::Anonymous,
        origin,
        Entry::new(Action::MemberAdded)
            .target("user", user.id)
            .after(added),
    )
    .await?;
    tx.commit().await?;
    Ok(Accepted {
        member,
        joined,
        welcome,
    })
}
