//! Bench-only route (served only with `TENANTRY_BENCH_ROUTES=1`): the project list without
//! tenant binding, to measure what binding costs. It takes a public connection (whose first
//! statement resets `search_path`, as every checkout's first statement sets it) and addresses the
//! tenant's table by a schema-qualified name; everything else (routing, auth, serialisation) is
//! the same as `GET /api/v1/projects`.

use actix_web::{web, HttpResponse};
use tenantry_public::db::DbError;

use crate::auth::TenantUser;
use crate::error::ApiError;
use crate::routes::projects::{ProjectPage, ProjectView, DEFAULT_LIMIT};
use crate::state::AppState;

pub async fn unbound_projects(
    user: TenantUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let client = state.db.public().await?;
    let sql = format!(
        "select id, name, description, status, start_date, end_date, owner_id, created_at, updated_at \
         from {}.projects order by id desc limit $1",
        user.tenant.route().schema.quoted()
    );
    let stmt = client.prepare_cached(&sql).await.map_err(DbError::from)?;
    let rows = client
        .query(&stmt, &[&(DEFAULT_LIMIT + 1)])
        .await
        .map_err(DbError::from)?;
    let results = rows
        .iter()
        .take(DEFAULT_LIMIT as usize)
        .map(|r| tenantry_tenant::projects::Project::try_from(r).map(ProjectView::from))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(ProjectPage {
        results,
        next: None,
    }))
}
