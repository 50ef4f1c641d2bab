//! The filter settings: `PROXY_METRIC_KEEP` and `PROXY_METRIC_DROP` (regexes on family names,
//! anchored as Prometheus anchors relabel regexes), `PROXY_SERIES_DROP` (PromQL series
//! selectors, `;`-separated) and `PROXY_MAX_SERIES` (the series cap). All unset: no filter.
//! `PROXY_NODE_METRICS` (off, append, only) runs the same stage to add node_exporter names.

use super::Reader;
use super::variables as var;
use crate::filter::{self, FilterSettings, selector};

/// Reads the four variables (errors are recorded in `values`).
pub fn settings(values: &mut Reader) -> FilterSettings {
    FilterSettings {
        keep: values.optional(&var::METRIC_KEEP, filter::anchored),
        drop: values.optional(&var::METRIC_DROP, filter::anchored),
        series_drop: values.optional(&var::SERIES_DROP, selector::parse_list).unwrap_or_default(),
        max_series: values.optional(&var::MAX_SERIES, max_series),
        node_metrics: values.value(&var::NODE_METRICS, str::parse),
    }
}

/// A positive whole number of series.
fn max_series(value: &str) -> Result<u64, String> {
    match value.parse::<u64>() {
        Ok(0) => Err("must be at least 1 (unset it for no limit)".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("not a whole number of series".into()),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::with_host as config;

    #[test]
    fn off_by_default() {
        assert!(!config(&[]).unwrap().filter.is_active());
        let c = config(&[("PROXY_METRIC_DROP", "windows_(process|service)_.+"), ("PROXY_MAX_SERIES", "5000")]).unwrap();
        assert!(c.filter.is_active());
        assert_eq!(c.filter.max_series, Some(5000));
    }

    #[test]
    fn bad_values_name_the_variable() {
        assert_eq!(
            config(&[("PROXY_METRIC_KEEP", "windows_(cpu")]).unwrap_err(),
            "PROXY_METRIC_KEEP=\"windows_(cpu\" is not valid: not a regular expression: error: unclosed group"
        );
        let error = config(&[("PROXY_SERIES_DROP", "up; windows_cpu{mode=}")]).unwrap_err();
        assert!(
            error.starts_with(
                "PROXY_SERIES_DROP=\"up; windows_cpu{mode=}\" is not valid: selector \"windows_cpu{mode=}\""
            ),
            "{error}"
        );
        assert_eq!(
            config(&[("PROXY_MAX_SERIES", "0")]).unwrap_err(),
            "PROXY_MAX_SERIES=\"0\" is not valid: must be at least 1 (unset it for no limit)"
        );
    }
}
