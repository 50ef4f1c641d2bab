//! `tokenreview`: a bearer token checked by the Kubernetes API server, as kube-rbac-proxy does.
//!
//! Authentication is a TokenReview (is this token valid, and whose is it?); authorization is a
//! SubjectAccessReview for the request path as a non-resource URL with verb `get` (may that user
//! `get /metrics`?), the grant kube-prometheus already gives Prometheus. With
//! `PROXY_AUTHZ_USERS` the user name is checked against that list instead and no
//! SubjectAccessReview is sent.
//!
//! Outcomes are cached as kube-rbac-proxy caches them ([`cache`]): TokenReviews for
//! [`AUTHN_TTL`], SubjectAccessReviews for [`ALLOW_TTL`] when allowed and [`DENY_TTL`] when
//! denied, keyed by a SHA-256 of what was reviewed (a token is never kept as a key). A failed
//! review (API server unreachable, slow, 5xx, unreadable) is never cached and answers 503.
//!
//! Hostile clients (issue 24): a flood of distinct junk tokens can neither push the tokens that
//! authenticated out of the TokenReview cache (they sit in its protected segment, [`cache`]) nor
//! make the proxy send more than a bounded number of TokenReviews: reviews of tokens never seen
//! authenticated go through [`limit`] (a burst of [`limit::BURST`], then [`limit::PER_SECOND`];
//! the numbers and why are there), answered 503 with `Retry-After` over it; a token that
//! authenticated before is never limited. SubjectAccessReviews need a token that authenticated,
//! so junk never reaches them; their cache is bounded the same way.

pub mod api;
pub mod cache;
pub mod limit;
pub mod review;

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest;

use self::api::{ApiSettings, KubeApi};
use self::cache::ReviewCache;
use self::limit::ReviewLimit;
use self::review::{
    SUBJECT_ACCESS_REVIEWS, SubjectAccessReviewAnswer, SubjectAccessReviewRequest, TOKEN_REVIEWS, TokenReviewAnswer,
    TokenReviewRequest, UserInfo,
};
use super::Verdict;

/// How long a TokenReview outcome (valid or not) is remembered.
pub const AUTHN_TTL: Duration = Duration::from_secs(2 * 60);
/// How long an allowing SubjectAccessReview is remembered.
pub const ALLOW_TTL: Duration = Duration::from_secs(5 * 60);
/// How long a denying SubjectAccessReview is remembered.
pub const DENY_TTL: Duration = Duration::from_secs(30);

/// Whom the API server said a token belongs to (`None`: not a valid token).
type Authenticated = Option<Arc<UserInfo>>;

/// `tokenreview`'s settings.
#[derive(Debug, Clone)]
pub struct TokenReviewSettings {
    /// Where the API server is and how to trust it.
    pub api: ApiSettings,
    /// `PROXY_TOKENREVIEW_AUDIENCES`.
    pub audiences: Vec<String>,
    /// `PROXY_AUTHZ_USERS`: when set, replaces SubjectAccessReviews.
    pub authz_users: Option<Vec<String>>,
}

/// The `tokenreview` method.
pub struct TokenReview {
    api: Arc<KubeApi>,
    audiences: Arc<[String]>,
    authz_users: Option<Vec<String>>,
    authn: Arc<ReviewCache<[u8; 32], Authenticated>>,
    authz: Arc<ReviewCache<[u8; 32], bool>>,
    limit: ReviewLimit,
}

impl TokenReview {
    /// Reviews against `api`; `audiences` go in every TokenReview; `authz_users`, when set,
    /// replaces SubjectAccessReviews.
    pub fn new(api: KubeApi, audiences: Vec<String>, authz_users: Option<Vec<String>>) -> TokenReview {
        TokenReview {
            api: Arc::new(api),
            audiences: audiences.into(),
            authz_users,
            authn: Arc::default(),
            authz: Arc::default(),
            limit: ReviewLimit::default(),
        }
    }

    /// The API server's URL, for the start-up log.
    pub fn api_url(&self) -> String {
        self.api.url().to_string()
    }

    /// Authenticates `token`, then authorizes its user for `get path`.
    pub async fn decide(&self, token: &str, path: &str) -> Verdict {
        let user = match self.authenticate(token).await {
            Some(Ok(Some(user))) => user,
            Some(Ok(None)) => return Verdict::Unauthenticated,
            Some(Err(cause)) => return Verdict::Unavailable(format!("TokenReview: {cause}")),
            None => return Verdict::Limited,
        };
        let allowed = match &self.authz_users {
            Some(users) => users.iter().any(|u| *u == user.username),
            None => match self.authorize(&user, path).await {
                Ok(allowed) => allowed,
                Err(cause) => return Verdict::Unavailable(format!("SubjectAccessReview: {cause}")),
            },
        };
        let username = user.username.clone();
        if allowed { Verdict::Allowed(username) } else { Verdict::Forbidden(username) }
    }

    /// The TokenReview's outcome (cached, or shared with one in flight, or a new review);
    /// `None` when a new review was needed and [`limit`] refused it.
    async fn authenticate(&self, token: &str) -> Option<Result<Authenticated, Arc<str>>> {
        let key = sha256(&[token.as_bytes()]);
        let (api, audiences, token) = (self.api.clone(), self.audiences.clone(), token.to_owned());
        self.authn
            .get_or_review_admitted(
                key,
                |_| AUTHN_TTL,
                Option::is_some,
                |known| self.limit.admit(known),
                move || async move {
                    let answer: TokenReviewAnswer =
                        api.create(TOKEN_REVIEWS, &TokenReviewRequest::new(&token, &audiences)).await?;
                    let status = answer.status;
                    // As the API server's own webhook authenticator: a review for audiences must
                    // come back naming at least one of them.
                    let audience_ok = audiences.is_empty() || status.audiences.iter().any(|a| audiences.contains(a));
                    if !status.authenticated || !audience_ok {
                        tracing::debug!(error = %status.error, audience_ok, "TokenReview: token not authenticated");
                        return Ok(None);
                    }
                    Ok(Some(Arc::new(status.user)))
                },
            )
            .await
    }

    async fn authorize(&self, user: &Arc<UserInfo>, path: &str) -> Result<bool, Arc<str>> {
        let request = SubjectAccessReviewRequest::new(user, path);
        let body = serde_json::to_vec(&request).expect("review objects always serialise");
        let key = sha256(&[&body]);
        let (api, user, path) = (self.api.clone(), user.clone(), path.to_owned());
        self.authz
            .get_or_review(
                key,
                |allowed| if *allowed { ALLOW_TTL } else { DENY_TTL },
                move || async move {
                    let answer: SubjectAccessReviewAnswer =
                        api.create(SUBJECT_ACCESS_REVIEWS, &SubjectAccessReviewRequest::new(&user, &path)).await?;
                    let status = answer.status;
                    if !status.evaluation_error.is_empty() {
                        tracing::debug!(error = %status.evaluation_error, "SubjectAccessReview: evaluation error");
                    }
                    tracing::debug!(user = %user.username, %path, allowed = status.allowed, reason = %status.reason, "SubjectAccessReview answered");
                    Ok(status.allowed)
                },
            )
            .await
    }
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut context = digest::Context::new(&digest::SHA256);
    for part in parts {
        context.update(&(part.len() as u64).to_le_bytes());
        context.update(part);
    }
    context.finish().as_ref().try_into().expect("SHA-256 is 32 bytes")
}
