//! `/api/v1/tasks`: list (filters, keyset pages), create, read, update, complete, reopen and
//! delete the tasks of the caller's tenant, and remind a task's assignee of it by email.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tenantry_public::UserId;
use tenantry_tenant::access::Permission;
use tenantry_tenant::notifications::{self, Reminder};
use tenantry_tenant::projects;
use tenantry_tenant::tasks::{
    self, Assignee, NewTask, Task, TaskFilter, TaskOrder, TaskPatch, TaskPriority, TaskSort,
    TaskStatus, MAX_DESCRIPTION, MAX_TAG, MAX_TAGS, MAX_TITLE,
};
use tenantry_tenant::{rows, ProjectId, TaskId};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::TenantRequest;
use crate::config::links;
use crate::error::ApiError;
use crate::export::ExportParams;
use crate::fields::{self, Field, Fields, QueryValues};
use crate::host::link_host;
use crate::pagination::{self, ListQuery, Page, PageParams, Paging, SortKey};
use crate::routes::resource;
use crate::schema;
use crate::views::TaskView;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/tasks").get(list).post(create))
        .service(resource("/tasks/mine").get(mine))
        .service(resource("/tasks/export").get(export))
        .service(resource("/projects/{id}/tasks").get(of_project))
        .service(
            resource("/tasks/{id}")
                .get(get)
                .patch(update)
                .delete(delete),
        )
        .service(resource("/tasks/{id}/complete").post(complete))
        .service(resource("/tasks/{id}/reopen").post(reopen))
        .service(resource("/tasks/{id}/remind").post(remind));
}

#[derive(OpenApi)]
#[openapi(paths(
    list, mine, of_project, export, create, get, update, complete, reopen, delete, remind
))]
pub struct Api;

/// Whose tasks `GET /tasks` and its export show; the other lists fix these by their path.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskOwnerQuery {
    /// Only tasks of this project (id).
    #[param(schema_with = schema::id)]
    pub project: Option<String>,
    /// Only tasks assigned to this member (user id), to `me`, or to nobody (`none`).
    #[param(schema_with = schema::assignee_filter)]
    pub assignee: Option<String>,
}

/// The filters and ordering every task list takes, as documented; [`list_request`] reads them
/// from the query string (repeatable ones may also be comma lists).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskQuery {
    /// Only tasks in these statuses (repeatable, or a comma list).
    #[param(schema_with = schema::task_statuses, style = Form, explode)]
    pub status: Option<Vec<String>>,
    /// Only tasks of these priorities (repeatable, or a comma list).
    #[param(schema_with = schema::task_priorities, style = Form, explode)]
    pub priority: Option<Vec<String>>,
    /// Only tasks due before this instant (RFC 3339).
    #[param(schema_with = schema::instant)]
    pub due_before: Option<String>,
    /// Only tasks due after this instant (RFC 3339).
    #[param(schema_with = schema::instant)]
    pub due_after: Option<String>,
    /// `true`: only tasks due in the past and neither done nor cancelled.
    pub overdue: Option<bool>,
    /// Only tasks carrying this tag.
    #[param(schema_with = schema::tag)]
    pub tag: Option<String>,
    /// A case-insensitive part of the title or description.
    #[param(schema_with = schema::search)]
    pub search: Option<String>,
    /// The order: a column, `-` first for descending (`priority` sorts low to urgent); ties by
    /// id, tasks without a due date last. The default is `-created_at`, `due_at` for
    /// `/tasks/mine`.
    #[param(schema_with = schema::task_ordering)]
    pub ordering: Option<String>,
}

/// What a new task and a patch share. Absent: the default for a new task, unchanged in a patch.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TaskTraits {
    #[schema(schema_with = schema::task_description)]
    pub description: Option<String>,
    /// todo (a new task's default), in_progress, in_review, done or cancelled. Moving to `done`
    /// sets `completed_at`; moving out of it clears it.
    #[schema(schema_with = schema::task_status)]
    pub status: Option<String>,
    /// low, medium (a new task's default), high or urgent.
    #[schema(schema_with = schema::task_priority)]
    pub priority: Option<String>,
    /// At most 20 labels of 1 to 50 characters (trimmed, repeats dropped).
    #[schema(schema_with = schema::tags)]
    pub tags: Option<Vec<String>>,
}

/// [`TaskTraits`] parsed: each `None` when absent.
type Traits = (
    Option<String>,
    Option<TaskStatus>,
    Option<TaskPriority>,
    Option<Vec<String>>,
);

impl TaskTraits {
    fn parse(&self) -> Field<Traits> {
        (
            fields::text("description", &self.description, MAX_DESCRIPTION),
            fields::parse_opt("status", &self.status, TaskStatus::parse),
            fields::parse_opt("priority", &self.priority, TaskPriority::parse),
            self.tags.as_deref().map(tags).transpose(),
        )
            .collect_fields()
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateTask {
    #[schema(schema_with = schema::required_id, required = true)]
    pub project_id: Option<String>,
    #[schema(example = "Write the launch post")]
    #[schema(schema_with = schema::task_title, required = true)]
    pub title: Option<String>,
    #[serde(flatten)]
    pub traits: TaskTraits,
    /// An active member of this organization.
    #[schema(schema_with = schema::id)]
    pub assignee_id: Option<String>,
    /// RFC 3339.
    #[schema(schema_with = schema::instant)]
    pub due_at: Option<String>,
}

impl TryFrom<CreateTask> for NewTask {
    type Error = ApiError;

    fn try_from(b: CreateTask) -> Result<Self, ApiError> {
        let (project_id, title, (description, status, priority, tags), assignee_id, due_at) = (
            fields::parse("project_id", &b.project_id, |id| {
                id.trim()
                    .parse::<ProjectId>()
                    .map_err(|_| "must be a project id (UUID)")
            }),
            fields::name("title", &b.title, MAX_TITLE),
            b.traits.parse(),
            fields::parse_opt("assignee_id", &b.assignee_id, user_id),
            b.due_at
                .as_deref()
                .map(|d| fields::instant("due_at", d))
                .transpose(),
        )
            .collect()?;
        Ok(NewTask {
            project_id,
            title,
            description: description.unwrap_or_default(),
            status: status.unwrap_or(TaskStatus::Todo),
            priority: priority.unwrap_or(TaskPriority::Medium),
            assignee_id,
            due_at,
            tags: tags.unwrap_or_default(),
        })
    }
}

/// Absent fields stay as they are; `null` clears `assignee_id` or `due_at`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateTask {
    /// A new title (not blank).
    #[schema(schema_with = schema::task_title_or_null)]
    pub title: Option<String>,
    #[serde(flatten)]
    pub traits: TaskTraits,
    /// An active member of this organization; `null` unassigns.
    #[serde(default, deserialize_with = "fields::present")]
    #[schema(schema_with = schema::id)]
    pub assignee_id: Option<Option<String>>,
    /// RFC 3339; `null` clears it.
    #[serde(default, deserialize_with = "fields::present")]
    #[schema(schema_with = schema::instant)]
    pub due_at: Option<Option<String>>,
    /// A new place in the project's order (lowest first). Read as a JSON number, so `3.0` is 3.
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 9_007_199_254_740_991_i64)]
    pub position: Option<f64>,
}

impl TryFrom<UpdateTask> for TaskPatch {
    type Error = ApiError;

    fn try_from(b: UpdateTask) -> Result<Self, ApiError> {
        let (title, (description, status, priority, tags), assignee_id, due_at, position) = (
            fields::parse_opt("title", &b.title, |t| {
                tenantry_public::names::display_name(t, MAX_TITLE)
            }),
            b.traits.parse(),
            fields::clearable(&b.assignee_id, |id| {
                fields::check("assignee_id", user_id(id))
            }),
            fields::clearable(&b.due_at, |d| fields::instant("due_at", d)),
            position(b.position),
        )
            .collect()?;
        Ok(TaskPatch {
            title,
            description,
            status,
            priority,
            assignee_id,
            due_at,
            tags,
            position,
        })
    }
}

/// The largest position: what a JSON number holds exactly.
const MAX_POSITION: i64 = 9_007_199_254_740_991;

/// A whole number from 0 to [`MAX_POSITION`] (every such number is exact in an `f64`).
fn position(raw: Option<f64>) -> Field<Option<i64>> {
    raw.map(|p| fields::whole_number("position", p, 0, MAX_POSITION))
        .transpose()
}

fn user_id(raw: &str) -> Result<UserId, &'static str> {
    raw.trim().parse().map_err(|_| "must be a user id (UUID)")
}

/// Tags: trimmed, 1 to 50 characters each, at most 20, duplicates dropped (first kept).
fn tags(raw: &[String]) -> Field<Vec<String>> {
    if raw.len() > MAX_TAGS {
        return Err(fields::invalid(
            "tags",
            format!("must be at most {MAX_TAGS} tags"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    for tag in raw {
        let tag = fields::check("tags", tenantry_public::names::display_name(tag, MAX_TAG))?;
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    Ok(out)
}

/// Which tasks a list shows: every task, the caller's, or one project's.
#[derive(Debug, Clone, Copy)]
enum Scope {
    All,
    Mine,
    Project(ProjectId),
}

impl Scope {
    fn default_order(self) -> TaskOrder {
        match self {
            Self::Mine => TaskOrder::SOONEST_DUE,
            Self::All | Self::Project(_) => TaskOrder::NEWEST,
        }
    }
}

/// Filters and ordering from the query string ([`TaskQuery`]; the scope fixes `assignee` or
/// `project` and the defaults): 400 naming the parameter when one is bad.
fn list_request(
    q: &QueryValues,
    me: UserId,
    scope: Scope,
) -> Result<(TaskFilter, TaskOrder), ApiError> {
    let project = q.one("project", |p| {
        p.trim()
            .parse::<ProjectId>()
            .map_err(|_| "must be a project id (UUID)")
    })?;
    let assignee = q.one("assignee", |a| match a.trim() {
        "me" => Ok(Assignee::User(me)),
        "none" => Ok(Assignee::Nobody),
        id => user_id(id)
            .map(Assignee::User)
            .map_err(|_| "must be a user id (UUID), me or none"),
    })?;
    let instant = |raw: &str| {
        DateTime::parse_from_rfc3339(raw.trim())
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| "must be an RFC 3339 date-time")
    };
    let overdue = q.one("overdue", |o| match o.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("must be true or false"),
    })?;
    let tag = |raw: &str| {
        tenantry_public::names::display_name(raw, MAX_TAG)
            .map_err(|_| "must be 1 to 50 characters, without control characters")
    };
    let mut filter = TaskFilter {
        project,
        statuses: q.list("status", TaskStatus::parse)?,
        priorities: q.list("priority", TaskPriority::parse)?,
        assignee,
        due_before: q.one("due_before", instant)?,
        due_after: q.one("due_after", instant)?,
        overdue: overdue.unwrap_or(false),
        tag: q.one("tag", tag)?,
        search: q.one("search", fields::search)?.filter(|s| !s.is_empty()),
    };
    let ordering = q
        .one("ordering", |o| Ok::<_, &str>(o.to_owned()))?
        .map(|o| pagination::ordering::<TaskSort>(&o))
        .transpose()?;
    let order = ordering.unwrap_or(scope.default_order());
    match scope {
        Scope::All => {}
        Scope::Mine => {
            filter.assignee = Some(Assignee::User(me));
            if filter.statuses.is_empty() {
                filter.statuses = TaskStatus::ALL
                    .iter()
                    .copied()
                    .filter(|s| s.is_open())
                    .collect();
            }
        }
        Scope::Project(id) => filter.project = Some(id),
    }
    // Listed in one order whatever order they were given in, so equal filters make equal
    // cursors and `next` links.
    filter
        .statuses
        .sort_by_key(|s| TaskStatus::ALL.iter().position(|a| a == s));
    filter
        .priorities
        .sort_by_key(|p| TaskPriority::ALL.iter().position(|a| a == p));
    Ok((filter, order))
}

/// The list a cursor is bound to and `next` repeats: the ordering and the normalised filters
/// (`me` resolved to the id).
fn list_query(f: &TaskFilter, order: TaskOrder, default: TaskOrder) -> ListQuery {
    let assignee = f.assignee.map(|a| match a {
        Assignee::User(u) => u.to_string(),
        Assignee::Nobody => "none".to_owned(),
    });
    let joined = |values: Vec<String>| (!values.is_empty()).then(|| values.join(","));
    ListQuery::new(order.name())
        .filter("project", f.project)
        .filter(
            "status",
            joined(f.statuses.iter().map(ToString::to_string).collect()),
        )
        .filter(
            "priority",
            joined(f.priorities.iter().map(ToString::to_string).collect()),
        )
        .filter("assignee", assignee)
        .filter("due_before", f.due_before.map(|t| t.to_rfc3339()))
        .filter("due_after", f.due_after.map(|t| t.to_rfc3339()))
        .filter("overdue", f.overdue.then_some("true"))
        .filter("tag", f.tag.as_deref())
        .filter("search", f.search.as_deref())
        .filter("ordering", (order != default).then(|| order.name()))
}

/// Lists the tenant's tasks, newest first unless `ordering` says otherwise, with filters.
#[utoipa::path(get, path = "/api/v1/tasks", tag = "tasks", params(TaskOwnerQuery, TaskQuery, PageParams),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Page<TaskView>),
              (status = 400, description = "A bad filter, ordering, cursor or limit (the problem names the parameter)")))]
pub async fn list(
    cx: TenantRequest,
    query: QueryValues,
    paging: Paging,
) -> Result<HttpResponse, ApiError> {
    list_in(cx, &query, paging, Scope::All).await
}

/// The caller's tasks: the open ones unless `status` says otherwise, soonest due first
/// (undated last) unless `ordering` says otherwise.
#[utoipa::path(get, path = "/api/v1/tasks/mine", tag = "tasks", params(TaskQuery, PageParams),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Page<TaskView>),
              (status = 400, description = "A bad filter, ordering, cursor or limit (the problem names the parameter)")))]
pub async fn mine(
    cx: TenantRequest,
    query: QueryValues,
    paging: Paging,
) -> Result<HttpResponse, ApiError> {
    list_in(cx, &query, paging, Scope::Mine).await
}

/// One project's tasks: `GET /tasks?project={id}`, and 404 for a project not of this tenant.
#[utoipa::path(get, path = "/api/v1/projects/{id}/tasks", tag = "tasks",
    params(("id" = Uuid, Path, description = "Project id"), TaskQuery, PageParams),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Page<TaskView>),
              (status = 400, description = "A bad filter, ordering, cursor or limit (the problem names the parameter)"),
              (status = 404, description = "No such project in this organization")))]
pub async fn of_project(
    cx: TenantRequest,
    id: web::Path<ProjectId>,
    query: QueryValues,
    paging: Paging,
) -> Result<HttpResponse, ApiError> {
    list_in(cx, &query, paging, Scope::Project(*id)).await
}

async fn list_in(
    cx: TenantRequest,
    query: &QueryValues,
    paging: Paging,
    scope: Scope,
) -> Result<HttpResponse, ApiError> {
    cx.require(Permission::ContentRead)?;
    let (filter, order) = list_request(query, cx.user.user_id, scope)?;
    let page =
        paging.request::<SortKey<TaskId>>(list_query(&filter, order, scope.default_order()))?;
    let window = page.window(order)?;
    let (conn, found) = cx.first_page::<Task>(&filter, &window).await?;
    // An empty page of a project's tasks: is there such a project at all?
    if let (Scope::Project(id), true) = (scope, found.items.is_empty()) {
        projects::get(&conn, id).await?.ok_or(ApiError::NotFound)?;
    }
    drop(conn);
    Ok(HttpResponse::Ok().json(page.respond(
        found,
        |t| pagination::sort_key(&t.sort_value(order.sort), t.id),
        TaskView::from,
    )))
}

/// The columns of a task export, in order.
const EXPORT_HEADER: [&str; 15] = [
    "id",
    "project_id",
    "title",
    "description",
    "status",
    "priority",
    "assignee_id",
    "assignee_email",
    "created_by",
    "due_at",
    "completed_at",
    "tags",
    "position",
    "created_at",
    "updated_at",
];

/// Every task the filters select, as CSV (`Accept: text/csv` or `format=csv`), streamed row by
/// row with a header row; cells that a spreadsheet would run as a formula are neutralised.
/// Viewers may export; each export is audited (`task.exported`, with its filters).
#[utoipa::path(get, path = "/api/v1/tasks/export", tag = "tasks",
    params(TaskOwnerQuery, TaskQuery, ExportParams), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, content_type = "text/csv", body = String,
                description = "RFC 4180 CSV with a header row; `Content-Disposition: attachment; filename=\"tasks-YYYY-MM-DD.csv\"`"),
              (status = 400, description = "A bad filter, ordering or format (the problem names the parameter)"),
              (status = 406, description = "`Accept` admits no text/csv")))]
pub async fn export(
    cx: TenantRequest,
    req: HttpRequest,
    query: QueryValues,
) -> Result<HttpResponse, ApiError> {
    cx.require(Permission::ContentRead)?;
    crate::export::negotiate(&req)?;
    let (filter, order) = list_request(&query, cx.user.user_id, Scope::All)?;
    let described = list_query(&filter, order, TaskOrder::NEWEST).describe();
    let conn = cx.bound().await?;
    let rows = rows::export::<Task>(conn, &cx.acting(), &filter, order, described).await?;
    Ok(crate::export::respond(
        "tasks",
        &EXPORT_HEADER,
        rows,
        |(t, email), r| {
            r.cell(Some(t.id))
                .cell(Some(t.project_id))
                .text(&t.title)
                .text(&t.description)
                .text(t.status.as_str())
                .text(t.priority.as_str())
                .cell(t.assignee_id)
                .cell(email.as_deref())
                .cell(Some(t.created_by))
                .cell(t.due_at.map(rfc3339))
                .cell(t.completed_at.map(rfc3339))
                .text(&t.tags.join(", "))
                .cell(Some(t.position))
                .text(&rfc3339(t.created_at))
                .text(&rfc3339(t.updated_at));
        },
    ))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Creates a task in one of the tenant's projects. Viewers may not.
#[utoipa::path(post, path = "/api/v1/tasks", tag = "tasks", request_body = CreateTask,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = TaskView),
              (status = 403, description = "Viewer"),
              (status = 422, description = "Invalid values, a project not of this organization, or an assignee who is not an active member")))]
pub async fn create(
    cx: TenantRequest,
    body: web::Json<CreateTask>,
) -> Result<HttpResponse, ApiError> {
    cx.require(Permission::ContentWrite)?;
    let new = NewTask::try_from(body.into_inner())?;
    let mut conn = cx.bound().await?;
    let task = tasks::create(&mut conn, &cx.acting(), &new).await?;
    let mut created = HttpResponse::Created();
    created.insert_header((header::LOCATION, format!("/api/v1/tasks/{}", task.id)));
    Ok(answer(created, task))
}

/// One task of this tenant.
#[utoipa::path(get, path = "/api/v1/tasks/{id}", tag = "tasks",
    params(("id" = Uuid, Path, description = "Task id")), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = TaskView),
              (status = 404, description = "No such task in this organization")))]
pub async fn get(cx: TenantRequest, id: web::Path<TaskId>) -> Result<HttpResponse, ApiError> {
    let task: Task = cx.row(Permission::ContentRead, &id.into_inner()).await?;
    Ok(answer(HttpResponse::Ok(), task))
}

/// A task answer with its `ETag` (weak: the version is the task's `updated_at`), for `If-Match`.
fn answer(mut response: HttpResponseBuilder, task: Task) -> HttpResponse {
    response
        .insert_header((header::ETAG, etag(task.updated_at)))
        .json(TaskView::from(task))
}

fn etag(version: DateTime<Utc>) -> String {
    format!("W/\"{}\"", version.timestamp_micros())
}

/// The versions an `If-Match` header names (`W/"…"` or `"…"`, comma-separated); `None` without
/// the header or for `*` (any version). A tag that is not one of ours names no version, so it
/// never matches.
fn if_match(req: &HttpRequest) -> Option<Vec<DateTime<Utc>>> {
    let header = req.headers().get(header::IF_MATCH)?;
    let value = header.to_str().unwrap_or_default().trim();
    if value == "*" {
        return None;
    }
    Some(
        value
            .split(',')
            .filter_map(|tag| {
                let tag = tag.trim();
                let tag = tag.strip_prefix("W/").unwrap_or(tag);
                let micros = tag.strip_prefix('"')?.strip_suffix('"')?.parse().ok()?;
                DateTime::from_timestamp_micros(micros)
            })
            .collect(),
    )
}

/// Changes some fields of a task. Viewers may not.
#[utoipa::path(patch, path = "/api/v1/tasks/{id}", tag = "tasks", request_body = UpdateTask,
    params(("id" = Uuid, Path, description = "Task id")), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = TaskView),
              (status = 403, description = "Viewer"),
              (status = 404, description = "No such task in this organization"),
              (status = 412, description = "`If-Match` names a version the task is no longer at (without it the last write wins)"),
              (status = 422, description = "Invalid values, or an assignee who is not an active member")))]
pub async fn update(
    cx: TenantRequest,
    id: web::Path<TaskId>,
    body: web::Json<UpdateTask>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    cx.require(Permission::ContentWrite)?;
    let patch = TaskPatch::try_from(body.into_inner())?;
    let expected = if_match(&req);
    let mut conn = cx.bound().await?;
    let task = tasks::update(&mut conn, &cx.acting(), *id, &patch, expected.as_deref()).await?;
    Ok(answer(HttpResponse::Ok(), task))
}

/// Marks a task done. Idempotent: a done task is returned as it is (`completed_at` unchanged).
#[utoipa::path(post, path = "/api/v1/tasks/{id}/complete", tag = "tasks",
    params(("id" = Uuid, Path, description = "Task id")), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = TaskView),
              (status = 403, description = "Viewer"),
              (status = 404, description = "No such task in this organization")))]
pub async fn complete(cx: TenantRequest, id: web::Path<TaskId>) -> Result<HttpResponse, ApiError> {
    set_done(cx, *id, true).await
}

/// Opens a done (or cancelled) task again, as `todo`. Idempotent for an open task.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/reopen", tag = "tasks",
    params(("id" = Uuid, Path, description = "Task id")), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = TaskView),
              (status = 403, description = "Viewer"),
              (status = 404, description = "No such task in this organization")))]
pub async fn reopen(cx: TenantRequest, id: web::Path<TaskId>) -> Result<HttpResponse, ApiError> {
    set_done(cx, *id, false).await
}

async fn set_done(cx: TenantRequest, id: TaskId, done: bool) -> Result<HttpResponse, ApiError> {
    let mut conn = cx.connect(Permission::ContentWrite).await?;
    let task = tasks::set_done(&mut conn, &cx.acting(), id, done).await?;
    Ok(answer(HttpResponse::Ok(), task))
}

/// Deletes a task. Viewers may not.
#[utoipa::path(delete, path = "/api/v1/tasks/{id}", tag = "tasks",
    params(("id" = Uuid, Path, description = "Task id")), security(("bearer" = []), ("api_key" = [])),
    responses((status = 204, description = "Deleted"),
              (status = 403, description = "Viewer"),
              (status = 404, description = "No such task in this organization")))]
pub async fn delete(cx: TenantRequest, id: web::Path<TaskId>) -> Result<HttpResponse, ApiError> {
    let mut conn = cx.connect(Permission::ContentWrite).await?;
    rows::delete::<Task>(&mut conn, &cx.acting(), *id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A reminder on its way: queued, delivered by the worker.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReminderView {
    #[schema(value_type = Uuid)]
    pub task_id: TaskId,
    /// The assignee (user id).
    #[schema(value_type = Uuid)]
    pub sent_to: UserId,
    /// The address the reminder goes to.
    pub email: String,
    /// When it was queued.
    pub sent_at: DateTime<Utc>,
}

impl From<Reminder> for ReminderView {
    /// Every field named: one added to [`Reminder`] does not compile until the view decides.
    fn from(reminder: Reminder) -> Self {
        let Reminder {
            id: _,
            task_id,
            recipient_id,
            email,
            sent_at,
        } = reminder;
        Self {
            task_id,
            sent_to: recipient_id,
            email,
            sent_at,
        }
    }
}

/// Emails the task's assignee a reminder of it now (title, project, due date in the
/// organization's time zone, a link to the task). Owners, admins, and the member who created the
/// task; at most once an hour per task. Delivery is asynchronous (the outbox and the worker), so
/// the answer is 202. Audited as `task.reminded`.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/remind", tag = "tasks",
    params(("id" = Uuid, Path, description = "Task id")), security(("bearer" = []), ("api_key" = [])),
    responses((status = 202, body = ReminderView, description = "The reminder is queued"),
              (status = 403, description = "Viewer, or a member who did not create the task"),
              (status = 404, description = "No such task in this organization"),
              (status = 422, description = "The task is done or cancelled (`status`), has no assignee, or its assignee is not an active member (`assignee_id`)"),
              (status = 429, description = "A reminder about this task went out less than an hour ago; `Retry-After` says how many seconds until the next may")))]
pub async fn remind(
    cx: TenantRequest,
    id: web::Path<TaskId>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    cx.require(Permission::ContentWrite)?;
    // The link opens the task on the host this request came to (already resolved to this tenant).
    let host = link_host(&req)?;
    let settings = &cx.state.settings;
    let mut conn = cx.bound().await?;
    let (reminder, email) =
        notifications::remind(&mut conn, &cx.acting(), cx.user.role, *id, |task| {
            settings.page_link(host.as_str(), &format!("{}/{task}", links::TASKS))
        })
        .await?;
    drop(conn);
    cx.state.mail.push([email]).await;
    Ok(HttpResponse::Accepted().json(ReminderView::from(reminder)))
}
