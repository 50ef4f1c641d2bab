//! Logging: tracing to stdout, as text or one JSON object per line, never to files.
//!
//! `RUST_LOG` sets the level or per-target levels (`info`, `debug`,
//! `windows_exporter_proxy=debug,hyper=info`). It is parsed with `tracing_subscriber`'s
//! `Targets`, which needs no regex engine: that keeps the Windows binary small.

use std::str::FromStr;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// The log filter from `RUST_LOG`'s value, or an error naming the variable and the value.
pub fn filter(rust_log: Option<&str>) -> Result<Targets, String> {
    match rust_log.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(Targets::new().with_default(LevelFilter::INFO)),
        Some(value) => Targets::from_str(value).map_err(|e| {
            format!("RUST_LOG={value:?} is not valid: {e}; use a level such as info or target=level pairs")
        }),
    }
}

/// Installs the global subscriber. Call once, before anything logs.
pub fn init(format: LogFormat, filter: Targets) {
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => {
            registry.with(tracing_subscriber::fmt::layer().with_ansi(false).with_writer(std::io::stdout)).init()
        }
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false)
                    .with_writer(std::io::stdout),
            )
            .init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_level_is_info() {
        let targets = filter(None).unwrap();
        assert!(targets.would_enable("anything", &tracing::Level::INFO));
        assert!(!targets.would_enable("anything", &tracing::Level::DEBUG));
    }

    #[test]
    fn per_target_levels_parse() {
        let targets = filter(Some("warn,windows_exporter_proxy=debug")).unwrap();
        assert!(targets.would_enable("windows_exporter_proxy::proxy", &tracing::Level::DEBUG));
        assert!(!targets.would_enable("hyper", &tracing::Level::INFO));
    }

    #[test]
    fn bad_rust_log_names_itself() {
        let error = filter(Some("windows_exporter_proxy=loud")).unwrap_err();
        assert!(error.starts_with("RUST_LOG=\"windows_exporter_proxy=loud\" is not valid"), "{error}");
    }
}
