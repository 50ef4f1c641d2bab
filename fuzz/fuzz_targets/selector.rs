//! PromQL series selectors: any text parses or is refused with a message (never a panic), a
//! parsed selector matches any sample line without panicking, and a list splits the same way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use windows_exporter_proxy::exposition::{Line, parse};
use windows_exporter_proxy::filter::selector::{Selector, parse_list};

fuzz_target!(|input: (&str, &[u8])| {
    let (text, line) = input;
    let _ = parse_list(text);
    if let Ok(selector) = Selector::parse(text) {
        assert!(!selector.matchers().is_empty());
        if let Line::Sample(sample) = parse(line) {
            let _ = selector.matches(&sample);
        }
    }
});
