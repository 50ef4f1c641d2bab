//! `client-cert`: which verified client certificates may scrape (`PROXY_CLIENT_ALLOWED_NAMES`).
//!
//! The TLS handshake has already verified the certificate against `PROXY_CLIENT_CA_FILE` (a
//! certificate that does not verify never gets this far). With no allowed names, every verified
//! certificate may scrape, as with exporter-toolkit's `client_auth_type: RequireAndVerifyClientCert`.
//! With a list, one of the certificate's subject alternative names (DNS, URI, IP) or its subject
//! common name must equal a listed name exactly (DNS names compared without case, IP addresses as
//! addresses, no wildcards). The CN counts as well as the SANs because kube-rbac-proxy's
//! `--allowed-names` matches the CN, and its users' client certificates often carry only that.

use std::net::IpAddr;

use crate::tls::x509::{CertificateInfo, SubjectName};

/// The names a client certificate is known by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateNames {
    /// `dNSName` SANs.
    pub dns: Vec<String>,
    /// `uniformResourceIdentifier` SANs (SPIFFE IDs look like `spiffe://cluster.local/ns/x/sa/y`).
    pub uris: Vec<String>,
    /// `iPAddress` SANs.
    pub ips: Vec<IpAddr>,
    /// The subject's common name (the first, as the TLS module reads it).
    pub common_names: Vec<String>,
}

impl CertificateNames {
    /// Reads the names from a DER certificate; `None` if it does not parse (rustls has already
    /// parsed and verified it, so that would be a bug, and the answer is "not allowed").
    pub fn from_der(der: &[u8]) -> Option<CertificateNames> {
        let info = CertificateInfo::parse(der).ok()?;
        let mut names = CertificateNames::default();
        for name in info.names {
            match name {
                SubjectName::Dns(dns) => names.dns.push(dns),
                SubjectName::Uri(uri) => names.uris.push(uri),
                SubjectName::Ip(ip) => names.ips.push(ip),
            }
        }
        names.common_names.extend(info.common_name);
        Some(names)
    }

    /// The first name, for the log: which client was let in or refused.
    pub fn first(&self) -> Option<String> {
        self.dns
            .first()
            .cloned()
            .or_else(|| self.uris.first().cloned())
            .or_else(|| self.ips.first().map(IpAddr::to_string))
            .or_else(|| self.common_names.first().cloned())
    }
}

/// `PROXY_CLIENT_ALLOWED_NAMES`: the names a verified client certificate must carry one of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedNames(Vec<String>);

impl AllowedNames {
    /// Parses the comma list; `Err` with the reason for an empty entry.
    pub fn parse(value: &str) -> Result<AllowedNames, String> {
        let names: Vec<String> = value.split(',').map(|n| n.trim().to_owned()).collect();
        if names.iter().any(String::is_empty) {
            return Err("a comma list of names with no empty entry, such as prometheus.monitoring.svc".into());
        }
        Ok(AllowedNames(names))
    }

    /// The names.
    pub fn names(&self) -> &[String] {
        &self.0
    }

    /// Whether a certificate known by `names` may scrape. An empty list allows every certificate.
    pub fn allows(&self, names: &CertificateNames) -> bool {
        if self.0.is_empty() {
            return true;
        }
        self.0.iter().any(|allowed| {
            let ip = allowed.parse::<IpAddr>().ok();
            names.dns.iter().any(|dns| dns.eq_ignore_ascii_case(allowed))
                || names.uris.iter().any(|uri| uri == allowed)
                || ip.is_some_and(|ip| names.ips.contains(&ip))
                || names.common_names.iter().any(|cn| cn == allowed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dns: &[&str], uris: &[&str], ips: &[&str], cns: &[&str]) -> CertificateNames {
        CertificateNames {
            dns: dns.iter().map(|s| s.to_string()).collect(),
            uris: uris.iter().map(|s| s.to_string()).collect(),
            ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
            common_names: cns.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn no_list_allows_every_verified_certificate() {
        assert!(AllowedNames::default().allows(&CertificateNames::default()));
    }

    #[test]
    fn each_san_kind_matches_exactly() {
        let allowed = AllowedNames::parse("prometheus.monitoring.svc, spiffe://c/ns/m/sa/p,10.0.0.9,::1").unwrap();
        assert!(allowed.allows(&names(&["Prometheus.Monitoring.SVC"], &[], &[], &[])));
        assert!(allowed.allows(&names(&[], &["spiffe://c/ns/m/sa/p"], &[], &[])));
        assert!(allowed.allows(&names(&[], &[], &["10.0.0.9"], &[])));
        assert!(allowed.allows(&names(&[], &[], &["0:0::1"], &[])));
        assert!(!allowed.allows(&names(&["prometheus.monitoring.svc.evil"], &[], &[], &[])));
        assert!(!allowed.allows(&names(&["*.monitoring.svc"], &[], &[], &[])));
        assert!(!allowed.allows(&names(&[], &["SPIFFE://c/ns/m/sa/p"], &[], &[])));
    }

    #[test]
    fn common_name_matches_exactly() {
        let allowed = AllowedNames::parse("prometheus").unwrap();
        assert!(allowed.allows(&names(&[], &[], &[], &["prometheus"])));
        assert!(allowed.allows(&names(&["other"], &[], &[], &["prometheus"])));
        assert!(!allowed.allows(&names(&["other"], &[], &[], &["Prometheus"])));
    }

    #[test]
    fn empty_entries_are_refused() {
        assert!(AllowedNames::parse("a,,b").is_err());
        assert!(AllowedNames::parse("").is_err());
    }
}
