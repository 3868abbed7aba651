//! Shared application state handed to every handler.

use std::sync::Arc;
use tenantry_public::db::Db;
use tenantry_public::routing::Router;
use tenantry_public::sessions::Rotation;

use crate::config::Settings;
use crate::mailq::MailQueue;
use crate::throttle::LoginThrottle;
use crate::tokens::JwtKeys;

pub struct AppState {
    /// Public work takes `db.public()`; tenant work binds connections with `TenantConn`.
    pub db: Db,
    pub router: Arc<Router>,
    pub redis: redis::Client,
    pub jwt: JwtKeys,
    /// How refresh tokens rotate (successor key, reuse grace).
    pub rotation: Rotation,
    pub login_throttle: LoginThrottle,
    /// Password-reset requests per email, per IP and per organization.
    pub reset_throttle: LoginThrottle,
    /// Invitations per address and per organization.
    pub invitation_throttle: LoginThrottle,
    /// Sign-ups per client and in all; `None` when turned off.
    pub signup_throttle: Option<LoginThrottle>,
    /// Hands committed outbox rows (emails) to the worker.
    pub mail: MailQueue,
    pub settings: Settings,
}
