//! The proxy's own credentials for the exporter: `Authorization: Basic` from
//! `PROXY_EXPORTER_BASIC_AUTH_USERNAME` and the password in
//! `PROXY_EXPORTER_BASIC_AUTH_PASSWORD_FILE`, sent on every exporter request (scrapes and
//! `/ready`'s probe), in place of whatever `Authorization` the scraper sent.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use http::HeaderValue;

use crate::tls::certificate;

/// A ready `Authorization` header value. Its `Debug` never shows it.
#[derive(Clone)]
pub struct Credentials {
    authorization: HeaderValue,
}

impl Credentials {
    /// `Basic base64(username:password)` (RFC 7617; UTF-8, what Go's `r.BasicAuth()` decodes).
    pub fn basic(username: &str, password: &str) -> Credentials {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        let mut authorization =
            HeaderValue::from_str(&format!("Basic {token}")).expect("base64 is always a valid header value");
        authorization.set_sensitive(true);
        Credentials { authorization }
    }

    /// The `Authorization` value.
    pub fn authorization(&self) -> &HeaderValue {
        &self.authorization
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(Basic <redacted>)")
    }
}

/// The password: the file's first line without its line ending (what `echo pw > file` and a
/// Kubernetes Secret key both give). The reason never quotes the file.
pub fn read_password(file: &Path) -> Result<String, String> {
    parse_password(std::fs::read(file).map_err(|error| format!("cannot read it: {error}"))?)
}

/// [`read_password`] for a file already read.
pub fn parse_password(bytes: Vec<u8>) -> Result<String, String> {
    if let Some(bom) = certificate::Bom::detect(&bytes) {
        return Err(format!(
            "starts with a {bom} byte-order mark (PowerShell 5 and some Windows editors write one); re-save it without one, e.g. Set-Content -Encoding ascii"
        ));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_is_rfc_7617() {
        // RFC 7617 section 2's example.
        let credentials = Credentials::basic("Aladdin", "open sesame");
        assert_eq!(credentials.authorization(), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert!(credentials.authorization().is_sensitive());
        assert!(!format!("{credentials:?}").contains("QWxh"));
    }
}
