//! Tasks of a project: title, status, priority, assignee, due date, tags. Reads take any
//! tenant-bound handle; every change takes the acting member, runs in its own transaction and
//! writes its audit entry in it (the recipe of ARCHITECTURE.md, "Adding a tenant resource").

use chrono::{DateTime, Utc};
use tenantry_public::db::{DbError, OnConstraint};
use tenantry_public::{CompanyId, UserId};

use crate::audit::{self, Acting, Action, Actor, Entry, Origin};
use crate::binding::{TenantConn, TenantDb, TenantTx};
use crate::ids::{ProjectId, TaskId};
use crate::ordering::{Order, SortColumn, SortKind, SortValue, Window};
use crate::rows;
use deadpool_postgres::GenericClient;

/// The most characters a task title may have.
pub const MAX_TITLE: usize = 300;
/// The most characters a task description may have.
pub const MAX_DESCRIPTION: usize = 20_000;
/// The most tags a task may carry, and the most characters of one tag.
pub const MAX_TAGS: usize = 20;
pub const MAX_TAG: usize = 50;

tenantry_public::text_enum! {
    /// Where a task is in its life; `done` and `cancelled` are closed.
    pub enum TaskStatus {
        Todo = "todo",
        InProgress = "in_progress",
        InReview = "in_review",
        Done = "done",
        Cancelled = "cancelled",
    }
}

impl TaskStatus {
    /// Neither done nor cancelled.
    pub fn is_open(self) -> bool {
        !matches!(self, Self::Done | Self::Cancelled)
    }
}

tenantry_public::text_enum! {
    /// How urgent a task is.
    pub enum TaskPriority { Low = "low", Medium = "medium", High = "high", Urgent = "urgent" }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: TaskId,
    pub project_id: ProjectId,
    pub title: String,
    pub description: String,
    pub status: TaskStatus,
    pub priority: TaskPriority,
    pub assignee_id: Option<UserId>,
    pub created_by: UserId,
    pub due_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub tags: Vec<String>,
    /// The task's place in its project's order (lowest first; new tasks go last).
    pub position: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

rows::table!(
    Task, "tasks", id: TaskId, deleted: TaskDeleted, not_found: TaskError::NotFound,
    pub(crate) columns: [
        id,
        project_id,
        title,
        description,
        status,
        priority,
        assignee_id,
        created_by,
        due_at,
        completed_at,
        tags,
        position,
        created_at,
        updated_at,
    ]
);

crate::audit::audited!(Task, "task", id: id, [project_id, title, status, priority, assignee_id, due_at, completed_at, tags, position]);

/// A validated new task; the acting member is its creator.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub project_id: ProjectId,
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    pub status: TaskStatus,
    pub priority: TaskPriority,
    pub assignee_id: Option<UserId>,
    pub due_at: Option<DateTime<Utc>>,
}

/// A validated partial update; `None` leaves a field as it is, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct TaskPatch {
    pub title: Option<String>,
    pub description: Option<String>,
    pub status: Option<TaskStatus>,
    pub priority: Option<TaskPriority>,
    pub assignee_id: Option<Option<UserId>>,
    pub due_at: Option<Option<DateTime<Utc>>>,
    pub tags: Option<Vec<String>>,
    pub position: Option<i64>,
}

tenantry_public::text_enum! {
    /// The columns `GET /tasks` may be ordered by (each followed by the id, so the order is total
    /// and keyset pages are stable).
    pub enum TaskSort {
        CreatedAt = "created_at",
        DueAt = "due_at",
        Priority = "priority",
        UpdatedAt = "updated_at",
        Title = "title",
        Position = "position",
    }
}

/// The rank `priority` sorts by: `low` 1 to `urgent` 4 (the order of [`TaskPriority::ALL`]).
const PRIORITY_RANK: &str = "array_position(array['low', 'medium', 'high', 'urgent'], priority)";

impl SortColumn for TaskSort {
    const ALL: &'static [Self] = Self::ALL;

    fn as_str(self) -> &'static str {
        self.as_str()
    }

    fn expr(self) -> &'static str {
        match self {
            Self::Priority => PRIORITY_RANK,
            other => other.as_str(),
        }
    }

    fn kind(self) -> SortKind {
        match self {
            Self::CreatedAt | Self::DueAt | Self::UpdatedAt => SortKind::Time,
            Self::Title => SortKind::Text,
            Self::Priority | Self::Position => SortKind::Int,
        }
    }
}

/// A task list ordering; tasks without a due date come last in both directions.
pub type TaskOrder = Order<TaskSort>;
/// A page of tasks as [`list`] is asked for it.
pub type TaskWindow = Window<TaskSort, TaskId>;

impl Order<TaskSort> {
    /// The default ordering: newest first.
    pub const NEWEST: Self = Order::desc(TaskSort::CreatedAt);
    /// "My tasks": soonest due first, undated last.
    pub const SOONEST_DUE: Self = Order::asc(TaskSort::DueAt);
}

impl TaskPriority {
    /// Its rank in the `priority` ordering: `low` 1 to `urgent` 4.
    pub fn rank(self) -> i64 {
        Self::ALL
            .iter()
            .position(|p| *p == self)
            .map_or(0, |i| i as i64 + 1)
    }
}

impl Task {
    /// This task's value of the `sort` column.
    pub fn sort_value(&self, sort: TaskSort) -> SortValue {
        match sort {
            TaskSort::CreatedAt => SortValue::Time(Some(self.created_at)),
            TaskSort::DueAt => SortValue::Time(self.due_at),
            TaskSort::UpdatedAt => SortValue::Time(Some(self.updated_at)),
            TaskSort::Title => SortValue::Text(Some(self.title.clone())),
            TaskSort::Priority => SortValue::Int(Some(self.priority.rank())),
            TaskSort::Position => SortValue::Int(Some(self.position)),
        }
    }
}

/// Filters for [`list`]; every field is optional (an empty list filters nothing).
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub project: Option<ProjectId>,
    /// Any of these statuses.
    pub statuses: Vec<TaskStatus>,
    /// Any of these priorities.
    pub priorities: Vec<TaskPriority>,
    pub assignee: Option<Assignee>,
    /// Due strictly before / after.
    pub due_before: Option<DateTime<Utc>>,
    pub due_after: Option<DateTime<Utc>>,
    /// Due in the past and still open (not done or cancelled).
    pub overdue: bool,
    /// Carrying this tag.
    pub tag: Option<String>,
    /// A case-insensitive part of the title or description.
    pub search: Option<String>,
}

/// Whose tasks: one member's, or nobody's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignee {
    User(UserId),
    Nobody,
}

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("no such task in this organization")]
    NotFound,
    /// The project is not one of this organization's (never says whether it exists elsewhere).
    #[error("no such project in this organization")]
    UnknownProject,
    #[error("the assignee is not an active member of this organization")]
    AssigneeNotMember,
    /// `If-Match` named a version the task is no longer at.
    #[error("the task has changed since that version; fetch it again")]
    Stale,
    /// Tasks are assigned to the project's team only (`teams`).
    #[error("the assignee is not on the project's team")]
    AssigneeNotOnTeam,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// The foreign key from a task to its project (tenant migration V5).
const PROJECT_FK: &str = "tasks_project_id_fkey";

/// The task filters as SQL, on parameters `$1` to `$10` (`rows::Listed::params`).
const FILTERS: &str = "($1::uuid is null or project_id = $1) \
    and ($2::text[] is null or status = any($2)) \
    and ($3::text[] is null or priority = any($3)) \
    and ($4::uuid is null or assignee_id = $4) \
    and (not $5 or assignee_id is null) \
    and ($6::timestamptz is null or due_at < $6) \
    and ($7::timestamptz is null or due_at > $7) \
    and (not $8 or (due_at < now() and status not in ('done', 'cancelled'))) \
    and ($9::text is null or $9 = any(tags)) \
    and ($10::text is null or strpos(lower(title), lower($10)) > 0 \
         or strpos(lower(description), lower($10)) > 0)";

impl rows::Listed for Task {
    type Filter = TaskFilter;
    type Sort = TaskSort;
    const FILTERS: &'static str = FILTERS;

    fn params(filter: &TaskFilter) -> rows::Params {
        let (assignee, unassigned) = match filter.assignee {
            Some(Assignee::User(u)) => (Some(u), false),
            Some(Assignee::Nobody) => (None, true),
            None => (None, false),
        };
        let names = |v: Vec<&'static str>| (!v.is_empty()).then_some(v);
        vec![
            Box::new(filter.project),
            Box::new(names(filter.statuses.iter().map(|s| s.as_str()).collect())),
            Box::new(names(
                filter.priorities.iter().map(|p| p.as_str()).collect(),
            )),
            Box::new(assignee),
            Box::new(unassigned),
            Box::new(filter.due_before),
            Box::new(filter.due_after),
            Box::new(filter.overdue),
            Box::new(filter.tag.clone()),
            Box::new(filter.search.clone()),
        ]
    }
}

impl rows::Exported for Task {
    const EXPORTED: Action = Action::TaskExported;
    const USER_COLUMN: &'static str = "assignee_id";
}

/// Refuses an assignee who is not an active member of `company` (read in the caller's
/// transaction, the membership locked for share so a concurrent removal waits for this change and
/// then unassigns it).
async fn check_assignee(
    db: &impl TenantDb,
    company: CompanyId,
    assignee: Option<UserId>,
) -> Result<(), TaskError> {
    match assignee {
        Some(user) if !crate::teams::is_active_member(db, company, user).await? => {
            Err(TaskError::AssigneeNotMember)
        }
        _ => Ok(()),
    }
}

/// Refuses an assignee who is not on `project`'s team (the team row locked for share, so a
/// concurrent removal from the team waits for this change and then unassigns it).
async fn check_on_team(
    db: &impl TenantDb,
    project: ProjectId,
    assignee: Option<UserId>,
) -> Result<(), TaskError> {
    let Some(user) = assignee else {
        return Ok(());
    };
    db.client()
        .query_opt(
            "select 1 from project_members where project_id = $1 and user_id = $2 for share",
            &[&project, &user],
        )
        .await
        .map_err(DbError::from)?
        .map(|_| ())
        .ok_or(TaskError::AssigneeNotOnTeam)
}

/// Creates a task in a project of this tenant, audited as `task.created`.
pub async fn create(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    new: &NewTask,
) -> Result<Task, TaskError> {
    let tx = conn.transaction().await?;
    check_assignee(&tx, acting.company, new.assignee_id).await?;
    let completed = (new.status == TaskStatus::Done).then(Utc::now);
    let row = tx
        .client()
        .query_one(
            &format!(
                "insert into tasks (id, project_id, title, description, status, priority, \
                     assignee_id, created_by, due_at, completed_at, tags, position) \
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
                     coalesce((select max(position) + 1 from tasks where project_id = $2), 1)) \
                 returning {COLUMNS}"
            ),
            &[
                &TaskId::new(),
                &new.project_id,
                &new.title,
                &new.description,
                &new.status,
                &new.priority,
                &new.assignee_id,
                &acting.user,
                &new.due_at,
                &completed,
                &new.tags,
            ],
        )
        .await
        .map_err(DbError::from)
        .on_constraint(PROJECT_FK, || TaskError::UnknownProject)?;
    // After the insert, so a project that is not this tenant's is reported as such; a refusal
    // drops the transaction and the row with it.
    check_on_team(&tx, new.project_id, new.assignee_id).await?;
    let task = Task::try_from(&row)?;
    acting
        .commit(tx, Entry::created(Action::TaskCreated, &task))
        .await?;
    Ok(task)
}

/// Applies a patch, audited as `task.updated` with the task before and after.
///
/// With `expected` (the versions an `If-Match` names), the task must still be at one of them
/// ([`Task::updated_at`], checked under the row lock), else [`TaskError::Stale`] and nothing
/// changes.
pub async fn update(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    id: TaskId,
    patch: &TaskPatch,
    expected: Option<&[DateTime<Utc>]>,
) -> Result<Task, TaskError> {
    let current = |task: &Task| match expected {
        Some(versions) if !versions.contains(&task.updated_at) => Err(TaskError::Stale),
        _ => Ok(false),
    };
    change(conn, acting, id, patch, Action::TaskUpdated, current).await
}

/// Marks a task done (`task.completed`) or open again (`task.reopened`, back to `todo`).
/// Idempotent: a task already in that state is returned unchanged, with no entry and its
/// `completed_at` kept.
pub async fn set_done(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    id: TaskId,
    done: bool,
) -> Result<Task, TaskError> {
    let (status, action) = if done {
        (TaskStatus::Done, Action::TaskCompleted)
    } else {
        (TaskStatus::Todo, Action::TaskReopened)
    };
    let patch = TaskPatch {
        status: Some(status),
        ..TaskPatch::default()
    };
    let already = |task: &Task| Ok((task.status == TaskStatus::Done) == done);
    change(conn, acting, id, &patch, action, already).await
}

/// One audited change of a task in its own transaction: check the assignee, lock the task,
/// return it unchanged (no entry) when `unchanged` says so (or its error), else apply `patch`
/// and record `action` with the task before and after.
async fn change(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    id: TaskId,
    patch: &TaskPatch,
    action: Action,
    unchanged: impl FnOnce(&Task) -> Result<bool, TaskError>,
) -> Result<Task, TaskError> {
    let tx = conn.transaction().await?;
    let before = rows::lock::<Task>(&tx, &id).await?;
    if let Some(assignee) = patch.assignee_id {
        check_assignee(&tx, acting.company, assignee).await?;
        check_on_team(&tx, before.project_id, assignee).await?;
    }
    if unchanged(&before)? {
        return Ok(before);
    }
    let after = apply(&tx, id, patch).await?;
    acting
        .commit(tx, Entry::changed(action, &before, &after))
        .await?;
    Ok(after)
}

/// The update statement of a patch, on a locked task. `completed_at` is set when the status
/// becomes `done` (kept while it stays done) and cleared when it leaves it.
async fn apply(db: &impl TenantDb, id: TaskId, patch: &TaskPatch) -> Result<Task, TaskError> {
    let row = db
        .client()
        .query_one(
            &format!(
                "update tasks set \
                    title = coalesce($2, title), \
                    description = coalesce($3, description), \
                    status = coalesce($4, status), \
                    priority = coalesce($5, priority), \
                    assignee_id = case when $6 then $7 else assignee_id end, \
                    due_at = case when $8 then $9 else due_at end, \
                    tags = coalesce($10, tags), \
                    position = coalesce($11, position), \
                    completed_at = case \
                        when coalesce($4, status) <> 'done' then null \
                        else coalesce(completed_at, now()) end, \
                    updated_at = now() \
                  where id = $1 returning {COLUMNS}"
            ),
            &[
                &id,
                &patch.title,
                &patch.description,
                &patch.status,
                &patch.priority,
                &patch.assignee_id.is_some(),
                &patch.assignee_id.flatten(),
                &patch.due_at.is_some(),
                &patch.due_at.flatten(),
                &patch.tags,
                &patch.position,
            ],
        )
        .await
        .map_err(DbError::from)?;
    Ok(Task::try_from(&row)?)
}

/// Unassigns `user`'s open tasks (not done or cancelled) — in `project`, or in every project —
/// in the caller's transaction (leaving a team, or the organization, or a deactivated account),
/// each audited as `task.unassigned` with the task before and after, by `actor` from `origin`
/// (the acting member's, or [`Actor::System`] for an operator command). Returns how many.
pub(crate) async fn unassign_open(
    tx: &TenantTx<'_>,
    actor: Actor,
    origin: &Origin,
    user: UserId,
    project: Option<ProjectId>,
) -> Result<usize, DbError> {
    let rows = tx
        .client()
        .query(
            &format!(
                "update tasks set assignee_id = null, updated_at = now() \
                  where assignee_id = $1 and ($2::uuid is null or project_id = $2) \
                    and status not in ('done', 'cancelled') \
                  returning {COLUMNS}"
            ),
            &[&user, &project],
        )
        .await?;
    for row in &rows {
        let after = Task::try_from(row)?;
        let before = Task {
            assignee_id: Some(user),
            ..after.clone()
        };
        audit::record(
            tx,
            actor,
            origin,
            Entry::changed(Action::TaskUnassigned, &before, &after),
        )
        .await?;
    }
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_priority_rank_lists_every_priority_in_order() {
        let listed: Vec<String> = TaskPriority::ALL.iter().map(|p| format!("'{p}'")).collect();
        assert!(PRIORITY_RANK.contains(&format!("array[{}]", listed.join(", "))));
        assert_eq!(TaskPriority::Low.rank(), 1);
        assert_eq!(TaskPriority::Urgent.rank(), 4);
    }
}
