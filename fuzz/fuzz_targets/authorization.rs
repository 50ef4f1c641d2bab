//! `Authorization` parsing with arbitrary bytes never panics; a bearer token it accepts is
//! token68, a basic credential it accepts encodes back to the same user and password, and `Debug`
//! never shows a secret.
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use windows_exporter_proxy::auth::credential::Credential;

fuzz_target!(|data: &[u8]| {
    match Credential::parse_bytes(data) {
        Ok(Credential::Bearer(token)) => {
            assert!(!token.is_empty());
            assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)));
            // "Bearer(<redacted>)" itself may contain a short token ("dacte").
            if token.len() >= 4 && !"Bearer(<redacted>)".contains(&token) {
                assert!(!format!("{:?}", Credential::Bearer(token.clone())).contains(&token));
            }
        }
        Ok(Credential::Basic { user, password }) => {
            assert!(!user.contains(':'));
            let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            let again = Credential::parse_bytes(format!("Basic {encoded}").as_bytes());
            assert_eq!(again, Ok(Credential::Basic { user: user.clone(), password: password.clone() }));
            let skeleton = "Basic { user: \"\", password: <redacted> }";
            if password.len() >= 4 && !user.contains(&password) && !skeleton.contains(&password) {
                assert!(!format!("{:?}", Credential::Basic { user, password: password.clone() }).contains(&password));
            }
        }
        Err(_) => {}
    }
});
