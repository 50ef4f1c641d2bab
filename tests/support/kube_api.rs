//! A fake Kubernetes API server for the `tokenreview` tests: HTTPS on 127.0.0.1 with a
//! certificate from a CA made for the test ([`super::certificates`], the openssl CLI), serving
//! TokenReview and SubjectAccessReview creation only.
//!
//! It checks what a real API server would: the proxy's own bearer token (the one in the token
//! file right now), `Content-Type: application/json`, and a body that deserialises into
//! k8s-openapi's generated `TokenReview` / `SubjectAccessReview` (which also checks `apiVersion`
//! and `kind`). Its answers are k8s-openapi objects serialised, so the proxy is tested against the
//! API's real shapes, not against a copy of its own structs.
//!
//! Answers are scripted by the scraper's token (see [`Script`]); every review is recorded.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewStatus, UserInfo};
use k8s_openapi::api::authorization::v1::{SubjectAccessReview, SubjectAccessReviewStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};

use super::certificates::{Leaf, Pki, Role};

/// The user a [`Script::GOOD`] token belongs to: kube-prometheus' Prometheus.
pub const PROMETHEUS_USER: &str = "system:serviceaccount:monitoring:prometheus-k8s";
/// The user a [`Script::DENIED`] token belongs to.
pub const OTHER_USER: &str = "system:serviceaccount:default:someone";

/// Scraper tokens and what the fake API server does with each.
pub struct Script;

impl Script {
    /// Authenticated as [`PROMETHEUS_USER`], who may `get /metrics` and `/proxy/metrics`.
    pub const GOOD: &str = "good.token-for-prometheus";
    /// A second good token for the same user (to miss the token cache but hit the same user).
    pub const GOOD_TOO: &str = "another.good-token";
    /// Authenticated as [`OTHER_USER`], whom every SubjectAccessReview denies.
    pub const DENIED: &str = "denied.token";
    /// `status.authenticated: false`.
    pub const INVALID: &str = "invalid.token";
    /// The TokenReview gets 500.
    pub const ERROR: &str = "error.token";
    /// The TokenReview is never answered.
    pub const HANG: &str = "hang.token";
    /// Authenticated like GOOD, but only after the test opens [`FakeKubeApi::gate`].
    pub const GATED: &str = "gated.token";
}

/// One review the fake API server received.
#[derive(Debug, Clone)]
pub enum Review {
    /// A TokenReview, as k8s-openapi read it, with the bearer token the proxy sent.
    Token { review: TokenReview, proxy_token: String },
    /// A SubjectAccessReview.
    Access { review: SubjectAccessReview, proxy_token: String },
}

/// The API server's certificate: `IP:127.0.0.1` (what the proxy dials) and the in-cluster name.
fn api_server_leaf() -> Leaf {
    Leaf::new(Role::Server, "kube-apiserver", &["IP:127.0.0.1", "DNS:kubernetes.default.svc"], 0x6b)
}

struct State {
    /// The token the proxy must present (what its token file holds now).
    expected_proxy_token: Mutex<String>,
    reviews: mpsc::UnboundedSender<Review>,
    token_reviews: AtomicUsize,
    access_reviews: AtomicUsize,
    gate: Arc<Semaphore>,
}

/// The fake API server. Stops when dropped.
pub struct FakeKubeApi {
    pub addr: SocketAddr,
    /// The directory of its certificates and the token file; `pki.ca` is what the proxy is told
    /// to trust (PROXY_KUBE_CA_FILE).
    pub pki: Pki,
    /// The proxy's service-account token file (PROXY_KUBE_TOKEN_FILE).
    pub token_file: PathBuf,
    state: Arc<State>,
    reviews: mpsc::UnboundedReceiver<Review>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeKubeApi {
    /// Starts on 127.0.0.1:0 with a fresh CA and a proxy token file holding `proxy-sa-token-1`.
    pub async fn start() -> FakeKubeApi {
        let pki = Pki::new("kube-api");
        let server = pki.issue("kube-apiserver", &api_server_leaf());
        let token_file = pki.path("token");
        std::fs::write(&token_file, "proxy-sa-token-1\n").unwrap();
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(&server.chain).unwrap().map(Result::unwrap).collect();
        let key = PrivateKeyDer::from_pem_file(&server.key).unwrap();
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (sender, reviews) = mpsc::unbounded_channel();
        let state = Arc::new(State {
            expected_proxy_token: Mutex::new("proxy-sa-token-1".into()),
            reviews: sender,
            token_reviews: AtomicUsize::new(0),
            access_reviews: AtomicUsize::new(0),
            gate: Arc::new(Semaphore::new(0)),
        });
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (acceptor, state) = (acceptor.clone(), shared.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else { return };
                    let service = service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(answer(&state, request).await) }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
                });
            }
        });
        FakeKubeApi { addr, pki, token_file, state, reviews, task }
    }

    /// `https://127.0.0.1:port` (PROXY_KUBE_API_URL).
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The proxy variables that point `tokenreview` here.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PROXY_KUBE_API_URL", self.url()),
            ("PROXY_KUBE_TOKEN_FILE", self.token_file.display().to_string()),
            ("PROXY_KUBE_CA_FILE", self.pki.ca.display().to_string()),
        ]
    }

    /// The proxy with `PROXY_AUTH=tokenreview` against this API server, in front of `exporter`,
    /// plus `extra` variables (later ones win).
    pub async fn proxy(&self, exporter: &super::FakeExporter, extra: &[(&str, &str)]) -> super::ProxyProcess {
        let port = exporter.port();
        let api_vars = self.vars();
        let mut vars: Vec<(&str, &str)> = vec![
            ("PROXY_HOSTIP", "127.0.0.1"),
            ("PROXY_PORT", &port),
            ("PROXY_AUTH", "tokenreview"),
            ("PROXY_ALLOW_PLAINTEXT_CREDENTIALS", "true"),
        ];
        vars.extend(api_vars.iter().map(|(k, v)| (*k, v.as_str())));
        vars.extend_from_slice(extra);
        super::ProxyProcess::start(&vars).await
    }

    /// Rotates the proxy's token the kubelet's way (write aside, rename over): the API server
    /// accepts only the new one from now on.
    pub fn rotate_proxy_token(&self, token: &str) {
        let aside = self.pki.path("token.new");
        std::fs::write(&aside, format!("{token}\n")).unwrap();
        *self.state.expected_proxy_token.lock().unwrap() = token.to_owned();
        std::fs::rename(&aside, &self.token_file).unwrap();
    }

    /// Lets `n` waiting [`Script::GATED`] reviews answer.
    pub fn open_gate(&self, n: usize) {
        self.state.gate.add_permits(n);
    }

    /// TokenReviews received so far (answered or not).
    pub fn token_reviews(&self) -> usize {
        self.state.token_reviews.load(Ordering::SeqCst)
    }

    /// SubjectAccessReviews received so far.
    pub fn access_reviews(&self) -> usize {
        self.state.access_reviews.load(Ordering::SeqCst)
    }

    /// The next review received.
    pub async fn next_review(&mut self) -> Review {
        super::within("the fake API server to receive a review", self.reviews.recv()).await.expect("fake API stopped")
    }

    /// Reviews received and not yet taken.
    pub fn pending_reviews(&mut self) -> Vec<Review> {
        let mut all = Vec::new();
        while let Ok(review) = self.reviews.try_recv() {
            all.push(review);
        }
        all
    }
}

impl Drop for FakeKubeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Body = Full<Bytes>;

async fn answer(state: &State, request: Request<Incoming>) -> Response<Body> {
    let proxy_token = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_owned();
    let json_body = request.headers().get("content-type").is_some_and(|v| v == "application/json");
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    if method != http::Method::POST {
        return status(StatusCode::METHOD_NOT_ALLOWED, "only POST here");
    }
    if proxy_token != *state.expected_proxy_token.lock().unwrap() {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    if !json_body {
        return status(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send application/json");
    }
    match path.as_str() {
        "/apis/authentication.k8s.io/v1/tokenreviews" => {
            state.token_reviews.fetch_add(1, Ordering::SeqCst);
            let review: TokenReview = match serde_json::from_slice(&body) {
                Ok(review) => review,
                Err(error) => return status(StatusCode::BAD_REQUEST, &format!("not a TokenReview: {error}")),
            };
            let _ = state.reviews.send(Review::Token { review: review.clone(), proxy_token });
            token_review(state, review).await
        }
        "/apis/authorization.k8s.io/v1/subjectaccessreviews" => {
            state.access_reviews.fetch_add(1, Ordering::SeqCst);
            let review: SubjectAccessReview = match serde_json::from_slice(&body) {
                Ok(review) => review,
                Err(error) => return status(StatusCode::BAD_REQUEST, &format!("not a SubjectAccessReview: {error}")),
            };
            let _ = state.reviews.send(Review::Access { review: review.clone(), proxy_token });
            access_review(review)
        }
        _ => status(StatusCode::NOT_FOUND, "the fake serves reviews only"),
    }
}

async fn token_review(state: &State, mut review: TokenReview) -> Response<Body> {
    let token = review.spec.token.clone().unwrap_or_default();
    let audiences = review.spec.audiences.clone();
    let user = |name: &str| UserInfo {
        username: Some(name.to_owned()),
        uid: Some(format!("uid-of-{name}")),
        groups: Some(vec!["system:serviceaccounts".into(), "system:authenticated".into()]),
        extra: Some(BTreeMap::from([(
            "authentication.kubernetes.io/pod-name".to_owned(),
            vec!["prometheus-k8s-0".to_owned()],
        )])),
    };
    let authenticated = |user: UserInfo| TokenReviewStatus {
        authenticated: Some(true),
        user: Some(user),
        // A real API server answers with the audiences the token is valid for among those asked;
        // tokens in this script are valid for every audience asked except "other-audience".
        audiences: audiences.clone().map(|a| a.into_iter().filter(|a| a != "other-audience").collect()),
        error: None,
    };
    let status_ = match token.as_str() {
        Script::GOOD | Script::GOOD_TOO => authenticated(user(PROMETHEUS_USER)),
        Script::DENIED => authenticated(user(OTHER_USER)),
        Script::GATED => {
            let _permit = state.gate.acquire().await.unwrap();
            authenticated(user(PROMETHEUS_USER))
        }
        Script::ERROR => return status(StatusCode::INTERNAL_SERVER_ERROR, "etcdserver: request timed out"),
        Script::HANG => std::future::pending().await,
        _ => TokenReviewStatus {
            authenticated: Some(false),
            error: Some("invalid bearer token".into()),
            ..Default::default()
        },
    };
    review.status = Some(status_);
    json(StatusCode::CREATED, &review)
}

/// RBAC as kube-prometheus grants it: Prometheus may `get` `/metrics` (and here, as the chart's
/// ClusterRole grants them, `/metrics/slow` and `/proxy/metrics`); nobody else may do anything.
fn access_review(mut review: SubjectAccessReview) -> Response<Body> {
    let spec = &review.spec;
    let attributes = spec.non_resource_attributes.clone().unwrap_or_default();
    let allowed = spec.user.as_deref() == Some(PROMETHEUS_USER)
        && attributes.verb.as_deref() == Some("get")
        && matches!(attributes.path.as_deref(), Some("/metrics" | "/metrics/slow" | "/proxy/metrics"))
        && spec.resource_attributes.is_none();
    review.status = Some(SubjectAccessReviewStatus {
        allowed,
        reason: Some(if allowed { "RBAC: allowed by ClusterRoleBinding \"prometheus-k8s\"" } else { "" }.into()),
        ..Default::default()
    });
    json(StatusCode::CREATED, &review)
}

fn json<T: serde::Serialize>(code: StatusCode, value: &T) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(serde_json::to_vec(value).unwrap())));
    *response.status_mut() = code;
    response.headers_mut().insert("content-type", "application/json".parse().unwrap());
    response
}

fn status(code: StatusCode, message: &str) -> Response<Body> {
    let body = Status {
        code: Some(code.as_u16().into()),
        message: Some(message.to_owned()),
        status: Some("Failure".into()),
        ..Default::default()
    };
    json(code, &body)
}
