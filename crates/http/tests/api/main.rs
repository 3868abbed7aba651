//! HTTP integration tests: each test spawns the real server on a fresh database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod account_verification;
mod api_keys;
mod audit_log;
mod billing;
mod citus;
mod cors;
mod documents;
mod email;
mod errors;
mod exports;
mod faults;
mod helpers;
mod insights;
mod invitations;
mod isolation;
mod login_security;
mod matrix;
mod members;
mod metrics;
mod ops;
mod ownership;
mod projects;
mod ratelimits;
mod register;
mod remind;
mod reports;
mod routing;
mod sessions;
mod settings;
mod tasks;
mod teams;
mod tokens;
mod welcome;
