//! HTTP integration tests: each test spawns the real server on a fresh database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod errors;
mod helpers;
mod isolation;
mod login_security;
mod matrix;
mod ops;
mod projects;
mod register;
mod routing;
mod sessions;
mod tokens;
