//! `Authorization` parsing with arbitrary bytes never panics; a bearer token it accepts is
//! token68, a basic credential it accepts encodes back to the same user and password, and `Debug`
//! never shows a secret: it is the same whatever the secret is.
//!
//! That last check compares against `Debug` with the secret emptied, rather than searching the
//! output for the secret: a search also "finds" a password inside the user name's escaping
//! (`UU]\` in `"UU]\u{15}"`), which CI's fuzz smoke hit on 784a99b.
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use windows_exporter_proxy::auth::credential::Credential;

fuzz_target!(|data: &[u8]| {
    match Credential::parse_bytes(data) {
        Ok(Credential::Bearer(token)) => {
            assert!(!token.is_empty());
            assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)));
            let shown = format!("{:?}", Credential::Bearer(token));
            assert_eq!(shown, format!("{:?}", Credential::Bearer(String::new())), "Debug depends on the token");
        }
        Ok(Credential::Basic { user, password }) => {
            assert!(!user.contains(':'));
            let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            let again = Credential::parse_bytes(format!("Basic {encoded}").as_bytes());
            assert_eq!(again, Ok(Credential::Basic { user: user.clone(), password: password.clone() }));
            let shown = format!("{:?}", Credential::Basic { user: user.clone(), password });
            let without = format!("{:?}", Credential::Basic { user, password: String::new() });
            assert_eq!(shown, without, "Debug depends on the password");
        }
        Err(_) => {}
    }
});
