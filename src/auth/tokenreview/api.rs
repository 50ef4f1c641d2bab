//! The Kubernetes API server client: HTTPS to one URL, trusting only the service-account CA,
//! authenticated with the proxy's own service-account token.
//!
//! The token file is read again for every request to the API server: the kubelet rotates
//! projected service-account tokens (about hourly, files swapped atomically), and the review
//! caches keep those requests to a few a minute, so reading a small file each time is cheaper
//! than getting rotation wrong. The read runs on the blocking pool.
//!
//! Each request has [`REQUEST_TIMEOUT`] in all: a scraper waiting on a hung API server gets 503
//! well inside Prometheus' default 10 s scrape timeout.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::review::Status;

/// Longest wait for one API server answer, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// TCP connect timeout to the API server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest answer read: reviews are a few hundred bytes.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Where and how to reach the API server.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Base URL, `https://host:port`.
    pub url: Uri,
    /// The proxy's service-account token file.
    pub token_file: PathBuf,
    /// The CA bundle that signed the API server's certificate.
    pub ca: Arc<RootCertStore>,
}

/// A pooled HTTPS client for the API server.
pub struct KubeApi {
    settings: ApiSettings,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl KubeApi {
    /// A client for `settings`; connects lazily.
    pub fn new(settings: ApiSettings) -> KubeApi {
        let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("aws-lc-rs supports the default protocol versions")
            .with_root_certificates(settings.ca.clone())
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(90)).build(connector);
        KubeApi { settings, client }
    }

    /// The API server's URL, for logs.
    pub fn url(&self) -> &Uri {
        &self.settings.url
    }

    /// POSTs `object` to `path` and reads the answer as `A`. The error is a one-line cause for the
    /// log; it never contains a token.
    pub async fn create<T: Serialize, A: DeserializeOwned>(&self, path: &str, object: &T) -> Result<A, String> {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.create_now(path, object)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer from the API server within {REQUEST_TIMEOUT:?}")),
        }
    }

    async fn create_now<T: Serialize, A: DeserializeOwned>(&self, path: &str, object: &T) -> Result<A, String> {
        let token = self.token().await?;
        let body = serde_json::to_vec(object).expect("review objects always serialise");
        let uri = format!("{}{path}", self.settings.url.to_string().trim_end_matches('/'));
        let mut authorization = HeaderValue::try_from(format!("Bearer {token}"))
            .map_err(|_| format!("{}: the token has characters a header cannot carry", self.token_file()))?;
        authorization.set_sensitive(true);
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::AUTHORIZATION, authorization)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, concat!("windows-exporter-proxy/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(Bytes::from(body)))
            .expect("the URL was checked at start-up");
        let answer = self.client.request(request).await.map_err(|error| describe(&error))?;
        let status = answer.status();
        let bytes = Limited::new(answer.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|error| format!("reading the API server's answer: {error}"))?
            .to_bytes();
        if status != StatusCode::CREATED && status != StatusCode::OK {
            let message = serde_json::from_slice::<Status>(&bytes).map(|s| s.message).unwrap_or_default();
            let hint = match status {
                StatusCode::UNAUTHORIZED => " (the proxy's own token was refused: check PROXY_KUBE_TOKEN_FILE)",
                StatusCode::FORBIDDEN => {
                    " (the proxy's service account may not create reviews: bind it to system:auth-delegator)"
                }
                _ => "",
            };
            return Err(format!("POST {path}: {status}{hint}: {message}"));
        }
        serde_json::from_slice(&bytes).map_err(|error| format!("POST {path}: unreadable answer: {error}"))
    }

    /// The current token, read fresh.
    async fn token(&self) -> Result<String, String> {
        let file = self.settings.token_file.clone();
        let read = tokio::task::spawn_blocking(move || std::fs::read_to_string(file))
            .await
            .map_err(|_| "reading the token file was cancelled".to_string())?;
        let token = read.map_err(|error| format!("{}: {error}", self.token_file()))?;
        let token = token.trim();
        if token.is_empty() {
            return Err(format!("{} is empty", self.token_file()));
        }
        Ok(token.to_owned())
    }

    fn token_file(&self) -> String {
        format!("token file {}", self.settings.token_file.display())
    }
}

/// The client error with its causes (hyper-util's top-level message alone is "client error (Connect)").
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    format!("request to the API server failed: {text}")
}
