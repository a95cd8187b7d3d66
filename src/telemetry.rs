//! Logging set-up: human-readable or JSON lines on stderr, filtered by `TETHER_LOG`.

use kube::{Resource, ResourceExt};
use tracing_subscriber::{EnvFilter, fmt};

/// How log lines are written.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per event.
    Json,
}

/// Environment variable holding the log filter, in `RUST_LOG` syntax (default `info`).
pub const LOG_FILTER_ENV: &str = "TETHER_LOG";

/// Installs the global subscriber; later calls are ignored.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env(LOG_FILTER_ENV).unwrap_or_else(|_| EnvFilter::new("info"));
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt()
        .with_env_filter(filter)
        .with_ansi(colours)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The span of one reconcile of `object`: its kind, namespace and name, which every log
/// line of the reconcile then carries (the text format prints them before the message,
/// the JSON format under `span`). kube-runtime's own `reconciling object` span enters
/// only while the reconcile's future is built, not while it runs, so log lines written
/// after the first `.await` would not carry it.
pub fn reconcile_span<K: Resource<DynamicType = ()>>(object: &K) -> tracing::Span {
    tracing::info_span!(
        "reconcile",
        kind = %K::kind(&()),
        namespace = object.namespace(),
        name = %object.name_any(),
    )
}
