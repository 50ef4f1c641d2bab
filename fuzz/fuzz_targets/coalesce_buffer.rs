//! The coalescing buffer under arbitrary interleavings: the first byte picks the buffer limit,
//! each further byte one step (a write, an end, a join, a read, a reader leaving, the writer
//! asking for room). The model check panics if any reader gets a byte it was not written, out of
//! order, twice, a clean end early, is cut without lagging, or if memory passes the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use windows_exporter_proxy::scrape::coalesce::buffer::model;

fuzz_target!(|data: &[u8]| {
    let (limit, ops) = model::decode(data);
    model::check(limit, &ops);
});
