//! The process's Prometheus recorder, for the server and the worker alike: each binary records
//! through the `metrics` facade and serves the handle's text on its own `/metrics` listener.

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

/// The text exposition format's content type.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How often histograms are folded into their buckets between scrapes, so samples do not pile
/// up in memory when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// A recorder's builder with `buckets` for `histogram` (what [`recorder`] installs; tests build
/// local recorders from it).
///
/// # Errors
/// If `buckets` is empty.
pub fn builder(histogram: &str, buckets: &[f64]) -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new().set_buckets_for_metric(Matcher::Full(histogram.to_owned()), buckets)
}

/// Installs the process's recorder on first use and hands the same handle to every later
/// caller: the `metrics` facade takes one global recorder per process, once (a second server in
/// one test process scrapes the same recorder instead of failing). The first call's
/// `histogram` gets `buckets`, and its `describe` gives the `# HELP` lines (descriptions only
/// reach a recorder installed before them).
///
/// # Errors
/// If something else in the process installed a recorder first, or the upkeep thread cannot
/// start.
pub fn recorder(
    histogram: &str,
    buckets: &[f64],
    describe: fn(),
) -> Result<PrometheusHandle, String> {
    static RECORDER: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    RECORDER
        .get_or_init(|| {
            let handle = builder(histogram, buckets)
                .map_err(|e| e.to_string())?
                .install_recorder()
                .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                })
                .map_err(|e| format!("cannot start the metrics upkeep thread: {e}"))?;
            describe();
            Ok(handle)
        })
        .clone()
}
