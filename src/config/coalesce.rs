//! The coalescing settings: whether identical concurrent scrapes share one exporter request
//! (`PROXY_COALESCE`) and how much of its body one shared request may hold
//! (`PROXY_COALESCE_MAX_BUFFER_BYTES`).
//!
//! The default bound, 2 MiB, holds a whole real scrape: a v0.31 scrape of a busy node is
//! 100 KB-2 MB uncompressed (and Prometheus asks for gzip, several times smaller), so with the
//! default no scraper of a typical scrape is ever cut for lagging and a late joiner can join
//! until the body ends. It costs at most 2 MiB per shared request on top of an idle ~3 MiB
//! process (4 MiB with the default `PROXY_MAX_INFLIGHT=2`), and only while a request is in
//! flight. The floor is two exporter reads (2 x 128 KiB): a scraper must be able to hold one
//! read while the next arrives without counting as behind.

use super::Reader;
use super::parse::{self, Parser};
use super::variables as var;
use crate::scrape::coalesce::Coalescing;

/// Smallest accepted bound: two of the exporter client's 128 KiB reads.
pub const MIN_BUFFER_BYTES: u64 = 256 * 1024;
/// Largest accepted bound: far past any scrape, so anything above is a typo.
pub const MAX_BUFFER_BYTES: u64 = 1 << 30;

/// Reads both variables (errors are recorded in `values`).
pub fn settings(values: &mut Reader) -> Coalescing {
    Coalescing {
        enabled: values.value(&var::COALESCE, parse::boolean),
        max_buffer_bytes: values.value(&var::COALESCE_MAX_BUFFER_BYTES, BUFFER_BYTES),
    }
}

const BUFFER_BYTES: Parser<u64> = buffer_bytes;

/// A byte count between [`MIN_BUFFER_BYTES`] and [`MAX_BUFFER_BYTES`].
fn buffer_bytes(value: &str) -> Result<u64, String> {
    let bytes: u64 = value.parse().map_err(|_| "not a whole number of bytes".to_owned())?;
    if bytes < MIN_BUFFER_BYTES {
        return Err(format!("must be at least {MIN_BUFFER_BYTES} (two exporter reads of 128 KiB)"));
    }
    if bytes > MAX_BUFFER_BYTES {
        return Err(format!("must be at most {MAX_BUFFER_BYTES} (1 GiB)"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::with_host as config;

    #[test]
    fn on_by_default_with_a_2_mib_bound() {
        let c = config(&[]).unwrap().coalesce;
        assert_eq!(c, Coalescing { enabled: true, max_buffer_bytes: 2 * 1024 * 1024 });
        assert!(!config(&[("PROXY_COALESCE", "false")]).unwrap().coalesce.enabled);
    }

    #[test]
    fn bad_values_name_the_variable() {
        assert_eq!(
            config(&[("PROXY_COALESCE", "maybe")]).unwrap_err(),
            "PROXY_COALESCE=\"maybe\" is not valid: use true or false"
        );
        assert_eq!(
            config(&[("PROXY_COALESCE_MAX_BUFFER_BYTES", "65536")]).unwrap_err(),
            "PROXY_COALESCE_MAX_BUFFER_BYTES=\"65536\" is not valid: must be at least 262144 (two exporter reads of 128 KiB)"
        );
        assert!(config(&[("PROXY_COALESCE_MAX_BUFFER_BYTES", "2MiB")]).unwrap_err().contains("not a whole number"));
        assert!(config(&[("PROXY_COALESCE_MAX_BUFFER_BYTES", "2000000000")]).unwrap_err().contains("at most"));
    }
}
