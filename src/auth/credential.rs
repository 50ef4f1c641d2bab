//! The credential a scraper sends in `Authorization`: `Basic` (RFC 7617) or `Bearer` (RFC 6750).
//!
//! Parsing is strict where being lenient would let two readings of one header exist (one space
//! after the scheme, token68 characters only in a bearer token, valid base64 and UTF-8 in a basic
//! credential) and lenient where every HTTP client differs (the scheme's case, as RFC 9110
//! section 11.1 requires). A header that parses to neither is "bad credentials": a 401.
//!
//! The values are secrets: [`Credential`]'s `Debug` never shows them.

use std::fmt;

use base64::Engine as _;
use http::HeaderValue;

/// One scraper credential.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// `Authorization: Basic base64(user:password)`.
    Basic {
        /// The user name (before the first `:`).
        user: String,
        /// The password (everything after the first `:`).
        password: String,
    },
    /// `Authorization: Bearer <token>`.
    Bearer(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { user, .. } => write!(f, "Basic {{ user: {user:?}, password: <redacted> }}"),
            Credential::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// Why an `Authorization` header is not a usable credential. Never contains the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// Not `Basic` or `Bearer`.
    #[error("authorization scheme is neither Basic nor Bearer")]
    UnknownScheme,
    /// Scheme without a value, or the separator is not exactly one space.
    #[error("authorization header is malformed")]
    Malformed,
    /// `Basic` whose value is not base64 of UTF-8 `user:password`.
    #[error("basic credential is not base64 of user:password")]
    BadBasic,
    /// `Bearer` whose value has characters outside token68.
    #[error("bearer token has characters outside token68")]
    BadBearer,
}

impl Credential {
    /// Parses one `Authorization` header value.
    pub fn parse(value: &HeaderValue) -> Result<Credential, CredentialError> {
        Credential::parse_bytes(value.as_bytes())
    }

    /// Parses the bytes of an `Authorization` header value.
    pub fn parse_bytes(value: &[u8]) -> Result<Credential, CredentialError> {
        let Some(space) = value.iter().position(|&b| b == b' ') else {
            return Err(if value.eq_ignore_ascii_case(b"basic") || value.eq_ignore_ascii_case(b"bearer") {
                CredentialError::Malformed
            } else {
                CredentialError::UnknownScheme
            });
        };
        let (scheme, rest) = (&value[..space], &value[space + 1..]);
        // Trailing spaces are trimmed (some clients add one); anything else must be exact.
        let rest = rest.trim_ascii_end();
        if rest.is_empty() || rest.starts_with(b" ") {
            return Err(CredentialError::Malformed);
        }
        if scheme.eq_ignore_ascii_case(b"basic") {
            basic(rest)
        } else if scheme.eq_ignore_ascii_case(b"bearer") {
            bearer(rest)
        } else {
            Err(CredentialError::UnknownScheme)
        }
    }
}

fn basic(encoded: &[u8]) -> Result<Credential, CredentialError> {
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|_| CredentialError::BadBasic)?;
    let text = String::from_utf8(decoded).map_err(|_| CredentialError::BadBasic)?;
    let (user, password) = text.split_once(':').ok_or(CredentialError::BadBasic)?;
    Ok(Credential::Basic { user: user.to_owned(), password: password.to_owned() })
}

/// token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=" (RFC 9110 section 11.2).
fn bearer(token: &[u8]) -> Result<Credential, CredentialError> {
    let body_end = token.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    let (body, padding) = token.split_at(body_end);
    let token68 = |b: &u8| b.is_ascii_alphanumeric() || b"-._~+/".contains(b);
    if body.is_empty() || !body.iter().all(token68) || !padding.iter().all(|&b| b == b'=') {
        return Err(CredentialError::BadBearer);
    }
    Ok(Credential::Bearer(String::from_utf8(token.to_vec()).expect("token68 is ASCII")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Result<Credential, CredentialError> {
        Credential::parse_bytes(value.as_bytes())
    }

    #[test]
    fn basic_splits_at_the_first_colon() {
        // "prometheus:pa:ss" in base64
        assert_eq!(
            parse("Basic cHJvbWV0aGV1czpwYTpzcw=="),
            Ok(Credential::Basic { user: "prometheus".into(), password: "pa:ss".into() })
        );
        assert_eq!(parse("basic Og=="), Ok(Credential::Basic { user: String::new(), password: String::new() }));
    }

    #[test]
    fn scheme_is_case_insensitive() {
        assert_eq!(parse("BEARER abc.def-ghi_~+/=="), Ok(Credential::Bearer("abc.def-ghi_~+/==".into())));
        assert!(matches!(parse("bAsIc Og=="), Ok(Credential::Basic { .. })));
    }

    #[test]
    fn malformed_headers_are_told_apart() {
        assert_eq!(parse("Bearer"), Err(CredentialError::Malformed));
        assert_eq!(parse("Bearer "), Err(CredentialError::Malformed));
        assert_eq!(parse("Bearer  two-spaces"), Err(CredentialError::Malformed));
        assert_eq!(parse("Digest x"), Err(CredentialError::UnknownScheme));
        assert_eq!(parse("token"), Err(CredentialError::UnknownScheme));
        assert_eq!(parse(""), Err(CredentialError::UnknownScheme));
        assert_eq!(parse("Basic not-base64!"), Err(CredentialError::BadBasic));
        assert_eq!(parse("Basic bm9jb2xvbg=="), Err(CredentialError::BadBasic)); // "nocolon"
        assert_eq!(parse("Basic /w=="), Err(CredentialError::BadBasic)); // 0xff, not UTF-8
        assert_eq!(parse("Bearer a b"), Err(CredentialError::BadBearer));
        assert_eq!(parse("Bearer ==="), Err(CredentialError::BadBearer));
        assert_eq!(parse("Bearer a=b"), Err(CredentialError::BadBearer));
    }

    #[test]
    fn a_trailing_space_is_tolerated() {
        assert_eq!(parse("Bearer t "), Ok(Credential::Bearer("t".into())));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let shown = format!("{:?} {:?}", parse("Bearer s3cret").unwrap(), parse("Basic dTpzM2NyZXQ=").unwrap());
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("\"u\""), "{shown}");
    }
}
