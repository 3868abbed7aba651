//! Memberships: which account holds which role in which company.

use chrono::{DateTime, Utc};
use tokio_postgres::{GenericClient, Row};

use crate::db::DbError;
use crate::ids::{CompanyId, MembershipId, UserId};
use crate::pagination::Page;
use crate::users;

crate::text_enum! {
    /// A role inside one company, from most to least powerful.
    pub enum Role {
        Owner = "owner",
        Admin = "admin",
        Member = "member",
        Viewer = "viewer",
    }
}

impl Role {
    fn rank(self) -> u8 {
        match self {
            Self::Owner => 3,
            Self::Admin => 2,
            Self::Member => 1,
            Self::Viewer => 0,
        }
    }

    /// True when this role is at least as powerful as `other`.
    pub fn at_least(self, other: Role) -> bool {
        self.rank() >= other.rank()
    }

    /// Whether this role may create, change or delete tenant content.
    pub fn can_write(self) -> bool {
        self.at_least(Role::Member)
    }
}

#[derive(Debug, Clone)]
pub struct Membership {
    pub id: MembershipId,
    pub user_id: UserId,
    pub company_id: CompanyId,
    pub role: Role,
    pub is_active: bool,
}

pub async fn insert(
    db: &impl GenericClient,
    user_id: UserId,
    company_id: CompanyId,
    role: Role,
) -> Result<MembershipId, DbError> {
    let id = MembershipId::new();
    db.execute(
        "insert into public.memberships (id, user_id, company_id, role) values ($1, $2, $3, $4)",
        &[&id.0, &user_id.0, &company_id.0, &role.as_str()],
    )
    .await?;
    Ok(id)
}

pub async fn find(
    db: &impl GenericClient,
    user_id: UserId,
    company_id: CompanyId,
) -> Result<Option<Membership>, DbError> {
    let row = db
        .query_opt(
            "select id, role, is_active from public.memberships \
             where user_id = $1 and company_id = $2",
            &[&user_id.0, &company_id.0],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(Membership {
        id: row.try_get("id")?,
        user_id,
        company_id,
        role: row.try_get("role")?,
        is_active: row.try_get("is_active")?,
    }))
}

/// What a tenant login needs to know about an email, read in one query so no connection is held
/// while the password is checked.
#[derive(Debug, Clone)]
pub struct LoginCandidate {
    pub user_id: UserId,
    pub password_hash: String,
    pub user_active: bool,
    /// The role in the company asked about, if the account is an active member of it.
    pub role: Option<Role>,
    /// Whether the account's password may sign in to that company
    /// ([`User::may_sign_in_to`](crate::users::User::may_sign_in_to)).
    pub proven: bool,
}

pub async fn find_login(
    db: &impl GenericClient,
    email: &str,
    company_id: CompanyId,
) -> Result<Option<LoginCandidate>, DbError> {
    let row = db
        .query_opt(
            &format!(
                "select u.id, u.password_hash, u.is_active, m.role, coalesce(m.is_active, false), \
                        {proven} \
                   from public.users u \
                   left join public.memberships m on m.user_id = u.id and m.company_id = $2 \
                  where lower(u.email) = lower($1)",
                proven = users::proven_for_sql("$2"),
            ),
            &[&email, &company_id.0],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let role: Option<Role> = row.try_get(3)?;
    let member_active: bool = row.try_get(4)?;
    Ok(Some(LoginCandidate {
        user_id: row.try_get(0)?,
        password_hash: row.try_get(1)?,
        user_active: row.try_get(2)?,
        role: role.filter(|_| member_active),
        proven: row.try_get(5)?,
    }))
}

/// One of an account's organizations, as listed on the base host.
#[derive(Debug, Clone)]
pub struct Organization {
    pub company_id: CompanyId,
    pub name: String,
    pub slug: String,
    pub domain: Option<String>,
    pub plan: String,
    pub status: String,
    pub role: Role,
}

/// The companies `user` is an active member of and may sign in to
/// ([`User::may_sign_in_to`](crate::users::User::may_sign_in_to)), by name.
pub async fn organizations(
    db: &impl GenericClient,
    user: UserId,
) -> Result<Vec<Organization>, DbError> {
    let rows = db
        .query(
            &format!(
                "select c.id, c.name, c.slug, d.domain, c.plan, c.status, m.role \
                   from public.memberships m \
                   join public.users u on u.id = m.user_id \
                   join public.companies c on c.id = m.company_id \
                   left join public.domains d on d.company_id = c.id and d.is_primary \
                  where m.user_id = $1 and m.is_active and {proven} \
                  order by c.name, c.slug",
                proven = users::proven_for_sql("m.company_id"),
            ),
            &[&user.0],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Organization {
                company_id: r.try_get(0)?,
                name: r.try_get(1)?,
                slug: r.try_get(2)?,
                domain: r.try_get(3)?,
                plan: r.try_get(4)?,
                status: r.try_get(5)?,
                role: r.try_get(6)?,
            })
        })
        .collect()
}

/// Like [`find_login`], by user id: the role of an active account with an active membership in
/// `company` (used when an account switches into a company). `None` when either is inactive, or
/// when the account may not sign in there yet ([`User::may_sign_in_to`](crate::users::User::may_sign_in_to)).
pub async fn active_role(
    db: &impl GenericClient,
    user: UserId,
    company: CompanyId,
) -> Result<Option<Role>, DbError> {
    let row = db
        .query_opt(
            &format!(
                "select m.role from public.memberships m join public.users u on u.id = m.user_id \
                  where m.user_id = $1 and m.company_id = $2 and m.is_active and u.is_active \
                    and {proven}",
                proven = users::proven_for_sql("m.company_id"),
            ),
            &[&user, &company],
        )
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// A member of one company as the members API shows it: the account joined with its membership.
#[derive(Debug, Clone)]
pub struct Member {
    pub membership_id: MembershipId,
    pub user_id: UserId,
    pub email: String,
    pub full_name: String,
    pub role: Role,
    /// The membership's activity (not the account's).
    pub is_active: bool,
    pub email_verified: bool,
    /// When the membership was created.
    pub joined_at: DateTime<Utc>,
}

const MEMBER_COLUMNS: &str = "m.id, m.user_id, u.email, u.full_name, m.role, m.is_active, \
     u.email_verified_at is not null as email_verified, m.created_at";

impl TryFrom<&Row> for Member {
    type Error = DbError;

    fn try_from(row: &Row) -> Result<Self, DbError> {
        Ok(Self {
            membership_id: row.try_get(0)?,
            user_id: row.try_get(1)?,
            email: row.try_get(2)?,
            full_name: row.try_get(3)?,
            role: row.try_get(4)?,
            is_active: row.try_get(5)?,
            email_verified: row.try_get(6)?,
            joined_at: row.try_get(7)?,
        })
    }
}

/// Filters for [`list`].
#[derive(Debug, Clone, Default)]
pub struct MemberFilter {
    pub role: Option<Role>,
    /// Case-insensitive substring of the email or the full name.
    pub search: Option<String>,
}

/// Lists `company`'s members (active or not) in the order they joined (membership ids are
/// time-ordered), after the keyset position `after`.
pub async fn list(
    db: &impl GenericClient,
    company: CompanyId,
    filter: &MemberFilter,
    after: Option<MembershipId>,
    limit: i64,
) -> Result<Page<Member>, DbError> {
    let sql = format!(
        "select {MEMBER_COLUMNS} \
           from public.memberships m join public.users u on u.id = m.user_id \
          where m.company_id = $1 \
            and ($2::text is null or m.role = $2) \
            and ($3::text is null or strpos(lower(u.email), lower($3)) > 0 \
                 or strpos(lower(u.full_name), lower($3)) > 0) \
            and ($4::uuid is null or m.id > $4) \
          order by m.id \
          limit $5"
    );
    let rows = db
        .query(
            &sql,
            &[
                &company.0,
                &filter.role.map(Role::as_str),
                &filter.search,
                &after,
                &Page::<Member>::fetch_limit(limit),
            ],
        )
        .await?;
    Page::from_rows(&rows, limit, |r| Member::try_from(r))
}

/// One member of `company`; `None` when `user` is not a member of it. With `lock`, the
/// membership row is locked until the end of the transaction.
pub async fn get_member(
    db: &impl GenericClient,
    company: CompanyId,
    user: UserId,
    lock: bool,
) -> Result<Option<Member>, DbError> {
    let sql = format!(
        "select {MEMBER_COLUMNS} \
           from public.memberships m join public.users u on u.id = m.user_id \
          where m.company_id = $1 and m.user_id = $2{}",
        if lock { " for update of m" } else { "" }
    );
    db.query_opt(&sql, &[&company.0, &user.0])
        .await?
        .as_ref()
        .map(Member::try_from)
        .transpose()
}

/// What the member-changing operations need to know about a company, read under a row lock.
#[derive(Debug, Clone)]
pub struct CompanySeats {
    pub name: String,
    pub plan: String,
    /// The plan's member limit; `None` is unlimited.
    pub max_members: Option<i32>,
    /// The plan's project limit; `None` is unlimited (counted by the tenant crate, in the
    /// tenant's own schema, while this lock is held).
    pub max_projects: Option<i32>,
    /// Memberships, active or not: a deactivated member still holds a seat.
    pub members: i64,
}

/// Locks `company`'s row (`for no key update`: it serialises every membership change of this
/// company, while logins, which only take key-share locks through foreign keys, go on) and reads
/// its plan limit and member count. Call it first in every transaction that changes memberships;
/// `None` when the company does not exist.
pub async fn lock_company(
    db: &impl GenericClient,
    company: CompanyId,
) -> Result<Option<CompanySeats>, DbError> {
    let Some(row) = db
        .query_opt(
            "select c.name, c.plan, p.max_members, p.max_projects \
               from public.companies c join public.plans p on p.code = c.plan \
              where c.id = $1 \
              for no key update of c",
            &[&company.0],
        )
        .await?
    else {
        return Ok(None);
    };
    // Counted after the lock is held, so no concurrent addition can slip past the limit.
    let members: i64 = db
        .query_one(
            "select count(*) from public.memberships where company_id = $1",
            &[&company.0],
        )
        .await?
        .try_get(0)?;
    Ok(Some(CompanySeats {
        name: row.try_get(0)?,
        plan: row.try_get(1)?,
        max_members: row.try_get(2)?,
        max_projects: row.try_get(3)?,
        members,
    }))
}

impl CompanySeats {
    /// True when one more membership would exceed the plan.
    pub fn full(&self) -> bool {
        self.max_members
            .is_some_and(|max| self.members >= i64::from(max))
    }
}

/// Adds `user` to `company`. `Ok(None)` when the user already is a member.
pub async fn add(
    db: &impl GenericClient,
    company: CompanyId,
    user: UserId,
    role: Role,
) -> Result<Option<MembershipId>, DbError> {
    let id = MembershipId::new();
    let n = db
        .execute(
            "insert into public.memberships (id, user_id, company_id, role) values ($1, $2, $3, $4) \
             on conflict (user_id, company_id) do nothing",
            &[&id.0, &user.0, &company.0, &role.as_str()],
        )
        .await?;
    Ok((n == 1).then_some(id))
}

/// Writes the welcome email for `user`'s new membership of `company` with `role` to the outbox
/// (call it in the transaction that creates the membership, so it is written exactly once per
/// membership: a rolled-back join writes nothing, and a second join of the same member is
/// refused before it gets here).
pub async fn welcome(
    db: &impl GenericClient,
    company: CompanyId,
    user: UserId,
    role: Role,
) -> Result<crate::mail::OutboxId, DbError> {
    let row = db
        .query_one(
            "select u.email, coalesce(nullif(btrim(u.full_name), ''), u.email), c.name \
               from public.users u, public.companies c where u.id = $1 and c.id = $2",
            &[&user.0, &company.0],
        )
        .await?;
    let email = crate::mail::Email::Welcome {
        to: row.try_get(0)?,
        full_name: row.try_get(1)?,
        organization: row.try_get(2)?,
        role: role.as_str().to_owned(),
    };
    crate::mail::enqueue(db, &email).await
}

/// Sets a member's role; false when `user` is not a member of `company`.
pub async fn set_role(
    db: &impl GenericClient,
    company: CompanyId,
    user: UserId,
    role: Role,
) -> Result<bool, DbError> {
    let n = db
        .execute(
            "update public.memberships set role = $3, updated_at = now() \
              where company_id = $1 and user_id = $2",
            &[&company.0, &user.0, &role.as_str()],
        )
        .await?;
    Ok(n == 1)
}

/// Activates or deactivates a membership; false when `user` is not a member of `company`.
pub async fn set_active(
    db: &impl GenericClient,
    company: CompanyId,
    user: UserId,
    active: bool,
) -> Result<bool, DbError> {
    let n = db
        .execute(
            "update public.memberships set is_active = $3, updated_at = now() \
              where company_id = $1 and user_id = $2",
            &[&company.0, &user.0, &active],
        )
        .await?;
    Ok(n == 1)
}

/// Removes a membership; false when `user` is not a member of `company`.
pub async fn remove(
    db: &impl GenericClient,
    company: CompanyId,
    user: UserId,
) -> Result<bool, DbError> {
    let n = db
        .execute(
            "delete from public.memberships where company_id = $1 and user_id = $2",
            &[&company.0, &user.0],
        )
        .await?;
    Ok(n == 1)
}

/// Hands `company`'s owner role from `from` to `to`: the owner becomes an admin, `to` the owner.
/// Demotes first (the partial unique index allows one owner at any moment); the deferred
/// trigger checks exactly one owner at commit. The caller has locked the company and checked
/// both memberships; false when either row was not as expected.
pub async fn transfer_ownership(
    db: &impl GenericClient,
    company: CompanyId,
    from: UserId,
    to: UserId,
) -> Result<bool, DbError> {
    let demoted = db
        .execute(
            "update public.memberships set role = 'admin', updated_at = now() \
              where company_id = $1 and user_id = $2 and role = 'owner'",
            &[&company.0, &from.0],
        )
        .await?;
    if demoted != 1 {
        return Ok(false);
    }
    let promoted = db
        .execute(
            "update public.memberships set role = 'owner', updated_at = now() \
              where company_id = $1 and user_id = $2 and is_active",
            &[&company.0, &to.0],
        )
        .await?;
    Ok(promoted == 1)
}
