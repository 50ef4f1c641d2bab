//! Header filtering with arbitrary header maps never panics, and no hop-by-hop header (nor a
//! header `Connection` named) survives; `for_upstream_request` also drops body framing and Host.
#![no_main]

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use windows_exporter_proxy::headers::{for_upstream_request, remove_hop_by_hop};

const FIXED: [&str; 6] = ["connection", "te", "trailer", "transfer-encoding", "upgrade", "keep-alive"];
/// Names worth hitting often: the hop-by-hop set and some end-to-end ones.
const NAMES: [&str; 12] = [
    "connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "keep-alive",
    "proxy-authorization",
    "content-length",
    "host",
    "expect",
    "accept",
    "x-custom",
];

fuzz_target!(|pairs: Vec<(u8, Vec<u8>, Vec<u8>)>| {
    let mut map = HeaderMap::new();
    for (pick, name, value) in pairs {
        let name = match NAMES.get(pick as usize % (NAMES.len() * 2)) {
            Some(known) => HeaderName::from_static(known),
            None => match HeaderName::from_bytes(&name) {
                Ok(name) => name,
                Err(_) => continue,
            },
        };
        let Ok(value) = HeaderValue::from_bytes(&value) else { continue };
        map.append(name, value);
    }
    let named: Vec<HeaderName> = map
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();

    let mut filtered = map.clone();
    remove_hop_by_hop(&mut filtered);
    let upstream = for_upstream_request(map.clone());
    for out in [&filtered, &upstream] {
        for name in FIXED {
            assert!(!out.contains_key(name), "{name} survived");
        }
        for name in &named {
            assert!(!out.contains_key(name), "{name} (named by Connection) survived");
        }
        assert!(out.keys().all(|k| !k.as_str().starts_with("proxy-")));
        // Filtering only removes: every surviving header has all its original values.
        for name in out.keys() {
            let before: Vec<_> = map.get_all(name).iter().collect();
            let after: Vec<_> = out.get_all(name).iter().collect();
            assert_eq!(before, after, "{name} changed");
        }
    }
    for name in [header::CONTENT_LENGTH, header::EXPECT, header::HOST] {
        assert!(!upstream.contains_key(&name));
    }
});
