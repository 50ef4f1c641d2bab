//! Unit tests of the variable table and the parsers, through [`Config::from_vars`].

use super::*;

fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
    Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

/// The configuration from `PROXY_HOSTIP=10.0.0.4` and `vars`, or its errors as one message: what
/// the settings modules' own tests read.
pub(super) fn with_host(vars: &[(&str, &str)]) -> Result<Config, String> {
    let mut all = vec![("PROXY_HOSTIP", "10.0.0.4")];
    all.extend_from_slice(vars);
    Config::from_vars(all).map_err(|e| e.to_string())
}

fn messages(vars: &[(&str, &str)]) -> Vec<String> {
    config(vars).unwrap_err().0.iter().map(|e| e.to_string()).collect()
}

#[test]
fn defaults_apply_when_only_the_host_is_set() {
    let c = config(&[("PROXY_HOSTIP", "10.240.0.4")]).unwrap();
    assert_eq!(c.exporter.as_str(), "10.240.0.4:9182");
    assert_eq!(c.listen, "0.0.0.0:9100".parse().unwrap());
    assert_eq!(c.scrape_timeout, Duration::from_secs(10));
    assert_eq!(c.timeout_margin, Duration::from_millis(500));
    assert_eq!(c.max_inflight, 2);
    assert_eq!(c.shutdown_grace, Duration::from_secs(20));
    assert_eq!(c.log_format, LogFormat::Text);
}

#[test]
fn every_default_in_the_table_parses() {
    // Reader::value falls back on the default's value: it must always parse.
    let c = config(&[("PROXY_HOSTIP", "h")]).unwrap();
    assert_eq!(c.exporter.port_u16(), Some(9182));
    // Options of HTTPS apply only with its certificate and key.
    let testdata = concat!(env!("CARGO_MANIFEST_DIR"), "/src/tls/testdata");
    let (certificate, key) = (format!("{testdata}/leaf-ec.pem"), format!("{testdata}/leaf-ec.sec1.pem"));
    for variable in VARIABLES {
        if let WhenUnset::Value(default) = variable.default {
            let mut vars = vec![("PROXY_HOSTIP", "h"), (variable.name, default)];
            if variable.name.starts_with("PROXY_TLS_") {
                vars.extend([("PROXY_TLS_CERT_FILE", certificate.as_str()), ("PROXY_TLS_KEY_FILE", key.as_str())]);
            }
            let set = config(&vars);
            assert!(set.is_ok(), "{}={default:?}: {:?}", variable.name, set.err());
        }
    }
}

#[test]
fn a_bad_value_is_reported_and_the_rest_still_checked() {
    let m = messages(&[("PROXY_HOSTIP", "h"), ("PROXY_LISTEN", "x"), ("PROXY_MAX_INFLIGHT", "0")]);
    assert_eq!(m.len(), 2, "{m:?}");
}

#[test]
fn missing_hostip_names_the_variable() {
    let m = messages(&[]);
    assert_eq!(m.len(), 1);
    assert!(m[0].starts_with("PROXY_HOSTIP is required"), "{m:?}");
}

#[test]
fn empty_hostip_counts_as_missing() {
    assert!(messages(&[("PROXY_HOSTIP", "  ")])[0].starts_with("PROXY_HOSTIP is required"));
}

#[test]
fn bad_port_names_variable_and_value() {
    assert_eq!(
        messages(&[("PROXY_HOSTIP", "10.0.0.1"), ("PROXY_PORT", "abc")]),
        vec![r#"PROXY_PORT="abc" is not valid: not a port number; use 1-65535"#]
    );
}

#[test]
fn port_zero_and_out_of_range_are_rejected() {
    for port in ["0", "65536", "-1", "99999999999"] {
        let m = messages(&[("PROXY_HOSTIP", "10.0.0.1"), ("PROXY_PORT", port)]);
        assert!(m[0].starts_with(&format!("PROXY_PORT=\"{port}\" is not valid")), "{m:?}");
    }
    assert_eq!(config(&[("PROXY_HOSTIP", "h"), ("PROXY_PORT", "65535")]).unwrap().exporter.as_str(), "h:65535");
}

#[test]
fn a_port_list_is_kept_in_order_and_a_bad_one_names_the_entry() {
    let c = config(&[("PROXY_HOSTIP", "10.0.0.4"), ("PROXY_PORT", "19100,19182,9182")]).unwrap();
    assert_eq!(c.exporter_ports.to_string(), "19100,19182,9182");
    assert_eq!(c.exporter.as_str(), "10.0.0.4:19100");
    assert_eq!(config(&[("PROXY_HOSTIP", "h")]).unwrap().exporter_ports.single(), Some(9182));
    assert_eq!(
        messages(&[("PROXY_HOSTIP", "h"), ("PROXY_PORT", "19100,x")]),
        vec![r#"PROXY_PORT="19100,x" is not valid: "x" in the list: not a port number; use 1-65535"#]
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let m = messages(&[("PROXY_PORT", "x"), ("PROXY_LISTEN", "9100"), ("PROXY_LOG_FORMAT", "xml")]);
    assert_eq!(m.len(), 4, "{m:?}");
    assert!(m.iter().any(|e| e.starts_with("PROXY_LISTEN=\"9100\"")));
    assert!(m.iter().any(|e| e.starts_with("PROXY_LOG_FORMAT=\"xml\"")));
}

#[test]
fn ipv6_host_is_bracketed_in_the_authority() {
    let c = config(&[("PROXY_HOSTIP", "fd00::4"), ("PROXY_PORT", "9100")]).unwrap();
    assert_eq!(c.exporter.as_str(), "[fd00::4]:9100");
    let c = config(&[("PROXY_HOSTIP", "[fd00::4]")]).unwrap();
    assert_eq!(c.exporter.as_str(), "[fd00::4]:9182");
}

#[test]
fn dns_names_are_accepted_and_junk_is_not() {
    assert_eq!(config(&[("PROXY_HOSTIP", "Node-1.internal")]).unwrap().exporter.as_str(), "node-1.internal:9182");
    for bad in ["10.0.0.1:9182", "http://10.0.0.1", "a b", "-x", "a..b", "host/path", "x@y"] {
        let m = messages(&[("PROXY_HOSTIP", bad)]);
        assert!(m[0].starts_with(&format!("PROXY_HOSTIP={bad:?} is not valid")), "{m:?}");
    }
}

#[test]
fn listen_accepts_ipv4_and_ipv6() {
    let c = config(&[("PROXY_HOSTIP", "h"), ("PROXY_LISTEN", "[::]:9100")]).unwrap();
    assert_eq!(c.listen, "[::]:9100".parse().unwrap());
}

#[test]
fn seconds_accept_fractions_and_reject_nonsense() {
    let c = config(&[("PROXY_HOSTIP", "h"), ("PROXY_SCRAPE_TIMEOUT_SECONDS", "2.5")]).unwrap();
    assert_eq!(c.scrape_timeout, Duration::from_millis(2500));
    let c = config(&[("PROXY_HOSTIP", "h"), ("PROXY_TIMEOUT_MARGIN_SECONDS", "0")]).unwrap();
    assert_eq!(c.timeout_margin, Duration::ZERO);
    for bad in ["0", "-1", "NaN", "inf", "10s", "1e9"] {
        let m = messages(&[("PROXY_HOSTIP", "h"), ("PROXY_SCRAPE_TIMEOUT_SECONDS", bad)]);
        assert!(m[0].starts_with(&format!("PROXY_SCRAPE_TIMEOUT_SECONDS={bad:?}")), "{m:?}");
    }
}

#[test]
fn a_scrape_timeout_outside_the_deadline_bounds_is_rejected_not_clamped() {
    for bad in ["0.1", "301", "3600"] {
        let m = messages(&[("PROXY_HOSTIP", "h"), ("PROXY_SCRAPE_TIMEOUT_SECONDS", bad)]);
        assert_eq!(
            m,
            vec![format!(
                "PROXY_SCRAPE_TIMEOUT_SECONDS={bad:?} is not valid: must be from 0.25 to 300 seconds, the range every scrape deadline is held to"
            )]
        );
    }
}

#[test]
fn counts_have_lower_bounds() {
    let m = messages(&[("PROXY_HOSTIP", "h"), ("PROXY_MAX_INFLIGHT", "0"), ("PROXY_MAX_HEADER_BYTES", "1024")]);
    assert_eq!(m.len(), 2);
    assert!(m.iter().any(|e| e.contains("at least 1")));
    assert!(m.iter().any(|e| e.contains("at least 8192")));
}

#[test]
fn bad_rust_log_names_itself() {
    let m = messages(&[("PROXY_HOSTIP", "h"), ("RUST_LOG", "windows_exporter_proxy=loud")]);
    assert!(m[0].starts_with("RUST_LOG=\"windows_exporter_proxy=loud\" is not valid"), "{m:?}");
}

#[test]
fn unknown_proxy_variables_are_kept_for_a_warning() {
    let c = config(&[("PROXY_HOSTIP", "h"), ("PROXY_SERVICE_HOST", "10.0.0.9"), ("PATH", "/bin")]).unwrap();
    assert_eq!(c.unknown_variables, vec!["PROXY_SERVICE_HOST"]);
}

#[cfg(unix)]
#[test]
fn non_utf8_values_are_reported_not_panicked_on() {
    use std::os::unix::ffi::OsStringExt;
    let vars = vec![
        (OsString::from("PROXY_HOSTIP"), OsString::from("h")),
        (OsString::from("PROXY_PORT"), OsString::from_vec(vec![0x39, 0xff])),
    ];
    let m = Config::from_os_vars(vars).unwrap_err().to_string();
    assert!(m.starts_with("PROXY_PORT=\"9\u{fffd}\" is not valid: not valid UTF-8"), "{m}");
}
