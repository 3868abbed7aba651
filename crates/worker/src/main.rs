//! `tenantry-worker` binary: loads configuration, sets up logging and runs the worker until SIGTERM/Ctrl-C.

use std::process::ExitCode;

use tenantry_worker::{Config, LogFormat};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    // A missing .env is fine; a broken one is worth a warning but not fatal.
    let dotenv = dotenvy::dotenv();

    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("tenantry-worker: configuration error: {e}");
            return ExitCode::from(2);
        }
    };

    init_tracing(&config);
    if let Err(e) = dotenv {
        if !e.not_found() {
            tracing::warn!(error = %e, "could not load .env");
        }
    }

    match tenantry_worker::run(config, shutdown_signal()).await {
        Ok(()) => {
            tracing::info!("worker stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "worker failed");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(config: &Config) {
    // `Config` already validated the filter; fall back to `info` defensively.
    let filter = EnvFilter::try_new(&config.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.compact().init(),
    }
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};

    let mut sigterm = match signal(SignalKind::terminate()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the worker");
            None
        }
    };
    let terminate = async {
        match sigterm.as_mut() {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = terminate => tracing::info!(signal = "SIGTERM", "received shutdown signal"),
        res = tokio::signal::ctrl_c() => match res {
            Ok(()) => tracing::info!(signal = "SIGINT", "received shutdown signal"),
            Err(e) => tracing::warn!(error = %e, "cannot listen for Ctrl-C; stopping"),
        },
    }
}
