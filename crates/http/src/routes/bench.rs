//! Bench-only route (served only with `TENANTRY_BENCH_ROUTES=1`): the project list without
//! tenant binding, to measure what binding costs. It takes a public connection (whose first
//! statement resets `search_path`, as every checkout's first statement sets it) and addresses the
//! tenant's table by a schema-qualified name; everything else (routing, auth, serialisation) is
//! the same as `GET /api/v1/projects`.

use actix_web::{web, HttpResponse};
use tenantry_public::db::DbError;
use tenantry_public::Page;
use tenantry_tenant::projects::{Project, COLUMNS};

use crate::auth::TenantUser;
use crate::error::ApiError;
use crate::pagination::{self, DEFAULT_LIMIT};
use crate::routes::projects::ProjectView;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/_bench/unbound-projects").route(web::get().to(unbound_projects)));
}

pub async fn unbound_projects(
    user: TenantUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let client = state.db.public().await?;
    let sql = format!(
        "select {COLUMNS} from {}.projects order by id desc limit $1",
        user.tenant.route().schema.quoted()
    );
    let stmt = client.prepare_cached(&sql).await.map_err(DbError::from)?;
    let rows = client
        .query(&stmt, &[&Page::<Project>::fetch_limit(DEFAULT_LIMIT)])
        .await
        .map_err(DbError::from)?;
    let page = Page::from_rows(&rows, DEFAULT_LIMIT, |r| Project::try_from(r))?;
    Ok(HttpResponse::Ok().json(pagination::Page {
        results: page
            .items
            .into_iter()
            .map(ProjectView::from)
            .collect::<Vec<_>>(),
        next: None,
    }))
}
