//! The public schema: companies, domains, plans, users, memberships, Host → tenant routing and the
//! public migrations. Nothing here knows about HTTP or about any one tenant's tables.

pub mod account_tokens;
pub mod companies;
pub mod db;
pub mod ids;
pub mod mail;
pub mod memberships;
pub mod migrate;
pub mod names;
pub mod passwords;
pub mod plans;
pub mod routing;
pub mod secrets;
pub mod sessions;
pub mod users;

pub use ids::{CompanyId, MembershipId, UserId};
pub use names::{DomainName, Email, NameError, Password, SchemaName, Slug};
