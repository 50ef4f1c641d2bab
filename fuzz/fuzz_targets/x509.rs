//! The hand-written DER reader (`tls::x509`) with arbitrary bytes never panics, and is exact:
//! whatever certificate it accepts it refuses one byte shorter or one byte longer, and its serial
//! prints as `openssl x509 -serial`'s colon-separated hex.
#![no_main]

use libfuzzer_sys::fuzz_target;
use windows_exporter_proxy::tls::x509::CertificateInfo;

fuzz_target!(|der: &[u8]| {
    let Ok(info) = CertificateInfo::parse(der) else { return };
    assert!(CertificateInfo::parse(&der[..der.len() - 1]).is_err(), "accepted a truncated certificate");
    let mut longer = der.to_vec();
    longer.push(0);
    assert!(CertificateInfo::parse(&longer).is_err(), "accepted trailing bytes");
    let hex = info.serial_hex();
    assert_eq!(hex.len(), (3 * info.serial.len()).saturating_sub(1), "{hex}");
    assert!(hex.bytes().all(|b| b == b':' || b.is_ascii_hexdigit()), "{hex}");
});
