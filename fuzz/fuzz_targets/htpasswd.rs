//! htpasswd parsing with arbitrary bytes never panics; whatever it accepts is only bcrypt, and no
//! error message ever contains a line's hash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use windows_exporter_proxy::auth::basic::{Htpasswd, parse_line};

fuzz_target!(|data: &[u8]| {
    match Htpasswd::parse(data) {
        Ok(htpasswd) => assert!(!htpasswd.user_names().is_empty()),
        Err(error) => {
            let message = error.to_string();
            // A hash is the text after the first ':' of a line; no message may quote one.
            for line in data.split(|&b| b == b'\n') {
                let Ok(line) = std::str::from_utf8(line) else { continue };
                if let Some((_, hash)) = line.trim_end_matches('\r').split_once(':') {
                    if hash.len() >= 8 {
                        assert!(!message.contains(hash), "{message:?} quotes a hash");
                    }
                }
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok((user, hash, cost)) = parse_line(text) {
            assert!(!user.is_empty());
            assert!(hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$"));
            assert!((4..=31).contains(&cost));
        }
    }
});
