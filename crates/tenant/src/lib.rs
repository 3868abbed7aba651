//! Everything that lives in a tenant schema: the tenant-bound connection handle, the tenant
//! migrations and `migrate-schemas`, provisioning of new tenants, tenant resources (projects, tasks,
//! project teams, members, invitations, API keys, the organization's settings, the emails sent about
//! tasks, project reports), CSV records (`csv`), account changes recorded in a tenant's trail (`accounts`),
//! the permission matrix (`access`), the audit trail (`audit`) and the typed ids (`ids`).
//! Nothing here knows about HTTP.

pub mod access;
pub mod accounts;
pub mod api_keys;
pub mod audit;
pub mod billing;
pub mod binding;
pub mod csv;
pub mod documents;
pub mod domains;
pub mod ids;
pub mod invitations;
pub mod jobs;
pub mod members;
pub mod migrate;
pub mod notifications;
pub mod ordering;
pub mod organization;
pub mod projects;
pub mod provision;
pub mod reminders;
pub mod reports;
pub mod rows;
pub mod statistics;
pub mod subscription;
pub mod tasks;
pub mod teams;

pub use binding::{ActiveTenant, TenantConn, TenantDb, TenantTx, TenantUnavailable};
pub use ids::{
    ApiKeyId, AuditEntryId, DocumentId, InvitationId, NotificationId, ProjectId, ReportId, TaskId,
};
pub use migrate::{tenant_head, tenant_runner};
