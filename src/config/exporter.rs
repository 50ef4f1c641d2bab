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

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, ServerName};

use crate::config::ConfigError;
use crate::exporter::tls::trust_anchors;
use crate::tls::certificate::{self, KeyPair, PairFile};

/// The variables this module reads.
pub mod names {
    /// `http` or `https`.
    pub const SCHEME: &str = "PROXY_EXPORTER_SCHEME";
    /// PEM bundle of the CAs trusted for the exporter's certificate.
    pub const CA_FILE: &str = "PROXY_EXPORTER_CA_FILE";
    /// `true` accepts any exporter certificate.
    pub const INSECURE_SKIP_VERIFY: &str = "PROXY_EXPORTER_INSECURE_SKIP_VERIFY";
    /// The name checked against the exporter's certificate.
    pub const SERVER_NAME: &str = "PROXY_EXPORTER_SERVER_NAME";
    /// The proxy's client certificate chain for the exporter.
    pub const CLIENT_CERT_FILE: &str = "PROXY_EXPORTER_CLIENT_CERT_FILE";
    /// Its private key.
    pub const CLIENT_KEY_FILE: &str = "PROXY_EXPORTER_CLIENT_KEY_FILE";
    /// The basic-auth username the proxy sends.
    pub const BASIC_AUTH_USERNAME: &str = "PROXY_EXPORTER_BASIC_AUTH_USERNAME";
    /// The file holding its password.
    pub const BASIC_AUTH_PASSWORD_FILE: &str = "PROXY_EXPORTER_BASIC_AUTH_PASSWORD_FILE";
}
use names::*;

/// The hop variables as set (trimmed; `None` when unset or empty).
#[derive(Debug, Default, Clone)]
pub struct ExporterVars<'a> {
    /// `PROXY_EXPORTER_SCHEME`.
    pub scheme: Option<&'a str>,
    /// `PROXY_EXPORTER_CA_FILE`.
    pub ca_file: Option<&'a str>,
    /// `PROXY_EXPORTER_INSECURE_SKIP_VERIFY`.
    pub insecure_skip_verify: Option<&'a str>,
    /// `PROXY_EXPORTER_SERVER_NAME`.
    pub server_name: Option<&'a str>,
    /// `PROXY_EXPORTER_CLIENT_CERT_FILE`.
    pub client_cert_file: Option<&'a str>,
    /// `PROXY_EXPORTER_CLIENT_KEY_FILE`.
    pub client_key_file: Option<&'a str>,
    /// `PROXY_EXPORTER_BASIC_AUTH_USERNAME`.
    pub basic_auth_username: Option<&'a str>,
    /// `PROXY_EXPORTER_BASIC_AUTH_PASSWORD_FILE`.
    pub basic_auth_password_file: Option<&'a str>,
}

/// How the proxy reaches the exporter, checked.
#[derive(Debug, Clone, Default)]
pub struct ExporterSettings {
    /// `Some` for `https`.
    pub tls: Option<HopTls>,
    /// The credentials the proxy sends on every exporter request, if any.
    pub basic_auth: Option<BasicAuth>,
}

/// TLS to the exporter.
#[derive(Debug, Clone)]
pub struct HopTls {
    /// Which certificates are accepted from the exporter.
    pub trust: Trust,
    /// Checked against the exporter's certificate and sent as SNI (DNS names only).
    pub server_name: ServerName<'static>,
    /// The proxy's client certificate, if it has one.
    pub identity: Option<ClientIdentity>,
}

/// Which exporter certificates are accepted.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Those that chain to one of these CAs (from `PROXY_EXPORTER_CA_FILE`).
    Bundle {
        /// The file, for the expiry metric and messages.
        file: PathBuf,
        /// Its certificates.
        certificates: Vec<CertificateDer<'static>>,
        /// The same, as trust anchors.
        roots: Arc<RootCertStore>,
    },
    /// Any (`PROXY_EXPORTER_INSECURE_SKIP_VERIFY=true`).
    InsecureSkipVerify,
}

/// The proxy's client certificate: its files (re-read when they change) and what they held at
/// start.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    /// `PROXY_EXPORTER_CLIENT_CERT_FILE`.
    pub cert_file: PathBuf,
    /// `PROXY_EXPORTER_CLIENT_KEY_FILE`.
    pub key_file: PathBuf,
    /// The pair as loaded at start.
    pub loaded: KeyPair,
}

/// Basic-auth credentials for the exporter.
#[derive(Clone)]
pub struct BasicAuth {
    /// `PROXY_EXPORTER_BASIC_AUTH_USERNAME`.
    pub username: String,
    /// `PROXY_EXPORTER_BASIC_AUTH_PASSWORD_FILE`.
    pub password_file: PathBuf,
    /// The file's first line.
    pub password: String,
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the password.
        f.debug_struct("BasicAuth")
            .field("username", &self.username)
            .field("password_file", &self.password_file)
            .finish_non_exhaustive()
    }
}

fn invalid(name: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { name: name.to_owned(), value: value.to_owned(), reason: reason.into() }
}

impl ExporterSettings {
    /// Checks the hop variables. `host` is `PROXY_HOSTIP` as given (the default server name).
    /// Every problem is returned, not only the first.
    pub fn from_vars(vars: &ExporterVars<'_>, host: Option<&str>) -> Result<ExporterSettings, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let https = match vars.scheme.map(str::to_ascii_lowercase).as_deref() {
            None | Some("http") => false,
            Some("https") => true,
            Some(_) => {
                errors.push(invalid(SCHEME, vars.scheme.unwrap_or_default(), "use http or https"));
                // Check the rest as if https, the likelier intent when TLS settings are given.
                true
            }
        };
        let skip_verify = match vars.insecure_skip_verify.map(str::to_ascii_lowercase).as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => {
                errors.push(invalid(INSECURE_SKIP_VERIFY, vars.insecure_skip_verify.unwrap_or_default(), "use true or false"));
                false
            }
        };
        let basic_auth = basic_auth(vars, &mut errors);

        if !https {
            let tls_only = [
                (CA_FILE, vars.ca_file),
                (INSECURE_SKIP_VERIFY, vars.insecure_skip_verify.filter(|_| skip_verify)),
                (SERVER_NAME, vars.server_name),
                (CLIENT_CERT_FILE, vars.client_cert_file),
                (CLIENT_KEY_FILE, vars.client_key_file),
            ];
            for (name, value) in tls_only {
                if let Some(value) = value {
                    errors.push(invalid(name, value, "is a TLS setting but PROXY_EXPORTER_SCHEME is http; set it to https or unset this"));
                }
            }
            return match errors.is_empty() {
                true => Ok(ExporterSettings { tls: None, basic_auth }),
                false => Err(errors),
            };
        }

        let trust = match (vars.ca_file, skip_verify) {
            (Some(file), false) => {
                let loaded = certificate::read_certificates(file.as_ref()).map_err(|e| e.to_string()).and_then(
                    |certificates| Ok((trust_anchors(&certificates)?, certificates)),
                );
                match loaded {
                    Ok((roots, certificates)) => {
                        Some(Trust::Bundle { file: PathBuf::from(file), certificates, roots: Arc::new(roots) })
                    }
                    Err(reason) => {
                        errors.push(invalid(CA_FILE, file, reason));
                        None
                    }
                }
            }
            (None, false) => {
                errors.push(ConfigError::Missing {
                    name: CA_FILE,
                    hint: "PROXY_EXPORTER_SCHEME is https: give the PEM bundle of the CA that signs the exporter's certificate (or PROXY_EXPORTER_INSECURE_SKIP_VERIFY=true to try things out)",
                });
                None
            }
            (Some(file), true) => {
                errors.push(invalid(CA_FILE, file, "PROXY_EXPORTER_INSECURE_SKIP_VERIFY=true checks no CA; unset one of them"));
                None
            }
            (None, true) => Some(Trust::InsecureSkipVerify),
        };

        let server_name = match (vars.server_name, host) {
            (Some(name), _) => parse_server_name(name).map_err(|reason| invalid(SERVER_NAME, name, reason)),
            // PROXY_HOSTIP itself is checked (and reported) by the main config.
            (None, Some(host)) => parse_server_name(host).map_err(|reason| invalid(SERVER_NAME, "", format!("unset, and PROXY_HOSTIP={host:?} cannot be a TLS server name ({reason}); set PROXY_EXPORTER_SERVER_NAME"))),
            (None, None) => Err(ConfigError::Missing { name: SERVER_NAME, hint: "set PROXY_HOSTIP (the default) or this" }),
        };
        let server_name = server_name.map_err(|error| errors.push(error)).ok();

        let identity = match (vars.client_cert_file, vars.client_key_file) {
            (None, None) => None,
            (Some(cert), None) => {
                errors.push(ConfigError::Missing { name: CLIENT_KEY_FILE, hint: "PROXY_EXPORTER_CLIENT_CERT_FILE is set: give its private key too" });
                let _ = cert;
                None
            }
            (None, Some(_)) => {
                errors.push(ConfigError::Missing { name: CLIENT_CERT_FILE, hint: "PROXY_EXPORTER_CLIENT_KEY_FILE is set: give its certificate too" });
                None
            }
            (Some(cert_file), Some(key_file)) => match certificate::read_key_pair(cert_file.as_ref(), key_file.as_ref()) {
                Ok(loaded) => Some(ClientIdentity { cert_file: cert_file.into(), key_file: key_file.into(), loaded }),
                Err(error) => {
                    let (name, value) = match error.file {
                        PairFile::Certificate => (CLIENT_CERT_FILE, cert_file),
                        PairFile::Key => (CLIENT_KEY_FILE, key_file),
                    };
                    errors.push(invalid(name, value, error.to_string()));
                    None
                }
            },
        };

        match (errors.is_empty(), trust, server_name) {
            (true, Some(trust), Some(server_name)) => {
                Ok(ExporterSettings { tls: Some(HopTls { trust, server_name, identity }), basic_auth })
            }
            _ => Err(errors),
        }
    }
}

/// `PROXY_EXPORTER_BASIC_AUTH_USERNAME` with its password file, both or neither.
fn basic_auth(vars: &ExporterVars<'_>, errors: &mut Vec<ConfigError>) -> Option<BasicAuth> {
    match (vars.basic_auth_username, vars.basic_auth_password_file) {
        (None, None) => None,
        (Some(_), None) => {
            errors.push(ConfigError::Missing {
                name: BASIC_AUTH_PASSWORD_FILE,
                hint: "PROXY_EXPORTER_BASIC_AUTH_USERNAME is set: give the file holding its password",
            });
            None
        }
        (None, Some(_)) => {
            errors.push(ConfigError::Missing {
                name: BASIC_AUTH_USERNAME,
                hint: "PROXY_EXPORTER_BASIC_AUTH_PASSWORD_FILE is set: give the username it is for",
            });
            None
        }
        (Some(username), Some(file)) => {
            // RFC 7617: the user-id cannot contain a colon; control characters break the header.
            let username_ok = !username.contains(':') && !username.chars().any(char::is_control);
            if !username_ok {
                errors.push(invalid(BASIC_AUTH_USERNAME, username, "a basic-auth username cannot hold ':' or control characters"));
            }
            let password = read_password(file).map_err(|reason| errors.push(invalid(BASIC_AUTH_PASSWORD_FILE, file, reason)));
            match (username_ok, password) {
                (true, Ok(password)) => Some(BasicAuth { username: username.to_owned(), password_file: file.into(), password }),
                _ => None,
            }
        }
    }
}

/// The password: the file's first line without its line ending (what `echo pw > file` and a
/// Kubernetes Secret key both give). The reason never quotes the file.
pub fn read_password(file: &str) -> Result<String, String> {
    let bytes = std::fs::read(file).map_err(|error| format!("cannot read it: {error}"))?;
    if bytes.starts_with(&[0xef, 0xbb, 0xbf]) || bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]) {
        return Err("starts with a byte-order mark (PowerShell and some Windows editors write one); re-save it without one, e.g. Set-Content -Encoding ascii".to_owned());
    }
    let text = String::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_owned())?;
    let password = text.lines().next().unwrap_or_default();
    if password.is_empty() {
        return Err("is empty: the first line is the password".to_owned());
    }
    if password.chars().any(char::is_control) {
        return Err("the password holds control characters".to_owned());
    }
    Ok(password.to_owned())
}

/// A DNS name or an IP address (IPv6 with or without brackets).
fn parse_server_name(value: &str) -> Result<ServerName<'static>, String> {
    let unbracketed = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')).unwrap_or(value);
    ServerName::try_from(unbracketed.to_owned()).map_err(|_| "not a DNS name or an IP address".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: ExporterVars<'_>) -> Result<ExporterSettings, Vec<ConfigError>> {
        ExporterSettings::from_vars(&vars, Some("10.240.0.4"))
    }

    #[test]
    fn plain_http_without_credentials_is_the_default() {
        let s = settings(ExporterVars::default()).unwrap();
        assert!(s.tls.is_none() && s.basic_auth.is_none());
    }

    #[test]
    fn https_needs_a_ca_file_or_skip_verify() {
        let errors = settings(ExporterVars { scheme: Some("https"), ..Default::default() }).unwrap_err();
        assert!(matches!(errors.as_slice(), [ConfigError::Missing { name: CA_FILE, .. }]), "{errors:?}");
        let s = settings(ExporterVars { scheme: Some("HTTPS"), insecure_skip_verify: Some("true"), ..Default::default() })
            .unwrap();
        let tls = s.tls.unwrap();
        assert!(matches!(tls.trust, Trust::InsecureSkipVerify));
        assert_eq!(tls.server_name, ServerName::try_from("10.240.0.4").unwrap());
    }

    #[test]
    fn the_server_name_defaults_to_the_host_and_may_be_an_ip_or_a_dns_name() {
        let vars = ExporterVars { scheme: Some("https"), insecure_skip_verify: Some("true"), ..Default::default() };
        for (host, expected) in [("fd00::4", "fd00::4"), ("[fd00::4]", "fd00::4"), ("node-1.internal", "node-1.internal")] {
            let tls = ExporterSettings::from_vars(&vars, Some(host)).unwrap().tls.unwrap();
            assert_eq!(tls.server_name, ServerName::try_from(expected).unwrap(), "{host}");
        }
        let named = ExporterVars { server_name: Some("windows-exporter.nodes.internal"), ..vars.clone() };
        let tls = ExporterSettings::from_vars(&named, Some("10.0.0.1")).unwrap().tls.unwrap();
        assert!(matches!(tls.server_name, ServerName::DnsName(_)));
        let bad = ExporterVars { server_name: Some("not a name"), ..vars };
        let errors = ExporterSettings::from_vars(&bad, Some("10.0.0.1")).unwrap_err();
        assert!(matches!(&errors[..], [ConfigError::Invalid { name, .. }] if name == SERVER_NAME), "{errors:?}");
    }

    #[test]
    fn tls_settings_with_http_are_contradictions() {
        let errors = settings(ExporterVars { ca_file: Some("/ca.pem"), server_name: Some("x"), ..Default::default() })
            .unwrap_err();
        let names: Vec<&str> = errors
            .iter()
            .map(|e| match e {
                ConfigError::Invalid { name, .. } => name.as_str(),
                ConfigError::Missing { name, .. } => name,
            })
            .collect();
        assert_eq!(names, vec![CA_FILE, SERVER_NAME]);
    }

    #[test]
    fn credentials_come_both_or_neither() {
        let errors = settings(ExporterVars { basic_auth_username: Some("prometheus"), ..Default::default() }).unwrap_err();
        assert!(matches!(&errors[..], [ConfigError::Missing { name: BASIC_AUTH_PASSWORD_FILE, .. }]));
        let errors = settings(ExporterVars { basic_auth_password_file: Some("/pw"), ..Default::default() }).unwrap_err();
        assert!(matches!(&errors[..], [ConfigError::Missing { name: BASIC_AUTH_USERNAME, .. }]));
    }

    #[test]
    fn the_password_is_the_first_line_and_never_quoted() {
        let dir = std::env::temp_dir().join(format!("wep-password-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "s3cret\r\n").unwrap();
        assert_eq!(read_password(file.to_str().unwrap()).unwrap(), "s3cret");
        std::fs::write(&file, "\n").unwrap();
        assert!(read_password(file.to_str().unwrap()).unwrap_err().contains("empty"));
        std::fs::write(&file, b"\xef\xbb\xbfs3cret").unwrap();
        let reason = read_password(file.to_str().unwrap()).unwrap_err();
        assert!(reason.contains("byte-order mark") && !reason.contains("s3cret"), "{reason}");
        let _ = std::fs::remove_dir_all(&dir);
        let s = BasicAuth { username: "u".into(), password_file: "/pw".into(), password: "s3cret".into() };
        assert!(!format!("{s:?}").contains("s3cret"));
    }
}
