//! The collector settings: `PROXY_COLLECT`, `PROXY_COLLECT_ALLOW` and `PROXY_SLOW_COLLECT`,
//! checked and turned into [`CollectSettings`] (what they mean: [`crate::scrape::collectors`]).
//!
//! Each is a comma list of windows_exporter collector names: lowercase letters, digits and `_`
//! (`cpu_info`, `logical_disk`), no empty item, no name twice. Between them: no collector is both
//! fast and slow, and an allow list leaves out none of the configured collectors. When
//! `PROXY_COLLECT` is set the allow list defaults to `PROXY_COLLECT` plus `PROXY_SLOW_COLLECT`;
//! an explicit allow list with `PROXY_SLOW_COLLECT` must leave `/metrics` something that is not
//! slow.

use super::variables::{self as var, Variable};
use super::{ConfigError, Reader, parse};
use crate::scrape::collectors::CollectSettings;

/// Reads the three variables (errors are recorded in `values`).
pub fn settings(values: &mut Reader) -> CollectSettings {
    let fast = values.optional(&var::COLLECT, collectors);
    let slow = values.optional(&var::SLOW_COLLECT, collectors);
    let allow = values.optional(&var::COLLECT_ALLOW, collectors);
    if let (Some(fast), Some(slow)) = (&fast, &slow) {
        let both: Vec<&str> = fast.iter().filter(|name| slow.contains(name)).map(String::as_str).collect();
        if !both.is_empty() {
            let reason = format!("{} also in PROXY_COLLECT: a collector is either fast or slow", both.join(","));
            values.error(invalid(values, &var::SLOW_COLLECT, reason));
        }
    }
    if let Some(allow) = &allow {
        let configured = fast.iter().chain(slow.iter()).flatten();
        let missing: Vec<&str> = configured.filter(|name| !allow.contains(name)).map(String::as_str).collect();
        if !missing.is_empty() {
            let reason = format!("leaves out {}, configured in PROXY_COLLECT or PROXY_SLOW_COLLECT", missing.join(","));
            values.error(invalid(values, &var::COLLECT_ALLOW, reason));
        } else if let (None, Some(slow)) = (&fast, &slow) {
            if allow.iter().all(|name| slow.contains(name)) {
                let reason = "names only PROXY_SLOW_COLLECT collectors, which /metrics never runs".to_owned();
                values.error(invalid(values, &var::COLLECT_ALLOW, reason));
            }
        }
    }
    let allow = allow.or_else(|| fast.as_ref().map(|fast| fast.iter().chain(slow.iter().flatten()).cloned().collect()));
    CollectSettings { fast, slow, allow }
}

fn invalid(values: &Reader, variable: &Variable, reason: String) -> ConfigError {
    ConfigError::invalid(variable, values.raw(variable).unwrap_or_default(), reason)
}

/// A comma list of collector names, each at most once.
fn collectors(value: &str) -> Result<Vec<String>, String> {
    let names = parse::list(value)?;
    for (i, name) in names.iter().enumerate() {
        if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            return Err(format!(
                "{name:?} is not a collector name: lowercase letters, digits and _ (cpu, logical_disk)"
            ));
        }
        if names[..i].contains(name) {
            return Err(format!("{name} is listed twice"));
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::with_host;

    fn config(vars: &[(&str, &str)]) -> Result<CollectSettings, String> {
        with_host(vars).map(|c| c.collect)
    }

    fn names(list: &str) -> Option<Vec<String>> {
        Some(list.split(',').map(str::to_owned).collect())
    }

    #[test]
    fn unset_by_default_and_the_allow_list_defaults_to_fast_plus_slow() {
        assert_eq!(config(&[]).unwrap(), CollectSettings::default());
        let settings = config(&[("PROXY_COLLECT", "cpu, os"), ("PROXY_SLOW_COLLECT", "process")]).unwrap();
        assert_eq!(settings.allow, names("cpu,os,process"));
        let settings = config(&[("PROXY_SLOW_COLLECT", "process")]).unwrap();
        assert_eq!(settings.allow, None);
    }

    #[test]
    fn bad_values_name_the_variable() {
        assert_eq!(
            config(&[("PROXY_COLLECT", "cpu,CPU")]).unwrap_err(),
            "PROXY_COLLECT=\"cpu,CPU\" is not valid: \"CPU\" is not a collector name: lowercase letters, digits and _ (cpu, logical_disk)"
        );
        assert_eq!(
            config(&[("PROXY_SLOW_COLLECT", "process,,service")]).unwrap_err(),
            "PROXY_SLOW_COLLECT=\"process,,service\" is not valid: an empty item in the comma-separated list"
        );
        assert_eq!(
            config(&[("PROXY_COLLECT_ALLOW", "cpu,os,cpu")]).unwrap_err(),
            "PROXY_COLLECT_ALLOW=\"cpu,os,cpu\" is not valid: cpu is listed twice"
        );
        assert_eq!(
            config(&[("PROXY_COLLECT", "cpu,os"), ("PROXY_COLLECT_ALLOW", "cpu")]).unwrap_err(),
            "PROXY_COLLECT_ALLOW=\"cpu\" is not valid: leaves out os, configured in PROXY_COLLECT or PROXY_SLOW_COLLECT"
        );
        assert_eq!(
            config(&[("PROXY_COLLECT", "cpu,process"), ("PROXY_SLOW_COLLECT", "process")]).unwrap_err(),
            "PROXY_SLOW_COLLECT=\"process\" is not valid: process also in PROXY_COLLECT: a collector is either fast or slow"
        );
        assert!(
            config(&[("PROXY_SLOW_COLLECT", "process"), ("PROXY_COLLECT_ALLOW", "process")])
                .unwrap_err()
                .contains("names only PROXY_SLOW_COLLECT collectors")
        );
    }
}
