//! A user's subscription URL, shown and rotated (`user subscription`,
//! `user rotate-subscription`). The URL holds the user's token, so it is a
//! credential: [`SubscriptionView`]'s `Debug` hides both.

use std::fmt;

use reqwest::{Method, Url};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::client::Client;
use super::error::CliError;

/// A user's subscription as the API shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionView {
    pub token: String,
    /// `https://sub.example.com/sub/<token>`, or only `/sub/<token>` when
    /// the manager has no public URL set.
    pub url: String,
}

impl fmt::Debug for SubscriptionView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionView")
            .field("token", &"<redacted>")
            .field("url", &"<redacted>")
            .finish()
    }
}

/// The answer of `GET /users/{id}/subscription` and of a rotation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubscriptionAnswer {
    pub subscription: SubscriptionView,
}

impl Client {
    /// `GET /users/{id}/subscription`.
    pub async fn user_subscription(&self, id: &str) -> Result<SubscriptionAnswer, CliError> {
        let url = self.url(&["users", id, "subscription"]);
        self.call(Method::GET, url, None, true).await
    }

    /// `POST /user/subscription/rotate`: a new token; the old URL answers
    /// 404 from then on.
    pub async fn user_subscription_rotate(&self, id: &str) -> Result<SubscriptionAnswer, CliError> {
        self.post(&["user", "subscription", "rotate"], json!({ "userID": id }))
            .await
    }
}

/// What `user subscription` and `user rotate-subscription` print for
/// people: the URL alone on stdout (so `$(xmctl user subscription ID)`
/// works), and a note for stderr when the URL had to be completed.
#[derive(PartialEq, Eq)]
pub struct ShownUrl {
    pub url: String,
    pub note: Option<String>,
}

impl fmt::Debug for ShownUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShownUrl")
            .field("url", &"<redacted>")
            .field("note", &self.note)
            .finish()
    }
}

/// The URL to hand to the user. A manager without a public URL answers a
/// path; it is completed with the manager's URL as xmctl reaches it, which
/// may be an address only the operator can reach, hence the note.
pub fn shown_url(base: &Url, url: &str) -> ShownUrl {
    if !url.starts_with('/') {
        return ShownUrl {
            url: url.to_owned(),
            note: None,
        };
    }
    // The base always ends with `/` (Client::new), so a prefix is kept.
    match base.join(url.trim_start_matches('/')) {
        Ok(full) => ShownUrl {
            url: full.to_string(),
            note: Some(
                "the manager has no public subscription URL set (`[subscription] public_url` \
                 or XM_SUBSCRIPTION_PUBLIC_URL): this URL is the manager as xmctl reaches it"
                    .to_owned(),
            ),
        },
        Err(_) => ShownUrl {
            url: url.to_owned(),
            note: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(url: &str) -> Url {
        Url::parse(url).expect("a URL")
    }

    #[test]
    fn a_public_url_is_shown_as_the_manager_gave_it() {
        let shown = shown_url(
            &base("http://127.0.0.1:8080/"),
            "https://sub.example.com/sub/abc",
        );
        assert_eq!(shown.url, "https://sub.example.com/sub/abc");
        assert_eq!(shown.note, None);
    }

    #[test]
    fn a_path_is_completed_with_the_manager_url_and_its_prefix() {
        let shown = shown_url(&base("http://10.0.0.5:8080/admin/"), "/sub/abc");
        assert_eq!(shown.url, "http://10.0.0.5:8080/admin/sub/abc");
        assert!(
            shown.note.as_deref().is_some_and(|n| n.contains("public")),
            "{shown:?}"
        );
    }

    #[test]
    fn debug_hides_the_token_and_the_url() {
        let view = SubscriptionView {
            token: "tok-s3cret".into(),
            url: "https://sub.example.com/sub/tok-s3cret".into(),
        };
        assert!(!format!("{view:?}").contains("s3cret"));
    }
}
