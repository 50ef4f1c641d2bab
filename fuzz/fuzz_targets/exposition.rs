//! The exposition line splitter and parser with arbitrary bytes cut at arbitrary places: never a
//! panic, the lines are the same whatever the chunking, and every label read either parses or
//! is an error (never a panic), its value unescaping without one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use windows_exporter_proxy::exposition::{Line, LineSplitter, content, parse};

fn lines(body: &[u8], cuts: &[u8], max: usize) -> Result<Vec<Vec<u8>>, ()> {
    let mut splitter = LineSplitter::new(max);
    let mut out = Vec::new();
    let mut rest = body;
    let mut cuts = cuts.iter().cycle();
    while !rest.is_empty() {
        let size = (*cuts.next().unwrap_or(&255) as usize).max(1).min(rest.len());
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        for span in splitter.split(chunk) {
            out.push(span.map_err(|_| ())?.bytes(chunk).to_vec());
        }
    }
    out.extend(splitter.finish().map(|last| last.to_vec()));
    Ok(out)
}

fuzz_target!(|input: (Vec<u8>, Vec<u8>)| {
    let (body, cuts) = input;
    let whole = lines(&body, &[255], 1 << 20);
    let cut = lines(&body, &cuts, 1 << 20);
    assert_eq!(whole, cut, "the chunking changed the lines");
    for line in whole.unwrap_or_default() {
        if let Line::Sample(sample) = parse(content(&line)) {
            for label in sample.labels() {
                let Ok(label) = label else { break };
                let _ = label.value();
            }
            let _ = sample.value();
        }
    }
});
