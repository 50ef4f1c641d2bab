//! `ScrapeBudget::from_header` with arbitrary header bytes, margins and defaults never panics,
//! always lands in [MIN_DEADLINE, MAX_DEADLINE], and forwards a well-formed header.
#![no_main]

use std::time::Duration;

use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use windows_exporter_proxy::deadline::{MAX_DEADLINE, MIN_DEADLINE, ScrapeBudget};

fuzz_target!(|input: (Vec<u8>, u32, u32)| {
    let (bytes, margin_ms, default_ms) = input;
    let header = HeaderValue::from_bytes(&bytes).ok();
    let margin = Duration::from_millis(margin_ms.into());
    let default = Duration::from_millis(default_ms.into());
    let budget = ScrapeBudget::from_header(header.as_ref(), margin, default);
    assert!(budget.timeout >= MIN_DEADLINE && budget.timeout <= MAX_DEADLINE, "{budget:?}");
    if header.is_none() {
        assert!(!budget.from_scraper);
    }
    let forwarded = budget.header_value();
    let text = forwarded.to_str().expect("ASCII");
    let seconds: f64 = text.parse().expect("a number");
    assert!((seconds - budget.timeout.as_secs_f64()).abs() < 0.001, "{text} vs {budget:?}");
});
