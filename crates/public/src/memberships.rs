//! Memberships: which account holds which role in which company.

use std::fmt;
use tokio_postgres::GenericClient;

use crate::db::DbError;
use crate::ids::{CompanyId, MembershipId, UserId};
use crate::names::NameError;

/// A role inside one company, from most to least powerful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Owner,
    Admin,
    Member,
    Viewer,
}

impl Role {
    pub fn parse(input: &str) -> Result<Self, NameError> {
        match input {
            "owner" => Ok(Self::Owner),
            "admin" => Ok(Self::Admin),
            "member" => Ok(Self::Member),
            "viewer" => Ok(Self::Viewer),
            _ => Err(NameError("must be one of owner, admin, member, viewer")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Member => "member",
            Self::Viewer => "viewer",
        }
    }

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

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
    let role: String = row.try_get("role")?;
    Ok(Some(Membership {
        id: MembershipId(row.try_get("id")?),
        user_id,
        company_id,
        role: Role::parse(&role).map_err(|e| DbError::Config(format!("memberships.role {e}")))?,
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
}

pub async fn find_login(
    db: &impl GenericClient,
    email: &str,
    company_id: CompanyId,
) -> Result<Option<LoginCandidate>, DbError> {
    let row = db
        .query_opt(
            "select u.id, u.password_hash, u.is_active, m.role, coalesce(m.is_active, false) \
               from public.users u \
               left join public.memberships m on m.user_id = u.id and m.company_id = $2 \
              where lower(u.email) = lower($1)",
            &[&email, &company_id.0],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let role: Option<String> = row.try_get(3)?;
    let member_active: bool = row.try_get(4)?;
    Ok(Some(LoginCandidate {
        user_id: UserId(row.try_get(0)?),
        password_hash: row.try_get(1)?,
        user_active: row.try_get(2)?,
        role: role
            .filter(|_| member_active)
            .map(|r| Role::parse(&r))
            .transpose()
            .map_err(|e| DbError::Config(format!("memberships.role {e}")))?,
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

/// The companies `user` is an active member of, by name.
pub async fn organizations(
    db: &impl GenericClient,
    user: UserId,
) -> Result<Vec<Organization>, DbError> {
    let rows = db
        .query(
            "select c.id, c.name, c.slug, d.domain, c.plan, c.status, m.role \
               from public.memberships m \
               join public.companies c on c.id = m.company_id \
               left join public.domains d on d.company_id = c.id and d.is_primary \
              where m.user_id = $1 and m.is_active \
              order by c.name, c.slug",
            &[&user.0],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let role: String = r.try_get(6)?;
            Ok(Organization {
                company_id: CompanyId(r.try_get(0)?),
                name: r.try_get(1)?,
                slug: r.try_get(2)?,
                domain: r.try_get(3)?,
                plan: r.try_get(4)?,
                status: r.try_get(5)?,
                role: Role::parse(&role)
                    .map_err(|e| DbError::Config(format!("memberships.role {e}")))?,
            })
        })
        .collect()
}

/// Like [`find_login`], by user id: used when an account switches into a company.
pub async fn active_role(
    db: &impl GenericClient,
    user: UserId,
    company: CompanyId,
) -> Result<Option<Role>, DbError> {
    Ok(find(db, user, company)
        .await?
        .filter(|m| m.is_active)
        .map(|m| m.role))
}
