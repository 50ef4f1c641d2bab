//! The two review objects the proxy sends and reads: `authentication.k8s.io/v1` TokenReview and
//! `authorization.k8s.io/v1` SubjectAccessReview, reduced to the fields used.
//!
//! Unknown fields in answers are ignored and absent ones take their API defaults (`false`,
//! empty), as the API's own clients read them. tests/auth.rs checks these shapes against
//! k8s-openapi's generated types in both directions, so a field name typo here fails a test.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The path of the TokenReview collection.
pub const TOKEN_REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
/// The path of the SubjectAccessReview collection.
pub const SUBJECT_ACCESS_REVIEWS: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";

/// `TokenReview` as sent: the scraper's token and the audiences to check it for.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenReviewRequest<'a> {
    /// `authentication.k8s.io/v1`.
    pub api_version: &'static str,
    /// `TokenReview`.
    pub kind: &'static str,
    /// What to review.
    pub spec: TokenReviewSpec<'a>,
}

/// `TokenReview.spec`.
#[derive(Debug, Serialize)]
pub struct TokenReviewSpec<'a> {
    /// The bearer token.
    pub token: &'a str,
    /// `PROXY_TOKENREVIEW_AUDIENCES`; omitted when empty, so the API server's own audience applies.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub audiences: &'a [String],
}

impl<'a> TokenReviewRequest<'a> {
    /// A review of `token` for `audiences`.
    pub fn new(token: &'a str, audiences: &'a [String]) -> Self {
        TokenReviewRequest {
            api_version: "authentication.k8s.io/v1",
            kind: "TokenReview",
            spec: TokenReviewSpec { token, audiences },
        }
    }
}

/// `TokenReview` as answered.
#[derive(Debug, Deserialize)]
pub struct TokenReviewAnswer {
    /// The outcome.
    #[serde(default)]
    pub status: TokenReviewStatus,
}

/// `TokenReview.status`.
#[derive(Debug, Default, Deserialize)]
pub struct TokenReviewStatus {
    /// Whether the token is valid.
    #[serde(default)]
    pub authenticated: bool,
    /// Who the token belongs to.
    #[serde(default)]
    pub user: UserInfo,
    /// The audiences the token is valid for, of those asked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Why the token is not valid, when the API server says.
    #[serde(default)]
    pub error: String,
}

/// `UserInfo`: who a token belongs to; sent back in the SubjectAccessReview as it came.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UserInfo {
    /// e.g. `system:serviceaccount:monitoring:prometheus-k8s`.
    #[serde(default)]
    pub username: String,
    /// The account's UID.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// e.g. `system:serviceaccounts`, `system:authenticated`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Extra attributes (the pod a bound token was issued to, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// `SubjectAccessReview` as sent: may `user` `get` the non-resource URL `path`?
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubjectAccessReviewRequest<'a> {
    /// `authorization.k8s.io/v1`.
    pub api_version: &'static str,
    /// `SubjectAccessReview`.
    pub kind: &'static str,
    /// What to review.
    pub spec: SubjectAccessReviewSpec<'a>,
}

/// `SubjectAccessReview.spec`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubjectAccessReviewSpec<'a> {
    /// The user name.
    pub user: &'a str,
    /// The UID, when the TokenReview gave one.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub uid: &'a str,
    /// The groups.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub groups: &'a [String],
    /// The extra attributes.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: &'a BTreeMap<String, Vec<String>>,
    /// The path and verb.
    pub non_resource_attributes: NonResourceAttributes<'a>,
}

/// `NonResourceAttributes`.
#[derive(Debug, Serialize)]
pub struct NonResourceAttributes<'a> {
    /// The request path, e.g. `/metrics`.
    pub path: &'a str,
    /// Always `get`: scrapes are GETs (HEAD too, which the API treats as get for non-resource URLs).
    pub verb: &'static str,
}

impl<'a> SubjectAccessReviewRequest<'a> {
    /// May `user` `get` `path`?
    pub fn new(user: &'a UserInfo, path: &'a str) -> Self {
        SubjectAccessReviewRequest {
            api_version: "authorization.k8s.io/v1",
            kind: "SubjectAccessReview",
            spec: SubjectAccessReviewSpec {
                user: &user.username,
                uid: &user.uid,
                groups: &user.groups,
                extra: &user.extra,
                non_resource_attributes: NonResourceAttributes { path, verb: "get" },
            },
        }
    }
}

/// `SubjectAccessReview` as answered.
#[derive(Debug, Deserialize)]
pub struct SubjectAccessReviewAnswer {
    /// The outcome.
    #[serde(default)]
    pub status: SubjectAccessReviewStatus,
}

/// `SubjectAccessReview.status`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubjectAccessReviewStatus {
    /// Whether the request is allowed.
    #[serde(default)]
    pub allowed: bool,
    /// Why, for the log.
    #[serde(default)]
    pub reason: String,
    /// An authorizer error, reported even when another authorizer decided.
    #[serde(default)]
    pub evaluation_error: String,
}

/// A `Status` object, the API server's error body (`message` is what kubectl shows).
#[derive(Debug, Default, Deserialize)]
pub struct Status {
    /// The error message.
    #[serde(default)]
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_review_omits_empty_audiences() {
        let json = serde_json::to_value(TokenReviewRequest::new("t", &[])).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"t"}})
        );
    }

    #[test]
    fn subject_access_review_carries_the_user_as_reviewed() {
        let user = UserInfo {
            username: "system:serviceaccount:monitoring:prometheus-k8s".into(),
            uid: "u-1".into(),
            groups: vec!["system:serviceaccounts".into()],
            extra: BTreeMap::from([("authentication.kubernetes.io/pod-name".into(), vec!["prometheus-k8s-0".into()])]),
        };
        let json = serde_json::to_value(SubjectAccessReviewRequest::new(&user, "/metrics")).unwrap();
        assert_eq!(json["spec"]["user"], "system:serviceaccount:monitoring:prometheus-k8s");
        assert_eq!(json["spec"]["uid"], "u-1");
        assert_eq!(json["spec"]["groups"][0], "system:serviceaccounts");
        assert_eq!(json["spec"]["extra"]["authentication.kubernetes.io/pod-name"][0], "prometheus-k8s-0");
        assert_eq!(json["spec"]["nonResourceAttributes"], serde_json::json!({"path": "/metrics", "verb": "get"}));
    }

    #[test]
    fn answers_tolerate_missing_and_unknown_fields() {
        let a: TokenReviewAnswer = serde_json::from_str(r#"{"kind":"TokenReview","status":{}}"#).unwrap();
        assert!(!a.status.authenticated);
        let a: SubjectAccessReviewAnswer =
            serde_json::from_str(r#"{"status":{"allowed":true,"reason":"RBAC: allowed","x":1}}"#).unwrap();
        assert!(a.status.allowed);
    }
}
