//! `tenantry-server`: loads configuration, sets up logging and serves until SIGTERM.

use tenantry_http::{telemetry, Application, Settings};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let _ = dotenvy::dotenv();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tenantry-server: configuration error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    telemetry::init(settings.log_format);
    let bind = settings.bind_addr.clone();
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "start-up failed");
            eprintln!("tenantry-server: {e:#}");
            return std::process::ExitCode::from(1);
        }
    };
    tracing::info!(%bind, port = app.port(), "serving");
    match app.run_until_stopped().await {
        Ok(()) => {
            tracing::info!("server stopped");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            std::process::ExitCode::from(1)
        }
    }
}
