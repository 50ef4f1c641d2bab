//! htpasswd parsing with arbitrary bytes never panics; whatever it accepts is only bcrypt in the
//! exact shape htpasswd writes, and no error message depends on a line's hash.
//!
//! "Depends on" is checked by parsing a second copy in which every character of bcrypt's alphabet
//! in every hash past its first 7 bytes is moved 16 places along that alphabet. That keeps what
//! the messages may say (the line, the user, the type, which the first 7 bytes and the length
//! tell) and whether each line is valid, so the two results must be the same. Sixteen places,
//! not one: bcrypt 0.19 decodes strictly, so the salt's last character (4 unused bits) must stay
//! a multiple of 16 along the alphabet and the hash's last (2 unused bits) a multiple of 4, and
//! a move by 16 keeps both. Searching the message
//! for the hash instead also "finds" it in the quoted user name's escaping, or in a type's name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use windows_exporter_proxy::auth::basic::{Htpasswd, parse_line};

/// Bytes of a hash kept as they are: enough for every prefix the type is told by (`$apr1$`).
const KEPT: usize = 7;

/// bcrypt's base64 alphabet, in its order.
const BCRYPT_ALPHABET: &[u8; 64] = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// `data` with every character of bcrypt's alphabet in each line's hash (after the line's first
/// ':') past its first [`KEPT`] bytes moved 16 places along the alphabet. ASCII bytes are never
/// part of a multi-byte character, so every line stays valid UTF-8 or invalid as it was.
fn rotate_hashes(data: &[u8]) -> Vec<u8> {
    let rotate = |b: u8| match BCRYPT_ALPHABET.iter().position(|&c| c == b) {
        Some(index) => BCRYPT_ALPHABET[(index + 16) % 64],
        None => b,
    };
    let lines = data.split(|&b| b == b'\n').map(|line| match line.iter().position(|&b| b == b':') {
        Some(colon) if line.len() > colon + 1 + KEPT => {
            let (kept, secret) = line.split_at(colon + 1 + KEPT);
            kept.iter().copied().chain(secret.iter().copied().map(rotate)).collect()
        }
        _ => line.to_vec(),
    });
    lines.collect::<Vec<Vec<u8>>>().join(&b'\n')
}

fuzz_target!(|data: &[u8]| {
    let rotated = rotate_hashes(data);
    match (Htpasswd::parse(data), Htpasswd::parse(&rotated)) {
        (Ok(htpasswd), Ok(again)) => {
            assert!(!htpasswd.user_names().is_empty());
            assert_eq!(htpasswd.user_names(), again.user_names());
        }
        (Err(error), Err(again)) => assert_eq!(error.to_string(), again.to_string(), "a message depends on a hash"),
        (first, again) => panic!("changing a hash's letters changed the outcome: {first:?} then {again:?}"),
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
