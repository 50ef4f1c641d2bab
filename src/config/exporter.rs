//! The hop to the exporter: how the proxy reaches windows_exporter when the exporter itself is
//! secured with exporter-toolkit's `--web.config.file` (TLS, client certificates, basic auth).
//!
//! `PROXY_EXPORTER_SCHEME=https` needs a trust decision: `PROXY_EXPORTER_CA_FILE`, the only CAs
//! trusted (never the system store: the exporter's certificate comes from the cluster's own CA),
//! or `PROXY_EXPORTER_INSECURE_SKIP_VERIFY=true`, which warns at start. The name checked against
//! the exporter's certificate is `PROXY_EXPORTER_SERVER_NAME`, by default `PROXY_HOSTIP` (an IP
//! address there is checked against the certificate's IP SANs), so one certificate with a shared
//! DNS name can serve every node. TLS settings with `http`, half a client-certificate pair, or a
//! username without its password file are contradictions: exit 64, as is any file that cannot
//! be used now (it is loaded here, so a typo fails at start, not at the first scrape).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::parse::{self, Host};
use super::variables as var;
use super::{ConfigError, Reader};
use crate::exporter::credentials::read_password;
use crate::exporter::settings::{ClientIdentity, ExporterLogin, ExporterScheme, ExporterSettings, HopTls, Trust};
use crate::tls::certificate::{self, PairFile};

/// Reads and checks the hop variables. `host` is `PROXY_HOSTIP` as parsed (the default
/// server name), `None` when it is missing or bad (already reported). Every problem is
/// recorded in `values`; `None` when there was one.
pub fn settings(values: &mut Reader, host: Option<&Host>) -> Option<ExporterSettings> {
    let scheme_set_badly = values.raw(&var::EXPORTER_SCHEME).is_some_and(|v| parse::exporter_scheme(v.trim()).is_err());
    let https = values.value(&var::EXPORTER_SCHEME, parse::exporter_scheme) == ExporterScheme::Https;
    let skip_verify = values.value(&var::EXPORTER_INSECURE_SKIP_VERIFY, parse::boolean);
    let server_name = values.optional(&var::EXPORTER_SERVER_NAME, parse::server_name);
    let basic_auth = basic_auth(values);

    if !https {
        // A bad scheme is reported already; the TLS settings would only add noise.
        if !scheme_set_badly {
            let tls_only = [
                &var::EXPORTER_CA_FILE,
                &var::EXPORTER_SERVER_NAME,
                &var::EXPORTER_CLIENT_CERT_FILE,
                &var::EXPORTER_CLIENT_KEY_FILE,
            ];
            for variable in tls_only {
                if let Some(value) = values.raw(variable).map(str::to_owned) {
                    values.error(ConfigError::invalid(variable, &value, TLS_WITH_HTTP));
                }
            }
            if skip_verify {
                values.error(ConfigError::invalid(&var::EXPORTER_INSECURE_SKIP_VERIFY, "true", TLS_WITH_HTTP));
            }
        }
        return Some(ExporterSettings { tls: None, basic_auth: basic_auth? });
    }

    let trust = match (values.raw(&var::EXPORTER_CA_FILE).map(|v| v.trim().to_owned()), skip_verify) {
        (Some(file), false) => {
            let loaded = certificate::read_certificates(file.as_ref())
                .and_then(|certificates| Ok((certificate::trust_store(&certificates)?, certificates)))
                .map_err(|error| error.to_string());
            values
                .record(&var::EXPORTER_CA_FILE, loaded.map_err(|reason| (file.clone(), reason)))
                .map(|(roots, certificates)| Trust::Bundle { file: file.into(), certificates, roots: Arc::new(roots) })
        }
        (None, false) => {
            values.error(ConfigError::Missing { name: var::EXPORTER_CA_FILE.name, hint: CA_HINT });
            None
        }
        (Some(file), true) => {
            values.error(ConfigError::invalid(
                &var::EXPORTER_CA_FILE,
                &file,
                "PROXY_EXPORTER_INSECURE_SKIP_VERIFY=true checks no CA; unset one of the two",
            ));
            None
        }
        (None, true) => Some(Trust::InsecureSkipVerify),
    };

    let server_name = match (server_name, values.is_set(&var::EXPORTER_SERVER_NAME), host) {
        (Some(name), _, _) => Some(name),
        // Set but bad, or PROXY_HOSTIP missing or bad: already reported.
        (None, true, _) | (None, false, None) => None,
        (None, false, Some(host)) => {
            let checked = parse::server_name(&host.0).map_err(|reason| {
                (host.0.clone(), format!("cannot be the TLS server name ({reason}); set PROXY_EXPORTER_SERVER_NAME"))
            });
            values.record(&var::HOSTIP, checked)
        }
    };

    let identity = client_identity(values);
    let tls = HopTls { trust: trust?, server_name: server_name?, identity: identity? };
    Some(ExporterSettings { tls: Some(tls), basic_auth: basic_auth? })
}

const TLS_WITH_HTTP: &str = "is a TLS setting but PROXY_EXPORTER_SCHEME is http; set it to https or unset this";
const CA_HINT: &str = "PROXY_EXPORTER_SCHEME is https: give the PEM bundle of the CA that signs the exporter's certificate (or PROXY_EXPORTER_INSECURE_SKIP_VERIFY=true to try things out)";

/// The client certificate pair, both files or neither, loaded and checked to match.
/// `Some(None)` for neither, `None` for a problem (recorded).
fn client_identity(values: &mut Reader) -> Option<Option<ClientIdentity>> {
    let cert_file = values.raw(&var::EXPORTER_CLIENT_CERT_FILE).map(|v| PathBuf::from(v.trim()));
    let key_file = values.raw(&var::EXPORTER_CLIENT_KEY_FILE).map(|v| PathBuf::from(v.trim()));
    match (cert_file, key_file) {
        (None, None) => Some(None),
        (Some(_), None) => {
            values.error(ConfigError::Missing {
                name: var::EXPORTER_CLIENT_KEY_FILE.name,
                hint: "PROXY_EXPORTER_CLIENT_CERT_FILE is set: give its private key too",
            });
            None
        }
        (None, Some(_)) => {
            values.error(ConfigError::Missing {
                name: var::EXPORTER_CLIENT_CERT_FILE.name,
                hint: "PROXY_EXPORTER_CLIENT_KEY_FILE is set: give its certificate too",
            });
            None
        }
        (Some(cert_file), Some(key_file)) => match certificate::read_key_pair(&cert_file, &key_file) {
            Ok(loaded) => Some(Some(ClientIdentity { cert_file, key_file, loaded })),
            Err(error) => {
                let (variable, file) = match error.file {
                    PairFile::Certificate => (&var::EXPORTER_CLIENT_CERT_FILE, &cert_file),
                    PairFile::Key => (&var::EXPORTER_CLIENT_KEY_FILE, &key_file),
                };
                values.error(ConfigError::invalid(variable, &file.to_string_lossy(), error.to_string()));
                None
            }
        },
    }
}

/// `PROXY_EXPORTER_BASIC_AUTH_USERNAME` with its password file, both or neither.
/// `Some(None)` for neither, `None` for a problem (recorded).
fn basic_auth(values: &mut Reader) -> Option<Option<ExporterLogin>> {
    let username = values.raw(&var::EXPORTER_BASIC_AUTH_USERNAME).map(|v| v.trim().to_owned());
    let file = values.raw(&var::EXPORTER_BASIC_AUTH_PASSWORD_FILE).map(|v| v.trim().to_owned());
    match (username, file) {
        (None, None) => Some(None),
        (Some(_), None) => {
            values.error(ConfigError::Missing {
                name: var::EXPORTER_BASIC_AUTH_PASSWORD_FILE.name,
                hint: "PROXY_EXPORTER_BASIC_AUTH_USERNAME is set: give the file holding its password",
            });
            None
        }
        (None, Some(_)) => {
            values.error(ConfigError::Missing {
                name: var::EXPORTER_BASIC_AUTH_USERNAME.name,
                hint: "PROXY_EXPORTER_BASIC_AUTH_PASSWORD_FILE is set: give the username it is for",
            });
            None
        }
        (Some(username), Some(file)) => {
            // RFC 7617: the user-id cannot hold a colon; control characters would break the header.
            let username_ok = !username.contains(':') && !username.chars().any(char::is_control);
            if !username_ok {
                values.error(ConfigError::invalid(
                    &var::EXPORTER_BASIC_AUTH_USERNAME,
                    &username,
                    "a basic-auth username cannot hold ':' or control characters",
                ));
            }
            let password = values.record(
                &var::EXPORTER_BASIC_AUTH_PASSWORD_FILE,
                read_password(Path::new(&file)).map_err(|reason| (file.clone(), reason)),
            );
            match (username_ok, password) {
                (true, Some(password)) => Some(Some(ExporterLogin { username, password_file: file.into(), password })),
                _ => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigErrors};
    use rustls_pki_types::ServerName;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        let mut all = vec![("PROXY_HOSTIP", "10.240.0.4")];
        all.extend_from_slice(vars);
        Config::from_vars(all)
    }

    fn names(vars: &[(&str, &str)]) -> Vec<String> {
        let errors = config(vars).unwrap_err().0;
        errors
            .iter()
            .map(|e| match e {
                ConfigError::Invalid { name, .. } => name.clone(),
                ConfigError::Missing { name, .. } => name.to_string(),
            })
            .collect()
    }

    const SKIP: (&str, &str) = ("PROXY_EXPORTER_INSECURE_SKIP_VERIFY", "true");
    const HTTPS: (&str, &str) = ("PROXY_EXPORTER_SCHEME", "https");

    #[test]
    fn plain_http_without_credentials_is_the_default() {
        let hop = config(&[]).unwrap().hop;
        assert!(hop.tls.is_none() && hop.basic_auth.is_none() && !hop.sends_credentials());
    }

    #[test]
    fn https_needs_a_ca_file_or_skip_verify() {
        assert_eq!(names(&[HTTPS]), vec!["PROXY_EXPORTER_CA_FILE"]);
        let tls = config(&[("PROXY_EXPORTER_SCHEME", "HTTPS"), SKIP]).unwrap().hop.tls.unwrap();
        assert!(matches!(tls.trust, Trust::InsecureSkipVerify));
        assert_eq!(tls.server_name, ServerName::try_from("10.240.0.4").unwrap());
        assert_eq!(names(&[HTTPS, SKIP, ("PROXY_EXPORTER_CA_FILE", "/ca.pem")]), vec!["PROXY_EXPORTER_CA_FILE"]);
        let missing = config(&[HTTPS, ("PROXY_EXPORTER_CA_FILE", "/nonexistent/ca.pem")]).unwrap_err().to_string();
        assert!(
            missing.starts_with("PROXY_EXPORTER_CA_FILE=\"/nonexistent/ca.pem\" is not valid: cannot read it"),
            "{missing}"
        );
    }

    #[test]
    fn the_server_name_defaults_to_the_host_and_may_be_an_ip_or_a_dns_name() {
        for (host, expected) in
            [("fd00::4", "fd00::4"), ("[fd00::4]", "fd00::4"), ("Node-1.internal", "node-1.internal")]
        {
            let c = Config::from_vars([("PROXY_HOSTIP", host), HTTPS, SKIP]).unwrap();
            assert_eq!(c.hop.tls.unwrap().server_name, ServerName::try_from(expected).unwrap(), "{host}");
        }
        let named = config(&[HTTPS, SKIP, ("PROXY_EXPORTER_SERVER_NAME", "windows-exporter.nodes.internal")]);
        assert!(matches!(named.unwrap().hop.tls.unwrap().server_name, ServerName::DnsName(_)));
        assert_eq!(
            names(&[HTTPS, SKIP, ("PROXY_EXPORTER_SERVER_NAME", "not a name")]),
            vec!["PROXY_EXPORTER_SERVER_NAME"]
        );
    }

    #[test]
    fn tls_settings_with_http_are_contradictions() {
        let got = names(&[("PROXY_EXPORTER_CA_FILE", "/ca.pem"), ("PROXY_EXPORTER_SERVER_NAME", "x"), SKIP]);
        assert_eq!(
            got,
            vec!["PROXY_EXPORTER_CA_FILE", "PROXY_EXPORTER_SERVER_NAME", "PROXY_EXPORTER_INSECURE_SKIP_VERIFY"]
        );
        assert_eq!(names(&[("PROXY_EXPORTER_SCHEME", "ftp")]), vec!["PROXY_EXPORTER_SCHEME"]);
    }

    #[test]
    fn credentials_and_certificate_pairs_come_both_or_neither() {
        assert_eq!(
            names(&[("PROXY_EXPORTER_BASIC_AUTH_USERNAME", "p")]),
            vec!["PROXY_EXPORTER_BASIC_AUTH_PASSWORD_FILE"]
        );
        assert_eq!(
            names(&[("PROXY_EXPORTER_BASIC_AUTH_PASSWORD_FILE", "/pw")]),
            vec!["PROXY_EXPORTER_BASIC_AUTH_USERNAME"]
        );
        assert_eq!(
            names(&[("PROXY_EXPORTER_CLIENT_CERT_FILE", "/c"), HTTPS, SKIP]),
            vec!["PROXY_EXPORTER_CLIENT_KEY_FILE"]
        );
        assert_eq!(
            names(&[("PROXY_EXPORTER_CLIENT_KEY_FILE", "/k"), HTTPS, SKIP]),
            vec!["PROXY_EXPORTER_CLIENT_CERT_FILE"]
        );
    }

    #[test]
    fn the_password_is_the_first_line_and_never_quoted() {
        let dir = std::env::temp_dir().join(format!("wep-password-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "s3cret\r\n").unwrap();
        assert_eq!(read_password(&file).unwrap(), "s3cret");
        std::fs::write(&file, "\n").unwrap();
        assert!(read_password(&file).unwrap_err().contains("empty"));
        std::fs::write(&file, b"\xef\xbb\xbfs3cret").unwrap();
        let reason = read_password(&file).unwrap_err();
        assert!(reason.contains("byte-order mark") && !reason.contains("s3cret"), "{reason}");
        std::fs::write(&file, "s3cret\n").unwrap();
        let user = config(&[
            ("PROXY_EXPORTER_BASIC_AUTH_USERNAME", "a:b"),
            ("PROXY_EXPORTER_BASIC_AUTH_PASSWORD_FILE", file.to_str().unwrap()),
        ]);
        let message = user.unwrap_err().to_string();
        assert!(
            message.contains("PROXY_EXPORTER_BASIC_AUTH_USERNAME=\"a:b\"") && !message.contains("s3cret"),
            "{message}"
        );
        let _ = std::fs::remove_dir_all(&dir);
        let s = ExporterLogin { username: "u".into(), password_file: "/pw".into(), password: "s3cret".into() };
        assert!(!format!("{s:?}").contains("s3cret"));
    }
}
