//! Who may scrape: the `PROXY_AUTH` chain in front of `/metrics` and `/proxy/metrics`.
//!
//! Each listed method looks at the credential it understands: `client-cert` at the verified
//! client certificate from the TLS handshake ([`client_cert`]), `basic` at
//! `Authorization: Basic` ([`basic`]), `tokenreview` at `Authorization: Bearer`
//! ([`tokenreview`]). A request is served when any of them authenticates and authorizes it.
//! Otherwise the answer is the most actionable one: 503 if a method could not decide (the API
//! server failed, or too many unknown tokens are being reviewed; retrying may work), else 403 if a credential was valid but not allowed, else 401
//! with a `WWW-Authenticate` challenge per listed method. No refused request reaches the exporter.
//!
//! `/health` and `/ready` never come here: the kubelet's probes send no credentials.
//! Every decision is counted once in `windows_exporter_proxy_auth_decisions_total{method,outcome}`
//! where `method` is the method that decided, or `none` when the request carried no credential
//! any listed method reads.

pub mod basic;
pub mod client_cert;
pub mod credential;
pub mod tokenreview;

use std::path::PathBuf;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use self::basic::{BasicAuth, Htpasswd};
use self::client_cert::{AllowedNames, CertificateNames};
use self::credential::Credential;
use self::tokenreview::api::KubeApi;
use self::tokenreview::{TokenReview, TokenReviewSettings};
use crate::response::{self, ResponseBody};
use crate::telemetry::{AuthOutcome, DecisionLabels, Telemetry};

/// The realm in every challenge.
pub const REALM: &str = "windows-exporter-proxy";

/// One authentication method, as written in `PROXY_AUTH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// A verified TLS client certificate.
    ClientCert,
    /// `Authorization: Basic`, checked against an htpasswd file.
    Basic,
    /// `Authorization: Bearer`, checked with the Kubernetes TokenReview API.
    TokenReview,
}

impl Method {
    /// Every method, in the order `--help` lists them.
    pub const ALL: [Method; 3] = [Method::ClientCert, Method::Basic, Method::TokenReview];

    /// The name in `PROXY_AUTH` and in the `method` label.
    pub fn name(self) -> &'static str {
        match self {
            Method::ClientCert => "client-cert",
            Method::Basic => "basic",
            Method::TokenReview => "tokenreview",
        }
    }

    /// The `WWW-Authenticate` challenge for a 401.
    fn challenge(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            // No registered HTTP scheme means "send a TLS client certificate"; the name says it.
            Method::ClientCert => "ClientCertificate realm=\"windows-exporter-proxy\"",
            Method::Basic => "Basic realm=\"windows-exporter-proxy\", charset=\"UTF-8\"",
            Method::TokenReview => "Bearer realm=\"windows-exporter-proxy\"",
        })
    }
}

/// What one method concluded about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Authenticated and authorized; the user, for the debug log.
    Allowed(String),
    /// No valid credential of this method's kind.
    Unauthenticated,
    /// Authenticated as this user, who may not scrape.
    Forbidden(String),
    /// Could not decide; the cause goes to the log, never to the scraper.
    Unavailable(String),
    /// Did not decide: too many credentials never seen valid to check now
    /// ([`tokenreview::limit`]); logged there, aggregated.
    Limited,
}

/// The decision for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The method that decided; `None` when no listed method found its credential.
    pub method: Option<Method>,
    /// What it concluded.
    pub verdict: Verdict,
}

impl Decision {
    /// Whether the request may go on.
    pub fn is_allowed(&self) -> bool {
        matches!(self.verdict, Verdict::Allowed(_))
    }

    /// The `outcome` label.
    pub fn outcome(&self) -> AuthOutcome {
        match self.verdict {
            Verdict::Allowed(_) => AuthOutcome::allowed,
            Verdict::Unauthenticated => AuthOutcome::unauthenticated,
            Verdict::Forbidden(_) => AuthOutcome::forbidden,
            Verdict::Unavailable(_) => AuthOutcome::unavailable,
            Verdict::Limited => AuthOutcome::limited,
        }
    }

    fn rank(&self) -> u8 {
        match self.verdict {
            Verdict::Allowed(_) => 3,
            Verdict::Unavailable(_) | Verdict::Limited => 2,
            Verdict::Forbidden(_) => 1,
            Verdict::Unauthenticated => 0,
        }
    }
}

/// The checked authentication settings.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// `PROXY_AUTH` in order; empty: no authentication.
    pub methods: Vec<Method>,
    /// `PROXY_CLIENT_ALLOWED_NAMES` (empty: every verified certificate).
    pub client_allowed_names: AllowedNames,
    /// The users of `PROXY_BASIC_AUTH_FILE`, when `basic` is listed.
    pub htpasswd: Option<Htpasswd>,
    /// `PROXY_BASIC_AUTH_FILE`, re-read when it changes.
    pub htpasswd_file: Option<PathBuf>,
    /// When `tokenreview` is listed.
    pub tokenreview: Option<TokenReviewSettings>,
    /// `PROXY_ALLOW_PLAINTEXT_CREDENTIALS` was needed and set: `main` warns.
    pub plaintext_credentials: bool,
    /// Whether the scraper's `Authorization` goes to the exporter (`PROXY_FORWARD_AUTHORIZATION`
    /// resolved).
    pub forward_authorization: bool,
}

impl AuthSettings {
    /// Whether any method is listed.
    pub fn enabled(&self) -> bool {
        !self.methods.is_empty()
    }
}

/// The chain `settings` describe, counting into `telemetry`; `None` when `PROXY_AUTH` is unset.
pub fn build(settings: &AuthSettings, telemetry: &Telemetry) -> Option<Auth> {
    if !settings.enabled() {
        return None;
    }
    let client_cert = settings
        .methods
        .contains(&Method::ClientCert)
        .then(|| ClientCertAuth { allowed: settings.client_allowed_names.clone() });
    let basic = settings.htpasswd.clone().map(|htpasswd| {
        let basic = BasicAuth::new(htpasswd);
        if let Some(file) = &settings.htpasswd_file {
            if let Err(error) = basic.watch(file, telemetry.reloads().clone()) {
                tracing::error!(%error, "cannot start the htpasswd reload thread; changes to PROXY_BASIC_AUTH_FILE need a restart");
            }
        }
        basic
    });
    let tokenreview = settings.tokenreview.clone().map(|t| {
        let review = TokenReview::new(KubeApi::new(t.api), t.audiences, t.authz_users);
        tracing::info!(api = %review.api_url(), "tokenreview: reviewing bearer tokens with the Kubernetes API server");
        review
    });
    Some(Auth::new(client_cert, basic, tokenreview, &settings.methods, telemetry.auth_decisions().clone()))
}

/// The `client-cert` method.
#[derive(Debug, Clone, Default)]
pub struct ClientCertAuth {
    /// `PROXY_CLIENT_ALLOWED_NAMES`; empty allows every verified certificate.
    pub allowed: AllowedNames,
}

/// The configured chain. Built by [`build`] from the [`AuthSettings`] `config` fills.
pub struct Auth {
    methods: Vec<Method>,
    client_cert: Option<ClientCertAuth>,
    basic: Option<BasicAuth>,
    tokenreview: Option<TokenReview>,
    decisions: Family<DecisionLabels, Counter>,
}

impl Auth {
    /// A chain of the methods given, in `PROXY_AUTH` order. `decisions` is the counter family
    /// `/proxy/metrics` shows.
    pub fn new(
        client_cert: Option<ClientCertAuth>,
        basic: Option<BasicAuth>,
        tokenreview: Option<TokenReview>,
        order: &[Method],
        decisions: Family<DecisionLabels, Counter>,
    ) -> Auth {
        let methods = order
            .iter()
            .copied()
            .filter(|m| match m {
                Method::ClientCert => client_cert.is_some(),
                Method::Basic => basic.is_some(),
                Method::TokenReview => tokenreview.is_some(),
            })
            .collect();
        Auth { methods, client_cert, basic, tokenreview, decisions }
    }

    /// The methods in order.
    pub fn methods(&self) -> &[Method] {
        &self.methods
    }

    /// Decides one request for `path` from its headers and the verified client certificate
    /// (DER) its connection presented, if any. Counts the decision.
    pub async fn decide(&self, path: &str, headers: &HeaderMap, client_certificate: Option<&[u8]>) -> Decision {
        let decision = self.decide_uncounted(path, headers, client_certificate).await;
        let method = decision.method.map_or("none", Method::name);
        self.decisions.get_or_create(&DecisionLabels { method, outcome: decision.outcome() }).inc();
        match &decision.verdict {
            Verdict::Allowed(user) => tracing::debug!(method, %user, path, "scrape authorized"),
            Verdict::Unauthenticated => tracing::debug!(method, path, "scrape refused: no valid credentials (401)"),
            Verdict::Forbidden(user) => tracing::info!(method, %user, path, "scrape refused: not authorized (403)"),
            Verdict::Unavailable(cause) => {
                tracing::warn!(method, path, error = %cause, "scrape refused: could not check credentials (503)")
            }
            // Not one warning per junk token: tokenreview::limit reports refusals, aggregated.
            Verdict::Limited => tracing::debug!(method, path, "scrape refused: too many unknown credentials (503)"),
        }
        decision
    }

    async fn decide_uncounted(&self, path: &str, headers: &HeaderMap, certificate: Option<&[u8]>) -> Decision {
        let mut authorizations = headers.get_all(header::AUTHORIZATION).iter();
        // Two Authorization headers have no defined meaning: refuse rather than pick one.
        let credential = match (authorizations.next(), authorizations.next()) {
            (Some(value), None) => Credential::parse(value).ok(),
            _ => None,
        };
        let mut best = Decision { method: None, verdict: Verdict::Unauthenticated };
        for &method in &self.methods {
            let verdict = match method {
                Method::ClientCert => match certificate {
                    Some(der) => self.client_cert(der),
                    None => continue,
                },
                Method::Basic => match &credential {
                    Some(Credential::Basic { user, password }) => {
                        let basic = self.basic.as_ref().expect("listed only when configured");
                        if basic.verify(user, password).await {
                            Verdict::Allowed(user.clone())
                        } else {
                            Verdict::Unauthenticated
                        }
                    }
                    _ => continue,
                },
                Method::TokenReview => match &credential {
                    Some(Credential::Bearer(token)) => {
                        self.tokenreview.as_ref().expect("listed only when configured").decide(token, path).await
                    }
                    _ => continue,
                },
            };
            let decision = Decision { method: Some(method), verdict };
            if decision.is_allowed() {
                return decision;
            }
            if best.method.is_none() || decision.rank() > best.rank() {
                best = decision;
            }
        }
        best
    }

    fn client_cert(&self, der: &[u8]) -> Verdict {
        let settings = self.client_cert.as_ref().expect("listed only when configured");
        match CertificateNames::from_der(der) {
            Some(names) => {
                let shown = names.first().unwrap_or_default();
                if settings.allowed.allows(&names) { Verdict::Allowed(shown) } else { Verdict::Forbidden(shown) }
            }
            None => Verdict::Unauthenticated,
        }
    }

    /// The answer for a refused request: 401 with a challenge per listed method, 403, or 503.
    /// The body says what to check; the cause of a 503 is only in the log.
    pub fn refusal(&self, decision: &Decision) -> Response<ResponseBody> {
        match &decision.verdict {
            Verdict::Allowed(_) => unreachable!("an allowed request is not refused"),
            Verdict::Unauthenticated => {
                let names: Vec<&str> = self.methods.iter().map(|m| m.name()).collect();
                let mut response = response::text(
                    StatusCode::UNAUTHORIZED,
                    format!("unauthorized: send credentials for one of PROXY_AUTH={}", names.join(",")),
                );
                for method in &self.methods {
                    response.headers_mut().append(header::WWW_AUTHENTICATE, method.challenge());
                }
                response
            }
            Verdict::Forbidden(user) => {
                let what = match decision.method {
                    Some(Method::ClientCert) => "the client certificate is not in PROXY_CLIENT_ALLOWED_NAMES",
                    Some(Method::TokenReview) => {
                        "the API server did not allow get on this path (RBAC nonResourceURLs) or PROXY_AUTHZ_USERS"
                    }
                    _ => "not allowed",
                };
                response::text(StatusCode::FORBIDDEN, format!("forbidden: {user:?}: {what}"))
            }
            Verdict::Unavailable(_) => response::text(
                StatusCode::SERVICE_UNAVAILABLE,
                "credentials could not be checked now (the proxy's log has the cause); try again",
            ),
            Verdict::Limited => {
                let mut response = response::text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many unknown credentials to check now; try again shortly",
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(tokenreview::limit::RETRY_AFTER_SECONDS));
                response
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use http_body_util::BodyExt;

    fn chain(order: &[Method]) -> Auth {
        let htpasswd =
            basic::Htpasswd::parse(b"prometheus:$2y$04$GlEapHHrg9BJ2/9z/kQPGe7vMgjh8dguW8LSbDEWzEXEGJkQlNuLG").unwrap();
        Auth::new(Some(ClientCertAuth::default()), Some(BasicAuth::new(htpasswd)), None, order, Family::default())
    }

    fn headers(authorization: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in authorization {
            map.append(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[tokio::test]
    async fn the_right_basic_credential_is_allowed_and_counted() {
        let auth = chain(&[Method::Basic]);
        // prometheus:s3cret
        let decision = auth.decide("/metrics", &headers(&["Basic cHJvbWV0aGV1czpzM2NyZXQ="]), None).await;
        assert_eq!(decision, Decision { method: Some(Method::Basic), verdict: Verdict::Allowed("prometheus".into()) });
        let count =
            auth.decisions.get_or_create(&DecisionLabels { method: "basic", outcome: AuthOutcome::allowed }).get();
        assert_eq!(count, 1);
    }

    #[tokio::test]
    async fn no_usable_credential_is_unauthenticated_by_none() {
        let auth = chain(&[Method::Basic]);
        for h in [headers(&[]), headers(&["Bearer t"]), headers(&["Digest x"]), headers(&["Basic Og==", "Basic Og=="])]
        {
            let decision = auth.decide("/metrics", &h, None).await;
            assert_eq!(decision, Decision { method: None, verdict: Verdict::Unauthenticated }, "{h:?}");
        }
    }

    #[tokio::test]
    async fn refusals_carry_a_challenge_per_method() {
        let auth = chain(&[Method::ClientCert, Method::Basic]);
        let decision = auth.decide("/metrics", &headers(&[]), None).await;
        let response = auth.refusal(&decision);
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let challenges: Vec<_> = response.headers().get_all(header::WWW_AUTHENTICATE).iter().collect();
        assert_eq!(challenges.len(), 2);
        assert!(challenges[1].to_str().unwrap().starts_with("Basic realm="));
    }

    #[tokio::test]
    async fn an_unavailable_answer_keeps_the_cause_out_of_the_body() {
        let auth = chain(&[Method::Basic]);
        let decision = Decision {
            method: Some(Method::TokenReview),
            verdict: Verdict::Unavailable("connection refused at 10.0.0.1".into()),
        };
        let response = auth.refusal(&decision);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = response.into_body().collect().await.expect("a local body").to_bytes();
        assert!(!String::from_utf8_lossy(&body).contains("10.0.0.1"));
    }

    #[test]
    fn ranking_prefers_unavailable_over_forbidden_over_unauthenticated() {
        let d = |verdict| Decision { method: Some(Method::Basic), verdict };
        assert!(d(Verdict::Unavailable(String::new())).rank() > d(Verdict::Forbidden(String::new())).rank());
        assert!(d(Verdict::Forbidden(String::new())).rank() > d(Verdict::Unauthenticated).rank());
    }
}
