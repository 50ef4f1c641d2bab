//! The authentication settings: `PROXY_AUTH` and the variables of each method, with the rules
//! between them.
//!
//! - A listed method without its settings, or a method's settings while it is not listed, is an
//!   error: a half-configured method would silently leave the endpoint open or closed.
//! - `client-cert` needs `PROXY_CLIENT_CA_FILE` (serving TLS, `config/tls.rs`).
//! - `basic` and `tokenreview` carry reusable secrets, so they need serving TLS unless
//!   `PROXY_ALLOW_PLAINTEXT_CREDENTIALS=true` (which `main` warns about).
//! - The files are read here, before anything binds, so a bad htpasswd line or CA bundle exits 64
//!   with the variable named. The htpasswd message names the line, never the hash.

use std::path::PathBuf;
use std::sync::Arc;

use http::Uri;
use rustls::RootCertStore;

use super::variables as var;
use super::{ConfigError, Reader, parse};
use crate::auth::basic::Htpasswd;
use crate::auth::client_cert::AllowedNames;
use crate::auth::tokenreview::TokenReviewSettings;
use crate::auth::tokenreview::api::ApiSettings;
use crate::auth::{AuthSettings, Method};
use crate::tls::certificate;

/// `PROXY_FORWARD_AUTHORIZATION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// Forward only when the proxy authenticates nothing and sends no exporter credential.
    Auto,
    /// Always forward the scraper's `Authorization` (never a credential the proxy checked).
    Always,
    /// Never forward it.
    Never,
}

/// What the other settings files tell this one.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context {
    /// `PROXY_TLS_CERT_FILE` and `PROXY_TLS_KEY_FILE` are set: `PROXY_LISTEN` serves HTTPS.
    pub serving_tls: bool,
    /// `PROXY_CLIENT_CA_FILE` is set: the handshake asks for client certificates.
    pub client_ca: bool,
    /// The proxy sends exporter credentials of its own (basic auth or a client certificate).
    pub exporter_credentials: bool,
}

/// A comma list of methods, each once.
pub fn methods(value: &str) -> Result<Vec<Method>, String> {
    let mut methods = Vec::new();
    for name in parse::list(value)? {
        let Some(method) = Method::ALL.into_iter().find(|m| m.name().eq_ignore_ascii_case(&name)) else {
            return Err(format!("{name:?} is not a method; use a comma list of client-cert, basic, tokenreview"));
        };
        if methods.contains(&method) {
            return Err(format!("{name:?} is listed twice"));
        }
        methods.push(method);
    }
    Ok(methods)
}

/// `auto`, `true` or `false`.
pub fn forward(value: &str) -> Result<Forward, String> {
    match value.to_ascii_lowercase().as_str() {
        "auto" => Ok(Forward::Auto),
        other => match parse::boolean(other) {
            Ok(true) => Ok(Forward::Always),
            Ok(false) => Ok(Forward::Never),
            Err(_) => Err("use auto, true or false".into()),
        },
    }
}

/// A file path (not checked for existence here; the reader of the file says what is wrong).
pub fn path(value: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(value))
}

/// An `https://host[:port]` URL with no path, query or credentials.
pub fn https_url(value: &str) -> Result<Uri, String> {
    let uri: Uri = value.parse().map_err(|_| "not a URL such as https://10.96.0.1:443".to_string())?;
    if uri.scheme_str() != Some("https") {
        return Err("must start with https:// (the API server is only reached over TLS)".into());
    }
    let Some(authority) = uri.authority() else { return Err("has no host".into()) };
    if authority.as_str().contains('@') {
        return Err("must not carry credentials".into());
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err("must be the server's base URL, with no path or query".into());
    }
    Ok(uri)
}

/// Owned by the TLS settings (`config/tls.rs`); named here for the client-cert rule.
const CLIENT_CA_FILE: &str = "PROXY_CLIENT_CA_FILE";

const API_HINT: &str = "tokenreview needs the API server: Kubernetes sets KUBERNETES_SERVICE_HOST and \
                        KUBERNETES_SERVICE_PORT in every pod; outside one set PROXY_KUBE_API_URL";

/// Reads the authentication variables; errors go to `values`.
pub fn settings(values: &mut Reader, context: Context) -> AuthSettings {
    let methods = values.optional(&var::AUTH, methods).unwrap_or_default();
    let listed = |m: Method| methods.contains(&m);
    let mut settings = AuthSettings { methods: methods.clone(), ..AuthSettings::default() };

    // Settings of a method that is not listed.
    let owned: [(Method, &[&'static var::Variable]); 3] = [
        (Method::ClientCert, &[&var::CLIENT_ALLOWED_NAMES]),
        (Method::Basic, &[&var::BASIC_AUTH_FILE]),
        (
            Method::TokenReview,
            &[
                &var::KUBE_API_URL,
                &var::KUBE_TOKEN_FILE,
                &var::KUBE_CA_FILE,
                &var::TOKENREVIEW_AUDIENCES,
                &var::AUTHZ_USERS,
            ],
        ),
    ];
    for (method, variables) in owned {
        for variable in variables {
            let set_to_other_than_default = match (values.raw(variable), variable.default) {
                (Some(raw), var::WhenUnset::Value(default)) => raw.trim() != default,
                (Some(_), _) => true,
                (None, _) => false,
            };
            if set_to_other_than_default && !listed(method) {
                let raw = values.raw(variable).unwrap_or_default().to_owned();
                values.error(ConfigError::invalid(
                    variable,
                    &raw,
                    format!("is a setting of {}, which PROXY_AUTH does not list", method.name()),
                ));
            }
        }
    }

    if listed(Method::ClientCert) {
        if !context.client_ca {
            values.error(ConfigError::Missing {
                name: CLIENT_CA_FILE,
                hint: "client-cert in PROXY_AUTH verifies client certificates against this CA bundle \
                       (with PROXY_TLS_CERT_FILE and PROXY_TLS_KEY_FILE)",
            });
        }
        settings.client_allowed_names =
            values.optional(&var::CLIENT_ALLOWED_NAMES, AllowedNames::parse).unwrap_or_default();
    }
    if listed(Method::Basic) {
        if let Some(file) =
            values.required(&var::BASIC_AUTH_FILE, path, "basic in PROXY_AUTH checks users against this htpasswd file")
        {
            let read = std::fs::read(&file).map_err(|error| format!("cannot be read: {error}"));
            let parsed = read.and_then(|content| Htpasswd::parse(&content).map_err(|error| error.to_string()));
            settings.htpasswd =
                values.record(&var::BASIC_AUTH_FILE, parsed.map_err(|reason| (file.display().to_string(), reason)));
            settings.htpasswd_file = Some(file);
        }
    }
    if listed(Method::TokenReview) {
        settings.tokenreview = tokenreview(values);
    }

    let plaintext = values.value(&var::ALLOW_PLAINTEXT_CREDENTIALS, parse::boolean);
    let secret_methods: Vec<&str> =
        [Method::Basic, Method::TokenReview].into_iter().filter(|m| listed(*m)).map(Method::name).collect();
    if !secret_methods.is_empty() && !context.serving_tls {
        if plaintext {
            settings.plaintext_credentials = true;
        } else {
            values.error(ConfigError::Invalid {
                name: var::AUTH.name.to_owned(),
                value: values.raw(&var::AUTH).unwrap_or_default().to_owned(),
                reason: format!(
                    "{} would receive passwords or tokens over plain HTTP: set PROXY_TLS_CERT_FILE and \
                     PROXY_TLS_KEY_FILE, or PROXY_ALLOW_PLAINTEXT_CREDENTIALS=true on a network you trust",
                    secret_methods.join(" and ")
                ),
            });
        }
    }

    settings.forward_authorization = match values.value(&var::FORWARD_AUTHORIZATION, forward) {
        // With basic or tokenreview listed, Authorization is a credential the proxy checks: never
        // forwarded, whatever this says. With client-cert alone it is the scraper's own business.
        Forward::Always => secret_methods.is_empty(),
        Forward::Never => false,
        Forward::Auto => methods.is_empty() && !context.exporter_credentials,
    };
    settings
}

fn tokenreview(values: &mut Reader) -> Option<TokenReviewSettings> {
    let url = match values.optional(&var::KUBE_API_URL, https_url) {
        Some(url) => Some(url),
        None if values.is_set(&var::KUBE_API_URL) => None,
        None => service_url(values),
    };
    let token_file = values.value(&var::KUBE_TOKEN_FILE, path);
    if let Err(error) = std::fs::metadata(&token_file) {
        let shown = token_file.display().to_string();
        values.record::<()>(
            &var::KUBE_TOKEN_FILE,
            Err((
                shown,
                format!(
                    "cannot be read ({error}): the proxy authenticates to the API server with it; \
                     mount the service-account token (automountServiceAccountToken: true)"
                ),
            )),
        );
    }
    let ca_file = values.value(&var::KUBE_CA_FILE, path);
    let ca =
        values.record(&var::KUBE_CA_FILE, roots(&ca_file).map_err(|reason| (ca_file.display().to_string(), reason)));
    let audiences = values.optional(&var::TOKENREVIEW_AUDIENCES, parse::list).unwrap_or_default();
    let authz_users = values.optional(&var::AUTHZ_USERS, parse::list);
    Some(TokenReviewSettings { api: ApiSettings { url: url?, token_file, ca: Arc::new(ca?) }, audiences, authz_users })
}

/// `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`, as client-go's in-cluster config.
fn service_url(values: &mut Reader) -> Option<Uri> {
    let host = values.required(&var::KUBERNETES_SERVICE_HOST, parse::host, API_HINT);
    let port = values.required(&var::KUBERNETES_SERVICE_PORT, parse::port, API_HINT);
    let (host, port) = (host?, port?);
    let url = format!("https://{}:{port}", host.0);
    values.record(
        &var::KUBERNETES_SERVICE_HOST,
        url.parse::<Uri>().map_err(|_| (host.0, "cannot be used in a URL".into())),
    )
}

/// The CA bundle as trust roots: only these sign the API server's certificate. Read with the
/// TLS module's PEM reader, so a BOM, DER or a key file gets the same message as everywhere else.
fn roots(file: &std::path::Path) -> Result<RootCertStore, String> {
    let certificates = certificate::read_certificates(file).map_err(|error| error.to_string())?;
    certificate::trust_store(&certificates).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)], context: Context) -> Result<AuthSettings, Vec<String>> {
        let mut values = Reader::new(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let settings = settings(&mut values, context);
        values.finish().map(|()| settings).map_err(|e| e.0.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn unset_means_no_authentication_and_forwarding() {
        let s = read(&[], Context::default()).unwrap();
        assert!(!s.enabled());
        assert!(s.forward_authorization);
        let s = read(&[], Context { exporter_credentials: true, ..Context::default() }).unwrap();
        assert!(!s.forward_authorization, "auto: the proxy sends its own exporter credential");
        let s = read(&[("PROXY_FORWARD_AUTHORIZATION", "false")], Context::default()).unwrap();
        assert!(!s.forward_authorization);
    }

    #[test]
    fn methods_parse_in_order_once_each() {
        assert_eq!(methods("tokenreview, Basic"), Ok(vec![Method::TokenReview, Method::Basic]));
        assert!(methods("basic,basic").unwrap_err().contains("twice"));
        assert!(methods("oauth").unwrap_err().contains("client-cert, basic, tokenreview"));
    }

    #[test]
    fn a_listed_method_needs_its_settings() {
        let e = read(&[("PROXY_AUTH", "basic"), ("PROXY_ALLOW_PLAINTEXT_CREDENTIALS", "true")], Context::default())
            .unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("PROXY_BASIC_AUTH_FILE is required"), "{e:?}");
        let e = read(&[("PROXY_AUTH", "client-cert")], Context::default()).unwrap_err();
        assert!(e[0].starts_with("PROXY_CLIENT_CA_FILE is required"), "{e:?}");
        let e =
            read(&[("PROXY_AUTH", "tokenreview"), ("PROXY_ALLOW_PLAINTEXT_CREDENTIALS", "true")], Context::default())
                .unwrap_err();
        assert!(e.iter().any(|m| m.starts_with("KUBERNETES_SERVICE_HOST is required")), "{e:?}");
    }

    #[test]
    fn settings_of_an_unlisted_method_are_refused() {
        let e = read(&[("PROXY_BASIC_AUTH_FILE", "/x"), ("PROXY_AUTHZ_USERS", "a")], Context::default()).unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].contains("is a setting of basic, which PROXY_AUTH does not list"), "{e:?}");
        assert!(e[1].starts_with("PROXY_AUTHZ_USERS=\"a\""), "{e:?}");
        // Set to the default is the same as unset.
        let token = var::KUBE_TOKEN_FILE.default_text();
        assert!(read(&[("PROXY_KUBE_TOKEN_FILE", token)], Context::default()).is_ok());
    }

    #[test]
    fn secrets_over_plain_http_need_the_explicit_allowance() {
        let dir = std::env::temp_dir().join(format!("wep-auth-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("htpasswd");
        std::fs::write(&file, "p:$2y$04$GlEapHHrg9BJ2/9z/kQPGe7vMgjh8dguW8LSbDEWzEXEGJkQlNuLG\n").unwrap();
        let file = file.display().to_string();
        let vars = [("PROXY_AUTH", "basic"), ("PROXY_BASIC_AUTH_FILE", file.as_str())];
        let e = read(&vars, Context::default()).unwrap_err();
        assert!(e[0].contains("basic would receive passwords or tokens over plain HTTP"), "{e:?}");
        let s = read(&vars, Context { serving_tls: true, ..Context::default() }).unwrap();
        assert!(!s.plaintext_credentials && s.htpasswd.is_some());
        assert!(!s.forward_authorization, "auto never forwards when the proxy authenticates");
        let mut forced = vars.to_vec();
        forced.push(("PROXY_FORWARD_AUTHORIZATION", "true"));
        let s = read(&forced, Context { serving_tls: true, ..Context::default() }).unwrap();
        assert!(!s.forward_authorization, "a checked credential is never forwarded, even with true");
        let mut allowed = vars.to_vec();
        allowed.push(("PROXY_ALLOW_PLAINTEXT_CREDENTIALS", "true"));
        assert!(read(&allowed, Context::default()).unwrap().plaintext_credentials);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn api_urls_are_https_base_urls() {
        assert!(https_url("https://10.96.0.1:443").is_ok());
        assert!(https_url("https://[fd00::1]:6443/").is_ok());
        assert!(https_url("http://10.96.0.1").unwrap_err().contains("https://"));
        assert!(https_url("https://10.96.0.1/api").is_err());
        assert!(https_url("https://u:p@10.96.0.1").is_err());
    }
}
