//! Shared application state handed to every handler.

use deadpool_postgres::Pool;
use std::sync::Arc;
use tenantry_public::routing::Router;

use crate::config::Settings;
use crate::tokens::JwtKeys;

pub struct AppState {
    /// One pool for public and tenant work; tenant work binds connections with `TenantConn`.
    pub pool: Pool,
    pub router: Arc<Router>,
    pub redis: redis::Client,
    pub jwt: JwtKeys,
    pub settings: Settings,
}
