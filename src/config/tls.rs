//! Serving HTTPS: `PROXY_TLS_CERT_FILE`, `PROXY_TLS_KEY_FILE`, `PROXY_TLS_MIN_VERSION` and
//! `PROXY_CLIENT_CA_FILE`, and the rules between them.
//!
//! Both files or neither: one without the other is an error, not plain HTTP, because an operator
//! who set one meant HTTPS. The files are loaded here once, so an unreadable file, a file without
//! a PEM block, a byte-order mark or a key that is not the certificate's stops the proxy with
//! exit 64 before it binds, naming the variable and its path. The TLS options mean nothing on a
//! plain-HTTP listener, so setting one without the pair is an error too (it would otherwise read
//! as a protection that is not there).

use super::parse;
use super::variables::{CLIENT_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE, TLS_MIN_VERSION};
use super::{ConfigError, Reader};
use crate::tls::acceptor::{self, TlsSettings};
use crate::tls::certificate::{self, PairFile};
use crate::tls::metrics::TlsMetrics;

/// Reads the HTTPS variables from `values`; `None` when the listener serves plain HTTP or a
/// variable is wrong (the error is recorded in `values`).
pub fn settings(values: &mut Reader) -> Option<TlsSettings> {
    let certificate_file = values.optional(&TLS_CERT_FILE, parse::file_path);
    let key_file = values.optional(&TLS_KEY_FILE, parse::file_path);
    let min_version = values.value(&TLS_MIN_VERSION, parse::tls_version);
    let client_ca_file = values.optional(&CLIENT_CA_FILE, parse::file_path);
    let (certificate_file, key_file) = match (certificate_file, key_file) {
        (Some(certificate), Some(key)) => (certificate, key),
        (None, None) => {
            for option in [&TLS_MIN_VERSION, &CLIENT_CA_FILE] {
                if let Some(value) = values.raw(option).map(str::to_owned) {
                    values.error(ConfigError::invalid(
                        option,
                        &value,
                        "applies to HTTPS only; set PROXY_TLS_CERT_FILE and PROXY_TLS_KEY_FILE, or unset it",
                    ));
                }
            }
            return None;
        }
        (Some(_), None) => {
            values.error(ConfigError::Missing {
                name: TLS_KEY_FILE.name,
                hint: "PROXY_TLS_CERT_FILE is set, and HTTPS needs its private key too",
            });
            return None;
        }
        (None, Some(_)) => {
            values.error(ConfigError::Missing {
                name: TLS_CERT_FILE.name,
                hint: "PROXY_TLS_KEY_FILE is set, and HTTPS needs its certificate chain too",
            });
            return None;
        }
    };

    let mut usable = true;
    if let Err(error) = certificate::read_key_pair(&certificate_file, &key_file) {
        let (variable, path) = match error.file {
            PairFile::Certificate => (&TLS_CERT_FILE, &certificate_file),
            PairFile::Key => (&TLS_KEY_FILE, &key_file),
        };
        let reason = match &error.error {
            certificate::CertificateError::Mismatch => {
                format!(
                    "does not match the certificate in PROXY_TLS_CERT_FILE={:?}",
                    certificate_file.display().to_string()
                )
            }
            _ => error.to_string(),
        };
        values.error(ConfigError::invalid(variable, &path.display().to_string(), reason));
        usable = false;
    }
    if let Some(ca_file) = &client_ca_file {
        // Loaded for its errors only; the acceptor loads it again (and records its expiry).
        if let Err(error) = acceptor::client_verifier(ca_file, &TlsMetrics::default()) {
            values.error(ConfigError::invalid(&CLIENT_CA_FILE, &ca_file.display().to_string(), error.to_string()));
            usable = false;
        }
    }
    usable.then_some(TlsSettings { certificate_file, key_file, min_version, client_ca_file })
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::super::{Config, ConfigErrors};
    use crate::tls::acceptor::MinVersion;

    fn testdata(name: &str) -> String {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/tls/testdata").join(name).display().to_string()
    }

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        let vars = [("PROXY_HOSTIP", "h")].iter().chain(vars);
        Config::from_vars(vars.map(|(k, v)| (k.to_string(), v.to_string())))
    }

    fn messages(vars: &[(&str, &str)]) -> Vec<String> {
        config(vars).unwrap_err().0.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn plain_http_without_the_pair() {
        assert_eq!(config(&[]).unwrap().tls, None);
    }

    #[test]
    fn both_files_serve_https_with_the_defaults() {
        let (certificate, key) = (testdata("chain-ec.pem"), testdata("leaf-ec.pkcs8.pem"));
        let tls = config(&[("PROXY_TLS_CERT_FILE", &certificate), ("PROXY_TLS_KEY_FILE", &key)]).unwrap().tls.unwrap();
        assert_eq!(tls.certificate_file, PathBuf::from(certificate));
        assert_eq!(tls.min_version, MinVersion::Tls12);
        assert_eq!(tls.client_ca_file, None);
    }

    #[test]
    fn one_file_of_the_pair_names_the_other() {
        let m = messages(&[("PROXY_TLS_CERT_FILE", &testdata("leaf-ec.pem"))]);
        assert_eq!(
            m,
            vec![
                "PROXY_TLS_KEY_FILE is required but not set: PROXY_TLS_CERT_FILE is set, and HTTPS needs its private key too"
            ]
        );
        let m = messages(&[("PROXY_TLS_KEY_FILE", &testdata("leaf-ec.sec1.pem"))]);
        assert!(m[0].starts_with("PROXY_TLS_CERT_FILE is required but not set"), "{m:?}");
    }

    #[test]
    fn tls_options_without_https_are_errors() {
        let m = messages(&[("PROXY_TLS_MIN_VERSION", "1.3"), ("PROXY_CLIENT_CA_FILE", "/ca.pem")]);
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(m[0].starts_with("PROXY_TLS_MIN_VERSION=\"1.3\" is not valid: applies to HTTPS only"), "{m:?}");
        assert!(m[1].starts_with("PROXY_CLIENT_CA_FILE=\"/ca.pem\" is not valid: applies to HTTPS only"), "{m:?}");
    }

    #[test]
    fn file_problems_name_the_variable_and_path() {
        let key = testdata("leaf-ec.sec1.pem");
        let m = messages(&[("PROXY_TLS_CERT_FILE", "/nonexistent/tls.crt"), ("PROXY_TLS_KEY_FILE", &key)]);
        assert!(
            m[0].starts_with("PROXY_TLS_CERT_FILE=\"/nonexistent/tls.crt\" is not valid: cannot read it: "),
            "{m:?}"
        );

        let certificate = testdata("leaf-rsa.pem");
        let m = messages(&[("PROXY_TLS_CERT_FILE", &certificate), ("PROXY_TLS_KEY_FILE", &key)]);
        assert_eq!(
            m,
            vec![format!(
                "PROXY_TLS_KEY_FILE={key:?} is not valid: does not match the certificate in PROXY_TLS_CERT_FILE={certificate:?}"
            )]
        );
    }

    #[test]
    fn a_client_ca_is_checked_and_kept() {
        let (certificate, key, ca) = (testdata("leaf-ec.pem"), testdata("leaf-ec.sec1.pem"), testdata("ca.pem"));
        let pair = [("PROXY_TLS_CERT_FILE", certificate.as_str()), ("PROXY_TLS_KEY_FILE", key.as_str())];
        let c = config(&[pair[0], pair[1], ("PROXY_CLIENT_CA_FILE", &ca), ("PROXY_TLS_MIN_VERSION", "1.3")]).unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.client_ca_file, Some(PathBuf::from(&ca)));
        assert_eq!(tls.min_version, MinVersion::Tls13);
        let m = messages(&[pair[0], pair[1], ("PROXY_CLIENT_CA_FILE", &key)]);
        assert!(
            m[0].starts_with(&format!("PROXY_CLIENT_CA_FILE={key:?} is not valid: has no CERTIFICATE PEM block")),
            "{m:?}"
        );
    }
}
