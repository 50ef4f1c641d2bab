//! htpasswd parsing with arbitrary bytes never panics; whatever it accepts is only bcrypt in the
//! exact shape htpasswd writes, and no error message ever contains a line's hash.
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
            // in the messages' own words ("htpasswd -nbBC 10"). Messages quote any line's user
            // name, so a hash found inside some line's user name is not checked either.
            let entries: Vec<(&str, &str)> = data
                .split(|&b| b == b'\n')
                .filter_map(|line| std::str::from_utf8(line).ok())
                .filter(|line| !line.starts_with('#'))
                .filter_map(|line| line.trim_end_matches('\r').split_once(':'))
                .collect();
            for (_, hash) in &entries {
                let hash_like = hash.len() >= 20 && (hash.starts_with('$') || hash.starts_with('{'));
                if hash_like && !entries.iter().any(|(user, _)| user.contains(hash)) {
                    assert!(!message.contains(hash), "{message:?} quotes a hash");
                }
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok((user, hash, cost)) = parse_line(text)
    {
        assert!(!user.is_empty());
        assert!(hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$"));
        assert!(hash.len() == 60 && hash.is_ascii(), "{hash:?} is not $2y$NN$ and 53 characters");
        assert!((4..=31).contains(&cost));
    }
});
