//! `Config::from_vars` with arbitrary name/value pairs never panics, and whatever it accepts is
//! within the documented bounds; whatever it rejects names a variable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use windows_exporter_proxy::config::{Config, ConfigError, VARIABLES};

fuzz_target!(|pairs: Vec<(u8, String, String)>| {
    // Mostly real variable names (so values get parsed), sometimes arbitrary ones.
    let vars: Vec<(String, String)> = pairs
        .into_iter()
        .map(|(pick, name, value)| match VARIABLES.get(pick as usize % (VARIABLES.len() + 2)) {
            Some(variable) => (variable.name.to_string(), value),
            None => (name, value),
        })
        .collect();
    match Config::from_vars(vars) {
        Ok(config) => {
            assert!(config.max_inflight >= 1);
            assert!(config.max_connections >= 1);
            assert!(config.max_header_bytes >= 8192);
            assert!(!config.scrape_timeout.is_zero());
            assert!(config.scrape_timeout <= std::time::Duration::from_secs(300));
            assert!(!config.connect_timeout.is_zero());
            assert_ne!(config.exporter.port_u16(), Some(0));
        }
        Err(errors) => {
            assert!(!errors.0.is_empty());
            for error in &errors.0 {
                let name = match error {
                    ConfigError::Missing { name, .. } => name.to_string(),
                    ConfigError::Invalid { name, .. } => name.clone(),
                };
                assert!(VARIABLES.iter().any(|v| v.name == name), "{error}");
                assert!(error.to_string().starts_with(&name), "{error}");
            }
        }
    }
});
