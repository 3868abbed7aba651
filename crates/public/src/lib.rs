//! The public schema: companies and their settings, domains, plans, users, memberships, Host →
//! tenant routing and the public migrations. Nothing here knows about HTTP or about any one tenant's tables.

pub mod account_tokens;
pub mod cleanup;
pub mod cluster;
pub mod common_passwords;
pub mod companies;
pub mod company_settings;
pub mod db;
pub mod domains;
pub mod enums;
pub mod exporter;
pub mod ids;
pub mod invoices;
pub mod jobs;
pub mod links;
pub mod mail;
pub mod memberships;
pub mod migrate;
pub mod names;
pub mod origin;
pub mod pagination;
pub mod passwords;
pub mod plans;
pub mod routing;
pub mod secrets;
pub mod sessions;
pub mod subscriptions;
pub mod usage;
pub mod users;

pub use ids::{CompanyId, MembershipId, OutboxId, SessionId, UserId};
pub use origin::Origin;
pub use pagination::Page;

/// What the exported macros ([`typed_id!`], [`text_enum!`]) need, reachable from any crate.
#[doc(hidden)]
pub mod macro_support {
    pub use serde;
    pub use tokio_postgres::types as pg;
    pub use uuid;
    pub type BoxError = Box<dyn std::error::Error + Sync + Send>;
}
pub use names::{DomainName, Email, NameError, Password, SchemaName, Slug};
