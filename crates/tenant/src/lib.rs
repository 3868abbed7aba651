//! Everything that lives in a tenant schema: the tenant-bound connection handle, the tenant
//! migrations and `migrate-schemas`, provisioning of new tenants, and tenant resources
//! (projects, members, invitations, API keys), the permission matrix (`access`) and the audit trail (`audit`). Nothing here knows
//! about HTTP.

pub mod access;
pub mod api_keys;
pub mod audit;
pub mod binding;
pub mod invitations;
pub mod members;
pub mod migrate;
pub mod projects;
pub mod provision;

pub use binding::{ActiveTenant, TenantConn, TenantDb, TenantTx, TenantUnavailable};
pub use migrate::{tenant_head, tenant_runner};
pub use projects::ProjectId;
