//! Logging: tracing to stdout, as text or one JSON object per line, never to files.
//!
//! `RUST_LOG` sets the level or per-target levels (`info`, `debug`,
//! `windows_exporter_proxy=debug,hyper=info`). It is parsed with `tracing_subscriber`'s
//! `Targets`, which needs no regex engine: that keeps the Windows binary small. Both settings are
//! read by [`crate::config`] with the parsers here.
//!
//! JSON lines carry the fields of the spans they happen in (a connection's `peer`) as a `spans`
//! list, outermost first, so a log pipeline can tie a failed scrape to the scraper.

use std::str::FromStr;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Parses `PROXY_LOG_FORMAT`: `text` or `json`.
pub fn format(value: &str) -> Result<LogFormat, String> {
    match value.to_ascii_lowercase().as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err("use text or json".into()),
    }
}

/// Parses `RUST_LOG`: a level, or `target=level` pairs.
pub fn filter(value: &str) -> Result<Targets, String> {
    if value.is_empty() {
        return Ok(Targets::new().with_default(LevelFilter::INFO));
    }
    Targets::from_str(value).map_err(|e| format!("{e}; use a level such as info or target=level pairs"))
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
                    .with_span_list(true)
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
        let targets = filter("info").unwrap();
        assert!(targets.would_enable("anything", &tracing::Level::INFO));
        assert!(!targets.would_enable("anything", &tracing::Level::DEBUG));
    }

    #[test]
    fn per_target_levels_parse() {
        let targets = filter("warn,windows_exporter_proxy=debug").unwrap();
        assert!(targets.would_enable("windows_exporter_proxy::scrape", &tracing::Level::DEBUG));
        assert!(!targets.would_enable("hyper", &tracing::Level::INFO));
    }

    #[test]
    fn a_bad_filter_says_what_to_write() {
        assert!(filter("windows_exporter_proxy=loud").unwrap_err().contains("use a level such as info"));
    }

    #[test]
    fn formats_parse_in_any_case() {
        assert_eq!(format("JSON"), Ok(LogFormat::Json));
        assert!(format("xml").is_err());
    }
}
