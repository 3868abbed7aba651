//! The Tenantry HTTP API: an actix-web application that resolves the tenant from the Host,
//! binds a pooled connection to that tenant's schema for each request, and speaks JSON with
//! `application/problem+json` errors. The only crate that knows the wire format.

pub mod auth;
pub mod config;
pub mod cors;
pub mod error;
pub mod export;
pub mod fields;
pub mod headers;
pub mod host;
pub mod mailq;
pub mod metrics;
pub mod openapi;
pub mod pagination;
pub mod ratelimit;
pub mod routes;
pub mod schema;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod throttle;
pub mod tokens;
pub mod views;

pub use config::Settings;
pub use startup::Application;
