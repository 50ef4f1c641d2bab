//! An HTTPS client as a scraper holds one: rustls with a chosen CA, server name, client
//! certificate, TLS versions and ALPN offer, reporting what the handshake negotiated.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::{Scraped, parse_metrics, read_all, within};

/// How to connect.
#[derive(Clone)]
pub struct TlsClient {
    /// The CA the client trusts.
    pub ca: std::path::PathBuf,
    /// SNI and the name the certificate must carry.
    pub server_name: String,
    /// A client certificate chain and key to present, if any.
    pub identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// TLS versions offered (both by default).
    pub versions: Vec<&'static rustls::SupportedProtocolVersion>,
    /// ALPN protocols offered (`http/1.1` by default).
    pub alpn: Vec<Vec<u8>>,
}

/// What a handshake negotiated.
#[derive(Debug)]
pub struct Handshake {
    /// The leaf the server presented (DER).
    pub leaf: Vec<u8>,
    /// The ALPN protocol chosen, if any.
    pub alpn: Option<Vec<u8>>,
    /// The TLS version.
    pub version: rustls::ProtocolVersion,
}

impl TlsClient {
    /// Trusting `ca` for the name `proxy.test`, no client certificate, TLS 1.2 and 1.3, ALPN http/1.1.
    pub fn new(ca: &Path) -> TlsClient {
        TlsClient {
            ca: ca.to_owned(),
            server_name: "proxy.test".into(),
            identity: None,
            versions: vec![&rustls::version::TLS13, &rustls::version::TLS12],
            alpn: vec![b"http/1.1".to_vec()],
        }
    }

    /// Presenting `chain` and `key` as its client certificate.
    pub fn with_identity(mut self, chain: &Path, key: &Path) -> TlsClient {
        self.identity = Some((chain.to_owned(), key.to_owned()));
        self
    }

    /// A fresh TLS connection (no session resumption, so the server presents its certificate).
    pub async fn connect(&self, addr: SocketAddr) -> Result<(TlsStream<TcpStream>, Handshake), std::io::Error> {
        let mut roots = rustls::RootCertStore::empty();
        for der in CertificateDer::pem_file_iter(&self.ca).expect("CA file").map(Result::unwrap) {
            roots.add(der).unwrap();
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&self.versions)
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => {
                let chain: Vec<_> = CertificateDer::pem_file_iter(chain).unwrap().map(Result::unwrap).collect();
                builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key).unwrap()).unwrap()
            }
        };
        config.alpn_protocols = self.alpn.clone();
        config.resumption = rustls::client::Resumption::disabled();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = within("TCP connect", TcpStream::connect(addr)).await?;
        let name = ServerName::try_from(self.server_name.clone()).unwrap();
        let stream = within("the TLS handshake", connector.connect(name, tcp)).await?;
        let (_, connection) = stream.get_ref();
        let handshake = Handshake {
            leaf: connection.peer_certificates().unwrap()[0].to_vec(),
            alpn: connection.alpn_protocol().map(<[u8]>::to_vec),
            version: connection.protocol_version().unwrap(),
        };
        Ok((stream, handshake))
    }

    /// `GET path` on a fresh connection.
    pub async fn get(&self, addr: SocketAddr, path: &str) -> Result<(Scraped, Handshake), std::io::Error> {
        self.get_with(addr, path, &[]).await
    }

    /// `GET path` with `headers` on a fresh connection.
    pub async fn get_with(
        &self,
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<(Scraped, Handshake), std::io::Error> {
        let (stream, handshake) = self.connect(addr).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("HTTP/1.1 over TLS");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut request = Request::get(path).header("host", self.server_name.as_str());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Empty::<Bytes>::new()).unwrap();
        // A client certificate that fails verification is reported by TLS 1.3 servers after the
        // client's handshake finished: the first request is where it shows.
        let response = within("response headers", sender.send_request(request)).await.map_err(std::io::Error::other)?;
        Ok((read_all(response).await.map_err(std::io::Error::other)?, handshake))
    }

    /// The proxy's own metrics, asked on a fresh connection with `headers` (a credential when
    /// `PROXY_AUTH` protects `/proxy/metrics`).
    pub async fn own_metrics(&self, addr: SocketAddr, headers: &[(&str, &str)]) -> HashMap<String, f64> {
        let (answer, _) = self.get_with(addr, "/proxy/metrics", headers).await.expect("/proxy/metrics over TLS");
        assert_eq!(answer.status, 200, "/proxy/metrics: {}", answer.text());
        parse_metrics(&answer.text())
    }
}

/// The TLS alert the peer sent, if that is what `error` (or an error it wraps) is.
pub fn alert_received(error: &(dyn std::error::Error + 'static)) -> Option<rustls::AlertDescription> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(rustls::Error::AlertReceived(alert)) = error.downcast_ref::<rustls::Error>() {
            return Some(*alert);
        }
        // An io::Error's source() is its inner error's source: look at the inner error itself.
        next = match error.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref) {
            Some(inner) => Some(inner),
            None => error.source(),
        };
    }
    None
}
