//! Members of the bound tenant: add, change role, remove, (de)activate, and ownership transfer.
//!
//! Every operation runs in one transaction on a tenant-bound connection, so the change to
//! `public.memberships` (always filtered by this tenant's company id) and its `audit_log` entry
//! commit together. Each transaction first locks the company row ([`memberships::lock_company`]),
//! which serialises all membership changes of one company: the member count checked against the
//! plan cannot be raced, and two ownership transfers run one after the other. Inside the lock the
//! caller's own membership is read again, so a caller demoted or removed since their access token
//! was issued cannot act with the stale role.

use serde_json::{json, Value};
use tenantry_public::account_tokens;
use tenantry_public::db::{DbError, OnConstraint};
use tenantry_public::mail::OutboxId;
use tenantry_public::memberships::{self, CompanySeats, Member, Role};
use tenantry_public::passwords::{self, PasswordError};
use tenantry_public::users::{self, User};
use tenantry_public::{sessions, CompanyId, Email, Origin, Password, UserId};

use crate::access::{self, Permission, RoleRuleError};
use crate::audit::{Acting, Action, Actor, Audited, Entry};
use crate::binding::{TenantConn, TenantDb, TenantTx};
use crate::invitations::{self, InvitationStatus};

/// A new account to create alongside a membership (its password already hashed).
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub password_hash: String,
    pub full_name: String,
}

impl NewAccount {
    /// Hashes `password` (slow: call it before any transaction opens, so no lock is held while
    /// it runs).
    pub async fn hash(full_name: String, password: &Password) -> Result<Self, PasswordError> {
        Ok(Self {
            password_hash: passwords::hash(password).await?,
            full_name,
        })
    }
}

/// Why a change to the organization's memberships (members, invitations, ownership) is refused.
/// One type for all of them: they share their rules, and the HTTP layer maps it in one place.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// The target user is not a member of this company.
    #[error("no such member in this organization")]
    NotFound,
    #[error("this account is already a member of this organization")]
    AlreadyMember,
    #[error("the {plan} plan allows at most {max} members; remove a member or upgrade the plan")]
    PlanLimit { plan: String, max: i32 },
    #[error(transparent)]
    Rule(#[from] RoleRuleError),
    /// The caller's membership, read again inside the transaction, no longer allows this.
    #[error("{0}")]
    NotAllowed(String),
    /// An account with this email exists (in another organization, or none): it joins through
    /// an invitation, not by being added.
    #[error("an account with this email already exists; invite it instead")]
    AccountExists,
    /// The address's account was never proven, and accepting an invitation to it needs a new
    /// password and name ([`Joined::Reclaimed`]).
    #[error(
        "the account of this email has not been verified; choose a password and name to accept"
    )]
    AccountUnproven,
    /// No account has this email and no password was given to create one.
    #[error("no account has this email; a password and full name are needed to create one")]
    AccountRequired,
    /// An account with this email was created concurrently.
    #[error("an account with this email was created at the same moment; retry")]
    AccountRace,
    /// The owner's password, asked to confirm a transfer, is wrong.
    #[error("the password is incorrect; confirm the transfer with your own password")]
    WrongPassword,
    #[error("the new owner must be another member")]
    TransferToSelf,
    #[error("the new owner's membership is deactivated")]
    TargetInactive,
    #[error("the new owner has not verified their email address")]
    TargetUnverified,
    /// No invitation with this id or token in this tenant.
    #[error("no such invitation in this organization")]
    InvitationNotFound,
    /// The token was already used, revoked, or has expired.
    #[error("this invitation has been {0}")]
    InvitationGone(InvitationStatus),
    #[error("this invitation has already been accepted")]
    InvitationAccepted,
    #[error("an invitation for this email is already pending; revoke it to send a new one")]
    InvitationPending,
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<tokio_postgres::Error> for MembershipError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(e.into())
    }
}

// A membership is audited as its user ("user" targets).
crate::audit::audited!(Member, "user", id: user_id, [user_id, email, role, is_active]);

/// Locks the company row and returns its seats. Call first in every membership transaction.
pub(crate) async fn lock(tx: &TenantTx<'_>, company: CompanyId) -> Result<CompanySeats, DbError> {
    memberships::lock_company(&**tx.client(), company)
        .await?
        .ok_or_else(|| DbError::Corrupt("the bound tenant's company row is missing".into()))
}

/// The caller's role now, read inside the transaction: they must still be an active member
/// whose role holds `permission`. The inner error is the reason to show when they may not.
pub(crate) async fn current_role(
    tx: &TenantTx<'_>,
    acting: &Acting<'_>,
    permission: Permission,
) -> Result<Result<Role, String>, DbError> {
    let member =
        memberships::get_member(&**tx.client(), acting.company, acting.user, false).await?;
    Ok(match member {
        Some(m) if m.is_active && access::allows(m.role, permission) => Ok(m.role),
        Some(m) if m.is_active => Err(format!(
            "the {} role may not do this ({} requires {} or above)",
            m.role,
            permission.as_str(),
            permission.minimum_role()
        )),
        _ => Err("you are no longer an active member of this organization".to_owned()),
    })
}

pub(crate) async fn actor_role(
    tx: &TenantTx<'_>,
    acting: &Acting<'_>,
    permission: Permission,
) -> Result<Role, MembershipError> {
    current_role(tx, acting, permission)
        .await?
        .map_err(MembershipError::NotAllowed)
}

/// How the account accepting an invitation came to join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    /// A proven account, as it was.
    Existing,
    /// No account had the address: one was created from the accepted fields.
    Created,
    /// An account nobody had proven the address of: the invitation link proves it now, and the
    /// accepted fields replace its password and name; its sessions and API keys end (whoever
    /// set the old password may not have been the address's owner).
    Reclaimed,
}

/// The account that accepts an invitation to `email` (`existing`, read in this transaction): a
/// proven one as it is; otherwise one made (or remade, see [`Joined::Reclaimed`]) from
/// `new_account`, then required. Runs in the caller's transaction.
pub(crate) async fn join_account(
    tx: &TenantTx<'_>,
    email: &Email,
    existing: Option<User>,
    new_account: Option<NewAccount>,
    origin: CompanyId,
) -> Result<(User, Joined), MembershipError> {
    let pg = &**tx.client();
    match existing {
        Some(user) if user.email_verified_at.is_some() => Ok((user, Joined::Existing)),
        Some(user) => {
            let account = new_account.ok_or(MembershipError::AccountUnproven)?;
            users::set_password_hash(pg, user.id, &account.password_hash).await?;
            let user = users::set_full_name(pg, user.id, &account.full_name)
                .await?
                .ok_or_else(|| {
                    DbError::Corrupt("account vanished inside its transaction".into())
                })?;
            sessions::revoke_all(pg, user.id, None, "address proven by an invitation").await?;
            crate::api_keys::revoke_all_created_by(pg, user.id).await?;
            Ok((user, Joined::Reclaimed))
        }
        None => {
            let account = new_account.ok_or(MembershipError::AccountRequired)?;
            Ok((
                create_account(tx, email, account, origin).await?,
                Joined::Created,
            ))
        }
    }
}

async fn create_account(
    tx: &TenantTx<'_>,
    email: &Email,
    account: NewAccount,
    origin: CompanyId,
) -> Result<User, MembershipError> {
    users::insert(
        &**tx.client(),
        email,
        &account.password_hash,
        &account.full_name,
        origin,
    )
    .await
    .on_constraint(users::EMAIL_KEY, || MembershipError::AccountRace)
}

/// Refuses a new membership when `user` already has one here or the plan has no seat left.
pub(crate) async fn check_seat(
    tx: &TenantTx<'_>,
    seats: &CompanySeats,
    company: CompanyId,
    user: UserId,
) -> Result<(), MembershipError> {
    if memberships::find(&**tx.client(), user, company)
        .await?
        .is_some()
    {
        return Err(MembershipError::AlreadyMember);
    }
    if seats.full() {
        return Err(plan_full(seats));
    }
    Ok(())
}

pub(crate) fn plan_full(seats: &CompanySeats) -> MembershipError {
    MembershipError::PlanLimit {
        plan: seats.plan.clone(),
        max: seats.max_members.unwrap_or_default(),
    }
}

/// Creates an account for `email` in this company and makes it a member with `role`, checking
/// the role rules and the plan limit. An email that already has an account is refused without
/// saying anything about that account ([`MembershipError::AccountExists`], or
/// [`MembershipError::AlreadyMember`] for one of this company's members): existing accounts join
/// through an invitation, whose link proves that the address's owner wants to.
pub async fn add(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    email: &Email,
    role: Role,
    new_account: NewAccount,
    verify_link: &(dyn Fn(&str) -> String + Sync),
) -> Result<(Member, Vec<OutboxId>), MembershipError> {
    let tx = conn.transaction().await?;
    let user = create_member_account(&tx, acting, email, role, new_account).await?;
    // The new account gets a verification email, in this transaction (nothing if it rolls back).
    let verification =
        account_tokens::send_verification(&**tx.client(), &user, verify_link).await?;
    let (member, welcome) = join(
        tx,
        acting,
        user.id,
        role,
        true,
        json!({"account_created": true}),
    )
    .await?;
    Ok((member, [verification].into_iter().chain(welcome).collect()))
}

/// [`add`] for an operator command (`tenantctl tenant seed`), never for a request: the operator
/// vouches for the address, so the account is verified at once and no verification email is
/// sent. Same checks (the acting member's role, the role rules, the plan limit, existing
/// accounts refused); audited as `member.added` with `email_vouched` in `after`.
pub async fn add_vouched(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    email: &Email,
    role: Role,
    new_account: NewAccount,
) -> Result<Member, MembershipError> {
    let tx = conn.transaction().await?;
    let user = create_member_account(&tx, acting, email, role, new_account).await?;
    users::mark_email_verified(&**tx.client(), user.id).await?;
    // Seeded demo accounts get no email at all, so no welcome either.
    let (member, _) = join(
        tx,
        acting,
        user.id,
        role,
        false,
        json!({"account_created": true, "email_vouched": true}),
    )
    .await?;
    Ok(member)
}

/// The first half of [`add`]: company lock, the caller's role and the role rules, existing
/// accounts and the plan limit, then the new account.
async fn create_member_account(
    tx: &TenantTx<'_>,
    acting: &Acting<'_>,
    email: &Email,
    role: Role,
    new_account: NewAccount,
) -> Result<User, MembershipError> {
    let seats = lock(tx, acting.company).await?;
    let actor_role = actor_role(tx, acting, Permission::MembersManage).await?;
    access::may_grant(actor_role, role)?;
    if let Some(existing) = users::find_by_email(&**tx.client(), email.as_str()).await? {
        check_seat(tx, &seats, acting.company, existing.id).await?;
        return Err(MembershipError::AccountExists);
    }
    if seats.full() {
        return Err(plan_full(&seats));
    }
    create_account(tx, email, new_account, acting.company).await
}

/// The second half of [`add`]: the membership, with `welcome` its welcome email (the outbox
/// row's id), its `member.added` entry (the member's JSON and `extra`), commit.
async fn join(
    tx: TenantTx<'_>,
    acting: &Acting<'_>,
    user: UserId,
    role: Role,
    welcome: bool,
    extra: Value,
) -> Result<(Member, Option<OutboxId>), MembershipError> {
    let pg = &**tx.client();
    memberships::add(pg, acting.company, user, role)
        .await?
        .ok_or(MembershipError::AlreadyMember)?;
    let welcome = match welcome {
        true => Some(memberships::welcome(pg, acting.company, user, role).await?),
        false => None,
    };
    let member = memberships::get_member(pg, acting.company, user, false)
        .await?
        .ok_or(MembershipError::NotFound)?;
    let mut after = member.audit_json();
    if let (Some(after), Value::Object(extra)) = (after.as_object_mut(), extra) {
        after.extend(extra);
    }
    acting
        .commit(
            tx,
            Entry::new(Action::MemberAdded)
                .target("user", member.user_id)
                .after(after),
        )
        .await?;
    Ok((member, welcome))
}

/// Locks the target's membership and checks the caller may act on it (not themselves, not the
/// owner, not a role above their own).
async fn target(
    tx: &TenantTx<'_>,
    acting: &Acting<'_>,
    user: UserId,
) -> Result<(Role, Member), MembershipError> {
    let actor_role = actor_role(tx, acting, Permission::MembersManage).await?;
    let target = memberships::get_member(&**tx.client(), acting.company, user, true)
        .await?
        .ok_or(MembershipError::NotFound)?;
    if user == acting.user {
        return Err(RoleRuleError::SelfAction.into());
    }
    access::may_act_on(actor_role, target.role)?;
    Ok((actor_role, target))
}

/// Changes a member's role. Returns the member as it is now (unchanged, with no audit entry,
/// when the role was already `role`).
pub async fn change_role(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    user: UserId,
    role: Role,
) -> Result<Member, MembershipError> {
    let tx = conn.transaction().await?;
    lock(&tx, acting.company).await?;
    let (actor_role, before) = target(&tx, acting, user).await?;
    access::may_grant(actor_role, role)?;
    if before.role == role {
        return Ok(before);
    }
    let pg = &**tx.client();
    memberships::set_role(pg, acting.company, user, role).await?;
    // Invitations they sent for roles they may no longer grant go with the old role.
    invitations::revoke_from_inviter(&tx, acting, user, Some(role)).await?;
    let after = memberships::get_member(pg, acting.company, user, false)
        .await?
        .ok_or(MembershipError::NotFound)?;
    acting
        .commit(
            tx,
            Entry::changed(Action::MemberRoleChanged, &before, &after),
        )
        .await?;
    Ok(after)
}

/// Removes a member from the company and revokes their sessions in it at once.
pub async fn remove(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    user: UserId,
) -> Result<(), MembershipError> {
    let tx = conn.transaction().await?;
    lock(&tx, acting.company).await?;
    let (_, before) = target(&tx, acting, user).await?;
    let pg = &**tx.client();
    if !memberships::remove(pg, acting.company, user).await? {
        return Err(MembershipError::NotFound);
    }
    sessions::revoke_for_company(pg, user, acting.company, "membership removed").await?;
    invitations::revoke_from_inviter(&tx, acting, user, None).await?;
    // Their open tasks are nobody's now, and they leave every team (but stay on their own
    // projects' teams: the owner always is on the team).
    crate::tasks::unassign_open(&tx, acting.actor, acting.origin, user, None).await?;
    crate::teams::leave_all(&tx, acting, user).await?;
    acting
        .commit(tx, Entry::removed(Action::MemberRemoved, &before))
        .await?;
    Ok(())
}

/// Activates or deactivates a membership. Deactivating revokes the member's sessions in this
/// company, so a later re-activation needs a fresh login. Unchanged (no audit entry) when the
/// membership already is in that state.
pub async fn set_active(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    user: UserId,
    active: bool,
) -> Result<Member, MembershipError> {
    let tx = conn.transaction().await?;
    lock(&tx, acting.company).await?;
    let (_, before) = target(&tx, acting, user).await?;
    if before.is_active == active {
        return Ok(before);
    }
    let pg = &**tx.client();
    memberships::set_active(pg, acting.company, user, active).await?;
    if !active {
        sessions::revoke_for_company(pg, user, acting.company, "membership deactivated").await?;
        invitations::revoke_from_inviter(&tx, acting, user, None).await?;
        crate::tasks::unassign_open(&tx, acting.actor, acting.origin, user, None).await?;
    }
    let after = memberships::get_member(pg, acting.company, user, false)
        .await?
        .ok_or(MembershipError::NotFound)?;
    let action = if active {
        Action::MemberActivated
    } else {
        Action::MemberDeactivated
    };
    acting
        .commit(tx, Entry::changed(action, &before, &after))
        .await?;
    Ok(after)
}

/// After an operator deactivated `user`'s account (`tenantctl user deactivate`), makes the
/// account's open tasks (not done or cancelled) in the bound tenant — whose company is `company`
/// — nobody's, as deactivating the membership does; each audited as `task.unassigned` by
/// [`Actor::System`] from `origin`. Returns how many; 0 when `user` is not a member here.
///
/// The membership row is locked first (`for update`), so an assignment that checked the
/// account's activity before the deactivation committed (it holds that row `for share`) commits
/// before the tasks are read, and any later one sees the account inactive and is refused.
/// Refused ([`MembershipError::NotAllowed`]) while the account is active: only a deactivated
/// account loses its tasks this way.
pub async fn unassign_deactivated_account(
    conn: &mut TenantConn,
    company: CompanyId,
    user: UserId,
    origin: &Origin,
) -> Result<usize, MembershipError> {
    let tx = conn.transaction().await?;
    let pg = &**tx.client();
    if memberships::get_member(pg, company, user, true)
        .await?
        .is_none()
    {
        return Ok(0);
    }
    let active = users::find_by_id(pg, user)
        .await?
        .is_some_and(|u| u.is_active);
    if active {
        return Err(MembershipError::NotAllowed(
            "the account is active; only a deactivated account's tasks are unassigned".into(),
        ));
    }
    let unassigned = crate::tasks::unassign_open(&tx, Actor::System, origin, user, None).await?;
    tx.commit().await?;
    Ok(unassigned)
}

/// The two memberships after an ownership transfer.
#[derive(Debug, Clone)]
pub struct Transferred {
    pub previous_owner: Member,
    pub new_owner: Member,
}

/// Hands the owner role from the caller to `to`, who must be another active member with a
/// verified email. The caller confirms with their `password` (checked before any lock is taken:
/// hashing is slow) and must still be the active owner once the company row is locked, so of
/// two concurrent transfers exactly one wins.
pub async fn transfer_ownership(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    to: UserId,
    password: &str,
) -> Result<Transferred, MembershipError> {
    let stored = users::find_by_id(&***conn.client(), acting.user)
        .await?
        .map(|u| u.password_hash);
    if !passwords::verify(password, stored).await? {
        return Err(MembershipError::WrongPassword);
    }
    let tx = conn.transaction().await?;
    lock(&tx, acting.company).await?;
    let pg = &**tx.client();
    let owner = memberships::get_member(pg, acting.company, acting.user, true).await?;
    let owner = match owner {
        Some(m) if m.is_active && m.role == Role::Owner => m,
        _ => {
            return Err(MembershipError::NotAllowed(
                "you are no longer the owner of this organization".into(),
            ))
        }
    };
    if to == acting.user {
        return Err(MembershipError::TransferToSelf);
    }
    let target = memberships::get_member(pg, acting.company, to, true)
        .await?
        .ok_or(MembershipError::NotFound)?;
    if !target.is_active {
        return Err(MembershipError::TargetInactive);
    }
    if !target.email_verified {
        return Err(MembershipError::TargetUnverified);
    }
    if !memberships::transfer_ownership(pg, acting.company, acting.user, to).await? {
        return Err(DbError::Corrupt("ownership transfer touched unexpected rows".into()).into());
    }
    let previous_owner = memberships::get_member(pg, acting.company, acting.user, false)
        .await?
        .ok_or(MembershipError::NotFound)?;
    let new_owner = memberships::get_member(pg, acting.company, to, false)
        .await?
        .ok_or(MembershipError::NotFound)?;
    acting
        .record(
            &tx,
            Entry::new(Action::OwnershipTransferred)
                .target("user", to)
                .before(json!({"owner": owner.audit_json(), "new_owner": target.audit_json()}))
                .after(json!({
                    "previous_owner": previous_owner.audit_json(),
                    "owner": new_owner.audit_json(),
                })),
        )
        .await?;
    // The deferred trigger checks "exactly one owner" here.
    tx.commit().await?;
    Ok(Transferred {
        previous_owner,
        new_owner,
    })
}
