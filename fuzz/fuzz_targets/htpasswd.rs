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
            // A hash is the text after the first ':' of a non-comment line; no message may quote
            // one. Only hash-like values are checked (starting with '$' or '{', 20+ bytes, not
            // inside the user name, which messages do quote): shorter text can occur by chance
            // in the messages' own words ("htpasswd -nbBC 10").
            for line in data.split(|&b| b == b'\n') {
                let Ok(line) = std::str::from_utf8(line) else { continue };
                if line.starts_with('#') {
                    continue;
                }
                if let Some((user, hash)) = line.trim_end_matches('\r').split_once(':') {
                    let hash_like = hash.len() >= 20 && (hash.starts_with('$') || hash.starts_with('{'));
                    if hash_like && !user.contains(hash) {
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
