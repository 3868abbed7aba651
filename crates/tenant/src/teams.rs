//! Project teams (`project_members`, tenant migration V6): who works on a project, as `lead` or
//! `contributor`. The project owner is always on the team, as lead. Only active members of the
//! organization join; tasks of a project are assigned to its team only (`tasks`). Leaving a team
//! unassigns one's open tasks in that project, in the same transaction, each audited.
//!
//! Who may change a team: admins and owners of the organization, and the project's leads (their
//! role must still allow writing content; the HTTP layer checks that first).

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tenantry_public::db::DbError;
use tenantry_public::memberships::Role;
use tenantry_public::{CompanyId, UserId};
use tokio_postgres::Row;

use crate::audit::{Acting, Action, Entry};
use crate::binding::{TenantConn, TenantDb, TenantTx};
use crate::ids::ProjectId;
use crate::projects::Project;
use deadpool_postgres::GenericClient;

tenantry_public::text_enum! {
    /// What someone is on a project's team.
    pub enum TeamRole {
        Lead = "lead",
        Contributor = "contributor",
    }
}

/// One member of a project's team, with their account's name and email.
#[derive(Debug, Clone, PartialEq)]
pub struct TeamMember {
    pub project_id: ProjectId,
    pub user_id: UserId,
    pub email: String,
    pub full_name: String,
    pub role: TeamRole,
    pub added_at: DateTime<Utc>,
}

const COLUMNS: &str = "pm.project_id, pm.user_id, u.email, u.full_name, pm.role, pm.added_at";

impl TryFrom<&Row> for TeamMember {
    type Error = DbError;

    fn try_from(row: &Row) -> Result<Self, DbError> {
        Ok(Self {
            project_id: row.try_get(0)?,
            user_id: row.try_get(1)?,
            email: row.try_get(2)?,
            full_name: row.try_get(3)?,
            role: row.try_get(4)?,
            added_at: row.try_get(5)?,
        })
    }
}

impl TeamMember {
    fn audit_json(&self) -> Value {
        json!({"user_id": self.user_id, "email": self.email, "role": self.role})
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TeamError {
    /// No such project here, or (for a removal) the user is not on its team.
    #[error("no such project, or no such team member, in this organization")]
    NotFound,
    /// The user is not an active member of this organization (never says more about them).
    #[error("the user is not an active member of this organization")]
    NotMember,
    /// The caller is neither an admin or owner of the organization nor a lead of the project.
    #[error("only the project's leads, admins and owners may change its team")]
    NotAllowed,
    /// The project owner is always on the team, as lead.
    #[error("the project owner is always on the team, as lead")]
    Owner,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<tokio_postgres::Error> for TeamError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(e.into())
    }
}

/// Puts a new project's owner on its team as lead, in the creating transaction.
pub(crate) async fn add_owner(tx: &TenantTx<'_>, project: &Project) -> Result<(), DbError> {
    tx.client()
        .execute(
            "insert into project_members (project_id, user_id, role) values ($1, $2, 'lead')",
            &[&project.id, &project.owner_id],
        )
        .await?;
    Ok(())
}

/// The team of a project, leads first, then in the order they joined.
pub async fn list(db: &impl TenantDb, project: ProjectId) -> Result<Vec<TeamMember>, TeamError> {
    let client = db.client();
    if client
        .query_opt("select 1 from projects where id = $1", &[&project])
        .await?
        .is_none()
    {
        return Err(TeamError::NotFound);
    }
    let rows = client
        .query(
            &format!(
                "select {COLUMNS} from project_members pm join public.users u on u.id = pm.user_id \
                  where pm.project_id = $1 \
                  order by pm.role = 'lead' desc, pm.added_at, pm.user_id"
            ),
            &[&project],
        )
        .await?;
    rows.iter()
        .map(|r| TeamMember::try_from(r).map_err(TeamError::from))
        .collect()
}

async fn get(
    db: &impl TenantDb,
    project: ProjectId,
    user: UserId,
    lock: bool,
) -> Result<Option<TeamMember>, DbError> {
    let sql = format!(
        "select {COLUMNS} from project_members pm join public.users u on u.id = pm.user_id \
          where pm.project_id = $1 and pm.user_id = $2{}",
        if lock { " for update of pm" } else { "" }
    );
    db.client()
        .query_opt(&sql, &[&project, &user])
        .await?
        .as_ref()
        .map(TeamMember::try_from)
        .transpose()
}

/// Locks the project and checks that the caller (organization role `role`, as the request
/// carries it) may change its team. Returns the project's owner.
async fn authorize(
    tx: &TenantTx<'_>,
    acting: &Acting<'_>,
    role: Role,
    project: ProjectId,
) -> Result<UserId, TeamError> {
    let owner: UserId = tx
        .client()
        .query_opt(
            "select owner_id from projects where id = $1 for update",
            &[&project],
        )
        .await?
        .ok_or(TeamError::NotFound)?
        .try_get(0)?;
    if role.at_least(Role::Admin) {
        return Ok(owner);
    }
    match get(tx, project, acting.user, false).await? {
        Some(m) if m.role == TeamRole::Lead => Ok(owner),
        _ => Err(TeamError::NotAllowed),
    }
}

/// Whether `user` is an active member (membership and account) of `company`. The membership is
/// locked for share, so a concurrent removal or deactivation waits for this transaction (and
/// then finds what it did) or is seen by it.
pub(crate) async fn is_active_member(
    db: &impl TenantDb,
    company: CompanyId,
    user: UserId,
) -> Result<bool, DbError> {
    Ok(db
        .client()
        .query_opt(
            "select 1 from public.memberships m join public.users u on u.id = m.user_id \
              where m.company_id = $1 and m.user_id = $2 and m.is_active and u.is_active \
              for share of m",
            &[&company, &user],
        )
        .await?
        .is_some())
}

/// The team member as they are now, and whether they were added (`true`) rather than kept or
/// given another role.
pub type Joined = (TeamMember, bool);

/// Puts `user` on the project's team with `team_role`, or gives a member of the team that role.
/// Audited as `project.member_added` or `project.member_role_changed` (nothing when unchanged).
pub async fn put(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    role: Role,
    project: ProjectId,
    user: UserId,
    team_role: TeamRole,
) -> Result<Joined, TeamError> {
    let tx = conn.transaction().await?;
    let owner = authorize(&tx, acting, role, project).await?;
    if user == owner && team_role != TeamRole::Lead {
        return Err(TeamError::Owner);
    }
    if !is_active_member(&tx, acting.company, user).await? {
        return Err(TeamError::NotMember);
    }
    let before = get(&tx, project, user, true).await?;
    if before.as_ref().is_some_and(|b| b.role == team_role) {
        return before.map(|b| (b, false)).ok_or(TeamError::NotFound);
    }
    tx.client()
        .execute(
            "insert into project_members (project_id, user_id, role) values ($1, $2, $3) \
             on conflict (project_id, user_id) do update set role = excluded.role",
            &[&project, &user, &team_role],
        )
        .await?;
    let after = get(&tx, project, user, false)
        .await?
        .ok_or_else(|| DbError::Corrupt("team member vanished inside its transaction".into()))?;
    let entry = match &before {
        None => Entry::new(Action::ProjectMemberAdded)
            .target("project", project)
            .after(after.audit_json()),
        Some(b) => Entry::new(Action::ProjectMemberRoleChanged)
            .target("project", project)
            .before(b.audit_json())
            .after(after.audit_json()),
    };
    acting.commit(tx, entry).await?;
    Ok((after, before.is_none()))
}

/// Takes `user` off the project's team (never its owner) and unassigns their open tasks in the
/// project; audited as `project.member_removed` and one `task.unassigned` per task.
pub async fn remove(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    role: Role,
    project: ProjectId,
    user: UserId,
) -> Result<(), TeamError> {
    let tx = conn.transaction().await?;
    let owner = authorize(&tx, acting, role, project).await?;
    if user == owner {
        return Err(TeamError::Owner);
    }
    let before = get(&tx, project, user, true)
        .await?
        .ok_or(TeamError::NotFound)?;
    tx.client()
        .execute(
            "delete from project_members where project_id = $1 and user_id = $2",
            &[&project, &user],
        )
        .await?;
    crate::tasks::unassign_open(&tx, acting.actor, acting.origin, user, Some(project)).await?;
    let entry = Entry::new(Action::ProjectMemberRemoved)
        .target("project", project)
        .before(before.audit_json());
    acting.commit(tx, entry).await?;
    Ok(())
}

/// Takes `user` off every team except those of projects they own (the owner stays on the team),
/// in the caller's transaction (a removal from the organization); each audited as
/// `project.member_removed`.
pub(crate) async fn leave_all(
    tx: &TenantTx<'_>,
    acting: &Acting<'_>,
    user: UserId,
) -> Result<(), DbError> {
    let rows = tx
        .client()
        .query(
            "delete from project_members pm using projects p \
              where p.id = pm.project_id and pm.user_id = $1 and p.owner_id <> $1 \
              returning pm.project_id, pm.role",
            &[&user],
        )
        .await?;
    for row in &rows {
        let project: ProjectId = row.try_get(0)?;
        let role: TeamRole = row.try_get(1)?;
        acting
            .record(
                tx,
                Entry::new(Action::ProjectMemberRemoved)
                    .target("project", project)
                    .before(json!({"user_id": user, "role": role})),
            )
            .await?;
    }
    Ok(())
}
